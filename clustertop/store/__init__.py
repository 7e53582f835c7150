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


def read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read {what}: {e.strerror}") from None


def connect(url: str, password_file: str | None = None, ca_file: str | None = None,
            timeout_s: float = 2.0, **kw: Any) -> redis.Redis:
    """A client for ``url``; nothing is sent until first use.

    Short socket timeouts on purpose: an agent blocked on a dead Redis must notice within a tick.
    """
    import redis

    opts: dict[str, Any] = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                health_check_interval=30)
    if password_file:
        opts["password"] = read_secret(password_file, "Redis password")
    if ca_file:
        opts["ssl_ca_certs"] = ca_file
    opts.update(kw)
    try:
        return redis.Redis.from_url(url, **opts)
    except ValueError as e:
        raise ConfigError(None, "redis", f"bad URL {redact(url)!r}: {e}") from None


def connect_light(url: str, password_file: str | None = None, ca_file: str | None = None,
                  timeout_s: float = 2.0) -> Any:
    """The agent's client (clustertop.store.resp): same method names and replies as redis-py for what the
    agent uses, without redis-py's ~14 MB import."""
    from clustertop.store import resp

    password = read_secret(password_file, "Redis password") if password_file else None
    try:
        return resp.Client.from_url(url, password=password, ssl_ca_certs=ca_file, socket_timeout=timeout_s,
                                    socket_connect_timeout=timeout_s)
    except ValueError as e:
        raise ConfigError(None, "redis", f"bad URL {redact(url)!r}: {e}") from None


def embedded() -> tuple[Any, Any]:
    """A fresh in-process store: (server, client factory). Each thread takes its own client."""
    import fakeredis

    server = fakeredis.FakeServer()

    def factory() -> redis.Redis:
        return fakeredis.FakeRedis(server=server)

    return server, factory


def url_problem(url: str) -> str | None:
    """Why ``url`` is no Redis URL (its password redacted), or None: one rule for every config that names one."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return f"expected a redis://, rediss:// or unix:// URL, got {redact(url)!r}"


def redact(url: str) -> str:
    """A URL without its password, fit for logs and the screen."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
