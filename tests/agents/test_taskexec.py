"""Tasks in units of their own (agents/taskexec.py): the agent's request, the instance that becomes the task,
and TaskManager using them, with real processes on a real unix socket.

PID 1's part (clustertop-task.socket with Accept=yes: accept, start one instance per connection with the
connection as its stdin, in a new session) is played by Activator below, because this host has no systemd
as PID 1. tests/systemd/test_unit_real.py runs the same path under a real systemd, units and all."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustertop.agents import caps, taskexec
from clustertop.agents.config import AgentConfig
from clustertop.agents.main import warn_missing_cap_kill
from clustertop.agents.tasks import TaskManager, parse_templates
from tests.conftest import ROOT


class Activator:
    """systemd's Accept=yes socket, reduced to what the instance sees: stdin is the connection, own session."""

    def __init__(self, path: Path, user: int | None = None) -> None:
        self.path = str(path)
        self.user = user
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", os.defpath)}
            p = subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--task-exec"], stdin=conn,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                 env=env, user=self.user, cwd="/")
            conn.close()
            self.procs.append(p)

    def close(self) -> None:
        self.sock.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)


@pytest.fixture
def activator(tmp_path: Path) -> Iterator[Activator]:
    a = Activator(tmp_path / "task.sock")
    yield a
    a.close()


def fifo_pair(tmp_path: Path) -> tuple[int, int]:
    path = tmp_path / "out.pipe"
    os.mkfifo(path)
    rd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    return rd, os.open(path, os.O_RDWR)


def read_until(fd: int, want: bytes, timeout: float = 15) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while want not in data and time.monotonic() < deadline:
        try:
            data += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.02)
    return data


def ppid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_the_instance_runs_the_task_reports_its_identity_and_records_its_exit(activator: Activator,
                                                                             tmp_path: Path) -> None:
    rd, wr = fifo_pair(tmp_path)
    tdir = tmp_path / "task"
    tdir.mkdir()
    dfd = os.open(tdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        go = tmp_path / "go"
        code = ("import os, sys, time; print('pid', os.getpid(), os.getcwd(), os.environ.get('X'), repr(sys.stdin.read()))"
                "; sys.stdout.flush()\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)\nsys.exit(3)")
        reply = taskexec.request(activator.path, [sys.executable, "-c", code, str(go)],
                                 {"X": "from-the-template", "PATH": "/usr/bin:/bin"}, str(tmp_path), wr, dfd)
        os.close(wr)
        out = read_until(rd, b"\n")
        (proc,) = activator.procs
        pid = reply["pid"]
        # The task is the instance's child (the unit's process), leading its own session and group.
        assert ppid_of(pid) == proc.pid and os.getpgid(pid) == pid and os.getsid(pid) == pid
        assert out.decode() == f"pid {pid} {tmp_path} from-the-template ''\n"  # stdin is /dev/null
        assert reply["ticks"] == int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        assert reply["unit"] is None  # not in a systemd unit here (the real one names clustertop-task@...)
        assert taskexec.read_exit(str(tdir), pid, reply["ticks"]) is None  # still running
        go.touch()  # now it exits 3: the instance records that and exits 1
        assert proc.wait(15) == 1
    finally:
        os.close(rd)
        os.close(dfd)
    assert taskexec.read_exit(str(tdir), pid, reply["ticks"]) == 3
    assert taskexec.read_exit(str(tdir), pid, reply["ticks"] + 1) is None  # another process's: not taken
    (tdir / taskexec.EXIT_FILE).write_text(f'{{"pid": {pid}, "ticks": {reply["ticks"]}, "exit_code": 1e999}}')
    assert taskexec.read_exit(str(tdir), pid, reply["ticks"]) is None


def test_a_bad_request_is_answered_with_the_reason_and_runs_nothing(activator: Activator, tmp_path: Path) -> None:
    rd, wr = fifo_pair(tmp_path)
    try:
        with pytest.raises(taskexec.TaskExecError, match="argv must be a non-empty list of strings"):
            taskexec.request(activator.path, [], {}, "/", wr, rd)
        with pytest.raises(taskexec.TaskExecError, match="no-such-program-here: not found"):
            taskexec.request(activator.path, ["no-such-program-here"], {"PATH": "/usr/bin"}, "/", wr, rd)
        with pytest.raises(taskexec.TaskExecError, match="/nonexistent: no such directory"):
            taskexec.request(activator.path, ["true"], {"PATH": "/usr/bin:/bin"}, "/nonexistent", wr, rd)
    finally:
        os.close(rd)
        os.close(wr)
    for p in activator.procs:
        assert p.wait(10) == 1


def test_a_request_without_the_output_descriptor_is_refused(activator: Activator) -> None:
    msg = b'{"argv": ["true"], "env": {}, "cwd": "/"}'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(activator.path)
        s.sendall(struct.pack("!I", len(msg)) + msg)
        reply = taskexec._read_message(s)
    assert b"expected the output and directory descriptors, got 0" in reply


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_only_the_units_own_user_is_heard() -> None:
    # The instance runs as us (root); the request comes from a forked child that became nobody (uid 65534).
    d = tempfile.mkdtemp(prefix="ct-taskexec-")
    os.chmod(d, 0o755)
    a = Activator(Path(d) / "task.sock")
    os.chmod(a.path, 0o777)
    rd, wr = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: only socket calls, then _exit
            try:
                os.setgid(65534)
                os.setuid(65534)
                taskexec.request(a.path, ["true"], {}, "/", rd, wr)
                os.write(wr, b"started")
            except taskexec.TaskExecError as e:
                os.write(wr, str(e).encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        said = os.read(rd, 4096).decode()
    finally:
        os.close(rd)
        os.close(wr)
        a.close()
        shutil.rmtree(d)
    assert "peer uid 65534 is not this unit's user (uid 0)" in said, said


TEMPLATES = parse_templates({
    "talk": {"argv": [sys.executable, "-u", "-c", "import sys, time\nprint('hi', sys.argv[1])\ntime.sleep(60)",
                      "{who}"], "params": {"who": "str"}},
    "exit": {"argv": [sys.executable, "-c", "import sys; sys.exit(int(sys.argv[1]))", "{code}"],
             "params": {"code": "int"}},
    "capped": {"argv": ["sleep", "60"], "limits": {"memory_max": "1G"}},
}, None)


def wait_state(mgr: TaskManager, tid: str, timeout: float = 15):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        (t,) = [t for t in mgr.tasks() if t.id == tid]
        if t.state != "running" or time.monotonic() > deadline:
            return t
        time.sleep(0.05)


def test_task_manager_launches_through_the_socket_and_watches_the_task(activator: Activator, tmp_path: Path) -> None:
    mgr = TaskManager(str(tmp_path / "state"), task_socket=activator.path, stop_grace_s=1)
    try:
        # allow_root: the tests run as root; on a node the agent is the clustertop user
        task = mgr.launch(TEMPLATES["talk"], {"who": "there"}, allow_root=True)
        (proc,) = activator.procs
        assert task.pid == task.pgid and ppid_of(task.pid or 0) == proc.pid  # the instance's, not the agent's
        assert ppid_of(task.pid or 0) != os.getpid() and task.note is None
        deadline = time.monotonic() + 15
        while "hi there" not in mgr.tail(task.id)[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mgr.tail(task.id)[1] == "hi there"
        assert Path(task.log_path or "").read_text() == "hi there\n"
        # A second manager on the same state dir (an agent restart) adopts it ...
        mgr.close()
        mgr = TaskManager(str(tmp_path / "state"), task_socket=activator.path, stop_grace_s=1)
        (adopted,) = mgr.tasks()
        assert adopted.id == task.id and adopted.state == "running"
        # ... and still learns how it ended: from the exit.json its instance wrote.
        mgr.stop(task.id)
        assert proc.wait(10) == 1
        t = wait_state(mgr, task.id)
        assert (t.state, t.exit_code) == ("killed", -15)
        for code, state in ((0, "exited"), (7, "failed")):
            done = wait_state(mgr, mgr.launch(TEMPLATES["exit"], {"code": code}, allow_root=True).id)
            assert (done.state, done.exit_code) == (state, code)
        # Limits are a unit's business there: said on the task, not pretended.
        capped = mgr.launch(TEMPLATES["capped"], {}, allow_root=True)
        assert re.match(r"memory_max/cpu_quota not enforced", capped.note or ""), capped.note
        mgr.stop(capped.id)
    finally:
        mgr.close()


def test_a_task_that_ended_while_no_agent_ran_gets_its_exit_code(activator: Activator, tmp_path: Path) -> None:
    mgr = TaskManager(str(tmp_path / "state"), task_socket=activator.path)
    task = mgr.launch(TEMPLATES["talk"], {"who": "x"}, allow_root=True)
    mgr.close()
    os.kill(task.pid or 0, 9)
    assert activator.procs[0].wait(10) == 1
    mgr = TaskManager(str(tmp_path / "state"), task_socket=activator.path)
    try:
        (t,) = mgr.tasks()
        assert (t.state, t.exit_code) == ("killed", -9)  # not "lost": its unit recorded how it ended
    finally:
        mgr.close()


def test_without_the_socket_tasks_run_as_before(tmp_path: Path) -> None:
    mgr = TaskManager(str(tmp_path / "state"), task_socket=str(tmp_path / "absent.sock"), use_systemd=False)
    try:
        task = mgr.launch(TEMPLATES["talk"], {"who": "x"}, allow_root=True)
        assert task.unit is None and task.note is None
        assert os.getpgid(task.pid or 0) == task.pid
        mgr.stop(task.id)
    finally:
        mgr.close()


def test_capability_parser() -> None:
    status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000000020\n"
    assert caps.effective(status) == 1 << caps.CAP_KILL
    assert caps.effective("CapEff:\tzz\n") is None and caps.effective("Name: x\n") is None
    assert caps.has_capability(caps.CAP_KILL, "/nonexistent/status") is False


def test_the_agent_warns_when_signal_users_lacks_cap_kill(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = AgentConfig(file="/etc/clustertop/agent.toml")
    assert warn_missing_cap_kill(cfg) is False  # nobody to signal: nothing to say
    cfg.security.signal_users = ["alice"]
    have = caps.has_capability(caps.CAP_KILL)
    assert warn_missing_cap_kill(cfg) is (not have)
    if not have:
        assert "/etc/clustertop/agent.toml: [security] signal_users" in caplog.text
    # Without it, for certain: a process whose capabilities are all dropped (setpriv, as the unit's
    # CapabilityBoundingSet= does), running the same check.
    code = ("import sys; from clustertop.agents.config import AgentConfig; from clustertop.agents.main import "
            "warn_missing_cap_kill; c = AgentConfig(file='/etc/clustertop/agent.toml'); "
            "c.security.signal_users = ['alice']; sys.exit(0 if warn_missing_cap_kill(c) else 1)")
    r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", code],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "lacks CAP_KILL" in r.stderr and "signal-users.conf" in r.stderr
