"""sd_notify: a real AF_UNIX datagram socket plays systemd's notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from clustertop.agents.sdnotify import Notifier
from tests.conftest import ROOT


def recv_until(sock: socket.socket, wanted: str, timeout: float = 60.0) -> list[str]:
    """Datagrams received until one contains ``wanted`` (all of them, in order)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append(msg)
        if wanted in msg.split("\n"):
            return got
    raise AssertionError(f"{wanted} never arrived; got {got}")


def test_agent_process_notifies_ready_watchdog_stopping(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="30000000")
    proc = subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--redis", redis_server.url,
                             "--node", "notified", "--interval", "0.2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        first = recv_until(sock, "READY=1")
        assert not any("WATCHDOG=1" in m for m in first)  # READY comes with the first tick
        assert any(line.startswith("STATUS=") and "collectors ok" in line for line in first[-1].split("\n"))
        recv_until(sock, "WATCHDOG=1")
        recv_until(sock, "WATCHDOG=1")  # and again, every tick
        # READY=1 only after the first snapshot was published.
        assert redis_server.client().exists("ct:v1:node:{notified}")
        proc.send_signal(signal.SIGTERM)
        recv_until(sock, "STOPPING=1")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sock.close()


def test_abstract_namespace_and_no_socket() -> None:
    name = f"ct-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        n = Notifier(f"@{name}", watchdog_usec=None)
        assert n.ready("starting")
        assert sock.recv(4096).decode() == "READY=1\nSTATUS=starting"
        # Without WATCHDOG_USEC no WATCHDOG=1 is sent; an unchanged STATUS is not repeated.
        assert not n.watchdog("starting")
        assert n.watchdog("2/4 collectors ok")
        assert sock.recv(4096).decode() == "STATUS=2/4 collectors ok"
        n.close()
    finally:
        sock.close()
    # No NOTIFY_SOCKET (not under systemd): every call is a quiet no-op.
    quiet = Notifier.from_env({})
    assert not quiet.enabled and not quiet.ready("x") and not quiet.stopping()
    # WATCHDOG_PID naming another process: the watchdog is not ours to feed.
    other = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_usec is None
