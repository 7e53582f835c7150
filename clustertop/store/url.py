"""Provides the one Redis URL parser both clients go through (redis-py's ``connect()`` and the agent's ``resp``).

Why our own: redis-py's ``from_url`` accepts any query option and silently drops what it does not know,
and knows no ``redis+sentinel://``; the agent's client read only some options. Two parsers let the agent
and the dashboard disagree about one URL. Here every option either client honours is listed, and anything
else is a ConfigError naming it.

Forms (``rediss`` = TLS):
- ``redis[s]://[user[:password]@]host[:port][/db][?opts]``: one Redis, or any node of a Redis Cluster (the
  clients detect cluster mode themselves);
- ``unix://[user[:password]@]/path/to/socket[?db=N&opts]``;
- ``redis[s]+sentinel://[user[:password]@]host[:port][,host[:port]...]/MASTER[/db][?opts]``: the master
  that Sentinel names MASTER (sentinels default to port 26379). The user and password are the data
  node's; ``sentinel_username``/``sentinel_password`` authenticate to the sentinels (none by default), or
  ``sentinel_password_file``: a file holding it (read by ``clustertop.store``, so the password need not sit
  in a unit file or a config that others can read, as the data node's comes from ``--redis-password-file``).

Options: ``db``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (required, optional,
none), ``protocol`` (2 only: the agent's client speaks RESP2, and the replies both sides decode are RESP2's),
``sentinel_username``, ``sentinel_password``, ``sentinel_password_file``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

import msgspec

from clustertop.config import ConfigError

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
OPTIONS = ("db", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "protocol",
           "sentinel_username", "sentinel_password", "sentinel_password_file")
CERT_REQS = ("required", "optional", "none")
SENTINEL_PORT = 26379


class RedisURL(msgspec.Struct, kw_only=True):
    scheme: str
    tls: bool = False
    sentinel: bool = False
    #: (host, port): the one server, or every sentinel.
    hosts: list[tuple[str, int]] = []
    path: str | None = None  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    #: Sentinel's name for the master.
    service: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    sentinel_password_file: str | None = None  # read where the URL is used (clustertop.store), not here


def _bad(url: str, why: str) -> ConfigError:
    from clustertop.store import redact

    return ConfigError(None, "redis", f"URL {redact(url)!r}: {why}")


def _port(url: str, text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _bad(url, f"bad port {text!r}")
    return int(text)


def _hostport(url: str, item: str, default: int) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:6379
        host, _, rest = item[1:].partition("]")
        return host, _port(url, rest.lstrip(":"), default)
    host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    return host or "127.0.0.1", _port(url, port, default)


def parse(url: str) -> RedisURL:
    """``url`` as both clients understand it; a ConfigError naming the option (or part) it cannot honour."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise _bad(url, f"scheme {scheme!r}: expected a redis://, rediss:// or unix:// URL "
                        "(or redis+sentinel://, rediss+sentinel://)")
    u = RedisURL(scheme=scheme, tls=scheme.startswith("rediss"), sentinel=scheme.endswith("+sentinel"))
    netloc_and_path, _, query = rest.partition("?")
    if "#" in query:
        query = query.split("#", 1)[0]
    cred, at, hostpart = netloc_and_path.rpartition("@")
    if at:
        user, colon, pw = cred.partition(":")
        u.username = unquote(user) or None
        u.password = unquote(pw) if colon else None
    else:
        hostpart = netloc_and_path
    netloc, slash, path = hostpart.partition("/")
    path = slash + path
    if scheme == "unix":
        if netloc:
            raise _bad(url, "unix:// takes a path (unix:///run/redis.sock), not a host")
        if not path or path == "/":
            raise _bad(url, "no socket path")
        u.path = unquote(path)
    elif u.sentinel:
        items = [i for i in netloc.split(",") if i]
        if not items:
            raise _bad(url, "no sentinel host")
        u.hosts = [_hostport(url, i, SENTINEL_PORT) for i in items]
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise _bad(url, "no master name: redis+sentinel://host:26379/MASTER")
        if len(parts) > 2:
            raise _bad(url, f"path {path!r}: expected /MASTER or /MASTER/DB")
        u.service = unquote(parts[0])
        if len(parts) == 2:
            u.db = _db(url, parts[1])
    else:
        if "," in netloc:
            raise _bad(url, "several hosts: give one node of a Redis Cluster (the rest are found), "
                            "or redis+sentinel:// for sentinels")
        u.hosts = [_hostport(url, netloc, 6379)]
        if path.strip("/"):
            u.db = _db(url, path.strip("/"))
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in OPTIONS:
            raise _bad(url, f"unknown option {name!r} (known: {', '.join(OPTIONS)})")
        if name == "db":
            u.db = _db(url, value)
        elif name == "protocol":
            if value != "2":
                raise _bad(url, f"protocol={value}: only protocol=2 (RESP2) is supported by both clients")
        elif name == "ssl_cert_reqs":
            # Celery/kombu broker URLs spell them CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE: the same three
            value = value.lower().removeprefix("cert_") if value.upper().startswith("CERT_") else value
            if value not in CERT_REQS:
                raise _bad(url, f"ssl_cert_reqs={value!r}: expected one of {', '.join(CERT_REQS)}")
            u.ssl_cert_reqs = value
        else:
            setattr(u, name, value or None)
    if not u.tls:
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if getattr(u, name):
                raise _bad(url, f"option {name!r} needs TLS: use rediss://")
    if u.ssl_keyfile and not u.ssl_certfile:
        raise _bad(url, "option 'ssl_keyfile' without 'ssl_certfile'")
    if u.sentinel_password_file and u.sentinel_password:
        raise _bad(url, "options 'sentinel_password' and 'sentinel_password_file' both given: keep the file")
    if u.sentinel_password_file and not u.sentinel:
        raise _bad(url, "option 'sentinel_password_file' needs redis+sentinel://")
    return u


def _db(url: str, text: str) -> int:
    if not text.isdigit() or int(text) > 1_000_000:
        raise _bad(url, f"db {text!r} is not a database number")
    return int(text)
