"""Provides ``run``: start the dashboard in this terminal and return an exit code."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from dashboard.settings import Settings

#: Young-generation threshold once start-up is frozen (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the refresh path.

    Every read decodes ~100k objects (1,000 snapshots x 8 GPUs); at CPython's default thresholds
    that triggered full collections of 60-90 ms every few reads, each walking every object the
    app holds (Textual, Rich, CSS, widgets). Snapshots hold no reference cycles and are freed by
    reference counting, so the collector has almost nothing to find. Collect once, move what
    start-up made (imports, the app) into the permanent generation where collections never look,
    and collect the young generation only every 10,000 net allocations. Measured at 1,000 nodes:
    read p95 590 -> ~70 ms. Cycles still get collected, only less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def run(settings: Settings, client_factory: Callable[[], Any]) -> int:
    from dashboard.app import make_app

    app = make_app(settings, client_factory)
    tune_gc()  # after the imports and the app are built: they live as long as the process
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)
