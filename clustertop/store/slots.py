"""Provides the agent's Redis Cluster routing, for ``store.resp``: slots, a slot map, MOVED/ASK.

- A key's slot is CRC16 (XMODEM) of the key, or of its hash tag (the part between the first ``{`` and the
  next ``}``, if not empty), mod 16384: what Redis itself computes. ``wire``'s per-node keys are tagged
  with the host, so a node's keys share a slot and its MULTIs stay in one.
- The slot map comes from ``CLUSTER SLOTS`` of any node that answers (those last seen, then the URL's).
  It is read again after a MOVED reply and before the first command after a connection failure (the master
  may have died and its replica been promoted).
- ASK (a slot being migrated): that one command goes to the named node after ``ASKING``.
- A pipeline is split by master (plain) or by slot (transactional: one MULTI/EXEC per slot, the WATCHed
  slot's first). So a MULTI is atomic within a slot, which is all the agent needs: each of its
  transactions is about one node's keys (``publisher``: payloads + seal; ``trust.append_audit``: audit,
  result, replay marker, ack), plus writes to shared keys (node index, cluster payloads) that were never
  needed in the same transaction.
- Nothing here waits or retries on a connection failure: the error reaches the caller (the agent backs off
  and retries next tick), and the next command refreshes the map first.
"""

from __future__ import annotations

import bisect
from typing import Any

from clustertop.store.resp import (
    Arg,
    Connection,
    ConnectionFailed,
    Limits,
    Pipeline,
    ResponseError,
    _Commands,
)

SLOTS = 16384
#: Per URL node (host, port): every node its cluster's last slot map named, for this whole process. A client
#: made anew after a failure (the agent's command loop does that) must find the cluster even while the
#: node its URL names is the master that died.
KNOWN: dict[tuple[str, int], list[tuple[str, int]]] = {}
#: MOVED/ASK followed for one command at most this many times (a slot moves once per migration step).
MAX_REDIRECTS = 5


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def keyslot(key: Arg) -> int:
    k = key if isinstance(key, bytes) else str(key).encode()
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    return crc16(k) % SLOTS


def key_of(args: list[Arg]) -> Arg | None:
    """The (first) key of a command the agent sends; None for keyless ones (PING)."""
    name = (args[0].decode() if isinstance(args[0], bytes) else str(args[0])).upper()
    if name == "XREADGROUP":
        for i, a in enumerate(args):
            if isinstance(a, (str, bytes)) and (a.upper() in ("STREAMS", b"STREAMS")):
                return args[i + 1]
        return None
    if name == "XGROUP":
        return args[2] if len(args) > 2 else None
    if name in ("PING", "MULTI", "EXEC", "UNWATCH", "DISCARD", "ROLE", "INFO", "CLUSTER", "ASKING"):
        return None
    return args[1] if len(args) > 1 else None


def _redirect(r: Any) -> tuple[str, int, tuple[str, int]] | None:
    """("MOVED"|"ASK", slot, (host, port)) of a redirect reply, else None."""
    if not isinstance(r, ResponseError):
        return None
    parts = str(r).split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = parts[2].rpartition(":")
    if not port.isdigit() or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), (host, int(port))


class Cluster:
    """The slot map and one connection per node; made from the connection the URL named."""

    def __init__(self, seed: Connection) -> None:
        self.seed = seed
        self.seeds = [(seed.host, seed.port)]
        self.conns: dict[tuple[str, int], Connection] = {(seed.host, seed.port): seed}
        # ranges sorted by start: starts[i] .. ends[i] are served by masters[i]
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.masters: list[tuple[str, int]] = []
        # every node CLUSTER SLOTS named: where to ask next time
        self.nodes: list[tuple[str, int]] = list(KNOWN.get((seed.host, seed.port), []))
        self.stale = True

    def conn(self, addr: tuple[str, int]) -> Connection:
        c = self.conns.get(addr)
        if c is None:
            s = self.seed
            c = self.conns[addr] = Connection(
                host=addr[0], port=addr[1], username=s.username, password=s.password, tls=s.tls,
                ca_file=s.ca_file, certfile=s.certfile, keyfile=s.keyfile, cert_reqs=s.cert_reqs,
                timeout_s=s.timeout_s, connect_timeout_s=s.connect_timeout_s)
            c.limits = s.limits
        return c

    def refresh(self) -> None:
        problems = []
        for addr in dict.fromkeys([*self.nodes, *self.seeds]):
            try:
                (reply,) = self.conn(addr)._roundtrip([["CLUSTER", "SLOTS"]])
            except ConnectionFailed as e:
                problems.append(str(e))
                continue
            if isinstance(reply, ResponseError) or not isinstance(reply, list) or not reply:
                problems.append(f"{addr[0]}:{addr[1]}: CLUSTER SLOTS: {reply!r:.120}")
                continue
            self._load(reply, addr)
            self.stale = False
            return
        raise ConnectionFailed(f"no Redis Cluster node answers CLUSTER SLOTS: {'; '.join(problems)}")

    def _load(self, reply: list[Any], via: tuple[str, int]) -> None:
        rows, nodes = [], []
        for row in reply:
            start, end, *servers = row
            addrs = [((s[0].decode() if s[0] else via[0]), int(s[1])) for s in servers]  # "" means "the one asked"
            rows.append((int(start), int(end), addrs[0]))
            nodes += addrs
        rows.sort()
        self.starts = [r[0] for r in rows]
        self.ends = [r[1] for r in rows]
        self.masters = [r[2] for r in rows]
        self.nodes = list(dict.fromkeys(nodes))
        KNOWN[self.seeds[0]] = self.nodes
        for addr in [a for a in self.conns if a not in self.nodes and a not in self.seeds]:
            self.conns.pop(addr).close()  # a node gone from the cluster

    def master_of(self, slot: int | None) -> tuple[str, int]:
        if self.stale:
            self.refresh()
        if slot is None:
            return self.masters[0]
        i = bisect.bisect_right(self.starts, slot) - 1
        if i < 0 or slot > self.ends[i]:
            raise ConnectionFailed(f"slot {slot} is served by no master (the cluster is down or being resharded)")
        return self.masters[i]

    def roundtrip(self, addr: tuple[str, int], commands: list[list[Arg]], extra_timeout_s: float = 0.0,
                  limits: Limits | None = None) -> list[Any]:
        try:
            return self.conn(addr)._roundtrip(commands, extra_timeout_s, limits)
        except ConnectionFailed:
            self.stale = True  # a master gone: its replica may be the master by the next command
            raise

    def call(self, args: list[Arg], shape: Any = None, extra_timeout_s: float = 0.0,
             limits: Limits | None = None) -> Any:
        if args[0] in ("MGET", b"MGET") and len({keyslot(k) for k in args[1:]}) > 1:
            # Keys of several slots: one MGET per slot (Redis refuses CROSSSLOT), the values put back in order.
            by_slot: dict[int, list[int]] = {}
            for i, k in enumerate(args[1:]):
                by_slot.setdefault(keyslot(k), []).append(i)
            values: list[Any] = [None] * (len(args) - 1)
            for idxs in by_slot.values():
                for i, v in zip(idxs, self.call(["MGET", *(args[1 + i] for i in idxs)], None, extra_timeout_s,
                                                limits), strict=True):
                    values[i] = v
            return shape(values) if shape else values
        key = key_of(args)
        addr = self.master_of(None if key is None else keyslot(key))
        asking = False
        for _ in range(MAX_REDIRECTS):
            cmds: list[list[Arg]] = [["ASKING"], args] if asking else [args]
            reply = self.roundtrip(addr, cmds, extra_timeout_s, limits)[-1]
            red = _redirect(reply)
            if red is None:
                if isinstance(reply, ResponseError):
                    raise reply
                return shape(reply) if shape else reply
            kind, _, addr = red
            asking = kind == "ASK"
            if kind == "MOVED":
                self.stale = True  # the map is out of date: read it again at the next command
        raise ConnectionFailed(f"{args[0]!r}: more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        for c in self.conns.values():
            c.close()


class ClusterPipeline(_Commands):
    """``resp.Pipeline``'s interface on a cluster: commands grouped by master (plain) or by slot
    (transactional), each group a ``resp.Pipeline`` on that master's connection."""

    def __init__(self, cluster: Cluster, transaction: bool) -> None:
        self.cluster = cluster
        self.transaction = transaction
        self.stack: list[tuple[list[Arg], Any]] = []
        self.pinned: Pipeline | None = None  # the WATCHing one
        self.pinned_slot: int | None = None

    def _call(self, args: list[Arg], shape: Any = None, extra_timeout_s: float = 0.0,
              limits: Limits | None = None) -> Any:
        if self.pinned is not None and self.pinned.immediate:
            return self.pinned._call(args, shape, extra_timeout_s, limits)
        self.stack.append((args, shape))
        return self

    def watch(self, *names: str) -> None:
        slot = keyslot(names[0])
        if any(keyslot(n) != slot for n in names):
            raise ResponseError("CROSSSLOT WATCH of keys in different slots")
        self.pinned = Pipeline(self.cluster.conn(self.cluster.master_of(slot)), True)
        self.pinned_slot = slot
        try:
            self.pinned.watch(*names)
        except ConnectionFailed:
            self.cluster.stale = True
            raise

    def unwatch(self) -> None:
        if self.pinned is not None:
            self.pinned.unwatch()

    def multi(self) -> None:
        if self.pinned is not None:
            self.pinned.multi()

    def __enter__(self) -> ClusterPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.clear()
        if self.pinned is not None:
            self.pinned.__exit__()

    def execute(self) -> list[Any]:
        stack, self.stack = self.stack, []
        groups: dict[Any, list[int]] = {}
        if self.pinned_slot is not None:
            groups[self.pinned_slot] = []  # the watched slot goes first: if it aborts, nothing else is sent
        for i, (args, _) in enumerate(stack):
            key = key_of(args)
            slot = None if key is None else keyslot(key)
            group = slot if self.transaction else self.cluster.master_of(slot)
            groups.setdefault(group, []).append(i)
        out: list[Any] = [None] * len(stack)
        for group, idxs in groups.items():
            if not idxs:
                continue
            items = [stack[i] for i in idxs]
            got = self._transaction(group, items) if self.transaction else self._plain(group, items)
            for i, r in zip(idxs, got, strict=True):
                out[i] = r
        return out

    def _transaction(self, slot: int | None, items: list[tuple[list[Arg], Any]]) -> list[Any]:
        for _ in range(MAX_REDIRECTS):
            if slot is not None and slot == self.pinned_slot and self.pinned is not None:
                p = self.pinned
            else:
                p = Pipeline(self.cluster.conn(self.cluster.master_of(slot)), True)
            p.stack = list(items)
            try:
                return p.execute()
            except ConnectionFailed:
                self.cluster.stale = True
                raise
            except ResponseError as e:
                # Refused at queue time (MOVED/ASK): the MULTI was aborted, nothing ran: safe to send again,
                # unless it was WATCHing (the watch was on a master that no longer owns the slot).
                if _redirect(e) is None or p is self.pinned:
                    raise
                self.cluster.stale = True
        raise ConnectionFailed(f"transaction on slot {slot}: more than {MAX_REDIRECTS} redirects")

    def _plain(self, addr: tuple[str, int], items: list[tuple[list[Arg], Any]]) -> list[Any]:
        replies = self.cluster.roundtrip(addr, [a for a, _ in items])
        out = []
        for (args, shape), r in zip(items, replies, strict=True):
            if _redirect(r) is not None:
                # That command did not run there: send it where it belongs now (the others did run: never resent)
                self.cluster.stale = True
                out.append(self.cluster.call(args, shape))
                continue
            if isinstance(r, ResponseError):
                raise r
            out.append(shape(r) if shape else r)
        return out
