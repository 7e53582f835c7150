"""`clustertop acl` on a REAL Redis Cluster (3 masters, 3 replicas: tests/support/redis_ha.py), every node
started with the file it prints. A cluster shares no users (each node loads the file), the clients read the
slot map and follow MOVED/ASK as the users they log in as, and one node's keys live on one shard while the
index and the other nodes' keys are on others. So the rules are replayed here as in test_acl.py: a
compromised node's user is refused everything of another's on every shard, and the real calls (the agent's
own client publishing and running a signed command, a viewer's read with its wants, an operator's command
with its audit entry) still work with the users they are meant for.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clustertop import store, wire
from clustertop.agents.commands import CommandExecutor
from clustertop.agents.lease import Lease
from clustertop.agents.publisher import Publisher
from clustertop.agents.summaries import SummariesSection, SummaryService
from clustertop.cli import acl
from clustertop.control import commands as cc
from clustertop.control import signing
from clustertop.control.summary import open_summary
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from clustertop.store.resp import Client
from clustertop.wire import schema
from clustertop.wire.summary import BUCKETS, summary_key
from tests.store.test_acl import node_attacks, refused
from tests.support import builders as b
from tests.support.redis_ha import HupCounter, RedisCluster, until


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisCluster, Path]]:
    d = tmp_path_factory.mktemp("acl-cluster")
    pw = d / "passwords"
    os.makedirs(pw, mode=0o700)
    users = acl.users_for(["gpu01"], ["gpu02"], ["alice"], ["wall"], ["root"], summary_nodes=["sum01"])
    hashes = {u: hashlib.sha256(acl.password_for(str(pw), u).encode()).hexdigest() for u, _ in users}
    (d / "users.acl").write_text(acl.render(users, hashes))
    c = RedisCluster(acl=(str(d / "users.acl"), "admin-root", (pw / "admin-root").read_text().strip()))
    try:
        yield c.start(), pw
    finally:
        c.stop()


def url(secured: tuple[RedisCluster, Path], user: str) -> str:
    """A URL naming one node of the cluster and the user: cluster mode is detected, as in production."""
    rc, pw = secured
    return f"redis://{user}:{(pw / user).read_text().strip()}@127.0.0.1:{next(iter(rc.servers))}"


def test_the_two_nodes_live_on_different_shards(secured: tuple[RedisCluster, Path]) -> None:
    rc, _ = secured
    # Not luck the test depends on silently: the refusals below cross shards only if this holds.
    assert rc.master_of(wire.node_key("gpu01")) != rc.master_of(wire.node_key("gpu02"))


def test_the_default_user_is_off_on_every_node(secured: tuple[RedisCluster, Path]) -> None:
    rc, _ = secured
    for port in rc.servers:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()


def test_a_node_cannot_touch_another_node_on_any_shard(secured: tuple[RedisCluster, Path]) -> None:
    admin = store.connect(url(secured, "admin-root"))
    admin.xgroup_create(wire.cmd_key("gpu02"), "agent", id="0", mkstream=True)
    admin.xadd(wire.cmd_key("gpu02"), {"c": b"x"})
    a = store.connect(url(secured, "node-gpu01"))
    assert store.sharded(a)  # redis-py's cluster client, logged in as the node: the slot map was readable
    allowed = [name for name, call in node_attacks(a).items() if not refused(call)]
    assert not allowed, allowed
    # The agent's own client, routed by its own slot map: refused the same way, on the other shard.
    light = store.connect_light(url(secured, "node-gpu01"))
    light.get(wire.node_key("gpu01"))  # its own key: allowed; cluster mode is detected at the first call
    assert store.sharded(light)
    for call in (lambda: light.set(wire.node_key("gpu02"), b"forged"),
                 lambda: light.xadd(wire.results_key("gpu02"), {"r": b"forged"}),
                 lambda: light.get(wire.node_key("gpu02"))):
        with pytest.raises(Exception, match="NOPERM"):
            call()


def test_publish_read_and_a_signed_command_with_their_own_users(secured: tuple[RedisCluster, Path],
                                                               tmp_path: Path) -> None:
    node_key = signing.load_private(signing.generate(str(tmp_path / "node"), "gpu01")[0])
    # gpu01's agent: its own client and user; gpu02 holds the cluster payloads (a --cluster-node).
    light = store.connect_light(url(secured, "node-gpu01"))
    Publisher(light, "gpu01", 1.0, key=node_key, tiers=False).publish(b.node("gpu01", ts=time.time()))
    py02 = store.connect(url(secured, "node-gpu02"))
    Publisher(py02, "gpu02", 1.0, tiers=False).publish(b.node("gpu02", ts=time.time()), cluster=[b.ceph()])

    # A viewer reads the cluster across the shards and asks for full snapshots (its one write).
    wants = Wants()
    st = Reader(store.connect(url(secured, "viewer-wall")), wants=wants).read()
    assert {v.host: v.state for v in st.nodes} == {"gpu01": "up", "gpu02": "up"}
    assert "ceph" in st.cluster
    assert st.want_error is None and wants.writes == 2
    admin = store.connect(url(secured, "admin-root"))
    assert admin.pttl(wire.want_key("gpu01")) > 0

    # alice sends a signed HUP to gpu01 with her audit entry; gpu01's executor, on its own user, runs it.
    hups = HupCounter(tmp_path / "hups")
    try:
        kp, pub, _ = signing.generate(str(tmp_path / "ops"), "alice")
        sec = {"operator_keys": [pub], "signal_users": [pwd.getpwuid(os.getuid()).pw_name], "allow_root": True}
        ex = CommandExecutor(lambda: store.connect_light(url(secured, "node-gpu01")), "gpu01", {"security": sec},
                             state_dir=str(tmp_path / "state"), block_ms=50)
        ex.client = ex.client_factory()
        ex.ensure_group()
        alice = store.connect(url(secured, "operator-alice"))
        with open(f"/proc/{hups.pid}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])
        cmd = cc.build("gpu01", "signal", cc.signal_args(hups.pid, ticks, "HUP"), None, operator="alice",
                       lifetime_s=60)
        signing.sign(cmd, signing.load_private(kp))
        cc.send_audited(alice, cmd, signing.load_private(kp), "alice")
        until(lambda: ex.poll_once() >= 1, 10)
        assert hups.wait_for(1) == 1
        results = [wire.decode(f[b"r"], schema.CommandResult) for _, f in alice.xrange(wire.results_key("gpu01"))]
        assert [(r.id, r.ok) for r in results] == [(cmd.id, True)]
        assert alice.xlen(wire.operator_audit_key("alice")) == 1
        # alice may not write gpu01's answers or its audit, nor another operator's trail, on any shard.
        assert refused(alice.xadd, wire.results_key("gpu01"), {"r": b"forged"})
        assert refused(alice.xadd, wire.node_audit_key("gpu01"), {"a": b"forged"})
        assert refused(alice.xadd, wire.operator_audit_key("bob"), {"a": b"forged"})
        ex.task_mgr.close()
    finally:
        hups.close()


def test_the_summary_node_folds_every_shards_buckets_and_no_other_node_may(secured: tuple[RedisCluster, Path]) -> None:
    """The summary node's service, on its own user and the agent's own client, reads the nodes on every shard,
    holds the 64 bucket leases and writes the 64 signed summaries, which spread over the three masters; the plain
    and the cluster node are refused writing or deleting a summary on every shard, and the folder a node's key."""
    rc, _ = secured
    admin = store.connect(url(secured, "admin-root"))
    hosts = [f"gpu{i:02d}" for i in range(1, 21)]
    b.publish(admin, [b.tower(h) for h in hosts])
    key = signing.new_key()
    svc = SummaryService(SummariesSection(interval=1.0), "sum01", 1.0,
                         lambda: Client.from_url(url(secured, "node-sum01")),
                         lambda client, name, period: Lease(client, name, "sum01", period), key)
    try:
        assert svc.step(), svc.error
        assert svc.held == set(range(BUCKETS)) and svc.last_nodes == len(hosts)
    finally:
        svc.close()
    listed: list[str] = []
    for bucket in range(BUCKETS):
        raw = admin.get(summary_key(bucket))
        if raw is None:
            continue  # a bucket holding none of the 20 hosts is not written
        s, why = open_summary(raw, {"sum01": key.public()}, bucket)
        assert s is not None, why
        listed += s.hosts
    assert sorted(listed) == hosts
    assert len({rc.master_of(summary_key(x)) for x in range(BUCKETS)}) == 3  # the keys span every shard
    plain, cluster, folder = (store.connect(url(secured, u)) for u in ("node-gpu01", "node-gpu02", "node-sum01"))
    attacks = {f"{who} {what} summary {x}": call
               for x in (0, 21, 42, 63)
               for who, c in (("the plain node", plain), ("the cluster node", cluster))
               for what, call in (("writes", lambda c=c, x=x: c.set(summary_key(x), b"x")),
                                  ("deletes", lambda c=c, x=x: c.delete(summary_key(x))))}
    attacks["the folder writes a node's digest"] = lambda: folder.set(wire.digest_key("gpu01"), b"x")
    attacks["the folder writes a node's seal"] = lambda: folder.set(wire.seal_key("gpu02"), b"x")
    allowed = [name for name, call in attacks.items() if not refused(call)]
    assert not allowed, allowed
