"""Delivery to Alertmanager without Alertmanager: a real HTTP server here stands in for its v2 alerts
endpoint (refusing, then accepting), to check back-off, re-sends, failure status and what is sent. The
real Alertmanager's routing is tested in test_alertmanager_real.py (heavy)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from clustertop.alerting import alertmanager as am
from clustertop.wire.alerts import AlertRecord
from tests.conftest import free_port

T0 = 1_750_000_000.0


class FakeAM:
    """An HTTP server answering POST /api/v2/alerts with ``codes`` in turn (then 200), recording bodies."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.bodies: list[Any] = []
        me = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = me.codes.pop(0) if me.codes else 200
                if code == 200:
                    me.bodies.append((self.path, json.loads(body)))
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"" if code == 200 else b"overloaded")

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def fake() -> Iterator[FakeAM]:
    f = FakeAM([500, 503])
    yield f
    f.stop()


def rec(state: str = "firing", **kw: Any) -> AlertRecord:
    base: dict[str, Any] = dict(rule="GpuLost", severity="critical", source="gpu", node="n2", subject="gpu0",
                                message="GPU 0 lost", state=state, since_ts=T0, fired_ts=T0)
    base.update(kw)
    return AlertRecord(**base)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def test_failures_back_off_are_visible_and_recover(fake: FakeAM) -> None:
    clock = Clock()
    d = am.Deliverer([fake.url], "lab", resend_s=30, timeout_s=2, clock=clock)
    d.submit([rec()], changed=True)
    d.run_once()
    (s,) = d.status()
    assert s.ok is False and s.failures == 1 and "HTTP 500" in (s.error or "") and "overloaded" in (s.error or "")
    d.run_once()  # backing off (1 s): no second try at the same instant
    assert d.status()[0].failures == 1
    clock.t += 1.0
    d.run_once()
    assert d.status()[0].failures == 2 and "HTTP 503" in (d.status()[0].error or "")
    clock.t += 1.0
    d.run_once()  # still backing off: 2 s after the second failure
    assert d.status()[0].failures == 2 and not fake.bodies
    clock.t += 1.0
    d.run_once()
    s = d.status()[0]
    assert s.ok is True and s.failures == 0 and s.error is None and s.last_ok_ts == clock.t
    ((path, body),) = fake.bodies
    assert path == "/api/v2/alerts"
    (a,) = body
    assert a["labels"] == {"alertname": "GpuLost", "severity": "critical", "source": "gpu", "cluster": "lab",
                           "node": "n2", "subject": "gpu0"}
    assert a["annotations"]["description"] == "GPU 0 lost" and "GPU fell off the bus" in a["annotations"]["summary"]
    assert am.parse_iso(a["startsAt"]) == T0
    assert am.parse_iso(a["endsAt"]) == clock.t + am.ENDS_AFTER_RESENDS * 30  # resolves itself if we die


def test_resend_only_on_change_or_after_the_interval(fake: FakeAM) -> None:
    fake.codes.clear()
    clock = Clock()
    d = am.Deliverer([fake.url], "lab", resend_s=30, timeout_s=2, clock=clock)
    d.submit([rec()], changed=True)
    d.run_once()
    clock.t += 10
    d.submit([rec()], changed=False)
    d.run_once()
    assert len(fake.bodies) == 1
    clock.t += 20
    d.run_once()
    assert len(fake.bodies) == 2  # the re-send Alertmanager needs to keep it firing
    d.submit([rec("resolved", resolved_ts=clock.t)], changed=True)
    d.run_once()
    assert len(fake.bodies) == 3 and am.parse_iso(fake.bodies[-1][1][0]["endsAt"]) == clock.t
    d.submit([rec("pending")], changed=True)  # pending is nobody's business yet
    clock.t += 100
    d.run_once()
    assert len(fake.bodies) == 3


def test_an_unreachable_alertmanager_never_raises_and_says_why() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    d = am.Deliverer([url], "lab", resend_s=30, timeout_s=1)
    d.submit([rec()], changed=True)
    d.run_once()
    (s,) = d.status()
    assert s.ok is False and url in (s.error or "") and "refused" in (s.error or "").lower()
    with pytest.raises(am.AlertmanagerError, match="refused"):
        am.active_silences(url)


def test_hostile_node_text_is_inert_and_bounded_in_labels_and_annotations() -> None:
    r = rec(node="n2\x1b[31m", subject="/mnt/" + "x" * 100_000, message="\u202eevil\x07" * 1000)
    a = am.am_alert(r, "lab", T0, 30)
    assert len(a["labels"]["subject"]) <= am.LABEL_MAX and "\x1b" not in a["labels"]["node"]
    assert len(a["annotations"]["description"]) <= am.DESCRIPTION_MAX * 7  # escapes grow, the cut is before them
    assert "\u202e" not in a["annotations"]["description"] and "\x07" not in a["annotations"]["description"]
    json.dumps(a)  # and it is plain JSON


def test_silence_matchers_and_coverage() -> None:
    m = am.silence_matchers("QueueGrowingNoConsumer", None, "celery")
    assert {x["name"] for x in m} == {"alertname", "subject"}  # a cluster-wide alert has no node label
    s = am.Silence({"id": "x", "status": {"state": "active"}, "matchers": [
        {"name": n["name"], "value": n["value"], "isRegex": False, "isEqual": True} for n in m]})
    assert s.covers("QueueGrowingNoConsumer", None, "celery") and not s.covers("QueueGrowingNoConsumer", None, "other")
    assert not am.Silence({"matchers": "garbage", "status": None}).covers("X", None, "y")
