"""`clustertop acl` against a real redis-server started with the file it prints.

The threat: every node holds Redis credentials, so one compromised node must reach only its own keys.
Each attack found in the trust review is replayed here with that node's user and must answer NOPERM;
and the real agent's own calls (publish, command stream, results, audit, replay markers, leases) must
still work with the same user, or the rules would be safe and useless.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from clustertop import wire
from clustertop.agents.lease import Lease
from clustertop.agents.publisher import Publisher, hist_point
from clustertop.cli import acl
from clustertop.store.resp import Client
from clustertop.wire import schema
from tests.conftest import ROOT, RedisServer
from tests.support import builders as b

NODES = ["gpu01", "gpu02"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    d = tmp_path_factory.mktemp("acl")
    pw = d / "passwords"
    out = subprocess.run([sys.executable, "-m", "clustertop", "acl", "--node", "gpu01", "--cluster-node", "gpu02",
                          "--operator", "alice", "--operator", "bob", "--viewer", "wall", "--admin", "root",
                          "--password-dir", str(pw)], capture_output=True, text=True, cwd=ROOT, check=True)
    (d / "users.acl").write_text(out.stdout)
    srv = RedisServer(["--aclfile", str(d / "users.acl")])
    try:
        yield srv, pw
    finally:
        srv.stop()


def as_user(server: tuple[RedisServer, Path], user: str) -> redis.Redis:
    srv, pw = server
    return redis.Redis(host="127.0.0.1", port=srv.port, username=user, password=(pw / user).read_text().strip())


def refused(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as e:
        return "NOPERM" in str(e)
    return False


def test_password_files_are_private_and_not_in_the_acl(server: tuple[RedisServer, Path]) -> None:
    _, pw = server
    files = sorted(p.name for p in pw.iterdir())
    assert files == ["admin-root", "node-gpu01", "node-gpu02", "operator-alice", "operator-bob", "viewer-wall"]
    for p in pw.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    acl_text = (pw.parent / "users.acl").read_text()
    assert all(p.read_text().strip() not in acl_text for p in pw.iterdir())  # only hashes


def test_the_default_user_is_off(server: tuple[RedisServer, Path]) -> None:
    srv, _ = server
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=srv.port).get(wire.node_key("gpu01"))


def node_attacks(a: Any) -> dict[str, Any]:
    """What node gpu01's user ``a`` (a redis-py client, plain or cluster) could try against gpu02 and the
    shared keys; each must answer NOPERM. Shared with the same rules on a real Redis Cluster (test_acl_cluster)."""
    return {
        "read another node's commands": lambda: a.xreadgroup("agent", "gpu02", {wire.cmd_key("gpu02"): ">"}),
        "ack another node's commands": lambda: a.xack(wire.cmd_key("gpu02"), "agent", "0-1"),
        "write another node's snapshot": lambda: a.set(wire.node_key("gpu02"), b"x"),
        "write another node's digest": lambda: a.set(wire.digest_key("gpu02"), b"x"),
        "write another node's seal": lambda: a.set(wire.seal_key("gpu02"), b"x"),
        "answer for another node": lambda: a.xadd(wire.results_key("gpu02"), {"r": b"x"}),
        "audit for another node": lambda: a.xadd(wire.node_audit_key("gpu02"), {"a": b"x"}),
        "audit as an operator": lambda: a.xadd(wire.operator_audit_key("alice"), {"a": b"x"}),
        "send a command": lambda: a.xadd(wire.cmd_key("gpu02"), {"c": b"x"}),
        "erase another node's replay marker": lambda: a.delete(wire.seen_key("gpu02", "abc")),
        "drop a node from the index": lambda: a.zrem(wire.NODES_KEY, "gpu02"),
        "overwrite the index": lambda: a.set(wire.NODES_KEY, b"x"),
        "delete its own audit": lambda: a.delete(wire.node_audit_key("gpu01")),
        "trim its own audit": lambda: a.xtrim(wire.node_audit_key("gpu01"), maxlen=0),
        "delete an audit entry": lambda: a.xdel(wire.node_audit_key("gpu01"), "0-1"),
        "delete an operator's audit": lambda: a.delete(wire.operator_audit_key("alice")),
        "run Lua": lambda: a.eval("return 1", 0),
        "take a lease (not a cluster node)": lambda: a.set(wire.lease_key("ceph"), "me", nx=True, px=1000),
        "forge the Ceph payload": lambda: a.set(wire.cluster_key("ceph"), b"x"),
        "read another node's snapshot": lambda: a.get(wire.node_key("gpu02")),
        "write another node's history tier": lambda: a.set(wire.tier_block_key("gpu02", "1m", 0), b"x"),
        "read another node's history tier": lambda: a.get(wire.tier_block_key("gpu02", "1m", 0)),
        "flush": lambda: a.flushall(),
        "list keys": lambda: a.keys("*"),
    }


def test_a_node_cannot_touch_another_node(server: tuple[RedisServer, Path]) -> None:
    a = as_user(server, "node-gpu01")
    admin = as_user(server, "admin-root")
    admin.xgroup_create(wire.cmd_key("gpu02"), "agent", id="0", mkstream=True)
    admin.xadd(wire.cmd_key("gpu02"), {"c": b"x"})
    attacks = node_attacks(a)
    allowed = [name for name, call in attacks.items() if not refused(call)]
    assert not allowed, allowed


def test_the_real_agent_calls_work_with_a_node_user(server: tuple[RedisServer, Path]) -> None:
    srv, pw = server
    url = f"redis://node-gpu01:{(pw / 'node-gpu01').read_text().strip()}@127.0.0.1:{srv.port}/0"
    c = Client.from_url(url)
    p = c.pipeline(transaction=True)
    for key in (wire.node_key("gpu01"), wire.brief_key("gpu01"), wire.digest_key("gpu01"), wire.seal_key("gpu01")):
        p.set(key, b"payload", px=3000)
    p.zadd(wire.NODES_KEY, {"gpu01": 1.0})
    p.xadd(wire.hist_key("gpu01"), {"d": b"h"}, maxlen=800)
    p.execute()
    c.xgroup_create(wire.cmd_key("gpu01"), "agent", id="0", mkstream=True)
    assert c.xreadgroup("agent", "gpu01", {wire.cmd_key("gpu01"): ">"}, count=10) in ([], None)
    c.xadd(wire.results_key("gpu01"), {"r": b"x"}, maxlen=5000)
    c.xadd(wire.node_audit_key("gpu01"), {"a": b"x"}, maxlen=10000)
    assert c.xrange(wire.node_audit_key("gpu01"), count=1)
    assert c.set(wire.seen_key("gpu01", "abc"), "running", nx=True, px=60000)
    assert c.get(wire.seen_key("gpu01", "abc")) == b"running"
    c.set(wire.nodekey_key("gpu01"), b"pub")
    c.close()


def test_the_agent_writes_its_history_tiers_with_a_node_user(server: tuple[RedisServer, Path]) -> None:
    # The real publisher and tier writer (agents/tiers.py) on the agent's own RESP client: reading where
    # the tiers end on start, then one XADD per closed bucket, all within the node user's keys.
    srv, pw = server
    c = Client.from_url(f"redis://node-gpu01:{(pw / 'node-gpu01').read_text().strip()}@127.0.0.1:{srv.port}/0")
    pub = Publisher(c, "gpu01", 5.0)
    t0 = 1_800_000_000.0  # a 10-minute boundary
    for i in range(0, 610 // 5 + 1):
        snap = b.node("gpu01", ts=t0 + 5 * i, cpu=40)
        pub.publish(snap, hist_point(snap))
    assert not pub.tiers.has_work()  # type: ignore[union-attr]  # nothing refused, nothing left to write
    admin = as_user(server, "admin-root")
    minutes = wire.decode(admin.get(wire.tier_block_key("gpu01", "1m", int(t0))), schema.TierBlock)
    assert sum(1 for r in minutes.rows if r) == 10
    assert admin.get(wire.tier_block_key("gpu01", "10m", int(t0) - int(t0) % 86400)) is not None
    c.close()


def test_a_cluster_node_holds_leases_without_eval(server: tuple[RedisServer, Path]) -> None:
    srv, pw = server
    c = Client.from_url(f"redis://node-gpu02:{(pw / 'node-gpu02').read_text().strip()}@127.0.0.1:{srv.port}/0")
    now = [0.0]
    lease = Lease(c, "ceph", "gpu02", period_s=1.0, clock=lambda: now[0])
    assert lease.refresh()
    now[0] += 1.0
    assert lease.refresh()  # renewed with WATCH/MULTI
    c.set(wire.cluster_key("ceph"), b"payload", px=3000)
    lease.release()
    assert as_user(server, "admin-root").get(wire.lease_key("ceph")) is None
    c.close()


def test_operators_send_and_read_but_erase_nothing(server: tuple[RedisServer, Path]) -> None:
    alice = as_user(server, "operator-alice")
    admin = as_user(server, "admin-root")
    admin.xadd(wire.node_audit_key("gpu01"), {"a": b"entry"})
    alice.xadd(wire.cmd_key("gpu01"), {"c": b"signed"}, maxlen=1000)
    alice.xadd(wire.operator_audit_key("alice"), {"a": b"sent"})
    assert alice.xread({wire.results_key("gpu01"): "0"}, count=1) is not None  # +xread: the CLI awaits results
    alice.get(wire.node_key("gpu01"))
    alice.zrem(wire.NODES_KEY, "ghost")
    attacks = {
        "write another operator's audit": lambda: alice.xadd(wire.operator_audit_key("bob"), {"a": b"x"}),
        "write a node's audit": lambda: alice.xadd(wire.node_audit_key("gpu01"), {"a": b"x"}),
        "write a node's results": lambda: alice.xadd(wire.results_key("gpu01"), {"r": b"x"}),
        "write a snapshot": lambda: alice.set(wire.node_key("gpu01"), b"x"),
        "delete its own audit": lambda: alice.delete(wire.operator_audit_key("alice")),
        "trim a node's audit": lambda: alice.xtrim(wire.node_audit_key("gpu01"), maxlen=0),
        "delete the command stream": lambda: alice.delete(wire.cmd_key("gpu01")),
        "run Lua": lambda: alice.eval("return 1", 0),
    }
    allowed = [name for name, call in attacks.items() if not refused(call)]
    assert not allowed, allowed


def test_viewers_only_read_and_admins_may_trim(server: tuple[RedisServer, Path]) -> None:
    wall = as_user(server, "viewer-wall")
    wall.get(wire.node_key("gpu01"))
    wall.zrange(wire.NODES_KEY, 0, -1)
    assert refused(wall.xadd, wire.cmd_key("gpu01"), {"c": b"x"})
    assert refused(wall.zrem, wire.NODES_KEY, "gpu01")
    admin = as_user(server, "admin-root")
    admin.xadd(wire.node_audit_key("gpu02"), {"a": b"x"})
    assert admin.delete(wire.node_audit_key("gpu02")) == 1


@pytest.mark.parametrize("name", ["*", "gpu?", "a[b]", "a b", "node\\x", "-lead", "", "x" * 64])
def test_names_that_would_be_globs_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        acl.users_for([name], [], [], [], [])


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node-gpu01").write_text("pw\n")
    os.chmod(tmp_path / "node-gpu01", 0o644)
    r = subprocess.run([sys.executable, "-m", "clustertop", "acl", "--node", "gpu01", "--password-dir", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "chmod 600" in r.stderr and "Traceback" not in r.stderr


def test_the_energy_ledger_with_a_node_user(server: tuple[RedisServer, Path]) -> None:
    # agents/energy.py on the agent's RESP client: load (GET) and save (SET PX) its own ledger; another
    # node's is out of reach; a viewer reads every ledger (the energy screen).
    from clustertop.agents.energy import Ledger

    srv, pw = server
    c = Client.from_url(f"redis://node-gpu01:{(pw / 'node-gpu01').read_text().strip()}@127.0.0.1:{srv.port}/0")
    led = Ledger("gpu01")
    for i in range(3):
        led.step(b.node("gpu01", ts=1_800_000_000.0 + i, gpus=[b.gpu(0, 50)]), c, 1_800_000_000.0 + i)
    assert led.loaded
    a = as_user(server, "node-gpu01")
    assert refused(a.set, wire.energy_key("gpu02"), b"x")
    assert refused(a.get, wire.energy_key("gpu02"))
    led2 = wire.decode(as_user(server, "viewer-wall").get(wire.energy_key("gpu01")), schema.EnergyLedger)
    assert led2.host == "gpu01"
    c.close()


def test_want_keys_readers_write_them_nodes_only_read_their_own(server: tuple[RedisServer, Path]) -> None:
    """The byte budget's want keys (read.want): a viewer (and an operator) may SET them and nothing else new; a
    node reads the PTTL of its own and may write none, its own or another's (``clustertop acl``)."""
    wall, alice = as_user(server, "viewer-wall"), as_user(server, "operator-alice")
    for reader in (wall, alice):
        assert reader.set(wire.want_key("gpu01"), b"1", px=wire.WANT_PX_MS)
        assert refused(reader.set, wire.node_key("gpu01"), b"forged")
        assert refused(reader.set, wire.PREFIX + ":wantx:{gpu01}", b"1")  # the pattern is the want keys only
        assert refused(reader.delete, wire.want_key("gpu01"))  # SET only: no DEL, no other write
        assert refused(reader.pexpire, wire.want_key("gpu01"), 10**9)
    gpu01 = as_user(server, "node-gpu01")
    assert 0 < gpu01.pttl(wire.want_key("gpu01")) <= wire.WANT_PX_MS
    assert refused(gpu01.set, wire.want_key("gpu01"), b"1")
    assert refused(gpu01.set, wire.want_key("gpu02"), b"1")
    assert refused(gpu01.pttl, wire.want_key("gpu02"))
    assert refused(gpu01.get, wire.want_key("gpu01"))  # the PTTL is all it learns


def test_the_publisher_learns_wants_with_a_node_user(server: tuple[RedisServer, Path]) -> None:
    # The real publisher with a cadence on the agent's own client: its PTTL rides in the tick's MULTI.
    srv, pw = server
    c = Client.from_url(f"redis://node-gpu01:{(pw / 'node-gpu01').read_text().strip()}@127.0.0.1:{srv.port}/0")
    pub = Publisher(c, "gpu01", 1.0, full_every_s=15.0, tiers=False)
    as_user(server, "viewer-wall").set(wire.want_key("gpu01"), b"1", px=wire.WANT_PX_MS)
    for k in range(3):
        pub.publish(b.tower("gpu01", ts=b.NOW + k, seq=k + 1))
    assert pub.probe_want and pub.wanted and pub.fulls == 3
    c.close()


def test_an_acl_from_before_want_keys_means_full_every_tick(server: tuple[RedisServer, Path]) -> None:
    """A node user generated before want keys may not PTTL them: the tick that finds out fails once (the agent
    backs off a tick), and from then on the agent publishes in full every tick, as it did before the budget."""
    srv, _ = server
    admin = as_user(server, "admin-root")
    rules = acl.node_rules("gpu09", cluster=False).replace(f"(%R~{wire.want_key('gpu09')} +pttl)", "")
    admin.execute_command("ACL", "SETUSER", "node-gpu09", "on", ">pw09", *re.findall(r"\([^)]*\)|\S+", rules))
    c = Client.from_url(f"redis://node-gpu09:pw09@127.0.0.1:{srv.port}/0")
    pub = Publisher(c, "gpu09", 1.0, full_every_s=15.0, tiers=False)
    with pytest.raises(Exception, match="NOPERM"):
        pub.publish(b.tower("gpu09", ts=b.NOW, seq=1))
    assert not pub.probe_want
    for k in range(1, 4):
        pub.publish(b.tower("gpu09", ts=b.NOW + k, seq=k + 1))
    assert pub.fulls == 3
    assert wire.decode(admin.get(wire.node_key("gpu09")), schema.NodeSnapshot).seq == 4
    admin.execute_command("ACL", "DELUSER", "node-gpu09")
    c.close()
