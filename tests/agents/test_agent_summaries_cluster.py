"""Bucket summaries on a real 3-master/3-replica Redis Cluster (tests/support/redis_ha.py, from
../shared/recipes/redis-ha/): the simulator's (redis-py's cluster client, its plain pipeline split per shard) and the
summary service's (the agent's own RESP client, from one node's plain URL: cluster mode detected), the 64 keys
spread over every master by their per-bucket hash tags. Heavy: six redis-server processes."""

from __future__ import annotations

import time

import pytest

from clustertop import store
from clustertop.agents.lease import Lease
from clustertop.agents.summaries import SummariesSection, SummaryService
from clustertop.control import signing
from clustertop.control.summary import open_summary
from clustertop.control.trust import KnownNodes
from clustertop.read.cluster import summarize
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.summary import merge
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.store.resp import Client
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key
from tests.support.redis_ha import RedisCluster

pytestmark = pytest.mark.heavy


def test_summaries_on_a_redis_cluster(rcluster: RedisCluster) -> None:
    client = store.connect(rcluster.url)
    sim = SimCluster(seed=2, nodes=80, gpus_per_node=8, keys=True)
    sim.summaries_from = 0
    publish(client, sim, time.time(), make_publishers(sim, client, 60.0))
    buckets = {bucket_of(h) for h in sim.hosts}
    assert len({rcluster.master_of(summary_key(b)) for b in buckets}) == 3  # spread over every shard
    known = KnownNodes(keys=sim.node_keys())
    got = {b: open_summary(client.get(summary_key(b)), known, b) for b in buckets}
    assert all(why is None for _, why in got.values()), got
    st = Reader(client).read(ReadPlan(Level.GPUS))
    assert merge([s for s, _ in got.values() if s is not None], st.cluster) == summarize(st.nodes, st.cluster)

    # The summary service on the agent's own client: every bucket, written to its own shard.
    key = signing.new_key()
    svc = SummaryService(SummariesSection(interval=1.0), "sum1", 1.0, lambda: Client.from_url(rcluster.url),
                         lambda c, name, period: Lease(c, name, "sum1", period), key)
    try:
        assert svc.step(), svc.error
        assert svc.held == set(range(BUCKETS)) and svc.last_nodes == len(sim.hosts)
        mine = KnownNodes(keys={"sum1": key.public()})
        opened = [open_summary(client.get(summary_key(b)), mine, b) for b in buckets]
        assert all(why is None for _, why in opened), opened
        assert merge([s for s, _ in opened if s is not None], st.cluster) == summarize(st.nodes, st.cluster)
    finally:
        svc.close()
