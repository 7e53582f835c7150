"""Provides the simulated Dask scheduler's progress: its computations (tasks by state) and task stream, shaped
as ``collectors.dask_progress`` publishes a real scheduler's (``Queues.dask_computations`` / ``dask_stream``),
so the demo's Task history tab shows "N of M done" rows and the task stream timeline.

Each graph ``QueuesModel.dask_graph`` submits is one computation of a few task groups (a load, a transform,
an aggregate); what the model's workers get through each step finishes its tasks oldest computation first,
and each worker thread's tasks (0.2 to 1 s each, now and then one erring) make the stream: counted once
ended by the collector's own ``tally`` into (prefix, worker, second) buckets and folded over the last minute
by its ``fold_stream``, as a real scheduler's are. Its own ``random.Random``, seeded from the workers'
addresses: the rest of the simulation draws the same numbers with or without it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from clustertop.collectors import dask_progress as real
from clustertop.wire import schema

#: As the real collector: the last 10 computations.
COMPUTATIONS_N = 10
THREADS = 4  # each simulated worker's nthreads (services.QueuesModel publishes 4)
#: Task groups of a graph, in order; the share of tasks that err (a malformed partition).
GROUPS = (("read-parquet", "normalize", "sum-aggregate"), ("load-images", "augment", "embed"),
          ("read-csv", "clean", "groupby-agg"))
ERR_SHARE = 0.015


@dataclass
class SimComputation:
    id: str
    start: float
    groups: tuple[str, ...]
    total: int
    done: int = 0
    erred: int = 0


@dataclass
class DaskProgress:
    workers: list[str]  # worker addresses
    rng: random.Random = field(default_factory=random.Random)
    comps: list[SimComputation] = field(default_factory=list)
    stream: list[schema.DaskStreamTask] = field(default_factory=list)  # started, not yet tallied
    buckets: dict[Any, list[Any]] = field(default_factory=dict)  # tally's (prefix, worker, second) buckets
    since: float | None = None  # when the stream started (the real plugin: when the collector added it)
    pending: list[int] = field(default_factory=list)  # graph sizes submitted since the last step
    free_at: dict[tuple[str, int], float] = field(default_factory=dict)  # (worker, thread) -> busy until
    started: bool = False

    @classmethod
    def for_workers(cls, workers: list[str]) -> DaskProgress:
        return cls(workers, random.Random(",".join(workers) or "no-dask"))

    def added(self, tasks: int) -> None:
        self.pending.append(tasks)

    def step(self, now: float, finished: int) -> None:
        """Graphs submitted since the last step become computations; ``finished`` tasks end, oldest first."""
        self.started = True
        if self.since is None:
            self.since = now
        for n in self.pending:
            groups = GROUPS[len(self.comps) % len(GROUPS)]
            self.comps.append(SimComputation(id=f"{self.rng.getrandbits(64):016x}"[:12], start=now, groups=groups,
                                             total=n))
        self.pending.clear()
        self.comps = self.comps[-COMPUTATIONS_N:]
        left = finished
        running = None
        for c in self.comps:
            todo = c.total - c.done - c.erred
            if todo <= 0 or left <= 0:
                continue
            n = min(todo, left)
            errs = sum(1 for _ in range(min(n, 50)) if self.rng.random() < ERR_SHARE)
            c.erred += errs
            c.done += n - errs
            left -= n
            running = running or c
        if running is not None:
            self._stream(now, running)

    def _stream(self, now: float, c: SimComputation) -> None:
        """Each worker thread's tasks since it was last free, up to now (the stream's newest entries)."""
        for w in self.workers:
            for th in range(THREADS):
                t = max(self.free_at.get((w, th), now - 2.0), now - 2.0)
                while t < now:
                    d = self.rng.uniform(0.2, 1.0)
                    group = self.rng.choice(c.groups)
                    key = f"('{group}-{self.rng.getrandbits(128):032x}', {self.rng.randrange(2000)})"
                    status = "error" if self.rng.random() < ERR_SHARE else "OK"
                    self.stream.append(schema.DaskStreamTask(key=key, worker=w, status=status, start_ts=t,
                                                             stop_ts=t + d))
                    t += d + self.rng.uniform(0.0, 0.05)
                self.free_at[(w, th)] = t

    def computations(self) -> list[schema.DaskComputation] | None:
        if not self.started:
            return None
        out = []
        for c in self.comps:
            left = c.total - c.done - c.erred
            processing = min(left, len(self.workers) * THREADS)
            states = {"memory": c.done, "erred": c.erred, "processing": processing, "waiting": left - processing}
            out.append(schema.DaskComputation(id=c.id, start_ts=c.start, groups=list(c.groups),
                                              states={k: v for k, v in states.items() if v}))
        return out

    def folded(self, now: float) -> real.Folded | None:
        """The tasks that have ended by ``now`` (a thread's last task may still be running), folded over the
        last ``WINDOW_S`` as the real collector folds a scheduler's."""
        if not self.started or self.since is None:
            return None
        tally = real.make_tally(real.KEEP_S)
        running = []
        for t in self.stream:
            if t.stop_ts is not None and t.stop_ts <= now and t.start_ts is not None:
                tally(self.buckets, _group(t.key), t.worker, t.start_ts, t.stop_ts, t.status != "OK")
            else:
                running.append(t)
        self.stream = running
        for k in [k for k in self.buckets if k[2] < now - real.KEEP_S]:
            del self.buckets[k]
        return real.fold_stream([real.rows_of(self.buckets, max(now - real.WINDOW_S, self.since), now)])


def _group(key: str) -> str:
    """"('read-parquet-<32 hex>', 7)" -> "read-parquet": the simulator's keys are its group and a token."""
    return key.strip("('").split("', ")[0].rsplit("-", 1)[0]
