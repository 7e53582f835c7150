"""Provides Wants: a reader asking the agents for full snapshots every tick while it reads them.

An agent rewrites its full snapshot only every ``full_every`` seconds unless a reader wants it
(``wire.want_key``, docs/architecture.md "Byte budget"). A reader that reads a node in full (a node's screen,
the GPU table's selection, ``clustertop snapshot``, the exporter, a small cluster's screens that draw detail)
SETs that node's want key with a short PX; the agent sees its PTTL in its next tick's MULTI and publishes in
full from the tick after. So a node on screen has a fresh full snapshot within one or two intervals.

A want is a request, never a condition of the read: a reader that may not write it (an ACL from before want
keys, a READONLY replica, a dropped connection) reads as before, says why once in ``error``, and tries again
only after ``RETRY_S``, so a read-only dashboard does not pay a refused round trip every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from clustertop import wire

#: A want is rewritten once this much of its PX has passed (a reader refreshing every second writes each
#: wanted node's key about every 2 s, not every read).
REFRESH_FRACTION = 0.4
#: After a refused write, the next try.
RETRY_S = 60.0


class Wants:
    """``px_ms``: how long each want lasts (``wire.WANT_PX_MS``; the exporter, scraped every 15 s or so, asks
    for longer, up to ``wire.WANT_MAX_MS``, beyond which agents ignore it)."""

    def __init__(self, px_ms: int = wire.WANT_PX_MS, clock: Callable[[], float] = time.monotonic) -> None:
        self.px_ms = min(int(px_ms), wire.WANT_MAX_MS)
        self.clock = clock
        self._sent: dict[str, float] = {}  # host -> when its want was last written (clock)
        self._retry_at = 0.0
        self.error: str | None = None  # why the last write failed (None: it did not)
        self.writes = 0  # want keys written (tests and benches count them)

    def due(self, hosts: Iterable[str]) -> list[str]:
        """The hosts of ``hosts`` whose want is not written or is past ``REFRESH_FRACTION`` of its PX."""
        now = self.clock()
        refresh = self.px_ms / 1000 * REFRESH_FRACTION
        return [h for h in hosts if now - self._sent.get(h, -1e18) >= refresh]

    def send(self, client: Any, hosts: Iterable[str]) -> None:
        """Write the wants of ``hosts`` that are due, in one pipeline. Never raises: a reader that cannot
        write wants still reads."""
        now = self.clock()
        if now < self._retry_at:
            return
        due = self.due(hosts)
        if not due:
            return
        try:
            p = client.pipeline(transaction=False)
            for h in due:
                p.set(wire.want_key(h), b"1", px=self.px_ms)
            p.execute()
        except Exception as e:  # noqa: BLE001 - redis-py's or the agent's client: this room imports neither
            # NOPERM (an ACL without want keys), READONLY (a replica), a dropped connection: the read stands.
            self.error = f"full snapshots not requested ({type(e).__name__}: {str(e)[:200]}): detail may be up to " \
                         f"the agents' full_every old"
            self._retry_at = now + RETRY_S
            return
        self.error = None
        self.writes += len(due)
        for h in due:
            self._sent[h] = now
        if len(self._sent) > 4 * len(due) + 1024:  # forget hosts long gone (no unbounded growth)
            horizon = now - self.px_ms / 1000
            self._sent = {h: t for h, t in self._sent.items() if t >= horizon}
