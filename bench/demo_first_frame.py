"""Benchmark: `clustertop demo` time to first frame, at 15 and 1,000 nodes, in a real terminal (tmux).

Starts the real command in a private tmux server (200x50), captures the pane every 20 ms and prints,
per cluster size, the seconds from starting the process to:

  first frame   the first capture with anything on it (before: a blank terminal);
  nodes shown   the first capture where the header counts the cluster's nodes ("N nodes") and no
                filling-in notice remains: every node has published and the hour of history is in.

Each size runs ``--runs`` times (median shown). The figure it is about: first frame within 2 s at
1,000 nodes (issue 16). The machine is shared, so each row has two same-run baselines:

  python        seconds for ``python -m clustertop --version`` (interpreter and import start-up: the
                floor under any first frame, and a gauge of how loaded the machine is right now);
  filled sync   seconds for a process to fill the demo's store before returning (``start_demo(wait=True)``):
                the blank time before the first frame when the demo filled its store first (before issue 16).

    python bench/demo_first_frame.py            # 15 and 1,000 nodes, 3 runs each
    python bench/demo_first_frame.py --quick    # CI smoke: 15 nodes, one run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02
#: The overview's notice while the demo is still filling in (clustertop/sim/startup.py).
FILLING = re.compile(r"simulating|filling in")


def tmux(sock: str, *args: str) -> str:
    out = subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=30)
    return out.stdout


def one_run(nodes: int, timeout_s: float, width: int = 200, height: int = 50) -> tuple[float | None, float | None]:
    sock = f"ct-bench-{uuid.uuid4().hex[:8]}"
    cmd = " ".join([sys.executable, "-m", "clustertop", "demo", "--nodes", str(nodes)])
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    started = time.monotonic()
    subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width),
                    "-y", str(height), *[a for k in ("PYTHONPATH", "TERM", "COLORTERM") if k in env
                                         for a in ("-e", f"{k}={env[k]}")],
                    f"cd {ROOT} && exec {cmd}"], check=True, env=env, timeout=30)
    first = shown = None
    want = re.compile(rf"\b{nodes:,} nodes|\b{nodes} nodes")
    try:
        while time.monotonic() - started < timeout_s:
            text = tmux(sock, "capture-pane", "-p", "-t", "t")
            now = time.monotonic() - started
            if first is None and text.strip():
                first = now
            if first is not None and want.search(text) and not FILLING.search(text):
                shown = now
                break
            time.sleep(POLL_S)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=30)
    return first, shown


def timed(argv: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(argv, check=True, cwd=ROOT, capture_output=True, timeout=600)
    return time.monotonic() - t


def baselines(nodes: int) -> tuple[float, float]:
    py = timed([sys.executable, "-m", "clustertop", "--version"])
    fill = timed([sys.executable, "-c", "from clustertop.cli import modes; "
                  f"b = modes.start_demo(seed=1, nodes={nodes}, wait=True); b.close()"])
    return py, fill


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 nodes, one run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each run")
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        print("demo_first_frame: tmux is not installed (tests/run installs it)", file=sys.stderr)
        return 2
    sizes = [15] if args.quick else [15, 1000]
    runs = 1 if args.quick else max(1, args.runs)
    print(f"{'nodes':>6} {'first frame s':>14} {'nodes shown s':>14} {'python s':>9} {'filled sync s':>14}"
          f"   (median of {runs}; 200x50 tmux)")
    for n in sizes:
        firsts, showns, pys, fills = [], [], [], []
        for _ in range(runs):
            f, s = one_run(n, args.timeout)
            firsts.append(f)
            showns.append(s)
            py, fill = baselines(n)
            pys.append(py)
            fills.append(fill)

        def med(xs: list[float | None]) -> str:
            got = [x for x in xs if x is not None]
            if len(got) < len(xs):
                return f"timeout>{args.timeout:g}"
            return f"{statistics.median(got):.2f}"

        print(f"{n:>6} {med(firsts):>14} {med(showns):>14} {med(pys):>9} {med(fills):>14}   runs: "
              + ", ".join(f"{f if f is None else round(f, 2)}/{s if s is None else round(s, 2)}"
                          for f, s in zip(firsts, showns, strict=True)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
