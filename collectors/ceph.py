"""Provides the ``ceph`` cluster-scope collector: the ceph-mgr dashboard REST API, polled cheaply.

Every interval: ``GET /api/health/minimal`` (status, checks, mons, mgrs, OSD up/in, PG states,
objects, capacity, client and recovery I/O). Every ``detail_interval``: ``/api/osd``,
``/api/pool?stats=true`` and ``/api/block/image`` (RBD images with parents, snapshots and the
children of protected snapshots), whose result is kept between detail polls (``detail_ts``).

Config, ``[collectors.ceph]``::

    urls = ["https://mgr-a:8443", "https://mgr-b:8443"]  # every mgr: the active one is found
    username = "clustertop"                             # a read-only dashboard user is enough
    password_file = "/etc/clustertop/ceph.pass"         # or token_file; never the password itself
    ca_file = "/etc/clustertop/ceph-ca.pem"             # verify the dashboard's TLS certificate
    # verify = false                                    # only if you really mean it
    detail_interval = 60                                # seconds between OSD/pool/RBD polls
    request_timeout = 5                                 # seconds per HTTP request (default: a share of timeout)

Failure: ``collect()`` raises ``CephUnreachable`` ("Ceph unreachable: all mgr URLs failed: ...")
or ``CephLoginRefused``; the collector keeps ``last_good`` (the last ``schema.Ceph`` it returned)
and ``last_ok_ts`` so the agent can publish ``ClusterPayload(ok=False, error=..., ceph=last_good,
last_ok_ts=...)``. A refused login is not retried every tick: ten failed logins lock the
dashboard account, so the collector waits until the password file changes (or LOGIN_RETRY_S).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from clustertop.collectors import ceph_parse
from clustertop.collectors.base import Context, Section
from clustertop.config import ConfigError, Invalid, NonNegative, Positive, check_http_urls, check_tls, convert
from clustertop.errors import describe
from clustertop.wire import schema

SECTION = "collectors.ceph"

DEFAULT_INTERVAL_S = 10.0
DEFAULT_DETAIL_INTERVAL_S = 60.0
DEFAULT_TIMEOUT_S = 5.0
#: After a refused login, wait this long before trying again (unless the password file changes).
LOGIN_RETRY_S = 30 * 60.0
#: /api/block/image pages (the mgr opens every image it lists: keep each request short).
IMAGE_PAGE = 50
#: Images kept in the payload: a snapshot must stay small (wire.MAX_PAYLOAD_BYTES).
MAX_IMAGES = 500

#: Accept versions per endpoint (the API answers 415 to any other version).
VERSIONS = {"/api/block/image": "2.0", "/api/host": "1.1", "/api/osd/settings": "0.1", "/api/cluster": "0.1"}
#: A standby mgr with ``standby_behaviour = error`` answers these; so does a proxy with no backend.
UNAVAILABLE = {500, 502, 503, 504}


class CephError(Exception):
    """Ceph could not be read; the message says why, in words, on one line."""


class CephUnreachable(CephError):
    """No configured mgr answered as the active dashboard."""


class CephLoginRefused(CephError):
    """The dashboard refused the credentials; not retried in a loop (account lockout)."""


class _Moved(Exception):
    """A standby mgr redirected us to the active one."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class _Unavailable(Exception):
    """This mgr answered but cannot serve (standby, restarting): try the next one."""


@dataclass(frozen=True)
class Settings:
    urls: tuple[str, ...]
    username: str | None
    password_file: str | None
    token_file: str | None
    verify: bool | str  # True, False, or the CA file
    detail_interval_s: float
    timeout_s: float


def _base(url: str) -> str:
    return url.rstrip("/")


class CephConfig(Section):
    """``[collectors.ceph]``: what the file may say. What needs the machine (readable files) is
    checked when the collector is built, so a config can be checked anywhere."""

    urls: list[str] = []  # ceph-mgr dashboard URLs; the standbys answer with a redirect or 503
    username: str | None = None
    password_file: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    verify: bool = True
    detail_interval: NonNegative = DEFAULT_DETAIL_INTERVAL_S  # hosts, OSD settings, images; 0 = every poll
    request_timeout: Positive | None = None  # None: a share of the runner's timeout (see parse_settings)
    # Refused, never used: a secret in the config file ends up in backups and `ps`-able editors.
    password: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        for secret in ("password", "token"):
            if getattr(self, secret) is not None:
                raise Invalid(secret, f"not allowed: put it in a file readable only by the agent and set {secret}_file")
        check_http_urls("urls", self.urls, "a list of ceph-mgr dashboard URLs, e.g. [\"https://mgr-a:8443\"]")
        if (self.password_file is None) == (self.token_file is None):
            raise Invalid("password_file", "set exactly one of password_file or token_file")
        if self.password_file is not None and not self.username:
            raise Invalid("username", "required with password_file")
        check_tls(self.ca_file, self.verify)


def parse_settings(options: dict[str, Any], file: str | None, runner_timeout_s: float | None = None) -> Settings:
    """Validate ``[collectors.ceph]``; every problem is a ConfigError naming the key."""
    c = convert(options, CephConfig, file, SECTION)

    def key(k: str) -> str:
        return f"[{SECTION}] {k}"

    for k, path in (("password_file", c.password_file), ("token_file", c.token_file), ("ca_file", c.ca_file)):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(file, key(k), f"cannot read {path!r}")
    # Per-request timeout. ``timeout`` in the section is the runner's deadline for a whole poll
    # (stripped by the agent, passed as ``runner_timeout_s``): by default each request gets an equal
    # share of it across the mgr URLs, so failing over through dead mgrs still ends inside the poll.
    timeout = c.request_timeout
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_S
        if runner_timeout_s:
            timeout = min(DEFAULT_TIMEOUT_S, max(0.5, runner_timeout_s / max(1, len(c.urls))))
    return Settings(
        urls=tuple(_base(u) for u in c.urls), username=c.username, password_file=c.password_file,
        token_file=c.token_file, verify=c.ca_file if c.ca_file is not None else c.verify,
        detail_interval_s=float(c.detail_interval), timeout_s=float(timeout),
    )


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class CephApi:
    """The dashboard REST API over every configured mgr: finds the active one, logs in, re-logs in.

    Thin: no parsing beyond the JSON decode. ``get`` raises CephError subclasses only.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        import httpx  # only a node configured for Ceph pays for it

        self._httpx = httpx
        self.s = settings
        self.clock = clock
        # Redirects are handled by hand: a standby answers 303 to a POST /api/auth, which a
        # generic client would replay as a GET; and we want to remember who the active mgr is.
        verify: Any = settings.verify
        if isinstance(verify, str):
            import ssl

            verify = ssl.create_default_context(cafile=verify)  # only this CA, not the system ones too
        self.http = httpx.Client(verify=verify, timeout=settings.timeout_s, follow_redirects=False,
                                 headers={"User-Agent": "clustertop-ceph"})
        self.active: str | None = None
        self.token: str | None = None
        self._token_mtime: float | None = None
        self._refused: tuple[float | None, float, str] | None = None  # (file mtime, when, why)
        self.login_attempts = 0

    def close(self) -> None:
        self.http.close()

    # -- auth ----------------------------------------------------------------------------------

    def _refusal(self, why: str) -> str:
        user = self.s.username or "?"
        return (f"Ceph login refused for user {user} (bad password?): {why}; not retrying until the password "
                f"file changes or {LOGIN_RETRY_S / 60:.0f} min pass (ten failed logins lock the account)")

    def _login(self, base: str) -> None:
        if self.s.token_file is not None:
            self._read_token()
            return
        assert self.s.password_file is not None
        if self._refused is not None:
            mtime, when, why = self._refused
            if _mtime(self.s.password_file) == mtime and self.clock() - when < LOGIN_RETRY_S:
                raise CephLoginRefused(self._refusal(why))
            self._refused = None
        mtime = _mtime(self.s.password_file)
        try:
            with open(self.s.password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except OSError as e:
            raise CephError(f"Ceph password_file unreadable: {describe(e)}") from None
        self.login_attempts += 1
        resp = self.http.post(f"{base}/api/auth", json={"username": self.s.username, "password": password},
                              headers={"Accept": "application/vnd.ceph.api.v1.0+json"})
        self._check_moved(base, resp)
        if resp.status_code in (400, 401, 403):
            why = ceph_parse.error_detail(resp.content)
            self._refused = (mtime, self.clock(), why)
            raise CephLoginRefused(self._refusal(why))
        if resp.status_code not in (200, 201):
            raise CephError(f"Ceph login at {base} failed: HTTP {resp.status_code}: "
                            f"{ceph_parse.error_detail(resp.content)}")
        token = _json(resp).get("token") if isinstance(_json(resp), dict) else None
        if not isinstance(token, str) or not token:
            raise CephError(f"Ceph login at {base} answered without a token")
        self.token = token

    def _read_token(self) -> None:
        assert self.s.token_file is not None
        mtime = _mtime(self.s.token_file)
        if self.token is not None and mtime == self._token_mtime:
            # The token we hold was refused and the file has not changed: asking again is pointless.
            raise CephLoginRefused("Ceph refused the token from token_file (expired?); waiting for the file to change")
        try:
            with open(self.s.token_file, encoding="utf-8") as f:
                self.token = f.read().strip() or None
        except OSError as e:
            raise CephError(f"Ceph token_file unreadable: {describe(e)}") from None
        self._token_mtime = mtime
        if self.token is None:
            raise CephError("Ceph token_file is empty")

    # -- requests ------------------------------------------------------------------------------

    def _check_moved(self, base: str, resp: Any) -> None:
        if 300 <= resp.status_code < 400 and resp.headers.get("location"):
            target = urljoin(f"{base}/", resp.headers["location"])
            parts = urlsplit(target)
            # The standby points at the active mgr's root URL (with its url_prefix, if any).
            raise _Moved(_base(f"{parts.scheme}://{parts.netloc}{parts.path}"))
        if resp.status_code in UNAVAILABLE:
            raise _Unavailable(f"HTTP {resp.status_code}: {ceph_parse.error_detail(resp.content, 80)}")

    def _send(self, base: str, path: str, params: dict[str, Any] | None, method: str = "GET",
              body: Any = None, version: str | None = None) -> Any:
        version = version or VERSIONS.get(path, "1.0")
        headers = {"Accept": f"application/vnd.ceph.api.v{version}+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if method == "GET":
            return self.http.get(f"{base}{path}", params=params, headers=headers)
        return self.http.request(method, f"{base}{path}", params=params, json=body, headers=headers)

    def _at(self, base: str, path: str, params: dict[str, Any] | None, method: str = "GET",
            body: Any = None, version: str | None = None) -> Any:
        if self.token is None:
            self._login(base)
        resp = self._send(base, path, params, method, body, version)
        if resp.status_code == 401:
            # Token expired (8 h by default) or the mgr restarted: log in again, once.
            self.token = None if self.s.token_file is None else self.token
            self._login(base)
            resp = self._send(base, path, params, method, body, version)
            if resp.status_code == 401:
                raise CephError(f"Ceph refused a fresh token on {path}: {ceph_parse.error_detail(resp.content)}")
        self._check_moved(base, resp)
        if method != "GET" and resp.status_code in (200, 201, 202, 204):
            return resp  # 201: an RBD task finished in time; 202: still running (the caller waits)
        if resp.status_code != 200:
            raise CephError(f"Ceph {method + ' ' if method != 'GET' else ''}{path}: HTTP {resp.status_code}: "
                            f"{ceph_parse.error_detail(resp.content)}")
        return resp

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[Any, Any]:
        """GET ``path`` from the active mgr, failing over through the configured URLs.

        Returns (decoded JSON, response headers). Raises CephUnreachable when no mgr serves it.
        """
        data, resp = self.request("GET", path, params)
        return data, resp.headers

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                version: str | None = None) -> tuple[Any, Any]:
        """``method`` ``path`` on the active mgr (the operator side's PUT/POST/DELETE too), failing over.

        Returns (decoded JSON or None for an empty body, the response). A change (not GET) moves on
        to the next mgr only when the connection could not be made: after a timeout the change may
        have happened, and sending it twice is not ours to decide.
        """
        change = method != "GET"
        order = ([self.active] if self.active else []) + [u for u in self.s.urls if u != self.active]
        tried: set[str] = set()
        failures: list[str] = []
        while order:
            base = order.pop(0)
            if base in tried:
                continue
            tried.add(base)
            try:
                resp = self._at(base, path, params, method, body, version)
            except self._httpx.TransportError as e:  # refused, reset, timeout, TLS verification
                if change and not isinstance(e, self._httpx.ConnectError):
                    raise CephError(f"Ceph {method} {path} at {base}: {describe(e)}: it may or may not have "
                                    "happened; look before trying again") from None
                failures.append(f"{base}: {describe(e)}")
                if base == self.active:
                    self.active = None
                continue
            except _Moved as m:
                if base.startswith("https:") and not m.target.startswith("https:"):
                    # The password and token would then cross the network in clear text.
                    failures.append(f"{base}: standby, points at {m.target}: not following HTTPS -> HTTP")
                    continue
                failures.append(f"{base}: standby, points at {m.target}")
                if len(tried) < len(self.s.urls) + 2:  # follow, but never around in circles
                    order.insert(0, m.target)
                continue
            except _Unavailable as u:
                failures.append(f"{base}: {u}")
                continue
            self.active = base
            if change:  # a change may answer nothing, or JSON null
                try:
                    return (resp.json() if resp.content.strip() else None), resp
                except ValueError:
                    raise CephError(f"Ceph {method} {path}: answer is not JSON") from None
            data = _json(resp)
            if data is None:
                raise CephError(f"Ceph {path}: answer is not JSON")
            return data, resp
        raise CephUnreachable(f"Ceph unreachable: all mgr URLs failed: {'; '.join(failures)}")


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


class CephCollector:
    """Collector ``ceph`` (cluster scope): returns ``schema.Ceph`` for ``ClusterPayload.ceph``.

    ``last_good`` / ``last_ok_ts`` hold the last result and when it was taken (wall clock), so
    the runner can publish them with ``ok=False`` while Ceph is unreachable.
    """

    name = "ceph"
    field = "ceph"
    scope = "cluster"
    default_interval_s = DEFAULT_INTERVAL_S
    config_type = CephConfig

    def __init__(self, ctx: Context, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = parse_settings(ctx.config, ctx.config_file, ctx.timeout_s)
        self.clock, self.wall = clock, wall
        self.api = CephApi(self.settings, clock)
        self.last_good: schema.Ceph | None = None
        self.last_ok_ts: float | None = None
        self.last_error: str | None = None
        self._detail_due = 0.0  # monotonic
        self._fsid: str | None = None
        self._osds: list[schema.CephOsd] | None = None
        self._pools: list[schema.CephPool] | None = None
        self._images: list[schema.RbdImage] | None = None
        self._detail_ts: float | None = None
        self._detail_errors: list[str] = []

    def collect(self) -> schema.Ceph:
        try:
            health, _ = self.api.get("/api/health/minimal")
            ceph = ceph_parse.parse_health(health)
            if self.clock() >= self._detail_due:
                self._poll_detail()
                self._detail_due = self.clock() + self.settings.detail_interval_s
        except CephError as e:
            self.last_error = str(e)
            raise
        ceph.fsid = self._fsid
        ceph.osds, ceph.pools, ceph.images = self._osds, self._pools, self._images
        ceph.detail_ts = self._detail_ts
        ceph.errors = list(self._detail_errors) or None
        ceph.url = self.api.active
        self.last_good, self.last_ok_ts, self.last_error = ceph, self.wall(), None
        return ceph

    def _poll_detail(self) -> None:
        """OSDs, pools and RBD images: each may fail alone (a user without the rbd-image
        permission, an endpoint a release lacks); that part keeps its previous value."""
        errors: list[str] = []
        parts: list[tuple[str, Callable[[], None]]] = [
            ("/api/osd", self._poll_osds), ("/api/pool", self._poll_pools), ("/api/block/image", self._poll_images),
        ]
        if self._fsid is None:
            parts.insert(0, ("/api/monitor", self._poll_fsid))
        for i, (what, poll) in enumerate(parts):
            try:
                poll()
            except CephLoginRefused:
                raise
            except CephUnreachable as e:
                # The mgr went away after the health poll: do not wait out the timeouts again for
                # each remaining part; the next health poll will say so.
                errors.append(f"{what}: {e}")
                errors.extend(f"{w}: skipped" for w, _ in parts[i + 1:])
                break
            except CephError as e:
                errors.append(f"{what}: {e}")
        self._detail_errors = errors
        self._detail_ts = self.wall()

    def _poll_fsid(self) -> None:
        self._fsid = ceph_parse.parse_fsid(self.api.get("/api/monitor")[0])

    def _poll_osds(self) -> None:
        self._osds = ceph_parse.parse_osds(self.api.get("/api/osd")[0])

    def _poll_pools(self) -> None:
        self._pools = ceph_parse.parse_pools(self.api.get("/api/pool", {"stats": "true"})[0])

    def _poll_images(self) -> None:
        entries: list[Any] = []
        while len(entries) < MAX_IMAGES:
            data, headers = self.api.get("/api/block/image", {"offset": len(entries), "limit": IMAGE_PAGE})
            page = ceph_parse.image_entries(data)
            entries.extend(page)
            try:
                total: int | None = int(headers.get("x-total-count", ""))
            except ValueError:
                total = None
            if len(page) < IMAGE_PAGE or (total is not None and len(entries) >= total):
                break
        self._images = ceph_parse.parse_images(entries[:MAX_IMAGES])

    def close(self) -> None:
        self.api.close()
