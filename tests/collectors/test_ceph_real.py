"""The ceph collector against a REAL Ceph 16 cluster (tests/support/ceph_cluster.py): healthy, an OSD killed
and brought back, the mgr stopped. Skips only when the Ceph binaries are missing (the README's test
command installs them). One test on purpose: the cluster's states follow each other, and the whole
story takes well under two minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clustertop import wire
from clustertop.collectors.base import Context
from clustertop.collectors.ceph import CephCollector, CephUnreachable
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support.ceph_cluster import CephMini, ceph_cluster  # noqa: F401 - the session fixture

pytestmark = pytest.mark.slow

#: How often the test polls collect(): a short collector interval.
POLL_S = 2.0


def codes(c: schema.Ceph) -> set[str]:
    return {k.code for k in c.checks or ()}


def poll(col: CephCollector, until: Callable[[schema.Ceph], bool], limit_s: float) -> tuple[schema.Ceph, int]:
    """collect() every POLL_S until ``until`` holds; returns the result and how many polls it took.
    Bounded: Ceph's own timers (PG peering, heartbeats) decide how long a state change takes."""
    end = time.monotonic() + limit_s
    n = 0
    while True:
        n += 1
        c = col.collect()
        if until(c):
            return c, n
        if time.monotonic() >= end:
            raise AssertionError(f"not reached in {limit_s} s ({n} polls); last: status={c.status} "
                                 f"checks={sorted(codes(c))} osds_up={c.osds_up} pgs={c.pg_states}")
        time.sleep(POLL_S)


def clean(c: schema.Ceph) -> bool:
    return (c.status == "HEALTH_OK" and bool(c.pg_states) and set(c.pg_states or {}) == {"active+clean"}
            and c.osds_up == c.osds_total)


def test_real_ceph_healthy_degraded_recovered_then_mgr_lost(ceph_cluster: CephMini, tmp_path: Path) -> None:  # noqa: F811
    cl = ceph_cluster
    options = {"urls": [cl.url], "username": cl.username, "password_file": str(cl.password_file),
               "detail_interval": 0, "request_timeout": 5}  # detail every poll: the OSD list must follow too
    col = CephCollector(Context(node="t", config=options, config_file=str(tmp_path / "agent.toml"),
                                interval_s=POLL_S))
    victim = f"osd.{cl.osds - 1}"
    victim_id = cl.osds - 1
    try:
        # 1. Healthy: HEALTH_OK with every PG active+clean (HEALTH_OK alone comes too early).
        t0 = time.monotonic()
        c, _ = poll(col, clean, 90)
        print(f"\nceph: healthy and clean after {time.monotonic() - t0:.1f} s")
        assert (c.fsid, c.url, c.mgr_active, c.mons, c.mons_quorum) == (cl.fsid, cl.url, "x", 1, 1)
        assert (c.osds_total, c.osds_up, c.osds_in) == (cl.osds, cl.osds, cl.osds)
        assert c.checks == [] and c.errors is None
        assert c.total_bytes == cl.osds * 1073741824 and c.avail_bytes is not None and c.used_bytes is not None
        assert c.osds is not None and [o.id for o in c.osds] == list(range(cl.osds))
        assert all(o.up and o.in_ and o.total_bytes == 1073741824 for o in c.osds)
        assert c.pools is not None and "rbd" in [p.name for p in c.pools]
        assert c.images is not None
        images = {i.name: i for i in c.images}
        assert images["db-clone1"].parent == "rbd/db-golden@base"
        [base] = images["db-golden"].snapshots or []
        assert (base.name, base.protected, base.children) == ("base", True, ["rbd/db-clone1"])
        healthy = c

        # 2. Kill one OSD (SIGTERM, as the recipe does): down within two collector intervals.
        cl.stop_daemon(victim)
        t0 = time.monotonic()
        c, polls = poll(col, lambda c: c.osds_up == cl.osds - 1 and "OSD_DOWN" in codes(c), 30)
        print(f"ceph: {victim} down seen at poll {polls} ({time.monotonic() - t0:.1f} s)")
        assert polls <= 2, f"OSD down seen only after {polls} polls of {POLL_S} s"
        assert c.status == "HEALTH_WARN"
        assert c.osds is not None and c.osds[victim_id].up is False
        # PG_DEGRADED needs the PGs to peer again: Ceph takes 6-9 s here; bounded wait.
        c, _ = poll(col, lambda c: "PG_DEGRADED" in codes(c), 45)
        print(f"ceph: PG_DEGRADED after {time.monotonic() - t0:.1f} s")
        degraded = next(k for k in c.checks or () if k.code == "PG_DEGRADED")
        assert degraded.count and degraded.count > 0 and degraded.detail
        assert any("degraded" in state for state in c.pg_states or {})
        assert c.objects_degraded and c.objects_degraded > 0

        # 3. Bring it back: healthy again.
        cl.start_daemon(victim)
        t0 = time.monotonic()
        c, _ = poll(col, clean, 90)
        print(f"ceph: healthy again {time.monotonic() - t0:.1f} s after restarting {victim}")
        assert c.checks == [] and c.osds is not None and all(o.up for o in c.osds)

        # 4. A standby mgr: its dashboard redirects (303) to the active one, which we follow.
        standby = cl.start_standby_mgr("y")
        via = CephCollector(Context(node="t", config={**options, "urls": [standby]}, interval_s=POLL_S))
        try:
            c, _ = poll(via, lambda c: c.mgr_standbys == 1, 30)
            assert (c.url, c.mgr_active, c.status) == (cl.url, "x", "HEALTH_OK")
        finally:
            via.close()
            cl.stop_daemon("mgr.y")

        # 5. Stop the mgr: "Ceph unreachable", and the last good data is still there.
        last_ok = col.last_ok_ts
        cl.stop_daemon("mgr.x")
        with pytest.raises(CephUnreachable) as e:
            col.collect()
        assert str(e.value).startswith(f"Ceph unreachable: all mgr URLs failed: {cl.url}: ConnectError")
        assert col.last_good is not None and col.last_good.status == "HEALTH_OK"
        assert col.last_ok_ts == last_ok and col.last_good.fsid == healthy.fsid
    finally:
        col.close()
        cl.start_daemon("mgr.x")  # leave the session's cluster as we found it
    _agent_publishes_last_good(cl, tmp_path)


def _agent_publishes_last_good(cl: CephMini, tmp_path: Path) -> None:
    """The real agent (if built yet): ok=True while the mgr serves, then ok=False with the error,
    the last good data and last_ok_ts once it is gone, as published to a real Redis."""
    try:
        from clustertop.agents.agent import Agent
        from clustertop.agents.config import AgentConfig, CollectorConfig
    except ImportError:
        return
    redis_srv = RedisServer()
    options = {"urls": [cl.url], "username": cl.username, "password_file": str(cl.password_file), "request_timeout": 5}
    collectors = {n: CollectorConfig(name=n, enabled=False) for n in ("host", "gpu", "bonds", "nfs")}
    collectors["ceph"] = CollectorConfig(name="ceph", interval_s=POLL_S, options=options)
    cfg = AgentConfig(file=str(tmp_path / "agent.toml"), redis_url=redis_srv.url, node="t", interval_s=1.0,
                      collectors=collectors)
    agent = Agent(cfg, dry_run=True)  # dry run: every collector each tick, no lease to wait for
    try:
        client = redis_srv.client()

        def published() -> schema.ClusterPayload:
            snap, cluster = agent.tick()
            assert agent.publish(snap, cluster)
            return wire.decode(client.get(wire.cluster_key("ceph")), schema.ClusterPayload)

        end = time.monotonic() + 60
        while (p := published()).ok is False or p.ceph is None or p.ceph.status != "HEALTH_OK":
            assert time.monotonic() < end, f"agent never published a good ceph payload: {p.error}"
            time.sleep(POLL_S)  # the mgr restarted above: its dashboard takes a few seconds
        good_ts = p.last_ok_ts
        print("ceph: agent published ok=True; stopping the mgr")
        cl.stop_daemon("mgr.x")
        p = published()
        assert p.ok is False and p.error is not None and "Ceph unreachable: all mgr URLs failed" in p.error
        assert p.ceph is not None and p.ceph.status == "HEALTH_OK"  # the last good data
        assert p.last_ok_ts == good_ts
    finally:
        agent.close()
        redis_srv.stop()
        cl.start_daemon("mgr.x")
