"""The read side of the full snapshot's cadence (issue 18, the byte budget): freshness from the digests even
where every node is read in full, a full snapshot from an earlier tick never passed off as current, and the
want keys a reader writes (and a reader that may not write them still reads). Real redis-server, the real
Publisher and Reader.
"""

from __future__ import annotations

import time
from typing import Any

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support import builders as b

EVERY = 5.0
HOSTS = ["gpu01", "gpu02"]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cadence(client: Any, hosts: list[str] = HOSTS) -> dict[str, Publisher]:
    return {h: Publisher(client, h, 1.0, full_every_s=EVERY, tiers=False) for h in hosts}


def tick(pubs: dict[str, Publisher], k: int) -> None:
    for h, pub in pubs.items():
        pub.publish(b.tower(h, utils=(10 + k, 5), ts=b.NOW + k, seq=k + 1))


def test_an_all_full_read_takes_freshness_from_the_digests(redis_server: RedisServer) -> None:
    """A node whose agent stopped goes stale when its digest expires, although its full snapshot's key (which
    outlives its cadence) is still there; the other node, whose digest lives, stays up."""
    raw = redis_server.client()
    pubs = cadence(raw)
    tick(pubs, 0)
    clock = Clock(b.NOW + 1)
    reader = Reader(raw, clock=clock)
    assert [v.state for v in reader.read(ALL_FULL).nodes] == ["up", "up"]
    # gpu01's agent stops: its per-tick keys expire by Redis's own clock, its full snapshot's key does not yet.
    for key in (wire.brief_key("gpu01"), wire.digest_key("gpu01")):
        raw.pexpire(key, 50)
    time.sleep(0.15)
    assert raw.exists(wire.node_key("gpu01"))
    for plan in (ALL_FULL, ReadPlan(Level.DIGESTS, frozenset(["gpu01"]))):
        state = Reader(raw, clock=clock, brief_from=1).read(plan) if plan is not ALL_FULL else reader.read(plan)
        v = state.node("gpu01")
        assert v is not None and v.state == "stale", (plan, v)
        assert v.snap is not None and v.snap.seq == 1  # its last data, shown as stale, with its age
        assert state.node("gpu02").state == "up"  # type: ignore[union-attr]
        assert state.totals.nodes_up == 1


def test_an_older_agent_without_digest_is_still_up(redis_server: RedisServer) -> None:
    """An agent from before digests and the cadence writes only its full key, every tick: up, as before."""
    raw = redis_server.client()
    snap = b.tower("old01")
    raw.set(wire.node_key("old01"), wire.encode(snap), px=3000)
    raw.zadd(wire.NODES_KEY, {"old01": snap.ts})
    tick(cadence(raw, ["gpu01"]), 0)
    for brief_from in (None, 1):
        for plan in (ALL_FULL, ReadPlan(Level.DIGESTS), ReadPlan(Level.BRIEFS, frozenset(["old01"]))):
            reader = Reader(raw, clock=Clock(b.NOW), brief_from=brief_from)
            reader.read(plan)  # the first read learns what each agent writes
            v = reader.read(plan).node("old01")
            assert v is not None and v.state == "up" and v.detail_age_s is None, (brief_from, plan, v)
            assert v.digest is not None and v.digest.gpus == 2


def test_a_full_snapshot_of_an_earlier_tick_says_how_old_it_is(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cadence(raw)
    for k in range(4):  # tick 0 wrote the full snapshots; ticks 1-3 the briefs, digests and seals only
        tick(pubs, k)
    clock = Clock(b.NOW + 3.5)
    # Asked in full (every node: the CLI, the exporter; one node: its screen, on a big cluster too).
    for plan, brief_from in ((ALL_FULL, None), (ReadPlan(Level.DIGESTS, frozenset(["gpu01"])), 1)):
        v = Reader(raw, clock=clock, brief_from=brief_from).read(plan).node("gpu01")
        assert v is not None and v.state == "up" and not v.brief
        # This tick's figures (the brief's) over the full snapshot's detail (its processes), which says its age.
        assert v.snap is not None and v.snap.seq == 4 and v.snap.system is not None and v.snap.system.procs
        assert v.snap.gpus is not None and v.snap.gpus[0].util_pct == 13
        assert v.detail_age_s == 3.5
        assert v.digest is not None and v.digest.seq == 4  # the tiles and totals: this tick's
    # A small cluster read in full only by the size rule, for a screen that draws briefs: this tick's brief.
    state = Reader(raw, clock=clock).read(ReadPlan(Level.BRIEFS))
    assert state.plan == ALL_FULL
    for v in state.nodes:
        assert v.brief and v.snap is not None and v.snap.seq == 4 and v.detail_age_s is None
        assert v.snap.gpus is not None and v.snap.gpus[0].util_pct == 13
    # ... except the node it asks for in full (a node's screen): that one's full snapshot, with its age.
    state = Reader(raw, clock=clock).read(ReadPlan(Level.DIGESTS, frozenset(["gpu02"])))
    v1, v2 = state.node("gpu01"), state.node("gpu02")
    assert v1 is not None and v1.brief and v1.detail_age_s is None
    assert v2 is not None and not v2.brief and v2.detail_age_s == 3.5


def test_a_reader_wants_what_it_reads_in_full_and_the_agent_answers(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cadence(raw, ["gpu01", "gpu02", "gpu03"])
    tick(pubs, 0)
    tick(pubs, 1)
    wants = Wants()
    reader = Reader(raw, clock=Clock(b.NOW + 1), brief_from=1, wants=wants)
    # The nodes table with gpu02's screen on top: only gpu02 is wanted.
    assert reader.read(ReadPlan(Level.DIGESTS, frozenset(["gpu02"]))).node("gpu02").detail_age_s == 1  # type: ignore[union-attr]
    assert [bool(raw.exists(wire.want_key(h))) for h in sorted(pubs)] == [False, True, False]
    assert 0 < raw.pttl(wire.want_key("gpu02")) <= wire.WANT_PX_MS
    # Reads a second later do not rewrite it (once REFRESH_FRACTION of its PX has passed, they do).
    reader.read(ReadPlan(Level.DIGESTS, frozenset(["gpu02"])))
    assert wants.writes == 1
    tick(pubs, 2)  # sees the want
    tick(pubs, 3)  # writes gpu02 in full
    reader.clock = Clock(b.NOW + 3.2)
    v = reader.read(ReadPlan(Level.DIGESTS, frozenset(["gpu02"]))).node("gpu02")
    assert v is not None and v.snap is not None and v.snap.seq == 4 and v.detail_age_s is None
    assert [p.fulls for _, p in sorted(pubs.items())] == [1, 2, 1]
    # Every node in full (the CLI, the exporter, a screen of detail from every node): all wanted.
    Reader(raw, wants=Wants()).read(ALL_FULL)
    assert all(raw.exists(wire.want_key(h)) for h in pubs)


def test_a_small_cluster_read_in_full_by_the_size_rule_wants_nothing_more(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    tick(cadence(raw), 0)
    wants = Wants()
    state = Reader(raw, wants=wants).read(ReadPlan(Level.GPUS))
    assert state.plan == ALL_FULL and wants.writes == 0
    assert not any(raw.exists(wire.want_key(h)) for h in HOSTS)


def test_a_reader_that_may_not_write_wants_still_reads(redis_server: RedisServer) -> None:
    """A Redis user without the want rule (an ACL from before it) and a READONLY replica: the read stands, the
    refusal is said once and not retried every read."""
    admin = redis_server.client()
    b.publish(admin, [b.tower(h) for h in HOSTS])  # keys that outlive the replica's first sync
    admin.execute_command("ACL", "SETUSER", "ro", "on", ">pw", "~*", "+@read", "+@connection")
    ro = redis_server.client().__class__(host="127.0.0.1", port=redis_server.port, username="ro", password="pw")
    replica = RedisServer(["--replicaof", "127.0.0.1", str(redis_server.port)])
    try:
        rep = replica.client()
        deadline = time.monotonic() + 10
        while rep.zcard(wire.NODES_KEY) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for client, word in ((ro, "NoPermission"), (rep, "ReadOnly")):
            wants = Wants()
            reader = Reader(client, clock=Clock(b.NOW), wants=wants)
            state = reader.read(ALL_FULL)
            assert [v.state for v in state.nodes] == ["up", "up"]
            assert wants.error is not None and word in wants.error and wants.writes == 0
            sends = []
            real = client.pipeline
            client.pipeline = lambda *a, _s=sends, _r=real, **kw: _s.append(1) or _r(*a, **kw)  # type: ignore[method-assign]
            reader.read(ALL_FULL)
            assert len(sends) == 1  # the read's own pipeline; no second try at the wants within RETRY_S
    finally:
        replica.stop()
    assert not admin.exists(wire.want_key("gpu01"))


def test_the_demo_dashboard_source_wants_and_the_simulator_answers(redis_server: RedisServer) -> None:
    """The demo's path: the simulator (real Publisher, batched pipeline) and the dashboard's Source reading a
    node's screen: within two ticks that node's full snapshot is this tick's."""
    from clustertop.dashboard.source import Source
    from clustertop.sim.simulate import SimCluster, make_publishers, publish

    raw = redis_server.client()
    sim = SimCluster(seed=5, nodes=3)
    pubs = make_publishers(sim, raw, 1.0)
    t = 1_900_000_000.0
    for k in range(3):
        publish(raw, sim, t + k, pubs)
    host = sorted(pubs)[1]
    src = Source(redis_server.client, clock=lambda: t + 2.5)
    plan = ReadPlan(Level.DIGESTS, frozenset([host]))
    v = src.read(plan).node(host)
    assert v is not None and v.detail_age_s == 2.5  # the full snapshot of tick 0, and it says so
    publish(raw, sim, t + 3, pubs)  # sees the want
    publish(raw, sim, t + 4, pubs)  # full
    v = src.read(plan).node(host)
    assert v is not None and v.detail_age_s is None and v.snap is not None and v.snap.ts == t + 4
    others = [h for h in pubs if h != host]
    assert all(wire.decode(raw.get(wire.node_key(h)), schema.NodeSnapshot).ts == t for h in others)


def test_a_cadenced_agent_with_older_digest_rules_reads_up_by_its_brief(redis_server: RedisServer) -> None:
    """A digest made by older rules is not used (the reader folds the brief itself): the node's brief key, not
    its long-lived full key, then says whether it is up, also where the node is read in full."""
    from clustertop.wire.digest import RULES

    raw = redis_server.client()
    tick(cadence(raw, ["gpu01"]), 0)
    d = wire.decode(raw.get(wire.digest_key("gpu01")), schema.NodeDigest)
    d.rules = RULES - 1
    raw.set(wire.digest_key("gpu01"), wire.encode(d), keepttl=True)
    plan = ReadPlan(Level.DIGESTS, frozenset(["gpu01"]))
    for brief_from in (None, 1):
        reader = Reader(raw, clock=Clock(b.NOW + 1), brief_from=brief_from)
        reader.read(plan)  # learns that gpu01's digest is not usable
        v = reader.read(plan).node("gpu01")
        assert v is not None and v.state == "up" and not v.brief and v.snap is not None and v.snap.system is not None
    raw.delete(wire.brief_key("gpu01"), wire.digest_key("gpu01"))  # the agent stops; its full key lives on
    assert reader.read(plan).node("gpu01").state == "stale"  # type: ignore[union-attr]


def test_hostile_stamps_and_cadences_spoil_only_their_node(redis_server: RedisServer) -> None:
    """A node's full snapshot with an absurd time stamp or cadence (NaN, infinities, 2**64) beside a sound
    digest: read without an exception, its age never negative, and the other nodes untouched. A hostile
    ``full_every_s`` can only make its own node's full key no sign of life."""
    raw = redis_server.client()
    pubs = cadence(raw, ["gpu01", "gpu02"])
    tick(pubs, 0)
    for ts, every in ((float("nan"), 1.0), (float("inf"), float("nan")), (-float("inf"), -5.0), (2.0**64, 2.0**64)):
        snap = b.tower("gpu01", ts=ts, seq=1)
        snap.full_every_s = every
        raw.set(wire.node_key("gpu01"), wire.encode(snap), px=60_000)
        for plan, brief_from in ((ALL_FULL, None), (ReadPlan(Level.DIGESTS, frozenset(["gpu01"])), 1),
                                 (ReadPlan(Level.BRIEFS), None)):
            state = Reader(raw, clock=Clock(b.NOW + 1), brief_from=brief_from).read(plan)
            v, other = state.node("gpu01"), state.node("gpu02")
            assert v is not None and v.state == "up"  # its digest says so
            assert v.detail_age_s is None or v.detail_age_s >= 0
            assert other is not None and other.state == "up" and other.detail_age_s is None


def test_a_node_read_in_full_shows_its_briefs_figures_over_older_detail(redis_server: RedisServer) -> None:
    """A full snapshot 10 s older than its brief: the GPU's utilisation is the brief's, its UUID and the
    processes' VRAM the full snapshot's, and the view says how old that detail is. One GPU gone since, one
    collector recovered since: gone and ok."""
    raw = redis_server.client()
    pub = Publisher(raw, "gpu01", 1.0, full_every_s=60.0, tiers=False)
    old = b.tower("gpu01", utils=(10, 20, 30), ts=b.NOW, seq=1)
    old.collectors["bonds"] = schema.CollectorStatus(ok=False, error="PermissionError: /proc/net/bonding")
    assert old.gpus is not None
    old.gpus[0].uuid = "GPU-tick-1"
    old.gpus[0].procs = [schema.GpuProc(pid=4242, user="ann", used_mem_bytes=3 << 30, cmdline="python train.py")]
    pub.publish(old)
    new = b.tower("gpu01", utils=(77, 20), ts=b.NOW + 10, seq=11)  # GPU 2 fell off; the bonds read again
    assert new.gpus is not None
    # Not in the brief: VRAM per process is detail.
    new.gpus[0].procs = [schema.GpuProc(pid=4242, user="ann", used_mem_bytes=1 << 30, cmdline="python train.py")]
    pub.publish(new)
    assert pub.fulls == 1  # the full snapshot is still tick 1's
    plans = ((ALL_FULL, None), (ReadPlan(Level.DIGESTS, frozenset(["gpu01"])), 1),
             (ReadPlan(Level.BRIEFS, frozenset(["gpu01"])), 1))
    for plan, brief_from in plans:
        v = Reader(raw, clock=Clock(b.NOW + 10.5), brief_from=brief_from).read(plan).node("gpu01")
        assert v is not None and v.state == "up" and not v.brief, plan
        assert v.detail_age_s == 10.5
        snap = v.snap
        assert snap is not None and snap.ts == b.NOW + 10 and snap.seq == 11
        assert snap.gpus is not None and [g.index for g in snap.gpus] == [0, 1]
        g = snap.gpus[0]
        assert g.util_pct == 77 and g.uuid == "GPU-tick-1" and g.bus_id == old.gpus[0].bus_id
        assert g.procs is not None and g.procs[0].used_mem_bytes == 3 << 30  # the detail, from tick 1
        assert g.procs[0].cmdline == "python train.py"
        assert snap.collectors["bonds"].ok and snap.collectors["bonds"].error is None
        assert v.digest is not None and v.digest.gpus == 2
    # Once the agent writes its full snapshot again (same tick as the brief): that one, current, no age.
    pub.full_every_s = 0.0
    pub.publish(b.tower("gpu01", utils=(78, 20), ts=b.NOW + 11, seq=12))
    v = Reader(raw, clock=Clock(b.NOW + 11.2)).read(ALL_FULL).node("gpu01")
    assert v is not None and v.detail_age_s is None and v.snap is not None and v.snap.gpus[0].util_pct == 78  # type: ignore[index]


def test_a_bad_brief_beside_a_good_full_snapshot_is_said_and_spoils_only_its_node(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pubs = cadence(raw)
    tick(pubs, 0)
    tick(pubs, 1)
    for junk in (b"\xff" * 100, wire.encode(b.tower("gpu02", ts=b.NOW + 1))):  # garbage; a brief naming another host
        raw.set(wire.brief_key("gpu01"), junk, keepttl=True)
        state = Reader(raw, clock=Clock(b.NOW + 1.5)).read(ALL_FULL)
        v, other = state.node("gpu01"), state.node("gpu02")
        assert v is not None and v.state == "bad" and v.error is not None and "brief" in v.error
        assert v.snap is not None and v.snap.seq == 1  # the full snapshot as it is, not overlaid
        assert other is not None and other.state == "up" and other.snap is not None and other.snap.seq == 2
