"""Redis Cluster for every client, on a real 3-master/3-replica cluster (tests/support/redis_ha.py, from
../shared/recipes/redis-ha/), reached by a plain ``redis://`` URL of one node: the agent's RESP client
(slots, MOVED/ASK, MULTI per slot), redis-py's RedisCluster behind ``store.connect``, the reader's one
pipelined round trip per shard, real agents, exporter and dashboard through ``kill -9`` of a master, and
a signed command in flight during the failover.

Timings are printed (``-s`` shows them), never asserted beyond "recovers" with generous bounds.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from clustertop import store, wire
from clustertop.agents.commands import CommandExecutor
from clustertop.agents.lease import Lease
from clustertop.agents.publisher import Publisher
from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.store import slots
from clustertop.wire import schema
from tests.support import builders as b
from tests.support.redis_ha import HupCounter, RedisCluster, assert_ran_at_most_once, failover_scenario, until

#: Every per-node key function of clustertop.wire: one node's keys must share a slot.
PER_NODE = [wire.node_key, wire.brief_key, wire.digest_key, wire.hist_key, wire.cmd_key, wire.seal_key,
            wire.nodekey_key, wire.results_key, wire.node_audit_key, lambda h: wire.seen_key(h, "some-id"),
            wire.energy_key, lambda h: wire.tier_block_key(h, "1m", 1_800_000_000), wire.want_key]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_slots_are_redis_own_and_a_nodes_keys_share_one(rcluster: RedisCluster) -> None:
    r = redis.Redis(port=next(iter(rcluster.servers)))
    hostile = ["gpu01", "", "a{b}c", "{", "}", "{}", "x" * 1000, "ünï\u202ecode", "a}b{c}"]
    for k in ["foo", "{user1000}.following", "{}x", "a{}b{c}", *[f(h) for h in hostile for f in PER_NODE]]:
        assert slots.keyslot(k) == r.execute_command("CLUSTER", "KEYSLOT", k), k
    for h in ["gpu01", "node-b.example", "a}b", "ünï"]:
        assert len({slots.keyslot(f(h)) for f in PER_NODE}) == 1, h
    assert len({slots.keyslot(wire.cluster_key(n)) for n in wire.CLUSTER_NAMES}) == 1


def test_both_clients_from_one_nodes_url(rcluster: RedisCluster) -> None:
    light, py = store.connect_light(rcluster.url), store.connect(rcluster.url)
    assert store.sharded(py)
    hosts = [f"n{i:02}" for i in range(12)]  # spread over the three masters
    assert len({rcluster.master_of(wire.node_key(h)) for h in hosts}) == 3
    # The agent's publisher: one MULTI per slot (payloads + seal atomic), the index and cluster keys beside.
    key = signing.load_private(signing.generate(os.path.join(rcluster.root, "keys"), "n")[0])
    for h in hosts:
        Publisher(light, h, 1.0, key=key).publish(b.node(h, ts=time.time()), cluster=[b.ceph()])
    assert store.sharded(light)
    st = Reader(py).read()
    assert [v.host for v in st.nodes] == hosts and {v.state for v in st.nodes} == {"up"}
    assert "ceph" in st.cluster
    # The same read through the agent's own client (the alert evaluator runs a Reader in the agent).
    light_view = Reader(light).read()
    assert [(v.host, v.state) for v in light_view.nodes] == [(v.host, v.state) for v in st.nodes]
    assert light.mget([wire.node_key(h) for h in hosts]) == py.mget_nonatomic([wire.node_key(h) for h in hosts])
    # briefs/digests and seals, per-node MGETs; a host new to the index; a seal read with its payload
    reader = Reader(py, brief_from=0)
    assert len(reader.read().nodes) == 12  # hosts new to the index: their keys in a second pipeline
    st = reader.read(ReadPlan(level=Level.GPUS, full_hosts=frozenset({"n03"})), seals=["n03", "n07"])
    assert {v.state for v in st.nodes} == {"up"} and set(st.sealed) == {"n03", "n07"}
    assert all(data is not None and seal is not None for _, data, seal in st.sealed.values())
    assert trust.read_sealed(py, "n05")[1] is not None  # a MULTI of a node's payload and seal: one slot
    # A lease: WATCH/GET/MULTI on one key, through the agent's client.
    now = [0.0]
    lease = Lease(light, "ceph", "n01", 1.0, clock=lambda: now[0])
    assert lease.refresh()
    now[0] += 1.0
    assert lease.refresh() and lease.holder() == lease.token
    # The CLI's snapshot, a real process on the same URL.
    out = subprocess.run([sys.executable, "-m", "clustertop", "snapshot", "--redis", rcluster.url, "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert all(f'"{h}"' in out.stdout for h in hosts)


def test_the_full_snapshot_cadence_on_a_cluster(rcluster: RedisCluster) -> None:
    """The byte budget on a Redis Cluster: each agent's want probe rides in its own MULTI (its want key shares
    its slot), on both clients; a reader writes wants across shards and reads freshness from the digests."""
    from clustertop.read.want import Wants

    hosts = [f"cad{i}" for i in range(4)]
    clients = [store.connect_light(rcluster.url), store.connect(rcluster.url)]
    pubs = {h: Publisher(clients[i % 2], h, 1.0, key=b.node_key(h), full_every_s=5.0, tiers=False)
            for i, h in enumerate(hosts)}
    for k in range(3):
        for h, pub in pubs.items():
            pub.publish(b.tower(h, ts=b.NOW + k, seq=k + 1))
    reader = Reader(store.connect(rcluster.url), clock=lambda: b.NOW + 2, brief_from=1, wants=Wants())
    state = reader.read(ReadPlan(Level.DIGESTS, frozenset(hosts[:2])))
    assert [state.node(h).detail_age_s for h in hosts[:2]] == [2, 2]  # type: ignore[union-attr]
    assert reader.wants is not None and reader.wants.error is None and reader.wants.writes == 2
    for k in (3, 4):
        for h, pub in pubs.items():
            pub.publish(b.tower(h, ts=b.NOW + k, seq=k + 1))
    assert [pubs[h].fulls for h in hosts] == [2, 2, 1, 1]
    reader.clock = lambda: b.NOW + 4
    state = reader.read(ReadPlan(Level.DIGESTS, frozenset(hosts[:2])))
    for h in hosts[:2]:
        v = state.node(h)
        assert v is not None and v.state == "up" and v.detail_age_s is None and v.snap is not None
        assert v.snap.seq == 5
    known = b.known_nodes(*hosts)
    py = store.connect(rcluster.url)
    for h in hosts:  # every seal verifies its node's stored full snapshot, old or new
        assert trust.seal_verdict(h, *trust.read_sealed(py, h), known).ok


def test_agent_client_follows_ask_and_moved(rcluster: RedisCluster) -> None:
    """A slot migrated by hand, as ``redis-cli --cluster reshard`` does it: ASK while the key has moved
    and the slot not yet, MOVED (and a new slot map) once the slot has."""
    light = store.connect_light(rcluster.url)
    k = wire.node_key("mover")
    assert light.set(k, b"v1")
    src = rcluster.master_of(k)
    dst = next(p for p in rcluster.servers if p != src and rcluster.role(p) == "master")
    s, d = redis.Redis(port=src), redis.Redis(port=dst)
    slot = slots.keyslot(k)
    sid, did = s.execute_command("CLUSTER", "MYID").decode(), d.execute_command("CLUSTER", "MYID").decode()
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
    s.execute_command("MIGRATE", "127.0.0.1", dst, k, 0, 5000)
    with pytest.raises(redis.exceptions.AskError):  # the key is gone from the source: ask the importing node
        s.get(k)
    assert light.get(k) == b"v1"  # ASKING + GET at the importing node
    p = light.pipeline(transaction=False)
    p.get(k)
    assert p.execute() == [b"v1"]
    for port in rcluster.servers:
        if rcluster.role(port) == "master":
            redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", did)
    until(lambda: light.get(k) == b"v1", 10)  # MOVED: the map read again
    assert light.cluster.master_of(slot) == ("127.0.0.1", dst)
    assert light.set(k, b"v2") and d.get(k) == b"v2"
    t = light.pipeline(transaction=True)
    t.set(k, b"v3")
    t.set(wire.seal_key("mover"), b"s")
    assert t.execute() == [True, True] and d.get(wire.seal_key("mover")) == b"s"


@pytest.mark.anyio
async def test_kill_master_agents_dashboard_exporter_carry_on(rcluster: RedisCluster, tmp_path: Path) -> None:
    nodes = ["ha-a", "ha-b", "ha-c"]
    victim = rcluster.master_of(wire.node_key("ha-a"))
    replica = rcluster.replica_of(victim)
    url = f"redis://127.0.0.1:{victim}"  # the hard case: the node every client was given is the one that dies

    def kill() -> float:
        return rcluster.kill_master(victim)[0]

    f = await failover_scenario(url, nodes, str(tmp_path), kill, lambda: rcluster.wait_promoted(replica),
                                lambda: redis.RedisCluster(host="127.0.0.1", port=replica))
    print(f"\nCluster failover (master {victim} of ha-a's slot): replica {replica} master with cluster_state ok "
          f"{f['promoted']:.2f} s after kill -9; after that: agents published +{f['agents']:.2f} s, reader up "
          f"+{f['reader']:.2f} s, exporter up +{f['exporter']:.2f} s, dashboard reading again +{f['dashboard']:.2f} s")
    # The dashboard marked the store unreachable during the outage (its last figures kept, marked stale).
    assert f["dashboard_unreachable_shown"] and "store unreachable since" in f["_header_in_outage"][0]  # type: ignore[index]


def test_command_in_flight_during_a_failover_runs_at_most_once(rcluster: RedisCluster, tmp_path: Path) -> None:
    """The master of the node's slot killed just after a signed command is sent, the executor loop running:
    the command runs once (answered on the promoted replica) or, lost before it was read, never; never twice."""
    node = "ha-cmd"
    hups = HupCounter(tmp_path / "hups")
    proc = hups.proc
    stop_ev = threading.Event()
    t = None
    try:
        kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
        key = signing.load_private(kp)
        sec = {"operator_keys": [pub], "signal_users": [pwd.getpwuid(os.getuid()).pw_name], "allow_root": True}
        victim = rcluster.master_of(wire.cmd_key(node))
        url = f"redis://127.0.0.1:{victim}"  # the URL names the master that dies: clients made anew must cope
        ex = CommandExecutor(lambda: store.connect_light(url), node, {"security": sec},
                             state_dir=str(tmp_path / "state"), block_ms=50)
        t = threading.Thread(target=ex.run, args=(stop_ev,), daemon=True)
        t.start()
        op = store.connect(url)
        until(lambda: op.exists(wire.cmd_key(node)), 10)  # the executor made its group
        with open(f"/proc/{proc.pid}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])
        cmd = cc.build(node, "signal", cc.signal_args(proc.pid, ticks, "HUP"), None, operator="tester", lifetime_s=20)
        signing.sign(cmd, key)
        cc.send_audited(op, cmd, key, "tester")  # two slots: the operator's entry first, then the command
        _, replica = rcluster.kill_master(victim)
        rcluster.wait_promoted(replica)
        new = redis.Redis(port=replica)
        assert_ran_at_most_once(hups, lambda: _answers(new, node, cmd.id), cmd.expires_ts, "the cluster failover")
    finally:
        stop_ev.set()
        if t is not None:
            t.join(20)
        hups.close()


def _answers(client: redis.Redis, node: str, cid: str) -> list[schema.CommandResult]:
    out = [wire.decode(f[b"r"], schema.CommandResult) for _, f in client.xrange(wire.results_key(node))]
    return [r for r in out if r.id == cid]
