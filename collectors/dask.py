"""Provides the ``dask`` cluster-scope collector: workers and task counts from each Dask scheduler's HTTP server.

Config, ``[collectors.dask]``::

    schedulers = ["http://dask-sched:8787"]   # the scheduler's dashboard/HTTP address (not tcp://)
    request_timeout = 3                       # seconds per HTTP request

Two GETs per scheduler per poll, served by ``distributed`` itself (default routes, no bokeh needed):
- ``/json/identity.json``: every worker with address, host, nthreads, memory_limit, last_seen, status
  and its last heartbeat's metrics (RSS ``memory``, ``task_counts``). The only HTTP endpoint with
  per-worker detail: the Prometheus ``/metrics`` has cluster totals only (and needs prometheus_client),
  ``/api/v1/get_workers`` has names only and is off by default. At 1,000 workers it is about 1 MB,
  so it is decoded into typed structs that skip the fields we do not show (~1.5 ms for 1,000 workers,
  tests/collectors/test_dask.py prints the figure). distributed answers it with HTTP 500 while a busy
  worker's heartbeat carries task digests (most of the time on a busy cluster): then the same document is
  asked of the scheduler through its comm address (``dask_progress.identity_on_scheduler``).
- Task counts: ``processing`` (assigned to a worker) and ``waiting`` (not started: waiting on
  dependencies, queued on the scheduler, or no worker fits). Exact from the Prometheus ``/metrics``
  (``dask_scheduler_tasks{state=...}``) when the scheduler has prometheus_client; otherwise from
  ``/json/counts.json``, which lacks the *queued* tasks (distributed >= 2022.11 holds back root tasks
  beyond worker-saturation on the scheduler), so ``waiting`` then undercounts a big map. A scheduler
  without Prometheus is asked again only every ``PROMETHEUS_RETRY_S``.

A worker's ``processing`` is its own count of tasks waiting/ready/executing (from its last heartbeat),
which is what the scheduler's ``processing`` set holds for it.

``progress`` (default on): per computation, tasks by state, and the task stream folded over the last minute, through
the scheduler's comm address (``dask_progress.py``: one ``run_on_scheduler`` per poll). One scheduler failing goes into
``Queues.errors``; all failing raises ``DaskUnreachable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from clustertop.collectors import dask_progress, queues_parse
from clustertop.collectors.base import Context, Section
from clustertop.config import Invalid, Positive, convert
from clustertop.errors import describe
from clustertop.store import redact
from clustertop.wire import schema

SECTION = "collectors.dask"
DEFAULT_INTERVAL_S = 10.0
DEFAULT_REQUEST_TIMEOUT_S = 3.0
#: How long to wait before asking again a scheduler that does not export Prometheus task counts.
PROMETHEUS_RETRY_S = 600.0
#: How long to wait before asking again for progress from a scheduler whose comm address failed.
PROGRESS_RETRY_S = 60.0
#: identity.json answering HTTP 500 before the comm address is known: tries, a worker heartbeat apart.
IDENTITY_TRIES = 3
IDENTITY_RETRY_S = 0.3


class DaskUnreachable(Exception):
    """No configured scheduler answered; the message names each and why."""


class DaskConfig(Section):
    """``[collectors.dask]``: the schedulers' dashboards (HTTP), not their tcp:// comm addresses."""

    schedulers: list[str] = []
    request_timeout: Positive | None = None  # None: `timeout`, else DEFAULT_REQUEST_TIMEOUT_S
    progress: bool = True  # per computation progress and task stream (dask_progress.py, comm protocol)

    def __post_init__(self) -> None:
        if not self.schedulers:
            raise Invalid("schedulers", "required: a list of scheduler HTTP addresses, e.g. [\"http://dask-sched:8787\"]")
        for u in self.schedulers:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                hint = " (that is the scheduler's comm address: give its dashboard, http://host:8787)" \
                    if u.startswith("tcp://") else ""
                raise Invalid("schedulers", f"not an http(s) URL: {u!r}{hint}")


def parse_settings(options: dict[str, Any], file: str | None) -> tuple[tuple[str, ...], float]:
    """``[collectors.dask]`` -> (scheduler base URLs, per-request timeout)."""
    c = convert(options, DaskConfig, file, SECTION)
    return _settings(c)


def _settings(c: DaskConfig) -> tuple[tuple[str, ...], float]:
    # `timeout` reaches us only when built directly (the agent keeps it as the runner's deadline).
    timeout = c.request_timeout or c.timeout or DEFAULT_REQUEST_TIMEOUT_S
    return tuple(u.rstrip("/") for u in c.schedulers), float(timeout)


class DaskCollector:
    """Collector ``dask`` (cluster scope): returns ``schema.Queues`` (workers and task counts)."""

    name = "dask"
    field = "queues"
    scope = "cluster"
    default_interval_s = DEFAULT_INTERVAL_S
    config_type = DaskConfig

    def __init__(self, ctx: Context, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import httpx  # only a node that polls Dask pays for it

        cfg = convert(ctx.config, DaskConfig, ctx.config_file, SECTION)
        self.schedulers, self.timeout_s = _settings(cfg)
        self.progress_on = cfg.progress
        self.progress: dict[str, dask_progress.ProgressClient] = {}  # scheduler URL -> its comm client
        self._progress_retry: dict[str, float] = {}  # scheduler URL -> monotonic time to try progress again
        self.wall, self.clock = wall, clock
        self._prom_retry: dict[str, float] = {}  # scheduler URL -> monotonic time to try /metrics again
        self.http = httpx.Client(timeout=self.timeout_s, follow_redirects=False,
                                 headers={"User-Agent": "clustertop-dask"})
        self.addresses: dict[str, str | None] = {}  # scheduler URL -> its tcp:// address (for retire)
        self.last_good: schema.Queues | None = None
        self.last_ok_ts: float | None = None

    def _get(self, url: str) -> bytes:
        resp = self.http.get(url)
        if resp.status_code == 404:
            raise DaskUnreachable(f"{urlsplit(url).path} not served (HTTP 404): is this a Dask scheduler's "
                                  "dashboard address, with distributed.http.scheduler.json in its routes?")
        resp.raise_for_status()
        return resp.content

    def poll_one(self, base: str) -> tuple[list[schema.Worker], queues_parse.DaskCounts]:
        ident = queues_parse.parse_dask_identity(self._identity(base), self.wall())
        self.addresses[base] = ident.address
        counts = self._prometheus_counts(base, len(ident.workers))
        if counts is None:
            import json

            counts = queues_parse.parse_dask_counts(json.loads(self._get(f"{base}/json/counts.json")))
        return ident.workers, counts

    def _identity(self, base: str) -> bytes | str:
        """``/json/identity.json``; where the scheduler answers it with HTTP 500 (distributed fails to encode
        a busy worker's heartbeat digests, see ``dask_progress.identity_on_scheduler``), the same document
        asked of the scheduler through its comm address, once that address is known from an earlier
        answer and ``distributed`` is installed here. Before that, a few tries a heartbeat apart."""
        import httpx

        for attempt in range(IDENTITY_TRIES):
            try:
                return self._get(f"{base}/json/identity.json")
            except httpx.HTTPStatusError as e:
                if e.response.status_code != 500:
                    raise
                if self.addresses.get(base) and self._comm_possible():
                    return self._client_for(base).identity()
                if attempt == IDENTITY_TRIES - 1:
                    raise DaskUnreachable(
                        "/json/identity.json answers HTTP 500 (distributed cannot encode busy workers' heartbeat "
                        "digests); the scheduler's comm address is not known yet") from None
                time.sleep(IDENTITY_RETRY_S)
        raise AssertionError("unreachable")

    @staticmethod
    def _comm_possible() -> bool:
        import importlib.util

        return importlib.util.find_spec("distributed") is not None

    def _client_for(self, base: str) -> dask_progress.ProgressClient:
        address = self.addresses[base]
        pc = self.progress.get(base)
        if pc is None or pc.address != address:
            if pc is not None:
                pc.close()
            pc = self.progress[base] = dask_progress.ProgressClient(address, self.timeout_s)
        return pc

    def _prometheus_counts(self, base: str, workers: int) -> queues_parse.DaskCounts | None:
        """Exact per-state task counts (queued included) when the scheduler exports Prometheus
        metrics; a scheduler that does not is asked again only every PROMETHEUS_RETRY_S."""
        if self.clock() < self._prom_retry.get(base, 0.0):
            return None
        try:
            resp = self.http.get(f"{base}/metrics")
            states = queues_parse.parse_dask_task_states(resp.text) if resp.status_code == 200 else None
        except Exception:  # noqa: BLE001 - the JSON counts still work
            states = None
        if states is None:
            self._prom_retry[base] = self.clock() + PROMETHEUS_RETRY_S
            return None
        waiting = sum(states.get(s, 0) for s in queues_parse.DASK_NOT_STARTED_STATES)  # range-checked in collect
        return queues_parse.DaskCounts(processing=states.get("processing", 0), waiting=waiting, workers=workers)

    def collect(self) -> schema.Queues:
        workers: list[schema.Worker] = []
        errors: list[str] = []
        processing: int | None = None
        waiting: int | None = None
        computations: list[schema.DaskComputation] | None = None
        streams: list[dask_progress.StreamRows] = []
        failed = 0
        for base in self.schedulers:
            try:
                ws, counts = self.poll_one(base)
            except Exception as e:  # noqa: BLE001 - one scheduler failing must not hide the others
                errors.append(f"scheduler {redact(base)}: {describe(e)}")
                failed += 1
                continue
            workers += ws
            if self.progress_on and self.clock() >= self._progress_retry.get(base, 0.0):
                try:
                    comps, stream = self._progress(base)
                except Exception as e:  # noqa: BLE001 - workers and counts still flow
                    # A comm address we cannot reach costs the poll its timeout: ask again later only.
                    self._progress_retry[base] = self.clock() + PROGRESS_RETRY_S
                    errors.append(f"scheduler {redact(base)}: progress (next try in {PROGRESS_RETRY_S:.0f} s): "
                                  f"{describe(e)}")
                else:
                    if comps is not None:
                        computations = (computations or []) + comps
                    if stream is not None:
                        streams.append(stream)
            if counts.processing is not None:
                processing = (processing or 0) + counts.processing
            if counts.waiting is not None:
                waiting = (waiting or 0) + counts.waiting
        if failed == len(self.schedulers):
            raise DaskUnreachable("Dask schedulers unreachable: " + "; ".join(errors))
        # Each count is checked where it is parsed (queues_parse._int: what the wire can carry), but
        # their sum over states and schedulers is not: past that range it is garbage, not a queue.
        if processing is not None and queues_parse._int(processing) is None:
            processing = None
            errors.append("processing task count out of range: not shown")
        if waiting is not None and queues_parse._int(waiting) is None:
            waiting = None
            errors.append("waiting task count out of range: not shown")
        result = schema.Queues(workers=workers, dask_tasks_processing=processing, dask_tasks_waiting=waiting,
                               errors=errors or None, dask_computations=computations)
        folded = dask_progress.fold_stream(streams)
        if folded is not None:
            result.dask_stream, result.dask_stream_bucket_s = folded.buckets, folded.bucket_s
            result.dask_stream_from_ts, result.dask_stream_to_ts = folded.from_ts, folded.to_ts
            result.dask_stream_other_workers = folded.other_workers
        self.last_good, self.last_ok_ts = result, self.wall()
        return result

    def _progress(self, base: str) -> tuple[list[schema.DaskComputation] | None, dask_progress.StreamRows | None]:
        if not self._comm_possible():
            raise DaskUnreachable("the distributed package is not installed here: progress unknown (pip install distributed)")
        if not self.addresses.get(base):
            raise DaskUnreachable("the scheduler did not give its comm address (identity.json)")
        return self._client_for(base).poll()

    def close(self) -> None:
        for pc in self.progress.values():
            pc.close()
        self.http.close()
