"""`clustertop simulate` on a real 3-master/3-replica Redis Cluster (tests/support/redis_ha.py, from
../shared/recipes/redis-ha/): unsigned nodes from several processes, and signing nodes, whose payloads and
seal need a MULTI per node (one MULTI over many nodes spans slots: CrossSlotTransactionError). Heavy: six
redis-server processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustertop import store, wire
from clustertop.control.trust import KnownNodes, verified_snapshot
from clustertop.read.reader import Reader
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from tests.support.redis_ha import RedisCluster

pytestmark = pytest.mark.heavy
ROOT = Path(__file__).resolve().parents[2]


def test_simulate_procs_on_a_cluster_then_the_reader_sees_every_node(rcluster: RedisCluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    out = subprocess.run([sys.executable, "-m", "clustertop", "simulate", "--redis", rcluster.url, "--nodes", "30",
                          "--ticks", "2", "--procs", "2", "--seed", "3"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    hosts = SimCluster(seed=3, nodes=30).hosts
    assert len({rcluster.master_of(wire.node_key(h)) for h in hosts}) == 3  # the nodes span every shard
    st = Reader(store.connect(rcluster.url)).read()
    assert sorted(v.host for v in st.nodes) == sorted(hosts)
    assert {v.state for v in st.nodes} == {"up"}
    assert {"ceph", "celery", "dask", "kubernetes"} <= set(st.cluster)


def test_signing_nodes_publish_on_a_cluster_one_multi_each(rcluster: RedisCluster) -> None:
    client = store.connect(rcluster.url)
    sim = SimCluster(seed=1, nodes=12, keys=True)
    pubs = make_publishers(sim, client, 1.0)
    for i in range(2):
        publish(client, sim, time.time() + i, pubs)
    st = Reader(client).read()
    assert sorted(v.host for v in st.nodes) == sorted(sim.hosts)
    assert {v.state for v in st.nodes} == {"up"}
    assert "kubernetes" in st.cluster
    known = KnownNodes(keys=sim.node_keys())
    for h in sim.hosts:
        snap, verdict = verified_snapshot(client, h, known)
        assert verdict.ok, verdict.text
        assert snap is not None and snap.host == h
    assert all(client.get(wire.energy_key(h)) for h in sim.tower_hosts)
