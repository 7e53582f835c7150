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
  tests/collectors/test_dask.py prints the figure).
- Task counts: ``processing`` (assigned to a worker) and ``waiting`` (not started: waiting on
  dependencies, queued on the scheduler, or no worker fits). Exact from the Prometheus ``/metrics``
  (``dask_scheduler_tasks{state=...}``) when the scheduler has prometheus_client; otherwise from
  ``/json/counts.json``, which lacks the *queued* tasks (distributed >= 2022.11 holds back root tasks
  beyond worker-saturation on the scheduler), so ``waiting`` then undercounts a big map. A scheduler
  without Prometheus is asked again only every ``PROMETHEUS_RETRY_S``.

A worker's ``processing`` is its own count of tasks waiting/ready/executing (from its last heartbeat),
which is what the scheduler's ``processing`` set holds for it. One scheduler failing goes into
``Queues.errors``; all failing raises ``DaskUnreachable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from clustertop.collectors import queues_parse
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


class DaskUnreachable(Exception):
    """No configured scheduler answered; the message names each and why."""


class DaskConfig(Section):
    """``[collectors.dask]``: the schedulers' dashboards (HTTP), not their tcp:// comm addresses."""

    schedulers: list[str] = []
    request_timeout: Positive | None = None  # None: `timeout`, else DEFAULT_REQUEST_TIMEOUT_S

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

        self.schedulers, self.timeout_s = parse_settings(ctx.config, ctx.config_file)
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
        ident = queues_parse.parse_dask_identity(self._get(f"{base}/json/identity.json"), self.wall())
        self.addresses[base] = ident.address
        counts = self._prometheus_counts(base, len(ident.workers))
        if counts is None:
            import json

            counts = queues_parse.parse_dask_counts(json.loads(self._get(f"{base}/json/counts.json")))
        return ident.workers, counts

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
        for base in self.schedulers:
            try:
                ws, counts = self.poll_one(base)
            except Exception as e:  # noqa: BLE001 - one scheduler failing must not hide the others
                errors.append(f"scheduler {redact(base)}: {describe(e)}")
                continue
            workers += ws
            if counts.processing is not None:
                processing = (processing or 0) + counts.processing
            if counts.waiting is not None:
                waiting = (waiting or 0) + counts.waiting
        if len(errors) == len(self.schedulers):
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
                               errors=errors or None)
        self.last_good, self.last_ok_ts = result, self.wall()
        return result

    def close(self) -> None:
        self.http.close()
