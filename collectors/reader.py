"""Provides the read side: the whole cluster in one Redis round trip, decoded and classified.

Shared by the dashboard (called from a worker thread) and `clustertop snapshot`.
One bad node never spoils the read: its error is kept on its NodeView.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from collectors import schema, wire
from collectors.cluster import Totals, summarize

#: A node last seen longer ago than this is "down" (listed, values hidden); before that "stale".
DOWN_AFTER_S = 60.0


@dataclass
class NodeView:
    host: str
    state: str  # "up" | "stale" | "down" | "bad"
    last_seen_ts: float | None = None
    age_s: float | None = None
    snap: schema.NodeSnapshot | None = None  # the newest decodable snapshot (may be old: see state)
    error: str | None = None  # "bad data from node X: ..." when the latest payload was unusable
    newer_schema: bool = False
    brief: bool = False  # ``snap`` is a brief (collectors.brief): absent detail is not unknown detail


@dataclass
class ClusterState:
    ts: float
    nodes: list[NodeView] = field(default_factory=list)
    cluster: dict[str, schema.ClusterPayload] = field(default_factory=dict)
    cluster_errors: dict[str, str] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    fetch_ms: float | None = None
    decode_ms: float | None = None
    error: str | None = None  # the store itself is unreachable
    # What this read holds in full: True = every node; else the hosts read full (briefs for the rest).
    full: bool | frozenset[str] = True

    def in_full(self, host: str) -> bool:
        """Whether this read asked for ``host``'s full snapshot (a node gone quiet may still show its brief)."""
        return self.full is True or host in self.full

    def node(self, host: str) -> NodeView | None:
        for n in self.nodes:
            if n.host == host:
                return n
        return None


#: Below this many nodes every read is of full snapshots (about 20 ms at 100 nodes); from here on a
#: screen that only needs briefs gets briefs (see ``collectors.brief``).
BRIEF_FROM_NODES = 200


class Reader:
    """Reads the cluster; remembers the last good snapshot per node to show stale nodes honestly."""

    def __init__(self, client: Any, clock: Any = time.time, brief_from: int | None = None) -> None:
        self.client = client
        self.clock = clock
        self.brief_from = BRIEF_FROM_NODES if brief_from is None else brief_from
        self.known: list[str] = []
        self.last_good: dict[str, schema.NodeSnapshot] = {}  # full snapshots
        self.last_brief: dict[str, schema.NodeSnapshot] = {}
        self.last_cluster: dict[str, schema.ClusterPayload] = {}
        # Hosts whose brief key was missing at the last read (an agent from before briefs, or a node
        # gone quiet): their full key is read instead, so an old agent is never mistaken for a dead one.
        self.no_brief: set[str] = set()

    def read(self, full: bool | Collection[str] = True) -> ClusterState:
        """``full=True``: every node's full snapshot. A collection of hosts: briefs for every node and
        full snapshots for those hosts only (below ``brief_from`` nodes, everything full anyway)."""
        t0 = time.perf_counter()
        if full is not True and len(self.known) < self.brief_from:
            full = True
        want: frozenset[str] | None = None if full is True else frozenset(full)  # type: ignore[arg-type]
        hosts, raw_nodes, raw_cluster = self._fetch(want)
        t1 = time.perf_counter()
        now = self.clock()
        state = ClusterState(ts=now, fetch_ms=(t1 - t0) * 1000, full=True if want is None else want)
        for (host, last_seen), (data, is_brief) in zip(hosts, raw_nodes, strict=True):
            state.nodes.append(self._node(host, last_seen, data, is_brief, now, want is None))
        for name, data in zip(wire.CLUSTER_NAMES, raw_cluster, strict=True):
            if data is None:
                continue
            try:
                self.last_cluster[name] = wire.decode(data, schema.ClusterPayload)
            except wire.WireError as e:
                state.cluster_errors[name] = f"bad {name} data: {e}"
        state.cluster = dict(self.last_cluster)
        state.totals = summarize(state.nodes, state.cluster)
        state.decode_ms = (time.perf_counter() - t1) * 1000
        # Forget cached snapshots of nodes removed from the index.
        listed = {h for h, _ in hosts}
        for cache in (self.last_good, self.last_brief):
            for h in [h for h in cache if h not in listed]:
                del cache[h]
        self.no_brief &= listed
        return state

    def _fetch(self, want: frozenset[str] | None) -> tuple[list[tuple[str, float]], list[tuple[bytes | None, bool]],
                                                          list[bytes | None]]:
        """One round trip in steady state: index + every known node + cluster keys, pipelined.

        ``want=None`` reads full snapshots; otherwise briefs, plus full snapshots of ``want`` and of
        hosts without a brief. Per host: (payload, is_brief). A node that appears in the index for
        the first time costs one extra MGET, once.
        """
        p = self.client.pipeline(transaction=False)
        p.zrange(wire.NODES_KEY, 0, -1, withscores=True)
        known = list(self.known)
        fulls = known if want is None else [h for h in known if h in want or h in self.no_brief]
        briefs = [] if want is None else known
        if briefs:
            p.mget([wire.brief_key(h) for h in briefs])
        if fulls:
            p.mget([wire.node_key(h) for h in fulls])
        p.mget([wire.cluster_key(n) for n in wire.CLUSTER_NAMES])
        res = p.execute()
        index = [(_text(h), float(s)) for h, s in res[0]]
        cluster = res[-1]
        by_brief = dict(zip(briefs, res[1], strict=True)) if briefs else {}
        by_full = dict(zip(fulls, res[1 + bool(briefs)], strict=True)) if fulls else {}
        # Extra keys, in one more MGET: both payloads of a node new to the index; in a brief read, the
        # full key of a known node that had no brief (an agent from before briefs, or one gone quiet:
        # from then on it is in no_brief and its full key is in the pipeline).
        known_set = set(known)  # not the list: 1,000 nodes made this a 5 ms quadratic scan per read
        missing = [h for h, _ in index if h not in known_set]
        extra_full, extra_brief = list(missing), []
        if want is not None:
            extra_full += [h for h in known if by_brief.get(h) is None and h not in by_full]
            extra_brief = missing
        if extra_full:
            got = self.client.mget([wire.node_key(h) for h in extra_full] + [wire.brief_key(h) for h in extra_brief])
            by_full.update(zip(extra_full, got[:len(extra_full)], strict=True))
            by_brief.update(zip(extra_brief, got[len(extra_full):], strict=True))
        index.sort(key=lambda hs: hs[0])
        self.known = [h for h, _ in index]
        out: list[tuple[bytes | None, bool]] = []
        for h, _ in index:
            if want is None:
                out.append((by_full.get(h), False))
                continue
            b = by_brief.get(h)
            if b is None:
                self.no_brief.add(h)
            else:
                self.no_brief.discard(h)
            f = by_full.get(h)
            # A full snapshot read on purpose (or for want of a brief) wins; a brief otherwise.
            out.append((f, False) if f is not None and (h in want or b is None) else (b, b is not None))
        return index, out, cluster

    def _node(self, host: str, last_seen: float, data: bytes | None, is_brief: bool, now: float,
              full_read: bool) -> NodeView:
        view = NodeView(host=host, state="down", last_seen_ts=last_seen, age_s=max(0.0, now - last_seen))
        cache = self.last_brief if is_brief else self.last_good
        if data is not None:
            try:
                snap = wire.decode(data, schema.NodeSnapshot)
                if snap.host and snap.host != host:
                    raise wire.WireError(f"payload names host {snap.host!r}")
                cache[host] = snap_or_none = snap
                view.brief = is_brief
                view.newer_schema = wire.is_newer(snap)
            except wire.WireError as e:
                view.error = f"bad data from node {host}: {e}"
        if data is None or view.error is not None:
            # No usable payload now: the newest of what was last read, full or brief (a full read
            # prefers full data, but a brief of a stale node beats showing nothing at all).
            full_snap, brief_snap = self.last_good.get(host), self.last_brief.get(host)
            if brief_snap is not None and (full_snap is None or (brief_snap.ts > full_snap.ts and not full_read)):
                snap_or_none, view.brief = brief_snap, True
            else:
                snap_or_none = full_snap
        view.snap = snap_or_none
        if snap_or_none is not None:
            view.age_s = max(0.0, now - snap_or_none.ts)
        # The key's TTL (kept by Redis's clock) is what says "fresh": agent clocks may be skewed,
        # so the snapshot's own ts only feeds the age shown, never the up/stale decision.
        if view.error is not None:
            view.state = "bad"
        elif data is not None:
            view.state = "up"
        elif view.age_s is not None and view.age_s <= DOWN_AFTER_S:
            view.state = "stale"
        else:
            view.state = "down"
        return view


def _text(b: bytes | str) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b
