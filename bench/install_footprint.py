"""Measures what each install of clustertop costs: site-packages per extra, and the agent's start-up.

Builds the wheel of this tree, then for each extra (agent, dashboard, all) makes a fresh venv in a temp
dir and installs the wheel with that extra and constraints.txt (the tested versions). Prints the
site-packages size in MB (10^6 bytes, sum of file sizes, .pyc included; pip, setuptools, wheel and
_distutils_hack left out: every venv has them) with the largest distributions. For the agent venv it
then runs `clustertop agent --once --dry-run` (the node's whole job, once) and prints its wall time,
its import time (PYTHONPROFILEIMPORTTIME, every module the run loads) and its peak RSS (os.wait4 on
that one process, so pip's own children never count).

Exits 1 if the agent extra is over its limit (40 MB: what a node is given, issue 14): the one figure
here with a budget. Everything else is informational.

    python bench/install_footprint.py            # agent, dashboard and all; 10 agent runs
    python bench/install_footprint.py --quick    # CI smoke: the agent extra only, 3 runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import install  # noqa: E402

AGENT_LIMIT_MB = 40.0
MB = 1e6


def agent_run(venv: Path, cwd: Path, profile_imports: bool) -> tuple[float, float, str]:
    """One `clustertop agent --once --dry-run`: (wall s, peak RSS MB, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "PYTHON"))}
    if profile_imports:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    argv = [str(install.bin_path(venv, "clustertop")), "agent", "--once", "--dry-run", "--node", "bench"]
    with open(cwd / "out.json", "wb") as out, open(cwd / "err.txt", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=env)
        # wait4: the rusage of this one child (RUSAGE_CHILDREN would be the largest of all, pip included).
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = (cwd / "err.txt").read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"clustertop agent --once --dry-run failed ({proc.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss * 1024 / MB, stderr  # ru_maxrss: KiB on Linux


def import_time(stderr: str) -> tuple[float, int]:
    """(ms, modules) from PYTHONPROFILEIMPORTTIME's report: the sum of the top-level cumulative times."""
    total_us, modules = 0, 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        modules += 1
        if not name[1:].startswith(" "):  # nested imports are indented; their time is in their parent's
            total_us += int(cumulative)
    return total_us / 1000, modules


def measure_agent(venv: Path, scratch: Path, runs: int) -> None:
    agent_run(venv, scratch, profile_imports=False)  # warm-up: the first start reads the fresh venv from disk
    walls, rsss = [], []
    for _ in range(runs):
        wall, rss, _ = agent_run(venv, scratch, profile_imports=False)
        walls.append(wall)
        rsss.append(rss)
    imports = [import_time(agent_run(venv, scratch, profile_imports=True)[2]) for _ in range(runs)]
    ms = statistics.median(i[0] for i in imports)
    print(f"  clustertop agent --once --dry-run (median of {runs}): {statistics.median(walls):.2f} s wall, "
          f"imports {ms:.0f} ms ({imports[0][1]} modules), peak RSS {statistics.median(rsss):.1f} MB "
          f"(max {max(rsss):.1f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: the agent extra only, 3 runs")
    ap.add_argument("--runs", type=int, default=None, help="agent runs to take the median of (default 10)")
    ap.add_argument("--keep", action="store_true", help="keep the venvs (their folder is printed)")
    args = ap.parse_args()
    extras = ["agent"] if args.quick else ["agent", "dashboard", "all"]
    runs = args.runs or (3 if args.quick else 10)

    work = Path(tempfile.mkdtemp(prefix="ct-footprint-"))
    over = False
    try:
        t0 = time.perf_counter()
        wheel = install.build_wheel(work / "wheel")
        print(f"wheel: {wheel.name}, {wheel.stat().st_size / MB:.2f} MB, built in {time.perf_counter() - t0:.1f} s")
        for extra in extras:
            t0 = time.perf_counter()
            venv = install.make_venv(work / f"venv-{extra}", wheel, extra)
            took = time.perf_counter() - t0
            total, per_dist = install.footprint(venv)
            limit = f" (limit {AGENT_LIMIT_MB:.0f} MB)" if extra == "agent" else ""
            print(f"{extra} extra: {total / MB:.1f} MB{limit}, {len(per_dist)} distributions, "
                  f"venv + install {took:.1f} s")
            largest = ", ".join(f"{name} {size / MB:.1f}" for name, size in list(per_dist.items())[:6])
            print(f"  largest (MB): {largest}")
            if extra == "agent":
                over = total / MB > AGENT_LIMIT_MB
                if over:
                    print(f"  OVER THE LIMIT: the agent extra must stay within {AGENT_LIMIT_MB:.0f} MB")
                scratch = work / "agent-run"
                scratch.mkdir()
                measure_agent(venv, scratch, runs)
    finally:
        if args.keep:
            print(f"venvs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
