"""Provides the dashboard's garbage-collector policy: collect in the idle time after a repaint.

Every read decodes ~100k objects (1,000 snapshots x 8 GPUs). Snapshots hold no reference cycles and
are freed by reference counting, so the cyclic collector has almost nothing to find in them, yet at
CPython's thresholds it walked them mid-read: full collections of 60-90 ms every few reads at the
default 700, and still three young passes per read (2-7 ms each) plus a middle-generation pass of
40-80 ms every seventh read at a young threshold of 10,000. Those landed inside the refresh a person
waits for (at 1,000 nodes they were the p95: the overview's 170 ms with them, 125 ms without, in one
run of ``bench/dashboard_refresh.py --gc idle,young10k``).

So ``tune`` moves start-up (imports, the app) into the permanent generation, sets the automatic
thresholds high enough that one read's own objects never reach them, and ``collect_if_due``, called
once a read is on screen and the previous one let go, runs the collection the interpreter would
have run, by the same rule (the oldest generation whose count passed its limit), while the dashboard
is idle until the next refresh. Cycles are collected as often as before, only not mid-refresh. The
automatic collection stays on as the backstop: if refreshes stop, it takes over at its own pace.

A pass that is slow (a big cluster's read on screen: 75-200 ms at 10,000 nodes x 8 GPUs) puts the next
one off by ``SPACING`` times its length, so cycles are then collected every few seconds instead of
every refresh, for a fraction of the time (``collect_if_due``).
"""

from __future__ import annotations

import gc
import time

#: The collector's rule, applied in idle time: a young pass once this many tracked objects are net
#: new since the last one, a middle pass every 20 young ones, a full pass every 20 middle ones.
YOUNG_LIMIT = 10_000
MIDDLE_EVERY = 20
FULL_EVERY = 20
#: The automatic young threshold: well above one read's objects in flight, so the automatic collector
#: runs only when idle-time collection does not (nothing refreshing, or a cluster far past the
#: benchmark's). Measured (tracked containers a read leaves, the previous read still held): ~28k at
#: 1,000 nodes x 8 GPUs on the overview; at 10,000 nodes ~12k for the overview's digests but ~200k for
#: the GPU table's read plus ~110k for its rows, so at 250,000 young passes of 40-90 ms each ran inside
#: nearly every GPU-table refresh there (bench/dashboard_refresh.py --nodes 10000).
AUTO_YOUNG = 1_000_000

_tuned = False


def tune() -> None:
    """Freeze start-up and hand the collector's timing to ``collect_if_due`` (idempotent)."""
    global _tuned, _next_pass
    gc.collect()
    gc.freeze()
    # The middle and full limits sit above the idle rule's, so an automatic young pass cannot
    # escalate before idle time would have (the interpreter counts explicit passes the same way).
    gc.set_threshold(AUTO_YOUNG, MIDDLE_EVERY + 1, FULL_EVERY + 1)
    _tuned = True
    _next_pass = 0.0


#: A pass that took longer than this puts the next one off by ``SPACING`` times its length (unless the
#: young count nears ``AUTO_YOUNG``). A pass walks what survived since the last one, which after a repaint
#: is the read on screen: at 10,000 nodes x 8 GPUs on the GPU table that is ~300k containers and 75-200 ms,
#: a pass after every refresh. The reads in between are freed by reference counting and never walked, so a
#: pass every few seconds walks no more than one every second: GC held to ~1/SPACING of the time at that
#: size. At 1,000 nodes a pass takes ~5-10 ms and nothing changes.
SLOW_PASS_S = 0.040
SPACING = 20
_next_pass = 0.0


def collect_if_due() -> int | None:
    """Run the collection the counts call for; returns its generation, None when none was due
    (or ``tune`` was never called: the interpreter's own policy is then left alone)."""
    global _next_pass
    if not _tuned or not gc.isenabled():
        return None
    young, middle, full = gc.get_count()
    if young < YOUNG_LIMIT:
        return None
    t0 = time.perf_counter()
    if t0 < _next_pass and young < AUTO_YOUNG // 2:
        return None
    generation = 2 if full >= FULL_EVERY else 1 if middle >= MIDDLE_EVERY else 0
    gc.collect(generation)
    took = time.perf_counter() - t0
    _next_pass = t0 + took * SPACING if took > SLOW_PASS_S else 0.0
    return generation


def untune(thresholds: tuple[int, int, int]) -> None:
    """Back to automatic collection at ``thresholds``, idle-time collection off (the benchmark
    compares policies in one process)."""
    global _tuned
    gc.set_threshold(*thresholds)
    _tuned = False
