"""The simulated Dask scheduler's progress (sim/dask_progress.py): computations whose states add up to the
graph's tasks, a stream of the tasks that ended in the last minute on the simulated workers (folded as the real
collector folds a scheduler's), and
its own random numbers (the rest of the simulation is the same whatever it draws)."""

from __future__ import annotations

import random

import msgspec

from clustertop.sim.dask_progress import GROUPS
from clustertop.sim.simulate import SimCluster

GROUP_NAMES = {g for groups in GROUPS for g in groups}

T0 = 1_767_225_600.0


def run(alt_rng: bool, steps: int = 200) -> tuple[list[bytes], list[bytes], list[object]]:
    sim = SimCluster(seed=4, start_ts=T0)
    sim.step(T0)
    if alt_rng:
        sim.queues.dask_progress.rng = random.Random(99)
    rest, dask = [], []
    for i in range(1, steps):
        snaps, cluster = sim.step(T0 + 2.0 * i)
        rest += [msgspec.msgpack.encode(s) for s, _h in snaps]
        rest += [msgspec.msgpack.encode(p) for p in cluster if p.name != "dask"]
        dask += [p.queues for p in cluster if p.name == "dask"]
    return rest, [msgspec.msgpack.encode(q.workers) for q in dask], dask


def test_computations_and_stream_are_consistent_and_bounded() -> None:
    _rest, _workers, dask = run(False)
    last = dask[-1]
    comps = last.dask_computations
    assert comps, "no computation in 400 s of the demo"
    addrs = {w.name for w in last.workers}
    for q in dask[1:]:
        for c in q.dask_computations or ():
            assert c.states and all(v > 0 for v in c.states.values()) and c.groups
        stream = q.dask_stream or []
        assert q.dask_task_stream is None and len(stream) <= 1500
        assert all(bk.worker in addrs and bk.prefix in GROUP_NAMES for bk in stream)
        if stream:  # the last minute of ended tasks, as the real collector folds a scheduler's
            assert q.dask_stream_to_ts is not None and q.dask_stream_from_ts is not None
            assert q.dask_stream_to_ts - q.dask_stream_from_ts <= 60 and q.dask_stream_bucket_s == 1.0
            assert all(q.dask_stream_from_ts - 1 < bk.t <= q.dask_stream_to_ts for bk in stream)
            assert all(0 <= (bk.errors or 0) <= (bk.tasks or 0) for bk in stream)
        total = sum(sum((c.states or {}).values()) for c in q.dask_computations or ())
        left = sum(v for c in q.dask_computations or () for k, v in (c.states or {}).items()
                   if k in ("processing", "waiting"))
        # What the workers' counts say is waiting or processing is what the computations have left.
        assert left == (q.dask_tasks_waiting or 0) + (q.dask_tasks_processing or 0) or total == 0
    assert any(q.dask_stream for q in dask), "no stream"
    # While a graph runs, the 4 threads of each worker are busy over half of the minute the stream covers.
    busiest = max(sum(bk.busy_s or 0.0 for bk in q.dask_stream or ()) for q in dask)
    assert busiest > 0.5 * 60 * 4 * len(addrs), busiest


def test_its_own_random_numbers_leave_the_rest_of_the_simulation_alone() -> None:
    rest_a, workers_a, dask_a = run(False, 120)
    rest_b, workers_b, dask_b = run(True, 120)
    assert rest_a == rest_b and workers_a == workers_b
    ids = [[c.id for c in q.dask_computations or ()] for q in dask_a]
    assert ids != [[c.id for c in q.dask_computations or ()] for q in dask_b]  # it did draw differently
