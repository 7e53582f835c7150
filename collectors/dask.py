"""Provides the ``dask`` cluster-scope collector: workers and task counts from each Dask scheduler's HTTP server.

Config, ``[collectors.dask]``::

    schedulers = ["http://dask-sched:8787"]   # the scheduler's dashboard/HTTP address (not tcp://)
    request_timeout = 3                       # seconds per HTTP request

Two GETs per scheduler per poll, both served by ``distributed`` itself (``distributed.http.scheduler.json``,
enabled by default, no bokeh needed):
- ``/json/identity.json``: every worker with address, host, nthreads, memory_limit, last_seen, status
  and its last heartbeat's metrics (RSS ``memory``, ``task_counts``). The only HTTP endpoint with
  per-worker detail: the Prometheus ``/metrics`` has cluster totals only (and needs prometheus_client),
  ``/api/v1/get_workers`` has names only and is off by default. At 1,000 workers it is a few MB, so it
  is decoded into typed structs that skip the fields we do not show (see ``bench`` figures in the
  tests: a synthesized 1,000-worker document).
- ``/json/counts.json``: the scheduler's own totals, ``processing`` and ``waiting``.

A worker's ``processing`` is its own count of tasks waiting/ready/executing (from its last heartbeat),
which is what the scheduler's ``processing`` set holds for it. One scheduler failing goes into
``Queues.errors``; all failing raises ``DaskUnreachable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from collectors import queues_parse, schema
from collectors.base import Context
from collectors.config import ConfigError, check_keys, get
from collectors.store import redact

SECTION = "collectors.dask"
KEYS = {"schedulers", "request_timeout", "timeout", "interval", "enabled"}
DEFAULT_INTERVAL_S = 10.0
DEFAULT_REQUEST_TIMEOUT_S = 3.0


class DaskUnreachable(Exception):
    """No configured scheduler answered; the message names each and why."""


def parse_settings(options: dict[str, Any], file: str | None) -> tuple[tuple[str, ...], float]:
    """``[collectors.dask]`` -> (scheduler base URLs, per-request timeout)."""
    check_keys(options, KEYS, file, SECTION)
    urls = get(options, "schedulers", list, None, file, SECTION)
    if not urls:
        raise ConfigError(file, f"[{SECTION}] schedulers",
                          "required: a list of scheduler HTTP addresses, e.g. [\"http://dask-sched:8787\"]")
    for u in urls:
        parts = urlsplit(u) if isinstance(u, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            hint = " (that is the scheduler's comm address: give its dashboard, http://host:8787)" \
                if isinstance(u, str) and u.startswith("tcp://") else ""
            raise ConfigError(file, f"[{SECTION}] schedulers", f"not an http(s) URL: {u!r}{hint}")
    # `timeout` reaches us only when built directly (the agent keeps it as the runner's deadline).
    timeout = get(options, "request_timeout", (int, float),
                  get(options, "timeout", (int, float), DEFAULT_REQUEST_TIMEOUT_S, file, SECTION), file, SECTION)
    if not timeout > 0:
        raise ConfigError(file, f"[{SECTION}] request_timeout", f"must be > 0, got {timeout!r}")
    return tuple(u.rstrip("/") for u in urls), float(timeout)


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__


class DaskCollector:
    """Collector ``dask`` (cluster scope): returns ``schema.Queues`` (workers and task counts)."""

    name = "dask"
    field = "queues"
    scope = "cluster"
    default_interval_s = DEFAULT_INTERVAL_S

    def __init__(self, ctx: Context, wall: Callable[[], float] = time.time) -> None:
        import httpx  # only a node that polls Dask pays for it

        self.schedulers, self.timeout_s = parse_settings(ctx.config, ctx.config_file)
        self.wall = wall
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
        import json

        counts = queues_parse.parse_dask_counts(json.loads(self._get(f"{base}/json/counts.json")))
        return ident.workers, counts

    def collect(self) -> schema.Queues:
        workers: list[schema.Worker] = []
        errors: list[str] = []
        processing: int | None = None
        waiting: int | None = None
        for base in self.schedulers:
            try:
                ws, counts = self.poll_one(base)
            except Exception as e:  # noqa: BLE001 - one scheduler failing must not hide the others
                errors.append(f"scheduler {redact(base)}: {_describe(e)}")
                continue
            workers += ws
            if counts.processing is not None:
                processing = (processing or 0) + counts.processing
            if counts.waiting is not None:
                waiting = (waiting or 0) + counts.waiting
        if len(errors) == len(self.schedulers):
            raise DaskUnreachable("Dask schedulers unreachable: " + "; ".join(errors))
        result = schema.Queues(workers=workers, dask_tasks_processing=processing, dask_tasks_waiting=waiting,
                               errors=errors or None)
        self.last_good, self.last_ok_ts = result, self.wall()
        return result

    def close(self) -> None:
        self.http.close()
