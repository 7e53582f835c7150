"""The read side against a real redis-server: node states, one round trip, bad data isolation, totals."""

from __future__ import annotations

import time

import redis

from clustertop import wire
from clustertop.agents.publisher import Publisher, hist_point
from clustertop.read.cluster import alerts, summarize
from clustertop.read.reader import DOWN_AFTER_S, Reader
from clustertop.wire import schema


def node(host: str, ts: float, gpus: int = 2, util: int = 50, cores: int = 8) -> schema.NodeSnapshot:
    return schema.NodeSnapshot(
        host=host, ts=ts, seq=1, interval_s=1.0,
        system=schema.System(cpu_count=cores, cpu=schema.CpuTimes(util_pct=25.0),
                             mem=schema.Memory(total_bytes=32 << 30, used_bytes=8 << 30)),
        gpus=[schema.Gpu(index=i, name="NVIDIA H100 80GB HBM3", util_pct=util, mem_total_bytes=80 << 30,
                         mem_used_bytes=10 << 30, power_mw=300_000, cuda_cores=16896) for i in range(gpus)],
    )


class CountingConnection(redis.Connection):
    sends = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sends += 1
        return super().send_packed_command(command, check_health)


def test_states_and_totals_from_a_real_redis(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    now = time.time()
    for h in ("gpu01", "gpu02"):
        Publisher(c, h, 1.0).publish(node(h, now))
    Publisher(c, "arm01", 1.0).publish(node("arm01", now, gpus=0, cores=4))
    # stale: listed recently, key gone; down: listed long ago; bad: garbage bytes in its key
    c.zadd(wire.NODES_KEY, {"stale01": now - 5, "down01": now - DOWN_AFTER_S - 30, "bad01": now})
    c.set(wire.node_key("bad01"), b"\x00\xffnot msgpack at all")
    st = Reader(redis_server.client()).read()
    states = {n.host: n.state for n in st.nodes}
    assert states == {"gpu01": "up", "gpu02": "up", "arm01": "up", "stale01": "stale", "down01": "down",
                      "bad01": "bad"}
    bad = st.node("bad01")
    assert bad is not None and bad.error is not None and "bad data from node bad01" in bad.error
    t = st.totals
    assert (t.nodes_total, t.nodes_up, t.nodes_stale, t.nodes_down, t.nodes_bad) == (6, 3, 1, 1, 1)
    assert t.gpus_total == 4 and t.gpus_busy == 4 and t.cpu_cores == 20
    assert t.vram_total_bytes == 4 * (80 << 30) and t.power_mw == 4 * 300_000
    assert t.mem_total_bytes == 3 * (32 << 30) and t.cuda_cores == 4 * 16896
    msgs = [a.message for a in alerts(st.nodes, st.cluster, now)]
    assert any("down" in m for m in msgs) and any("stale" in m for m in msgs)


def test_steady_state_read_is_one_round_trip(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    now = time.time()
    for i in range(50):
        Publisher(c, f"n{i:03d}", 1.0).publish(node(f"n{i:03d}", now))
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    reader = Reader(redis.Redis(connection_pool=pool))
    reader.read()  # first read discovers the nodes (one extra MGET, once)
    CountingConnection.sends = 0
    st = reader.read()
    assert CountingConnection.sends == 1
    assert st.totals.nodes_up == 50
    # a new node costs one extra trip, once
    Publisher(c, "zzz", 1.0).publish(node("zzz", now))
    CountingConnection.sends = 0
    assert reader.read().totals.nodes_up == 51
    assert CountingConnection.sends == 2
    CountingConnection.sends = 0
    reader.read()
    assert CountingConnection.sends == 1


def test_seals_ride_in_the_same_round_trip_beside_the_payload_they_cover(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A screen asks for a few seals per read: still one send, each seal beside the payload kind read for its
    host (full where the plan reads it in full, else the digest), and they verify against those bytes."""
    from clustertop.control import signing, trust
    from clustertop.read.plan import Level, ReadPlan

    c = redis_server.client()
    now = time.time()
    keys = {f"n{i:03d}": signing.new_key() for i in range(50)}
    for h, k in keys.items():
        Publisher(c, h, 60.0, key=k).publish(node(h, now))
    known = trust.KnownNodes(keys={h: k.public() for h, k in keys.items()})
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    reader = Reader(redis.Redis(connection_pool=pool), brief_from=10)  # 50 nodes: digests, not all in full
    reader.read()
    CountingConnection.sends = 0
    st = reader.read(ReadPlan(Level.DIGESTS, frozenset({"n007"})), seals=["n007", "n020", "n021", "nobody"])
    assert CountingConnection.sends == 1
    assert set(st.sealed) == {"n007", "n020", "n021"}  # a host not in the index has nothing to check
    assert st.sealed["n007"][0] == "node" and st.sealed["n020"][0] == "digest"
    for host, (kind, payload, seal) in st.sealed.items():
        assert trust.seal_verdict(host, payload, seal, known, kind).ok, host
    # Relabelled after the seal: the very bytes read no longer match.
    c.set(wire.digest_key("n020"), c.get(wire.digest_key("n021")))
    kind, payload, seal = reader.read(ReadPlan(Level.DIGESTS), seals=["n020"]).sealed["n020"]
    assert "does not match its seal" in trust.seal_verdict("n020", payload, seal, known, kind).text
    assert reader.read().sealed == {}  # asked for none: none read


def test_bad_data_keeps_last_good_snapshot(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    now = time.time()
    Publisher(c, "gpu01", 1.0).publish(node("gpu01", now, util=77))
    reader = Reader(redis_server.client())
    assert reader.read().nodes[0].state == "up"
    c.set(wire.node_key("gpu01"), b"\x93garbage")
    n = reader.read().nodes[0]
    assert n.state == "bad" and n.snap is not None and n.snap.gpus and n.snap.gpus[0].util_pct == 77
    # its numbers no longer count in the totals (not up), but it is still listed
    assert summarize([n]).gpus_total is None


def test_payload_naming_another_host_is_refused(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    c.set(wire.node_key("gpu01"), wire.encode(node("impostor", time.time())))
    c.zadd(wire.NODES_KEY, {"gpu01": time.time()})
    n = Reader(c).read().nodes[0]
    assert n.state == "bad" and "impostor" in (n.error or "")


def test_totals_are_none_when_nobody_reports() -> None:
    t = summarize([])
    assert t.gpus_total is None and t.mem_total_bytes is None and t.cpu_util_pct is None


def test_busy_gpus_are_unknown_where_no_card_reports_utilisation() -> None:
    """A node whose cards report no utilisation adds nothing to the busy count: a cluster of only
    such nodes says busy N/A, never 0. Nodes with no live card are 0 busy: that is known."""
    from clustertop.read.reader import NodeView
    from tests.support import builders as b

    def up(snap: schema.NodeSnapshot) -> NodeView:
        return NodeView(host=snap.host, state="up", last_seen_ts=b.NOW, snap=snap)

    silent = up(b.node("silent", gpus=[b.gpu(0, None), b.gpu(1, None)]))
    lost_gpu = b.gpu(0, 90)
    lost_gpu.lost = True
    all_lost, no_gpus = up(b.node("lost", gpus=[lost_gpu])), up(b.node("arm", gpus=[]))
    busy = up(b.tower("busy", (80, 5)))
    t = summarize([silent])
    assert t.gpus_total == 2 and t.gpus_busy is None and t.gpu_util_pct is None
    assert summarize([silent, all_lost, no_gpus]).gpus_busy == 0
    t = summarize([silent, busy])
    assert t.gpus_total == 4 and t.gpus_busy == 1  # the one card of the four known to be busy


def test_history_point_is_compact_and_counts_each_byte_once() -> None:
    snap = node("gpu01", 1.0)
    assert snap.system is not None
    snap.system.nics = [
        schema.Nic(name="bond0", kind="bond", rx_bytes_s=300.0, tx_bytes_s=30.0),
        schema.Nic(name="eth0", kind="bond-slave", rx_bytes_s=100.0, tx_bytes_s=10.0),
        schema.Nic(name="lo", kind="loopback", rx_bytes_s=999.0, tx_bytes_s=999.0),
    ]
    hp = hist_point(snap)
    assert hp.rx == 300.0 and hp.tx == 30.0 and hp.gu == [50, 50]
    assert len(wire.encode(hp)) < 120


def test_ceph_unreachable_is_a_total_and_down_osds_are_named() -> None:
    down = schema.Ceph(status="HEALTH_WARN", checks=[schema.HealthCheck(code="OSD_DOWN", severity="HEALTH_WARN",
                                                                        message="1 osds down")],
                       osds=[schema.CephOsd(id=0, host="gpu01", up=True), schema.CephOsd(id=7, host="gpu03", up=False)])
    t = summarize([], {"ceph": schema.ClusterPayload(name="ceph", ok=True, ceph=down)})
    assert t.ceph_status == "HEALTH_WARN" and not t.ceph_unreachable
    [a] = alerts([], {"ceph": schema.ClusterPayload(name="ceph", ok=True, ceph=down)}, 0.0)
    assert (a.node, a.subject, a.message) == ("gpu03", "osd.7", "Ceph OSD_DOWN: osd.7 on gpu03 is down")
    gone = schema.ClusterPayload(name="ceph", ok=False, error="Ceph unreachable: all mgr URLs failed", ceph=down,
                                 last_ok_ts=100.0)
    t = summarize([], {"ceph": gone})
    assert t.ceph_status is None and t.ceph_unreachable  # never a healthy-looking stale status
    [a] = alerts([], {"ceph": gone}, 220.0)
    assert a.severity == "critical" and a.message.endswith("last good data 2m ago")
