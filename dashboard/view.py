"""Provides the View: everything the screens draw from, as the app last read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clustertop.dashboard.history import TotalsHistory
from clustertop.dashboard.widgets.cephio import CephIoRing
from clustertop.read.cluster import Alert
from clustertop.read.reader import ClusterState


@dataclass
class View:
    history: TotalsHistory
    source_label: str = ""
    state: ClusterState | None = None
    alerts: list[Alert] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)  # alert key -> when it first appeared
    unreachable_since: float | None = None
    store_error: str | None = None
    now: float = 0.0
    version: int = 0  # bumped on every change; a screen skips work when it has drawn this version
    ceph_io: CephIoRing = field(default_factory=CephIoRing)  # client/recovery rates, fed on every read
    # The evaluated alert state from Redis and Alertmanager's silences (dashboard/alertfeed.AlertFeed).
    feed: Any = None

    @property
    def read_ts(self) -> float | None:
        return self.state.ts if self.state is not None else None

    @property
    def unreachable(self) -> bool:
        return self.unreachable_since is not None
