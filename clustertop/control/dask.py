"""Provides Dask job control for the dashboard and the CLI: retire a worker, via its scheduler.

``distributed`` serves ``POST /api/v1/retire_workers`` only when ``distributed.http.scheduler.api``
is in the scheduler's ``distributed.scheduler.http.routes`` (it is not by default, as of 2026.8).
So we try that first (no dependency on ``distributed`` here, and it passes the dashboard's proxy),
and on a 404 fall back to the scheduler's comm address (``address`` in ``/json/identity.json``) and
``distributed.Client.retire_workers``, imported lazily. Retiring moves the worker's data to the
others before it closes; the result says which workers were retired. Imports no agent code.
"""

from __future__ import annotations

import json
from typing import Any

from clustertop.control.celery import Result
from clustertop.errors import describe
from clustertop.store import redact

DEFAULT_TIMEOUT_S = 30.0  # retiring copies the worker's data elsewhere first: not instant


def _verdict(worker: str, retired: Any, how: str) -> Result:
    names = sorted(retired) if isinstance(retired, dict) else []
    if worker in names:
        return Result(True, f"retired {worker} ({how})", {"retired": names})
    return Result(False, f"retire {worker}: the scheduler retired nothing (unknown worker, or its data "
                         f"could not be moved) ({how})", {"retired": names})


def retire_worker(scheduler_url: str, worker: str, timeout: float = DEFAULT_TIMEOUT_S) -> Result:
    """Retire ``worker`` (its ``tcp://`` address) from the scheduler whose dashboard is ``scheduler_url``."""
    import httpx

    base = scheduler_url.rstrip("/")
    shown = redact(base)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as http:
            resp = http.post(f"{base}/api/v1/retire_workers", content=json.dumps({"workers": [worker]}))
            if resp.status_code != 404:
                if resp.status_code != 200:
                    return Result(False, f"retire {worker} via {shown}: HTTP {resp.status_code} {resp.reason_phrase}")
                return _verdict(worker, resp.json(), "HTTP API")
            ident = http.get(f"{base}/json/identity.json")
            ident.raise_for_status()
            address = ident.json().get("address")
    except (httpx.HTTPError, ValueError) as e:
        return Result(False, f"retire {worker} via {shown}: {describe(e)}")
    if not isinstance(address, str) or not address:
        return Result(False, f"retire {worker}: {shown} did not say its scheduler address")
    return _retire_with_client(address, worker, timeout)


def _retire_with_client(address: str, worker: str, timeout: float) -> Result:
    try:
        from distributed import Client
    except ImportError:
        return Result(False, f"retire {worker}: the scheduler has no /api/v1/retire_workers and the "
                             "distributed package is not installed here")
    try:
        with Client(address, timeout=timeout, set_as_default=False) as client:
            retired = client.retire_workers(workers=[worker], close_workers=True)
    except Exception as e:  # noqa: BLE001 - the operator gets the reason, not a traceback
        return Result(False, f"retire {worker} via {address}: {describe(e)}")
    return _verdict(worker, retired, f"client API at {address}")
