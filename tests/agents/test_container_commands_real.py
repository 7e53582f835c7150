"""Container stop / kill / restart / launch through the real agent command path: signed commands on a real
redis-server, judged and executed by the CommandExecutor against a real Docker Engine
(tests/support/dockerd.py), results and audit entries checked. Heavy: starts dockerd."""

from __future__ import annotations

import time

import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.collectors.base import Context
from clustertop.collectors.containers import ContainersCollector
from clustertop.collectors.containers_parse import TEMPLATE_LABEL
from clustertop.config import ConfigError
from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.wire import schema
from tests.support.dockerd import IMAGE, dockerd_fixture

dockerd = dockerd_fixture()
NODE = "node-c"
TEMPLATES = {"nap": {"image": IMAGE, "cmd": ["sleep", "{seconds}"], "params": {"seconds": "int"},
                     "memory_bytes": 32 * 2**20, "description": "sleeps"}}


@pytest.fixture
def keys(tmp_path):  # type: ignore[no-untyped-def]
    kp, pp, _ = signing.generate(str(tmp_path / "keys"), "ops")
    return {"ops": signing.load_private(kp), "ops_pub": pp}


@pytest.fixture
def make(redis_server, tmp_path, keys, dockerd):  # type: ignore[no-untyped-def]
    made = []

    def _make(control: str = "launched", read_only: bool = False, verbs: list[str] | None = None) -> CommandExecutor:
        sec = {"operator_keys": [keys["ops_pub"]], "allow_root": True}
        if verbs is not None:
            sec["verbs"] = verbs
        cfg = {"security": sec, "read_only": read_only,
               "collectors": {"containers": {"socket": dockerd.url, "control": control, "templates": TEMPLATES}}}
        ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / f"state{len(made)}"), block_ms=50)
        ex.client = redis_server.client()
        ex.ensure_group()
        made.append(ex)
        return ex

    yield _make
    for ex in made:
        ex.task_mgr.close()
        ex.containers.close()


def send(client, key, verb, args=None, params=None):  # type: ignore[no-untyped-def]
    cmd = cc.build(NODE, verb, args, params, operator="tester")
    signing.sign(cmd, key)
    cc.send(client, cmd)
    return cmd


def run(client, ex) -> schema.CommandResult:  # type: ignore[no-untyped-def]
    assert ex.poll_once() >= 1
    return [wire.decode(f[b"r"], schema.CommandResult) for _, f in client.xrange(wire.results_key(NODE))][-1]


def audits(client) -> list[schema.AuditEntry]:  # type: ignore[no-untyped-def]
    return [wire.decode(f[b"a"], schema.AuditEntry) for _, f in client.xrange(wire.node_audit_key(NODE))]


def seen(dockerd, cid: str) -> schema.Container:  # type: ignore[no-untyped-def]
    """The container as the node's collector names it (what the dashboard and CLI build commands from)."""
    got = ContainersCollector(Context(node=NODE, config={"socket": dockerd.url})).collect()
    [c] = [c for c in got.containers or [] if c.id == cid]
    return c


def test_launch_stop_restart_kill_through_the_agent(redis_server, make, keys, dockerd) -> None:  # type: ignore[no-untyped-def]
    client, ex = redis_server.client(), make()
    # launch from the template: the image, cmd and limits are the node's; only the param comes from the command
    cmd = send(client, keys["ops"], "container.launch", {"template": "nap"}, {"seconds": 600})
    res = run(client, ex)
    assert res.ok and res.id == cmd.id, res.reason
    cid = str(res.data["id"])
    insp = dockerd.inspect(cid)
    assert insp["State"]["Running"] and insp["Config"]["Cmd"] == ["sleep", "600"]
    assert insp["Config"]["Labels"][TEMPLATE_LABEL] == "nap" and insp["HostConfig"]["NetworkMode"] == "none"
    assert insp["HostConfig"]["Memory"] == 32 * 2**20 and not insp["HostConfig"]["Privileged"]
    a = audits(client)[-1]
    assert (a.action, a.result, a.actor) == ("container.launch", "ok", f"node:{NODE}")
    assert "container template 'nap'" in a.target and "operator 'tester'" in a.target
    c = seen(dockerd, cid)
    assert c.template == "nap"

    send(client, keys["ops"], "container.stop", cc.container_args(c, grace=1))
    res = run(client, ex)
    assert res.ok, res.reason
    assert dockerd.inspect(cid)["State"]["Status"] == "exited"
    assert "stopped container" in cc.result_line(res)
    assert audits(client)[-1].result == "ok" and f"container {cid[:12]}" in audits(client)[-1].target

    started = dockerd.inspect(cid)["State"]["StartedAt"]
    send(client, keys["ops"], "container.restart", cc.container_args(c, grace=1))
    res = run(client, ex)
    assert res.ok, res.reason
    assert dockerd.inspect(cid)["State"]["Running"] and dockerd.inspect(cid)["State"]["StartedAt"] != started

    send(client, keys["ops"], "container.kill", cc.container_args(c, signal="KILL"))
    res = run(client, ex)
    assert res.ok and res.data["signal"] == "KILL", res.reason
    deadline = time.monotonic() + 10
    while dockerd.inspect(cid)["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dockerd.inspect(cid)["State"]["ExitCode"] == 137
    # every action is on the node's signed, chained audit stream
    rep = trust.verify_stream(wire.node_audit_key(NODE), client.xrange(wire.node_audit_key(NODE)),
                              lambda e: ex.node_key.public())
    assert rep.entries == 4 and not rep.problems, rep.problems
    assert [e.action for e in audits(client)] == ["container.launch", "container.stop", "container.restart",
                                                   "container.kill"]
    dockerd.docker("rm", "-f", cid)


def test_refusals_name_why_and_leave_the_container_alone(redis_server, make, keys, dockerd) -> None:  # type: ignore[no-untyped-def]
    client, ex = redis_server.client(), make()
    cid = dockerd.run("handmade", "sleep", "1000")
    pod = dockerd.run("k8s_pod", "sleep", "1000", extra=("--label", "io.kubernetes.pod.uid=1234-5678"))
    try:
        c = seen(dockerd, cid)

        def refused(verb: str, args: dict, why: str, params: dict | None = None) -> None:  # type: ignore[type-arg]
            send(client, keys["ops"], verb, args, params)
            res = run(client, ex)
            assert not res.ok and res.status == "refused" and why in (res.reason or ""), res.reason
            assert audits(client)[-1].result.startswith("refused:")
            assert dockerd.inspect(cid)["State"]["Running"]

        # control = "launched": a container someone ran by hand is not this agent's to touch
        refused("container.kill", cc.container_args(c), "not launched by clustertop")
        # identity: a full id and the exact creation time, never a name or a prefix
        refused("container.kill", {"id": "handmade", "created": c.created_ts}, "full 64-hex id")
        refused("container.kill", {"id": cid[:12], "created": c.created_ts}, "full 64-hex id")
        refused("container.kill", {"id": cid}, "created required")
        refused("container.kill", {"id": cid, "created": str(c.created_ts)}, "created required")

        ex_all = make(control="all")
        refused_all = {"id": cid, "created": (c.created_ts or 0) - 1}
        send(client, keys["ops"], "container.kill", refused_all)
        res = run(client, ex_all)
        assert not res.ok and "not the container the command names" in (res.reason or ""), res.reason
        send(client, keys["ops"], "container.kill", cc.container_args(seen(dockerd, pod)))
        res = run(client, ex_all)
        assert not res.ok and "delete the pod instead" in (res.reason or ""), res.reason
        assert dockerd.inspect(pod)["State"]["Running"]
        send(client, keys["ops"], "container.kill", cc.container_args(c, signal="STOP"))
        res = run(client, ex_all)
        assert not res.ok and "signal STOP not allowed" in (res.reason or "")

        # a name taken over: the old container removed, a new one under its name; the command names the old
        dockerd.docker("rm", "-f", "handmade")
        new = dockerd.run("handmade", "sleep", "1000")
        send(client, keys["ops"], "container.kill", cc.container_args(c))
        res = run(client, ex_all)
        assert not res.ok and "already removed" in (res.reason or ""), res.reason
        assert dockerd.inspect(new)["State"]["Running"]

        # launch: unknown template, bad params (a dash would reach the program as an option)
        send(client, keys["ops"], "container.launch", {"template": "nope"})
        assert "unknown container template" in (run(client, ex).reason or "")
        send(client, keys["ops"], "container.launch", {"template": "nap"}, {"seconds": -5})
        assert "must not start with '-'" in (run(client, ex).reason or "")
        send(client, keys["ops"], "container.launch", {"template": "nap"}, {"seconds": 1, "image": "evil"})
        assert "unknown param" in (run(client, ex).reason or "")
        # read-only agents and verbs not allowed
        send(client, keys["ops"], "container.launch", {"template": "nap"}, {"seconds": 5})
        assert "read-only" in (run(client, make(read_only=True)).reason or "")
        send(client, keys["ops"], "container.launch", {"template": "nap"}, {"seconds": 5})
        assert "not allowed on this node" in (run(client, make(verbs=["signal"])).reason or "")
        assert not [x for x in dockerd.docker("ps", "-a", "--format", "{{.Names}}").split() if x.startswith("ct-")]
    finally:
        dockerd.docker("rm", "-f", "handmade", "k8s_pod", check=False)


def test_operator_submit_round_trip_with_verified_answer(redis_server, make, keys, dockerd) -> None:  # type: ignore[no-untyped-def]
    """The operator's side (control.commands.submit, as the CLI and dashboard use it) against the executor
    in its own thread: the operator's audit entry, the node's signed answer verified against its key."""
    import threading

    client, ex = redis_server.client(), make(control="all")
    cid = dockerd.run("victim", "sleep", "1000")
    stop = threading.Event()
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    try:
        known = trust.KnownNodes()
        known.keys[NODE] = ex.node_key.public()
        cmd = cc.build(NODE, "container.stop", cc.container_args(seen(dockerd, cid), grace=0))
        got = cc.submit(client, keys["ops"], [cmd], timeout_s=30, known=known)
        ans = got[cmd.id]
        assert ans is not None and ans.verdict.ok and ans.result.ok, ans
        assert cc.answer_line(ans, NODE).startswith(f"{NODE}: stopped container victim")
        assert dockerd.inspect(cid)["State"]["Status"] == "exited"
        op = [wire.decode(f[b"a"], schema.AuditEntry) for _, f in client.xrange(wire.operator_audit_key("ops"))]
        assert op[-1].action == "container.stop" and f"container {cid[:12]} victim" in op[-1].target
    finally:
        stop.set()
        t.join(10)
        dockerd.docker("rm", "-f", "victim", check=False)


def test_bad_container_templates_stop_the_executor_naming_the_key(redis_server, tmp_path, keys, dockerd) -> None:  # type: ignore[no-untyped-def]
    def build(templates: dict) -> None:  # type: ignore[type-arg]
        CommandExecutor(redis_server.client, NODE, {"file": "agent.toml", "security": {"operator_keys": [keys["ops_pub"]]},
                                                    "collectors": {"containers": {"templates": templates}}},
                        state_dir=str(tmp_path / "s"))

    with pytest.raises(ConfigError, match=r"\[collectors.containers.templates.t\] cmd: placeholder \{x\} has no param"):
        build({"t": {"image": IMAGE, "cmd": ["sleep", "{x}"]}})
    with pytest.raises(ConfigError, match=r"\[collectors.containers.templates.t\] cmd: runs a shell"):
        build({"t": {"image": IMAGE, "cmd": ["sh", "-c", "{x}"], "params": {"x": "str"}}})
    with pytest.raises(ConfigError, match=r"\[collectors.containers.templates.t.params\] x"):
        build({"t": {"image": IMAGE, "cmd": ["sleep", "{x}"], "params": {"x": "complex"}}})
