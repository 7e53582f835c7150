"""The demo's job control end to end: the dashboard's command client (control.commands.submit) signs with
the demo's ephemeral operator key, the simulated agents answer on their cmd streams with the real
agent's verifier (agents.commands.CommandExecutor), and the simulated process really ends.

The store is the demo's own embedded one (fakeredis: what `clustertop demo` runs on); the simulator
thread is the real one, polling the simulated agents between ticks.
"""

from __future__ import annotations

import os
import time

import msgspec
import pytest

from clustertop import wire
from clustertop.cli import modes
from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from clustertop.sim.agents import TEMPLATES
from clustertop.wire import schema

#: How long a command's effect may take to show in the demo's reads: a bound that turns a hang into a failure, not
#: a timing. Its agents tick once a second, but with the whole suite on two cores a tick can come 5 s late (once,
#: a stopped container still showed running after 5 s).
SEEN_WITHIN_S = 30.0


def _job_proc(backend: modes.Backend) -> tuple[str, schema.GpuProc]:
    state = Reader(backend.client_factory(), wants=Wants()).read()
    for n in state.nodes:
        for g in (n.snap.gpus if n.snap else []):
            for p in g.procs or []:
                if p.start_ticks is not None and p.uid is not None and p.uid >= 1000:
                    return n.host, p
    raise AssertionError("no simulated training process with an identity in the demo")


def _still_there(backend: modes.Backend, host: str, pid: int) -> bool:
    snap = Reader(backend.client_factory(), wants=Wants()).read().node(host)
    assert snap is not None and snap.snap is not None
    return any(p.pid == pid for g in snap.snap.gpus for p in (g.procs or []))


def test_demo_operator_key_kills_a_simulated_job_verified_and_audited(demo: modes.Backend) -> None:
    assert demo.operator_key is not None and os.stat(demo.operator_key).st_mode & 0o077 == 0
    key = signing.load_private(demo.operator_key)
    host, proc = _job_proc(demo)
    cmd = cc.build(host, "signal", {"pid": proc.pid, "start_ticks": proc.start_ticks, "uid": proc.uid,
                                    "signal": "TERM"}, operator="demo-test")
    client = demo.client_factory()
    answers = cc.submit(client, key, [cmd], timeout_s=10, known=demo.known, where="test")
    ans = answers[cmd.id]
    assert ans is not None, "the simulated agent did not answer"
    assert ans.result.status == "done", ans.result.reason
    assert ans.verdict.ok and ans.ok  # signed by the simulated node's enrolled key
    # The job is gone from the node's next snapshots (its GPUs free).
    deadline = time.time() + SEEN_WITHIN_S
    while _still_there(demo, host, proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _still_there(demo, host, proc.pid)
    # The node's own audit trail has it, signed by the node.
    stream = wire.node_audit_key(host)
    entries = client.xrange(stream)
    report = trust.verify_stream(stream, entries, lambda _e: demo.known.keys[host])
    assert report.entries >= 1 and report.problems == []
    mine = [e for _i, f in entries if (e := trust._decode_entry(f)) is not None and e.command_id == cmd.id]
    assert len(mine) == 1 and mine[0].action == "signal" and mine[0].actor == f"node:{host}"
    assert mine[0].result == "ok" and "demo-test" in mine[0].target


def test_simulated_agent_refuses_a_foreign_key_and_a_stale_identity(demo: modes.Backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host, proc = _job_proc(demo)
    client = demo.client_factory()
    stranger = signing.load_private(signing.generate(str(tmp_path), "mallory")[0])  # not the demo's operator
    cmd = cc.build(host, "signal", {"pid": proc.pid, "start_ticks": proc.start_ticks, "uid": proc.uid})
    ans = cc.submit(client, stranger, [cmd], timeout_s=10, known=demo.known, where="test")[cmd.id]
    assert ans is not None and ans.result.status == "refused" and not ans.ok
    assert _still_there(demo, host, proc.pid)
    key = signing.load_private(demo.operator_key or "")
    cmd = cc.build(host, "signal", {"pid": proc.pid, "start_ticks": proc.start_ticks + 1, "uid": proc.uid})
    ans = cc.submit(client, key, [cmd], timeout_s=10, known=demo.known, where="test")[cmd.id]
    assert ans is not None and ans.result.status == "refused" and "pid reused" in (ans.result.reason or "")
    assert _still_there(demo, host, proc.pid)


def test_demo_launch_starts_a_simulated_training_run(demo: modes.Backend) -> None:
    key = signing.load_private(demo.operator_key or "")
    client = demo.client_factory()
    # The towers advertise what their simulated agents launch (the dashboard's launcher lists it).
    state = Reader(client, wants=Wants()).read()
    tower = state.node("gpu01")
    assert tower is not None and tower.snap is not None
    assert [t.name for t in tower.snap.templates or []] == sorted(TEMPLATES)
    arm = state.node("arm01")
    assert arm is not None and arm.snap is not None and arm.snap.templates is None
    cmd = cc.build("gpu01", "launch", {"template": "nope"})
    ans = cc.submit(client, key, [cmd], timeout_s=10, known=demo.known, where="test")[cmd.id]
    assert ans is not None and ans.result.status == "refused" and "unknown template" in (ans.result.reason or "")
    # Some tower has an idle GPU at some point; ask each until one takes it.
    for host in [f"gpu{i:02d}" for i in range(1, 6)]:
        cmd = cc.build(host, "launch", {"template": "train"})
        ans = cc.submit(client, key, [cmd], timeout_s=10, known=demo.known, where="test")[cmd.id]
        assert ans is not None and ans.verdict.ok
        if ans.result.status == "done":
            pid = ans.result.data["pid"]
            deadline = time.time() + SEEN_WITHIN_S
            while not _still_there(demo, host, pid) and time.time() < deadline:
                time.sleep(0.1)
            assert _still_there(demo, host, pid)
            return
        assert "idle GPU" in (ans.result.reason or "")
    pytest.skip("every simulated GPU was busy at each ask")


def test_demo_operator_dir_is_removed_at_exit() -> None:
    backend = modes.start_demo(seed=5, nodes=3, interval_s=0.2, prefill_s=10)
    path = backend.operator_key
    assert path is not None and os.path.exists(path)
    backend.close()
    assert not os.path.exists(os.path.dirname(path))


def _containers(backend: modes.Backend, host: str) -> list[schema.Container]:
    node = Reader(backend.client_factory(), wants=Wants()).read().node(host)
    assert node is not None and node.snap is not None and node.snap.containers is not None
    return node.snap.containers.containers or []


def test_demo_container_commands_act_on_the_simulated_engine(demo: modes.Backend) -> None:
    """stop / restart / launch on a tower's simulated containers through the real ContainerControl: the same
    identity check (full id + creation time), node-signed answers, and the next read shows the effect."""
    key = signing.load_private(demo.operator_key or "")
    client = demo.client_factory()

    def send(node: str, verb: str, args: dict[str, object], params: dict[str, object] | None = None) -> cc.Answer:
        cmd = cc.build(node, verb, args, params, operator="demo-test")
        ans = cc.submit(client, key, [cmd], timeout_s=10, known=demo.known, where="test")[cmd.id]
        assert ans is not None and ans.verdict.ok, "no answer signed by the simulated node"
        return ans

    listed = _containers(demo, "gpu02")
    assert {c.image.split(":")[0] for c in listed if c.image} == {"quay.io/jupyter/pytorch-notebook",
                                                                  "nvcr.io/nvidia/tritonserver"}
    c = next(c for c in listed if c.name == "triton-embed")
    assert c.state == "running" and c.created_ts is not None and c.pid
    # The wrong creation time names another container: refused, nothing stopped.
    ans = send("gpu02", "container.stop", cc.container_args(msgspec.structs.replace(c, created_ts=c.created_ts + 1),
                                                            grace=10))
    assert ans.result.status == "refused" and "not the container the command names" in (ans.result.reason or "")
    ans = send("gpu02", "container.stop", cc.container_args(c, grace=10))
    assert ans.ok and ans.result.data["id"] == c.id, ans.result.reason
    deadline = time.time() + SEEN_WITHIN_S
    while next(x for x in _containers(demo, "gpu02") if x.id == c.id).state != "exited":
        assert time.time() < deadline, "the stopped container still running in the next reads"
        time.sleep(0.1)
    stopped = next(x for x in _containers(demo, "gpu02") if x.id == c.id)
    assert stopped.exit_code == 0 and stopped.status and stopped.status.startswith("Exited (0)")
    ans = send("gpu02", "container.restart", cc.container_args(stopped, grace=10))
    assert ans.ok, ans.result.reason
    ans = send("gpu02", "container.launch", {"template": "notebook"}, {"port": 8890})
    assert ans.ok and ans.result.data["template"] == "notebook", ans.result.reason
    deadline = time.time() + SEEN_WITHIN_S
    while not any(x.id == ans.result.data["id"] and x.state == "running" for x in _containers(demo, "gpu02")):
        assert time.time() < deadline, "the launched container not in the next reads"
        time.sleep(0.1)
    assert any(x.template == "notebook" for x in _containers(demo, "gpu02"))
    # An ARM board has no container engine: said, not pretended.
    ans = send("arm01", "container.stop", cc.container_args(c, grace=10))
    assert ans.result.status == "refused" and "no container engine" in (ans.result.reason or ""), ans.result.reason
    # The node's own audit trail has them, signed by the node.
    stream = wire.node_audit_key("gpu02")
    report = trust.verify_stream(stream, client.xrange(stream), lambda _e: demo.known.keys["gpu02"])
    assert report.problems == []
    got = [e.action for _i, f in client.xrange(stream) if (e := trust._decode_entry(f)) is not None]
    assert {"container.stop", "container.restart", "container.launch"} <= set(got)
