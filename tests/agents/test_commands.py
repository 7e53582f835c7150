"""The command executor on a real redis-server, acting on real processes: every check and refusal.

Processes are real ``sleep``s started here. Tests run as root in CI, so the "own user" processes
are root-owned: tests that must signal them set ``allow_root = true``; the refusal of root-owned
processes is tested with it off, and "user not allowed" with a sleep running as ``nobody``.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time

import msgspec
import psutil
import pytest
import redis

from clustertop import wire
from clustertop.agents.commands import REFUSAL_SAMPLE_S, CommandExecutor
from clustertop.collectors import procfs
from clustertop.collectors.base import Roots
from clustertop.config import ConfigError
from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.wire import schema

NODE = "node-a"
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def keys(tmp_path):
    kp, pp, _ = signing.generate(str(tmp_path / "keys"), "ops")
    op, opp, _ = signing.generate(str(tmp_path / "keys"), "other")
    return {"ops": signing.load_private(kp), "ops_pub": pp, "other": signing.load_private(op), "other_pub": opp}


@pytest.fixture
def make(redis_server, tmp_path, keys):
    made = []

    def _make(security=None, templates=None, read_only=False, node=NODE, state="state"):
        sec = {"operator_keys": [keys["ops_pub"]], "signal_users": [], "allow_root": True}
        sec.update(security or {})
        cfg = {"security": sec, "templates": templates or {}, "read_only": read_only}
        ex = CommandExecutor(redis_server.client, node, cfg, state_dir=str(tmp_path / state), block_ms=50)
        ex.client = redis_server.client()
        ex.ensure_group()
        made.append(ex)
        return ex

    yield _make
    for ex in made:
        ex.task_mgr.close()


@pytest.fixture
def sleeper():
    procs = []

    def _start(user=None):
        kw = {}
        if user is not None:
            pw = pwd.getpwnam(user)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        p = subprocess.Popen(["sleep", "300"], **kw)
        procs.append(p)
        # Popen returns once exec has begun; /proc/<pid>/cmdline is filled in a moment later.
        deadline = time.monotonic() + 10
        while not psutil.Process(p.pid).cmdline() and time.monotonic() < deadline:
            time.sleep(0.01)
        return p

    yield _start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def start_ts(pid: int) -> float:
    """psutil's create_time: the start as seconds, for display (never an identity)."""
    return psutil.Process(pid).create_time()


def start_ticks(pid: int) -> int:
    """What the operator saw: the kernel's start of ``pid`` in clock ticks (/proc/<pid>/stat field 22),
    read here independently of the agent's procfs reader."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[19])


def send(client, key, node=NODE, verb="signal", args=None, params=None, **kw):
    cmd = cc.build(node, verb, args, params, operator="tester")
    for k, v in kw.items():
        setattr(cmd, k, v)
    if key is not None:
        signing.sign(cmd, key)
    cc.send(client, cmd)
    return cmd


def run_one(ex):
    assert ex.poll_once() >= 1


def results(client, node=NODE) -> list[schema.CommandResult]:
    """The node's own results stream (only it may append there; each result is signed by its key)."""
    return [wire.decode(f[b"r"], schema.CommandResult) for _, f in client.xrange(wire.results_key(node))]


def audits(client, node=NODE) -> list[schema.AuditEntry]:
    """The node's own audit stream (signed and chained by its key)."""
    return [wire.decode(f[b"a"], schema.AuditEntry) for _, f in client.xrange(wire.node_audit_key(node))]


def pending(client, node=NODE) -> int:
    return client.xpending(wire.cmd_key(node), "agent")["pending"]


def wait_dead(p: subprocess.Popen, timeout: float = 10.0) -> int | None:
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# ---------------------------------------------------------------------------------------------
# The target's identity, as the executor reads it (procfs.read_pid; its parsers are tested in
# tests/collectors/test_host.py)
# ---------------------------------------------------------------------------------------------


def test_read_pid_agrees_with_psutil(sleeper):
    p = sleeper()
    info = procfs.read_pid(Roots(), p.pid, procfs.read_btime(Roots()))
    assert info is not None and info.stat.comm == "sleep" and info.cmdline == "sleep 300"
    assert info.start_ts is not None and abs(info.start_ts - start_ts(p.pid)) < 1.0
    assert info.uid == os.getuid() and info.stat.pgrp == os.getpgid(p.pid)


# ---------------------------------------------------------------------------------------------
# Accepted
# ---------------------------------------------------------------------------------------------


def test_valid_signed_signal_kills_a_real_process(redis_server, make, keys, sleeper):
    client = redis_server.client()
    ex = make(security={"signal_users": [pwd.getpwuid(os.getuid()).pw_name]})
    p = sleeper()
    cmd = send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), "KILL"))
    run_one(ex)
    assert wait_dead(p) == -signal.SIGKILL
    [res] = results(client)
    assert (res.id, res.ok, res.status, res.data["signal"]) == (cmd.id, True, "done", "KILL")
    [a] = audits(client)
    assert (a.result, a.actor, a.action, a.command_id) == ("ok", f"node:{NODE}", "signal", cmd.id)
    assert a.target == f"{NODE} pid {p.pid}, sent by operator 'tester' (key {keys['ops'].key_id})"
    assert a.where == f"agent:{NODE}"
    assert pending(client) == 0  # acknowledged


def test_default_signal_is_term_and_group_reaches_children(redis_server, make, keys):
    client = redis_server.client()
    ex = make()
    # A shell-less parent with a child in its own new process group (session).
    parent = subprocess.Popen(["python3", "-c", "import subprocess,time; subprocess.Popen(['sleep','300']); "
                               "time.sleep(300)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        [child] = psutil.Process(parent.pid).children()
        send(client, keys["ops"], args=cc.signal_args(parent.pid, start_ticks(parent.pid), group=True))
        run_one(ex)
        [res] = results(client)
        assert res.ok and res.data["signal"] == "TERM" and res.data["pgid"] == parent.pid, res.reason
        assert wait_dead(parent) == -signal.SIGTERM
        child.wait(10)  # raises TimeoutExpired if the child survived
        assert not child.is_running()
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()


# ---------------------------------------------------------------------------------------------
# Refused before anything runs
# ---------------------------------------------------------------------------------------------


def _refused(client, ex, p, why, status="refused"):
    run_one(ex)
    res = results(client)[-1]
    assert not res.ok and res.status == status and why in res.reason, res.reason
    assert p.poll() is None, "the process must still be alive"
    assert audits(client)[-1].result.startswith(f"{status}:")
    assert pending(client) == 0
    return res


def test_unsigned_is_refused(redis_server, make, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, None, args=cc.signal_args(p.pid, start_ticks(p.pid)))
    _refused(client, ex, p, "unsigned")
    a = audits(client)[-1]
    assert a.actor == f"node:{NODE}" and a.target.endswith("sent by unverified operator 'tester'")


def test_bad_signature_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    cmd = cc.build(NODE, "signal", cc.signal_args(p.pid, start_ticks(p.pid)), operator="tester")
    signing.sign(cmd, keys["ops"])
    cmd.args["signal"] = "KILL"  # tampered after signing
    cc.send(client, cmd)
    _refused(client, ex, p, "bad signature")


def test_key_not_trusted_by_this_node_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["other"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    _refused(client, ex, p, "unknown key id")


def test_wrong_node_is_refused(redis_server, make, keys, sleeper):
    """Signed for node-b, but pushed onto node-a's stream: node-a refuses."""
    client, ex, p = redis_server.client(), make(), sleeper()
    cmd = cc.build("node-b", "signal", cc.signal_args(p.pid, start_ticks(p.pid)), operator="tester")
    signing.sign(cmd, keys["ops"])
    client.xadd(wire.cmd_key(NODE), {"c": wire.encode(cmd)})
    _refused(client, ex, p, "wrong node")


def test_expired_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    now = time.time()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)), issued_ts=now - 200,
         expires_ts=now - 80)
    _refused(client, ex, p, "expired", status="expired")


def test_issued_in_the_future_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    now = time.time()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)), issued_ts=now + 300,
         expires_ts=now + 400)
    _refused(client, ex, p, "in the future")


def test_absurd_lifetime_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    now = time.time()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)), issued_ts=now,
         expires_ts=now + 86400)
    _refused(client, ex, p, "lifetime")


def test_read_only_agent_refuses(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(read_only=True), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    _refused(client, ex, p, "read-only")


def test_verb_not_allowed_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(security={"verbs": ["list"]}), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    _refused(client, ex, p, "not allowed on this node")


def test_garbage_on_the_stream_is_refused_and_acknowledged(redis_server, make):
    client, ex = redis_server.client(), make()
    client.xadd(wire.cmd_key(NODE), {"c": b"\xc1 not msgpack"})
    run_one(ex)
    [res] = results(client)
    assert res.status == "refused" and "unreadable" in res.reason and res.id.startswith("entry:")
    assert pending(client) == 0 and len(audits(client)) == 1


# ---------------------------------------------------------------------------------------------
# Replays: one result per command, whatever happens to Redis
# ---------------------------------------------------------------------------------------------


def test_replay_is_refused_in_memory_in_redis_and_after_a_flush(redis_server, make, keys, sleeper):
    client, ex = redis_server.client(), make()
    p1 = sleeper()
    cmd = send(client, keys["ops"], args=cc.signal_args(p1.pid, start_ticks(p1.pid)))
    run_one(ex)
    assert wait_dead(p1) == -signal.SIGTERM
    raw = wire.encode(cmd)

    # 1. the same bytes again, same agent: refused from memory
    client.xadd(wire.cmd_key(NODE), {"c": raw})
    run_one(ex)
    # 2. an agent that never saw it (its own, empty state dir): refused by the marker in Redis
    ex2 = make(state="elsewhere")
    client.xadd(wire.cmd_key(NODE), {"c": raw})
    run_one(ex2)
    assert [r.id for r in results(client)] == [cmd.id]
    assert [a.result for a in audits(client)] == [
        "ok", "refused: replayed (id already seen by this agent)", "refused: replayed (id already executed)"]
    # 3. Redis flushed (marker gone): the first agent still remembers, and runs nothing again. Its record
    # was lost with the flush (as in a failover to a replica that had not received it): the result it
    # wrote is written again, once (tests/store/test_redis_sentinel.py does this through a real failover).
    first = results(client)[0]
    client.flushall()
    ex.ensure_group()
    client.xadd(wire.cmd_key(NODE), {"c": raw})
    run_one(ex)
    assert results(client) == [first] and pending(client) == 0
    assert [a.result for a in audits(client)] == [
        "ok (recorded again: Redis had lost the first record; not re-run)"]
    # Its second replay within REFUSAL_SAMPLE_S is counted into the next sample, written once that window has passed.
    client.delete(wire.node_audit_key(NODE), wire.results_key(NODE))
    client.xadd(wire.cmd_key(NODE), {"c": raw})
    run_one(ex)
    assert results(client) == [] and audits(client) == [] and pending(client) == 0
    ex.clock = lambda: time.time() + REFUSAL_SAMPLE_S
    ex.flush_refusals()
    assert [a.result for a in audits(client)] == ["refused: replayed (id already seen by this agent)"]


def test_replay_writes_no_second_result(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    cmd = send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    client.xadd(wire.cmd_key(NODE), {"c": wire.encode(cmd)})
    client.xadd(wire.cmd_key(NODE), {"c": wire.encode(cmd)})
    while ex.poll_once():
        pass
    assert [r.id for r in results(client)] == [cmd.id]
    # the first replay at once, the second counted into the sample written when its window has passed
    assert [a.result.split(" (")[0] for a in audits(client)] == ["ok", "refused: replayed"]
    ex.clock = lambda: time.time() + REFUSAL_SAMPLE_S
    ex.flush_refusals()
    assert [a.result.split(" (")[0] for a in audits(client)] == ["ok", "refused: replayed", "refused: replayed"]
    assert pending(client) == 0


# ---------------------------------------------------------------------------------------------
# Refused at the target: identity and ownership
# ---------------------------------------------------------------------------------------------


def test_pid_reused_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid) - 100))
    _refused(client, ex, p, "pid reused")  # more identity checks: tests/agents/test_commands_identity.py


def test_cmdline_prefix_mismatch_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), cmdline="python train.py"))
    _refused(client, ex, p, "pid reused")


def test_missing_start_ticks_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args={"pid": p.pid})
    _refused(client, ex, p, "start_ticks required")


def test_gone_process_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    ts = start_ticks(p.pid)
    p.kill()
    p.wait()
    send(client, keys["ops"], args=cc.signal_args(p.pid, ts))
    run_one(ex)
    assert "no process" in results(client)[-1].reason


@pytest.mark.skipif(not IS_ROOT, reason="needs a root-owned process started by the test (run as root)")
def test_root_owned_process_is_refused_without_allow_root(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(security={"allow_root": False}), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), "KILL"))
    _refused(client, ex, p, "root-owned")


@pytest.mark.skipif(not IS_ROOT, reason="starting a process as another user needs root")
def test_user_not_in_signal_users_is_refused_then_allowed(redis_server, make, keys, sleeper):
    client = redis_server.client()
    p = sleeper(user="nobody")
    ex = make(security={"signal_users": ["someone-else"]})
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    _refused(client, ex, p, "user nobody not allowed")

    ex2 = make(security={"signal_users": ["nobody"], "allow_root": False})
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    run_one(ex2)
    assert results(client)[-1].ok and wait_dead(p) == -signal.SIGTERM


@pytest.mark.skipif(not IS_ROOT, reason="starting a process as another user needs root")
def test_system_uid_below_min_uid_is_refused(redis_server, make, keys, sleeper):
    client = redis_server.client()
    p = sleeper(user="daemon")  # uid 1
    ex = make(security={"signal_users": ["daemon"], "allow_root": False})
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    _refused(client, ex, p, "system process (uid 1 < 1000)")


@pytest.mark.skipif(not IS_ROOT, reason="starting a process as another user needs root")
def test_group_with_a_foreign_member_is_refused(redis_server, make, keys, sleeper):
    """Signalling a group checks every member, not just the one the operator picked."""
    client = redis_server.client()
    pw = pwd.getpwnam("nobody")
    # The leader (root) starts a child as nobody: same process group, another owner.
    leader = subprocess.Popen(["python3", "-c", "import subprocess,time; subprocess.Popen(['sleep','300'], "
                               f"user={pw.pw_uid}, group={pw.pw_gid}, extra_groups=[]); time.sleep(300)"],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        # Wait for the child's exec (so its setuid is done too) before looking at its owner.
        while time.monotonic() < deadline:
            kids = psutil.Process(leader.pid).children()
            if kids and kids[0].cmdline() == ["sleep", "300"]:
                break
            time.sleep(0.05)
        [other] = psutil.Process(leader.pid).children()
        assert other.uids().real == pw.pw_uid
        ex = make()
        send(client, keys["ops"], args=cc.signal_args(leader.pid, start_ticks(leader.pid), group=True))
        _refused(client, ex, leader, "user nobody not allowed")
        assert other.is_running()
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_the_agent_itself_and_init_are_refused(redis_server, make, keys):
    client, ex = redis_server.client(), make()
    send(client, keys["ops"], args=cc.signal_args(os.getpid(), start_ticks(os.getpid())))
    send(client, keys["ops"], args=cc.signal_args(1, start_ticks(1)))
    while ex.poll_once():
        pass
    reasons = [r.reason for r in results(client)]
    assert "the agent itself" in reasons[0] and "init" in reasons[1]


def test_signal_name_outside_the_allowed_set_is_refused(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), "STOP"))
    _refused(client, ex, p, "signal STOP not allowed")


# ---------------------------------------------------------------------------------------------
# Config and the thread
# ---------------------------------------------------------------------------------------------


def test_security_config_errors_name_file_and_key(redis_server, tmp_path):
    def build(sec):
        return CommandExecutor(redis_server.client, NODE, {"security": sec, "file": str(tmp_path / "agent.toml")},
                               state_dir=str(tmp_path))

    with pytest.raises(ConfigError, match=r"agent.toml: \[security\] allow_rot: unknown key"):
        build({"allow_rot": True})
    with pytest.raises(ConfigError, match=r"\[security\] operator_keys\[0\].*cannot read key"):
        build({"operator_keys": ["nope.pub"]})
    with pytest.raises(ConfigError, match=r"\[security\] verbs: unknown verb 'reboot'"):
        build({"verbs": ["reboot"]})
    with pytest.raises(ConfigError, match=r"\[security\] allow_root: expected bool"):
        build({"allow_root": "yes"})


def test_relative_key_paths_are_relative_to_the_config_file(redis_server, tmp_path, keys):
    os.rename(keys["ops_pub"], tmp_path / "ops.pub")
    ex = CommandExecutor(redis_server.client, NODE,
                         {"security": {"operator_keys": ["ops.pub"]}, "file": str(tmp_path / "agent.toml")},
                         state_dir=str(tmp_path / "s"))
    assert list(ex.security.keys) == [keys["ops"].key_id]


def test_run_thread_serves_commands_and_survives_a_redis_restart(redis_server, tmp_path, keys, sleeper):
    """The thread API the agent uses; Redis goes away and comes back on the same port."""
    import threading

    from tests.conftest import RedisServer

    cfg = {"security": {"operator_keys": [keys["ops_pub"]], "allow_root": True}}
    url = redis_server.url
    ex = CommandExecutor(lambda: redis.Redis.from_url(url, socket_timeout=2), NODE, cfg,
                         state_dir=str(tmp_path / "s"), block_ms=100)
    stop = threading.Event()
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    try:
        client = redis_server.client()
        p = sleeper()
        known = trust.KnownNodes(keys={NODE: ex.node_key.public()})  # answers count only when signed by it
        [res] = cc.submit(client, keys["ops"], [cc.build(NODE, "signal", cc.signal_args(p.pid, start_ticks(p.pid)))],
                          timeout_s=20, known=known).values()
        assert res is not None and res.ok, res
        # Restart Redis on the same port: the executor reconnects and recreates its group.
        port = redis_server.port
        redis_server.proc.terminate()
        redis_server.proc.wait(10)
        srv2 = RedisServer.__new__(RedisServer)
        srv2.port, srv2.dir, srv2.url = port, redis_server.dir, url
        srv2.proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", redis_server.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis_server.proc = srv2.proc  # the fixture stops it
        srv2._wait()
        client = redis.Redis.from_url(url)
        p2 = sleeper()
        [res2] = cc.submit(client, keys["ops"], [cc.build(NODE, "signal", cc.signal_args(p2.pid, start_ticks(p2.pid)))],
                           timeout_s=30, known=known).values()
        assert res2 is not None and res2.ok, res2
        assert wait_dead(p2) == -signal.SIGTERM
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_results_decode_as_plain_json_for_scripts(redis_server, make, keys, sleeper):
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid)))
    run_one(ex)
    out = msgspec.json.decode(wire.to_json(results(client)[0]))
    assert out["status"] == "done" and out["data"]["pid"] == p.pid
