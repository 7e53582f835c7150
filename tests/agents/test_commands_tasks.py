"""Templates and launched tasks: typed params, argv without a shell, captured and bounded output,
stop reaching children, timeouts - real processes, through the executor on a real redis-server."""

from __future__ import annotations

import json
import os
import pwd
import sys
import time

import psutil
import pytest

from clustertop.agents.tasks import (
    BoundedLog,
    ParamError,
    TaskManager,
    detect_systemd,
    parse_templates,
    scope_command,
)
from clustertop.config import ConfigError
from clustertop.control import commands as cc
from clustertop.wire import schema
from tests.agents.test_commands import NODE, keys, make, results, run_one, send  # noqa: F401 - fixtures

PY = sys.executable

TEMPLATES = {
    # Writes its argv (after the script) as JSON: shows exactly what the program received.
    "argv": {"argv": [PY, "-c", "import json,sys; open(sys.argv[1],'w').write(json.dumps(sys.argv[2:]))",
                      "{out}", "{name}", "--count={n}", "{flag}"],
             "params": {"out": {"type": "str", "allow_dash": False}, "name": "str",
                        "n": {"type": "int", "default": 3}, "flag": {"type": "bool", "default": False}}},
    "lines": {"argv": [PY, "-u", "-c", "import sys\nfor i in range(int(sys.argv[1])): print('line', i)", "{n}"],
              "params": {"n": "int"}},
    "tree": {"argv": [PY, "-c", "import subprocess,time; subprocess.Popen(['sleep','300']); print('up', flush=True);"
                      " time.sleep(300)"]},
    "env": {"argv": [PY, "-c", "import os,json; print(json.dumps(dict(os.environ)))"],
            "env": {"MODEL": "resnet"}, "limits": {"memory_max": "1G", "cpu_quota": "50%"}},
    "slow": {"argv": ["sleep", "300"], "limits": {"timeout_s": 0.5}},
    "pick": {"argv": ["echo", "{size}"], "params": {"size": {"type": "str", "choices": ["s", "m"],
                                                              "default": "s"}}},
}


def wait_task(ex, task_id, state=None, timeout=20.0) -> schema.Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [t] = [t for t in ex.tasks() if t.id == task_id]
        if (state is None and t.state != "running") or t.state == state:
            return t
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still {t.state}")


def launch(client, ex, key, template, **params):
    send(client, key, verb="launch", args={"template": template}, params=params)
    run_one(ex)
    return results(client)[-1]


def test_param_values_stay_one_literal_argv_element(redis_server, make, keys, tmp_path):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    out = tmp_path / "argv.json"
    evil = '"; rm -rf / #'
    res = launch(client, ex, keys["ops"], "argv", out=str(out), name=evil + " $(touch pwned) `id`", flag="true")
    assert res.ok, res.reason
    wait_task(ex, res.data["task"], "exited")
    assert json.loads(out.read_text()) == [evil + " $(touch pwned) `id`", "--count=3", "true"]
    assert not (tmp_path / "pwned").exists() and not os.path.exists("/pwned")
    [task] = res.tasks
    assert task.argv[3:] == [str(out), evil + " $(touch pwned) `id`", "--count=3", "true"]


def test_placeholder_text_in_a_value_is_not_expanded_again():
    [tpl] = parse_templates({"t": {"argv": ["x", "{a}", "{b}"], "params": {"a": "str", "b": "str"}}}, None).values()
    assert tpl.render({"a": "{b}", "b": "\\1"}) == ["x", "{b}", "\\1"]


@pytest.mark.parametrize("params,why", [
    ({"out": "/tmp/x", "name": "a", "n": "three"}, "param n: expected int"),
    ({"out": "/tmp/x", "name": "a", "n": 1.5}, "param n: expected int"),
    ({"out": "/tmp/x", "name": "a", "flag": "maybe"}, "param flag: expected bool"),
    ({"out": "--output=/etc/passwd", "name": "a"}, "must not start with '-'"),
    ({"name": "a"}, "param out: required"),
    ({"out": "/tmp/x", "name": "a", "shell": "sh"}, "unknown param(s) shell"),
    ({"out": "/tmp/x", "name": "a\x00b"}, "NUL byte"),
])
def test_bad_params_are_refused(redis_server, make, keys, params, why):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "argv", **params)
    assert res.status == "refused" and "bad params" in res.reason and why in res.reason, res.reason
    assert ex.tasks() == []


def test_choices_are_enforced(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "pick", size="xl")
    assert res.status == "refused" and "not one of" in res.reason


def test_unknown_template_is_refused(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "rm-rf")
    assert res.status == "refused" and "unknown template 'rm-rf'" in res.reason


def test_output_is_captured_and_tailed(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "lines", n="200")
    assert res.ok, res.reason
    tid = res.data["task"]
    t = wait_task(ex, tid, "exited")
    assert t.exit_code == 0 and t.ended_ts >= t.started_ts
    send(client, keys["ops"], verb="tail", args={"task": tid, "lines": 3})
    run_one(ex)
    tail = results(client)[-1]
    assert tail.ok and tail.output == "line 197\nline 198\nline 199"
    send(client, keys["ops"], verb="list")
    run_one(ex)
    listed = results(client)[-1]
    assert [x.id for x in listed.tasks] == [tid] and listed.tasks[0].state == "exited"
    assert listed.tasks[0].log_bytes == len("".join(f"line {i}\n" for i in range(200)))


def test_log_is_bounded_and_keeps_the_newest_output(tmp_path):
    mgr = TaskManager(str(tmp_path), log_max_bytes=64 * 1024, use_systemd=False)
    [tpl] = parse_templates({"flood": {"argv": [PY, "-c", "import sys\nfor i in range(100000): "
                                                          "sys.stdout.write(f'row {i:06d} ' + 'x' * 40 + '\\n')"]}},
                            None).values()
    task = mgr.launch(tpl, {}, allow_root=True)  # CI runs as root: see test_templates_safety.py for the refusal
    deadline = time.monotonic() + 30
    while mgr.tasks()[0].state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    # The output was 5 MB; on disk stays under the budget, and the newest lines are there.
    [t] = mgr.tasks()
    assert t.exit_code == 0 and t.log_bytes <= 64 * 1024
    files = os.listdir(os.path.dirname(task.log_path))
    # the log and its one rotation, beside the task's record and its output FIFO (a FIFO holds no data on disk)
    assert sorted(files) == ["output.log", "output.log.1", "output.pipe", "task.json"]
    _, text = mgr.tail(task.id, 2)
    assert text.splitlines()[-1].startswith("row 099999 ")


def test_bounded_log_rotation_unit(tmp_path):
    log = BoundedLog(str(tmp_path / "o.log"), max_bytes=2048)
    for i in range(100):
        log.write(f"{i:04d}\n".encode() * 10)
    assert log.total_bytes() <= 2048
    assert log.tail(1) == "0099"
    assert log.tail(0) == ""


def test_stop_kills_the_whole_process_group(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "tree")
    assert res.ok, res.reason
    task = res.tasks[0]
    assert task.pgid == task.pid  # own process group
    deadline = time.monotonic() + 10
    while not psutil.Process(task.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    [child] = psutil.Process(task.pid).children()
    assert os.getpgid(child.pid) == task.pgid
    send(client, keys["ops"], verb="stop", args={"task": task.id})
    run_one(ex)
    assert results(client)[-1].ok
    t = wait_task(ex, task.id)
    assert t.state == "killed" and t.exit_code == -15
    child.wait(10)  # raises if the child outlived the stop
    # Stopping again: nothing left to signal.
    send(client, keys["ops"], verb="stop", args={"task": task.id})
    run_one(ex)
    assert "no process left" in results(client)[-1].reason


def test_stop_of_an_unknown_task_is_refused(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    send(client, keys["ops"], verb="stop", args={"task": "feedfacecafe"})
    run_one(ex)
    res = results(client)[-1]
    assert res.status == "refused" and "no task 'feedfacecafe'" in res.reason


def test_timeout_stops_the_task(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "slow")
    t = wait_task(ex, res.data["task"])
    assert t.state == "killed" and t.note == "stopped: timeout_s exceeded"


def test_task_environment_is_small_and_limits_are_reported(redis_server, make, keys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CLUSTERTOP_REDIS_PASSWORD", "hunter2")
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    res = launch(client, ex, keys["ops"], "env")
    tid = res.data["task"]
    wait_task(ex, tid, "exited")
    env = json.loads(ex.task_mgr.tail(tid, 1)[1])
    assert env["MODEL"] == "resnet" and "CLUSTERTOP_REDIS_PASSWORD" not in env and "PATH" in env
    t = [t for t in ex.tasks() if t.id == tid][0]
    if t.unit is None:  # no usable systemd here: the task says the limits were not applied, and why
        assert t.note.startswith("memory_max/cpu_quota not enforced: ")
    else:
        assert t.unit == f"clustertop-task-{tid}"


@pytest.mark.skipif(os.geteuid() != 0, reason="running a task as another user needs root")
def test_template_user_runs_the_task_as_that_user(redis_server, make, keys, tmp_path):  # noqa: F811
    tpl = {"who": {"argv": ["id"], "user": "nobody"}}  # /usr/bin/id: nobody cannot read root's Python
    client, ex = redis_server.client(), make(templates=tpl, security={"allow_root": True})
    res = launch(client, ex, keys["ops"], "who")
    assert res.ok, res.reason
    wait_task(ex, res.data["task"], "exited")
    pw = pwd.getpwnam("nobody")
    out = ex.task_mgr.tail(res.data["task"], 1)[1]
    # Root's supplementary groups are dropped: the only group is nobody's own.
    assert out.startswith(f"uid={pw.pw_uid}(nobody) gid={pw.pw_gid}(") and out.count("groups=") == 1
    assert out.split("groups=")[1] == out.split(" gid=")[1].split(" ")[0]


def test_multi_node_job_carries_job_and_rank(redis_server, make, keys):  # noqa: F811
    client = redis_server.client()
    exs = {n: make(templates=TEMPLATES, node=n) for n in ("n1", "n2")}
    cmds = cc.launch_commands("lines", ["n1", "n2"], {"n": 1}, operator="tester")
    got = {}
    for cmd in cmds:
        from clustertop.control import signing

        signing.sign(cmd, keys["ops"])
        cc.send(client, cmd)
        run_one(exs[cmd.node])
        got[cmd.node] = results(client, cmd.node)[-1].tasks[0]
    assert got["n1"].job == got["n2"].job and got["n1"].job
    assert (got["n1"].rank, got["n2"].rank) == (0, 1)


@pytest.mark.parametrize("table,msg", [
    ({"argv": ["x"], "shell": "yes"}, r"\[templates.t\] shell: expected bool"),
    ({"argv": ["sh", "-c", "echo {m}"], "params": {"m": "str"}}, r"\[templates.t\] argv: runs a shell"),
    ({"argv": []}, r"\[templates.t\] argv: required"),
    ({"argv": ["x", "{y}"]}, r"placeholder \{y\} has no param"),
    ({"argv": ["x"], "params": {"y": "complex"}}, r"unknown type 'complex'"),
    ({"argv": ["x"], "params": {"y": {"type": "int", "default": "ten"}}}, r"expected int"),
    ({"argv": ["x"], "limits": {"memory_max": "lots"}}, r"\[templates.t.limits\] memory_max"),
    ({"argv": ["x"], "limits": {"cpu_quota": "2"}}, r"cpu_quota: expected a percentage"),
    ({"argv": ["x"], "limits": {"nice": 5}}, r"\[templates.t.limits\] nice: unknown key"),
    ({"argv": ["x"], "env": {"A": 1}}, r"env.A: expected str"),
])
def test_template_config_errors_name_file_and_key(table, msg):
    with pytest.raises(ConfigError, match=r"agent.toml: .*" + msg):
        parse_templates({"t": table}, "agent.toml")


def test_param_conversion_unit():
    [tpl] = parse_templates({"t": {"argv": ["{f}", "{b}", "{s}"], "params": {
        "f": "float", "b": {"type": "bool", "default": True},
        "s": {"type": "str", "pattern": "[a-z]+", "allow_dash": True}}}}, None).values()
    assert tpl.render({"f": "1e-3", "s": "abc"}) == ["0.001", "true", "abc"]
    with pytest.raises(ParamError, match="finite"):
        tpl.render({"f": "nan", "s": "abc"})
    with pytest.raises(ParamError, match="does not match"):
        tpl.render({"f": 1, "s": "-abc"})


def test_systemd_scope_command_carries_the_limits():
    [tpl] = parse_templates({"t": {"argv": ["train", "{x}"], "params": {"x": "str"}, "user": "alice",
                                   "limits": {"memory_max": "4G", "cpu_quota": "200%"}}}, None).values()
    assert scope_command(["systemd-run", "--scope"], "clustertop-task-ab", tpl, ["train", "a b"]) == [
        "systemd-run", "--scope", "--unit=clustertop-task-ab", "--property=MemoryMax=4G",
        "--property=CPUQuota=200%", "--uid=alice", "--", "train", "a b"]


def test_systemd_detection_gives_a_reason_when_unusable():
    prefix, why = detect_systemd()
    if not os.path.isdir("/run/systemd/system"):  # containers, CI: not PID 1
        assert prefix is None and "not the init system" in why or "not installed" in why
    else:
        assert (prefix is None) == (why != "systemd scope")
