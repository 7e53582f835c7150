"""Provides a small synchronous Redis client (RESP2) for the agent.

Why not redis-py here: importing it costs ~14 MB RSS and ~60 ms (it pulls in asyncio, its cluster
and observability layers and cryptography), more than everything else the agent does. The agent
needs a dozen commands; this speaks them with redis-py's method names, arguments and reply
shapes, so the same agent code runs on it, on redis-py and on the embedded fakeredis store.
The dashboard keeps redis-py.

Supported: every URL ``store.url`` parses (the same rules as the dashboard's redis-py): redis://, rediss://
(TLS: CA file, client certificate, ssl_cert_reqs), unix://; AUTH with ACL user or password; SELECT;
pipelines with or without MULTI/EXEC; per-call socket timeouts (a blocking XREADGROUP waits
longer than the socket timeout by its BLOCK time). Redis Cluster, detected at first use (``CLUSTER
INFO``, or a MOVED reply): ``store.slots`` routes each command to its slot's master and follows MOVED/ASK.
Sentinel (``redis+sentinel://``): ``store.sentinel`` asks the sentinels for the master, checks ROLE, and
asks again after a connection error or a READONLY reply (a demoted master).

Bounded reads: anyone who can write to Redis can put a 40 MB entry on a stream the agent reads. With a
``max_bulk`` limit (per client, or per call), a bulk string longer than it is read through in small
chunks and dropped, and an ``Oversized(length)`` marker stands in its place; an array of more than
``max_array`` elements is read through and replaced the same way (so many small strings cannot get
around the limit either). The reply keeps its shape, so the caller can still acknowledge the entry.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any

Arg = bytes | str | int | float


class RedisError(Exception):
    """Any failure talking to Redis."""


class ConnectionFailed(RedisError, OSError):
    """Connecting, reading or writing failed; the next command reconnects."""


class Timeout(ConnectionFailed):
    pass


class ResponseError(RedisError):
    """The server answered with an error (``-ERR ...``, ``-NOGROUP ...``)."""


class Oversized:
    """Stands in for a bulk string (or array) longer than the reader's limit: its ``length`` bytes were
    read from the socket in chunks and dropped, never held."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"Oversized({self.length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Oversized) and other.length == self.length

    def __hash__(self) -> int:  # it can stand in for a stream field's name, a dict key
        return hash(("Oversized", self.length))


#: Chunk size for dropping an oversized reply: what is held at once while reading it through.
SKIP_CHUNK = 64 * 1024


def errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the store failed", for whichever client is in use.

    redis-py's are included only if something already imported it: this module must not.
    """
    import sys

    out: list[type[BaseException]] = [RedisError, OSError]
    rex = sys.modules.get("redis.exceptions")
    if rex is not None:
        # RedisClusterException ("cannot be connected", "no slot cover") is no RedisError in redis-py
        out += [rex.RedisError, rex.RedisClusterException]
    return tuple(out)


def response_errors() -> tuple[type[BaseException], ...]:
    import sys

    out: list[type[BaseException]] = [ResponseError]
    rex = sys.modules.get("redis.exceptions")
    if rex is not None:
        out.append(rex.ResponseError)
    return tuple(out)


def _b(a: Arg) -> bytes:
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode()
    if isinstance(a, bool):  # redis-py refuses bools; so do we (a bug upstream of here)
        raise RedisError("invalid argument: bool")
    if isinstance(a, float):
        return repr(a).encode()
    return str(a).encode()


def pack(args: Iterable[Arg]) -> bytes:
    parts = [_b(a) for a in args]
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


#: (max_bulk, max_array) for one read; None in either place: no limit there.
Limits = tuple[int | None, int | None]


class Connection:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, path: str | None = None, db: int = 0,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 ca_file: str | None = None, timeout_s: float = 2.0, connect_timeout_s: float = 2.0,
                 max_bulk: int | None = None, max_array: int | None = None, certfile: str | None = None,
                 keyfile: str | None = None, cert_reqs: str = "required") -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password = username, password
        self.tls, self.ca_file = tls, ca_file
        self.certfile, self.keyfile, self.cert_reqs = certfile, keyfile, cert_reqs
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        #: The client's own limits (see the module docstring); a call may pass tighter or looser ones.
        self.limits: Limits = (max_bulk, max_array)
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    # -- socket ---------------------------------------------------------------------------------

    def connect(self) -> None:
        if self.sock is not None:
            return
        try:
            if self.path:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.connect_timeout_s)
                s.connect(self.path)
            else:
                s = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls:
                    import ssl  # only for rediss://: ssl costs ~2 MB the plain agent does without

                    ctx = ssl.create_default_context(cafile=self.ca_file)
                    if self.cert_reqs != "required":  # as redis-py: no hostname check unless required
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE if self.cert_reqs == "none" else ssl.CERT_OPTIONAL
                    if self.certfile:
                        ctx.load_cert_chain(self.certfile, self.keyfile)
                    s = ctx.wrap_socket(s, server_hostname=self.host)
            s.settimeout(self.timeout_s)
        except TimeoutError as e:  # socket.timeout
            raise Timeout(f"connecting to {self._where()}: timed out") from e
        except OSError as e:
            raise ConnectionFailed(f"connecting to {self._where()}: {e.strerror or e}") from e
        self.sock = s
        self.buf.clear()
        try:
            if self.password is not None:
                auth: list[Arg] = ["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]
                self._roundtrip([auth])
            if self.db:
                self._roundtrip([["SELECT", self.db]])
        except BaseException:
            self.close()
            raise

    def _where(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf.clear()

    def _fill(self) -> None:
        assert self.sock is not None
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as e:  # socket.timeout
            raise Timeout(f"reading from {self._where()}: timed out") from e
        except OSError as e:
            raise ConnectionFailed(f"reading from {self._where()}: {e.strerror or e}") from e
        if not chunk:
            raise ConnectionFailed(f"{self._where()} closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[: n + 2]
        return data

    def _drop(self, n: int) -> None:
        """Consume ``n`` bytes (and the CRLF after them) without ever holding more than SKIP_CHUNK."""
        assert self.sock is not None
        n += 2
        held = min(n, len(self.buf))
        del self.buf[:held]
        n -= held
        while n > 0:
            try:
                # recv at most what is left: the bytes after it are the next reply's, kept in buf as usual
                chunk = self.sock.recv(min(n, SKIP_CHUNK))
            except TimeoutError as e:  # socket.timeout
                raise Timeout(f"reading from {self._where()}: timed out") from e
            except OSError as e:
                raise ConnectionFailed(f"reading from {self._where()}: {e.strerror or e}") from e
            if not chunk:
                raise ConnectionFailed(f"{self._where()} closed the connection")
            n -= len(chunk)

    def _skip_items(self, n: int) -> int:
        """Read through ``n`` replies (an array's elements) keeping nothing; returns the bytes they took."""
        total = 0
        while n > 0:
            n -= 1
            line = self._line()
            total += len(line) + 2
            kind, rest = line[:1], line[1:]
            if kind == b"$":
                size = int(rest)
                if size >= 0:
                    self._drop(size)
                    total += size + 2
            elif kind == b"*":
                n += max(int(rest), 0)  # nested: its elements join the count (no recursion depth to abuse)
            elif kind not in (b"+", b"-", b":"):
                self.close()
                raise ConnectionFailed(f"protocol error: unexpected reply {line[:40]!r}")
        return total

    def read_reply(self, limits: Limits | None = None) -> Any:
        """One RESP2 reply; server errors are returned as ResponseError instances, not raised.

        ``limits`` (default: the connection's): a bulk string longer than max_bulk, or an array of more
        than max_array elements, is read through and comes back as ``Oversized(bytes)``.
        """
        lim = self.limits if limits is None else limits
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ResponseError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            if lim[0] is not None and n > lim[0]:
                self._drop(n)
                return Oversized(n)
            return self._exact(n)
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            if lim[1] is not None and n > lim[1]:
                return Oversized(self._skip_items(n))
            return [self.read_reply(lim) for _ in range(n)]
        self.close()
        raise ConnectionFailed(f"protocol error: unexpected reply {line[:40]!r}")

    def _roundtrip(self, commands: list[list[Arg]], extra_timeout_s: float = 0.0,
                   limits: Limits | None = None) -> list[Any]:
        """Send every command in one write, read every reply. Errors in replies are returned."""
        self.connect()
        assert self.sock is not None
        try:
            if extra_timeout_s:
                self.sock.settimeout(self.timeout_s + extra_timeout_s)
            self.sock.sendall(b"".join(pack(c) for c in commands))
            replies = [self.read_reply(limits) for _ in commands]
            if extra_timeout_s:
                self.sock.settimeout(self.timeout_s)
        except TimeoutError as e:  # socket.timeout
            self.close()
            raise Timeout(f"talking to {self._where()}: timed out") from e
        except OSError as e:
            self.close()
            if isinstance(e, RedisError):
                raise
            raise ConnectionFailed(f"talking to {self._where()}: {e.strerror or e}") from e
        except BaseException:
            self.close()  # a half-read reply leaves the stream unusable
            raise
        for r in replies:
            if isinstance(r, ResponseError) and str(r).startswith(("NOAUTH", "WRONGPASS", "NOPERM")) and \
                    commands[0][0] == "AUTH":
                raise r
            if isinstance(r, ResponseError) and str(r).startswith("READONLY"):
                # A replica now (a master demoted by a failover): the next command connects afresh, which
                # under Sentinel means asking the sentinels where the master is.
                self.close()
        return replies


# -- reply shaping, as redis-py does it for RESP2 -----------------------------------------------


def _ok(r: Any) -> bool | None:
    return True if r == b"OK" else None


def _stream_entries(entries: Any) -> list[tuple[bytes, Any]]:
    """[(id, {field: value})]; under a limit a value (or a field name) may be an Oversized marker, and
    so may an entry's whole field list (too many fields): the id is kept either way, to acknowledge it."""
    if isinstance(entries, Oversized):  # the whole list was longer than max_array
        return entries  # type: ignore[return-value]
    out: list[tuple[bytes, Any]] = []
    for entry_id, flat in entries or []:
        if flat is None or isinstance(flat, Oversized):  # None: a pending entry trimmed from the stream since
            out.append((entry_id, flat))
        else:
            out.append((entry_id, dict(zip(flat[0::2], flat[1::2], strict=True))))
    return out


def _xread(r: Any) -> list[list[Any]]:
    if isinstance(r, Oversized):
        return r  # type: ignore[return-value]
    return [[stream, _stream_entries(entries)] for stream, entries in r or []]


class _Commands:
    """Command builders shared by the client and its pipelines: each returns (args, shaper)."""

    #: Calls may pass max_bulk/max_array (redis-py's clients have no such thing: check this first).
    bounded_reads = True

    def _call(self, args: list[Arg], shape: Any = None, extra_timeout_s: float = 0.0,
              limits: Limits | None = None) -> Any:
        raise NotImplementedError

    def ping(self) -> Any:
        return self._call(["PING"], lambda r: r == b"PONG")

    def get(self, name: str) -> Any:
        return self._call(["GET", name])

    def set(self, name: str, value: Arg, ex: float | None = None, px: int | None = None, nx: bool = False,
            xx: bool = False, keepttl: bool = False) -> Any:
        args: list[Arg] = ["SET", name, value]
        if ex is not None:
            args += ["EX", int(ex)]
        if px is not None:
            args += ["PX", int(px)]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        if keepttl:
            args.append("KEEPTTL")
        return self._call(args, _ok)

    def delete(self, *names: str) -> Any:
        return self._call(["DEL", *names])

    def exists(self, *names: str) -> Any:
        return self._call(["EXISTS", *names])

    def pttl(self, name: str) -> Any:
        return self._call(["PTTL", name])

    def execute_command(self, *args: Arg) -> Any:
        """Any command, its reply unshaped (the reader sends its per-node MGETs this way on a cluster)."""
        return self._call(list(args))

    def mget(self, names: list[str]) -> Any:
        # The alert evaluator's read of the cluster (clustertop.read.Reader) runs in the agent too.
        return self._call(["MGET", *names]) if names else self._call(["PING"], lambda r: [])

    def zrange(self, name: str, start: int, end: int, withscores: bool = False) -> Any:
        if not withscores:
            return self._call(["ZRANGE", name, int(start), int(end)])
        return self._call(["ZRANGE", name, int(start), int(end), "WITHSCORES"],
                          lambda r: [(m, float(sc)) for m, sc in zip(r[0::2], r[1::2], strict=True)])

    def pexpire(self, name: str, ms: int) -> Any:
        return self._call(["PEXPIRE", name, int(ms)], bool)

    def zadd(self, name: str, mapping: Mapping[Arg, float]) -> Any:
        args: list[Arg] = ["ZADD", name]
        for member, score in mapping.items():
            args += [score, member]
        return self._call(args)

    def xadd(self, name: str, fields: Mapping[Arg, Arg], id: str = "*", maxlen: int | None = None,  # noqa: A002
             approximate: bool = True) -> Any:
        args: list[Arg] = ["XADD", name]
        if maxlen is not None:
            args += ["MAXLEN", "~" if approximate else "=", int(maxlen)]
        args.append(id)
        for k, v in fields.items():
            args += [k, v]
        return self._call(args)

    def xack(self, name: str, groupname: str, *ids: Arg) -> Any:
        return self._call(["XACK", name, groupname, *ids])

    def xgroup_create(self, name: str, groupname: str, id: str = "$", mkstream: bool = False) -> Any:  # noqa: A002
        args: list[Arg] = ["XGROUP", "CREATE", name, groupname, id]
        if mkstream:
            args.append("MKSTREAM")
        return self._call(args, _ok)

    def xreadgroup(self, groupname: str, consumername: str, streams: Mapping[str, Arg], count: int | None = None,
                   block: int | None = None, noack: bool = False, max_bulk: int | None = None,
                   max_array: int | None = None) -> Any:
        """As redis-py's; ``max_bulk``/``max_array`` (this client only) bound what this one read keeps."""
        args: list[Arg] = ["XREADGROUP", "GROUP", groupname, consumername]
        if count is not None:
            args += ["COUNT", int(count)]
        if block is not None:
            args += ["BLOCK", int(block)]
        if noack:
            args.append("NOACK")
        args += ["STREAMS", *streams.keys(), *streams.values()]
        return self._call(args, _xread, extra_timeout_s=(block or 0) / 1000, limits=self._limits(max_bulk, max_array))

    def _limits(self, max_bulk: int | None, max_array: int | None) -> Limits | None:
        return None if max_bulk is None and max_array is None else (max_bulk, max_array)

    def xrange(self, name: str, min: str = "-", max: str = "+", count: int | None = None,  # noqa: A002
               max_bulk: int | None = None, max_array: int | None = None) -> Any:
        args: list[Arg] = ["XRANGE", name, min, max]
        if count is not None:
            args += ["COUNT", int(count)]
        return self._call(args, _stream_entries, limits=self._limits(max_bulk, max_array))

    def xrevrange(self, name: str, max: str = "+", min: str = "-", count: int | None = None) -> Any:  # noqa: A002
        args: list[Arg] = ["XREVRANGE", name, max, min]
        if count is not None:
            args += ["COUNT", int(count)]
        return self._call(args, _stream_entries)


class Client(_Commands):
    """A client on one connection (the agent uses each from one thread); on a Redis Cluster, on one
    connection per master (``store.slots.Cluster``), which it finds at first use."""

    def __init__(self, conn: Connection, detect: bool = False) -> None:
        self.conn = conn
        #: Ask at first use whether the server is a cluster node (a redis:// URL: it may be either).
        self.detect = detect
        self.cluster: Any = None  # store.slots.Cluster once cluster mode is known

    @classmethod
    def from_url(cls, url: str, password: str | None = None, ssl_ca_certs: str | None = None,
                 socket_timeout: float = 2.0, socket_connect_timeout: float = 2.0, max_bulk: int | None = None,
                 max_array: int | None = None, **_: Any) -> Client:
        """``url`` parsed by ``store.url`` (a ConfigError names what it cannot honour)."""
        from clustertop.store.url import parse

        u = parse(url)
        if password is not None:
            u.password = password
        if ssl_ca_certs and u.tls:
            u.ssl_ca_certs = ssl_ca_certs
        return cls.from_parsed(u, socket_timeout, socket_connect_timeout, max_bulk, max_array)

    @classmethod
    def from_parsed(cls, u: Any, socket_timeout: float = 2.0, socket_connect_timeout: float = 2.0,
                    max_bulk: int | None = None, max_array: int | None = None) -> Client:
        common: dict[str, Any] = dict(username=u.username, password=u.password, timeout_s=socket_timeout,
                                      connect_timeout_s=socket_connect_timeout, max_bulk=max_bulk,
                                      max_array=max_array, db=u.db, tls=u.tls, ca_file=u.ssl_ca_certs,
                                      certfile=u.ssl_certfile, keyfile=u.ssl_keyfile, cert_reqs=u.ssl_cert_reqs)
        if u.sentinel:
            from clustertop.store.sentinel import SentinelConnection

            return cls(SentinelConnection(u, **common))
        if u.path is not None:
            return cls(Connection(path=u.path, **common))
        host, port = u.hosts[0]
        return cls(Connection(host=host, port=port, **common), detect=True)

    def _detect(self) -> None:
        """Cluster or not, asked once (CLUSTER INFO: a standalone server refuses it). Connection errors
        propagate and the next use asks again."""
        try:
            (info,) = self.conn._roundtrip([["CLUSTER", "INFO"]])
        except ConnectionFailed:
            slots = sys.modules.get("clustertop.store.slots")
            if slots is not None and slots.KNOWN.get((self.conn.host, self.conn.port)):
                self._become_cluster()  # this process found a cluster there before: its other nodes may answer
                return
            raise
        self.detect = False
        if isinstance(info, bytes) and b"cluster_state:" in info:
            self._become_cluster()

    def _become_cluster(self) -> None:
        from clustertop.store.slots import Cluster

        if self.conn.db:
            raise ConnectionFailed(f"{self.conn._where()} is a Redis Cluster node: a cluster has only db 0, "
                                   f"not db {self.conn.db}")
        self.detect = False
        self.cluster = Cluster(self.conn)

    def _call(self, args: list[Arg], shape: Any = None, extra_timeout_s: float = 0.0,
              limits: Limits | None = None) -> Any:
        if self.detect:
            self._detect()
        if self.cluster is not None:
            return self.cluster.call(args, shape, extra_timeout_s, limits)
        (reply,) = self.conn._roundtrip([args], extra_timeout_s, limits)
        if isinstance(reply, ResponseError):
            if str(reply).startswith(("MOVED ", "ASK ")):  # a cluster node that would not answer CLUSTER INFO
                self._become_cluster()
                return self._call(args, shape, extra_timeout_s, limits)
            raise reply
        return shape(reply) if shape else reply

    def pipeline(self, transaction: bool = True) -> Any:
        if self.detect:
            self._detect()
        if self.cluster is not None:
            from clustertop.store.slots import ClusterPipeline

            return ClusterPipeline(self.cluster, transaction)
        return Pipeline(self.conn, transaction)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
        self.conn.close()


class WatchError(ResponseError):
    """A watched key changed before EXEC: the transaction did nothing (redis-py raises the same name)."""


class Pipeline(_Commands):
    """Buffers commands; ``execute()`` sends them in one write (inside MULTI/EXEC if transactional).

    As in redis-py: after ``watch(...)`` the pipeline runs commands at once (to read what decides the
    transaction) until ``multi()``; then ``execute()`` sends MULTI ... EXEC and raises WatchError if a
    watched key changed in between. Compare-and-set without Lua, so agents need no EVAL permission.
    """

    def __init__(self, conn: Connection, transaction: bool) -> None:
        self.conn = conn
        self.transaction = transaction
        self.stack: list[tuple[list[Arg], Any]] = []
        self.immediate = False

    def _call(self, args: list[Arg], shape: Any = None, extra_timeout_s: float = 0.0,
              limits: Limits | None = None) -> Any:
        # Queued commands are read with the connection's own limits (one read for the whole batch).
        if self.immediate:
            (reply,) = self.conn._roundtrip([args], extra_timeout_s, limits)
            if isinstance(reply, ResponseError):
                raise reply
            return shape(reply) if shape else reply
        self.stack.append((args, shape))
        return self

    def watch(self, *names: str) -> None:
        self.immediate = True
        self._call(["WATCH", *names])

    def unwatch(self) -> None:
        self._call(["UNWATCH"])
        self.immediate = False

    def multi(self) -> None:
        self.immediate = False

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.clear()
        if self.immediate:  # left while watching: the connection must not keep the WATCH
            self.immediate = False
            try:
                self.conn._roundtrip([["UNWATCH"]])
            except RedisError:
                pass

    def execute(self) -> list[Any]:
        stack, self.stack = self.stack, []
        if not stack:
            return []
        cmds = [a for a, _ in stack]
        if self.transaction:
            replies = self.conn._roundtrip([["MULTI"], *cmds, ["EXEC"]])
            queued, results = replies[1:-1], replies[-1]
            for r in queued:  # a command refused at queue time aborts the transaction
                if isinstance(r, ResponseError):
                    raise r
            if isinstance(results, ResponseError):
                raise results
            if results is None:
                raise WatchError("transaction aborted: a watched key changed (WATCH)")
        else:
            results = self.conn._roundtrip(cmds)
        out = []
        for (_, shape), r in zip(stack, results, strict=True):
            if isinstance(r, ResponseError):
                raise r
            out.append(shape(r) if shape else r)
        return out
