"""Provides the typed messages the read workers post to the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from clustertop.read.ledger import Ledger
from clustertop.read.reader import ClusterState
from clustertop.wire import schema


@dataclass
class StateRead(Message):
    """A fresh read of the whole cluster."""

    state: ClusterState

    def can_replace(self, message: Message) -> bool:
        # Only the newest read matters; an older one still queued is dropped.
        return isinstance(message, StateRead)


@dataclass
class LedgerRead(Message):
    """The GPU ledger brought up to date from a read of every node's GPUs (the briefs' GPUs), read and folded
    on the app's ledger thread while the screen on top reads digests only."""

    ledger: Ledger


@dataclass
class AlertFeedRead(Message):
    """The evaluated alert state (``ct:v1:alerts``) as read and checked (``alerting.store.Read``)."""

    read: Any


@dataclass
class StoreFailed(Message):
    """The store could not be read; the last data stays on screen, marked stale."""

    error: str
    since: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreFailed)


@dataclass
class HistoryRead(Message):
    """The history stream of one node (oldest first), read on drill-down."""

    host: str
    points: list[schema.HistPoint]
    error: str | None = None
    range_label: str = "1 h"  # which of dashboard/ranges.py's ranges this is
    origin: str = ""  # where the points came from ("Redis, 1-minute points", "Prometheus, ...")
    note: str | None = None  # e.g. why Prometheus was not used
