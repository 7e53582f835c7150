"""Provides Redis connections for both sides: real servers by URL, or the embedded store (``store.resp``: the agent's own client).

May import: stdlib, clustertop.config, clustertop.wire; redis-py and fakeredis lazily.

The embedded store is fakeredis in process: it speaks the same commands, so the agent and the
dashboard run the same code path against it as against a real server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clustertop.config import ConfigError

if TYPE_CHECKING:
    import redis

    from clustertop.store.url import RedisURL


def read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read {what}: {e.strerror}") from None


def _parsed(url: str, password_file: str | None, ca_file: str | None) -> RedisURL:
    from clustertop.store.url import parse

    u = parse(url)
    if password_file:
        u.password = read_secret(password_file, "Redis password")
    if u.sentinel_password_file:
        u.sentinel_password = read_secret(u.sentinel_password_file, "Sentinel password")
    if ca_file and u.tls:  # a CA file beside a plain redis:// URL is not TLS: it changes nothing, as before
        u.ssl_ca_certs = ca_file
    return u


def tls_options(u: RedisURL) -> dict[str, Any]:
    """redis-py's TLS keywords for ``u`` (none without TLS)."""
    if not u.tls:
        return {}
    return dict(ssl=True, ssl_ca_certs=u.ssl_ca_certs, ssl_certfile=u.ssl_certfile, ssl_keyfile=u.ssl_keyfile,
                ssl_cert_reqs=u.ssl_cert_reqs, ssl_check_hostname=u.ssl_cert_reqs == "required")


def connect(url: str, password_file: str | None = None, ca_file: str | None = None,
            timeout_s: float = 2.0, **kw: Any) -> Any:
    """A redis-py client for ``url`` (``store.url``'s forms); nothing is sent until first use.

    ``redis://`` of one server or of any Redis Cluster node: which one it is is asked at first use (``CLUSTER
    INFO``), and a cluster gets ``redis.cluster.RedisCluster``. ``redis+sentinel://``: redis-py's
    Sentinel-managed master, which asks the sentinels again after a connection error or a READONLY reply.
    Short socket timeouts on purpose: an agent blocked on a dead Redis must notice within a tick.
    """
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    u = _parsed(url, password_file, ca_file)
    # Few, short retries: redis-py's default (3, backing off up to 10 s, nested in its connect and health
    # check) held one read for 45 s on a server that drops the connection; a failover must fail a read fast
    # (the dashboard shows the outage and reads again next refresh).
    opts: dict[str, Any] = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                health_check_interval=30, protocol=2, username=u.username, password=u.password,
                                retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2), **tls_options(u))
    opts.update(kw)
    if u.sentinel:
        from redis.sentinel import Sentinel

        skw: dict[str, Any] = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                   username=u.sentinel_username, password=u.sentinel_password, **tls_options(u))
        assert u.service is not None
        return Sentinel(u.hosts, sentinel_kwargs=skw, **opts).master_for(u.service, db=u.db)
    if u.path is not None:
        return redis.Redis(unix_socket_path=u.path, db=u.db, **opts)
    host, port = u.hosts[0]
    return Detected(url, host, port, u.db, opts)


class Detected:
    """A ``redis://`` client that becomes redis-py's ``Redis`` or ``RedisCluster`` at first use.

    Asked lazily so that connect() stays free of I/O (a dashboard starts before its Redis); until the
    server answers, every use raises the connection error, and the next use asks again.
    """

    def __init__(self, url: str, host: str, port: int, db: int, opts: dict[str, Any]) -> None:
        self._url, self._host, self._port, self._db, self._opts = url, host, port, db, opts
        self._client: Any = None

    def resolve(self) -> Any:
        if self._client is None:
            import redis

            plain = redis.Redis(host=self._host, port=self._port, db=self._db, **self._opts)
            if not is_cluster_node(plain):
                self._client = plain
                return plain
            plain.close()
            if self._db:
                raise ConfigError(None, "redis", f"URL {redact(self._url)!r}: db {self._db}: "
                                                 "a Redis Cluster has only db 0")
            from redis.cluster import RedisCluster

            # opts carry connect()'s short retry policy: RedisCluster's own default is ten attempts.
            self._client = RedisCluster(host=self._host, port=self._port, **self._opts)
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)

    def close(self) -> None:
        """Closes the client if one was made (never connects just to close)."""
        if self._client is not None:
            self._client.close()


def sharded(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster, where one MULTI cannot span slots: redis-py's
    ``RedisCluster`` (``connect()``), or the agent's client once it found a cluster (its pipelines split a
    MULTI per slot themselves)."""
    if isinstance(client, Detected):
        client = client.resolve()
    if getattr(client, "bounded_reads", False):  # the agent's client (redis-py's has a cluster() command method)
        return getattr(client, "cluster", None) is not None
    return callable(getattr(client, "get_node_from_key", None))


def is_cluster_node(client: Any) -> bool:
    """Whether the server behind ``client`` runs in cluster mode (``CLUSTER INFO`` answers; a standalone
    server refuses it). Connection errors propagate."""
    from clustertop.store.resp import response_errors

    try:
        info = client.execute_command("CLUSTER", "INFO")
    except response_errors():
        return False
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return "cluster_state:" in text


def connect_light(url: str, password_file: str | None = None, ca_file: str | None = None,
                  timeout_s: float = 2.0) -> Any:
    """The agent's client (clustertop.store.resp): same method names and replies as redis-py for what the
    agent uses, without redis-py's ~14 MB import. Same URL rules as connect() (``store.url``)."""
    from clustertop.store import resp

    return resp.Client.from_parsed(_parsed(url, password_file, ca_file), socket_timeout=timeout_s,
                                   socket_connect_timeout=timeout_s)


def embedded() -> tuple[Any, Any]:
    """A fresh in-process store: (server, client factory). Each thread takes its own client."""
    import fakeredis

    server = fakeredis.FakeServer()

    def factory() -> redis.Redis:
        return fakeredis.FakeRedis(server=server)

    return server, factory


def url_problem(url: str) -> str | None:
    """Why ``url`` is no Redis URL both clients can use (its password redacted), or None: one rule for every
    config that names one (``store.url``)."""
    from clustertop.store.url import parse

    try:
        parse(url)
    except ConfigError as e:
        return e.problem
    return None


def redact(url: str) -> str:
    """A URL without its password, fit for logs and the screen."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
