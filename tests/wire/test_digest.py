"""Digests: each node folded on the node, merged by the dashboard; against a real redis-server.

The invariant that makes digest-only reads safe: totals and alerts from a read of digests alone are
those of a read of every full snapshot, on a simulated cluster given every kind of trouble the
folds look at. Then what must not break it: agents that publish no digest or one made by older
rules (their briefs are read and folded here), garbage in a digest key, and the app's hidden GPU
ledger, which needs the GPU processes a digest-only read does not have.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.dashboard.app import make_app
from clustertop.dashboard.settings import Settings
from clustertop.read.cluster import alerts
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.sim.simulate import SimCluster
from clustertop.wire import schema
from clustertop.wire.digest import RULES, digest
from tests.read.test_reader import CountingConnection
from tests.support import builders as b
from tests.wire.test_brief import troubled

#: Every node's digest and nothing more: the overview's and the nodes table's read.
DIGESTS = ReadPlan(Level.DIGESTS)


def publish_all(client: Any, snaps: list[schema.NodeSnapshot]) -> None:
    for s in snaps:
        Publisher(client, s.host, 600.0).publish(s)


def same_totals(a: Any, b_: Any) -> None:
    """Equal totals; float sums to rounding (a node's NIC rates are summed on the node, then merged)."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b_)
    assert da.keys() == db.keys()
    for k, v in da.items():
        assert v == (pytest.approx(db[k], rel=1e-12) if isinstance(v, float) else db[k]), k


def test_a_digest_only_read_gives_the_totals_and_alerts_of_a_full_read(redis_server: Any) -> None:
    c = redis_server.client()
    snaps, _ = troubled(nodes=60)
    publish_all(c, snaps)
    full = Reader(c, clock=lambda: b.NOW + 0.5, brief_from=0).read(ALL_FULL)
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    reader = Reader(redis.Redis(connection_pool=pool), clock=lambda: b.NOW + 0.5, brief_from=0)
    reader.read(DIGESTS)  # the first read learns the nodes
    CountingConnection.sends = 0
    st = reader.read(DIGESTS)
    assert CountingConnection.sends == 1  # steady state: one round trip
    assert st.plan == DIGESTS
    assert all(v.state == "up" and v.snap is None and v.digest is not None for v in st.nodes)
    assert not reader.older.without_digest and not reader.older.without_brief
    same_totals(st.totals, full.totals)
    assert st.totals.gpus_lost and st.totals.bonds_degraded and st.totals.gpu_util_pct is not None
    got, want = alerts(st.nodes, {}, b.NOW), alerts(full.nodes, {}, b.NOW)
    assert got == want and {"gpu", "bond", "mount", "disk", "collector"} <= {a.source for a in want}
    # What makes it worth it: a digest is a small fraction of the brief it stands in for (as msgpack, what a
    # reader decodes; both are stored packed, wire.compress).
    towers = [s.host for s in snaps if s.gpus and len(s.gpus) == 8]
    d_bytes = sum(len(wire.encode(wire.decode(x, schema.NodeDigest))) for x in c.mget([wire.digest_key(h) for h in towers]))
    b_bytes = sum(len(wire.encode(wire.decode(x, schema.NodeSnapshot))) for x in c.mget([wire.brief_key(h) for h in towers]))
    assert d_bytes * 4 < b_bytes, (d_bytes, b_bytes)


def test_agents_without_a_usable_digest_are_folded_from_their_briefs(redis_server: Any) -> None:
    c = redis_server.client()
    snaps, _ = troubled(nodes=30)
    publish_all(c, snaps)
    want = Reader(c, clock=lambda: b.NOW + 0.5, brief_from=0).read(ALL_FULL).totals
    # An agent from before digests (none published), and one whose digest was made by older rules
    # and says something else (a dashboard must not take an old agent's verdict for its own).
    old, stale_rules = snaps[0].host, snaps[1].host
    c.delete(wire.digest_key(old))
    wrong = digest(snaps[1])
    wrong.rules, wrong.cpu_count, wrong.alerts = RULES - 1, 9999, [
        schema.DigestAlert(severity="critical", source="gpu", subject="gpu0", message="old rule")]
    c.set(wire.digest_key(stale_rules), wire.encode(wrong))
    pool = redis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    reader = Reader(redis.Redis(connection_pool=pool), clock=lambda: b.NOW + 0.5, brief_from=0)
    reader.read(DIGESTS)
    st = reader.read(DIGESTS)
    assert reader.older.without_digest == {old, stale_rules}
    for h in (old, stale_rules):
        v = st.node(h)
        assert v is not None and v.state == "up" and v.brief and v.digest == digest(v.snap)  # type: ignore[arg-type]
    same_totals(st.totals, want)
    assert not [a for a in alerts(st.nodes) if a.message == "old rule"]
    CountingConnection.sends = 0
    reader.read(DIGESTS)
    assert CountingConnection.sends == 1  # their briefs are in the one pipeline now
    # The agent upgraded: its digest is read again, its brief no longer.
    Publisher(c, old, 600.0).publish(snaps[0])
    reader.read(DIGESTS)
    assert old not in reader.older.without_digest and reader.read(DIGESTS).node(old).snap is None  # type: ignore[union-attr]


def test_garbage_in_a_digest_makes_that_node_bad_and_no_other(redis_server: Any) -> None:
    c = redis_server.client()
    snaps = [b.tower(f"gpu-0{i}") for i in range(1, 5)]
    publish_all(c, snaps)
    c.set(wire.digest_key("gpu-01"), b"\xc1 not msgpack")  # 0xC1 marks a packed payload; " " is dictionary 32
    c.set(wire.digest_key("gpu-02"), wire.encode(digest(b.tower("somebody-else"))))
    odd = digest(snaps[2])
    odd.alerts = [schema.DigestAlert(severity="apocalyptic", source="gpu", subject="gpu0", message="[b]hot[/b]")]
    c.set(wire.digest_key("gpu-03"), wire.encode(odd))
    reader = Reader(c, clock=lambda: b.NOW + 0.5, brief_from=0)
    reader.read(DIGESTS)
    st = reader.read(DIGESTS)
    by = {v.host: v for v in st.nodes}
    assert by["gpu-01"].state == "bad" and "digest: dictionary 32 unknown" in (by["gpu-01"].error or "")
    assert by["gpu-02"].state == "bad" and "payload names host 'somebody-else'" in (by["gpu-02"].error or "")
    assert by["gpu-03"].state == by["gpu-04"].state == "up"
    # A bad node still shows its last values, folded from its brief; it is not counted as up.
    assert by["gpu-01"].digest is not None and by["gpu-01"].digest.gpus == 2
    assert st.totals.nodes_up == 2 and st.totals.nodes_bad == 2
    odd_alert = [a for a in alerts(st.nodes) if a.node == "gpu-03"]
    assert [(a.severity, a.message) for a in odd_alert] == [("warning", "[b]hot[/b]")]  # a word it knows


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_hidden_gpu_ledger_gets_a_read_of_its_own_beside_a_digest_overview(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import clustertop.read.plan

    monkeypatch.setattr(clustertop.read.plan, "BRIEF_FROM_NODES", 0)
    sim = SimCluster(seed=2, nodes=12, gpus_per_node=4)
    pairs, cluster = sim.step(b.NOW)
    b.publish(redis_server.client(), [s for s, _ in pairs], cluster=cluster)
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="digest"), redis_server.client)
    # Below the big overview's size (overview.BIG_W x BIG_H): there the busiest GPUs' few nodes are read in
    # full beside the digests (tests/dashboard/test_overview_big.py); this is the compact overview's read.
    async with app.run_test(size=(148, 44)) as pilot:
        await b.wait_reads(pilot)
        app.refresh_now()
        await b.wait_until(pilot, lambda: app.view.state.plan == DIGESTS, "digests on the overview")
        await b.wait_until(pilot, lambda: app.ledger is not None, "the ledger's own read")
        assert app.view.state.plan == DIGESTS  # the overview's reads stayed digest-only
        # Built from the briefs' GPUs (a digest-only state has no GPU processes to build it from).
        total = app.view.state.totals.gpus_total
        assert app.ledger is not None and total and app.ledger.cluster.gpus_seen == total


@pytest.mark.anyio
async def test_the_hidden_ledger_reads_only_the_kubernetes_nodes(redis_server: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Hidden, only the ledger's flags are used (alerts), and they concern Kubernetes nodes (and the nodes its pods
    are bound to) only: its own read takes those hosts' GPUs, not every node's (120 simulated nodes, 40 towers, 32 of
    them Kubernetes nodes)."""
    import clustertop.read.plan
    from clustertop.read.ledger import kube_host_filter

    monkeypatch.setattr(clustertop.read.plan, "BRIEF_FROM_NODES", 0)
    sim = SimCluster(seed=2, nodes=120, gpus_per_node=4)
    pairs, cluster = sim.step(b.NOW)
    b.publish(redis_server.client(), [s for s, _ in pairs], cluster=cluster)
    k8s = next(c.kubernetes for c in cluster if c.kubernetes is not None)
    names = {n.name for n in k8s.nodes or ()}
    assert 0 < len(names) < len(sim.tower_hosts)  # GPU nodes outside Kubernetes too
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="digest"), redis_server.client)
    async with app.run_test(size=(148, 44)) as pilot:
        await b.wait_reads(pilot)
        app.refresh_now()
        await b.wait_until(pilot, lambda: app.ledger is not None, "the ledger's own read")
        assert app.ledger is not None
        assert {r.node for r in app.ledger.nodes if r.has_agent} == names
        assert app.ledger.cluster.gpus_seen == 4 * len(names)
    keep = kube_host_filter(["tower-1.lab.example", "gpu07"])
    assert keep("tower-1") and keep("tower-1.lab.example") and keep("gpu07") and not keep("gpu08")


def test_the_gpu_table_reads_the_briefs_gpus_only_and_draws_the_same_rows(redis_server: Any) -> None:
    from clustertop.dashboard.history import TotalsHistory
    from clustertop.dashboard.screens.gpus import GpusScreen, gpu_row
    from clustertop.dashboard.screens.wall import WallScreen
    from clustertop.dashboard.view import View
    from clustertop.dashboard.widgets.palette import Palette

    c = redis_server.client()
    snaps, _ = troubled(nodes=30)
    publish_all(c, snaps)
    old = snaps[0].host
    c.delete(wire.digest_key(old))  # an agent from before digests: its brief is folded, so read whole
    reader = Reader(c, clock=lambda: b.NOW + 0.5, brief_from=0)
    reader.read(ReadPlan(Level.BRIEFS))
    whole = reader.read(ReadPlan(Level.BRIEFS))
    lean = reader.read(ReadPlan(Level.GPUS))
    assert lean.plan == ReadPlan(Level.GPUS) and whole.plan == ReadPlan(Level.BRIEFS)
    p = Palette({})
    rows = 0
    for w, n in zip(whole.nodes, lean.nodes, strict=True):
        assert w.state == n.state == "up" and w.snap is not None and n.snap is not None
        assert n.snap.gpus == w.snap.gpus and n.digest == w.digest
        assert (n.snap.system is not None) == (n.host == old)  # the rest left undecoded where a digest stands for it
        for g in n.snap.gpus or ():
            assert [x.plain for x in gpu_row(n, g, p, False)] == [x.plain for x in gpu_row(w, g, p, False)]
            rows += 1
    assert rows > 50
    same_totals(lean.totals, whole.totals)
    # A cut brief is not kept as the node's last one: a node gone quiet falls back to its whole brief.
    gone = snaps[1].host
    c.delete(wire.node_key(gone), wire.brief_key(gone), wire.digest_key(gone))
    v = reader.read(ReadPlan(Level.BRIEFS)).node(gone)
    assert v is not None and v.state == "stale" and v.snap is not None and v.snap.system is not None
    # The wall needs whole briefs: a GPU-table read does not cover it, and it covers the GPU table.
    def view(state: Any) -> View:
        return View(history=TotalsHistory(1.0), state=state)

    assert GpusScreen().covered(view(lean)) and not WallScreen().covered(view(lean))
    assert GpusScreen().covered(view(whole)) and WallScreen().covered(view(whole))
