"""Provides SummaryService: the bucket summaries (issue 18) an agent folds while it holds their buckets' leases.

    [summaries]
    enabled = true        # take part (present: this agent may fold buckets)
    interval = 1.0        # seconds between folds; default: the agent's interval
    max_buckets = 16      # at most this many buckets (of wire.summary.BUCKETS = 64); default: all
    gpu_columns = true    # fold every card's figures too (the GPU table's sort columns); reads the briefs' GPUs

Each ``interval``: renew the leases held and try to take others (``summary_lease(b)``, one ``agents.lease.Lease``
each) up to ``max_buckets``, in an order that starts at a bucket picked by a hash of this node's name, so several
summary nodes with ``max_buckets`` set take different buckets; read the held buckets' hosts (``read.Reader``
restricted to them: digests, and the briefs' GPUs with ``gpu_columns``), fold each bucket (``read.summary.fold``),
seal it with the node key (``control.summary.seal``) and SET it with PX = 3 intervals, all in one pipeline. A lost
lease stops that bucket at once; the next holder's summary replaces it. Own thread, own Redis connection: a slow
read never delays the agent's tick. Redis errors back off (up to ``MAX_BACKOFF_S``) and are logged once per kind;
nothing here stops the agent.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from clustertop.config import Positive
from clustertop.control import signing
from clustertop.errors import describe
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key, summary_lease

# The read side (Reader, the fold) is imported where the service runs, not here: agents/config.py imports this
# module for ``SummariesSection``, and an agent that folds nothing never loads it (tests/test_layers.py).

log = logging.getLogger("clustertop.summaries")

#: A summary lives this many intervals (as a digest does), so a reader sees it go when its folder stops.
PX_INTERVALS = 3.0
#: Backoff after a Redis error: doubles from the interval up to this.
MAX_BACKOFF_S = 30.0


class SummariesSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[summaries]``: present (and ``enabled``) = this agent may fold bucket summaries, a bucket per lease."""

    enabled: bool = True
    interval: Positive | None = None  # None: the agent's interval
    max_buckets: Annotated[int, msgspec.Meta(ge=1, le=BUCKETS)] | None = None  # None: every bucket it can take
    gpu_columns: bool = True


def bucket_order(node: str, buckets: int = BUCKETS) -> list[int]:
    """Every bucket, starting at one picked by a hash of ``node`` (CRC-32, as ``bucket_of``): summary nodes with
    ``max_buckets`` set try different buckets first, so the buckets spread over them."""
    start = zlib.crc32(node.encode("utf-8", "surrogateescape")) % buckets
    return [(start + i) % buckets for i in range(buckets)]


class SummaryService:
    def __init__(self, section: SummariesSection, node: str, interval_s: float, client_factory: Callable[[], Any],
                 lease_factory: Callable[[Any, str, float], Any], node_key: signing.PrivateKey,
                 clock: Callable[[], float] = time.time) -> None:
        self.section = section
        self.node = node
        self.interval_s = section.interval or interval_s
        self.max_buckets = section.max_buckets or BUCKETS
        self.client_factory = client_factory
        self.lease_factory = lease_factory
        self.node_key = node_key
        self.clock = clock
        self.order = bucket_order(node)
        self.client: Any = None
        self.reader: Any = None  # read.reader.Reader
        self.leases: dict[int, Any] = {}
        self.held: set[int] = set()
        self.seq = 0
        self.error: str | None = None  # the last failure (logged when it changes)
        self.folds = 0  # steps that wrote summaries (tests count them)
        #: The last step's own CPU time (this thread's), the nodes it folded and the bytes it wrote: bench figures.
        self.last_cpu_ms = 0.0
        self.last_nodes = 0
        self.last_bytes = 0
        self._buckets: dict[str, int] = {}
        #: Buckets not written at the last step, and why (``control.summary.SummaryTooLarge``), each logged once.
        self.too_large: dict[int, str] = {}

    def _bucket(self, host: str) -> int:
        b = self._buckets.get(host)
        if b is None:
            if len(self._buckets) > 4 * 65536:  # hosts come and go: never an unbounded memo
                self._buckets.clear()
            b = self._buckets[host] = bucket_of(host)
        return b

    def _mine(self, host: str) -> bool:
        return self._bucket(host) in self.held

    def _connect(self) -> None:
        from clustertop.read.reader import Reader

        if self.client is None:
            self.client = self.client_factory()
            self.leases = {b: self.lease_factory(self.client, summary_lease(b), self.interval_s) for b in self.order}
            # Only the held buckets' hosts; never every node in full, whatever their number (brief_from=0).
            self.reader = Reader(self.client, clock=self.clock, brief_from=0, hosts=self._mine)

    def step(self) -> bool:
        """Renew or take leases, then fold and write the held buckets; returns whether it wrote any. Never raises
        for Redis or bad data: the failure is logged once and the next step tries again."""
        t0 = time.thread_time()
        paused = gc.isenabled()
        try:
            self._connect()
            self._leases()
            # The cyclic collector off while a read's objects live (80,000 GPU structs at 10,000 nodes: no cycles
            # among them, all freed by reference counting): at CPython's thresholds it walked them ~250 ms a step
            # there (bench/summary_service.py). Back on right after; cycles made meanwhile are collected then.
            if paused:
                gc.disable()
            wrote = self._fold() if self.held else False
        except Exception as e:  # Redis down, a bug: the agent goes on
            why = describe(e)
            if why != self.error:
                log.warning("bucket summaries failed: %s", why)
            self.error = why
            self._drop_connection()
            return False
        finally:
            if paused:
                gc.enable()
            self.last_cpu_ms = (time.thread_time() - t0) * 1000
        if self.error is not None:
            log.info("bucket summaries work again")
            self.error = None
        return wrote

    def _leases(self) -> None:
        # The held ones renewed first, then free ones taken in this node's order while there is room.
        held = {b for b in self.order if b in self.held and self.leases[b].refresh()}
        for b in self.order:
            if len(held) >= self.max_buckets:
                break
            if b not in held and b not in self.held and self.leases[b].refresh():
                held.add(b)
        gained, lost = held - self.held, self.held - held
        if gained:
            log.info("summary buckets taken: %s", ", ".join(map(str, sorted(gained))))
        if lost:
            log.info("summary buckets handed over: %s", ", ".join(map(str, sorted(lost))))
        self.held = held

    def _fold(self) -> bool:
        from clustertop.control.summary import SummaryTooLarge, seal
        from clustertop.read.cluster import by_bucket
        from clustertop.read.plan import Level, ReadPlan
        from clustertop.read.summary import fold

        assert self.reader is not None
        state = self.reader.read(ReadPlan(Level.GPUS if self.section.gpu_columns else Level.DIGESTS))
        now = self.clock()
        self.seq += 1
        px = int(max(2.0, PX_INTERVALS * self.interval_s) * 1000)
        p = self.client.pipeline(transaction=False)
        written = nodes = 0
        for b, group in enumerate(by_bucket(state.nodes)):
            # Held still by our own clock (a lease that lapsed during a long read is not written for).
            if b not in self.held or not group or not self.leases[b].held:
                continue
            summary = fold(group, b, self.node, now, seq=self.seq, interval_s=self.interval_s,
                           gpu_columns=self.section.gpu_columns, read_ts=state.ts)
            try:
                data = seal(summary, self.node_key)
            except SummaryTooLarge as e:  # readers read this bucket's digests instead; said once, not every step
                if self.too_large.get(b) != str(e):
                    log.warning("bucket summary not written: %s", e)
                self.too_large[b] = str(e)
                p.delete(summary_key(b))
                continue
            self.too_large.pop(b, None)
            p.set(summary_key(b), data, px=px)
            written += len(data)
            nodes += len(group)
        p.execute()
        self.folds += 1
        self.last_nodes, self.last_bytes = nodes, written
        return True

    def _drop_connection(self) -> None:
        client, self.client = self.client, None
        self.reader = None
        self.held = set()  # what we held lapses by its TTL; the leases are taken again on a new connection
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: S110 - a broken connection may fail to close; a new one comes next step
                pass

    def run(self, stop: threading.Event) -> None:
        backoff = 0.0
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                self.step()
                backoff = 0.0 if self.error is None else min(MAX_BACKOFF_S, max(self.interval_s, backoff * 2))
                stop.wait(max(0.05, (backoff or self.interval_s) - (time.monotonic() - t0)))
        finally:
            self.close()

    def close(self) -> None:
        for b in list(self.held):
            try:
                self.leases[b].release()  # hand over at once instead of after the TTL
            except Exception:  # noqa: S110 - Redis gone: the lease lapses by its TTL
                pass
        self._drop_connection()
