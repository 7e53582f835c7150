"""Provides the read side: the whole cluster in one Redis round trip, decoded and classified.

Shared by the dashboard (called from a worker thread) and `clustertop snapshot`.
One bad node never spoils the read: its error is kept on its NodeView.
"""

from __future__ import annotations

import time
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

    def node(self, host: str) -> NodeView | None:
        for n in self.nodes:
            if n.host == host:
                return n
        return None


class Reader:
    """Reads the cluster; remembers the last good snapshot per node to show stale nodes honestly."""

    def __init__(self, client: Any, clock: Any = time.time) -> None:
        self.client = client
        self.clock = clock
        self.known: list[str] = []
        self.last_good: dict[str, schema.NodeSnapshot] = {}
        self.last_cluster: dict[str, schema.ClusterPayload] = {}

    def read(self) -> ClusterState:
        t0 = time.perf_counter()
        hosts, raw_nodes, raw_cluster = self._fetch()
        t1 = time.perf_counter()
        now = self.clock()
        state = ClusterState(ts=now, fetch_ms=(t1 - t0) * 1000)
        for (host, last_seen), data in zip(hosts, raw_nodes, strict=True):
            state.nodes.append(self._node(host, last_seen, data, now))
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
        for h in list(self.last_good):
            if h not in listed:
                del self.last_good[h]
        return state

    def _fetch(self) -> tuple[list[tuple[str, float]], list[bytes | None], list[bytes | None]]:
        """One round trip in steady state: index + every known node + cluster keys, pipelined.

        A node that appears in the index for the first time costs one extra MGET, once.
        """
        p = self.client.pipeline(transaction=False)
        p.zrange(wire.NODES_KEY, 0, -1, withscores=True)
        known = list(self.known)
        if known:
            p.mget([wire.node_key(h) for h in known])
        p.mget([wire.cluster_key(n) for n in wire.CLUSTER_NAMES])
        res = p.execute()
        index = [(_text(h), float(s)) for h, s in res[0]]
        cluster = res[-1]
        by_host = dict(zip(known, res[1], strict=True)) if known else {}
        missing = [h for h, _ in index if h not in by_host]
        if missing:
            by_host.update(zip(missing, self.client.mget([wire.node_key(h) for h in missing]), strict=True))
        index.sort(key=lambda hs: hs[0])
        self.known = [h for h, _ in index]
        return index, [by_host.get(h) for h, _ in index], cluster

    def _node(self, host: str, last_seen: float, data: bytes | None, now: float) -> NodeView:
        view = NodeView(host=host, state="down", last_seen_ts=last_seen, age_s=max(0.0, now - last_seen))
        if data is not None:
            try:
                snap = wire.decode(data, schema.NodeSnapshot)
                if snap.host and snap.host != host:
                    raise wire.WireError(f"payload names host {snap.host!r}")
                self.last_good[host] = snap
                view.newer_schema = wire.is_newer(snap)
            except wire.WireError as e:
                view.error = f"bad data from node {host}: {e}"
        snap_or_none = self.last_good.get(host)
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
