"""Provides the agent's tier writer: its own history points folded into 1-minute and 10-minute buckets
(``clustertop.wire.tiers``), written into its own block keys.

Fed with the same ``HistPoint``s the publisher adds to the 1-hour stream. A bucket is closed once the
first sample of a later bucket arrives (~5 s after its minute ends) and goes into its slot of its block;
the block is written whole (SET with its expiry: a few KiB once a minute). A slot already filled is
never written again, so nothing is duplicated.

A restart loses nothing: before its first write the writer reads the blocks it may have to add to, takes
what they hold as written, and re-folds what Redis still has past that point: the 1-hour stream's
samples from before this process started (so a half-done minute is rebuilt, and minutes that closed
while the agent was down are written late), and the 1-minute points newer than the last 10-minute one.
"""

from __future__ import annotations

import logging
from typing import Any

from clustertop import wire
from clustertop.wire import schema
from clustertop.wire.tiers import (
    MINUTE,
    TEN_MINUTES,
    Bucket,
    Tier,
    TierPoint,
    block_starts,
    bucket_start,
    figures_of,
    last_start,
    points,
    put,
    unq,
)

log = logging.getLogger(__name__)

#: The newest entries of the 1-hour stream re-read on start (it holds ~800: all of it, once per start).
REREAD_MAX = 1000
#: Blocks kept in memory per tier: the one being filled and the one before (its last bucket closes
#: in the next block's first minute).
KEEP_BLOCKS = 2


class _Level:
    """One tier: its open buckets, its blocks, and the start of the last bucket it has filled."""

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.open: dict[int, Bucket] = {}
        self.last: int | None = None
        self.blocks: dict[int, schema.TierBlock] = {}
        self.dirty: set[int] = set()

    def add(self, ts: float, means: dict[str, Any], peaks: dict[str, Any] | None, weight: int) -> None:
        start = bucket_start(ts, self.tier)
        if self.last is not None and start <= self.last:
            return  # a bucket already filled (a late sample, a clock stepped back): never rewritten
        b = self.open.get(start)
        if b is None:
            b = self.open[start] = Bucket(start)
        b.add(means, peaks, weight)

    def closed(self, now_ts: float) -> list[Bucket]:
        """The buckets before the one ``now_ts`` is in, oldest first, taken out."""
        current = bucket_start(now_ts, self.tier)
        done = sorted(s for s in self.open if s < current)
        return [self.open.pop(s) for s in done]

    def key(self, block: int, node: str) -> str:
        return wire.tier_block_key(node, self.tier.name, block)


class TierWriter:
    def __init__(self, node: str) -> None:
        self.node = node
        self.minute = _Level(MINUTE)
        self.ten = _Level(TEN_MINUTES)
        self.seeded = False
        self._first_own_ts: float | None = None
        self._latest_ts: float | None = None
        #: Closed buckets waiting to be put into their blocks: (level, start, point), oldest first.
        self.pending: list[tuple[_Level, int, TierPoint]] = []

    def add(self, hp: schema.HistPoint, extra: dict[str, float] | None = None) -> None:
        """One history sample the publisher is writing to the 1-hour stream now. ``extra``: more figures by
        name, in raw units (their scale and whether a peak is kept: ``wire.tiers.FIGURES``; a name not
        there is kept as a rounded mean). They are not in the 1-hour stream, so a restart cannot rebuild
        them for the minute it happens in."""
        if self._first_own_ts is None:
            self._first_own_ts = hp.ts
        self._latest_ts = hp.ts if self._latest_ts is None else max(self._latest_ts, hp.ts)
        figs = figures_of(hp)
        if extra:
            figs.update({k: v for k, v in extra.items() if k not in figs})
        self.minute.add(hp.ts, figs, None, 1)
        if self.seeded:  # before the seed, a bucket may still lack the samples of the previous run
            self._close(self._latest_ts)

    def has_work(self) -> bool:
        """Something to read or write: the seed, closed buckets, or blocks a failed write left behind."""
        return not self.seeded or bool(self.pending) or bool(self.minute.dirty or self.ten.dirty)

    def _close(self, now_ts: float) -> None:
        for b in self.minute.closed(now_ts):
            p = b.point()
            self._queue(self.minute, b.start, p)
            # The 10-minute tier is folded from the minutes, weighted by their sample counts.
            self.ten.add(b.start, unq(p), unq(p, peak=True), p.n)
        for b in self.ten.closed(now_ts):
            self._queue(self.ten, b.start, b.point())

    def _queue(self, level: _Level, start: int, p: TierPoint) -> None:
        if level.last is not None and start <= level.last:
            return
        self.pending.append((level, start, p))
        level.last = start

    def _load(self, client: Any, level: _Level, starts: list[int]) -> None:
        """Read the blocks ``starts`` of ``level`` not in memory yet (one MGET); a missing or unreadable
        one starts empty (an unreadable one is overwritten: it held nothing this writer could keep)."""
        want = [s for s in starts if s not in level.blocks]
        if not want:
            return
        for s, data in zip(want, client.mget([level.key(s, self.node) for s in want]), strict=True):
            block = None
            if data is not None:
                try:
                    block = wire.decode(data, schema.TierBlock)
                except wire.WireError as e:
                    log.warning("history tier block %s unreadable, starting it again: %s", level.key(s, self.node), e)
            if block is None or block.start != s or block.step != level.tier.step_s:
                block = schema.TierBlock(start=s, step=level.tier.step_s)
            level.blocks[s] = block

    def seed(self, client: Any) -> None:
        """Read what the tiers hold and re-fold what Redis has past it (see the module doc). Raises the
        client's errors (the caller tries again at its next write)."""
        now = self._latest_ts
        if now is None:
            return
        for level in (self.minute, self.ten):
            self._load(client, level, block_starts(level.tier, now - level.tier.block_s, now))
            tops = [t for t in (last_start(b) for b in level.blocks.values()) if t is not None]
            if tops and (level.last is None or max(tops) > level.last):
                level.last = max(tops)
        # 1-minute points the 10-minute tier has not folded yet (at most one 10-minute bucket's worth
        # unless the agent was away: then from the blocks back to the last 10-minute point, up to a day).
        since = (self.ten.last + TEN_MINUTES.step_s if self.ten.last is not None
                 else bucket_start(now, TEN_MINUTES))
        since = max(since, now - 86400)
        self._load(client, self.minute, block_starts(MINUTE, since, now))
        for block in list(self.minute.blocks.values()):
            for start, p in points(block):
                if start >= since:
                    self.ten.add(start, unq(p), unq(p, peak=True), p.n)
        # Samples of the 1-hour stream after the last filled minute, from before this process's first.
        # Its ids are Redis's clock, the samples' ts the node's (which may be skewed): filter by ts.
        since_m = self.minute.last + MINUTE.step_s if self.minute.last is not None else 0
        own = self._first_own_ts
        for _eid, fields in client.xrevrange(wire.hist_key(self.node), count=REREAD_MAX):
            hp = _decode(fields)
            if hp is None or hp.ts < since_m or (own is not None and hp.ts >= own):
                continue  # written already, ours (already folded), or unreadable
            self.minute.add(hp.ts, figures_of(hp), None, 1)
        self.seeded = True
        self._close(now)

    def flush(self, client: Any) -> int:
        """Put the closed buckets into their blocks and write the blocks that changed (one SET each, with
        their expiry); returns how many blocks were written. A store that is down leaves them to the
        next call (raising the client's error)."""
        if not self.seeded:
            self.seed(client)
            if not self.seeded:
                return 0
        for level, start, p in self.pending:
            block = level.tier.block_of(start)
            self._load(client, level, [block])
            if put(level.blocks[block], start, p):
                level.dirty.add(block)
        self.pending.clear()
        written = 0
        for level in (self.minute, self.ten):
            for block in sorted(level.dirty):
                # Packed (wire.compress, no dictionary: a block is an hour or a day of numbers), as the 1-hour
                # stream's points are: what a day of history costs in Redis (bench/history_bytes.py).
                client.set(level.key(block, self.node), wire.pack(wire.encode(level.blocks[block]), "tier"),
                           px=level.tier.ttl_ms())
                level.dirty.discard(block)
                written += 1
            for old in sorted(level.blocks)[:-KEEP_BLOCKS]:
                if old not in level.dirty:
                    del level.blocks[old]
        return written


def _decode(fields: Any) -> schema.HistPoint | None:
    data = fields.get(b"d") if isinstance(fields, dict) else None
    try:
        return wire.decode(data, schema.HistPoint)
    except wire.WireError:
        return None
