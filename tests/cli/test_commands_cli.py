"""``clustertop keygen | kill | launch | tasks`` as real subprocesses, against real agents' executors
(threads here) on a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import psutil
import pytest

from clustertop.agents.commands import CommandExecutor
from clustertop.agents.publisher import Publisher
from clustertop.control import signing
from clustertop.wire import schema
from tests.conftest import ROOT

PY = sys.executable
TEMPLATES = {"lines": {"argv": [PY, "-u", "-c", "import sys\nfor i in range(int(sys.argv[1])): print('line', i)",
                                "{n}"], "params": {"n": "int"}},
             "nap": {"argv": ["sleep", "{s}"], "params": {"s": "int"}}}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    e.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run([PY, "-m", "clustertop", *args], capture_output=True, text=True, env=e, timeout=timeout,
                          check=False)


@pytest.fixture
def key(tmp_path):
    kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    return kp, pub


@pytest.fixture
def agents(redis_server, tmp_path, key):
    """Executors for the named nodes, each in its own thread as the agent runs it."""
    stop = threading.Event()
    threads, made = [], {}

    def start(*nodes: str) -> dict[str, CommandExecutor]:
        for node in nodes:
            cfg = {"security": {"operator_keys": [key[1]], "allow_root": True}, "templates": TEMPLATES}
            ex = CommandExecutor(redis_server.client, node, cfg, state_dir=str(tmp_path / node), block_ms=100)
            t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
            t.start()
            threads.append(t)
            made[node] = ex
        return made

    yield start
    stop.set()
    for t in threads:
        t.join(10)
    for ex in made.values():
        for task in ex.tasks():
            if task.state == "running":
                ex.task_mgr.stop(task.id)


def publish_snapshot(client, node: str, procs: list[schema.Proc]) -> None:
    snap = schema.NodeSnapshot(host=node, ts=time.time(), system=schema.System(procs=procs))
    Publisher(client, node, 1.0).publish(snap)


def test_keygen_writes_a_0600_key_and_refuses_to_overwrite(tmp_path):
    r = cli("keygen", "--out", str(tmp_path / "k"), "--name", "alice")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "k" / "alice.key").st_mode) == 0o600
    kid = signing.load_public(str(tmp_path / "k" / "alice.pub")).key_id
    assert f"key id:      {kid}" in r.stdout
    again = cli("keygen", "--out", str(tmp_path / "k"), "--name", "alice")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_without_a_key_it_says_why_and_exits_2(redis_server):
    r = cli("kill", "node-a", "123", "--redis", redis_server.url)
    assert r.returncode == 2 and "no signing key" in r.stderr and "CLUSTERTOP_KEY" in r.stderr


def test_kill_takes_start_time_from_the_snapshot(redis_server, agents, key):
    agents("node-a")
    client = redis_server.client()
    victim = subprocess.Popen(["sleep", "300"])
    try:
        proc = psutil.Process(victim.pid)
        publish_snapshot(client, "node-a", [schema.Proc(pid=victim.pid, name="sleep", start_ts=proc.create_time())])
        r = cli("kill", "node-a", str(victim.pid), "--signal", "kill", "--redis", redis_server.url,
                env={"CLUSTERTOP_KEY": key[0]})
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"node-a: sent KILL to pid {victim.pid}" in r.stdout
        assert victim.wait(10) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def test_kill_refuses_a_pid_not_in_the_snapshot(redis_server, agents, key):
    agents("node-a")
    publish_snapshot(redis_server.client(), "node-a", [])
    r = cli("kill", "node-a", "4242", "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 1 and "not in node-a's latest snapshot" in r.stderr


def test_kill_with_a_stale_start_time_is_refused_by_the_agent(redis_server, agents, key):
    agents("node-a")
    victim = subprocess.Popen(["sleep", "300"])
    try:
        r = cli("kill", "node-a", str(victim.pid), "--start-ts", "1000", "--key", key[0], "--redis", redis_server.url)
        assert r.returncode == 1 and "refused: pid reused" in r.stdout
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_launch_on_two_nodes_is_one_job_then_tasks_list_tail_stop(redis_server, agents, key):
    agents("n1", "n2")
    env = {"CLUSTERTOP_KEY": key[0], "CLUSTERTOP_REDIS": redis_server.url}
    r = cli("launch", "lines", "--node", "n1", "--node", "n2", "n=5", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert [o["node"] for o in out] == ["n1", "n2"] and all(o["status"] == "done" for o in out)
    jobs = {o["tasks"][0]["job"] for o in out}
    assert len(jobs) == 1 and None not in jobs
    assert [o["tasks"][0]["rank"] for o in out] == [0, 1]
    task = out[0]["data"]["task"]

    listing = cli("tasks", "--node", "n1", env=env)
    assert listing.returncode == 0 and "n1: 1 task(s)" in listing.stdout and task in listing.stdout

    deadline = time.monotonic() + 20
    while True:  # the task prints 5 lines and exits; wait until the agent saw it exit
        tail = cli("tasks", "--node", "n1", "--tail", task, "--lines", "2", env=env)
        if tail.stdout.endswith("line 3\nline 4\n") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert tail.returncode == 0 and tail.stdout.endswith("line 3\nline 4\n"), tail.stdout

    nap = json.loads(cli("launch", "nap", "--node", "n2", "s=300", "--json", env=env).stdout)[0]
    stopped = cli("tasks", "--node", "n2", "--stop", nap["data"]["task"], env=env)
    assert stopped.returncode == 0 and f"stopping task {nap['data']['task']}" in stopped.stdout
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(nap["data"]["pid"]).wait(10)


def test_refusals_exit_1_and_bad_params_exit_2(redis_server, agents, key):
    agents("n1")
    env = {"CLUSTERTOP_KEY": key[0], "CLUSTERTOP_REDIS": redis_server.url}
    r = cli("launch", "--node", "n1", "nap", "s=forever", env=env)  # options first works too
    assert r.returncode == 1 and "n1: refused: bad params: param s: expected int" in r.stdout
    r = cli("launch", "nap", "--node", "n1", "forever", env=env)
    assert r.returncode == 2 and "not KEY=VALUE" in r.stderr


def test_no_agent_answering_exits_3(redis_server, key):
    r = cli("tasks", "--node", "nobody-home", "--timeout", "1", "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 3 and "no answer within 1 s" in r.stdout
