"""Provides a node's history from Prometheus (``[history] prometheus = URL``): ``/api/v1/query_range`` over
the series ``clustertop exporter`` serves, shaped as the node screen's history points.

Each figure is the mean over the step ending at each point (``avg_over_time(...[step])``), which is what
the Redis tiers keep per bucket, so both sources draw the same curve; a point is placed at the middle of
its step, as a tier bucket is. Everything Prometheus says is data: values that are not finite numbers,
GPU labels that are not small integers, and answers that are not the documented shape are left out
(``fmt.known``'s rules), never shown raw. Blocking; meant for a worker thread.
"""

from __future__ import annotations

import math
from typing import Any

from clustertop.wire import schema
from clustertop.wire.text import known

#: The largest answer read (a week at 10-minute steps of 8 GPUs is ~50 KB of JSON).
MAX_BYTES = 8 * 1024 * 1024
#: NIC kinds a node's network figure counts (as ``wire.digest.TOTAL_NIC_KINDS``): a NIC of any other
#: known kind (a bond's slave, loopback, a veth) is left out, so each byte counts once.
NIC_KINDS_LEFT_OUT = 'kind!~"physical|bond"'
MAX_GPUS = 64


class PromError(Exception):
    """Prometheus could not answer (unreachable, an error status, an unreadable reply); the text says why."""


def quote(v: str) -> str:
    """A PromQL string literal (double-quoted, backslash and quote escaped)."""
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def queries(host: str, step_s: int) -> dict[str, str]:
    """Figure -> PromQL for one node (the exporter labels every node series with ``node``)."""
    n = f"node={quote(host)}"
    w = f"[{int(step_s)}s]"

    # "avg by": two exporters (an HA pair) scraped by one Prometheus give every series twice, with
    # different job/instance labels; the same figure twice must not be summed.
    def nic(metric: str) -> str:
        return (f"sum by (node) (avg by (node, device) (avg_over_time({metric}{{{n}}}{w}) unless on (node, device) "
                f"clustertop_network_info{{{n},{NIC_KINDS_LEFT_OUT}}}))")

    return {
        "cpu": f"avg by (node) (avg_over_time(clustertop_node_cpu_utilization_ratio{{{n}}}{w})) * 100",
        "mem": f"avg by (node) (avg_over_time(clustertop_node_memory_used_bytes{{{n}}}{w}))",
        "gu": f"avg by (node, gpu) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{n}}}{w}))",
        "rx": nic("clustertop_network_receive_bytes_per_second"),
        "tx": nic("clustertop_network_transmit_bytes_per_second"),
    }


class PromHistory:
    # urllib, not httpx: one GET per figure needs no client library, and the dashboard's install stays
    # without one (the Alertmanager client, clustertop/alerting/alertmanager.py, made the same choice).
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, params: dict[str, str]) -> Any:
        import json
        import urllib.error
        import urllib.request
        from urllib.parse import urlencode

        status = 0
        try:
            req = urllib.request.Request(f"{self.url}/api/v1/query_range?{urlencode(params)}",
                                         headers={"Accept": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:  # noqa: S310 - http(s) checked in settings
                    status, body = r.status, r.read(MAX_BYTES + 1)
            except urllib.error.HTTPError as e:  # Prometheus answers 400/422/503 with a JSON error body
                status, body = e.code, e.read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                raise PromError(f"answer of more than {MAX_BYTES} bytes")
            doc = json.loads(body)
        except (urllib.error.URLError, OSError) as e:
            raise PromError(f"{type(e).__name__}: {getattr(e, 'reason', None) or e}") from None
        except ValueError:
            raise PromError(f"HTTP {status}, not JSON") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            err = doc.get("error") if isinstance(doc, dict) else None
            raise PromError(f"HTTP {status}: {str(err)[:200] if err else 'no success status'}")
        data = doc.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PromError("answer is not a range matrix")
        return data["result"]

    def node(self, host: str, t0: float, t1: float, step_s: int) -> list[schema.HistPoint]:
        """Points of ``host`` from ``t0`` to ``t1``, one per ``step_s`` where Prometheus has any figure.
        Raises PromError."""
        end = math.floor(t1 / step_s) * step_s  # steps on bucket boundaries, as the tiers' buckets
        start = math.floor(t0 / step_s) * step_s
        by_ts: dict[float, schema.HistPoint] = {}
        for fig, q in queries(host, step_s).items():
            taken = False
            for series in self._get({"query": q, "start": str(start), "end": str(end), "step": str(step_s)}):
                if not isinstance(series, dict) or not isinstance(series.get("values"), list):
                    continue
                if fig != "gu" and taken:
                    continue  # a node figure is one series (aggregated by node): a second one is not ours
                taken = True
                gpu = None
                if fig == "gu":
                    label = (series.get("metric") or {}).get("gpu")
                    gpu = int(label) if isinstance(label, str) and label.isdigit() and int(label) < MAX_GPUS else None
                    if gpu is None:
                        continue
                for pair in series["values"]:
                    if not (isinstance(pair, list) and len(pair) == 2):
                        continue
                    ts, v = known(pair[0], 0, 1e11), known(_num(pair[1]), -1e18, 1e18)
                    if ts is None or v is None:
                        continue
                    p = by_ts.setdefault(ts, schema.HistPoint(ts=ts - step_s / 2))
                    if gpu is not None:
                        gu = p.gu if p.gu is not None else []
                        gu.extend([None] * (gpu + 1 - len(gu)))
                        gu[gpu] = round(v)
                        p.gu = gu
                    elif fig == "mem":
                        p.mem = int(v)
                    else:
                        setattr(p, fig, v)
        return [by_ts[t] for t in sorted(by_ts)]

    def cluster(self, t0: float, t1: float, step_s: int) -> list[tuple[float, float | None, float | None]]:
        """(ts, GPU util % cluster mean, GPU power W) per step from the exporter's cluster totals, for the
        wall's trends; each the mean over its step. Raises PromError."""
        end, start = math.floor(t1 / step_s) * step_s, math.floor(t0 / step_s) * step_s
        w = f"[{int(step_s)}s]"
        out: dict[float, list[float | None]] = {}
        for i, q in enumerate((f"avg(avg_over_time(clustertop_cluster_gpu_utilization_ratio{w})) * 100",
                               f"avg(avg_over_time(clustertop_cluster_gpu_power_watts{w}))")):
            for series in self._get({"query": q, "start": str(start), "end": str(end), "step": str(step_s)})[:1]:
                for pair in series.get("values") or () if isinstance(series, dict) else ():
                    if not (isinstance(pair, list) and len(pair) == 2):
                        continue
                    ts, v = known(pair[0], 0, 1e11), known(_num(pair[1]), 0, 1e12)
                    if ts is not None and v is not None:
                        out.setdefault(ts - step_s / 2, [None, None])[i] = v
        return [(ts, u, p) for ts, (u, p) in sorted(out.items())]

    def close(self) -> None:
        """Nothing held between reads (each is its own connection: one every few minutes at most)."""


def _num(v: object) -> float | None:
    # Prometheus sends values as strings ("NaN", "+Inf" included): those are unknown here, not numbers.
    try:
        return float(v) if isinstance(v, str | int | float) else None
    except ValueError:
        return None
