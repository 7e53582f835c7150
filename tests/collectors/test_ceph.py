"""The ceph collector against a real HTTP server replaying real ceph-mgr dashboard answers.

``FakeMgr`` stands in for ceph-mgr's dashboard module where a real one is not needed (parsing and
auth-flow tests; tests/collectors/test_ceph_real.py runs the real cluster). It is a real ``http.server`` on a
loopback port that keeps the dashboard's semantics as captured from Ceph 16.2.15 (see
tests/fixtures/ceph/README.md): 401 with the real body without a valid Bearer token, tokens from
``POST /api/auth`` (201), 400 with the real ``invalid_credentials`` body on a bad password and the
account locked after ten failures, 415 on a wrong Accept version (/api/block/image is v2.0 only,
paginated by offset/limit with a default limit of 5 and ``X-Total-Count``), and a standby's
``303 See Other`` to the active mgr. It counts logins so the tests can prove a bad password is not
retried every tick.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from clustertop import wire
from clustertop.collectors import ceph
from clustertop.collectors.base import Context
from clustertop.config import ConfigError
from clustertop.errors import describe
from clustertop.read import cluster
from clustertop.wire import schema
from tests.conftest import FIXTURES, free_port

FIX = FIXTURES / "ceph"
PASSWORD = "Adm1n-p4ss!"
FSID = "db6ad7bb-4c40-4c60-bfd3-9573a502e3fc"

#: Accept version per endpoint, as the real dashboard enforces them.
ENDPOINTS = {
    "/api/health/minimal": ("1.0", "api_health_minimal"),
    "/api/summary": ("1.0", "api_summary"),
    "/api/osd": ("1.0", "api_osd"),
    "/api/pool": ("1.0", "api_pool__stats-true"),
    "/api/monitor": ("1.0", "api_monitor"),
    "/api/block/image": ("2.0", "api_block_image"),
}


def fixture_body(stem: str, scenario: str) -> bytes:
    """The scenario's file, or the healthy one when that scenario did not capture it."""
    for name in (f"{stem}{scenario}.json", f"{stem}.json"):
        if (FIX / name).exists():
            return (FIX / name).read_bytes()
    raise FileNotFoundError(stem)


class FakeMgr:
    def __init__(self, password: str = PASSWORD, tls: tuple[str, str] | None = None) -> None:
        self.password = password
        self.scenario = ""
        self.tokens: set[str] = set()
        self.login_attempts = 0
        self.failed_logins = 0
        self.requests: list[tuple[str, str, str, int]] = []  # method, path, accept, status
        self.standby_of: str | None = None  # redirect everything there (standby_behaviour=redirect)
        self.unavailable = False  # 503 to everything (standby_behaviour=error)
        self.fail: dict[str, int] = {}  # path -> status
        self.conns: set[socket.socket] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.mgr = self  # type: ignore[attr-defined]
        scheme = "http"
        if tls is not None:
            sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sslctx.load_cert_chain(*tls)
            self.server.socket = sslctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Like a mgr that dies: the listener and every open keep-alive connection go away."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self.conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def paths(self, path: str) -> list[tuple[str, str, str, int]]:
        return [r for r in self.requests if r[1] == path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.mgr.conns.add(self.connection)

    @property
    def mgr(self) -> FakeMgr:
        return self.server.mgr  # type: ignore[attr-defined,no-any-return]

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        url = urlsplit(self.path)
        self.mgr.requests.append((self.command, url.path, self.headers.get("Accept", ""), status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Server", "Ceph-Dashboard")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, detail: str) -> None:
        reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 415: "Unsupported Media Type",
                  503: "Service Unavailable"}.get(status, "Error")
        self._send(status, json.dumps({"status": f"{status} {reason}", "detail": detail,
                                       "request_id": str(uuid.uuid4())}).encode())

    def _standby(self) -> bool:
        if self.mgr.standby_of:
            body = f'This resource can be found at <a href="{self.mgr.standby_of}/">'.encode()
            self._send(303, body, "text/html;charset=utf-8", {"Location": f"{self.mgr.standby_of}/"})
            return True
        if self.mgr.unavailable:
            self._error(503, "Keep on looking")
            return True
        return False

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self._standby():
            return
        if urlsplit(self.path).path != "/api/auth":
            self._error(404, "The path was not found.")
            return
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._error(415, "Expected an entity of content type application/json, text/javascript")
            return
        mgr = self.mgr
        mgr.login_attempts += 1
        creds = json.loads(raw or b"{}")
        # Ten failures disable the account: after that even the right password is refused.
        if creds.get("username") != "admin" or creds.get("password") != mgr.password or mgr.failed_logins >= 10:
            mgr.failed_logins += 1
            self._send(400, fixture_body("api_auth-bad-password", ""))
            return
        token = uuid.uuid4().hex
        mgr.tokens.add(token)
        body = json.loads(fixture_body("api_auth", ""))
        body["token"] = token
        self._send(201, json.dumps(body).encode(), "application/vnd.ceph.api.v1.0+json")

    def do_GET(self) -> None:  # noqa: N802
        if self._standby():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        mgr = self.mgr
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in mgr.tokens:
            self._send(401, fixture_body("api_health_minimal-unauthenticated", ""))
            return
        if url.path in mgr.fail:
            self._error(mgr.fail[url.path], "Access denied")
            return
        if url.path not in ENDPOINTS:
            self._error(404, "The path was not found.")
            return
        version, stem = ENDPOINTS[url.path]
        m = re.fullmatch(r"application/vnd\.ceph\.api\.v(\d+\.\d+)\+json", self.headers.get("Accept", ""))
        asked = m.group(1) if m else "1.0"  # plain application/json counts as 1.0, as in Ceph
        if asked != version:
            self._error(415, f"Incorrect version: endpoint is '{version}', client requested '{asked}'")
            return
        if url.path == "/api/pool" and query.get("stats") != "true":
            self._error(404, "this fake only captured /api/pool?stats=true")
            return
        body = fixture_body(stem, mgr.scenario)
        headers: dict[str, str] = {}
        if url.path == "/api/block/image":
            body, total = self._page(body, int(query.get("offset", 0)), int(query.get("limit", 5)))
            headers["X-Total-Count"] = str(total)
        self._send(200, body, f"application/vnd.ceph.api.v{version}+json", headers)

    @staticmethod
    def _page(body: bytes, offset: int, limit: int) -> tuple[bytes, int]:
        """The dashboard sorts images by name, slices [offset:offset+limit] and regroups per pool."""
        images = sorted((im for g in json.loads(body) for im in g["value"]), key=lambda im: im["name"])
        page = images if limit == -1 else images[offset:offset + limit]
        groups: dict[str, list[Any]] = {}
        for im in page:
            groups.setdefault(im["pool_name"], []).append(im)
        return json.dumps([{"value": v, "pool_name": k} for k, v in groups.items()]).encode(), len(images)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mgr() -> Iterator[FakeMgr]:
    m = FakeMgr()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    p = tmp_path / "ceph.pass"
    p.write_text(PASSWORD + "\n")
    p.chmod(0o600)
    return p


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(urls: list[str], password_file: Path | None = None, clock: Clock | None = None,
         **opts: Any) -> ceph.CephCollector:
    config: dict[str, Any] = {"urls": urls, "detail_interval": 60, "request_timeout": 3, **opts}
    if password_file is not None:
        config.setdefault("username", "admin")
        config["password_file"] = str(password_file)
    ctx = Context(node="n1", config=config, config_file="/etc/clustertop/agent.toml")
    return ceph.CephCollector(ctx, clock=clock or Clock())


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# ---------------------------------------------------------------------------------------------
# Parsed values from the captured answers
# ---------------------------------------------------------------------------------------------


def test_healthy_cluster_exact_values(mgr: FakeMgr, password_file: Path) -> None:
    col = make([mgr.url], password_file)
    c = col.collect()
    assert (c.status, c.checks, c.fsid, c.url) == ("HEALTH_OK", [], FSID, mgr.url)
    assert (c.mons, c.mons_quorum, c.mgr_active, c.mgr_standbys) == (1, 1, "x", 0)
    assert (c.osds_total, c.osds_up, c.osds_in) == (3, 3, 3)
    assert (c.pgs_total, c.pg_states) == (17, {"active+clean": 17})
    assert (c.objects, c.objects_degraded, c.objects_misplaced, c.objects_unfound) == (13, 0, 0, 0)
    assert (c.total_bytes, c.used_bytes, c.avail_bytes) == (3221225472, 153337, 3221072135)
    assert (c.read_bytes_s, c.write_bytes_s, c.read_ops_s, c.write_ops_s, c.recovering_bytes_s) == (0, 0, 0, 0, 0)
    assert c.errors is None and c.detail_ts is not None

    assert c.osds is not None and [o.id for o in c.osds] == [0, 1, 2]
    o0 = c.osds[0]
    assert (o0.host, o0.up, o0.in_, o0.state, o0.device_class) == ("vm", True, True, ["exists", "up"], "hdd")
    assert (o0.total_bytes, o0.used_bytes, o0.pgs) == (1073741824, 51355, 17)
    assert (o0.commit_latency_ms, o0.apply_latency_ms, o0.write_ops_s) == (0.0, 0.0, 0.0)
    assert o0.read_ops_s == pytest.approx(10.999954891389816)

    assert c.pools is not None and [p.name for p in c.pools] == ["device_health_metrics", "demo", "rbd"]
    demo = c.pools[1]
    assert (demo.id, demo.type, demo.size, demo.min_size, demo.pg_num) == (2, "replicated", 3, 1, 8)
    assert (demo.stored_bytes, demo.used_bytes, demo.avail_bytes, demo.objects) == (24, 24, 1020002496, 3)
    assert demo.percent_used == pytest.approx(7.843118154937656e-07)  # Ceph's fraction, as percent
    assert demo.applications == ["rados"]
    assert (demo.read_bytes_s, demo.write_ops_s) == (0.0, 0.0)

    # The "instant database clone": db-golden@base (protected) -> db-clone1.
    assert c.images is not None and [(i.pool, i.name) for i in c.images] == [("rbd", "db-clone1"), ("rbd", "db-golden")]
    clone, golden = c.images
    assert (clone.parent, clone.snapshots, clone.size_bytes, clone.used_bytes) == ("rbd/db-golden@base", [], 67108864, 0)
    assert golden.parent is None
    assert golden.snapshots == [schema.RbdSnap(name="base", id=4, size_bytes=67108864, protected=True,
                                               ts="2026-11-22T09:07:32Z", children=["rbd/db-clone1"])]
    assert "layering" in (golden.features or [])

    # Every endpoint was asked with the version it accepts: no 415 anywhere.
    assert all(r[3] != 415 for r in mgr.requests)
    assert {r[2] for r in mgr.paths("/api/block/image")} == {"application/vnd.ceph.api.v2.0+json"}
    assert {r[2] for r in mgr.paths("/api/osd")} == {"application/vnd.ceph.api.v1.0+json"}
    # The agent publishes it as is: it survives the wire.
    payload = schema.ClusterPayload(name="ceph", ok=True, ceph=c)
    assert wire.decode(wire.encode(payload), schema.ClusterPayload).ceph == c
    assert col.last_good is c and col.last_ok_ts is not None


def test_degraded_cluster_osd_down_and_pg_degraded(mgr: FakeMgr, password_file: Path) -> None:
    mgr.scenario = "-degraded"
    c = make([mgr.url], password_file).collect()
    assert c.status == "HEALTH_WARN"
    assert c.checks is not None and [k.code for k in c.checks] == ["OSD_DOWN", "PG_DEGRADED"]
    down, degraded = c.checks
    assert (down.severity, down.message, down.count) == ("HEALTH_WARN", "1 osds down", 1)
    assert down.detail == ["osd.2 (root=default,host=vm) is down"]
    assert degraded.count == 9 and degraded.detail is not None and len(degraded.detail) == 9
    assert degraded.detail[0] == "pg 2.0 is active+undersized+degraded, acting [1,0]"
    assert degraded.message == "Degraded data redundancy: 13/39 objects degraded (33.333%), 9 pgs degraded"
    assert (c.osds_total, c.osds_up, c.osds_in) == (3, 2, 3)
    assert c.pg_states == {"active+undersized": 8, "active+undersized+degraded": 9}
    assert (c.objects_degraded, c.read_bytes_s, c.read_ops_s) == (13, 34423, 38)
    assert c.osds is not None
    osd2 = c.osds[2]
    assert (osd2.id, osd2.up, osd2.in_, osd2.state) == (2, False, True, ["exists"])

    alerts = cluster._cluster_alerts({"ceph": schema.ClusterPayload(name="ceph", ok=True, ceph=c)}, None)
    assert [(a.severity, a.subject, a.message) for a in alerts] == [
        ("warning", "osd.2", "Ceph OSD_DOWN: osd.2 on vm is down"),
        ("warning", "PG_DEGRADED",
         "Ceph PG_DEGRADED: Degraded data redundancy: 13/39 objects degraded (33.333%), 9 pgs degraded"),
    ]


def test_error_cluster_osd_full_and_pool_full(mgr: FakeMgr, password_file: Path) -> None:
    mgr.scenario = "-err"
    c = make([mgr.url], password_file).collect()
    assert c.status == "HEALTH_ERR"
    assert c.checks is not None
    by_code = {k.code: k for k in c.checks}
    assert set(by_code) == {"OSD_FULL", "POOL_FULL"}
    assert (by_code["OSD_FULL"].severity, by_code["OSD_FULL"].message, by_code["OSD_FULL"].count) == \
        ("HEALTH_ERR", "3 full osd(s)", 3)
    assert (by_code["POOL_FULL"].severity, by_code["POOL_FULL"].count) == ("HEALTH_WARN", 3)
    assert "pool 'rbd' is full (no space)" in (by_code["POOL_FULL"].detail or [])
    assert c.osds is not None and all(o.state == ["exists", "full", "up"] for o in c.osds)
    assert [o.used_bytes for o in c.osds] == [101542, 101542, 101542]
    alerts = cluster._cluster_alerts({"ceph": schema.ClusterPayload(name="ceph", ok=True, ceph=c)}, None)
    assert {(a.severity, a.subject) for a in alerts} == {("critical", "OSD_FULL"), ("warning", "POOL_FULL")}


def test_missing_and_odd_fields_are_unknown_not_zero() -> None:
    from clustertop.collectors import ceph_parse

    c = ceph_parse.parse_health({"health": {"status": "HEALTH_OK"}, "osd_map": {"osds": [{"up": 1}, {"up": "?"}]}})
    assert (c.status, c.checks, c.osds_total, c.osds_up, c.osds_in) == ("HEALTH_OK", None, 2, None, None)
    assert (c.pgs_total, c.total_bytes, c.read_bytes_s, c.mons) == (None, None, None, None)
    # The older dict form of checks (keyed by code) still reads.
    checks = ceph_parse.parse_checks({"OSD_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1 osds down"}}})
    assert checks == [schema.HealthCheck(code="OSD_DOWN", severity="HEALTH_WARN", message="1 osds down")]
    osd = ceph_parse.parse_osd({"osd": 4, "up": 0, "in": 0, "osd_stats": {"kb": 10, "kb_used": 2}})
    assert osd is not None and (osd.up, osd.in_, osd.total_bytes, osd.used_bytes, osd.pgs) == (False, False, 10240, 2048, None)
    im = ceph_parse.parse_image({"pool_name": "rbd", "namespace": "ns1", "name": "a", "disk_usage": None})
    assert im is not None and (im.pool, im.used_bytes, im.snapshots) == ("rbd/ns1", None, None)
    assert ceph_parse.error_detail(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"


# ---------------------------------------------------------------------------------------------
# Auth: tokens, re-login, a bad password is not retried every tick
# ---------------------------------------------------------------------------------------------


def test_bad_password_is_not_retried_every_tick(mgr: FakeMgr, tmp_path: Path) -> None:
    pw = tmp_path / "ceph.pass"
    pw.write_text("wrong-password\n")
    clock = Clock()
    col = make([mgr.url], pw, clock)
    for _ in range(6):  # six ticks
        with pytest.raises(ceph.CephLoginRefused) as e:
            col.collect()
        clock.t += 10
    msg = str(e.value)
    assert msg.startswith("Ceph login refused for user admin (bad password?): Invalid credentials; not retrying")
    assert "password file changes" in msg
    assert mgr.login_attempts == 1  # one attempt, not one per tick: ten would lock the account

    # The operator fixes the password file: the next tick logs in at once.
    pw.write_text(PASSWORD + "\n")
    os.utime(pw, (os.stat(pw).st_atime, os.stat(pw).st_mtime + 5))
    assert col.collect().status == "HEALTH_OK"
    assert mgr.login_attempts == 2


def test_refused_login_is_retried_after_the_backoff(mgr: FakeMgr, tmp_path: Path) -> None:
    pw = tmp_path / "ceph.pass"
    pw.write_text("wrong\n")
    clock = Clock()
    col = make([mgr.url], pw, clock)
    with pytest.raises(ceph.CephLoginRefused):
        col.collect()
    clock.t += ceph.LOGIN_RETRY_S - 1
    with pytest.raises(ceph.CephLoginRefused):
        col.collect()
    assert mgr.login_attempts == 1
    clock.t += 2
    with pytest.raises(ceph.CephLoginRefused):
        col.collect()
    assert mgr.login_attempts == 2


def test_refused_login_does_not_walk_through_every_mgr(tmp_path: Path) -> None:
    """All mgrs share one user database: a refusal from one is final, not a reason to try the next."""
    a, b = FakeMgr(), FakeMgr()
    try:
        pw = tmp_path / "ceph.pass"
        pw.write_text("wrong\n")
        with pytest.raises(ceph.CephLoginRefused):
            make([a.url, b.url], pw).collect()
        assert (a.login_attempts, b.login_attempts) == (1, 0)
    finally:
        a.stop()
        b.stop()


def test_expired_token_logs_in_again_once(mgr: FakeMgr, password_file: Path) -> None:
    col = make([mgr.url], password_file)
    col.collect()
    assert mgr.login_attempts == 1
    mgr.tokens.clear()  # the mgr restarted / the 8 h token expired
    assert col.collect().status == "HEALTH_OK"
    assert mgr.login_attempts == 2
    statuses = [r[3] for r in mgr.paths("/api/health/minimal")]
    assert statuses == [200, 401, 200]


def test_token_file_is_used_as_is_and_not_hammered(mgr: FakeMgr, tmp_path: Path) -> None:
    tok = tmp_path / "ceph.token"
    tok.write_text("tok-1\n")
    mgr.tokens.add("tok-1")
    col = make([mgr.url], token_file=str(tok))
    assert col.collect().status == "HEALTH_OK"
    mgr.tokens.clear()
    with pytest.raises(ceph.CephLoginRefused, match="token from token_file"):
        col.collect()
    assert mgr.login_attempts == 0
    tok.write_text("tok-2\n")
    os.utime(tok, (os.stat(tok).st_atime, os.stat(tok).st_mtime + 5))
    mgr.tokens.add("tok-2")
    assert col.collect().status == "HEALTH_OK"


def test_fake_keeps_ceph_semantics_without_the_collector(mgr: FakeMgr) -> None:
    """The fake's own answers (what the collector is tested against) match the captured ones."""
    import httpx

    r = httpx.get(f"{mgr.url}/api/health/minimal")
    assert r.status_code == 401 and r.json()["detail"] == "You are not authorized to access that resource"
    r = httpx.post(f"{mgr.url}/api/auth", json={"username": "admin", "password": "x"})
    assert (r.status_code, r.json()) == (400, {"detail": "Invalid credentials", "code": "invalid_credentials",
                                               "component": "auth"})
    r = httpx.post(f"{mgr.url}/api/auth", json={"username": "admin", "password": PASSWORD})
    token = r.json()["token"]
    r = httpx.get(f"{mgr.url}/api/block/image", headers={"Authorization": f"Bearer {token}",
                                                         "Accept": "application/vnd.ceph.api.v1.0+json"})
    assert r.status_code == 415
    assert r.json()["detail"] == json.loads((FIX / "api_block_image-wrong-version.json").read_text())["detail"]


# ---------------------------------------------------------------------------------------------
# Partial failures, detail interval, pagination
# ---------------------------------------------------------------------------------------------


def test_wrong_version_or_forbidden_detail_endpoint_keeps_the_rest(mgr: FakeMgr, password_file: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ceph.VERSIONS, "/api/block/image", "1.0")  # as if the collector asked v1.0
    mgr.fail["/api/pool"] = 403
    c = make([mgr.url], password_file).collect()
    assert c.status == "HEALTH_OK" and c.osds is not None and len(c.osds) == 3
    assert c.pools is None and c.images is None
    assert c.errors == [
        "/api/pool: Ceph /api/pool: HTTP 403: Access denied",
        "/api/block/image: Ceph /api/block/image: HTTP 415: Incorrect version: endpoint is '2.0', client requested '1.0'",
    ]


def test_detail_polled_every_detail_interval_and_kept_between(mgr: FakeMgr, password_file: Path) -> None:
    clock = Clock()
    col = make([mgr.url], password_file, clock, detail_interval=60)
    first = col.collect()
    clock.t += 30
    mgr.scenario = "-degraded"
    second = col.collect()
    assert len(mgr.paths("/api/osd")) == 1 and len(mgr.paths("/api/health/minimal")) == 2
    assert second.status == "HEALTH_WARN"  # the cheap part is fresh ...
    assert second.osds == first.osds and second.detail_ts == first.detail_ts  # ... the detail is kept
    clock.t += 31
    third = col.collect()
    assert len(mgr.paths("/api/osd")) == 2
    assert third.osds is not None and third.osds[2].up is False
    assert len(mgr.paths("/api/monitor")) == 1  # the fsid never changes: asked once


def test_images_are_paged_with_offset_and_limit(mgr: FakeMgr, password_file: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ceph, "IMAGE_PAGE", 1)
    c = make([mgr.url], password_file).collect()
    assert c.images is not None and [i.name for i in c.images] == ["db-clone1", "db-golden"]
    assert len(mgr.paths("/api/block/image")) == 2  # X-Total-Count (2) says when to stop


# ---------------------------------------------------------------------------------------------
# Fail-over, standby redirects, unreachable
# ---------------------------------------------------------------------------------------------


def test_fails_over_from_a_dead_url_to_a_live_one(mgr: FakeMgr, password_file: Path) -> None:
    col = make([dead_url(), mgr.url], password_file)
    c = col.collect()
    assert (c.status, c.url, col.api.active) == ("HEALTH_OK", mgr.url, mgr.url)


def test_standby_redirect_leads_to_the_active_mgr(password_file: Path) -> None:
    active, standby = FakeMgr(), FakeMgr()
    standby.standby_of = active.url
    try:
        col = make([standby.url], password_file)  # only the standby is configured
        c = col.collect()
        assert (c.status, c.url) == ("HEALTH_OK", active.url)
        assert standby.requests and {r[3] for r in standby.requests} == {303}
        assert active.login_attempts == 1 and standby.login_attempts == 0
        n = len(standby.requests)
        col.collect()
        assert len(standby.requests) == n  # the active one is remembered and asked first
    finally:
        active.stop()
        standby.stop()


def test_standby_answering_503_is_skipped(password_file: Path) -> None:
    active, standby = FakeMgr(), FakeMgr()
    standby.unavailable = True
    try:
        c = make([standby.url, active.url], password_file).collect()
        assert (c.status, c.url) == ("HEALTH_OK", active.url)
    finally:
        active.stop()
        standby.stop()


def test_unreachable_raises_and_keeps_last_good(password_file: Path) -> None:
    m = FakeMgr()
    dead = dead_url()
    col = make([m.url, dead], password_file)
    good = col.collect()
    ok_ts = col.last_ok_ts
    m.stop()
    with pytest.raises(ceph.CephUnreachable) as e:
        col.collect()
    msg = str(e.value)
    assert msg.startswith("Ceph unreachable: all mgr URLs failed: ")
    assert m.url in msg and dead in msg and "ConnectError" in msg
    assert col.last_good is good and col.last_ok_ts == ok_ts and col.last_error == msg

    # What the agent publishes and the alert the dashboard shows read well.
    payload = schema.ClusterPayload(name="ceph", ok=False, error=describe(e.value), ceph=col.last_good,
                                    last_ok_ts=ok_ts)
    [alert] = cluster._cluster_alerts({"ceph": payload}, (ok_ts or 0) + 125)
    assert alert.severity == "critical"
    assert alert.message.startswith("Ceph unreachable: all mgr URLs failed: ")
    assert alert.message.endswith(", last good data 2m ago")
    assert alert.message.count("unreachable") == 1


def test_login_refused_alert_reads_well(mgr: FakeMgr, tmp_path: Path) -> None:
    pw = tmp_path / "p"
    pw.write_text("nope")
    with pytest.raises(ceph.CephLoginRefused) as e:
        make([mgr.url], pw).collect()
    payload = schema.ClusterPayload(name="ceph", ok=False, error=describe(e.value))
    [alert] = cluster._cluster_alerts({"ceph": payload}, None)
    assert alert.message.startswith("Ceph login refused for user admin (bad password?)")
    assert len(describe(e.value)) < 300  # the runner cuts errors at 300 characters


# ---------------------------------------------------------------------------------------------
# TLS with a CA file
# ---------------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = tmp_path / "dashboard.crt", tmp_path / "dashboard.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(crt), str(pem)


def test_tls_verified_with_the_ca_file(tmp_path: Path, password_file: Path) -> None:
    crt, key = _self_signed(tmp_path)
    m = FakeMgr(tls=(crt, key))
    try:
        assert make([m.url], password_file, ca_file=crt).collect().status == "HEALTH_OK"
        with pytest.raises(ceph.CephUnreachable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            make([m.url], password_file).collect()  # system CAs do not know this certificate
        assert m.login_attempts == 1  # the password never went to an unverified server
    finally:
        m.stop()


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, key, problem", [
    ({}, "urls", "required"),
    ({"urls": ["ftp://mgr"]}, "urls", "not an http(s) URL"),
    ({"urls": "http://mgr"}, "urls", "expected list"),
    ({"urls": ["http://mgr"], "password": "x"}, "password", "not allowed"),
    ({"urls": ["http://mgr"], "username": "admin"}, "password_file", "exactly one"),
    ({"urls": ["http://mgr"], "password_file": "PW"}, "username", "required with password_file"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "/nonexistent/pw"}, "password_file", "cannot read"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "token_file": "PW"}, "password_file", "exactly one"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "ca_file": "PW", "verify": False}, "verify",
     "contradicts"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "ca_file": "/nonexistent"}, "ca_file", "cannot read"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "detail_interval": -1}, "detail_interval", ">= 0"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "request_timeout": 0}, "request_timeout", "> 0"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "verify": "no"}, "verify", "expected bool"),
    ({"urls": ["http://mgr"], "username": "a", "password_file": "PW", "url": "x"}, "url", "unknown key"),
])
def test_bad_config_names_file_key_and_problem(options: dict[str, Any], key: str, problem: str,
                                               password_file: Path) -> None:
    opts = {k: (str(password_file) if v == "PW" else v) for k, v in options.items()}
    with pytest.raises(ConfigError) as e:
        ceph.CephCollector(Context(node="n", config=opts, config_file="/etc/ct.toml"))
    assert e.value.file == "/etc/ct.toml"
    assert e.value.key == f"[collectors.ceph] {key}"
    assert problem in e.value.problem


def test_good_config_defaults(password_file: Path) -> None:
    s = ceph.parse_settings({"urls": ["https://mgr:8443/"], "username": "ro", "password_file": str(password_file)},
                            None)
    assert (s.urls, s.verify, s.detail_interval_s, s.timeout_s) == (("https://mgr:8443",), True, 60.0, 5.0)


def test_redirect_from_https_to_plain_http_is_not_followed(tmp_path: Path, password_file: Path) -> None:
    crt, key = _self_signed(tmp_path)
    active, standby = FakeMgr(), FakeMgr(tls=(crt, key))
    standby.standby_of = active.url  # http://
    try:
        with pytest.raises(ceph.CephUnreachable, match="not following HTTPS -> HTTP"):
            make([standby.url], password_file, ca_file=crt).collect()
        assert active.requests == []  # neither the password nor a token went out in clear text
    finally:
        active.stop()
        standby.stop()
