"""What the Celery task history (the event stream) costs the ``celery`` collector per tick.

A private redis-server, a real Celery worker with events on (``-E``, tests/fixtures/queues/ct_celery_app.py)
and a producer process sending ``ct.add`` at ``--rate`` tasks a minute (1,000 by default; a tenth of them
``ct.maybe_fail`` so failures and tracebacks flow too). The collector ticks every ``--tick`` seconds, first
with ``task_events = false`` (the baseline: queues and workers only) then with it on, alternating
``--rounds`` times. Printed per mode: the median wall time of ``collect()`` and this process's CPU per
tick (``time.process_time``, which includes the receiver thread), and the ratios. Worker inspection is
left out of both (a broadcast, the same either way). Informational: exits 0.

``--groups``: the producer sends every task in saved groups of 64 (``ct.maybe_fail``, a tenth failing),
results in a Redis result backend (the same server, database 1); a third mode adds ``result_backend`` to
the collector (group progress, ``collectors/celery_groups.py``), its ratio against events alone.

    python bench/celery_events.py             # 3 rounds of 30 s per mode
    python bench/celery_events.py --quick     # 1 round of 12 s per mode
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchlib.redis_server import start_redis  # noqa: E402
from clustertop.collectors.base import Context  # noqa: E402
from clustertop.collectors.celery import CeleryCollector  # noqa: E402

APP_DIR = ROOT / "tests" / "fixtures" / "queues"

PRODUCER = """
import sys, time
from celery import Celery, group
backend = sys.argv[3] if len(sys.argv) > 3 else None
app = Celery("bench-producer", broker=sys.argv[1], backend=backend, set_as_current=False)
app.conf.task_default_queue = "work"
rate = float(sys.argv[2]) / 60.0
t0, n = time.monotonic(), 0
while backend:  # groups of 64, saved: what a grid search sends
    res = group(app.signature("ct.maybe_fail", args=(n + i, 10)) for i in range(64)).apply_async()
    res.save()
    del res
    n += 64
    time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
while True:
    if n % 10 == 9:
        app.send_task("ct.maybe_fail", args=(n, 1))
    else:
        app.send_task("ct.add", args=(n, n))
    n += 1
    time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
"""


def measure(url: str, events: bool, seconds: float, tick: float,
            backend: str | None = None) -> tuple[list[float], float, int, int]:
    """(collect() wall ms per tick, process CPU ms per tick, tasks seen, groups published at the end)."""
    extra = {"result_backend": backend} if backend else {}
    c = CeleryCollector(Context(node="bench", config={"brokers": [url], "request_timeout": 2,
                                                      "task_events": events, **extra}, config_file="bench"))
    c.inspectors = []  # the broadcast is not what is measured
    try:
        if events:  # listening first, so the measured ticks drain a stream at its steady rate
            deadline = time.monotonic() + 10
            while c.streams[0].since is None and time.monotonic() < deadline:
                time.sleep(0.05)
        c.collect()
        walls: list[float] = []
        cpu0, end = time.process_time(), time.monotonic() + seconds
        seen = ngroups = 0
        while time.monotonic() < end:
            time.sleep(tick)
            t = time.perf_counter()
            q = c.collect()
            walls.append((time.perf_counter() - t) * 1000)
            for h in q.task_history or []:
                seen = sum(s.succeeded + s.failed for s in h.stats or [])
            ngroups = len(q.celery_groups.groups or []) if q.celery_groups is not None else 0
        cpu = (time.process_time() - cpu0) * 1000 / max(1, len(walls))
        return walls, cpu, seen, ngroups
    finally:
        c.close()
        # A receiver thread left running would bill its CPU to the next baseline round.
        alive = [st for st in c.streams if st._thread is not None and st._thread.is_alive()]
        if alive:
            raise SystemExit("the event receiver thread outlived close(): figures would be wrong")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0, help="tasks a minute")
    ap.add_argument("--seconds", type=float, default=30.0, help="per mode and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tick", type=float, default=2.0, help="seconds between collector ticks")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--groups", action="store_true", help="tasks in saved groups of 64; a result-backend mode")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.rounds = 12.0, 1
    proc, url, data = start_redis()
    backend = url.rsplit("/", 1)[0] + "/1" if a.groups else None
    env = {**os.environ, "CT_BROKER": url, "PYTHONPATH": str(APP_DIR), "CT_BACKEND": backend or ""}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ct_celery_app", "worker", "--pool=prefork", "--concurrency=2",
         "-Q", "work", "-n", "bench@ct", "-E", "--without-gossip", "--without-mingle", "-l", "ERROR"],
        cwd=APP_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, url, str(a.rate), *([backend] if backend else [])],
                                env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(3)  # the worker starts consuming
        modes: list[tuple[bool, str | None]] = [(False, None), (True, None)] + ([(True, backend)] if backend else [])
        res: dict[tuple[bool, str | None], tuple[list[float], list[float], int]] = {m: ([], [], 0) for m in modes}
        shown = 0
        for _ in range(a.rounds):  # alternating: the machine's load falls on every mode alike
            for m in modes:
                walls, cpu, seen, ngroups = measure(url, m[0], a.seconds, a.tick, m[1])
                w, c, s = res[m]
                res[m] = (w + walls, c + [cpu], max(s, seen))
                shown = max(shown, ngroups)
        base_w, base_c = statistics.median(res[modes[0]][0]), statistics.median(res[modes[0]][1])
        ev_w, ev_c = statistics.median(res[modes[1]][0]), statistics.median(res[modes[1]][1])
        print(f"celery collector, {a.rate:.0f} tasks/min flowing (10% failing"
              f"{', in saved groups of 64' if backend else ''}), tick every {a.tick:g} s, "
              f"{a.rounds} x {a.seconds:g} s per mode; load {os.getloadavg()[0]:.2f}")
        print(f"  without task events (baseline)  collect() {base_w:7.2f} ms   CPU/tick {base_c:7.2f} ms")
        print(f"  with task events                collect() {ev_w:7.2f} ms   CPU/tick {ev_c:7.2f} ms"
              f"   x{ev_w / base_w:.1f} wall, x{ev_c / base_c:.1f} CPU")
        if backend:
            g_w, g_c = statistics.median(res[modes[2]][0]), statistics.median(res[modes[2]][1])
            print(f"  events + result backend groups  collect() {g_w:7.2f} ms   CPU/tick {g_c:7.2f} ms"
                  f"   x{g_w / ev_w:.2f} wall, x{g_c / ev_c:.2f} CPU vs events alone; {shown} groups shown")
        print(f"  tasks seen through events in the last window: {res[modes[1]][2]}")
    finally:
        for p in (producer, worker):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
