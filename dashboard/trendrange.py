"""Provides the wall's trends past an hour (``h`` on the wall: 1 h / 24 h / 7 d): the cluster's GPU
utilisation (mean over cards) and GPU power (sum over nodes) per bucket, from every GPU node's tier in
Redis, or from Prometheus's cluster totals with ``[history] prometheus = URL``. Blocking; worker only.

Reading every node's tier costs one MGET of its block keys per node (an 8-GPU node's day: ~75 KiB), so
from Redis it is done for at most ``MAX_NODES`` nodes; past that the trends say to configure Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustertop.dashboard.promhistory import PromError, PromHistory
from clustertop.dashboard.ranges import Range
from clustertop.wire import schema
from clustertop.wire.tiers import unq

MAX_NODES = 64


@dataclass
class ClusterRange:
    rng: Range
    points: list[tuple[float, float | None, float | None]]  # (ts, util %, power mW), oldest first
    origin: str
    note: str | None = None


def cluster_range(source: Any, hosts: list[str], rng: Range, now: float,
                  prometheus: PromHistory | None = None) -> ClusterRange:
    """The wall's util and power trend over ``rng`` (which must have a tier). Raises what Redis raises."""
    assert rng.tier is not None
    step = f"{rng.tier.step_s // 60}-minute points"
    note = None
    if prometheus is not None:
        try:
            pts = prometheus.cluster(now - rng.seconds, now, rng.tier.step_s)
            return ClusterRange(rng, [(ts, u, None if w is None else w * 1000) for ts, u, w in pts], f"Prometheus, {step}")
        except PromError as e:
            note = f"Prometheus unreachable ({e})"
    if len(hosts) > MAX_NODES:
        return ClusterRange(rng, [], "", f"{len(hosts)} GPU nodes: past {MAX_NODES}, set [history] prometheus")
    from clustertop.dashboard.screens.wall import seed_from_history  # lazy: the wall imports this module

    hists = []
    for host in hosts:
        pts = []
        for start, p in source.tier_blocks(host, rng.tier, now, rng.seconds):
            m = unq(p)
            gu, gp = m.get("gu"), m.get("gp")
            pts.append(schema.HistPoint(ts=start + rng.tier.step_s / 2,
                                        gu=[None if u is None else int(u) for u in gu] if isinstance(gu, list) else None,
                                        gp=[int(gp)] if isinstance(gp, float) else None))  # the node's sum
        hists.append(pts)
    seed = seed_from_history(hists, float(rng.tier.step_s))
    return ClusterRange(rng, [(s.ts, s.gpu_util_pct, s.power_mw) for s in seed], f"Redis, {step}", note)
