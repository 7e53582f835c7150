"""Provides the runner: each collector on its own interval and timeout, isolated from the others.

Collectors run in a small pool of daemon threads. A tick submits the collectors that are due,
waits for them at most until the tick's budget, and reports every collector's status. A
collector still running from before is *not* started again (its ``skipped`` count grows), so
a hung NFS stat or NVML call holds one thread, never a growing pile of them. Daemon threads on
purpose: a call stuck in the kernel must not keep the process from exiting.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from clustertop.collectors import base
from clustertop.errors import describe
from clustertop.wire import schema

log = logging.getLogger("clustertop.runner")

#: What a collector's field holds when it raises NoData. "No GPUs" is a fact worth showing
#: (an empty list), not an unknown; every other field stays None (N/A).
NODATA_VALUES: dict[str, Any] = {"gpus": []}

#: A failing collector's last good value stays in the snapshot this long (at least), with
#: last_ok_ts telling its age; after that the field reads None rather than pretend.
KEEP_LAST_GOOD_S = 30.0
KEEP_LAST_GOOD_INTERVALS = 3.0


@dataclass
class Slot:
    """One collector and everything the runner knows about it."""

    name: str
    collector: Any | None  # None when it could not be built (error says why)
    field: str
    scope: str
    interval_s: float
    timeout_s: float
    status: schema.CollectorStatus
    value: Any = None  # last good value
    value_ts: float | None = None
    next_due: float = 0.0
    future: Future[Any] | None = None
    started: float = 0.0  # monotonic start of the running call
    calls: int = 0
    fresh: bool = False  # a result (or a timeout) landed on the latest tick
    timed_out: bool = False
    gate: Callable[[], bool] | None = None  # cluster scope: may we run now (lease held)?


@dataclass
class _Pool:
    """A fixed set of daemon worker threads fed from one queue."""

    size: int
    _q: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    #: Every call that ended, as it ends: the runner waits on this one queue rather than with
    #: concurrent.futures.wait, which builds a waiter and locks every future on each call (a third of
    #: the runner's cost per tick, measured).
    done: queue.SimpleQueue[Future[Any]] = field(default_factory=queue.SimpleQueue)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.size):
            t = threading.Thread(target=self._work, name=f"collector-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        fut: Future[Any] = Future()
        self._q.put((fut, fn))
        return fut

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            # The call's own duration, not when the runner got round to looking at it.
            fut.t_start = time.monotonic()  # type: ignore[attr-defined]
            try:
                result = fn()
            except BaseException as e:  # noqa: B036 - handed to the runner, which reports it
                fut.t_end = time.monotonic()  # type: ignore[attr-defined]
                fut.set_exception(e)
            else:
                fut.t_end = time.monotonic()  # type: ignore[attr-defined]
                fut.set_result(result)
            self.done.put(fut)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._q.put(None)


class Runner:
    def __init__(self, slots: Iterable[Slot], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.slots = {s.name: s for s in slots}
        self.clock = clock
        self.wall = wall
        runnable = sum(1 for s in self.slots.values() if s.collector is not None)
        # One thread per collector: at most one call per collector is ever in flight, so the
        # pool can never be starved by a hung collector.
        self._pool = _Pool(max(1, runnable))

    def jitter_first_runs(self, rng: random.Random | None = None) -> None:
        """Spread first runs of cluster-scope collectors, so agents restarted together do not
        all poll the source in the same instant."""
        rng = rng or random.Random()
        now = self.clock()
        for s in self.slots.values():
            if s.scope == "cluster":
                s.next_due = now + rng.uniform(0, min(s.interval_s, 10.0) / 2)

    def tick(self, budget_s: float, run_all: bool = False) -> None:
        """Run what is due and wait for it at most ``budget_s`` (per collector also its timeout).

        ``run_all``: every collector now, gates ignored (``--dry-run``).
        """
        start = self.clock()
        done = self._pool.done
        while not done.empty():  # ends of calls harvested below or in earlier ticks: nothing to wait for
            done.get_nowait()
        for s in self.slots.values():
            s.fresh = False
            self._harvest(s)
        running: dict[Future[Any], Slot] = {}
        for s in self.slots.values():
            if s.collector is None:
                continue
            due = run_all or start >= s.next_due
            if not due or (not run_all and s.gate is not None and not s.gate()):
                if s.future is not None:
                    running[s.future] = s
                continue
            if s.future is not None:
                # Still busy from an earlier tick: never stack a second call on a hung one.
                s.status.skipped += 1
                s.next_due = start + s.interval_s
                running[s.future] = s
                continue
            s.started = self.clock()
            s.calls += 1
            s.timed_out = False
            s.future = self._pool.submit(s.collector.collect)
            # Keep the collector's own cadence; after a long stall, restart it instead of bursting.
            s.next_due = s.next_due + s.interval_s
            if s.next_due <= start:
                s.next_due = start + s.interval_s
            running[s.future] = s
        deadline = start + budget_s
        # Calls already reported as timed out are not waited for: they would only delay the rest.
        # One that ended since the queue was emptied above may be both done here and in the queue: harmless.
        pending = {f for f, s in running.items() if not s.timed_out and not f.done()}
        while pending:
            now = self.clock()
            # Wait no longer than the tick budget, nor past the earliest running call's timeout.
            limit = min([deadline] + [running[f].started + running[f].timeout_s for f in pending])
            if now >= limit:
                break
            try:
                pending.discard(done.get(timeout=limit - now))
            except queue.Empty:
                pass  # the limit is checked again above
        for s in running.values():
            self._harvest(s)
            self._check_timeout(s)

    def _harvest(self, s: Slot) -> None:
        fut = s.future
        if fut is None or not fut.done():
            return
        s.future = None
        s.fresh = True
        t_start, t_end = getattr(fut, "t_start", None), getattr(fut, "t_end", None)
        elapsed = t_end - t_start if t_start is not None and t_end is not None else self.clock() - s.started
        st = s.status
        st.duration_ms = round(elapsed * 1000, 2)
        exc = fut.exception()
        if exc is None:
            st.ok, st.error = True, None
            s.value, s.value_ts = fut.result(), self.wall()
            st.last_ok_ts = s.value_ts
        elif isinstance(exc, base.NoData):
            st.ok, st.error = True, None
            s.value, s.value_ts = NODATA_VALUES.get(s.field), self.wall()
            st.last_ok_ts = s.value_ts
        else:
            if st.ok or st.error != describe(exc):
                log.warning("collector %s failed: %s", s.name, describe(exc))
            st.ok, st.error = False, describe(exc)

    def _check_timeout(self, s: Slot) -> None:
        if s.future is None or s.timed_out:
            return
        elapsed = self.clock() - s.started
        if elapsed >= s.timeout_s:
            s.timed_out = True
            s.fresh = True
            s.status.ok = False
            s.status.error = f"timed out after {s.timeout_s:g} s"
            s.status.duration_ms = round(elapsed * 1000, 2)
            log.warning("collector %s timed out after %g s; not restarted until it returns", s.name, s.timeout_s)

    def value(self, s: Slot) -> Any:
        """The value for the snapshot: the last good one while it is not too old."""
        if s.value_ts is None:
            return None
        keep = max(KEEP_LAST_GOOD_S, KEEP_LAST_GOOD_INTERVALS * s.interval_s)
        return s.value if self.wall() - s.value_ts <= keep else None

    def close(self) -> None:
        for s in self.slots.values():
            if s.collector is not None and s.future is None:
                try:
                    s.collector.close()
                except Exception as e:  # closing is best effort; report and carry on
                    log.debug("closing %s: %s", s.name, describe(e))
        self._pool.shutdown()
