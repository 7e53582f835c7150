"""``clustertop keygen | kill | launch | tasks`` as real subprocesses, against real agents' executors
(threads here, each with its own node key, enrolled in the operator's known_nodes) on a real redis-server.

The trust review's attacks are played for real: a Redis writer relabels a process after its node sealed
the snapshot (``kill`` refuses), answers a node's commands with a forged "done" (reported unverified,
exit 1, the process lives), and a node's text carries terminal escapes (printed escaped); an operator
whose Redis user lacks +xread is told the command went out, without a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.agents.publisher import Publisher
from clustertop.cli import acl
from clustertop.control import signing, trust
from clustertop.wire import schema
from tests.conftest import ROOT

PY = sys.executable
TEMPLATES = {"lines": {"argv": [PY, "-u", "-c", "import sys\nfor i in range(int(sys.argv[1])): print('line', i)",
                                "{n}"], "params": {"n": "int"}},
             "nap": {"argv": ["sleep", "{s}"], "params": {"s": "int"}},
             # A task whose output would retitle the terminal and reverse the line if printed raw.
             "evil": {"argv": [PY, "-c", "print('x\\x1b]0;pwned\\x07y\\u202ez\\x1b[2J')"], "params": {}}}
#: A raw terminal control or bidi character in printed output (newline and tab excepted).
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


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
def node_keys():
    """Each node's own key (made on first use) and, pinned in the operator's default known_nodes
    (~/.config/clustertop/known_nodes under this test's XDG_CONFIG_HOME), its public half."""
    keys: dict[str, signing.PrivateKey] = {}

    def key_of(node: str, enrol: bool = True) -> signing.PrivateKey:
        if node not in keys:
            keys[node] = signing.new_key()
            if enrol:
                trust.KnownNodes.load().add(node, keys[node].public())
        return keys[node]

    return key_of


@pytest.fixture
def agents(redis_server, tmp_path, key, node_keys):
    """Executors for the named nodes, each in its own thread as the agent runs it."""
    stop = threading.Event()
    threads, made = [], {}

    def start(*nodes: str) -> dict[str, CommandExecutor]:
        for node in nodes:
            cfg = {"security": {"operator_keys": [key[1]], "allow_root": True}, "templates": TEMPLATES}
            ex = CommandExecutor(redis_server.client, node, cfg, state_dir=str(tmp_path / node), block_ms=100,
                                 node_key=node_keys(node))
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


def publish_snapshot(client, node: str, procs: list[schema.Proc], key: signing.PrivateKey | None) -> schema.NodeSnapshot:
    """The node's snapshot and its seal, as its agent publishes them (``key`` None: no seal)."""
    snap = schema.NodeSnapshot(host=node, ts=time.time(), system=schema.System(procs=procs))
    Publisher(client, node, 60.0, key=key).publish(snap)
    return snap


def start_ticks(pid: int) -> int:
    """/proc/<pid>/stat field 22: the process's start in clock ticks, the identity a kill is bound to."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def sleep_proc(pid: int, cmdline: str = "sleep 300") -> schema.Proc:
    return schema.Proc(pid=pid, user="me", name="sleep", cmdline=cmdline, start_ts=psutil.Process(pid).create_time(),
                       start_ticks=start_ticks(pid), uid=os.getuid())


def sent_commands(client, node: str) -> list[schema.Command]:
    return [wire.decode(f[b"c"], schema.Command) for _, f in client.xrange(wire.cmd_key(node))]


@pytest.fixture
def victim():
    p = subprocess.Popen(["sleep", "300"])
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


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


def test_kill_takes_the_identity_from_the_signed_snapshot(redis_server, agents, key, node_keys, victim):
    agents("node-a")
    client = redis_server.client()
    publish_snapshot(client, "node-a", [sleep_proc(victim.pid)], node_keys("node-a"))
    ticks = start_ticks(victim.pid)
    r = cli("kill", "node-a", str(victim.pid), "--signal", "kill", "--redis", redis_server.url,
            env={"CLUSTERTOP_KEY": key[0]})  # known_nodes: the default file (XDG_CONFIG_HOME)
    assert r.returncode == 0, r.stdout + r.stderr
    fp = signing.fingerprint(node_keys("node-a").public())
    assert f"signalling node-a pid {victim.pid} sleep 300, user me (uid {os.getuid()})" in r.stdout
    assert f"signed by node-a's enrolled key {fp}" in r.stdout
    assert f"node-a: sent KILL to pid {victim.pid}" in r.stdout
    assert victim.wait(10) == -signal.SIGKILL
    (cmd,) = sent_commands(client, "node-a")
    assert cmd.args == {"pid": victim.pid, "start_ticks": ticks, "uid": os.getuid(),
                        "signal": "KILL", "group": False, "cmdline": "sleep"}
    (entry,) = [wire.decode(f[b"a"], schema.AuditEntry) for _, f in client.xrange(wire.operator_audit_key("ops"))]
    assert (entry.actor, entry.command_id, entry.where, entry.result) == ("ops", cmd.id, "cli", "sent")


def test_kill_refuses_a_pid_not_in_the_snapshot(redis_server, agents, key, node_keys):
    agents("node-a")
    publish_snapshot(redis_server.client(), "node-a", [], node_keys("node-a"))
    r = cli("kill", "node-a", "4242", "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 1 and "pid 4242 is not in node-a's latest snapshot" in r.stderr
    assert "--start-ticks" in r.stderr and redis_server.client().xlen(wire.cmd_key("node-a")) == 0


def test_start_ticks_the_agent_does_not_find_are_refused_by_the_agent(redis_server, agents, key, node_keys, victim):
    agents("node-a")
    publish_snapshot(redis_server.client(), "node-a", [], node_keys("node-a"))  # verified, the pid not listed
    r = cli("kill", "node-a", str(victim.pid), "--start-ticks", "1000", "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 1 and "refused: pid reused" in r.stdout, r.stdout + r.stderr
    assert "acting on the start ticks given (1000)" in r.stderr
    assert victim.poll() is None


def test_start_ticks_disagreeing_with_the_signed_snapshot_are_refused(redis_server, agents, key, node_keys, victim):
    agents("node-a")
    publish_snapshot(redis_server.client(), "node-a", [sleep_proc(victim.pid)], node_keys("node-a"))
    wrong = start_ticks(victim.pid) + 5
    r = cli("kill", "node-a", str(victim.pid), "--start-ticks", str(wrong), "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 1 and f"--start-ticks {wrong} disagrees with node-a's snapshot" in r.stderr
    assert redis_server.client().xlen(wire.cmd_key("node-a")) == 0 and victim.poll() is None


def test_start_ts_is_gone(redis_server, key):
    r = cli("kill", "node-a", "123", "--start-ts", "1000", "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 2 and "--start-ts" in r.stderr


def test_a_relabelled_snapshot_makes_kill_refuse(redis_server, agents, key, node_keys, victim):
    """The review's attack: after the node sealed its snapshot, a Redis writer relabels the real sleep as
    a miner. kill must not act on it; --unverified sends only after saying loudly what and why."""
    agents("node-a")
    client = redis_server.client()
    snap = publish_snapshot(client, "node-a", [sleep_proc(victim.pid)], node_keys("node-a"))
    assert snap.system is not None and snap.system.procs
    snap.system.procs[0].cmdline = "/tmp/.x/xmrig --threads 4 \x1b]0;pwned\x07"
    snap.system.procs[0].cpu_pct = 398.0
    client.set(wire.node_key("node-a"), wire.encode(snap))
    r = cli("kill", "node-a", str(victim.pid), "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused: node-a's snapshot cannot be verified" in r.stderr and "does not match its seal" in r.stderr
    assert "--unverified" in r.stderr and client.xlen(wire.cmd_key("node-a")) == 0 and victim.poll() is None
    r = cli("kill", "node-a", str(victim.pid), "--unverified", "--key", key[0], "--redis", redis_server.url)
    assert "WARNING: acting on UNVERIFIED data" in r.stderr and "does not match its seal" in r.stderr
    assert "/tmp/.x/xmrig --threads 4 \\x1b]0;pwned\\x07" in r.stderr and not RAW.search(r.stderr + r.stdout)
    assert "— UNVERIFIED" in r.stdout
    # Sent, and refused by the agent: the command-line prefix came from the forged label, and the live
    # process does not start with it (the second line of defence when an operator insists).
    assert r.returncode == 1 and "node-a: refused: pid reused: command line" in r.stdout, r.stdout + r.stderr
    assert victim.poll() is None


def test_kill_refuses_a_node_that_is_not_enrolled(redis_server, agents, key, node_keys, victim):
    agents("node-a")
    other = signing.new_key()  # node-b is not in known_nodes
    publish_snapshot(redis_server.client(), "node-b", [sleep_proc(victim.pid)], other)
    r = cli("kill", "node-b", str(victim.pid), "--key", key[0], "--redis", redis_server.url)
    assert r.returncode == 1 and "node-b is not enrolled (clustertop enrol node-b)" in r.stderr


def forge_answers(url: str, node: str, answer, stop: threading.Event) -> threading.Thread:
    """Another Redis writer (node-b's credentials, say): answers every command sent to ``node`` at once."""
    import redis

    def run() -> None:
        client = redis.Redis.from_url(url)
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
                    client.xadd(wire.results_key(node), {"r": wire.encode(answer(cmd))})

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("signed_by", [None, "node-b"])
def test_a_forged_done_is_unverified_and_exits_1(redis_server, key, node_keys, victim, tmp_path, signed_by):
    """The review's attack: node-a's commands answered with "done" by someone else (unsigned, or signed
    with node-b's real key). No agent runs for node-a: the process must live and the CLI must say so."""
    known = str(tmp_path / "kn")
    for host in ("node-a", "node-b"):
        trust.KnownNodes.load(known).add(host, node_keys(host, enrol=False).public())
    publish_snapshot(redis_server.client(), "node-a", [sleep_proc(victim.pid)], node_keys("node-a"))
    signer = node_keys(signed_by) if signed_by else None

    def done(cmd: schema.Command) -> schema.CommandResult:
        res = schema.CommandResult(id=cmd.id, node=cmd.node, verb=cmd.verb, ok=True, status="done", ts=time.time(),
                                   data={"pid": cmd.args["pid"], "signal": "TERM", "user": "root"})
        return signing.sign_struct("result", res, signer) if signer else res

    stop = threading.Event()
    forge_answers(redis_server.url, "node-a", done, stop)
    try:
        r = cli("kill", "node-a", str(victim.pid), "--known-nodes", known, "--timeout", "2", "--key", key[0],
                "--redis", redis_server.url)
        js = cli("kill", "node-a", str(victim.pid), "--known-nodes", known, "--timeout", "2", "--json",
                 "--key", key[0], "--redis", redis_server.url)
    finally:
        stop.set()
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"unverified answer from node-a: sent TERM to pid {victim.pid}" in r.stdout
    assert ("unsigned" if signed_by is None else "not the enrolled") in r.stdout
    assert not any(line.startswith("node-a: sent") for line in r.stdout.splitlines())
    assert js.returncode == 1 and json.loads(js.stdout)[0]["verified"] is False
    assert victim.poll() is None


def compromised_node_says(url: str, node: str, key: signing.PrivateKey, stop: threading.Event) -> None:
    """A node (its own, enrolled key) whose answers carry terminal escapes and a bidi override."""
    def answer(cmd: schema.Command) -> schema.CommandResult:
        res = schema.CommandResult(id=cmd.id, node=node, verb=cmd.verb, ok=False, status="refused", ts=time.time(),
                                   reason="no \x1b]0;pwned\x07 such \u202etask\x1b[2J",
                                   output="out\x1b]8;;http://evil\x07link\x1b]8;;\x07\n\u202eline2\n")
        return signing.sign_struct("result", res, key)

    forge_answers(url, node, answer, stop)


def test_node_text_is_printed_escaped(redis_server, agents, key, node_keys, tmp_path):
    ex = agents("n1")["n1"]
    env = {"CLUSTERTOP_KEY": key[0], "CLUSTERTOP_REDIS": redis_server.url}
    task = json.loads(cli("launch", "evil", "--node", "n1", "--json", env=env).stdout)[0]["data"]["task"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ex.tasks()[0].state == "running":
        time.sleep(0.1)
    tail = cli("tasks", "--node", "n1", "--tail", task, env=env)
    assert tail.returncode == 0, tail.stdout + tail.stderr
    assert "x\\x1b]0;pwned\\x07y\\u202ez\\x1b[2J" in tail.stdout and not RAW.search(tail.stdout)
    # A reason and an output from a node's signed answer: shown, escaped (lines kept).
    stop = threading.Event()
    compromised_node_says(redis_server.url, "n9", node_keys("n9"), stop)
    try:
        r = cli("tasks", "--node", "n9", "--tail", "t1", "--timeout", "5", env=env)
    finally:
        stop.set()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "n9: refused: no \\x1b]0;pwned\\x07 such \\u202etask\\x1b[2J" in r.stdout
    assert "out\\x1b]8;;http://evil\\x07link\\x1b]8;;\\x07\n\\u202eline2" in r.stdout
    assert not RAW.search(r.stdout + r.stderr)


def test_an_acl_without_xread_says_sent_and_exits_1(redis_server, agents, key, node_keys, victim):
    """Real Redis ACL: the operator's generated rules minus +xread. The kill happens; the CLI says it was
    sent, why it can't read the answer, and what grants it, with no traceback."""
    agents("node-a")
    admin = redis_server.client()
    publish_snapshot(admin, "node-a", [sleep_proc(victim.pid)], node_keys("node-a"))
    rules = acl.operator_rules("ops").replace(" +xread ", " ")
    admin.execute_command("ACL", "SETUSER", "operator-ops", "reset", "on", ">s3cret",
                          *re.findall(r"\([^)]*\)|\S+", rules))
    url = f"redis://operator-ops:s3cret@127.0.0.1:{redis_server.port}/0"
    r = cli("kill", "node-a", str(victim.pid), "--key", key[0], "--redis", url)
    assert r.returncode == 1, r.stdout + r.stderr
    (cmd,) = sent_commands(admin, "node-a")
    assert f"sent (command id {cmd.id}); cannot read results: NOPERM" in r.stderr
    assert "the operator's ACL needs +xread (clustertop acl grants it)" in r.stderr
    assert "Traceback" not in r.stderr
    assert victim.wait(10) == -signal.SIGTERM  # it was sent, and the agent acted


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


def test_no_command_goes_out_without_the_operators_own_trail(redis_server, agents, key, node_keys, victim, tmp_path):
    """The command and the operator's audit entry land in one MULTI: a Redis user that may not append to
    this key's stream (operator-ops using alice.key: audit:op:alice) sends nothing at all."""
    agents("node-a")
    admin = redis_server.client()
    publish_snapshot(admin, "node-a", [sleep_proc(victim.pid)], node_keys("node-a"))
    admin.execute_command("ACL", "SETUSER", "operator-ops", "reset", "on", ">s3cret",
                          *re.findall(r"\([^)]*\)|\S+", acl.operator_rules("ops")))
    alice, _pub, _ = signing.generate(str(tmp_path / "alice"), "alice")
    url = f"redis://operator-ops:s3cret@127.0.0.1:{redis_server.port}/0"
    r = cli("kill", "node-a", str(victim.pid), "--key", alice, "--redis", url)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "nothing sent: " in r.stderr and "NOPERM" in r.stderr.upper() and "operator-alice" in r.stderr
    assert "Traceback" not in r.stderr
    assert admin.xlen(wire.cmd_key("node-a")) == 0 and admin.xlen(wire.operator_audit_key("alice")) == 0
    assert victim.poll() is None
