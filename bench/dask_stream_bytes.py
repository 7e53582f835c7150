"""The Dask task stream on the wire: the last 30 entries (before) against the stream folded per (prefix,
worker, second) over the last minute (now, collectors/dask_progress.py), on a real busy scheduler.

A real ``dask scheduler`` and 3 real workers (1, 2 and 3 threads; tests/collectors/test_dask.py's
DaskCluster) run small tasks of three prefixes without pause. After ``--seconds`` of load, one poll of the
real collector, and beside it what the old probe took (the ``TaskStreamPlugin``'s last 30 entries, read on
the scheduler in the same way). Prints, for each: the tasks it accounts for, the seconds it covers, and the
``queues`` cluster payload's bytes as the lease holder writes it (msgpack, then packed with the cluster
dictionary: ``wire.pack``), and the load (uptime). Informational: exits 0.

    python bench/dask_stream_bytes.py --seconds 30
"""

from __future__ import annotations

import argparse
import operator
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clustertop import wire  # noqa: E402
from clustertop.wire import schema  # noqa: E402
from tests.collectors.test_dask import WAIT_S, DaskCluster, collector  # noqa: E402


def old_stream(dask_scheduler: Any) -> list[dict[str, Any]] | None:
    """The old probe's stream: the TaskStreamPlugin's last 30 entries (added on the first call)."""
    from distributed.diagnostics.task_stream import TaskStreamPlugin

    plugin = dask_scheduler.plugins.get(TaskStreamPlugin.name)
    if plugin is None:
        dask_scheduler.add_plugin(TaskStreamPlugin(dask_scheduler))
        return None
    out = []
    for msg in list(plugin.buffer)[-30:]:
        compute = [s for s in msg.get("startstops", ()) if s.get("action") == "compute"]
        out.append({"key": str(msg.get("key")), "worker": msg.get("worker"), "status": msg.get("status"),
                    "start": compute[0].get("start") if compute else None,
                    "stop": compute[-1].get("stop") if compute else None})
    return out


def size(q: schema.Queues) -> tuple[int, int]:
    p = schema.ClusterPayload(name="dask", source_host="bench", ts=time.time(), ok=True, queues=q)
    raw = wire.encode(p)
    return len(raw), len(wire.pack(raw, "cluster"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 8 s of load")
    a = ap.parse_args()
    if a.quick:
        a.seconds = 8.0
    from distributed import Client

    c = DaskCluster(3)
    client = None
    stop = threading.Event()
    done = [0]
    try:
        client = Client(c.address, timeout=WAIT_S, set_as_default=False)
        client.wait_for_workers(3, timeout=WAIT_S)
        col = collector([c.url])
        col.collect()  # registers the folding plugin
        client.run_on_scheduler(old_stream)  # and the old probe's TaskStreamPlugin

        def load() -> None:
            i = 0
            while not stop.is_set():
                fs = [client.submit(fn, j, 1, key=f"{name}-{i}-{j}", pure=False)
                      for j in range(100) for name, fn in (("add", operator.add), ("mul", operator.mul),
                                                            ("sub", operator.sub))]
                client.gather(fs)
                done[0] += len(fs)
                i += 1

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(a.seconds)
        before_tasks = done[0]
        q = col.collect()
        entries = client.run_on_scheduler(old_stream) or []
        stop.set()
        t.join(timeout=60)
        old = schema.Queues(workers=q.workers, dask_task_stream=[
            schema.DaskStreamTask(key=e["key"], worker=e["worker"], status=e["status"], start_ts=e["start"],
                                  stop_ts=e["stop"]) for e in entries])
        new = schema.Queues(workers=q.workers, dask_stream=q.dask_stream, dask_stream_bucket_s=q.dask_stream_bucket_s,
                            dask_stream_from_ts=q.dask_stream_from_ts, dask_stream_to_ts=q.dask_stream_to_ts,
                            dask_stream_other_workers=q.dask_stream_other_workers)
        base = schema.Queues(workers=q.workers)  # what the payload costs without any stream
        times = [e["stop"] for e in entries if isinstance(e.get("stop"), float)]
        old_span = max(times) - min(times) if len(times) > 1 else 0.0
        assert q.dask_stream is not None and q.dask_stream_from_ts is not None and q.dask_stream_to_ts is not None
        new_span = q.dask_stream_to_ts - q.dask_stream_from_ts
        new_tasks = sum(b.tasks or 0 for b in q.dask_stream)
        print(f"load (uptime): {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; {a.seconds:.0f} s of load, "
              f"{before_tasks} tasks gathered ({before_tasks / a.seconds:.0f}/s), 3 workers, 3 prefixes")
        print(f"{'':34} {'tasks':>7} {'seconds':>8} {'msgpack B':>10} {'packed B':>9}")
        for label, qq, tasks, span in (("no stream (workers only)", base, 0, 0.0),
                                       ("before: last 30 entries", old, len(entries), old_span),
                                       (f"now: {len(q.dask_stream)} buckets of {q.dask_stream_bucket_s:.0f} s",
                                        new, new_tasks, new_span)):
            raw, packed = size(qq)
            print(f"{label:34} {tasks:>7} {span:>8.1f} {raw:>10} {packed:>9}")
    finally:
        stop.set()
        if client is not None:
            client.close()
        c.stop()


if __name__ == "__main__":
    main()
