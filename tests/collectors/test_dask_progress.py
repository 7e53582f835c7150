"""Dask progress (``collectors/dask_progress.py``) on a real ``distributed`` scheduler with three real
workers (the ``cluster`` fixture of test_dask.py): a computation of 20 tasks of which 4 fail shows as
16 in memory and 4 erred, the task stream lists those tasks with their workers. Nothing is faked; the
parser is also fed hostile answers."""

from __future__ import annotations

import math
import operator
import threading
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
        stream = seen["q"].dask_task_stream
        assert stream is not None
        mine = [t for t in stream if t.key.startswith("flaky-")]
        assert mine and all(t.worker and t.worker.startswith("tcp://127.0.0.1:") for t in mine)
        errors = {t.key for t in mine if t.status == "error"}
        assert errors <= {f"flaky-{i}" for i in range(0, 20, 5)} and errors
        assert all(t.start_ts is not None and t.stop_ts is not None and t.stop_ts >= t.start_ts
                   for t in mine if t.status == "OK")
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
        http_500 = 0
        for _ in range(20):
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
    raw = {"computations": [{"id": "a" * 10_000, "start": math.nan, "groups": ["g", 5, None],
                             "states": {"memory": 2**64, "erred": 3, "x" * 100: -1, "processing": True}},
                            "junk", {"id": 7}],
           "stream": [{"key": "\x1b[2Jk", "worker": ["w"], "status": "OK", "start": 2**70, "stop": 5.0}, {}]}
    comps, stream = dask_progress.parse_progress(raw)
    assert comps is not None and len(comps) == 1
    assert len(comps[0].id) == dask_progress.TEXT_MAX and comps[0].start_ts is None
    assert comps[0].states == {"erred": 3} and comps[0].groups == ["g", "5"]
    assert stream is not None and len(stream) == 1 and stream[0].start_ts is None and stream[0].stop_ts == 5.0
    q = schema.Queues(dask_computations=comps, dask_task_stream=stream)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(q), type=schema.Queues) == q
