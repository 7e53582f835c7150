"""Dask progress (``collectors/dask_progress.py``) on a real ``distributed`` scheduler with three real
workers (the ``cluster`` fixture of test_dask.py): a computation of 20 tasks of which 4 fail shows as
16 in memory and 4 erred, the task stream lists those tasks with their workers. Nothing is faked; the
parser is also fed hostile answers."""

from __future__ import annotations

import math
import operator
import threading
import time
from typing import Any

import httpx
import msgspec

from clustertop.collectors import dask_progress
from clustertop.wire import schema
from tests.collectors.test_dask import DaskCluster, cluster, collector, wait_for  # noqa: F401


def test_computation_states_and_task_stream(cluster: tuple[DaskCluster, Any]) -> None:  # noqa: F811
    c, client = cluster
    col = collector([c.url])
    try:
        col.collect()  # registers the task stream plugin when the scheduler had none
        # 1 / (i % 5): ZeroDivisionError for i = 0, 5, 10, 15. A stdlib function, so the workers import it
        # by name (a function of this test module would have to be importable there).
        futures = client.map(operator.truediv, [1] * 20, [i % 5 for i in range(20)], pure=False,
                             key=[f"flaky-{i}" for i in range(20)])
        wait_for("all 20 tasks to end", lambda: all(f.done() for f in futures))
        seen: dict[str, schema.Queues] = {}

        def ours() -> schema.DaskComputation | None:
            q = seen["q"] = col.collect()
            for comp in q.dask_computations or ():
                if comp.groups and "flaky" in comp.groups:
                    return comp
            return None

        try:
            comp = wait_for("the computation", ours, timeout=15)
        except AssertionError:
            raise AssertionError(f"no computation of flaky in {seen.get('q')!r}") from None
        assert comp.states is not None
        assert comp.states.get("memory") == 16 and comp.states.get("erred") == 4
        assert comp.start_ts is not None
        # The stream, folded per (prefix, worker, second): every one of the 20 tasks, the 4 errors, nothing lost.
        q = seen["q"]
        assert q.dask_task_stream is None  # the last-N entries are no longer shipped
        mine = [bk for bk in q.dask_stream or () if bk.prefix == "flaky"]
        assert sum(bk.tasks or 0 for bk in mine) == 20 and sum(bk.errors or 0 for bk in mine) == 4, mine
        assert all(bk.worker and bk.worker.startswith("tcp://127.0.0.1:") for bk in mine)
        assert q.dask_stream_bucket_s == 1.0
        assert q.dask_stream_from_ts is not None and q.dask_stream_to_ts is not None
        assert all(q.dask_stream_from_ts - 1 <= bk.t <= q.dask_stream_to_ts for bk in mine)
        assert all(bk.busy_s is not None and bk.busy_s >= 0 for bk in mine)
    finally:
        col.close()


def test_workers_are_read_while_the_cluster_is_busy(cluster: tuple[DaskCluster, Any]) -> None:  # noqa: F811
    """distributed's /json/identity.json answers HTTP 500 while a worker's last heartbeat carries task
    digests (tuple keys JSON refuses): on a busy cluster, most requests. The collector then asks the
    scheduler for the same document through its comm address, so a busy cluster's workers stay listed."""
    c, client = cluster
    col = collector([c.url])
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            client.gather(client.map(operator.add, range(40), range(40), pure=False))

    loader = threading.Thread(target=load, daemon=True)
    try:
        wait_for("a first identity (the comm address)", lambda: col.collect().workers)
        loader.start()
        http_500, rounds = 0, 0
        deadline = time.monotonic() + 90
        # At least 20 rounds, and on until the page has failed at least once (a busy heartbeat's timing is the
        # scheduler's: on a loaded machine the first task digests may come late), for at most 90 s.
        while rounds < 20 or (not http_500 and time.monotonic() < deadline):
            rounds += 1
            http_500 += httpx.get(f"{c.url}/json/identity.json", timeout=5).status_code == 500
            q = col.collect()
            assert len(q.workers) == 3 and all(w.online for w in q.workers), q
            assert not q.errors or not any("identity" in e for e in q.errors), q.errors
        # The case this test is about happened (the page failed while the collector listed the workers).
        assert http_500 > 0
    finally:
        stop.set()
        if loader.is_alive():
            loader.join(timeout=30)
        col.close()


def test_parse_progress_checks_every_field() -> None:
    assert dask_progress.parse_progress("nope") == (None, None)
    t = 1_700_000_000
    raw = {"computations": [{"id": "a" * 10_000, "start": math.nan, "groups": ["g", 5, None],
                             "states": {"memory": 2**64, "erred": 3, "x" * 100: -1, "processing": True}},
                            "junk", {"id": 7}],
           "stream": {"from": t - 60.0, "to": t + 0.5, "rows": [
               ["\x1b[2Jk" * 50, "tcp://w:1", t, 3, 0.25, 1],  # kept, its prefix cut
               ["ok", None, t - 10, 1, 0.0, 0],  # kept: a worker the scheduler did not name
               ["nan", "w", t, 1, math.nan, 0], ["inf", "w", t, 1, math.inf, 0], ["big", "w", t, 2**64, 1.0, 0],
               ["neg", "w", t, -1, 1.0, 0], ["err>n", "w", t, 1, 1.0, 2], ["late", "w", t + 3600, 1, 1.0, 0],
               ["bool", "w", True, 1, 1.0, 0], ["short", "w", t], "junk", [5, "w", t, 1, 1.0, 0]]}}
    comps, stream = dask_progress.parse_progress(raw)
    assert comps is not None and len(comps) == 1
    assert len(comps[0].id) == dask_progress.TEXT_MAX and comps[0].start_ts is None
    assert comps[0].states == {"erred": 3} and comps[0].groups == ["g", "5"]
    assert stream is not None and (stream.from_ts, stream.to_ts) == (t - 60.0, t + 0.5)
    assert stream.rows == [(("\x1b[2Jk" * 50)[:dask_progress.PREFIX_MAX], "tcp://w:1", t, 3, 0.25, 1),
                           ("ok", None, t - 10, 1, 0.0, 0)]
    for bad in ({"rows": [], "from": math.nan, "to": t}, {"rows": [], "from": t + 1, "to": t}, {"rows": "x"}, []):
        assert dask_progress.parse_stream(bad) is None, bad
    folded = dask_progress.fold_stream([stream])
    assert folded is not None
    q = schema.Queues(dask_computations=comps, dask_stream=folded.buckets, dask_stream_bucket_s=folded.bucket_s)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(q), type=schema.Queues) == q


def test_fold_stream_bounds_workers_prefixes_and_buckets() -> None:
    """However busy: at most BUCKETS_MAX buckets, the busiest WORKERS_MAX workers apart and the rest together
    (counted), the busiest PREFIXES_MAX prefixes; buckets widened, never tasks dropped."""
    t = 1_700_000_000
    rows = [(f"p{p}", f"tcp://w{w}:1", t - s, 2, 0.5 + w, 1 if p == 0 and s == 0 else 0)
            for w in range(100) for p in range(20) for s in range(60)]
    f = dask_progress.fold_stream([dask_progress.StreamRows(rows, t - 60.0, t + 1.0)])
    assert f is not None and len(f.buckets) <= dask_progress.BUCKETS_MAX
    assert sum(bk.tasks or 0 for bk in f.buckets) == 2 * len(rows)  # every task still counted
    assert sum(bk.errors or 0 for bk in f.buckets) == 100
    assert abs(sum(bk.busy_s or 0 for bk in f.buckets) - sum(r[4] for r in rows)) < 1.0
    assert f.bucket_s == 60.0 and f.other_workers == 100 - dask_progress.WORKERS_MAX
    named = {bk.worker for bk in f.buckets}
    assert len(named) == dask_progress.WORKERS_MAX + 1 and None in named and "tcp://w99:1" in named
    assert "tcp://w0:1" not in named  # the least busy are the ones folded together
    assert {bk.prefix for bk in f.buckets} >= {dask_progress.OTHER_PREFIX}
    assert len({bk.prefix for bk in f.buckets}) == dask_progress.PREFIXES_MAX + 1
    # A quiet cluster keeps 1-second buckets; two schedulers share one window.
    a = dask_progress.StreamRows([("inc", "tcp://a:1", t, 1, 0.1, 0)], t - 60.0, t + 1.0)
    b_ = dask_progress.StreamRows([("inc", "tcp://b:1", t - 5, 1, 0.1, 0)], t - 30.0, t + 2.0)
    f2 = dask_progress.fold_stream([a, b_])
    assert f2 is not None and f2.bucket_s == 1.0 and (f2.from_ts, f2.to_ts) == (t - 60.0, t + 2.0)
    assert [(bk.worker, bk.t) for bk in f2.buckets] == [("tcp://b:1", t - 5.0), ("tcp://a:1", float(t))]
    assert dask_progress.fold_stream([]) is None
    # Schedulers whose windows lie 10 minutes apart: the newest whole buckets, and the window starts there.
    wide = [(f"p{p}", f"tcp://w{w}:1", t - s, 1, 0.1, 0) for w in range(60) for p in range(15) for s in range(0, 600, 30)]
    f3 = dask_progress.fold_stream([dask_progress.StreamRows(wide, t - 600.0, t + 1.0)])
    assert f3 is not None and len(f3.buckets) <= dask_progress.BUCKETS_MAX and f3.bucket_s == 60.0
    assert f3.from_ts > t - 600 and all(bk.t >= f3.from_ts for bk in f3.buckets)
    # Names as long as parse_stream lets through: the bytes stay under STREAM_BYTES_MAX, the oldest going.
    long = [("p" * dask_progress.PREFIX_MAX + str(p), "w" * dask_progress.WORKER_MAX + str(w), t - s, 1, 0.1, 0)
            for w in range(60) for p in range(15) for s in range(60)]
    f4 = dask_progress.fold_stream([dask_progress.StreamRows(long, t - 60.0, t + 1.0)])
    assert f4 is not None and f4.buckets and len(msgspec.msgpack.encode(f4.buckets)) <= dask_progress.STREAM_BYTES_MAX
    assert t - 60 < f4.from_ts <= f4.to_ts and all(bk.t >= f4.from_ts for bk in f4.buckets)


def test_the_scheduler_plugin_bounds_itself_and_says_where_its_window_starts(
        cluster: tuple[DaskCluster, Any]) -> None:  # noqa: F811
    """The plugin on a real scheduler, installed by a probe with a tiny bound (4 x 1 buckets): past it the
    scheduler keeps the last 10 s only, and the answer's window starts there; its rows are cut to the bound
    the same way (whole seconds, the window moved up). The collector's own plugin is put back after."""
    c, client = cluster

    def remove(dask_scheduler: Any) -> None:
        if "clustertop-stream" in dask_scheduler.plugins:
            dask_scheduler.remove_plugin(name="clustertop-stream")

    client.run_on_scheduler(remove)
    probe = dask_progress.make_probe(rows_max=1)
    try:
        assert client.run_on_scheduler(probe)["stream"]["rows"] == []  # installed now: nothing yet
        for round_ in range(3):  # tasks ending in different seconds, on 3 workers: more than 4 buckets
            futures = client.map(operator.add, range(12), [round_] * 12, pure=False,
                                 key=[f"bounded-{round_}-{i}" for i in range(12)])
            wait_for("the round to end", lambda fs=futures: all(f.done() for f in fs))
            time.sleep(1.1)
        raw = client.run_on_scheduler(probe)["stream"]
        stream = dask_progress.parse_stream(raw)
        assert stream is not None and len(stream.rows) <= 1
        # More rows than the bound: only the newest whole second could be kept, and the window starts after
        # the seconds it dropped (not at the plugin's start, ~3.5 s earlier).
        assert stream.from_ts >= stream.to_ts - 2, (stream.from_ts, stream.to_ts)
        assert all(sec >= stream.from_ts - 1 for _p, _w, sec, *_ in stream.rows)
        since, cut = client.run_on_scheduler(
            lambda dask_scheduler: (dask_scheduler.plugins["clustertop-stream"].since,
                                    dask_scheduler.plugins["clustertop-stream"].cut))
        # Past 4 buckets it kept the last 10 s only and set where the window may start (here still before
        # the plugin's start, so the window starts at ``since``); never 0, which would mean "nothing lost".
        assert cut > 0 and since - 10 <= cut <= stream.to_ts - 10, (since, cut)
    finally:
        client.run_on_scheduler(remove)
