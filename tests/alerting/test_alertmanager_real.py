"""Alerts end to end with real parts: a real redis-server with the generated ACL, the evaluator running as
its own node user (``clustertop acl --alert-node``) on the agent's RESP client, a real Alertmanager
(Debian prometheus-alertmanager) routing to a webhook receiver started here.

A bond degrading, a GPU lost, a node going silent, an OSD going down and a queue growing with no consumer
each reach the webhook once, and resolve once when fixed; a second Alertmanager URL that refuses shows as a
delivery failure in the signed state; silences made through the API are listed and cover their alert.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from clustertop import wire
from clustertop.agents.lease import Lease
from clustertop.alerting import alertmanager as am
from clustertop.alerting import store
from clustertop.alerting.config import AlertsSection
from clustertop.alerting.service import AlertService
from clustertop.store.resp import Client
from clustertop.wire import schema
from clustertop.wire.alerts import ALERTS_LEASE
from tests.conftest import ROOT, RedisServer, free_port
from tests.support import builders as b
from tests.support.alertmanager import Alertmanager, Webhook, wait_for

pytestmark = pytest.mark.heavy  # starts an Alertmanager

NODES = ["n1", "n2", "n3", "n4"]
EVALUATOR = "eval1"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    d = tmp_path_factory.mktemp("alerts-acl")
    pw = d / "passwords"
    args = [a for n in NODES for a in ("--node", n)]
    out = subprocess.run([sys.executable, "-m", "clustertop", "acl", *args, "--alert-node", EVALUATOR,
                          "--admin", "root", "--password-dir", str(pw)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    (d / "users.acl").write_text(out.stdout)
    srv = RedisServer(["--aclfile", str(d / "users.acl")])
    try:
        yield srv, pw
    finally:
        srv.stop()


def url_for(server: tuple[RedisServer, Path], user: str) -> str:
    srv, pw = server
    return f"redis://{user}:{(pw / user).read_text().strip()}@127.0.0.1:{srv.port}/0"


@pytest.fixture
def admin(acl_redis: tuple[RedisServer, Path]) -> Iterator[redis.Redis]:
    srv, pw = acl_redis
    r = redis.Redis(host="127.0.0.1", port=srv.port, username="admin-root",
                    password=(pw / "admin-root").read_text().strip())
    r.flushall()
    yield r
    r.close()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.stop()


@pytest.fixture
def manager(hook: Webhook) -> Iterator[Alertmanager]:
    m = Alertmanager(hook.url)
    yield m
    m.stop()


def healthy() -> list[schema.NodeSnapshot]:
    snaps = [b.tower(h) for h in NODES]
    for s in snaps:
        s.bonds = [schema.Bond(name="bond0", mode="802.3ad", degraded=False,
                               slaves=[schema.BondSlave(name="eth0", ok=True), schema.BondSlave(name="eth1", ok=True)])]
    return snaps


def ceph(osd_down: bool) -> schema.ClusterPayload:
    p = b.ceph("HEALTH_WARN" if osd_down else "HEALTH_OK")
    assert p.ceph is not None
    p.ceph.osds = [schema.CephOsd(id=3, up=not osd_down, host="n4"), schema.CephOsd(id=4, up=True, host="n4")]
    p.ceph.checks = [schema.HealthCheck(code="OSD_DOWN", severity="HEALTH_WARN", message="1 osds down")] \
        if osd_down else []
    return p


def queues(growing: bool) -> schema.ClusterPayload:
    p = b.queues(5000 if growing else 3)
    assert p.queues is not None and p.queues.queues
    p.queues.queues[0].growing_unconsumed = growing
    return p


def publish(client: Any, snaps: list[schema.NodeSnapshot], osd_down: bool, growing: bool) -> None:
    b.publish(client, snaps, keys={s.host: b.node_key(s.host) for s in snaps})
    client.set(wire.cluster_key("ceph"), wire.encode(ceph(osd_down)))
    client.set(wire.cluster_key("celery"), wire.encode(queues(growing)))


def service(acl_redis: tuple[RedisServer, Path], urls: list[str]) -> AlertService:
    section = AlertsSection(alertmanager=urls, interval=0.3, resend=5.0, timeout=1.0, cluster="lab")
    return AlertService(section, EVALUATOR, lambda: Client.from_url(url_for(acl_redis, f"node-{EVALUATOR}")),
                        lambda c: Lease(c, ALERTS_LEASE, EVALUATOR, section.interval), b.node_key(EVALUATOR))


EXPECTED = {("BondDegraded", "n1", "bond0"), ("GpuLost", "n2", "gpu0"), ("NodeSilent", "n3", "n3"),
            ("CephOsdDown", "n4", "osd.3"), ("QueueGrowingNoConsumer", None, "celery")}


def ident(a: dict[str, Any]) -> tuple[str, str | None, str]:
    lb = a["labels"]
    return lb["alertname"], lb.get("node"), lb["subject"]


def test_five_troubles_reach_the_webhook_once_and_resolve_once(acl_redis: tuple[RedisServer, Path], admin: redis.Redis,
                                                               hook: Webhook, manager: Alertmanager) -> None:
    publish(admin, healthy(), osd_down=False, growing=False)
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens: delivery there fails, visibly
    svc = service(acl_redis, [manager.url, refused])
    stop = threading.Event()
    t = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: svc.evaluations >= 3, "three evaluations of a healthy cluster")
        assert svc.error is None, svc.error
        assert not hook.notifications() and not manager.alerts()

        # the five troubles, as the nodes and the cluster-scope collectors would publish them
        snaps = healthy()
        snaps[0].bonds[0].degraded = True  # type: ignore[index]
        snaps[0].bonds[0].problems = ["eth1 link down"]  # type: ignore[index]
        snaps[0].bonds[0].slaves[1].ok = False  # type: ignore[index]
        snaps[1].gpus[0] = b.gpu(0, None, lost=True, error="fell off the bus")  # type: ignore[index]
        publish(admin, [s for s in snaps if s.host != "n3"], osd_down=True, growing=True)
        admin.delete(wire.node_key("n3"), wire.brief_key("n3"), wire.digest_key("n3"))  # n3 goes silent

        firing = lambda: {ident(a) for _, a in hook.alerts("firing")}  # noqa: E731
        wait_for(lambda: firing() >= EXPECTED, f"{EXPECTED} firing at the webhook", 30)

        # what routing expects: labels and annotations
        by_ident = {ident(a): a for _, a in hook.alerts("firing")}
        bond = by_ident[("BondDegraded", "n1", "bond0")]
        assert bond["labels"] == {"alertname": "BondDegraded", "severity": "warning", "source": "bond",
                                  "cluster": "lab", "node": "n1", "subject": "bond0"}
        assert "eth1 link down" in bond["annotations"]["description"] and bond["annotations"]["summary"]
        assert by_ident[("GpuLost", "n2", "gpu0")]["labels"]["severity"] == "critical"

        # the signed state: verified against the evaluator's enrolled key, delivery failure visible
        got = store.read(admin, b.known_nodes(EVALUATOR), time.time())
        assert got.verified and got.state is not None, got.text
        assert {(r.rule, r.node, r.subject) for r in got.state.alerts if r.state == "firing"} >= EXPECTED
        d_ok, d_bad = got.state.delivery
        assert d_ok.ok is True and d_bad.ok is False and d_bad.failures >= 1 and d_bad.error
        assert d_bad.url == refused and "refused" in d_bad.error.lower(), d_bad.error

        # fixed: everything resolves
        publish(admin, healthy(), osd_down=False, growing=False)
        resolved = lambda: {ident(a) for _, a in hook.alerts("resolved")}  # noqa: E731
        wait_for(lambda: resolved() >= EXPECTED, f"{EXPECTED} resolved at the webhook", 30)
        # a re-send of the resolved alerts to Alertmanager (every 5 s), then two of its group intervals
        # (1 s): still one notice each way
        done = time.time()
        wait_for(lambda: svc.deliverer.targets[0].sent_ts > done + 0.5, "a re-send after the resolution", 15)
        resent = time.time()
        wait_for(lambda: time.time() > resent + 2.5, "two group intervals", 5)
        fired_n = Counter(ident(a) for _, a in hook.alerts("firing"))
        resolved_n = Counter(ident(a) for _, a in hook.alerts("resolved"))
        assert {k: fired_n[k] for k in EXPECTED} == dict.fromkeys(EXPECTED, 1), fired_n
        assert {k: resolved_n[k] for k in EXPECTED} == dict.fromkeys(EXPECTED, 1), resolved_n
        assert set(fired_n) == EXPECTED  # nothing else fired (a healthy node says nothing)
        events = store.read(admin, b.known_nodes(EVALUATOR), time.time()).state.events  # type: ignore[union-attr]
        assert Counter(e.kind for e in events) == {"fired": 5, "resolved": 5}
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert admin.get(wire.lease_key(ALERTS_LEASE)) is None  # released on stop: the next agent takes over at once


def test_a_new_lease_holder_does_not_notify_again(acl_redis: tuple[RedisServer, Path], admin: redis.Redis,
                                                  hook: Webhook, manager: Alertmanager) -> None:
    snaps = healthy()
    snaps[1].gpus[0] = b.gpu(0, None, lost=True)  # type: ignore[index]
    publish(admin, snaps, osd_down=False, growing=False)
    first = service(acl_redis, [manager.url])
    first.deliverer.start()
    wait_for(lambda: first.step() and any(ident(a)[0] == "GpuLost" for _, a in hook.alerts("firing")),
             "GpuLost at the webhook")
    first.close()  # releases the lease: a hand-over
    second = service(acl_redis, [manager.url])
    second.deliverer.start()
    try:
        for _ in range(5):
            assert second.step()
        wait_for(lambda: manager.alerts(), "the alert still held by Alertmanager")
        publish(admin, healthy(), osd_down=False, growing=False)
        wait_for(lambda: second.step() and hook.alerts("resolved"), "resolved by the new holder")
    finally:
        second.close()
    assert Counter(ident(a) for _, a in hook.alerts("firing")) == {("GpuLost", "n2", "gpu0"): 1}


def test_silences_created_listed_and_expired(manager: Alertmanager) -> None:
    sid = am.create_silence(manager.url, am.silence_matchers("GpuLost", "n2", "gpu0"), 3600, "alice", "RMA booked")
    (s,) = am.active_silences(manager.url)
    assert s.id == sid and s.created_by == "alice" and s.comment == "RMA booked"
    assert s.covers("GpuLost", "n2", "gpu0") and not s.covers("GpuLost", "n1", "gpu0")
    am.expire_silence(manager.url, sid)
    assert am.active_silences(manager.url) == []


def test_the_evaluator_user_may_not_write_what_is_not_its_own(acl_redis: tuple[RedisServer, Path],
                                                              admin: redis.Redis) -> None:
    """--alert-node reads the cluster and writes the alert state; a plain node may do neither."""
    ev = Client.from_url(url_for(acl_redis, f"node-{EVALUATOR}"))
    plain = Client.from_url(url_for(acl_redis, "node-n1"))
    publish(admin, healthy(), osd_down=False, growing=False)
    try:
        assert ev.mget([wire.digest_key("n2"), wire.cluster_key("ceph")])[0] is not None
        assert ev.set("ct:v1:alerts", b"x")
        for call in (lambda: ev.set(wire.digest_key("n2"), b"x"), lambda: ev.set(wire.cluster_key("ceph"), b"x"),
                     lambda: plain.set("ct:v1:alerts", b"x"), lambda: plain.mget([wire.digest_key("n2")]),
                     lambda: plain.set(wire.lease_key(ALERTS_LEASE), b"x")):
            with pytest.raises(Exception, match="NOPERM|no permissions"):
                call()
    finally:
        ev.close()
        plain.close()
