"""Fault figures with real processes: how the agent and the read side ride out Redis outages.

Starts a private redis-server and a real agent (`clustertop agent`, 1 s interval), then:
  1. CLIENT PAUSE ALL for --pause seconds (30 by default, as the issue asks),
  2. SIGKILL of redis-server, down for --down seconds, restart on the same port,
and prints for each: whether the agent survived, seconds from Redis being back to the agent's first
fresh snapshot, seconds until a Reader (the dashboard's read path) sees the node "up" again, and the
agent's RSS before and after. Also: --soak SECONDS runs the agent that long and prints RSS every
minute (the hour-long soak: `python bench/faults.py --soak 3600`). Informational; exits 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clustertop import wire  # noqa: E402
from clustertop.read.reader import Reader  # noqa: E402
from clustertop.wire import schema  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, d: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    c = redis.Redis(port=port, socket_timeout=0.5)
    for _ in range(200):
        try:
            c.ping()
            return p
        except redis.RedisError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def rss_kib(pid: int) -> int | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def seq(url: str, node: str) -> int | None:
    import redis

    try:
        raw = redis.Redis.from_url(url, socket_timeout=0.5).get(wire.node_key(node))
    except redis.RedisError:
        return None
    return wire.decode(raw, schema.NodeSnapshot).seq if raw else None


def wait_for(pred, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pause", type=float, default=30.0)
    ap.add_argument("--down", type=float, default=10.0)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of soak after the faults")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 3 s pause, 3 s down, 20 s soak")
    a = ap.parse_args()
    if a.quick:
        a.pause, a.down, a.soak = 3.0, 3.0, 20.0
    d = tempfile.mkdtemp(prefix="ct-faults-")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    rs = start_redis(port, d)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    env["PYTHONPATH"] = str(ROOT)
    agent = subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--redis", url, "--node", "f1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows: list[tuple[str, str]] = []
    try:
        if wait_for(lambda: seq(url, "f1") is not None, 30) is None:
            raise SystemExit("agent never published")
        time.sleep(3)
        rss0 = rss_kib(agent.pid)

        # 1. CLIENT PAUSE
        import redis

        redis.Redis.from_url(url).execute_command("CLIENT", "PAUSE", int(a.pause * 1000), "ALL")
        time.sleep(a.pause)
        before = seq(url, "f1") or 0
        t_agent = wait_for(lambda: (seq(url, "f1") or 0) > before, 30)
        reader = Reader(redis.Redis.from_url(url))
        t_read = wait_for(lambda: (n := reader.read().node("f1")) is not None and n.state == "up", 30)
        rows.append((f"CLIENT PAUSE {a.pause:g} s: agent alive", str(agent.poll() is None)))
        rows.append(("  fresh snapshot after unpause (s)", f"{t_agent:.2f}" if t_agent is not None else "never"))
        rows.append(("  reader sees node up (s)", f"{t_read:.2f}" if t_read is not None else "never"))

        # 2. SIGKILL + restart on the same port
        rs.kill()
        rs.wait()
        time.sleep(a.down)
        alive = agent.poll() is None
        rs = start_redis(port, d)
        t_agent = wait_for(lambda: seq(url, "f1") is not None, 30)
        reader = Reader(redis.Redis.from_url(url))
        t_read = wait_for(lambda: (n := reader.read().node("f1")) is not None and n.state == "up", 30)
        rows.append((f"redis-server SIGKILL, down {a.down:g} s: agent alive", str(alive)))
        rows.append(("  first snapshot after restart (s)", f"{t_agent:.2f}" if t_agent is not None else "never"))
        rows.append(("  reader sees node up (s)", f"{t_read:.2f}" if t_read is not None else "never"))
        rss1 = rss_kib(agent.pid)
        rows.append(("agent RSS before / after faults (KiB)", f"{rss0} / {rss1}"))

        if a.soak:
            samples = [(0.0, rss_kib(agent.pid))]
            t0 = time.monotonic()
            step = min(60.0, a.soak / 4)
            while time.monotonic() - t0 < a.soak:
                time.sleep(step)
                samples.append((time.monotonic() - t0, rss_kib(agent.pid)))
            first, last = samples[0][1] or 0, samples[-1][1] or 0
            rows.append((f"soak {a.soak:g} s: RSS samples (KiB)", " ".join(str(s[1]) for s in samples)))
            rows.append(("  RSS change over the soak (KiB)", f"{last - first:+d}"))
    finally:
        agent.terminate()
        err = agent.communicate(timeout=10)[1].decode()
        rs.terminate()
        rs.wait(5)
    rows.append(("agent log lines about the outages", str(err.count("cannot publish"))))
    rows.append(("tracebacks in the agent log", str(err.count("Traceback"))))
    w = max(len(k) for k, _ in rows)
    print("clustertop agent under Redis faults")
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    main()
