"""A throwaway redis-server on a free loopback port, for the benches.

It dies with the bench: the kernel sends it SIGTERM when the process that started it ends, however that ends
(``PR_SET_PDEATHSIG``; a bench killed by a timeout used to leave its server running, parent pid 1), and a
normal exit that skipped the caller's cleanup stops it too (``atexit``).
"""

from __future__ import annotations

import atexit
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

from benchlib import stop

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent ends (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    """(process, URL, data dir): the caller stops the process and removes the dir."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="ct-bench-")
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    atexit.register(stop, proc, 5.0)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            if redis.Redis.from_url(url).ping():
                return proc, url, d
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")
