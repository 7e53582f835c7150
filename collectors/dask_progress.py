"""Dask progress for the ``dask`` collector: per computation, tasks by state, and the task stream's recent
tasks, asked of the scheduler itself.

The scheduler's HTTP routes have no per-computation state (only totals), so this uses the scheduler's comm
address (``/json/identity.json`` gives it) and ``Client.run_on_scheduler``: one round trip per poll runs
``progress_on_scheduler`` there. That function is sent by value (cloudpickle pickles a nested function's
code, not a reference to this module, so the scheduler needs no clustertop) and returns plain data, bounded
there. A scheduler that refuses pickled code (``distributed.scheduler.pickle: false``) answers with an
error, which goes to ``Queues.errors``. The task stream is the scheduler's ``TaskStreamPlugin`` (the one
its dashboard and ``Client.get_task_stream`` use); when none is registered, one is added (bounded by the
scheduler's own ``task-stream-length``), so the first poll shows no stream and the next ones do.

``parse_progress`` (pure) turns the answer into wire structs, checking every field (the answer is data
from the network like any other).
"""

from __future__ import annotations

from typing import Any

from clustertop.wire import schema

#: Computations and stream entries published per scheduler; names kept per computation.
COMPUTATIONS_N = 10
STREAM_N = 30
GROUPS_N = 5
TEXT_MAX = 200


def make_probe(n_comp: int = COMPUTATIONS_N, n_stream: int = STREAM_N) -> Any:
    """The function ``run_on_scheduler`` runs there (nested: pickled by value)."""

    def progress_on_scheduler(dask_scheduler: Any) -> dict[str, Any]:
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
            from distributed.diagnostics.task_stream import TaskStreamPlugin

            plugin = dask_scheduler.plugins.get(TaskStreamPlugin.name)
            if plugin is None:
                dask_scheduler.add_plugin(TaskStreamPlugin(dask_scheduler))
            else:
                stream = []
                for msg in list(plugin.buffer)[-n_stream:]:
                    compute = [s for s in msg.get("startstops", ()) if s.get("action") == "compute"]
                    stream.append({"key": str(msg.get("key")), "worker": msg.get("worker"),
                                   "status": msg.get("status"),
                                   "start": compute[0].get("start") if compute else None,
                                   "stop": compute[-1].get("stop") if compute else None})
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


def parse_progress(raw: object) -> tuple[list[schema.DaskComputation] | None, list[schema.DaskStreamTask] | None]:
    """The scheduler's answer -> (computations, stream); what does not check out is left out."""
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
    stream: list[schema.DaskStreamTask] | None = None
    if isinstance(raw.get("stream"), list):
        stream = []
        for m in raw["stream"][-STREAM_N:]:
            if not isinstance(m, dict) or m.get("key") is None:
                continue
            stream.append(schema.DaskStreamTask(key=_text(m["key"]) or "?", worker=_text(m.get("worker")),
                                                status=_text(m.get("status")), start_ts=_ts(m.get("start")),
                                                stop_ts=_ts(m.get("stop"))))
    return comps, stream


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

    def poll(self) -> tuple[list[schema.DaskComputation] | None, list[schema.DaskStreamTask] | None]:
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
