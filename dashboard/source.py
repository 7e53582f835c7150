"""Provides the data source: blocking Redis reads, meant to run in a worker thread only.

One ``Reader`` per app keeps the last good snapshot per node, so stale and bad nodes keep their
last values. A Redis failure is returned as a message, never raised into the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from clustertop import wire
from clustertop.read.plan import ALL_FULL, ReadPlan
from clustertop.read.reader import ClusterState, Reader
from clustertop.wire import schema

#: History points read on drill-down: an hour at the publisher's 5 s history interval.
HIST_COUNT = 720


class Source:
    def __init__(self, client_factory: Callable[[], Any], clock: Callable[[], float] = time.time) -> None:
        self.client_factory = client_factory
        self.clock = clock
        self._client: Any = None
        self._reader: Reader | None = None

    def _ensure(self) -> Reader:
        # Created lazily in the worker thread: building a client may resolve names or open sockets.
        if self._reader is None:
            self._client = self.client_factory()
            self._reader = Reader(self._client, clock=self.clock)
        return self._reader

    def read(self, plan: ReadPlan = ALL_FULL, seals: Collection[str] = ()) -> ClusterState:
        """The whole cluster in one round trip, as ``plan`` says, with the seals of ``seals`` (``Reader.read``).
        Raises whatever the client raises (caller reports)."""
        return self._ensure().read(plan, seals)

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
