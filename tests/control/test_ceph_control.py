"""clustertop.control.ceph and ``clustertop ceph`` without a Ceph cluster: spec parsing, the CLI's refusals
before anything is sent, and waiting on a mgr task that answered 202.

The 202 path runs against a real HTTP server (a ``ThreadingHTTPServer`` speaking the mgr's task protocol:
``POST`` answers 202 with the task's name and metadata, ``GET /api/task?name=`` lists it as executing,
then finished) because the real mgr only answers 202 for a task slower than its own wait, which a tiny
test image never is. Everything else runs against the real Ceph cluster in test_ceph_control_real.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.control import ceph as cc
from clustertop.wire import schema
from tests.conftest import ROOT


def test_parse_spec_accepts_image_and_snapshot_forms_and_refuses_the_rest() -> None:
    assert cc.parse_spec("rbd/db-golden@base", snap=True) == ("rbd/db-golden", "base")
    assert cc.parse_spec("rbd/ns1/img", snap=False) == ("rbd/ns1/img", None)
    for text, snap in (("rbd/img", True), ("rbd/img@s", False), ("img@s", True), ("rbd//img@s", True),
                       ("a/b/c/d@s", True), ("rbd/img@", True), ("rbd/im\x1bg@s", True), ("rbd/img@s\u202e", True), ("rbd/\u200bimg", False), ("rbd/img@s@t", True),
                       ("rbd/" + "x" * 300 + "@s", True), ("rbd/i mg", False)):
        with pytest.raises(cc.SpecError):
            cc.parse_spec(text, snap)


def test_paths_quote_the_image_spec_as_one_segment() -> None:
    assert cc._path("rbd/ns/img", "snap", "a b/c") == "/api/block/image/rbd%2Fns%2Fimg/snap/a%20b%2Fc"


def ct(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    return subprocess.run([sys.executable, "-m", "clustertop", "ceph", *argv], cwd=ROOT, env={**base, **(env or {})},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def audit(redis_server: Any) -> list[schema.AuditEntry]:
    c = redis_server.client()
    rows = [row for key in c.scan_iter(match=wire.operator_audit_key("*")) for row in c.xrange(key)]
    return [wire.decode(f[b"a"], schema.AuditEntry) for _id, f in sorted(rows)]


def test_cli_refuses_before_sending_anything(redis_server: Any, tmp_path: Path) -> None:
    """Read-only, a bad spec, a bad OSD id, missing access, nobody to confirm: nothing reaches a mgr
    (the URL is a closed port: reaching it would say "unreachable") and nothing is audited."""
    pw = tmp_path / "pass"
    pw.write_text("x")
    access = {"CLUSTERTOP_CEPH_URL": "http://127.0.0.1:1", "CLUSTERTOP_CEPH_USER": "op",
              "CLUSTERTOP_CEPH_PASSWORD_FILE": str(pw)}
    store = ["--redis", redis_server.url]
    r = ct("flag", "set", "noout", "--yes", *store, env={**access, "CLUSTERTOP_READ_ONLY": "1"})
    assert r.returncode == 1 and "read-only" in r.stderr, r.stderr
    r = ct("snap", "rm", "rbd/img", "--yes", *store, env=access)
    assert r.returncode == 2 and "POOL/IMAGE@SNAP" in r.stderr, r.stderr
    r = ct("clone", "rbd/img@s", "rbd/new@x", "--yes", *store, env=access)
    assert r.returncode == 2 and "not a snapshot" in r.stderr, r.stderr
    r = ct("osd", "out", "osd.-1", "--yes", *store, env=access)
    assert r.returncode == 2 and "OSD number" in r.stderr, r.stderr
    r = ct("flag", "set", "nodown", "--yes", *store, env=access)  # only noout / norebalance
    assert r.returncode == 2 and "invalid choice" in r.stderr, r.stderr
    r = ct("flatten", "rbd/img", "--yes", *store)
    assert r.returncode == 2 and "--ceph-url" in r.stderr, r.stderr
    r = ct("flatten", "rbd/img", "--yes", *store, env={**access, "CLUSTERTOP_CEPH_PASSWORD_FILE": "/nonexistent"})
    assert r.returncode == 2 and "--ceph-password-file: cannot read" in r.stderr, r.stderr
    r = ct("osd", "out", "3", *store, env=access)  # no --yes and stdin is not a terminal
    assert r.returncode == 1 and "nobody can confirm" in r.stderr, r.stderr
    assert audit(redis_server) == []
    # A mgr that cannot be reached: the action was attempted, so it is audited as failed.
    r = ct("osd", "out", "3", "--yes", "--operator", "bob", *store, env=access)
    assert r.returncode == 1 and "Ceph unreachable" in r.stderr, r.stderr
    [e] = audit(redis_server)
    assert (e.actor, e.action, e.target, e.where) == ("bob", "ceph.osd_out", "osd.3", "cli")
    assert e.result.startswith("failed: ") and "unreachable" in e.result


class _Mgr(BaseHTTPRequestHandler):
    """The mgr's task protocol: a change answers 202; the task list shows it executing, then finished."""

    polls_before_done = 2
    outcome: dict[str, Any] = {"success": True}
    polls = 0

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/auth":
            self._send(201, {"token": "t0k"})
        elif self.headers.get("Authorization") != "Bearer t0k":
            self._send(401, {"detail": "no token"})
        else:
            self._send(202, {"name": "rbd/flatten", "metadata": {"image_spec": "rbd/big"}})

    def do_GET(self) -> None:  # noqa: N802
        cls = type(self)
        if not self.path.startswith("/api/task?name=rbd%2Fflatten"):
            self._send(404, {"detail": f"unexpected {self.path}"})
            return
        cls.polls += 1
        mine = {"name": "rbd/flatten", "metadata": {"image_spec": "rbd/big"}}
        other = {"name": "rbd/flatten", "metadata": {"image_spec": "rbd/other"}, "success": False,
                 "exception": {"detail": "not this one"}}
        if cls.polls <= cls.polls_before_done:
            self._send(200, {"executing_tasks": [mine], "finished_tasks": [other]})
        else:
            self._send(200, {"executing_tasks": [], "finished_tasks": [other, {**mine, **cls.outcome}]})


@pytest.fixture
def mgr(tmp_path: Path) -> Iterator[tuple[str, str]]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Mgr)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    pw = tmp_path / "pass"
    pw.write_text("secret\n")
    _Mgr.polls = 0
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", str(pw)
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_202_task_is_waited_for_and_its_own_outcome_reported(mgr: tuple[str, str]) -> None:
    url, pw = mgr
    ctl = cc.CephControl(cc.settings_from([url], "op", pw), sleep=lambda _s: None)
    try:
        _Mgr.outcome = {"success": True}
        r = ctl.flatten("rbd/big")
        assert (r.ok, r.text, _Mgr.polls) == (True, "flattened rbd/big (no parent now)", 3)
        _Mgr.polls, _Mgr.outcome = 0, {"success": False, "exception": {"detail": "[errno 22] RBD invalid argument"}}
        r = ctl.flatten("rbd/big")
        assert not r.ok and r.text.endswith("refused by Ceph: [errno 22] RBD invalid argument"), r.text
    finally:
        ctl.close()


def test_a_task_still_running_at_the_deadline_is_said_so(mgr: tuple[str, str]) -> None:
    url, pw = mgr
    now = [0.0]
    _Mgr.polls_before_done = 10**6

    def sleep(s: float) -> None:
        now[0] += s

    ctl = cc.CephControl(cc.settings_from([url], "op", pw), task_wait_s=5, clock=lambda: now[0], sleep=sleep)
    try:
        r = ctl.flatten("rbd/big")
        assert not r.ok and "still running in the mgr after 5 s" in r.text, r.text
        assert _Mgr.polls == 11  # every 0.5 s of the 5 s, then the last look
    finally:
        ctl.close()
        _Mgr.polls_before_done = 2
