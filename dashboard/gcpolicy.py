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
"""

from __future__ import annotations

import gc

#: The collector's rule, applied in idle time: a young pass once this many tracked objects are net
#: new since the last one, a middle pass every 20 young ones, a full pass every 20 middle ones.
YOUNG_LIMIT = 10_000
MIDDLE_EVERY = 20
FULL_EVERY = 20
#: The automatic young threshold: well above one read's objects in flight (~28k tracked containers
#: measured at 1,000 nodes x 8 GPUs on the overview), so the automatic collector runs only when
#: idle-time collection does not (nothing refreshing, or a cluster far past the benchmark's).
AUTO_YOUNG = 250_000

_tuned = False


def tune() -> None:
    """Freeze start-up and hand the collector's timing to ``collect_if_due`` (idempotent)."""
    global _tuned
    gc.collect()
    gc.freeze()
    # The middle and full limits sit above the idle rule's, so an automatic young pass cannot
    # escalate before idle time would have (the interpreter counts explicit passes the same way).
    gc.set_threshold(AUTO_YOUNG, MIDDLE_EVERY + 1, FULL_EVERY + 1)
    _tuned = True


def collect_if_due() -> int | None:
    """Run the collection the counts call for; returns its generation, None when none was due
    (or ``tune`` was never called: the interpreter's own policy is then left alone)."""
    if not _tuned or not gc.isenabled():
        return None
    young, middle, full = gc.get_count()
    if young < YOUNG_LIMIT:
        return None
    generation = 2 if full >= FULL_EVERY else 1 if middle >= MIDDLE_EVERY else 0
    gc.collect(generation)
    return generation


def untune(thresholds: tuple[int, int, int]) -> None:
    """Back to automatic collection at ``thresholds``, idle-time collection off (the benchmark
    compares policies in one process)."""
    global _tuned
    gc.set_threshold(*thresholds)
    _tuned = False
