"""A read of every node's detail checks each brief's GPU section but builds none (issue 18: the storage and network
screens draw no GPUs, and the cards were most of a brief's decode); a malformed GPU section still makes its node bad
in that read, and whoever reads GPUs (the GPU ledger, the people screen, an overlay) gets them built, equal to a
whole decode's. Real redis-server, the simulated cluster published by the real Publisher on the agents' cadence, the
real Reader."""

from __future__ import annotations

import msgspec

from clustertop import wire
from clustertop.read import layers
from clustertop.read.ledger import LedgerTracker, update_from_state
from clustertop.wire import schema
from clustertop.wire.brief import fresh
from tests.conftest import RedisServer
from tests.read.test_detail_read_layers import DETAIL, layered


def test_a_detail_read_builds_no_gpu_section_and_the_gpu_readers_get_the_whole_briefs(
        redis_server: RedisServer) -> None:
    client = redis_server.client()
    reader, sim, pubs, clock = layered(client)
    state = reader.read(DETAIL)
    deferred = [v for v in state.nodes if v.layers is not None]
    assert len(deferred) >= len(state.nodes) - 2
    assert not any(v.layers.gpus_built for v in deferred)  # type: ignore[union-attr]
    # What the storage and network screens take of every node builds none.
    for v in state.nodes:
        layers.current_head(v), layers.nics(v), layers.disks(v), layers.filesystems(v), layers.procs(v)
        layers.nic_pairs(v), layers.disk_pairs(v), layers.filesystem_pairs(v), layers.containers(v)
    assert not any(v.layers.gpus_built for v in deferred)  # type: ignore[union-attr]
    cards = 0
    for v in deferred:
        assert v.layers is not None
        brief = wire.decode(client.get(wire.brief_key(v.host)), schema.NodeSnapshot)  # as a whole decode has it
        assert layers.current(v) == brief and v.layers.gpus_built and layers.current(v) is v.layers.brief
        head = layers.current_head(v)
        assert head is v.layers.head and head is not None and head.bonds == brief.bonds
        assert head.system == brief.system and head.netmounts == brief.netmounts
        assert layers.gpus(v) == fresh(v.layers.full, brief).gpus
        cards += len(brief.gpus or ())
    assert cards
    # Whose GPU processes a node has, without building its GPU section: as the built one says.
    fresh_state = reader.read(DETAIL)
    for v in fresh_state.nodes:
        users = layers.gpu_users(v)
        assert v.layers is None or not v.layers.gpus_built
        assert users == {p.user for g in layers.gpus(v) or () for p in g.procs or ()}
    # The GPU ledger reads every node's brief whole.
    again = reader.read(DETAIL)
    update_from_state(LedgerTracker(), again)
    assert all(v.layers.gpus_built for v in again.nodes if v.layers is not None and v.state == "up")


def test_a_malformed_gpu_section_makes_its_node_bad_in_the_read(redis_server: RedisServer) -> None:
    client = redis_server.client()
    reader, sim, pubs, clock = layered(client, nodes=10)
    state = reader.read(DETAIL)
    hosts = [v.host for v in state.nodes if v.layers is not None
             and (layers.current(v) or schema.NodeSnapshot()).gpus]
    assert len(hosts) >= 2
    bad, good = hosts[0], hosts[1]
    raw = msgspec.msgpack.decode(wire.plain(client.get(wire.brief_key(bad))))
    raw["gpus"][-1]["util_pct"] = "hot"  # one field of the last card, deep in the section
    client.set(wire.brief_key(bad), msgspec.msgpack.encode(raw))
    state = reader.read(DETAIL)
    v = state.node(bad)
    assert v is not None and v.state == "bad"
    assert v.error is not None and "brief" in v.error and "`$.gpus[" in v.error and "util_pct" in v.error
    # Its full snapshot as read is still shown, said bad, with nothing of the refused brief laid over it.
    assert v.layers is None and v.snap is not None and v.snap.ts < clock.t
    other = state.node(good)
    assert other is not None and other.state == "up" and other.layers is not None
    assert not other.layers.gpus_built
