"""Provides task placement through systemd socket activation: each launched task in its own unit.

Why: the agent runs as the unprivileged ``clustertop`` user under MemoryMax=256M/TasksMax=64, and
``systemctl restart clustertop-agent`` kills its whole cgroup. Tasks must be outside that cgroup, but
an unprivileged process cannot ask systemd for a transient unit here (``systemd-run`` needs root or a
polkit rule; the host has no polkit), and on cgroup v1 (the hybrid hosts we run on) a delegated subtree
would still sit under the agent's memory limit.

What works without any privilege: ``clustertop-task.socket`` (``Accept=yes``, a socket only the
clustertop group may connect to). For every connection PID 1 starts a fresh ``clustertop-task@.service``
instance, a unit of its own under system.slice, running ``clustertop agent --task-exec`` (serve() below)
as the same ``clustertop`` user. The agent (request() below) sends the rendered argv, the environment,
the working directory and - as SCM_RIGHTS - the write end of the task's output FIFO and the task's
directory. The instance forks the task (its own session: pid = process group), answers with the task's
pid, start ticks and its unit name, waits for it, and writes its exit status to ``exit.json`` in the
task's directory (through the directory's descriptor), so the agent learns it even across its own
restarts. The agent watches the task like one adopted after a restart (pidfd, start ticks, the FIFO):
restarts and limits of the agent never touch it. It gains nothing the agent lacks: same user, no
capabilities, NoNewPrivileges.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import sys
from typing import Any

#: Where clustertop-task.socket listens; the agent uses it when it exists (only root can create it in /run).
DEFAULT_SOCKET = "/run/clustertop/task.sock"
#: A request or reply larger than this is refused (argv and env are bounded by the template anyway).
MAX_MESSAGE = 1024 * 1024
#: Written by the instance into the task's directory when the task ends: {"pid", "ticks", "exit_code"}.
EXIT_FILE = "exit.json"


class TaskExecError(OSError):
    """The task unit did not start the task; the message says why."""


def request(path: str, argv: list[str], env: dict[str, str], cwd: str, out_fd: int, dir_fd: int,
            timeout: float = 10.0) -> dict[str, Any]:
    """Start ``argv`` in a new clustertop-task@ unit; returns its reply {"pid", "ticks", "unit"}.

    ``out_fd`` becomes the task's stdout and stderr, ``dir_fd`` (the task's directory) receives exit.json;
    both are passed over the socket, never by path."""
    msg = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
    if len(msg) > MAX_MESSAGE:
        raise TaskExecError(f"task request of {len(msg)} bytes is too large")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            socket.send_fds(s, [struct.pack("!I", len(msg)) + msg], [out_fd, dir_fd])
            reply = _read_message(s)
        except (OSError, ValueError) as e:
            raise TaskExecError(f"task socket {path}: {e}") from None
    try:
        out = json.loads(reply)
    except ValueError:
        raise TaskExecError(f"task socket {path}: unreadable reply {reply[:80]!r}") from None
    if not isinstance(out, dict) or "error" in out or not isinstance(out.get("pid"), int):
        why = out.get("error") if isinstance(out, dict) else out
        raise TaskExecError(f"task unit refused: {str(why)[:300]}")
    return out


def _read_message(s: socket.socket, fds: list[int] | None = None) -> bytes:
    """One length-prefixed message; file descriptors sent with it are appended to ``fds``."""
    head = b""
    while len(head) < 4:
        if fds is not None:
            data, got, _flags, _addr = socket.recv_fds(s, 4 - len(head), 8)
            fds.extend(got)
        else:
            data = s.recv(4 - len(head))
        if not data:
            raise ValueError("connection closed before the message")
        head += data
    (size,) = struct.unpack("!I", head)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is too large")
    body = b""
    while len(body) < size:
        chunk = s.recv(min(65536, size - len(body)))
        if not chunk:
            raise ValueError("connection closed in the middle of the message")
        body += chunk
    return body


def _send(s: socket.socket, obj: dict[str, Any]) -> None:
    msg = json.dumps(obj).encode()
    s.sendall(struct.pack("!I", len(msg)) + msg)


def _own_unit() -> str | None:
    """This process's unit, from its name=systemd (or unified) cgroup path."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, ctl, path = line.split(":", 2)
        if ctl in ("name=systemd", ""):
            name = path.rstrip("/").rpartition("/")[2]
            if name.endswith(".service"):
                return name
    return None


def read_exit(task_dir: str, pid: int | None, ticks: int | None) -> int | None:
    """The exit code the instance recorded for the task ``pid`` started at ``ticks`` (negative: killed by that
    signal), or None: not ended yet, not written, or about another process."""
    try:
        with open(os.path.join(task_dir, EXIT_FILE), "rb") as f:
            rec = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("pid") != pid or rec.get("ticks") != ticks:
        return None
    code = rec.get("exit_code")
    return code if isinstance(code, int) and not isinstance(code, bool) and -64 <= code <= 255 else None


def _start_ticks(pid: int | str = "self") -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _check(req: Any) -> tuple[list[str], dict[str, str], str]:
    if not isinstance(req, dict):
        raise ValueError("request is not an object")
    argv, env, cwd = req.get("argv"), req.get("env"), req.get("cwd", "/")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) and "\0" not in a for a in argv)):
        raise ValueError("argv must be a non-empty list of strings")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) and "\0" not in k + v
                                          and "=" not in k for k, v in env.items())):
        raise ValueError("env must map strings to strings")
    if not isinstance(cwd, str) or "\0" in cwd:
        raise ValueError("cwd must be a string")
    return argv, env, cwd


def serve(sock_fd: int = 0) -> int:
    """``clustertop agent --task-exec`` in a clustertop-task@ instance: one request on the socket (fd 0,
    StandardInput=socket), then the task as its child, until it ends. Only a peer running as this very user
    (the agent) is heard. Exit 0 when the task exited 0, else 1 (the task's own code is in exit.json)."""
    s = socket.socket(fileno=os.dup(sock_fd))
    s.settimeout(10)
    fds: list[int] = []
    try:
        uid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
        if uid != os.getuid():
            _send(s, {"error": f"peer uid {uid} is not this unit's user (uid {os.getuid()})"})
            return 1
        argv, env, cwd = _check(json.loads(_read_message(s, fds)))
        if len(fds) != 2:
            raise ValueError(f"expected the output and directory descriptors, got {len(fds)}")
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if exe is None or not os.access(exe, os.X_OK):
            raise ValueError(f"{argv[0]}: not found or not executable")
        if not os.path.isdir(cwd):
            raise ValueError(f"{cwd}: no such directory")
    except (OSError, ValueError) as e:
        for fd in fds:
            os.close(fd)
        try:
            _send(s, {"error": str(e)})
        except OSError:
            pass
        return 1
    out, dir_fd = fds
    pid = os.fork()
    if pid == 0:  # the task: its own session and process group (stopping it reaches its children)
        try:
            os.setsid()
            os.chdir(cwd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 65536)  # the socket, the directory, the instance's own: none is the task's
            os.execve(exe, argv, env)
        except BaseException as e:  # noqa: BLE001 - whatever it was, the task's log says so, and it ends
            try:
                os.write(2, f"clustertop task-exec: {argv[0]}: {e}\n".encode())
            finally:
                os._exit(127)
    # The instance: the task's parent. systemd's stop (TERM to the whole unit) ends the task; this
    # process waits for that instead of dying first, so the exit status is always written.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.close(out)
    ticks = _start_ticks(pid)  # our unreaped child: the pid cannot name another process yet
    try:
        _send(s, {"pid": pid, "ticks": ticks, "unit": _own_unit()})
    except OSError:
        pass  # the agent went away meanwhile: the task runs on, a later agent finds nothing to adopt
    s.close()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    record = json.dumps({"pid": pid, "ticks": ticks, "exit_code": code}).encode()
    try:
        fd = os.open(EXIT_FILE + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            f.write(record)
        os.replace(EXIT_FILE + ".tmp", EXIT_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:
        print(f"clustertop task-exec: exit status {code} of pid {pid} not recorded: {e}", file=sys.stderr)
    print(f"clustertop task-exec: pid {pid} ({argv[0]}) ended with {code}", file=sys.stderr)
    return 0 if code == 0 else 1
