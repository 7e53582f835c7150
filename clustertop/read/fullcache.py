"""Provides FullCache: each node's last full snapshot as read, kept decoded, so a read fetches only those that changed.

An agent rewrites its full snapshot every ``full_every`` seconds unless a reader wants it (docs/architecture.md
"Byte budget"), and says in every tick's digest which one its key holds (``NodeDigest.full_ts``, the full
snapshot's own ``ts``). A reader that takes every node in full (``Level.DETAIL``, ``Level.FULL``) keeps here, per
host, the SHA-256 of the bytes it last fetched and their decoding, and leaves out of its round trip the hosts whose
last digest says their key still holds those and whose next one is not due (``skip``); the digests read in the
same round trip then name the ones that changed meanwhile (``changed``), fetched in one more MGET of that read.
So a read of 1,000 nodes whose agents rewrite every 15 s fetches and decodes ~70 full snapshots, not 1,000.

Always fetched, never taken from here: a host with nothing kept; one whose digest does not say (an agent from
before ``full_ts``, a digest folded here from a brief, a NaN stamp); one whose next full snapshot is due by its
cadence (``_due``: fetched in the first round trip rather than found changed after it) or which is written every
tick (wanted by some reader); and every host whose seal the read takes, so a seal is always checked against the
bytes in Redis now, never against what was kept (docs/security.md: a full snapshot replaced in Redis is noticed
where its seal is checked, as before).

Trust and hostile data: nothing here is trusted for having been kept. Fetched bytes equal to the kept ones (by
SHA-256) reuse their decoding (the same bytes decode the same); any other bytes are decoded and checked (host,
shape) as every payload is, and replace the kept ones. A writer who changes a digest's ``full_ts`` only makes the
reader fetch again; one who replaces a full snapshot without touching the digest is not seen until the next fetch
(the host's next cadence, or its seal's check), and meanwhile the screens show what was read before from the same
key, no more trusted and no less. Memory: one entry per host of the index (``forget``): 32 bytes and one decoded
snapshot each (the reader's ``last_good`` kept a decoded snapshot per host already). The decoded snapshot is
shared by every read that shows it; the one change made to it in place is the naming of pod owners
(``read.owners``), the same for the same pod uid on every read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping

from clustertop.wire import schema


class FullCache:
    """Per host, the SHA-256 of the full snapshot's bytes last fetched and their decoding (see the module's
    docstring). The hash, not the bytes: a hostile node's 256 KiB payload costs this cache 32 bytes."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[bytes, schema.NodeSnapshot]] = {}
        #: Hosts whose last two full snapshots read were at most two ticks apart: wanted by some reader, so written
        #: every tick or every second one (``[agent] full_every_wanted``), and fetched in every read's first round
        #: trip (an unchanged one costs the fetch, not a decode).
        self._every_tick: set[str] = set()
        self.fetched = 0  # full snapshots fetched (tests and benches count them)
        self.decoded = 0  # ... of which decoded (new bytes)
        self.kept = 0  # full snapshots taken from here instead of fetched

    def __len__(self) -> int:
        return len(self._kept)

    def skip(self, hosts: Iterable[str], digests: Mapping[str, schema.NodeDigest],
             seals: Collection[str] = ()) -> set[str]:
        """Of ``hosts`` (read in full), those whose full snapshot need not be fetched: one is kept, its host's
        last digest (``digests``) says the key still holds it, its next one is not due, its seal is not read."""
        out = set()
        seals = set(seals)
        for h in hosts:
            e = self._kept.get(h)
            d = digests.get(h)
            if e is None or d is None or h in seals:
                continue
            snap = e[1]
            if h in self._every_tick and d.full_ts != d.ts:
                self._every_tick.discard(h)  # its last tick wrote none: nobody wants it any more
            if d.full_ts == snap.ts and h not in self._every_tick and not _due(snap, d):
                out.add(h)
        return out

    def changed(self, skipped: Iterable[str], digests: Mapping[str, schema.NodeDigest]) -> list[str]:
        """Of the hosts ``skipped`` this read, those whose digest read now names another full snapshot than the
        one kept (or none, or names nothing): fetched in one more MGET of the same read."""
        out = []
        for h in skipped:
            e = self._kept.get(h)
            d = digests.get(h)
            if e is None or d is None or d.full_ts != e[1].ts:
                out.append(h)
        return out

    def known(self, host: str, data: bytes | None, fetched: bool) -> schema.NodeSnapshot | None:
        """The decoded full snapshot to show for ``host``: the kept one where its bytes were not fetched this read,
        or were and are the same bytes; None where there are new bytes to decode (``put`` them) or none at all."""
        e = self._kept.get(host)
        if not fetched:
            if e is not None:
                self.kept += 1
                return e[1]
            return None
        self.fetched += data is not None
        if data is None:
            self.drop(host)  # the key is gone: nothing is kept for it
            return None
        if e is not None and e[0] == _sha(data):
            return e[1]
        self.decoded += 1
        return None

    def put(self, host: str, data: bytes, snap: schema.NodeSnapshot) -> None:
        """Keep ``snap``, decoded from ``data`` and checked (its host), as ``host``'s full snapshot read last."""
        old = self._kept.get(host)
        gap = snap.ts - old[1].ts if old is not None else math.inf
        if 0 < gap <= 2.5 * snap.interval_s:
            self._every_tick.add(host)
        else:
            self._every_tick.discard(host)
        self._kept[host] = (_sha(data), snap)

    def drop(self, host: str) -> None:
        self._kept.pop(host, None)
        self._every_tick.discard(host)

    def forget(self, listed: set[str]) -> None:
        """Forget hosts no longer in the index (the cache is bounded by the node count)."""
        if self._kept.keys() <= listed:  # one pass in C; the loop below only when a node went away
            return
        for h in [h for h in self._kept if h not in listed]:
            del self._kept[h]
        self._every_tick &= self._kept.keys()


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _due(snap: schema.NodeSnapshot, d: schema.NodeDigest) -> bool:
    """Whether the agent of ``d`` writes its next full snapshot at its next tick by its cadence (``full_every_s``,
    carried by the full snapshot; none: every tick), so this read fetches it in its first round trip."""
    every, interval = snap.full_every_s, snap.interval_s
    if not every or not math.isfinite(every) or not math.isfinite(interval) or not math.isfinite(d.ts):
        return True
    return d.ts + max(interval, 0.0) >= snap.ts + every - 0.5 * max(interval, 0.0)
