"""Sentinel for every client, on a real master/replica/3-sentinel set (tests/support/redis_ha.py, from
../shared/recipes/redis-ha/): real agent processes, the exporter process, the dashboard app and a
reader through ``redis+sentinel://``; ``kill -9`` of the master; signed commands across a failover.

Timings are printed (``-s`` shows them), never asserted beyond "recovers" with generous bounds.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clustertop import store, wire
from clustertop.agents.commands import CommandExecutor
from clustertop.config import ConfigError
from clustertop.control import commands as cc
from clustertop.control import signing
from clustertop.store import resp
from clustertop.wire import schema
from tests.store.test_redis_security import _cert
from tests.support.redis_ha import (
    HupCounter,
    RedisSentinel,
    assert_ran_at_most_once,
    failover_scenario,
    until,
)

NODE = "ha-cmd"


@pytest.fixture
def sentinel_set() -> Iterator[RedisSentinel]:
    s = RedisSentinel()
    try:
        yield s.start()
    finally:
        s.stop()


def test_url_forms_both_clients_understand(sentinel_set: RedisSentinel) -> None:
    s = sentinel_set
    light, py = store.connect_light(s.url), store.connect(s.url)
    assert light.set("k", "v") is True and py.get("k") == b"v"
    assert py.set("k2", "w") and light.get("k2") == b"w"
    # a master name no sentinel knows: a connection error naming it, on both sides
    with pytest.raises(resp.ConnectionFailed, match="nomaster"):
        store.connect_light(s.url.replace("/mymaster", "/nomaster")).ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        store.connect(s.url.replace("/mymaster", "/nomaster")).ping()


def test_sentinels_password_from_a_file(tmp_path: Path) -> None:
    """Sentinels with ``requirepass``: the password read from ``?sentinel_password_file=`` by both clients, so
    it need not sit in a unit file; without it, a refusal that says so; a missing file names the file."""
    s = RedisSentinel(sentinel_password="sentinel-secret")
    try:
        s.start()
        secret = tmp_path / "sentinel.pw"
        secret.write_text("sentinel-secret\n")
        url = f"{s.url}?sentinel_password_file={secret}"
        light, py = store.connect_light(url), store.connect(url)
        assert light.set("k", "v") is True and py.get("k") == b"v"
        with pytest.raises(resp.ConnectionFailed, match="(?i)auth"):
            store.connect_light(s.url).ping()
        with pytest.raises(redis.exceptions.RedisError):
            store.connect(s.url).ping()
        with pytest.raises(ConfigError, match="cannot read Sentinel password"):
            store.connect_light(f"{s.url}?sentinel_password_file={tmp_path / 'missing'}")
    finally:
        s.stop()


def test_tls_to_sentinels_and_master_through_a_failover(tmp_path: Path) -> None:
    """``rediss+sentinel://``: TLS to the sentinels and to the master (the servers speak nothing else), on
    both clients, before and after ``kill -9`` of the master."""
    ca, cert, key = _cert(tmp_path)
    s = RedisSentinel(tls=(str(ca), str(cert), str(key)))
    try:
        s.start()
        light, py = store.connect_light(s.url), store.connect(s.url)
        assert light.set("k", "v") and py.get("k") == b"v"
        with pytest.raises(resp.ConnectionFailed):  # the same sentinels without TLS: nobody answers
            store.connect_light(s.url.replace("rediss+", "redis+").split("?")[0], timeout_s=0.5).ping()
        s.kill_master()
        s.wait_promoted()
        until(lambda: light.set("k2", "w"), 30)
        until(lambda: py.get("k2") == b"w", 30)
        assert s.replica is not None and light.conn.port == s.replica.port
    finally:
        s.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_kill_master_agents_dashboard_exporter_carry_on(sentinel_set: RedisSentinel, tmp_path: Path) -> None:
    s = sentinel_set
    assert s.replica is not None
    f = await failover_scenario(s.url, ["ha-a", "ha-b"], str(tmp_path), s.kill_master, s.wait_promoted,
                                lambda: redis.Redis(port=s.replica.port))  # type: ignore[union-attr]
    print(f"\nSentinel failover: replica promoted and named by every sentinel {f['promoted']:.2f} s after kill -9; "
          f"after that: agents published there +{f['agents']:.2f} s, reader up +{f['reader']:.2f} s, "
          f"exporter up +{f['exporter']:.2f} s, dashboard reading again +{f['dashboard']:.2f} s")
    # The dashboard marked the store unreachable during the outage (its last figures kept, marked stale).
    assert f["dashboard_unreachable_shown"] and "store unreachable since" in f["_header_in_outage"][0]  # type: ignore[index]


# -- signed commands across a failover --------------------------------------------------------------


@pytest.fixture
def hup_counter(tmp_path: Path) -> Iterator[HupCounter]:
    c = HupCounter(tmp_path / "hups")
    try:
        yield c
    finally:
        c.close()


def _start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[19])


def _executor(url: str, state_dir: Path, pub: str) -> CommandExecutor:
    sec = {"operator_keys": [pub], "signal_users": [pwd.getpwuid(os.getuid()).pw_name], "allow_root": True}
    ex = CommandExecutor(lambda: store.connect_light(url), NODE, {"security": sec}, state_dir=str(state_dir),
                         block_ms=50)
    ex.client = ex.client_factory()
    ex.ensure_group()
    return ex


def _reconnected(ex: CommandExecutor) -> None:
    """What the executor's run loop does after a store error: a new client, the group, the pending entries."""
    until(lambda: (setattr(ex, "client", ex.client_factory()), ex.ensure_group(), True)[-1], 30)
    ex.process_pending()


def _results(client: redis.Redis) -> list[schema.CommandResult]:
    return [wire.decode(f[b"r"], schema.CommandResult) for _, f in client.xrange(wire.results_key(NODE))]


def _audits(client: redis.Redis) -> list[str]:
    return [wire.decode(f[b"a"], schema.AuditEntry).result for _, f in client.xrange(wire.node_audit_key(NODE))]


@pytest.mark.parametrize("restarted", [False, True], ids=["same-agent", "agent-restarted"])
def test_command_whose_record_the_replica_lost_is_not_run_again(sentinel_set: RedisSentinel, tmp_path: Path,
                                                                hup_counter, restarted: bool) -> None:  # type: ignore[no-untyped-def]
    """Replication is asynchronous: the replica promoted may lack the agent's last writes (the "running"
    marker, the result, the XACK), so the command comes back as new. Here the loss is made certain rather
    than left to timing: the replica is cut off (REPLICAOF NO ONE) once it has the command and before the
    agent runs it, and after ``kill -9`` of the master the sentinels are pointed at it (what their own
    failover does, at a known point). The replay log in the agent's state dir must stop a second run."""
    s = sentinel_set
    proc = hups = hup_counter
    kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    key = signing.load_private(kp)
    ex = _executor(s.url, tmp_path / "state", pub)
    op = store.connect(s.url)
    cmd = cc.build(NODE, "signal", cc.signal_args(proc.pid, _start_ticks(proc.pid), "HUP"), None, operator="tester",
                   lifetime_s=120)
    signing.sign(cmd, key)
    cc.send(op, cmd)
    assert op.wait(1, 5000) == 1  # the replica has the command ...
    assert s.replica is not None and s.master is not None
    replica = redis.Redis(port=s.replica.port)
    replica.replicaof("NO", "ONE")  # ... and nothing after it
    assert ex.poll_once() == 1  # run on the old master, recorded there
    assert hups.wait_for(1) == 1
    master = redis.Redis(port=s.master.port)
    assert [r.id for r in _results(master)] == [cmd.id]
    first = _results(master)[0]

    s.kill_master()
    for sen in s.sentinels:  # the sentinels' failover, to the replica that lost the record
        c = redis.Redis(port=sen.port)
        c.execute_command("SENTINEL", "REMOVE", s.name)
        c.execute_command("SENTINEL", "MONITOR", s.name, "127.0.0.1", s.replica.port, 2)
    assert _results(replica) == [] and replica.get(wire.seen_key(NODE, cmd.id)) is None  # the record is lost
    if restarted:
        ex.task_mgr.close()
        ex = _executor(s.url, tmp_path / "state", pub)  # a new agent process: only the state dir remembers
    else:
        _reconnected(ex)
    while ex.poll_once():
        pass
    assert hups.wait_for(2, timeout=1) == 1, "executed twice"  # a second HUP would be counted within a second
    results, audits = _results(replica), _audits(replica)
    if restarted:
        # Nothing in memory to write again: the replay is refused (recorded when its sample's window closes)
        assert results == []
        ex.flush_refusals(force=True)
        assert _audits(replica) == ["refused: replayed (id already seen by this agent)"]
    else:
        assert results == [first]  # the same signed answer, once
        assert audits == ["ok (recorded again: Redis had lost the first record; not re-run)"]
        assert replica.get(wire.seen_key(NODE, cmd.id)) == b"done"
    assert replica.xpending(wire.cmd_key(NODE), "agent")["pending"] == 0
    ex.task_mgr.close()


def test_command_in_flight_during_a_real_failover_runs_at_most_once(sentinel_set: RedisSentinel, tmp_path: Path,
                                                                     hup_counter: HupCounter) -> None:
    """A real failover, the agent's executor loop running (its own thread and reconnects): a command sent
    just before ``kill -9`` is run once, or (lost with the master before anyone read it) never, and then
    expires; never twice. Its answer, if it ran, is on the new master."""
    import threading

    s = sentinel_set
    proc = hups = hup_counter
    kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    key = signing.load_private(kp)
    ex = _executor(s.url, tmp_path / "state", pub)
    stop_ev = threading.Event()
    t = threading.Thread(target=ex.run, args=(stop_ev,), daemon=True)
    t.start()
    try:
        op = store.connect(s.url)
        cmd = cc.build(NODE, "signal", cc.signal_args(proc.pid, _start_ticks(proc.pid), "HUP"), None,
                       operator="tester", lifetime_s=20)
        signing.sign(cmd, key)
        cc.send(op, cmd)
        s.kill_master()
        s.wait_promoted()
        new = redis.Redis(port=s.replica.port)  # type: ignore[union-attr]
        assert_ran_at_most_once(hups, lambda: [r for r in _results(new) if r.id == cmd.id], cmd.expires_ts,
                                "the failover")
    finally:
        stop_ev.set()
        t.join(20)
