"""Provides the downsampled history tiers: which figures they keep, the one fold that makes a bucket,
and the blocks they are stored in.

The agent keeps, beside its ~1-hour stream of 5-second ``HistPoint``s (``wire.hist_key``), two tiers:
one point per wall-clock minute kept 24 h, and one per 10 minutes kept 7 days (``TIERS``). A bucket is
made of the samples whose timestamps fall in it (a 1-minute bucket of ``HistPoint``s, a 10-minute one
of 1-minute points weighted by their sample counts); a minute with no sample stays an empty slot,
which every reader shows as a gap, never as 0.

Storage: fixed blocks of buckets (an hour of minutes, a day of 10-minute points), one string key each
(``wire.tier_block_key``) holding a ``schema.TierBlock`` and expiring once its newest bucket is older
than the tier keeps. A bucket is a slot, so it cannot be written twice; a block costs one key's
overhead instead of one stream entry's per point; and a range is one MGET of block keys the reader
can name from the clock. ``bench/history_bytes.py`` has the figures.

Figures are kept by name (``FIGURES``), each quantised to an int of its unit (1 %, 1 MiB, 1 W, 1 °C,
1 KiB/s): a figure a later agent adds (energy, say) is one more entry here and one more column in its
blocks, which older dashboards skip.

Pure: no I/O. The writer is ``agents/tiers.py``; the dashboard reads with ``dashboard/source.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from clustertop.wire import schema
from clustertop.wire.text import known

#: Raw and quantised figures are kept in this range (a node's 2**64 or NaN is dropped, never encoded).
#: Wider than ``text.known``'s default (1e10): 384 GiB of memory or a 100 Gb/s NIC's bytes/s pass it.
MAX_Q = 2**53
#: Per-GPU lists read from a block are cut to this many cards: a block is data from Redis, and a list of
#: 60,000 "cards" would become 60,000 plot series.
MAX_CARDS = 64


def _k(v: object) -> float | None:
    return known(v, -MAX_Q, MAX_Q)


@dataclass(frozen=True)
class Tier:
    name: str  # in the key: ct:v1:hist:{host}:{name}:{block start}
    step_s: int  # bucket width, aligned to the epoch (wall-clock minute boundaries)
    block_s: int  # buckets per block x step_s: one key
    span_s: int  # how far back it keeps

    @property
    def slots(self) -> int:
        return self.block_s // self.step_s

    def block_of(self, ts: float) -> int:
        return int(ts // self.block_s) * self.block_s

    def ttl_ms(self) -> int:
        """A block outlives its last bucket by the tier's span: then every bucket in it is past keeping."""
        return (self.span_s + self.block_s) * 1000


MINUTE = Tier("1m", 60, 3600, 24 * 3600)
TEN_MINUTES = Tier("10m", 600, 24 * 3600, 7 * 24 * 3600)
TIERS = (MINUTE, TEN_MINUTES)


@dataclass(frozen=True)
class Figure:
    scale: float  # raw units per stored int
    peak: bool  # also keep the bucket's maximum (drawn as the "max" line)


#: The figures the node screen's and the wall's trends draw. "gu" is per GPU (a list); the other GPU
#: figures are the node's sums (VRAM, power) and hottest card (temperature), which is what the cluster
#: trends add up: per-card lists of all four would cost ~3x the bytes for lines nobody draws. Disk
#: rates are not drawn over time anywhere, so they are not kept (the 1-hour stream has them).
FIGURES: dict[str, Figure] = {
    "cpu": Figure(1.0, True),  # CPU util %
    "mem": Figure(2.0**20, False),  # memory used, MiB
    "gu": Figure(1.0, False),  # per-GPU util % (its peak per card would cost 9 bytes a point on 8 GPUs)
    "gm": Figure(2.0**20, False),  # VRAM used on the node, MiB
    "gp": Figure(1000.0, True),  # GPU power on the node, W (from mW)
    "gt": Figure(1.0, True),  # hottest GPU, °C
    "rx": Figure(1024.0, True),  # Σ NIC receive, KiB/s
    "tx": Figure(1024.0, True),
}

Value = float | list[float | None]
Stored = int | list[int | None]
PEAK = "^"  # a column's suffix for the bucket's maximum: "cpu^"


class TierPoint(msgspec.Struct, kw_only=True, gc=False):
    """One bucket: its sample count, and per figure the mean (``a``) and, where kept, maximum (``x``),
    as stored ints. Not a payload itself: a row of a ``schema.TierBlock``."""

    n: int = 0
    a: dict[str, Stored] | None = None
    x: dict[str, Stored] | None = None


def _sum(vals: list[int | None] | None) -> float | None:
    known_vals = [f for f in (_k(v) for v in vals or ()) if f is not None]
    return sum(known_vals) if known_vals else None


def figures_of(hp: schema.HistPoint) -> dict[str, Value]:
    """The tier figures of one history sample, in raw units (%, bytes, mW, °C, bytes/s); unknown ones left out."""
    out: dict[str, Value] = {}
    for name, v in (("cpu", hp.cpu), ("mem", hp.mem), ("rx", hp.rx), ("tx", hp.tx), ("gm", _sum(hp.gm)),
                    ("gp", _sum(hp.gp))):
        f = _k(v)
        if f is not None:
            out[name] = f
    temps = [f for f in (_k(t) for t in hp.gt or ()) if f is not None]
    if temps:
        out["gt"] = max(temps)
    if hp.gu:
        out["gu"] = [_k(u) for u in hp.gu]
    return out


class _Acc:
    """Running weighted sum, weight and maximum of one figure (or one GPU of it)."""

    __slots__ = ("total", "weight", "peak")

    def __init__(self) -> None:
        self.total = 0.0
        self.weight = 0.0
        self.peak: float | None = None

    def add(self, mean: float | None, peak: float | None, weight: float) -> None:
        if mean is not None:
            self.total += mean * weight
            self.weight += weight
        top = peak if peak is not None else mean
        if top is not None and (self.peak is None or top > self.peak):
            self.peak = top


class Bucket:
    """The samples of one bucket being folded: ``add`` them in any order, ``point()`` the result."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.n = 0
        self._scalars: dict[str, _Acc] = {}
        self._lists: dict[str, list[_Acc]] = {}

    def add(self, means: dict[str, Value], peaks: dict[str, Value] | None = None, weight: int = 1) -> None:
        """One sample: a raw ``HistPoint``'s figures (weight 1), or a finer tier's point (its ``n``)."""
        peaks = peaks if peaks is not None else means
        self.n += weight
        for name, mean in means.items():
            peak = peaks.get(name)
            if isinstance(mean, list):
                accs = self._lists.setdefault(name, [])
                accs.extend(_Acc() for _ in range(len(mean) - len(accs)))
                pk = peak if isinstance(peak, list) else []
                for i, m in enumerate(mean):
                    accs[i].add(_k(m), _k(pk[i]) if i < len(pk) else None, weight)
            else:
                self._scalars.setdefault(name, _Acc()).add(_k(mean), _k(peak), weight)

    def point(self) -> TierPoint:
        means: dict[str, Stored] = {}
        peaks: dict[str, Stored] = {}
        for name, acc in self._scalars.items():
            fig = FIGURES.get(name, Figure(1.0, False))
            q = _q(acc.total / acc.weight if acc.weight else None, fig.scale)
            if q is not None:
                means[name] = q
            p = _q(acc.peak, fig.scale) if fig.peak else None
            if p is not None:
                peaks[name] = p
        for name, accs in self._lists.items():
            fig = FIGURES.get(name, Figure(1.0, False))
            ms = [_q(a.total / a.weight if a.weight else None, fig.scale) for a in accs]
            if any(m is not None for m in ms):
                means[name] = ms
            if fig.peak:
                ps = [_q(a.peak, fig.scale) for a in accs]
                if any(p is not None for p in ps):
                    peaks[name] = ps
        return TierPoint(n=self.n, a=means or None, x=peaks or None)


def _q(v: float | None, scale: float) -> int | None:
    f = None if v is None else known(v / scale, -MAX_Q, MAX_Q)
    return None if f is None else round(f)


def unq(p: TierPoint, peak: bool = False) -> dict[str, Value]:
    """A point's means (or maxima) back in raw units; figures this side does not know are left out."""
    src = (p.x if peak else p.a) or {}
    out: dict[str, Value] = {}
    for name, v in src.items():
        fig = FIGURES.get(name)
        if fig is None:
            continue
        if isinstance(v, list):
            out[name] = [None if e is None else _k(e * fig.scale) for e in v]
        else:
            f = _k(v * fig.scale)
            if f is not None:
                out[name] = f
    return out


def bucket_start(ts: float, tier: Tier) -> int:
    """The start (epoch seconds) of the bucket ``ts`` falls in: wall-clock boundaries, so an agent that
    restarts mid-minute lands in the same bucket as before it stopped."""
    return int(ts // tier.step_s) * tier.step_s


def as_hist(start: int, p: TierPoint, tier: Tier) -> schema.HistPoint:
    """A tier point as the history sample the node screen plots (the bucket's means, at its middle);
    per-GPU VRAM, power and temperature are not kept per card, so those lists stay None."""
    m = unq(p)
    gu = m.get("gu")

    def f(name: str) -> float | None:
        v = m.get(name)
        return v if isinstance(v, float) else None

    mem = f("mem")
    return schema.HistPoint(ts=start + tier.step_s / 2, cpu=f("cpu"), mem=None if mem is None else int(mem),
                            gu=[None if u is None else int(u) for u in gu] if isinstance(gu, list) else None,
                            rx=f("rx"), tx=f("tx"))


def put(block: schema.TierBlock, start: int, p: TierPoint) -> bool:
    """Write bucket ``start``'s point into its slot of ``block``; False (nothing changed) where the slot is
    already taken, by this run or an earlier one: a bucket is written once."""
    slot = (start - block.start) // block.step
    if not 0 <= slot < 100_000 or start % block.step:
        raise ValueError(f"bucket {start} is not in the block at {block.start}")
    if slot < len(block.rows) and block.rows[slot] is not None:
        return False
    values: dict[str, Stored] = dict((p.a or {}).items())
    values.update({k + PEAK: v for k, v in (p.x or {}).items()})
    for name in values:
        if name not in block.cols:
            block.cols.append(name)
    row: list[Stored | None] = [p.n, *(values.get(c) for c in block.cols)]
    while row and row[-1] is None:
        row.pop()
    block.rows.extend([None] * (slot + 1 - len(block.rows)))
    block.rows[slot] = row
    return True


def points(block: schema.TierBlock) -> list[tuple[int, TierPoint]]:
    """The (bucket start, point) of every filled slot, oldest first; a malformed row (from a hostile or
    broken writer) is skipped like a gap."""
    out: list[tuple[int, TierPoint]] = []
    step = block.step if isinstance(block.step, int) and block.step > 0 else None
    if step is None:
        return out
    for i, row in enumerate(block.rows):
        if not row or not isinstance(row[0], int) or row[0] <= 0:
            continue
        means: dict[str, Stored] = {}
        peaks: dict[str, Stored] = {}
        for name, v in zip(block.cols, row[1:], strict=False):
            if v is None:
                continue
            if isinstance(v, list):
                v = v[:MAX_CARDS]
            if name.endswith(PEAK):
                peaks[name[: -len(PEAK)]] = v
            else:
                means[name] = v
        out.append((block.start + i * step, TierPoint(n=row[0], a=means or None, x=peaks or None)))
    return out


def last_start(block: schema.TierBlock) -> int | None:
    """The start of the newest filled slot of ``block`` (None: none)."""
    filled = [i for i, row in enumerate(block.rows) if row]
    return block.start + filled[-1] * block.step if filled else None


def block_starts(tier: Tier, t0: float, t1: float) -> list[int]:
    """The blocks that hold the buckets between ``t0`` and ``t1``, oldest first (a range's one MGET)."""
    first, last = tier.block_of(t0), tier.block_of(t1)
    return list(range(first, last + 1, tier.block_s)) if last >= first else []
