"""Bucket summaries (issue 18): what folding, sealing and opening them costs, and how big they are, at N simulated
8-GPU nodes (default 1,000 and 10,000). No Redis: the pure parts, CPU time (``time.process_time``) of this process,
median of ``--repeats``; printed with the machine's load.

- ``summarize``: ``read.cluster.summarize`` as it is now (added up bucket by bucket, so that summaries merge to the
  same bits) against the same-run baseline of the one-pass version it replaced (commit BASELINE_REV's, loaded from git when
  it still differs);
- fold: every bucket's ``read.summary.fold``, with GPU columns from the briefs' GPUs (what a summary node reading
  at ``Level.GPUS`` does) and without (``gpu_columns = false``, digests only): ms per 1,000 nodes;
- seal (encode + sign + pack) and ``open_summary`` (inflate, decode, verify, check) of every bucket, and the
  signature check alone; bytes per bucket (body, and the packed value SET in Redis);
- the reader's merge of the 64 summaries (totals, alerts, busiest) against ``summarize`` + ``alerts`` over
  every node.

    python bench/summary_fold.py
    python bench/summary_fold.py --quick    # CI smoke: 200 nodes
    python bench/summary_fold.py --nodes 1000 --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clustertop import wire  # noqa: E402
from clustertop.control import signing  # noqa: E402
from clustertop.control.summary import open_summary, seal  # noqa: E402
from clustertop.read.cluster import alerts, by_bucket, summarize  # noqa: E402
from clustertop.read.model import NodeView  # noqa: E402
from clustertop.read.summary import fold, merge, merged_alerts, merged_busiest  # noqa: E402
from clustertop.sim.simulate import SimCluster  # noqa: E402
from clustertop.wire import schema  # noqa: E402
from clustertop.wire.digest import digest  # noqa: E402
from clustertop.wire.summary import BucketCheckMemo, SignedSummary  # noqa: E402


def cpu_ms(fn: Callable[[], Any], repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        out.append((time.process_time() - t0) * 1000)
    return statistics.median(out)


#: The last commit with the one-pass ``summarize`` (before bucket summaries): the same-run baseline, read from git.
BASELINE_REV = "7320c40"


def baseline_summarize() -> Callable[..., Any] | None:
    """The one-pass ``summarize`` of ``BASELINE_REV`` (None where git or that commit is not there)."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_REV}:clustertop/read/cluster.py"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if "def fold_totals" in src:
        return None
    mod = types.ModuleType("cluster_head")
    sys.modules["cluster_head"] = mod  # dataclasses look their module up
    exec(compile(src, "cluster_head.py", "exec"), mod.__dict__)  # noqa: S102 - this repository's own code
    return mod.summarize  # type: ignore[no-any-return]


def views_of(n: int) -> tuple[list[NodeView], list[NodeView]]:
    sim = SimCluster(seed=1, nodes=n, gpus_per_node=8)
    ticks, _ = sim.step(1_750_000_000.0)
    snaps = sorted((s for s, _ in ticks), key=lambda s: s.host)
    digests = [digest(s) for s in snaps]
    gpus = [NodeView(s.host, "up", snap=schema.NodeSnapshot(host=s.host, ts=s.ts, seq=s.seq, gpus=s.gpus), digest=d)
            for s, d in zip(snaps, digests, strict=True)]
    only = [NodeView(s.host, "up", digest=d) for s, d in zip(snaps, digests, strict=True)]
    return gpus, only


def run(n: int, repeats: int, key: signing.PrivateKey, known: dict[str, signing.PublicKey]) -> None:
    gpus, only = views_of(n)
    now = time.time()
    groups_g, groups_d = by_bucket(gpus), by_bucket(only)

    def fold_all(groups: list[list[NodeView]], cols: bool) -> list[Any]:
        return [fold(g, b, "sum01", now, seq=1, interval_s=1.0, gpu_columns=cols) for b, g in enumerate(groups)]

    print(f"\n{n:,} nodes x 8 GPUs, {len(groups_g)} buckets ({min(map(len, groups_g))}-{max(map(len, groups_g))} "
          f"nodes each); load {os.getloadavg()[0]:.2f}")
    old = baseline_summarize()
    new_ms = cpu_ms(lambda: summarize(only), repeats)
    if old is not None:
        old_ms = cpu_ms(lambda: old(only), repeats)
        print(f"  summarize, every digest: one pass ({BASELINE_REV}) {old_ms:.1f} ms, by bucket (now) {new_ms:.1f} ms "
              f"({new_ms / old_ms:.2f}x)")
    else:
        print(f"  summarize, every digest: {new_ms:.1f} ms")
    on = cpu_ms(lambda: fold_all(groups_g, True), repeats)
    off = cpu_ms(lambda: fold_all(groups_d, False), repeats)
    print(f"  fold every bucket: GPU columns on {on:.1f} ms ({on * 1000 / n:.2f} ms per 1,000 nodes), "
          f"off {off:.1f} ms ({off * 1000 / n:.2f} ms per 1,000 nodes)")
    for label, groups, cols in (("columns on", groups_g, True), ("columns off", groups_d, False)):
        wire_costs(label, fold_all(groups, cols), n, repeats, key, known)
    every_ms = cpu_ms(lambda: (summarize(only), alerts(only)), repeats)
    print(f"  for comparison: summarize + alerts over every digest {every_ms:.1f} ms")


def wire_costs(label: str, summaries: list[Any], n: int, repeats: int, key: signing.PrivateKey,
               known: dict[str, signing.PublicKey]) -> None:
    sealed: list[bytes] = []

    def seal_all() -> None:
        sealed[:] = [seal(s, key) for s in summaries]

    seal_ms = cpu_ms(seal_all, repeats)
    bodies = [len(wire.decode(v, SignedSummary).body) for v in sealed]
    packed = [len(v) for v in sealed]
    opened: list[Any] = []
    memo = BucketCheckMemo()  # a reader's own, read after read (``Reader.bucket_check``), as the dashboard opens them

    def open_all() -> None:
        opened[:] = [open_summary(v, known, b, memo=memo)[0] for b, v in enumerate(sealed)]

    open_ms = cpu_ms(open_all, repeats)
    assert all(o is not None for o in opened)
    lean: list[Any] = []

    def open_lean() -> None:  # the overview's open: the GPU columns skipped (open_summary(columns=False))
        lean[:] = [open_summary(v, known, b, columns=False, memo=memo)[0] for b, v in enumerate(sealed)]

    lean_ms = cpu_ms(open_lean, repeats)
    assert all(o is not None for o in lean)
    signed = [wire.decode(v, SignedSummary) for v in sealed]
    pub = known["sum01"]
    verify_ms = cpu_ms(lambda: [signing.check_bytes("summary", s.body, s.key_id, s.sig, pub) for s in signed], repeats)
    merge_ms = cpu_ms(lambda: (merge(opened, None), merged_alerts(opened), merged_busiest(opened, 25)), repeats)
    print(f"  {label}: body {statistics.median(bodies):,.0f} B/bucket, packed {statistics.median(packed):,.0f} "
          f"B/bucket ({sum(packed) / 1024:,.0f} KiB for all, {sum(packed) / n:.0f} B/node per write); seal "
          f"{seal_ms / len(sealed):.2f} ms/bucket; open {open_ms / len(sealed):.2f} ms/bucket ({open_ms:.1f} ms all), "
          f"without the GPU columns {lean_ms / len(sealed):.2f} ms/bucket ({lean_ms:.1f} ms all), of which the "
          f"signature check {verify_ms / len(sealed) * 1000:.0f} us; merge of all {merge_ms:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 200 nodes, 2 repeats")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.repeats = [200], 2
    key = signing.new_key()
    known = {"sum01": key.public()}
    for n in args.nodes:
        run(n, args.repeats, key, known)


if __name__ == "__main__":
    main()
