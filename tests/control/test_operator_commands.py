"""The operator's side of job control (clustertop.control.commands) against a real redis-server, a real
agent's executor (a thread, as the agent runs it) and real processes.

Each test plays the attacker of the trust review: a Redis writer with another node's credentials who
answers a node's commands with a forged "done", and one who relabels a real process in a snapshot. The
operator side must never report a forged answer as done, must never name a process from data its node
did not sign, and must leave its own signed trail of what it sent.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.agents.publisher import Publisher
from clustertop.cli import acl
from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.wire import schema
from tests.conftest import RedisServer

NODE, OTHER = "node-a", "node-b"


def start_ticks(pid: int) -> int:
    """/proc/<pid>/stat field 22, read here the way the agent reads it (after the command name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


@pytest.fixture
def ops(tmp_path: Path) -> signing.PrivateKey:
    kp, _pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    return signing.load_private(kp)


@pytest.fixture
def node_keys() -> dict[str, signing.PrivateKey]:
    return {NODE: signing.new_key(), OTHER: signing.new_key()}


@pytest.fixture
def known(node_keys: dict[str, signing.PrivateKey]) -> trust.KnownNodes:
    return trust.KnownNodes(keys={h: k.public() for h, k in node_keys.items()})


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["sleep", "300"])
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


@pytest.fixture
def agent(redis_server: RedisServer, tmp_path: Path, ops: signing.PrivateKey,
          node_keys: dict[str, signing.PrivateKey]) -> Iterator[CommandExecutor]:
    stop = threading.Event()
    pub = tmp_path / "keys" / "ops.pub"
    cfg = {"security": {"operator_keys": [str(pub)], "allow_root": True}, "templates": {}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "state"), block_ms=100,
                         node_key=node_keys[NODE])
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    yield ex
    stop.set()
    t.join(10)


def forger(url_client: Callable[[], Any], node: str, answer: Callable[[schema.Command], schema.CommandResult | None],
           stop: threading.Event) -> threading.Thread:
    """Another Redis writer: reads every command sent to ``node`` and writes ``answer(cmd)`` on its
    results stream at once (before any agent could)."""
    import redis

    def run() -> None:
        client = url_client()
        last = "0-0"
        while not stop.is_set():
            try:
                got = client.xread({wire.cmd_key(node): last}, block=100) or []
            except redis.RedisError:
                return  # the test is over and its server gone
            for _s, entries in got:
                for eid, fields in entries:
                    last = eid
                    cmd = wire.decode(fields[b"c"], schema.Command)
                    res = answer(cmd)
                    if res is not None:
                        client.xadd(wire.results_key(node), {"r": wire.encode(res)})

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def forged_done(cmd: schema.Command, key: signing.PrivateKey | None = None, node: str | None = None) -> schema.CommandResult:
    res = schema.CommandResult(id=cmd.id, node=node or cmd.node, verb=cmd.verb, ok=True, status="done",
                               ts=time.time(), data={"pid": cmd.args.get("pid"), "signal": "TERM", "user": "root"})
    return signing.sign_struct("result", res, key) if key is not None else res


def sealed(client: Any, host: str, key: signing.PrivateKey, procs: list[schema.Proc]) -> schema.NodeSnapshot:
    snap = schema.NodeSnapshot(host=host, ts=time.time(), system=schema.System(procs=procs))
    Publisher(client, host, 60.0, key=key).publish(snap)
    return snap


def proc_of(p: subprocess.Popen[bytes], **kw: Any) -> schema.Proc:
    import os

    return schema.Proc(pid=p.pid, user="me", name="sleep", cmdline="sleep 300", start_ts=time.time(),
                       start_ticks=start_ticks(p.pid), uid=os.getuid(), **kw)


# ---------------------------------------------------------------------------------------------
# Answers: only the node's own signature makes "done"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signer", ["unsigned", "node-b's key", "node-b's key, naming node-b"])
def test_a_forged_done_is_reported_unverified_and_the_process_lives(redis_server: RedisServer, ops: Any,
                                                                     node_keys: Any, known: Any, victim: Any,
                                                                     signer: str) -> None:
    stop = threading.Event()
    key = None if signer == "unsigned" else node_keys[OTHER]
    claim = OTHER if "naming" in signer else None
    forger(redis_server.client, NODE, lambda c: forged_done(c, key, claim), stop)
    try:
        client = redis_server.client()
        cmd = cc.build(NODE, "signal", cc.signal_args(victim.pid, start_ticks(victim.pid), "TERM"))
        ans = cc.submit(client, ops, [cmd], timeout_s=1.5, known=known)[cmd.id]
    finally:
        stop.set()
    assert ans is not None and ans.result.status == "done"  # what the forger claims ...
    assert not ans.verdict.ok and not ans.ok  # ... is not what the operator is told
    line = cc.answer_line(ans, NODE)
    assert line.startswith(f"unverified answer from {NODE}: sent TERM to pid {victim.pid}"), line
    want = {"unsigned": "unsigned", "node-b's key": "not the enrolled",
            "node-b's key, naming node-b": "but the command went to node-a"}[signer]
    assert want in ans.verdict.text and want in line
    assert victim.poll() is None


def test_the_nodes_own_answer_wins_over_a_forgery_that_came_first(redis_server: RedisServer, ops: Any, known: Any,
                                                                  agent: CommandExecutor, victim: Any) -> None:
    stop = threading.Event()
    forger(redis_server.client, NODE, forged_done, stop)
    try:
        client = redis_server.client()
        # A start that is not the victim's: the real agent refuses; the forger says "done" first.
        cmd = cc.build(NODE, "signal", cc.signal_args(victim.pid, start_ticks(victim.pid) + 1, "TERM"))
        ans = cc.submit(client, ops, [cmd], timeout_s=20, known=known)[cmd.id]
    finally:
        stop.set()
    assert ans is not None and ans.verdict.ok, ans
    assert ans.result.status == "refused" and "pid reused" in (ans.result.reason or "")
    assert cc.answer_line(ans, NODE).startswith(f"{NODE}: refused: pid reused")
    assert victim.poll() is None


def test_a_real_kill_is_verified_and_in_the_operators_signed_trail(redis_server: RedisServer, ops: Any, known: Any,
                                                                     node_keys: Any, agent: CommandExecutor,
                                                                     victim: Any) -> None:
    client = redis_server.client()
    sealed(client, NODE, node_keys[NODE], [proc_of(victim)])
    ident = cc.process_identity(client, NODE, victim.pid, known)
    assert ident.verified and ident.problem() is None, ident.verdict
    assert ident.verdict.text == f"signed by {NODE}'s enrolled key {signing.fingerprint(known.get(NODE))}"
    args = ident.signal_args("TERM")
    assert args["start_ticks"] == start_ticks(victim.pid) and args["uid"] is not None and args["cmdline"] == "sleep"
    cmd = cc.build(NODE, "signal", args)
    ans = cc.submit(client, ops, [cmd], timeout_s=20, known=known)[cmd.id]
    assert ans is not None and ans.ok, ans
    assert victim.wait(10) == -15
    # The operator's own stream: one entry, signed by the operator's key, naming the command.
    stream = wire.operator_audit_key("ops")
    entries = client.xrange(stream)
    (e,) = [wire.decode(f[b"a"], schema.AuditEntry) for _, f in entries]
    assert (e.actor, e.action, e.result, e.where, e.command_id, e.seq) == ("ops", "signal", "sent", "cli", cmd.id, 1)
    assert f"{NODE} pid {victim.pid} (start ticks {start_ticks_of(args)}" in e.target
    rep = trust.verify_stream(stream, entries, lambda _e: ops.public())
    assert rep.problems == [] and rep.bad == {}


def start_ticks_of(args: dict[str, Any]) -> int:
    return int(args["start_ticks"])


def test_without_a_usable_operator_name_nothing_is_sent(redis_server: RedisServer, known: Any) -> None:
    client = redis_server.client()
    cmd = cc.build(NODE, "list", {})
    with pytest.raises(ValueError, match="no file name"):
        cc.submit(client, signing.new_key(), [cmd], timeout_s=1, known=known)
    assert client.xlen(wire.cmd_key(NODE)) == 0


# ---------------------------------------------------------------------------------------------
# The process a kill names: only as its node signed it
# ---------------------------------------------------------------------------------------------


def test_a_relabelled_process_is_not_verified(redis_server: RedisServer, node_keys: Any, known: Any,
                                              victim: Any) -> None:
    client = redis_server.client()
    snap = sealed(client, NODE, node_keys[NODE], [proc_of(victim)])
    assert cc.process_identity(client, NODE, victim.pid, known).verified
    # A Redis writer relabels the real sleep as a miner, same pid and start: the seal no longer matches.
    assert snap.system is not None and snap.system.procs is not None
    snap.system.procs[0].cmdline = "/tmp/.x/xmrig --donate-level 0"
    snap.system.procs[0].cpu_pct = 398.0
    client.set(wire.node_key(NODE), wire.encode(snap))
    ident = cc.process_identity(client, NODE, victim.pid, known)
    assert not ident.verified and "does not match its seal" in ident.verdict.text
    assert ident.proc is not None and "xmrig" in ident.words()  # what Redis claims, for a loud warning


def test_not_enrolled_and_unsealed_nodes_are_not_verified(redis_server: RedisServer, node_keys: Any,
                                                          victim: Any) -> None:
    client = redis_server.client()
    sealed(client, NODE, node_keys[NODE], [proc_of(victim)])
    ident = cc.process_identity(client, NODE, victim.pid, trust.KnownNodes())
    assert not ident.verified and ident.verdict.text == f"{NODE} is not enrolled (clustertop enrol {NODE})"
    Publisher(client, OTHER, 60.0).publish(schema.NodeSnapshot(host=OTHER, ts=time.time()))  # no key: no seal
    known = trust.KnownNodes(keys={OTHER: node_keys[OTHER].public()})
    ident = cc.process_identity(client, OTHER, victim.pid, known)
    assert not ident.verified and "published no seal" in ident.verdict.text
    assert ident.problem() is not None and "not in node-b's latest snapshot" in (ident.problem() or "")


def test_a_cmdline_prefix_is_what_survives_the_collector() -> None:
    assert cc.cmdline_prefix("python -c import sys  print(1)") == "python"
    assert cc.cmdline_prefix("postgres: writer process") == "postgres:"
    assert cc.cmdline_prefix(None) is None and cc.cmdline_prefix("") is None


# ---------------------------------------------------------------------------------------------
# An ACL without +xread: the command went out, and the caller is told exactly that
# ---------------------------------------------------------------------------------------------


def acl_user(client: Any, user: str, rules: str, password: str = "pw") -> None:
    import re

    client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}",
                           *re.findall(r"\([^)]*\)|\S+", rules))


def test_results_unreadable_after_sending_says_sent(redis_server: RedisServer, ops: Any, known: Any) -> None:
    import redis

    admin = redis_server.client()
    acl_user(admin, "operator-ops", acl.operator_rules("ops").replace(" +xread ", " "))
    client = redis.Redis.from_url(f"redis://operator-ops:pw@127.0.0.1:{redis_server.port}/0")
    cmd = cc.build(NODE, "list", {})
    with pytest.raises(cc.NotAwaited) as err:
        cc.submit(client, ops, [cmd], timeout_s=2, known=known)
    text = str(err.value)
    assert text.startswith(f"sent (command id {cmd.id}); cannot read results: NOPERM"), text
    assert text.endswith("the operator's ACL needs +xread (clustertop acl grants it)")
    assert admin.xlen(wire.cmd_key(NODE)) == 1 and admin.xlen(wire.operator_audit_key("ops")) == 1
