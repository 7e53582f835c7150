"""Provides the simulated Dask scheduler's progress: its computations (tasks by state) and task stream, shaped
as ``collectors.dask_progress`` publishes a real scheduler's (``Queues.dask_computations`` /
``dask_task_stream``), so the demo's Task history tab shows "N of M done" rows and the task stream timeline.

Each graph ``QueuesModel.dask_graph`` submits is one computation of a few task groups (a load, a transform,
an aggregate); what the model's workers get through each step finishes its tasks oldest computation first,
and each worker thread's recent tasks (0.2 to 1 s each, now and then one erring) make the stream, the last
``STREAM_N`` kept as the scheduler's plugin keeps its buffer. Its own ``random.Random``, seeded from the
workers' addresses: the rest of the simulation draws the same numbers with or without it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from clustertop.wire import schema

#: As the real collector: the last 10 computations, the last 30 stream entries.
COMPUTATIONS_N = 10
STREAM_N = 30
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
    stream: list[schema.DaskStreamTask] = field(default_factory=list)
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
        self.stream.sort(key=lambda s: s.stop_ts or 0.0)
        del self.stream[:-STREAM_N]

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

    def recent(self, now: float) -> list[schema.DaskStreamTask] | None:
        """The entries that have ended by ``now`` (a thread's last task may still be running)."""
        if not self.started:
            return None
        return [s for s in self.stream if (s.stop_ts or 0.0) <= now]
