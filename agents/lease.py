"""Provides the Redis lease that makes one agent at a time poll a cluster-scope source.

Taken with SET NX PX; renewed and released with WATCH/MULTI (compare-and-set) so an agent never
extends or deletes a lease someone else took over while it was paused (GC, swap, network). No Lua:
EVAL would let a node run a loop that stalls Redis for everyone, so node users are not granted it.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from clustertop import wire

#: The lease outlives this many renewal periods, so one slow tick does not hand it over.
TTL_PERIODS = 3.0
MIN_TTL_S = 2.0


class Lease:
    def __init__(self, client: Any, name: str, node: str, period_s: float, clock: Any = time.monotonic) -> None:
        self.client = client
        self.name = name
        self.key = wire.lease_key(name)
        # node:pid:random - readable in redis-cli, and unique even for two agents on one node.
        self.token = f"{node}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.period_s = period_s
        self.ttl_ms = int(max(MIN_TTL_S, period_s * TTL_PERIODS) * 1000)
        self.clock = clock
        self._held_until = 0.0  # our own conservative idea of when the lease lapses
        self._mine = False  # the last refresh took or renewed it (our token may still be in the key)
        self._next_try = 0.0

    @property
    def held(self) -> bool:
        return self.clock() < self._held_until

    def refresh(self) -> bool:
        """Renew if we hold it, try to take it if not; at most once per period. Returns held.

        Redis errors propagate; until our local expiry passes we keep believing we hold it,
        which is exactly as long as Redis would keep it for us.
        """
        now = self.clock()
        if now < self._next_try:
            return self.held
        self._next_try = now + self.period_s
        if self.held:
            ok = self._if_mine(lambda p: p.pexpire(self.key, self.ttl_ms))
        else:
            ok = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
            if not ok and self._mine:
                # Our own idea of the lease lapses at 0.9 of its TTL, Redis's at 1.0: a holder paused past the
                # first (a long step) finds the key still there with its own token, so it renews rather than
                # losing the lease to nobody for a period.
                ok = self._if_mine(lambda p: p.pexpire(self.key, self.ttl_ms))
        self._held_until = now + self.ttl_ms / 1000 * 0.9 if ok else 0.0
        self._mine = ok
        return ok

    def holder(self) -> str | None:
        raw = self.client.get(self.key)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw

    def release(self) -> None:
        if self._held_until or self._mine:
            self._held_until, self._mine = 0.0, False
            self._if_mine(lambda p: p.delete(self.key))

    def _if_mine(self, action: Any) -> bool:
        """Run ``action`` only while the key still holds our token (WATCH, GET, MULTI/EXEC): the same
        code on a real Redis, the agent's RESP client and the embedded store."""
        with self.client.pipeline(transaction=True) as p:
            try:
                p.watch(self.key)
                raw = p.get(self.key)
                if (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw) != self.token:
                    p.unwatch()
                    return False
                p.multi()
                action(p)
                return bool(p.execute()[0])
            except Exception as e:  # WatchError (RESP client, redis-py, fakeredis): changed under us, not ours
                if type(e).__name__ != "WatchError":
                    raise
                return False
