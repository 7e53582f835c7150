"""Provides the energy windows: a node's ledger (``schema.EnergyLedger``) summed over the last hour and
24 hours, per subject, and the cluster's merge of many ledgers.

The agent writes the ledger (``clustertop.agents.energy``); this is the one place that reads it. Every
figure from a ledger is node data: a NaN, a negative or an absurd number of joules is left out (and the
subject marked), never added into a total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from clustertop import wire
from clustertop.wire import schema

HOUR_S = 3600.0
DAY_S = 24 * 3600.0
RECENT_S = 300
#: No subject used more than this many joules in a day on one node (1 MW for 24 h): anything above is garbage.
MAX_J = 1e6 * DAY_S
J_PER_KWH = 3.6e6


@dataclass
class Use:
    """One subject's energy and GPU time over a window."""

    kind: str
    name: str
    joules: float = 0.0
    gpu_s: float = 0.0
    methods: set[str] = field(default_factory=set)  # GPUs: "counter", "power" (both: mixed)
    hosts: set[str] = field(default_factory=set)

    @property
    def kwh(self) -> float:
        return self.joules / J_PER_KWH

    @property
    def gpu_hours(self) -> float:
        return self.gpu_s / 3600.0

    @property
    def method(self) -> str | None:
        if not self.methods:
            return None
        return next(iter(self.methods)) if len(self.methods) == 1 else "mixed"


@dataclass
class Windows:
    """Per (kind, name): the last hour's and the last 24 hours' use, with the price where every node agrees."""

    hour: dict[tuple[str, str], Use] = field(default_factory=dict)
    day: dict[tuple[str, str], Use] = field(default_factory=dict)
    nodes: int = 0  # ledgers merged
    bad: list[str] = field(default_factory=list)  # hosts whose ledger had garbage (left out where it was)
    price_per_kwh: float | None = None
    currency: str | None = None
    mixed_prices: bool = False  # nodes configured different prices: no single cost is shown
    since_ts: float | None = None  # the youngest ledger's start: a window may cover less than its name

    def rows(self, kind: str) -> list[tuple[Use, Use | None]]:
        """(24 h, 1 h) per subject of ``kind``, most energy first."""
        day = sorted((u for (k, _), u in self.day.items() if k == kind), key=lambda u: (-u.joules, u.name))
        return [(u, self.hour.get((kind, u.name))) for u in day]

    def cost(self, u: Use | None) -> float | None:
        if u is None or self.price_per_kwh is None or self.mixed_prices:
            return None
        return u.kwh * self.price_per_kwh


def _ok(v: float) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= MAX_J


def _add(into: dict[tuple[str, str], Use], u: schema.EnergyUse, host: str) -> None:
    have = into.get((u.kind, u.name))
    if have is None:
        have = into[(u.kind, u.name)] = Use(kind=u.kind, name=u.name)
    have.joules += u.joules
    have.gpu_s += u.gpu_s
    if u.method:
        have.methods.update(("counter", "power") if u.method == "mixed" else (u.method,))
    have.hosts.add(host)


def windows(ledgers: Iterable[schema.EnergyLedger], now: float) -> Windows:
    """The 1 h window: the 5-minute buckets that overlap the last hour; the 24 h window: the hour buckets
    that overlap the last day (so they cover 60-65 min and 24-25 h: never less than their name)."""
    w = Windows()
    prices: set[tuple[float | None, str | None]] = set()
    for led in ledgers:
        w.nodes += 1
        host = led.host
        bad = False
        for buckets, width, into in ((led.recent, RECENT_S, w.hour), (led.hours, int(HOUR_S), w.day)):
            span = HOUR_S if into is w.hour else DAY_S
            for start, uses in buckets.items():
                if not (now - span < start + width and start <= now):
                    continue
                for u in uses:
                    if not (_ok(u.joules) and _ok(u.gpu_s)):
                        bad = True
                        continue
                    _add(into, u, host)
        if bad:
            w.bad.append(host)
        price = led.price_per_kwh if led.price_per_kwh is not None and _ok(led.price_per_kwh) else None
        prices.add((price, led.currency))
        if led.since_ts is not None and math.isfinite(led.since_ts):
            w.since_ts = led.since_ts if w.since_ts is None else max(w.since_ts, led.since_ts)
    if len(prices) == 1:
        w.price_per_kwh, w.currency = next(iter(prices))
    elif prices:
        w.mixed_prices = True
    return w


def decode_ledgers(raw: Iterable[tuple[str, bytes | None]]) -> tuple[list[schema.EnergyLedger], dict[str, str]]:
    """(host, its ``wire.energy_key`` value) pairs -> the ledgers that decode and name their own host, and
    host -> why not for the rest. No ledger (None) is no error: no GPUs, an older agent, just started."""
    ledgers: list[schema.EnergyLedger] = []
    errors: dict[str, str] = {}
    for host, data in raw:
        if data is None:
            continue
        try:
            led = wire.decode(data, schema.EnergyLedger)
        except wire.WireError as e:
            errors[host] = f"bad energy data: {e}"
            continue
        if led.host != host:
            errors[host] = "energy ledger names another host"  # one node may not speak for another
            continue
        ledgers.append(led)
    return ledgers, errors
