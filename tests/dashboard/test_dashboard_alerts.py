"""Alerts as a service in the dashboard, against a real redis-server (and, for acknowledging, a real
Alertmanager): a wall started late shows what fired before it, from the evaluating agent's signed timeline;
the alerts strip says who evaluates and when Alertmanager cannot be reached; acknowledging an alert makes a
silence in Alertmanager with the operator's name, shows it next to the alert, and lands in the audit trail.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from clustertop import wire
from clustertop.alerting import alertmanager as am
from clustertop.alerting import store
from clustertop.control import signing
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.app import make_app
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.wall import WallScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.alerts import AlertsStrip
from clustertop.dashboard.widgets.timeline import Timeline
from clustertop.wire import schema
from clustertop.wire.alerts import AlertEvent, AlertRecord, AlertState
from tests.conftest import free_port
from tests.support import builders as b
from tests.support.alertmanager import Alertmanager, Webhook

pytestmark = pytest.mark.anyio
EVAL = "eval1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cluster_with_lost_gpu(client: Any) -> None:
    n2 = b.tower("n2")
    assert n2.gpus is not None
    n2.gpus[0] = b.gpu(0, None, lost=True, error="fell off the bus")
    b.publish(client, [b.tower("n1"), n2], keys={"n1": b.node_key("n1"), "n2": b.node_key("n2")})


def cluster_with_degraded_bond(client: Any) -> None:
    """A warning only: a critical alert would take the wall over with its banner."""
    n1 = b.tower("n1")
    n1.bonds = [schema.Bond(name="bond0", degraded=True, problems=["eth1 down"],
                            slaves=[schema.BondSlave(name="eth0", ok=True), schema.BondSlave(name="eth1", ok=False)])]
    b.publish(client, [n1, b.tower("n2")], keys={"n1": b.node_key("n1"), "n2": b.node_key("n2")})


def evaluated(now: float, signer: str = EVAL) -> tuple[AlertState, signing.PrivateKey]:
    """What an evaluator wrote: an OSD that flapped an hour ago, a bond degraded 30 minutes ago and still."""
    ev = [AlertEvent(ts=now - 3600, kind="fired", rule="CephOsdDown", severity="warning", source="ceph", node="n1",
                     subject="osd.3", message="Ceph OSD_DOWN: osd.3 on n1 is down"),
          AlertEvent(ts=now - 3000, kind="resolved", rule="CephOsdDown", severity="warning", source="ceph", node="n1",
                     subject="osd.3", message="Ceph OSD_DOWN: osd.3 on n1 is down"),
          AlertEvent(ts=now - 1800, kind="fired", rule="BondDegraded", severity="warning", source="bond", node="n1",
                     subject="bond0", message="bond bond0 degraded: eth1 down")]
    rec = AlertRecord(rule="BondDegraded", severity="warning", source="bond", node="n1", subject="bond0",
                      message="bond bond0 degraded: eth1 down", state="firing", since_ts=now - 1800,
                      fired_ts=now - 1800)
    return AlertState(host=EVAL, ts=now, seq=3, alerts=[rec], events=ev), b.node_key(signer)


def app_for(redis_server: Any, **kw: Any) -> Any:
    kw.setdefault("known", b.known_nodes("n1", "n2", EVAL))
    return make_app(Settings(refresh_s=0.2, source_label="test", **kw), redis_server.client)


async def test_a_wall_started_late_shows_what_fired_before_it(redis_server: Any) -> None:
    c = redis_server.client()
    cluster_with_degraded_bond(c)
    state, key = evaluated(time.time())
    store.write(c, state, key)
    app = app_for(redis_server, wall=True)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_until(pilot, lambda: app.alert_feed.state is not None, "the alert state")
        screen = app.screen
        assert isinstance(screen, WallScreen)
        log = screen.alert_log
        await b.wait_until(pilot, lambda: len(log.history) == 2, "the seeded timeline")
        osd, bond = log.history
        assert osd.alert.rule == "CephOsdDown" and osd.cleared_ts == state.events[1].ts
        assert bond.alert.rule == "BondDegraded" and bond.cleared_ts is None
        # the bond still degraded now is the same entry as the one that fired 30 minutes ago, not a second one
        assert not [e for e in log.events if e.alert.rule == "BondDegraded"]
        screen.show_page(2)  # the health page carries the timeline
        await pilot.pause()
        await b.wait_until(pilot, lambda: "osd.3" in str(screen.query_one(Timeline).render()), "the timeline drawn")
        text = str(screen.query_one(Timeline).render())
        assert "osd.3 on n1" in text and "cleared" in text and "bond bond0 degraded" in text and "open" in text


async def test_state_no_enrolled_node_signed_is_refused_and_said(redis_server: Any) -> None:
    c = redis_server.client()
    cluster_with_lost_gpu(c)
    state, _ = evaluated(time.time())
    store.write(c, state, b.node_key("intruder"))  # claims to be eval1, signed with another key
    app = app_for(redis_server)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_until(pilot, lambda: app.alert_feed.read is not None, "the alert state read")
        strip = app.screen.query_one(AlertsStrip)
        await b.wait_until(pilot, lambda: "refused" in str(strip.render()), "the refusal in the strip")
        assert app.alert_feed.state is None and "GPU 0 lost" in str(strip.render())  # live alerts still shown


async def test_alertmanager_unreachable_is_a_clear_line_not_a_crash(redis_server: Any) -> None:
    cluster_with_lost_gpu(redis_server.client())
    url = f"http://127.0.0.1:{free_port()}"
    app = app_for(redis_server, alertmanager=[url], operator="alice@ops")
    async with app.run_test(size=(160, 50)) as pilot:
        strip = app.screen.query_one(AlertsStrip)
        await b.wait_until(pilot, lambda: "Alertmanager unreachable" in str(strip.render()), "the line", tries=1500)
        assert url in str(strip.render())
        # acknowledging then fails with the reason, and the dashboard goes on
        await pilot.press("a")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the alert picker")
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog) and "long" in app.screen.title_text,
                           "the duration picker")
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog")
        await pilot.press("tab", "enter")
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the outcome", tries=1500)
        out = acts.done[0].outcome
        assert not out.ok and "refused" in out.text.lower() and url in out.text


async def test_read_only_refuses_acknowledging(redis_server: Any) -> None:
    cluster_with_lost_gpu(redis_server.client())
    app = app_for(redis_server, alertmanager=["http://127.0.0.1:9"], read_only=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, PickDialog)
        app.screen.action_silence()  # a direct call is refused too
        await pilot.pause()
        assert not isinstance(app.screen, PickDialog)


@pytest.mark.heavy  # starts an Alertmanager
async def test_acknowledge_creates_a_silence_shown_and_audited(redis_server: Any, tmp_path: Any) -> None:
    kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    c = redis_server.client()
    cluster_with_lost_gpu(c)
    hook = Webhook()
    manager = Alertmanager(hook.url)
    try:
        app = app_for(redis_server, alertmanager=[manager.url], operator="alice@ops", operator_key=kp,
                      operator_keys=[pub])
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("a")
            await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the alert picker")
            await pilot.press("enter")  # the only alert: GPU 0 lost on n2
            await b.wait_until(pilot, lambda: "long" in getattr(app.screen, "title_text", ""), "the duration picker")
            await pilot.press("down", "enter")  # 4 hours
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog")
            body = str(app.screen.query_one("#body-text").render())
            assert "GpuLost on n2: gpu0" in body and "alice@ops" in body and "4h" in body.replace(" ", ""), body
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the outcome", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            (s,) = am.active_silences(manager.url)
            assert s.created_by == "alice@ops" and s.covers("GpuLost", "n2", "gpu0")
            assert s.ends_ts is not None and abs(s.ends_ts - time.time() - 4 * 3600) < 120
            strip = app.screen.query_one(AlertsStrip)
            await b.wait_until(pilot, lambda: "silenced by alice@ops" in str(strip.render()), "the silence shown")
            (entry,) = [wire.decode(f[b"a"], schema.AuditEntry) for _id, f in c.xrange(wire.operator_audit_key("ops"))]
            assert (entry.actor, entry.action, entry.result) == ("ops", "alert.silence", "ok")
            assert entry.target == "GpuLost n2 gpu0"
    finally:
        manager.stop()
        hook.stop()
