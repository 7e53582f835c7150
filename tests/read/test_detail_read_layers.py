"""A read of every node's detail leaves each overlay to be built when read (issue 18), and ``read.layers`` gives the
screens the sections they draw without building it: the same figures, section by section and row by row.

Real redis-server, the simulated cluster published by the real Publisher on the agents' full-snapshot cadence (a
full snapshot every 15 ticks, spread over the nodes as agents started at different times), the real Reader.
"""

from __future__ import annotations

from typing import Any

import msgspec

from clustertop import wire
from clustertop.read import layers
from clustertop.read.ledger import LedgerTracker, update_from_state
from clustertop.read.owners import name_snapshot, pod_index
from clustertop.read.people import find
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.wire.brief import fresh
from tests.conftest import RedisServer
from tests.support import builders as b

DETAIL = ReadPlan(Level.DETAIL)
EVERY = 15


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sim_cluster(client: Any, nodes: int = 10) -> tuple[SimCluster, dict[str, Any], Clock]:
    """A simulated cluster whose nodes write their full snapshots on a 15-tick cadence, spread over the nodes."""
    sim = SimCluster(seed=5, nodes=nodes, gpus_per_node=4)
    pubs = make_publishers(sim, client, 600.0)  # long TTLs: nothing expires mid-test
    for pub in pubs.values():
        pub.full_every_s = float(EVERY)
        pub.full_ttl_ms = pub.ttl_ms + EVERY * 1000
    clock = Clock(b.NOW)
    publish(client, sim, clock.t, pubs)
    for k in range(EVERY):  # node i writes in full in tick i mod 15 (as the bench's Feed.spread does)
        for i, pub in enumerate(pubs.values()):
            if i % EVERY == k:
                pub.wanted = True
        tick(client, sim, pubs, clock)
    return sim, pubs, clock


def tick(client: Any, sim: SimCluster, pubs: dict[str, Any], clock: Clock) -> None:
    clock.t += 1.0
    publish(client, sim, clock.t, pubs)


def layered(client: Any, nodes: int = 10) -> tuple[Reader, SimCluster, dict[str, Any], Clock]:
    """A reader that read the simulated cluster once, and a tick since: its next read at ``DETAIL`` finds nearly
    every node's full snapshot older than its brief (their overlays deferred)."""
    sim, pubs, clock = sim_cluster(client, nodes)
    reader = Reader(client, clock=clock, brief_from=0)
    reader.read(DETAIL)
    tick(client, sim, pubs, clock)
    return reader, sim, pubs, clock


def test_a_detail_read_builds_no_overlay_and_the_layers_give_the_overlays_sections(redis_server: RedisServer) -> None:
    client = redis_server.client()
    reader, sim, pubs, clock = layered(client)
    state = reader.read(DETAIL)
    deferred = [v for v in state.nodes if v.layers is not None]
    # Nearly every node's full snapshot is from an earlier tick than its brief: none of their overlays is built.
    assert len(deferred) >= len(state.nodes) - 2 and all(v.pending for v in deferred)
    assert all(v.detail_age_s is not None and v.detail_age_s > 0 for v in deferred)
    # What the storage, network and people screens and the GPU ledger take of every node builds none.
    for v in state.nodes:
        layers.current(v), layers.nics(v), layers.disks(v), layers.filesystems(v), layers.procs(v)
        layers.nic_pairs(v), layers.disk_pairs(v), layers.filesystem_pairs(v), layers.containers(v)
    update_from_state(LedgerTracker(), state)
    assert all(v.pending for v in deferred)
    pods = pod_index(state.cluster)
    for v in deferred:
        full, brief = v.layers  # type: ignore[misc]
        sections = (layers.current(v), layers.nics(v), layers.disks(v), layers.filesystems(v), layers.procs(v),
                    layers.gpus(v), layers.containers(v))
        pairs = (layers.nic_pairs(v), layers.disk_pairs(v), layers.filesystem_pairs(v))
        snap = v.snap  # built now, once
        assert not v.pending and v.snap is snap
        expected = fresh(full, brief)
        name_snapshot(expected, pods)
        assert snap == expected  # the overlay, its pod owners named from the read's payload, as it always was
        s = snap.system
        assert s is not None and s.nics and s.disks and s.filesystems
        now, nics, disks, fss, procs, gpus, containers = sections
        assert now is brief and nics == s.nics and disks == s.disks and fss == s.filesystems and procs is s.procs
        assert containers == snap.containers
        assert [msgspec.structs.replace(g, procs=None) for g in gpus or ()] == \
            [msgspec.structs.replace(g, procs=None) for g in snap.gpus or ()]
        assert [[(p.pid, p.user, p.uid, p.used_mem_bytes, p.cmdline) for p in g.procs or ()] for g in gpus or ()] == \
            [[(p.pid, p.user, p.uid, p.used_mem_bytes, p.cmdline) for p in g.procs or ()] for g in snap.gpus or ()]
        # Row by row: each pair merged is the overlay's entry, in the overlay's order.
        nic_pairs, disk_pairs, fs_pairs = pairs
        assert [layers.merge_nic(p) for p in nic_pairs or ()] == s.nics
        assert [layers.merge_disk(p) for p in disk_pairs or ()] == s.disks
        assert [layers.merge_filesystem(p) for p in fs_pairs or ()] == s.filesystems
        # Current figures come from the brief, the rest from the full snapshot: the split the screens say.
        bd = {d.name: d for d in (brief.system.disks if brief.system is not None else None) or ()}
        fd = {d.name: d for d in (full.system.disks if full.system is not None else None) or ()}
        for d in s.disks:
            assert d.read_bytes_s == bd[d.name].read_bytes_s and d.util_pct == fd[d.name].util_pct
    # A node read as one snapshot (its full snapshot of this tick) has no layers; its sections are its snapshot's.
    for v in state.nodes:
        if v.layers is None and v.snap is not None and v.snap.system is not None:
            assert layers.current(v) is v.snap and layers.nics(v) is v.snap.system.nics
            assert [layers.merge_nic(p) for p in layers.nic_pairs(v) or ()] == v.snap.system.nics


def test_deferred_reads_equal_built_ones_for_who_and_the_ledger(redis_server: RedisServer) -> None:
    client = redis_server.client()
    reader, sim, pubs, clock = layered(client, nodes=8)
    lazy = reader.read(DETAIL)
    users = sorted({p.user for v in lazy.nodes for g in (layers.gpus(v) or ()) for p in g.procs or () if p.user})
    assert users
    # The same read with every overlay built first (as every read built them before).
    eager = reader.read(DETAIL)
    for v in eager.nodes:
        v.snap  # noqa: B018 - builds it
    assert not any(v.pending for v in eager.nodes)
    for user in [*users, "0", "nobody"]:
        got, want = find(user, lazy.nodes, lazy.cluster), find(user, eager.nodes, eager.cluster)
        assert (got.items, got.gpus, got.vram_bytes, got.vram_unknown, got.no_procs) == \
            (want.items, want.gpus, want.vram_bytes, want.vram_unknown, want.no_procs), user
    assert any(find(u, lazy.nodes, lazy.cluster).items for u in users)
    ledger_lazy = update_from_state(LedgerTracker(), lazy)
    ledger_eager = update_from_state(LedgerTracker(), eager)
    assert ledger_lazy == ledger_eager
    # A later read equals a reader's that starts afresh (every full snapshot fetched and decoded anew).
    tick(client, sim, pubs, clock)
    again, fresh_reader = reader.read(DETAIL), Reader(client, clock=clock, brief_from=0)
    fresh_reader.read(DETAIL)
    assert again.nodes == fresh_reader.read(DETAIL).nodes  # equality builds both sides' overlays


def test_a_node_gone_quiet_shows_the_overlay_it_showed_last(redis_server: RedisServer) -> None:
    client = redis_server.client()
    reader, sim, pubs, clock = layered(client, nodes=4)
    state = reader.read(DETAIL)
    host = next(v.host for v in state.nodes if v.layers is not None)
    shown = state.node(host)
    assert shown is not None and shown.pending
    last = shown.snap
    # Its agent stops and every key of it expires: the view shows the node's last good snapshot, the overlay it
    # showed (this tick's figures it had, not its older full snapshot's), built only where read.
    b.silence(client, host)
    clock.t += 5
    gone = reader.read(DETAIL).node(host)
    assert gone is not None and gone.state == "stale" and gone.pending
    assert gone.snap == last and gone.snap.ts == last.ts > gone.layers.full.ts  # type: ignore[union-attr]


def test_a_bad_brief_beside_a_good_full_snapshot_defers_nothing(redis_server: RedisServer) -> None:
    client = redis_server.client()
    reader, sim, pubs, clock = layered(client, nodes=4)
    host = next(v.host for v in reader.read(DETAIL).nodes if v.layers is not None)
    client.set(wire.brief_key(host), b"\xc1garbage")
    v = reader.read(DETAIL).node(host)
    assert v is not None and v.state == "bad" and "brief" in (v.error or "")
    assert v.layers is None and not v.pending and v.snap is not None and v.snap.ts < clock.t
    assert layers.current(v) is v.snap
