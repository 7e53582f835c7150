"""Tasks outlive the agent: after a restart they are listed, tailed, stopped and timed out as before.

Found in review: after an agent restart, earlier tasks could not be stopped and their timeout_s no longer
fired. Real processes throughout: a restart is an executor dropped and a new one built on the same state
dir, and (the real thing) a process that launched tasks SIGKILLed and a new TaskManager taking over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from clustertop.agents.tasks import RECORD, TaskManager, parse_templates
from tests.agents.test_commands import keys, make, results, run_one, send  # noqa: F401 - fixtures
from tests.agents.test_commands_tasks import wait_task
from tests.conftest import ROOT

PY = sys.executable
# Prints a numbered line every 0.1 s, unbuffered: the numbers show which lines came after a restart.
TALK = [PY, "-u", "-c", "import itertools,time\nfor i in itertools.count(): print('tick', i); time.sleep(0.1)"]
TEMPLATES = {
    "talk": {"argv": TALK},
    "slow": {"argv": ["sleep", "300"], "limits": {"timeout_s": 3}},
}


def _ticks(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("tick ")]


def _until(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _command(client, ex, key, verb, **args):  # type: ignore[no-untyped-def]
    send(client, key, verb=verb, args=args)
    run_one(ex)
    return results(client)[-1]


def test_tasks_survive_an_executor_restart(redis_server, make, keys, tmp_path):  # noqa: F811
    client, ex1 = redis_server.client(), make(templates=TEMPLATES)
    talk = _command(client, ex1, keys["ops"], "launch", template="talk")
    slow = _command(client, ex1, keys["ops"], "launch", template="slow")
    assert talk.ok and slow.ok, (talk.reason, slow.reason)
    talk_pid, slow_pid = talk.data["pid"], slow.data["pid"]
    tid, sid = talk.data["task"], slow.data["task"]
    assert _until(lambda: len(_ticks(ex1.task_mgr.tail(tid, 5)[1])) >= 3)
    before = max(_ticks(ex1.task_mgr.tail(tid, 5)[1]))

    # The agent goes away: nobody reads the task's output, its timers are gone with it.
    ex1.task_mgr.close()
    time.sleep(1.0)
    assert psutil.Process(talk_pid).status() != psutil.STATUS_ZOMBIE  # writing on, no SIGPIPE

    ex2 = make(templates=TEMPLATES)  # same state dir
    listed = _command(client, ex2, keys["ops"], "list")
    assert {(t.id, t.pid, t.state) for t in listed.tasks} == {(tid, talk_pid, "running"), (sid, slow_pid, "running")}
    # The output written while no agent read it, and after, is all there, in order.
    assert _until(lambda: max(_ticks(ex2.task_mgr.tail(tid, 1)[1]) or [0]) > before + 15)
    tail = _command(client, ex2, keys["ops"], "tail", task=tid, lines=1000)
    got = _ticks(tail.output or "")
    assert got == list(range(got[0], got[-1] + 1)) and got[0] <= before < got[-1]

    stopped = _command(client, ex2, keys["ops"], "stop", task=tid)
    assert stopped.ok, stopped.reason
    t = wait_task(ex2, tid)
    assert t.state == "killed"
    assert _until(lambda: not psutil.pid_exists(talk_pid) or psutil.Process(talk_pid).status() == "zombie")

    # The slow task's timeout_s (3 s from its launch, before the restart) fires under the new executor.
    s = wait_task(ex2, sid)
    assert s.state == "killed" and s.note == "stopped: timeout_s exceeded"
    assert time.time() - s.started_ts < 15
    assert _until(lambda: not psutil.pid_exists(slow_pid) or psutil.Process(slow_pid).status() == "zombie")
    # And the records say so, for the agent after this one.
    rec = json.loads((tmp_path / "state" / "tasks" / sid / RECORD).read_text())
    assert rec["state"] == "killed" and rec["pid"] == slow_pid and rec["deadline_ts"] == rec["started_ts"] + 3


def test_tasks_survive_the_launching_process_being_killed(tmp_path):
    """The real restart: the process that launched the tasks is SIGKILLed; a new TaskManager on its state
    dir adopts the live task (pid AND start ticks equal), lists the one that ended meanwhile as lost."""
    state = str(tmp_path / "state")
    # "brief" ends when told, after the kill: a fixed sleep could end before the first manager dies on a
    # loaded machine (it then saw the end itself, and the task read "exited", not "lost").
    go = tmp_path / "brief-may-end"
    brief = [PY, "-c", f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)"]
    templates = {"talk": {"argv": TALK}, "brief": {"argv": brief}}
    code = ("import json, sys, time\n"
            "from clustertop.agents.tasks import TaskManager, parse_templates\n"
            f"t = parse_templates(json.loads({json.dumps(json.dumps(templates))}), None)\n"
            f"m = TaskManager({state!r}, use_systemd=False)\n"
            "a, b = m.launch(t['talk'], {}, allow_root=True), m.launch(t['brief'], {}, allow_root=True)\n"
            "print(a.id, a.pid, b.id, flush=True)\n"
            "time.sleep(300)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    agent = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    talk_pid = None
    try:
        assert agent.stdout is not None
        tid, pid, bid = agent.stdout.readline().split()
        talk_pid = int(pid)
        log = Path(state) / "tasks" / tid / "output.log"
        assert _until(lambda: len(_ticks(log.read_text())) >= 3)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        go.touch()
        time.sleep(1.0)  # "brief" ends while no agent runs; "talk" writes on into its FIFO
        assert psutil.pid_exists(talk_pid) and psutil.Process(talk_pid).status() != psutil.STATUS_ZOMBIE

        mgr = TaskManager(state, use_systemd=False)
        try:
            tasks = {t.id: t for t in mgr.tasks()}
            assert tasks[tid].state == "running" and tasks[tid].pid == talk_pid
            assert tasks[bid].state == "lost" and "exit status unknown" in (tasks[bid].note or "")
            before = max(_ticks(log.read_text()))
            assert _until(lambda: max(_ticks(mgr.tail(tid, 1)[1]) or [0]) > before + 5)
            mgr.stop(tid)
            assert _until(lambda: {t.id: t for t in mgr.tasks()}[tid].state == "killed")
            assert _until(lambda: not psutil.pid_exists(talk_pid) or psutil.Process(talk_pid).status() == "zombie")
        finally:
            mgr.close()
        # A third manager finds both finished, and adopts nothing.
        again = TaskManager(state, use_systemd=False)
        try:
            assert {t.id: t.state for t in again.tasks()} == {tid: "killed", bid: "lost"}
        finally:
            again.close()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        if talk_pid is not None and psutil.pid_exists(talk_pid):
            os.kill(talk_pid, signal.SIGKILL)


def test_a_reused_pid_is_never_adopted(tmp_path):
    """A record whose pid now names another process (other start ticks) is lost, and that process is left alone."""
    [tpl] = parse_templates({"nap": {"argv": ["sleep", "300"]}}, None).values()
    m1 = TaskManager(str(tmp_path), use_systemd=False)
    task = m1.launch(tpl, {}, allow_root=True)
    m1.close()
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        path = tmp_path / "tasks" / task.id / RECORD
        rec = json.loads(path.read_text())
        # The record now names the stranger's pid with the task's start ticks: what pid reuse looks like.
        rec["pid"] = rec["pgid"] = stranger.pid
        path.write_text(json.dumps(rec))
        m2 = TaskManager(str(tmp_path), use_systemd=False)
        try:
            [t] = m2.tasks()
            assert t.state == "lost"
            assert stranger.poll() is None
        finally:
            m2.close()
    finally:
        stranger.kill()
        stranger.wait()
        os.kill(task.pid or 0, signal.SIGKILL)
