"""Measures what the clustertop agent costs a node, side by side with prometheus-node-exporter.

Starts a private redis-server, the real agent (`clustertop agent --redis URL`, 1 s interval) and
node_exporter with a comparable set of collectors (scraped every second by this script), lets
them run for ``--seconds``, and prints CPU per tick/scrape (utime+stime from /proc/<pid>/stat),
RSS and PSS (/proc/<pid>/smaps_rollup) at start and end, and the ratios. Also prints the
exposure score of the systemd unit, and what the seal costs per tick (one Ed25519 signature and
three SHA-256 over the agent's own last payloads, timed in this process: it is part of the agent's
CPU above), and what packing the payloads costs per tick at deflate levels 1 and 6 (clustertop/wire/compress.py;
also part of the agent's CPU). Where the agent's tick goes, part by part: bench/agent_profile.py.
Informational: no assertions, exits 0.

    python bench/agent_overhead.py --seconds 60
    python bench/agent_overhead.py --quick      # CI smoke: 10 s
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import stop  # noqa: E402
from benchlib.node_exporter import FLAGS as EXPORTER_FLAGS  # noqa: E402  (bench/benchlib/)
from benchlib.node_exporter import cpu_ms, free_port  # noqa: E402


@dataclass
class Sample:
    cpu_ms: float
    rss_kib: int | None
    pss_kib: int | None


def memory_kib(pid: int) -> tuple[int | None, int | None]:
    rss = pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss = int(value.split()[0])
                elif key == "Pss":
                    pss = int(value.split()[0])
    except OSError:
        pass
    return rss, pss


def sample(pid: int) -> Sample:
    rss, pss = memory_kib(pid)
    return Sample(cpu_ms(pid), rss, pss)


def wait_until(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    return False


def scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as r:
        return len(r.read())


def exposure(unit: Path) -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return "n/a (systemd-analyze not installed)"
    r = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                       text=True, timeout=120)
    for line in (r.stdout + r.stderr).splitlines():
        if "Overall exposure level" in line:
            return line.split(":", 1)[1].strip()
    return "n/a (no score in output)"


def fmt(v: float | int | None, unit: str = "") -> str:
    if v is None:
        return "N/A"
    return f"{v:,.1f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"


def ratio(a: float | int | None, b: float | int | None) -> str:
    return "N/A" if a is None or not b else f"{a / b:.2f}x"


def seal_cost_us(client, agent_ms: float, rounds: int = 2000) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
    """The seal's cost on the agent's real payloads of this run (node, brief, digest, as published), in
    microseconds per tick, and that as a share of the agent's measured CPU per tick."""
    from clustertop import wire
    from clustertop.agents.publisher import seal
    from clustertop.control import signing
    from clustertop.wire import schema

    raw = [client.get(k("bench")) for k in (wire.node_key, wire.brief_key, wire.digest_key)]
    if not all(raw):
        return None
    snap = wire.decode(raw[0], schema.NodeSnapshot)
    key = signing.new_key()
    seal("bench", snap, *raw, key)  # warm: cryptography's first call loads its backend
    t0 = time.perf_counter()
    for _ in range(rounds):
        wire.encode(seal("bench", snap, *raw, key))
    us = (time.perf_counter() - t0) / rounds * 1e6
    return us, 100 * us / 1000 / agent_ms if agent_ms > 0 else float("nan")


def pack_cost_us(client, agent_ms: float, rounds: int = 500) -> list[tuple[int, float, int]] | None:  # type: ignore[no-untyped-def]
    """What packing the agent's real payloads of this run costs per tick (node + brief + digest, as read back
    and encoded again, deflated with their dictionaries, clustertop/wire/compress.py), at level 1 and at the
    shipped level: [(level, microseconds per tick, bytes per tick)]. Timed in this process."""
    import zlib

    from clustertop import wire
    from clustertop.wire import compress, schema

    kinds = (("node", wire.node_key, schema.NodeSnapshot), ("brief", wire.brief_key, schema.NodeSnapshot),
             ("digest", wire.digest_key, schema.NodeDigest))
    plain = {}
    for kind, key, typ in kinds:
        raw = client.get(key("bench"))
        if not raw:
            return None
        plain[kind] = wire.encode(wire.decode(raw, typ))
    levels = sorted({1, compress.LEVEL})
    primed = {level: {k: zlib.compressobj(level, zlib.DEFLATED, -15, compress.MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY,
                                          compress.dictionary(compress.CURRENT[k])) for k in plain}
              for level in levels}
    best = dict.fromkeys(levels, float("inf"))
    size = dict.fromkeys(levels, 0)
    # Short rounds, the levels in turn, the best of each: a busy moment of a shared machine hits both alike.
    for _ in range(rounds // 5):
        for level in levels:
            t0 = time.perf_counter()
            for _ in range(5):
                size[level] = 0
                for k, data in plain.items():
                    c = primed[level][k].copy()
                    size[level] += 2 + len(c.compress(data) + c.flush())
            best[level] = min(best[level], (time.perf_counter() - t0) / 5 * 1e6)
    return [(level, best[level], size[level]) for level in levels]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 10 s instead of --seconds")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10.0

    redis_exe = shutil.which("redis-server")
    exporter_exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if redis_exe is None:
        print("redis-server not installed: nothing measured")
        return 0
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="ct-bench-")
    try:
        rport = free_port()
        procs.append(subprocess.Popen([redis_exe, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", tmp],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import redis

        from clustertop import wire
        from clustertop.wire import schema

        client = redis.Redis(port=rport)
        if not wait_until(client.ping, 10):
            print("redis-server did not start")
            return 0
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "NOTIFY_SOCKET"))}
        env["STATE_DIRECTORY"] = tmp  # its node key is created here, not in the machine's /var/lib/clustertop
        agent = subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--redis",
                                  f"redis://127.0.0.1:{rport}/0", "--node", "bench", "--interval",
                                  str(args.interval), "--log-level", "warning"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(agent)
        exporter = None
        metrics_url = None
        if exporter_exe is not None:
            eport = free_port()
            exporter = subprocess.Popen([exporter_exe, f"--web.listen-address=127.0.0.1:{eport}", *EXPORTER_FLAGS],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(exporter)
            metrics_url = f"http://127.0.0.1:{eport}/metrics"
            wait_until(lambda: scrape(metrics_url) > 0, 15)

        def seq() -> int:
            # The digest's seq: written every tick (the full snapshot may be written only every N s).
            raw = client.get(wire.digest_key("bench"))
            return wire.decode(raw, schema.NodeDigest).seq if raw else 0

        if not wait_until(lambda: seq() >= 2, 60):
            print("agent published nothing: nothing measured")
            return 0
        # Start after warm-up (imports, first samples), so the figures are the steady state.
        a0, s0 = sample(agent.pid), seq()
        e0 = sample(exporter.pid) if exporter else None
        scrapes = scrape_bytes = 0
        t0 = time.monotonic()
        next_t = t0
        while time.monotonic() - t0 < args.seconds:
            if metrics_url:
                scrape_bytes = scrape(metrics_url)
                scrapes += 1
            next_t += args.interval
            time.sleep(max(0.0, next_t - time.monotonic()))
        elapsed = time.monotonic() - t0
        a1, s1 = sample(agent.pid), seq()
        e1 = sample(exporter.pid) if exporter else None
        snap_bytes = len(client.get(wire.node_key("bench")) or b"")
        ticks = max(1, s1 - s0)

        agent_ms = (a1.cpu_ms - a0.cpu_ms) / ticks
        exp_ms = (e1.cpu_ms - e0.cpu_ms) / max(1, scrapes) if e0 and e1 else None
        rows = [
            ("measured for", f"{elapsed:.1f} s", "", ""),
            ("ticks / scrapes", str(ticks), str(scrapes) if exporter else "N/A", ""),
            # Two decimals: /proc/<pid>/stat counts in 10 ms ticks, so give it --seconds 120 for +-0.1 ms.
            ("CPU ms per tick/scrape", f"{agent_ms:.2f}", "N/A" if exp_ms is None else f"{exp_ms:.2f}",
             ratio(agent_ms, exp_ms)),
            ("CPU % of one core", fmt(100 * (a1.cpu_ms - a0.cpu_ms) / 1000 / elapsed),
             fmt(100 * (e1.cpu_ms - e0.cpu_ms) / 1000 / elapsed) if e0 and e1 else "N/A", ""),
            ("RSS start (KiB)", fmt(a0.rss_kib), fmt(e0.rss_kib if e0 else None), ratio(a0.rss_kib, e0.rss_kib if e0 else None)),
            ("RSS end (KiB)", fmt(a1.rss_kib), fmt(e1.rss_kib if e1 else None), ratio(a1.rss_kib, e1.rss_kib if e1 else None)),
            ("PSS start (KiB)", fmt(a0.pss_kib), fmt(e0.pss_kib if e0 else None), ratio(a0.pss_kib, e0.pss_kib if e0 else None)),
            ("PSS end (KiB)", fmt(a1.pss_kib), fmt(e1.pss_kib if e1 else None), ratio(a1.pss_kib, e1.pss_kib if e1 else None)),
            ("payload per tick (bytes)", fmt(snap_bytes), fmt(scrape_bytes) if exporter else "N/A",
             ratio(snap_bytes, scrape_bytes)),
        ]
        print(f"clustertop agent vs prometheus-node-exporter, interval {args.interval:g} s")
        widths = [max(len(r[i]) for r in rows + [("", "agent", "node_exporter", "agent/exporter")]) for i in range(4)]
        header = ("", "agent", "node_exporter", "agent/exporter")
        for r in [header, *rows]:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if exporter is None:
            print("(prometheus-node-exporter not installed: its column is N/A)")
        seal_us = seal_cost_us(client, agent_ms)
        if seal_us is not None:
            print(f"seal per tick (sign + 3 SHA-256 + encode): {seal_us[0]:.1f} us "
                  f"({seal_us[1]:.1f} % of the agent's CPU per tick)")
        packing = pack_cost_us(client, agent_ms)
        for level, us, size in packing or ():
            print(f"packing per tick at deflate level {level} (node + brief + digest, dictionaries): {us:.1f} us "
                  f"({100 * us / 1000 / agent_ms if agent_ms > 0 else float('nan'):.1f} % of the agent's CPU per "
                  f"tick), {size} bytes")
        print("the agent's part comparable to these node_exporter collectors (host collector without the process "
              "walk, encode, send), part by part: bench/agent_profile.py")
        print(f"systemd unit exposure: {exposure(ROOT / 'systemd' / 'clustertop-agent.service')}")
        return 0
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
