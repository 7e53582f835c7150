"""Dask progress for the ``dask`` collector: per computation, tasks by state, and the task stream's recent
tasks, asked of the scheduler itself.

The scheduler's HTTP routes have no per-computation state (only totals), so this uses the scheduler's comm
address (``/json/identity.json`` gives it) and ``Client.run_on_scheduler``: one round trip per poll runs
``progress_on_scheduler`` there. That function is sent by value (cloudpickle pickles a nested function's
code, not a reference to this module, so the scheduler needs no clustertop) and returns plain data, bounded
there. A scheduler that refuses pickled code (``distributed.scheduler.pickle: false``) answers with an
error, which goes to ``Queues.errors``.

The task stream is folded on the scheduler, not copied: the last N entries of ``TaskStreamPlugin`` (what
Dask's own plot reads) are 1–2 s of a busy cluster, and its buffer (``task-stream-length``, 1,000) holds
less than a poll interval of one. So the first poll adds a small plugin of ours (``clustertop-stream``,
defined inside the probe, so the scheduler still needs no clustertop) that counts, per (task prefix, worker,
second), the tasks that ended, those that erred, and the compute seconds spent (a long task's time spread
over the seconds it ran), keeping ``KEEP_S``; each poll takes the last ``WINDOW_S``. Nothing between polls
is lost, and what is shipped is bounded by workers x prefixes x seconds, not by tasks: ``fold_stream``
widens the buckets (1, 2, 5 ... 60 s) until they fit ``BUCKETS_MAX``, after keeping the ``WORKERS_MAX``
busiest workers apart (the rest together, counted) and the ``PREFIXES_MAX`` busiest prefixes.
The stream starts when the plugin is added (``from_ts`` says so): the first poll has an empty window.

``parse_progress`` (pure) turns the answer into wire structs, checking every field (the answer is data
from the network like any other); ``fold_stream`` (pure) bounds the stream for the wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgspec

from clustertop.wire import schema

#: Computations published per scheduler; names kept per computation.
COMPUTATIONS_N = 10
GROUPS_N = 5
TEXT_MAX = 200
#: The task stream: the window shipped each poll (the timeline's span), what the scheduler keeps, rows
#: it answers with at most (newest kept), and what one payload carries at most after folding.
WINDOW_S = 60
KEEP_S = 120
RAW_ROWS_MAX = 50_000
BUCKETS_MAX = 1000
WORKERS_MAX = 32
PREFIXES_MAX = 12  # (WORKERS_MAX + 1) x (PREFIXES_MAX + 1) x 2 minutes <= BUCKETS_MAX: the widest always fits
BUCKET_WIDTHS = (1, 2, 5, 10, 15, 30, 60)
PREFIX_MAX = 40
WORKER_MAX = 80  # "tcp://[v6 address]:port" fits; a longer name is cut (it is a label)
#: The folded stream's msgpack bytes at most (the payload's limit is wire.MAX_PAYLOAD_BYTES, 256 KiB, with
#: the workers and computations beside it): past it, the oldest buckets go and the window says so.
STREAM_BYTES_MAX = 96 * 1024
OTHER_PREFIX = "(other)"
#: A bucket's compute seconds past this are garbage (a worker with 10,000 threads busy for 60 s is 6e5).
BUSY_MAX = 1e7


def make_tally(keep_s: int = KEEP_S) -> Any:
    """``tally(buckets, prefix, worker, start, stop, erred)``: one ended task into the (prefix, worker, second)
    -> [tasks, busy_s, errors] buckets: counted in the second it ended, its compute time spread over the
    seconds it ran (at most ``keep_s`` back). Nested, so the probe ships it by value to the scheduler; the
    simulator's stream uses the same one."""

    def tally(buckets: dict[Any, list[Any]], prefix: str, worker: Any, a: float, z: float, erred: bool) -> None:
        end = int(z)
        b = buckets.setdefault((prefix, worker, end), [0, 0.0, 0])
        b[0] += 1
        if erred:
            b[2] += 1
        sec = max(int(a), end - keep_s)
        while sec <= end:
            overlap = min(z, sec + 1) - max(a, sec)
            if overlap > 0:
                buckets.setdefault((prefix, worker, sec), [0, 0.0, 0])[1] += overlap
            sec += 1

    return tally


def make_probe(n_comp: int = COMPUTATIONS_N, window_s: int = WINDOW_S, keep_s: int = KEEP_S,
               rows_max: int = RAW_ROWS_MAX) -> Any:
    """The function ``run_on_scheduler`` runs there (nested: pickled by value, with what it calls)."""
    tally = make_tally(keep_s)

    def install(dask_scheduler: Any) -> Any:
        """Add the folding plugin (a class defined here, on the scheduler: nothing to import there)."""
        import time

        # key_split is dask's, re-exported by distributed: the [dask] extra names distributed only.
        from distributed.diagnostics.plugin import SchedulerPlugin
        from distributed.utils import key_split

        class ClustertopStream(SchedulerPlugin):  # type: ignore[misc]
            name = "clustertop-stream"

            def __init__(self) -> None:
                self.buckets = {}  # (prefix, worker, second) -> [tasks, busy_s, errors]
                self.since = time.time()
                self.cut = 0.0  # buckets before this were dropped to bound the scheduler's memory
                self.next_prune = self.since + 10

            def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
                if start != "processing" or finish not in ("memory", "erred"):
                    return
                try:  # never break the scheduler's transitions over a figure
                    now = time.time()
                    comp = [x for x in kwargs.get("startstops") or () if x.get("action") == "compute"]
                    a, z = (comp[0].get("start"), comp[-1].get("stop")) if comp else (now, now)
                    if not isinstance(a, int | float) or not isinstance(z, int | float) or not a <= z:
                        a = z = now
                    tally(self.buckets, str(key_split(key)), kwargs.get("worker"), a, z, finish == "erred")
                    if now >= self.next_prune or len(self.buckets) > 4 * rows_max:
                        self.prune(now)
                except Exception:  # noqa: BLE001 - this plugin only observes
                    pass

            def prune(self, now: float) -> None:
                # At most 4 x rows_max buckets (~40 MB): past it the window only, then its last 10 s.
                for lo in (now - keep_s, now - window_s, now - 10):
                    for k in [k for k in self.buckets if k[2] < lo]:
                        del self.buckets[k]
                    if lo > now - window_s:  # into the shipped window: it says where it now starts
                        self.cut = max(self.cut, lo)
                    if len(self.buckets) <= 4 * rows_max:
                        break
                self.next_prune = now + 10

        plugin = ClustertopStream()
        dask_scheduler.add_plugin(plugin)
        return plugin

    def progress_on_scheduler(dask_scheduler: Any) -> dict[str, Any]:
        import time

        comps = []
        for c in list(dask_scheduler.computations)[-n_comp:]:
            states: dict[str, int] = {}
            names = []
            for g in list(c.groups):
                names.append(str(g.name))
                for k, v in g.states.items():
                    states[str(k)] = states.get(str(k), 0) + int(v)
            comps.append({"id": str(c.id), "start": c.start, "groups": names[:5], "states": states})
        stream = None
        try:
            plugin = dask_scheduler.plugins.get("clustertop-stream") or install(dask_scheduler)
            now = time.time()
            plugin.prune(now)
            lo = now - window_s
            rows = sorted(([p, w, sec, *v] for (p, w, sec), v in list(plugin.buckets.items()) if sec + 1 > lo),
                          key=lambda r: r[2])
            start = max(lo, plugin.since, getattr(plugin, "cut", 0.0))
            if len(rows) > rows_max:  # the newest whole seconds only; the window says where it starts
                cut = rows[-rows_max][2]
                rows = [r for r in rows if r[2] > cut]
                start = max(start, cut + 1)
            stream = {"rows": rows, "from": start, "to": now}
        except Exception:  # noqa: BLE001 - the stream is optional; computations still answer
            stream = None
        return {"computations": comps, "stream": stream}

    return progress_on_scheduler


def _text(v: object) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= TEXT_MAX else s[:TEXT_MAX - 1] + "…"


def _ts(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if f == f and 0 < f < 1e11 else None


def _count(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53 else None


@dataclass
class StreamRows:
    """One scheduler's stream answer, checked: (prefix, worker, second, tasks, busy_s, errors) rows."""

    rows: list[tuple[str, str | None, int, int, float, int]]
    from_ts: float
    to_ts: float


def rows_of(buckets: dict[Any, list[Any]], from_ts: float, to_ts: float) -> StreamRows:
    """``tally``'s buckets in a window -> rows as the probe answers them (the simulator's path)."""
    rows = sorted(((p, w, sec, int(v[0]), float(v[1]), int(v[2])) for (p, w, sec), v in buckets.items()
                   if from_ts - 1 < sec <= to_ts), key=lambda r: r[2])
    return StreamRows(rows, from_ts, to_ts)


@dataclass
class Folded:
    buckets: list[schema.DaskStreamBucket] = field(default_factory=list)
    bucket_s: float = 1.0
    from_ts: float = 0.0
    to_ts: float = 0.0
    other_workers: int = 0


def _row(r: object, lo: float, hi: float) -> tuple[str, str | None, int, int, float, int] | None:
    if not isinstance(r, list | tuple) or len(r) != 6:
        return None
    prefix, worker, sec, n, busy, err = r
    if not isinstance(prefix, str) or not (worker is None or isinstance(worker, str)):
        return None
    if isinstance(sec, bool) or not isinstance(sec, int) or not lo - 1 <= sec <= hi + 1:
        return None
    n_, err_ = _count(n), _count(err)
    b = float(busy) if isinstance(busy, int | float) and not isinstance(busy, bool) else math.nan
    if n_ is None or err_ is None or err_ > n_ or not 0 <= b <= BUSY_MAX:  # NaN fails every comparison
        return None
    return prefix[:PREFIX_MAX], None if worker is None else worker[:WORKER_MAX], sec, n_, b, err_


def parse_stream(raw: object) -> StreamRows | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list):
        return None
    lo, hi = _ts(raw.get("from")), _ts(raw.get("to"))
    if lo is None or hi is None or lo > hi:
        return None
    rows = [x for r in raw["rows"][-RAW_ROWS_MAX:] if (x := _row(r, lo, hi)) is not None]
    return StreamRows(rows, lo, hi)


def fold_stream(parts: list[StreamRows]) -> Folded | None:
    """Schedulers' stream rows -> at most ``BUCKETS_MAX`` buckets: the busiest ``WORKERS_MAX`` workers apart
    (the rest as worker None, counted), the busiest ``PREFIXES_MAX`` prefixes (the rest as "(other)"), the
    narrowest of ``BUCKET_WIDTHS`` that fits. None: no scheduler answered a stream."""
    if not parts:
        return None
    rows = [r for p in parts for r in p.rows]
    out = Folded(from_ts=min(p.from_ts for p in parts), to_ts=max(p.to_ts for p in parts))
    busy_w: dict[str | None, float] = {}
    busy_p: dict[str, float] = {}
    for prefix, worker, _sec, n, busy, _err in rows:
        busy_w[worker] = busy_w.get(worker, 0.0) + busy + n * 1e-3  # a worker of instant tasks still ranks
        busy_p[prefix] = busy_p.get(prefix, 0.0) + busy + n * 1e-3
    kept_w = set(sorted(busy_w, key=lambda w: (-busy_w[w], w or ""))[:WORKERS_MAX])
    out.other_workers = len(busy_w) - len(kept_w)
    kept_p = set(sorted(busy_p, key=lambda p: (-busy_p[p], p))[:PREFIXES_MAX])
    for width in BUCKET_WIDTHS:
        acc: dict[tuple[str, str | None, int], list[float]] = {}
        for prefix, worker, sec, n, busy, err in rows:
            k = (prefix if prefix in kept_p else OTHER_PREFIX, worker if worker in kept_w else None,
                 sec // width * width)
            a = acc.setdefault(k, [0, 0.0, 0])
            a[0] += n
            a[1] += busy
            a[2] += err
        if len(acc) <= BUCKETS_MAX or width == BUCKET_WIDTHS[-1]:
            break
    out.bucket_s = float(width)
    items = sorted(acc.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1] or ""))
    if len(items) > BUCKETS_MAX:  # a window wider than asked for (schedulers' clocks apart): its newest part,
        cut = items[-BUCKETS_MAX][0][2]  # whole buckets only, and the window says where it now starts
        items = [kv for kv in items if kv[0][2] > cut]
        out.from_ts = max(out.from_ts, float(cut + width))
    out.buckets = [schema.DaskStreamBucket(prefix=p, worker=w, t=float(sec), tasks=int(v[0]),
                                           busy_s=round(v[1], 3), errors=int(v[2]))
                   for (p, w, sec), v in items]
    size = len(msgspec.msgpack.encode(out.buckets))
    while size > STREAM_BYTES_MAX and out.buckets:  # long names: the oldest whole buckets go
        oldest = out.buckets[0].t
        gone = [bk for bk in out.buckets if bk.t == oldest]
        out.buckets = out.buckets[len(gone):]
        size -= len(msgspec.msgpack.encode(gone))
        out.from_ts = min(max(out.from_ts, oldest + width), out.to_ts)
    return out


def parse_progress(raw: object) -> tuple[list[schema.DaskComputation] | None, StreamRows | None]:
    """The scheduler's answer -> (computations, stream rows); what does not check out is left out."""
    if not isinstance(raw, dict):
        return None, None
    comps: list[schema.DaskComputation] | None = None
    if isinstance(raw.get("computations"), list):
        comps = []
        for c in raw["computations"][-COMPUTATIONS_N:]:
            if not isinstance(c, dict) or not isinstance(c.get("id"), str):
                continue
            states = None
            if isinstance(c.get("states"), dict):
                states = {str(k)[:40]: n for k, v in list(c["states"].items())[:40] if (n := _count(v)) is not None}
            groups = [g for g in (_text(x) for x in c.get("groups") or ()) if g][:GROUPS_N] \
                if isinstance(c.get("groups"), list) else None
            comps.append(schema.DaskComputation(id=_text(c["id"]) or "?", start_ts=_ts(c.get("start")),
                                                groups=groups, states=states))
    return comps, parse_stream(raw.get("stream"))


def identity_on_scheduler(dask_scheduler: Any) -> str:
    """``/json/identity.json``'s document, built on the scheduler with only the fields the collector reads.

    Why: ``distributed``'s own page answers HTTP 500 while any worker's last heartbeat carries task
    digests (``metrics["digests_total_since_heartbeat"]`` has tuple keys, which JSON refuses): on a busy
    cluster that is most of the time (88 % of requests with 2 workers running tasks, measured here).
    Runs there (pickled by value, as the progress probe); returns JSON text for ``parse_dask_identity``.
    """
    import json

    workers = {}
    for addr, ws in list(dask_scheduler.workers.items()):
        m = ws.metrics or {}
        counts = m.get("task_counts")
        workers[str(addr)] = {
            "host": ws.host, "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
            "last_seen": ws.last_seen, "status": getattr(ws.status, "name", None),
            "metrics": {"memory": m.get("memory"),
                        "task_counts": {str(k): v for k, v in counts.items()} if isinstance(counts, dict) else None},
        }
    return json.dumps({"type": "Scheduler", "address": dask_scheduler.address, "workers": workers})


class ProgressClient:
    """A ``distributed.Client`` to one scheduler's comm address, kept open between polls."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address, self.timeout_s = address, timeout_s
        self._client: Any = None
        self._probe = make_probe()

    def _run(self, fn: Any) -> Any:
        if self._client is None:
            from distributed import Client  # only a node that polls Dask pays for it

            self._client = Client(self.address, timeout=self.timeout_s, set_as_default=False)
        try:
            return self._client.run_on_scheduler(fn)
        except Exception:
            self.close()  # a fresh client next poll (the scheduler may have restarted)
            raise

    def poll(self) -> tuple[list[schema.DaskComputation] | None, StreamRows | None]:
        return parse_progress(self._run(self._probe))

    def identity(self) -> str:
        """The scheduler's identity document (see ``identity_on_scheduler``), as JSON text."""
        raw = self._run(identity_on_scheduler)
        if not isinstance(raw, str):
            raise ValueError(f"the scheduler's identity answer is {type(raw).__name__}, not text")
        return raw

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close(timeout=self.timeout_s)
            finally:
                self._client = None
