"""The shipped units under a REAL systemd 252 as PID 1 (tests/support/systemd_tree.py), not systemd-analyze.

One boot per module (~0.4 s) of a cached Debian bookworm tree; this checkout's wheel installed with the
agent and serve extras into a venv made by the tree's own python3; systemd/clustertop-agent.service,
clustertop-task.socket, clustertop-task@.service and clustertop-wall.service copied in byte for byte and
started as the README says. The agent publishes to a real redis-server on the host's 127.0.0.1 (the guest
shares the host's network namespace), the operator side is the real `clustertop` CLI with a real key.

Checked for real: the agent is active after READY (its first snapshot), its state directory is
/var/lib/clustertop; a launched task's log lands there, the task runs in a unit of its own (not under the
agent's MemoryMax/TasksMax: it holds 300 MB while the agent may use 256), survives `systemctl restart
clustertop-agent` and is adopted again (its output keeps coming, its exit code reaches the agent); a signed kill of another user's process
fails without CAP_KILL (with the agent's warning naming the key) and works with the signal-users.conf
drop-in, audited both times; a hung agent (SIGSTOP) is killed by the watchdog and restarted (NRestarts); the
exposure score as the real systemd computes it; the wall unit serves and draws.

Nothing is skipped: if the tree cannot be built (no debootstrap, no mirror) the module fails and says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustertop import wire
from clustertop.control import signing
from clustertop.wire import schema
from tests.conftest import ROOT, RedisServer
from tests.support import install
from tests.support import systemd_tree as st

pytestmark = pytest.mark.heavy

NODE = "guest"
AGENT = "clustertop-agent.service"
UNITS = ("clustertop-agent.service", "clustertop-task.socket", "clustertop-task@.service", "clustertop-wall.service")
PY = "/usr/bin/python3"  # the guest's
TEMPLATES = f'''
[templates.ticker]
argv = ["{PY}", "-u", "-c", "import sys, time\\nprint('hello', sys.argv[1])\\ni = 0\\nwhile True:\\n    i += 1\\n    print('tick', i)\\n    time.sleep(0.2)", "{{who}}"]
params = {{ who = "str" }}

[templates.hog]
argv = ["{PY}", "-u", "-c", "import time\\nb = bytearray(b'x') * (300 * 2**20)\\nprint('holding', len(b) >> 20, 'MiB')\\ntime.sleep(3600)"]
'''


class Setup:
    def __init__(self, guest: st.Guest, redis: RedisServer, home: Path, key: str) -> None:
        self.guest, self.redis, self.home, self.key = guest, redis, home, key

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The operator's `clustertop` on the host (its own key and known_nodes under a private XDG_CONFIG_HOME)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
        env.update(PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(self.home), CLUSTERTOP_REDIS=self.redis.url,
                   CLUSTERTOP_KEY=self.key)
        return subprocess.run([sys.executable, "-m", "clustertop", *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)

    def sh(self, script: str) -> str:
        r = self.guest.run("sh", "-c", script)
        assert r.returncode == 0, f"{script}: {r.stdout}{r.stderr}"
        return r.stdout

    def journal(self, unit: str) -> str:
        return self.guest.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout

    def main_pid(self, unit: str = AGENT) -> int:
        return int(self.guest.show(unit, "MainPID")["MainPID"])


def wait_for(what: str, check, timeout: float = 20.0, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    try:
        st.ensure_tree()
        wheel = install.build_wheel(tmp_path_factory.mktemp("wheel"))
        st.ensure_deps(wheel)
    except (st.TreeError, install.InstallError) as e:  # a failure, never a skip: CI must run these
        pytest.fail(f"the systemd test tree could not be prepared (~/.cache/clustertop-systemd): {e}")
    home = tmp_path_factory.mktemp("operator")
    key, pub, _ = signing.generate(str(home / "keys"), "ops")
    redis = RedisServer()
    guest = st.Guest(wheel)
    try:
        guest.install()
        for unit in UNITS:
            guest.put(f"/etc/systemd/system/{unit}", (ROOT / "systemd" / unit).read_text())
        guest.put("/etc/clustertop/ops.pub", Path(pub).read_text(), 0o640, "root", "clustertop")
        guest.put("/etc/clustertop/agent.toml", f'[agent]\nredis = "{redis.url}"\nnode = "{NODE}"\n'
                  f'[security]\noperator_keys = ["ops.pub"]\nsignal_users = ["{st.OTHER_USER}"]\n{TEMPLATES}',
                  0o640, "root", "clustertop")
        guest.put("/etc/clustertop/wall.env", f"CLUSTERTOP_REDIS={redis.url}\n", 0o644)
        print(f"guest booted in {guest.boot():.2f} s")
        s = Setup(guest, redis, home, key)
        # As systemd/README.md installs them.
        s.sh("systemctl enable --now clustertop-task.socket && systemctl enable --now clustertop-agent")
        yield s
    finally:
        guest.stop()
        redis.stop()


def test_the_units_in_the_guest_are_the_shipped_ones(setup: Setup) -> None:
    for unit in UNITS:
        assert setup.guest.file(f"/etc/systemd/system/{unit}") == (ROOT / "systemd" / unit).read_text(), unit


def test_agent_is_active_after_ready_with_its_state_directory(setup: Setup) -> None:
    g = setup.guest
    # Type=notify: "active" only after READY=1, which the agent sends after its first snapshot.
    wait_for("the agent active", lambda: g.run("systemctl", "is-active", AGENT).stdout.strip() == "active")
    props = g.show(AGENT, "StatusText", "NRestarts", "Result")
    assert props["Result"] == "success" and props["NRestarts"] == "0", props
    assert re.fullmatch(r"\d+/\d+ collectors ok", props["StatusText"]), props
    # StateDirectory=clustertop: /var/lib/clustertop, the agent's own, and where its key went.
    assert setup.sh("stat -c '%U %a' /var/lib/clustertop").split() == ["clustertop", "700"]
    assert setup.sh("stat -c %U /var/lib/clustertop/node.key").strip() == "clustertop"
    # The snapshot really reached Redis, and it is the guest's (its own process table).
    raw = wait_for("the guest's snapshot", lambda: setup.redis.client().get(wire.node_key(NODE)))
    snap = wire.decode(raw, schema.NodeSnapshot)
    assert snap.host == NODE
    # signal_users names alice but the shipped unit grants no CAP_KILL: said at start, naming file and key.
    warning = [line for line in setup.journal(AGENT).splitlines() if "lacks CAP_KILL" in line]
    assert warning and "/etc/clustertop/agent.toml: [security] signal_users" in warning[0], setup.journal(AGENT)


def exposure(setup: Setup, unit: str) -> float:
    out = setup.guest.run("systemd-analyze", "security", "--no-pager", unit).stdout
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", out)
    assert m, out
    return float(m.group(1))


def test_exposure_score_in_the_real_systemd(setup: Setup) -> None:
    agent, wall, task = (exposure(setup, u) for u in (AGENT, "clustertop-wall.service", "clustertop-task@x.service"))
    print(f"exposure: agent {agent}, wall {wall}, task unit {task}")
    assert agent <= 2.0 and wall <= 2.0


def enrol(setup: Setup) -> None:
    if not (setup.home / "clustertop" / "known_nodes").exists():
        pub = setup.home / f"{NODE}.pub"
        pub.write_text(setup.guest.file("/var/lib/clustertop/node.pub"))
        r = setup.cli("enrol", NODE, "--key", str(pub), "--yes")
        assert r.returncode == 0, r.stdout + r.stderr


def launch(setup: Setup, template: str, *params: str) -> dict:  # type: ignore[type-arg]
    enrol(setup)
    r = setup.cli("launch", template, "--node", NODE, *params, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    (out,) = json.loads(r.stdout)
    assert out["status"] == "done" and out["verified"], out
    (task,) = out["tasks"]
    return task  # type: ignore[no-any-return]


def cgroup(setup: Setup, pid: int, hierarchy: str) -> str:
    for line in setup.guest.file(f"/proc/{pid}/cgroup").splitlines():
        if line.split(":")[1] == hierarchy:
            return line.split(":", 2)[2]
    raise AssertionError(f"pid {pid} has no {hierarchy} cgroup")


def start_ticks(setup: Setup, pid: int) -> int:
    return int(setup.guest.file(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[19])


def ticks_in(text: str) -> int:
    found = re.findall(r"^tick (\d+)$", text, re.M)
    return int(found[-1]) if found else 0


def test_launched_task_logs_to_state_dir_lives_outside_the_agent_and_survives_restart(setup: Setup) -> None:
    g = setup.guest
    task = launch(setup, "ticker", "who=world")
    pid, tid = task["pid"], task["id"]
    assert task["log_path"] == f"/var/lib/clustertop/tasks/{tid}/output.log"
    log = wait_for("the task's output in the state directory",
                   lambda: (t := g.file(task["log_path"])).startswith("hello world\n") and "tick 3" in t and t)
    assert ticks_in(log) >= 3
    assert setup.sh(f"stat -c %U {task['log_path']}").strip() == "clustertop"
    # Its own unit: not the agent's cgroup in any hierarchy that carries the agent's limits. Its parent is
    # that unit's main process, not the agent.
    unit = task["unit"]
    assert int(g.file(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1]) == setup.main_pid(unit)
    rss = re.search(r"VmRSS:\s+(\d+) kB", g.file(f"/proc/{setup.main_pid(unit)}/status"))
    print(f"the unit's instance (clustertop agent --task-exec) holds {int(rss.group(1)) >> 10} MiB RSS")  # type: ignore[union-attr]
    assert re.fullmatch(r"clustertop-task@\d+-\d+-\d+\.service", unit), task
    agent_pid = setup.main_pid()
    for h in ("memory", "pids", "name=systemd"):
        assert cgroup(setup, agent_pid, h) == "/system.slice/clustertop-agent.service"
        assert cgroup(setup, pid, h).endswith(f"/{unit}"), (h, cgroup(setup, pid, h))
    assert g.show(unit, "ActiveState", "User")["ActiveState"] == "active"
    ticks = start_ticks(setup, pid)

    t0 = time.monotonic()
    setup.sh(f"systemctl restart {AGENT}")
    restart_s = time.monotonic() - t0
    assert setup.main_pid() != agent_pid
    # The same process (pid and start time) still runs, and the new agent adopted it ...
    assert start_ticks(setup, pid) == ticks
    wait_for("the adoption", lambda: f"task {tid} (template ticker, pid {pid}) adopted" in setup.journal(AGENT))
    listing = setup.cli("tasks", "--node", NODE, "--json")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    (mine,) = [t for o in json.loads(listing.stdout) for t in o["tasks"] if t["id"] == tid]
    assert mine["state"] == "running"
    # ... and its output keeps reaching the log: what it wrote during the restart waited in the FIFO.
    before = ticks_in(g.file(task["log_path"]))
    wait_for("new output after the restart", lambda: ticks_in(g.file(task["log_path"])) > before + 5)
    print(f"task {tid} survived `systemctl restart` ({restart_s:.2f} s) and was adopted; log at tick "
          f"{ticks_in(g.file(task['log_path']))}")

    stopped = setup.cli("tasks", "--node", NODE, "--stop", tid)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_for("the task gone", lambda: g.run("test", "-d", f"/proc/{pid}").returncode != 0)
    wait_for("its unit gone", lambda: g.show(unit, "ActiveState")["ActiveState"] == "inactive")
    # Its exit status, recorded by its unit's instance, reached the agent that adopted it.
    assert task_state(setup, tid) == ("killed", -15)
    assert f"pid {pid} ({PY}) ended with -15" in setup.journal(unit)


def task_state(setup: Setup, tid: str) -> tuple[str, int | None]:
    def ended():  # type: ignore[no-untyped-def]
        r = setup.cli("tasks", "--node", NODE, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        (t,) = [t for o in json.loads(r.stdout) for t in o["tasks"] if t["id"] == tid]
        return (t["state"], t["exit_code"]) if t["state"] != "running" else None
    return wait_for(f"task {tid} to end", ended)  # type: ignore[no-any-return]


def test_the_agents_memory_max_does_not_bound_a_task(setup: Setup) -> None:
    task = launch(setup, "hog")
    wait_for("the 300 MiB task", lambda: "holding 300 MiB" in setup.guest.file(task["log_path"]), timeout=60)
    rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", setup.guest.file(f"/proc/{task['pid']}/status")).group(1))  # type: ignore[union-attr]
    agent_max = int(setup.guest.show(AGENT, "MemoryMax")["MemoryMax"])
    print(f"task holds {rss_kib >> 10} MiB; the agent's MemoryMax is {agent_max >> 20} MiB")
    assert rss_kib * 1024 > agent_max == 256 * 2**20
    assert setup.guest.show(AGENT, "ActiveState")["ActiveState"] == "active"
    r = setup.cli("tasks", "--node", NODE, "--stop", task["id"])
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for("the task gone", lambda: setup.guest.run("test", "-d", f"/proc/{task['pid']}").returncode != 0)


def audit_results(setup: Setup, pid: int) -> list[str]:
    client = setup.redis.client()
    entries = [wire.decode(f[b"a"], schema.AuditEntry) for _, f in client.xrange(wire.node_audit_key(NODE))]
    return [e.result for e in entries if e.action == "signal" and f"pid {pid}," in e.target]


def kill(setup: Setup, pid: int) -> dict:  # type: ignore[type-arg]
    """`clustertop kill`, retried until the node's signed snapshot lists the pid (process walks are 5 s apart)."""
    def attempt():  # type: ignore[no-untyped-def]
        r = setup.cli("kill", NODE, str(pid), "--json")
        try:
            (out,) = json.loads(r.stdout)
        except ValueError:
            assert "not in" in r.stderr or "snapshot" in r.stderr, r.stdout + r.stderr
            return None
        return out
    return wait_for(f"a verdict on pid {pid}", attempt, timeout=30, every=1.0)  # type: ignore[no-any-return]


def test_signed_kill_of_another_users_process_needs_the_cap_kill_dropin(setup: Setup) -> None:
    g = setup.guest
    enrol(setup)
    setup.sh(f"systemd-run --quiet --unit=victim --uid={st.OTHER_USER} /bin/sleep 600")
    pid = setup.main_pid("victim.service")
    assert setup.sh(f"stat -c %U /proc/{pid}").strip() == st.OTHER_USER
    # The shipped unit: no capability, so the kernel refuses; the agent says so, signed and audited.
    before = exposure(setup, AGENT)
    warned = setup.journal(AGENT).count("lacks CAP_KILL")
    out = kill(setup, pid)
    assert out["status"] == "failed" and "Operation not permitted" in out["reason"] and out["verified"], out
    assert g.run("test", "-d", f"/proc/{pid}").returncode == 0
    assert audit_results(setup, pid)[-1].startswith("failed: PermissionError")

    # The drop-in, as the README installs it (printed by the installed `clustertop systemd`).
    setup.sh("install -d /etc/systemd/system/clustertop-agent.service.d && clustertop systemd signal-users.conf "
             "> /etc/systemd/system/clustertop-agent.service.d/signal-users.conf && systemctl daemon-reload && "
             f"systemctl restart {AGENT}")
    status = g.file(f"/proc/{setup.main_pid()}/status")
    eff = int(re.search(r"CapEff:\s+([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    assert eff == 1 << 5, status  # CAP_KILL and nothing else
    assert setup.journal(AGENT).count("lacks CAP_KILL") == warned  # this start did not warn: it has CAP_KILL
    after = exposure(setup, AGENT)
    print(f"exposure of {AGENT}: {before} shipped, {after} with signal-users.conf")
    out = kill(setup, pid)
    assert out["status"] == "done" and out["ok"] and out["verified"], out
    wait_for("the victim gone", lambda: g.run("test", "-d", f"/proc/{pid}").returncode != 0)
    assert audit_results(setup, pid)[-1] == "ok"
    # Both entries were signed by the node's own key (the one in its state directory, enrolled above).
    node_key = signing.load_public(str(setup.home / f"{NODE}.pub"))
    client = setup.redis.client()
    entries = [wire.decode(f[b"a"], schema.AuditEntry) for _, f in client.xrange(wire.node_audit_key(NODE))]
    assert {e.key_id for e in entries if f"pid {pid}," in e.target} == {node_key.key_id}


def test_watchdog_restarts_a_hung_agent(setup: Setup) -> None:
    g = setup.guest
    # WatchdogSec=30 in the unit; a runtime drop-in shortens it to 3 s so the test does not wait 35 s.
    setup.sh("mkdir -p /run/systemd/system/clustertop-agent.service.d && printf '[Service]\\nWatchdogSec=3\\n"
             "RestartSec=1\\n' > /run/systemd/system/clustertop-agent.service.d/zz-test-watchdog.conf && "
             f"systemctl daemon-reload && systemctl restart {AGENT}")
    try:
        assert g.show(AGENT, "WatchdogUSec")["WatchdogUSec"] == "3s"
        time.sleep(4)  # fed for longer than one interval: a healthy agent is left alone
        restarts = int(g.show(AGENT, "NRestarts")["NRestarts"])
        hung = setup.main_pid()
        setup.sh(f"kill -STOP {hung}")
        wait_for("the watchdog restart", lambda: int(g.show(AGENT, "NRestarts")["NRestarts"]) == restarts + 1
                 and g.show(AGENT, "ActiveState")["ActiveState"] == "active", timeout=20)
        assert setup.main_pid() != hung
        assert "Watchdog timeout (limit 3s)!" in g.run("journalctl", "-u", AGENT, "--no-pager").stdout
    finally:
        setup.sh("rm -f /run/systemd/system/clustertop-agent.service.d/zz-test-watchdog.conf && "
                 "systemctl daemon-reload")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def wall_screen(port: int, want: str, timeout: float = 20.0) -> str:
    """What a browser tab would get: the dashboard's terminal output over textual-serve's websocket."""
    import aiohttp

    data = b""
    text = ""
    async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{port}/ws?width=160&height=45") as ws:
        end = asyncio.get_running_loop().time() + timeout
        while want not in text:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                m = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if m.type == aiohttp.WSMsgType.BINARY:
                data += m.data
                text = re.sub(r"\x1b\[[0-9;?$]*[A-Za-z]|\x1b\][^\x07]*\x07", "", data.decode("utf-8", "replace"))
            elif m.type != aiohttp.WSMsgType.TEXT:
                break
    return text


def test_wall_unit_serves_and_draws(setup: Setup) -> None:
    g = setup.guest
    port = 8765  # the unit's own; the guest shares the host's network, so another process may hold it
    if not port_free(port):
        port = st_free_port()
        setup.sh("mkdir -p /run/systemd/system/clustertop-wall.service.d && printf '[Service]\\nExecStart=\\n"
                 f"ExecStart=/usr/local/bin/clustertop serve --wall --host 127.0.0.1 --port {port} --font-size 32\\n' "
                 "> /run/systemd/system/clustertop-wall.service.d/port.conf && systemctl daemon-reload")
        print(f"port 8765 busy on this machine: the wall serves on {port} (runtime drop-in)")
    setup.sh("systemctl start clustertop-wall")
    wait_for("the wall server", lambda: "clustertop serve: http://127.0.0.1" in setup.journal("clustertop-wall.service"))
    assert g.run("systemctl", "is-active", "clustertop-wall").stdout.strip() == "active"
    r = subprocess.run(["curl", "-sI", f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=10)
    assert r.stdout.startswith("HTTP/1.1 302") and "Location: /?fontsize=32" in r.stdout, r.stdout
    # DynamicUser= and PrivateUsers=: the server runs as a uid systemd made up for it.
    uid = int(setup.sh(f"stat -c %u /proc/{setup.main_pid('clustertop-wall.service')}"))
    assert uid >= 61184, uid  # systemd's DynamicUser range
    # The first frame says "0 nodes ... waiting for the first read"; once it has read the guest agent's
    # snapshot from Redis, the header counts it.
    screen = asyncio.run(wall_screen(port, "1 nodes"))
    assert "clustertop wall" in screen and "1 nodes" in screen, screen[-3000:]
    print(f"wall drew {len(screen)} characters; its header counts the guest agent's node")
    setup.sh("systemctl stop clustertop-wall")


def st_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
