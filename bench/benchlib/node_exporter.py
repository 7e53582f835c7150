"""prometheus-node-exporter as the same-run baseline of the agent benches (agent_overhead, agent_profile).

It runs with the collectors that match what the agent's host collector reads every tick (CPU, memory, disks,
NICs, filesystems, load); what the agent does beyond them (the process list, the other collectors, the seal,
deflate) is its own and is named beside the figures.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from benchlib import stop  # noqa: F401 - callers stop the exporter with it
from clustertop.collectors import procfs
from clustertop.collectors.base import Roots

FLAGS = ["--collector.disable-defaults", "--collector.cpu", "--collector.meminfo", "--collector.diskstats",
         "--collector.netdev", "--collector.filesystem", "--collector.loadavg"]

#: A scraper in its own process (its CPU must not land on the process being measured): GET every interval.
SCRAPER = """
import sys, time, urllib.request
url, interval, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
t = time.monotonic()
for _ in range(n):
    urllib.request.urlopen(url, timeout=5).read()
    t += interval
    time.sleep(max(0.0, t - time.monotonic()))
"""


def executable() -> str | None:
    return shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ms(pid: int) -> float:
    """utime + stime of ``pid`` in ms (10 ms resolution: give it enough scrapes)."""
    stat = procfs.read_pid_stat(Roots(), pid)
    if stat is None:
        raise ProcessLookupError(f"pid {pid} exited during the measurement")
    return (stat.utime + stat.stime) * 1000.0 / procfs.CLK_TCK


def start() -> tuple[subprocess.Popen[bytes], str] | None:
    """(process, metrics URL) once it answers; None when it is not installed or does not start."""
    exe = executable()
    if exe is None:
        return None
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}", *FLAGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    stop(proc)
    return None


def scrape_in_background(url: str, interval_s: float, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SCRAPER, url, str(interval_s), str(n)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
