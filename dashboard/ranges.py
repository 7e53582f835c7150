"""Provides the history ranges the node screen offers (1 h, 24 h, 7 d) and where each one is read from.

1 h is the node's own stream of 5-second points (``wire.hist_key``). 24 h and 7 d are its downsampled
tiers (``clustertop.wire.tiers``: 1-minute and 10-minute buckets of means and maxima kept by the agent in
Redis) or, with ``[history] prometheus = URL``, Prometheus's ``query_range`` over the exporter's series
(``dashboard/promhistory.py``); when Prometheus cannot answer, the Redis tiers are shown and the plot
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustertop import wire
from clustertop.wire import schema
from clustertop.wire.tiers import MINUTE, TEN_MINUTES, Tier, TierPoint, as_hist, block_starts, points


@dataclass(frozen=True)
class Range:
    label: str  # what the plots' titles and the time axis say: "24 h"
    seconds: int
    tier: Tier | None  # None: the 1-hour stream


RANGES = (Range("1 h", 3600, None), Range("24 h", 86400, MINUTE), Range("7 d", 7 * 86400, TEN_MINUTES))


@dataclass
class RangeRead:
    """One range of one node's history: points oldest first, and what they came from ("Redis, 1-minute
    points"; "Prometheus"; or why Prometheus was not used)."""

    host: str
    rng: Range
    points: list[schema.HistPoint]
    origin: str
    note: str | None = None  # e.g. "Prometheus unreachable (…): Redis tiers shown"


def range_named(label: str) -> Range:
    """The range whose label is ``label`` ("24 h"); ValueError naming the known ones."""
    for r in RANGES:
        if r.label == label:
            return r
    raise ValueError(f"no history range {label!r} (known: {', '.join(r.label for r in RANGES)})")


def next_range(current: Range) -> Range:
    return RANGES[(RANGES.index(current) + 1) % len(RANGES)]


def tier_points(client: Any, host: str, tier: Tier, now: float, seconds: float) -> list[schema.HistPoint]:
    """The tier's buckets of ``host`` in the last ``seconds``, as the node screen's history points (the
    bucket means at the bucket's middle)."""
    return [as_hist(s, p, tier) for s, p in tier_blocks(client, host, tier, now, seconds)]


def tier_blocks(client: Any, host: str, tier: Tier, now: float, seconds: float) -> list[tuple[int, TierPoint]]:
    """(bucket start, point) of ``host``'s tier in the last ``seconds``, oldest first: one MGET of its
    block keys; an unreadable block, or one that is not what its key names, is a gap."""
    starts = block_starts(tier, now - seconds, now)
    blobs = client.mget([wire.tier_block_key(host, tier.name, s) for s in starts]) if starts else []
    out: list[tuple[int, TierPoint]] = []
    for start, data in zip(starts, blobs, strict=True):
        if data is None:
            continue
        try:
            block = wire.decode(data, schema.TierBlock)
        except wire.WireError:
            continue  # one garbled block must not hide the days around it
        if block.start != start or block.step != tier.step_s:
            continue  # not the block this key names: another writer's garbage
        out += [(s, p) for s, p in points(block) if now - seconds <= s <= now]
    return out
