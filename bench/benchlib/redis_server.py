"""A throwaway redis-server on a free loopback port, for the benches."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import redis


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    """(process, URL, data dir): the caller stops the process and removes the dir."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="ct-bench-")
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            if redis.Redis.from_url(url).ping():
                return proc, url, d
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")
