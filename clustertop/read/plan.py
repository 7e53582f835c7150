"""Provides the read plan: what one read takes of each node (``ReadPlan``), and the size rule.

A node is published in four forms, largest first: its full snapshot, its brief (``wire.brief``), the
brief's GPUs only (a cut the reader decodes from the brief) and its digest (``wire.digest``). A plan
names the hosts read in full and the ``Level`` read of every other node; screens say which plan they
draw from, the reader reads by it, and the ``ClusterState`` it returns carries the plan it was read
with, so a screen can tell whether a read holds what it draws (``ReadPlan.holds``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field

#: Below this many nodes every read is of full snapshots (about 20 ms at 100 nodes, and screen switches
#: stay instant); from here on a plan that asks for less gets less (``ReadPlan.sized``).
BRIEF_FROM_NODES = 200
#: From this many nodes a plan at ``Level.SUMMARIES`` reads the per-bucket summaries (``wire.summary``) and
#: only the digests it names (``digest_hosts``: the tiles in view) and those no believed summary covers;
#: below it, such a plan reads every digest (``ReadPlan.sized``): at 1,000 nodes that read is ~15 ms, and
#: nothing changes for a cluster of that size.
SUMMARY_FROM_NODES = 2000


class Level(enum.IntEnum):
    """What a read takes of a node, least first; each level holds everything the ones below it hold."""

    # The per-bucket summaries (totals, alerts, each host's state, the busiest cards) and the digests of
    # ``ReadPlan.digest_hosts`` and of every host no believed summary covers: the overview at 10,000 nodes.
    SUMMARIES = -1
    DIGESTS = 0  # the digest only (tiles, node rows, totals, alerts)
    GPUS = 1  # the digest and the brief's GPUs (the GPU table, the GPU ledger)
    BRIEFS = 2  # the digest and the whole brief (wall, work screen)
    # Every node's full snapshot as its key holds it (its agent rewrites it every ``full_every`` seconds, so up
    # to that old), brought up to date by its brief (``wire.brief.fresh``), without asking for it (no want:
    # the storage, network and people screens, ``snapshot``/``who`` by default). ``full_hosts`` are wanted.
    DETAIL = 3
    FULL = 4  # every node's full snapshot, each wanted (``read.want``): of its latest tick within 1-2 intervals


@dataclass(frozen=True)
class ReadPlan:
    """What one read takes: every node at ``level``, and the nodes in ``full_hosts`` in full.

    ``ReadPlan()`` is every node in full (``ALL_FULL``). Below ``Level.FULL`` every node's digest is
    read too, since every level holds it. At ``Level.DETAIL`` every node is read in full too, and
    ``full_hosts`` are the ones also wanted (a fresh full snapshot asked of their agents).
    """

    level: Level = Level.FULL
    full_hosts: frozenset[str] = field(default_factory=frozenset)
    #: At ``Level.SUMMARIES``, the hosts whose digest is read whatever the summaries say (the tiles in view);
    #: at any other level every digest is read, and this is empty.
    digest_hosts: frozenset[str] = field(default_factory=frozenset)
    #: At ``Level.SUMMARIES``: the GPU table's read (issue 18): the summaries' GPU columns are decoded (a summary
    #: without them is not believed), and the hosts read here (``digest_hosts``, ``full_hosts``, those no believed
    #: summary covers) are read with their briefs' GPUs too; below ``SUMMARY_FROM_NODES`` it is ``Level.GPUS``.
    #: False at any other level.
    gpus: bool = False

    def __post_init__(self) -> None:
        # One spelling per plan, so plans compare equal when they read the same: a read of every node
        # in full names no hosts, and any collection of hosts is kept as a frozenset.
        hosts = frozenset() if self.level is Level.FULL else frozenset(self.full_hosts)
        object.__setattr__(self, "full_hosts", hosts)
        digests = frozenset(self.digest_hosts) if self.level is Level.SUMMARIES else frozenset()
        object.__setattr__(self, "digest_hosts", digests)
        object.__setattr__(self, "gpus", bool(self.gpus) and self.level is Level.SUMMARIES)

    def covers(self, level: Level) -> bool:
        """Whether this plan reads at least ``level`` of every node."""
        return self.level >= level

    def in_full(self, host: str) -> bool:
        """Whether this plan reads ``host``'s full snapshot (a node gone quiet may still show its brief)."""
        return self.level >= Level.DETAIL or host in self.full_hosts

    def wanted(self, known: list[str]) -> Collection[str]:
        """The hosts of ``known`` whose full snapshot this plan asks their agents for (``read.want``): every
        one at ``Level.FULL``, else ``full_hosts`` (``Level.DETAIL`` reads every node in full, wanting none)."""
        return known if self.level is Level.FULL else self.full_hosts

    def wanted_host(self, host: str) -> bool:
        """Whether this plan asks ``host``'s agent for a fresh full snapshot (``wanted``)."""
        return self.level is Level.FULL or host in self.full_hosts

    def holds(self, other: ReadPlan) -> bool:
        """Whether a read made by this plan holds everything ``other`` asks for."""
        if self.level is Level.FULL:
            return True
        if other.gpus and not self.gpus and self.level < Level.GPUS:
            return False  # the GPU table's columns and its rows' briefs
        if other.level is Level.SUMMARIES and self.level is Level.SUMMARIES \
                and not other.digest_hosts <= self.digest_hosts:
            return False  # every other level reads every digest
        return other.level is not Level.FULL and self.level >= other.level and other.full_hosts <= self.full_hosts

    def sized(self, nodes: int, brief_from: int | None = None, summary_from: int | None = None) -> ReadPlan:
        """The plan to read a cluster of ``nodes`` by: below ``brief_from`` (``BRIEF_FROM_NODES``) nodes,
        every node in full whatever was asked; below ``summary_from`` (``SUMMARY_FROM_NODES``), every digest
        where summaries were asked (every brief's GPUs for the GPU table's ``gpus``); from there on, this plan."""
        limit = BRIEF_FROM_NODES if brief_from is None else brief_from
        if self.level is not Level.FULL and nodes < limit:
            return ALL_FULL
        if self.level is Level.SUMMARIES and nodes < (SUMMARY_FROM_NODES if summary_from is None else summary_from):
            return ReadPlan(Level.GPUS if self.gpus else Level.DIGESTS, self.full_hosts)
        return self


#: Every node's full snapshot: the safe plan (snapshot CLI, screens that draw detail, the first read).
ALL_FULL = ReadPlan()
