"""Provides the Redis lease that makes one agent at a time poll a cluster-scope source.

Taken with SET NX PX; renewed and released with compare-and-set scripts so an agent never
extends or deletes a lease someone else took over while it was paused (GC, swap, network).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from collectors import wire

#: The lease outlives this many renewal periods, so one slow tick does not hand it over.
TTL_PERIODS = 3.0
MIN_TTL_S = 2.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


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
            ok = bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        else:
            ok = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        self._held_until = now + self.ttl_ms / 1000 * 0.9 if ok else 0.0
        return ok

    def holder(self) -> str | None:
        raw = self.client.get(self.key)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw

    def release(self) -> None:
        if self._held_until:
            self._held_until = 0.0
            self.client.eval(_RELEASE, 1, self.key, self.token)
