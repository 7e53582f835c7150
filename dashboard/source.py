"""Provides the data source: blocking Redis reads, meant to run in a worker thread only.

One ``Reader`` per app keeps the last good snapshot per node, so stale and bad nodes keep their
last values. A Redis failure is returned as a message, never raised into the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from clustertop import wire
from clustertop.control.summary import open_summary
from clustertop.dashboard.promhistory import PromError, PromHistory
from clustertop.dashboard.ranges import Range, RangeRead, tier_blocks, tier_points
from clustertop.read.plan import ALL_FULL, ReadPlan
from clustertop.read.reader import ClusterState, Reader
from clustertop.read.want import Wants
from clustertop.wire import schema
from clustertop.wire.tiers import Tier, TierPoint

#: History points read on drill-down: an hour at the publisher's 5 s history interval.
HIST_COUNT = 720


class Source:
    def __init__(self, client_factory: Callable[[], Any], clock: Callable[[], float] = time.time) -> None:
        self.client_factory = client_factory
        self.clock = clock
        self._client: Any = None
        self._reader: Reader | None = None
        #: The anchors a bucket summary's signature is checked against (the app's known_nodes): None, none
        #: is believed (``Reader.open_summary``).
        self.summary_known: Any = None
        #: Reads only the hosts this says yes to (``Reader.hosts``; the hidden GPU ledger: Kubernetes nodes), taken
        #: at each read; None: every host.
        self.hosts: Callable[[str], bool] | None = None
        #: ``Reader.brief_from`` (0: a plan's level at any size: the ledger's few hosts read as asked, not in full).
        self.brief_from: int | None = None

    def _ensure(self) -> Reader:
        # Created lazily in the worker thread: building a client may resolve names or open sockets.
        if self._reader is None:
            self._client = self.client_factory()
            # Asks the agents for the full snapshots its screens read (read.want): every tick while on screen.
            self._reader = Reader(self._client, clock=self.clock, wants=Wants(), brief_from=self.brief_from)
            if self.summary_known is not None:
                known, memo = self.summary_known, self._reader.bucket_check
                self._reader.open_summary = lambda raw, bucket, columns: open_summary(raw, known, bucket,
                                                                                      columns=columns, memo=memo)
        return self._reader

    def read(self, plan: ReadPlan = ALL_FULL, seals: Collection[str] = ()) -> ClusterState:
        """The whole cluster in one round trip, as ``plan`` says, with the seals of ``seals`` (``Reader.read``).
        Raises whatever the client raises (caller reports)."""
        reader = self._ensure()
        reader.hosts = self.hosts
        return reader.read(plan, seals)

    def energy(self, hosts: list[str]) -> list[tuple[str, bytes | None]]:
        """Each host's energy ledger, raw (``wire.energy_key``): one GET per host in one pipeline (each
        key carries its host's hash tag, so an MGET across hosts would cross slots on a Redis Cluster)."""
        self._ensure()
        p = self._client.pipeline(transaction=False)
        for h in hosts:
            p.get(wire.energy_key(h))
        return list(zip(hosts, p.execute(), strict=True))

    def get(self, key: str) -> Any:
        """One key's raw value (the alert state), on the reader's connection."""
        self._ensure()
        return self._client.get(key)

    def history_range(self, host: str, rng: Range, now: float, prometheus: PromHistory | None = None) -> RangeRead:
        """One range of ``host``'s history (dashboard/ranges.py): 1 h from its stream; 24 h and 7 d from
        ``prometheus`` when given and answering, else from the agent's tiers in Redis (the read says
        why). Raises what the Redis client raises."""
        if rng.tier is None:
            return RangeRead(host, rng, self.history(host), "Redis, 5-second points")
        step = f"{rng.tier.step_s // 60}-minute points"
        note = None
        if prometheus is not None:
            try:
                return RangeRead(host, rng, prometheus.node(host, now - rng.seconds, now, rng.tier.step_s),
                                 f"Prometheus, {step}")
            except PromError as e:
                note = f"Prometheus unreachable ({e})"
        self._ensure()
        return RangeRead(host, rng, tier_points(self._client, host, rng.tier, now, rng.seconds), f"Redis, {step}", note)

    def tier_blocks(self, host: str, tier: Tier, now: float, seconds: float) -> list[tuple[int, TierPoint]]:
        """``host``'s tier buckets in the last ``seconds`` (dashboard/ranges.py). Raises what the client raises."""
        self._ensure()
        return tier_blocks(self._client, host, tier, now, seconds)

    def history(self, host: str, count: int = HIST_COUNT) -> list[schema.HistPoint]:
        """The newest ``count`` history points of ``host``, oldest first; undecodable entries skipped."""
        self._ensure()
        entries = self._client.xrevrange(wire.hist_key(host), count=count)
        points: list[schema.HistPoint] = []
        for _id, fields in reversed(entries):
            data = fields.get(b"d") if isinstance(fields, dict) else None
            try:
                points.append(wire.decode(data, schema.HistPoint))
            except wire.WireError:
                continue  # one garbled sample must not hide the hour around it
        return points
