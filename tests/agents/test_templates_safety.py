"""Template safety: values that read as options, templates that run a shell, tasks that would run as
root - each refused with its reason, through the real config loader and the executor, on real processes.

Found in review: an int param "-1" reached `sleep` as an option; a template `sh -c "echo {msg}"` ran
`hi; id` as root with no warning.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess

import pytest

from clustertop.agents.config import load_config
from clustertop.agents.tasks import ParamError, parse_templates, runs_shell
from clustertop.config import ConfigError
from tests.agents.test_commands import keys, make, results, run_one, send  # noqa: F401 - fixtures
from tests.agents.test_commands_tasks import wait_task

IS_ROOT = os.geteuid() == 0


def launch(client, ex, key, template, **params):  # type: ignore[no-untyped-def]
    send(client, key, verb="launch", args={"template": template}, params=params)
    run_one(ex)
    return results(client)[-1]


# ---------------------------------------------------------------------------------------------
# Values that start with "-"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,value", [("int", "-1"), ("int", -1), ("float", "-0.5"), ("float", -2),
                                        ("str", "--help"), ("str", "-")])
def test_typed_values_may_not_start_with_a_dash(kind, value):
    [tpl] = parse_templates({"t": {"argv": ["sleep", "{x}"], "params": {"x": kind}}}, None).values()
    with pytest.raises(ParamError, match=r"param x: .* must not start with '-' .*allow_dash = true"):
        tpl.render({"x": value})
    [ok] = parse_templates({"t": {"argv": ["sleep", "{x}"], "params": {"x": {"type": kind, "allow_dash": True}}}},
                           None).values()
    assert ok.render({"x": value})[1].startswith("-")


def test_a_dash_default_or_choice_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"agent.toml: \[templates.t.params\] n: .*must not start with '-'"):
        parse_templates({"t": {"argv": ["sleep", "{n}"], "params": {"n": {"type": "int", "default": -1}}}},
                        "agent.toml")


def test_negative_int_never_reaches_the_program(redis_server, make, keys, tmp_path):  # noqa: F811
    """The review's case, end to end: sleep {seconds} with seconds = "-1" is refused at launch, nothing runs."""
    client, ex = redis_server.client(), make(templates={"nap": {"argv": ["sleep", "{seconds}"],
                                                                "params": {"seconds": "int"}}})
    res = launch(client, ex, keys["ops"], "nap", seconds="-1")
    assert res.status == "refused" and "param seconds: '-1' must not start with '-'" in res.reason, res.reason
    assert ex.tasks() == []


# ---------------------------------------------------------------------------------------------
# Templates that run a shell
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["sh", "-c", "echo {msg}"],
    ["/bin/bash", "-lc", "echo {msg}"],
    ["dash", "-e", "-c", "echo {msg}"],
    ["/usr/bin/env", "zsh", "-c", "echo {msg}"],
    ["env", "-i", "PATH=/bin", "ksh", "-c", "echo {msg}"],
    ["env", "-S", "sh -c", "echo {msg}"],
    ["busybox", "sh", "-c", "echo {msg}"],
    ["fish", "--command", "echo {msg}"],
    ["tcsh", "-c", "echo {msg}"],
])
def test_a_shell_template_is_refused_at_load(argv, tmp_path):
    assert runs_shell(argv)
    with pytest.raises(ConfigError, match=r"\[templates.greet\] argv: runs a shell"):
        parse_templates({"greet": {"argv": argv, "params": {"msg": "str"}}}, "agent.toml")
    # ... and through the agent's real config loader: the agent refuses to start, naming the key.
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nnode = "n"\n[templates.greet]\nargv = {argv!r}\nparams = {{ msg = "str" }}\n'
                   .replace("'", '"'))
    with pytest.raises(ConfigError, match=rf"{cfg}: \[templates.greet\] argv: runs a shell"):
        load_config(str(cfg), env={})


@pytest.mark.parametrize("argv", [["sleep", "{n}"], ["bash", "script.sh", "{n}"], ["sh", "/opt/run.sh"],
                                  ["python3", "-c", "print(1)"], ["env", "FOO=1", "python3", "-c", "x"]])
def test_programs_that_are_no_shell_with_c_load(argv):
    assert not runs_shell(argv)


def test_shell_true_loads_with_a_loud_warning_and_runs(redis_server, make, keys, caplog):  # noqa: F811
    tpl = {"greet": {"argv": ["sh", "-c", 'echo "$0"', "{msg}"], "params": {"msg": "str"}, "shell": True}}
    with caplog.at_level(logging.WARNING, logger="clustertop.tasks"):
        client, ex = redis_server.client(), make(templates=tpl)
    assert any("runs a shell" in r.getMessage() and "shell = true" in r.getMessage() for r in caplog.records)
    res = launch(client, ex, keys["ops"], "greet", msg="hi; id")
    assert res.ok, res.reason
    wait_task(ex, res.data["task"], "exited")
    assert ex.task_mgr.tail(res.data["task"], 1)[1] == "hi; id"  # "$0": the value, not code


# ---------------------------------------------------------------------------------------------
# Who a task runs as
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="the agent runs as root only when the tests do")
def test_template_without_user_refused_when_the_agent_is_root(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates={"nap": {"argv": ["sleep", "1"]}},
                                             security={"allow_root": False})
    res = launch(client, ex, keys["ops"], "nap")
    assert res.status == "refused" and "would run as root" in res.reason and "no user" in res.reason, res.reason
    assert "[security] allow_root is off" in res.reason and ex.tasks() == []


def test_template_user_root_refused_without_allow_root(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates={"nap": {"argv": ["sleep", "1"], "user": "root"}},
                                             security={"allow_root": False})
    res = launch(client, ex, keys["ops"], "nap")
    assert res.status == "refused" and "its user 'root' is root" in res.reason, res.reason
    assert ex.tasks() == []


def test_unknown_user_is_refused(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates={"nap": {"argv": ["sleep", "1"], "user": "no-such-user-x"}})
    res = launch(client, ex, keys["ops"], "nap")
    assert res.status == "refused" and "no such user 'no-such-user-x'" in res.reason, res.reason


@pytest.mark.skipif(not IS_ROOT, reason="allow_root matters for an agent running as root")
def test_allow_root_lets_a_root_template_run(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates={"who": {"argv": ["id", "-u"]}},
                                             security={"allow_root": True})
    res = launch(client, ex, keys["ops"], "who")
    assert res.ok, res.reason
    wait_task(ex, res.data["task"], "exited")
    assert ex.task_mgr.tail(res.data["task"], 1)[1] == "0"


def _unprivileged_user() -> str:
    """A real non-root account: "clustertop-task" (created with useradd when possible), else nobody."""
    try:
        pwd.getpwnam("clustertop-task")
        return "clustertop-task"
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is not None:
        r = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            "clustertop-task"], capture_output=True, check=False)
        if r.returncode == 0:
            return "clustertop-task"
    return "nobody"


@pytest.mark.skipif(not IS_ROOT, reason="switching to another user needs root")
def test_a_root_agent_runs_the_template_as_its_user_without_allow_root(redis_server, make, keys):  # noqa: F811
    user = _unprivileged_user()
    pw = pwd.getpwnam(user)
    client, ex = redis_server.client(), make(templates={"who": {"argv": ["id"], "user": user}},
                                             security={"allow_root": False})
    res = launch(client, ex, keys["ops"], "who")
    assert res.ok, res.reason
    wait_task(ex, res.data["task"], "exited")
    out = ex.task_mgr.tail(res.data["task"], 1)[1]
    assert out.startswith(f"uid={pw.pw_uid}({user}) gid={pw.pw_gid}("), out
