"""Provides the publisher: one pipeline per tick (latest snapshot with TTL, node index, history).

Used by the real agent and by the simulator alike, so simulated clusters exercise the real path.
"""

from __future__ import annotations

from typing import Any

from clustertop import wire
from clustertop.wire import schema
from clustertop.wire.brief import brief
from clustertop.wire.digest import digest, node_disk_rates, node_net_rates

#: A node's key outlives this many intervals; after that the node reads as stale.
TTL_INTERVALS = 3.0
MIN_TTL_MS = 3000


class Publisher:
    def __init__(self, client: Any, node: str, interval_s: float, hist_every_s: float = 5.0) -> None:
        self.client = client
        self.node = node
        self.interval_s = interval_s
        self.hist_every_s = hist_every_s
        self._last_hist_ts = 0.0
        self.ttl_ms = max(MIN_TTL_MS, int(interval_s * TTL_INTERVALS * 1000))

    def hist_due(self, ts: float) -> bool:
        return ts - self._last_hist_ts >= self.hist_every_s - 1e-3

    def publish(self, snap: schema.NodeSnapshot, hist: schema.HistPoint | None = None,
                cluster: list[schema.ClusterPayload] | None = None, pipe: Any = None) -> int:
        """Write one tick. Returns the payload size. Raises redis errors to the caller (who backs off).

        ``pipe``: an open pipeline to append to (the simulator batches many nodes per round trip).
        """
        data = wire.encode(snap)
        if len(data) > wire.MAX_PAYLOAD_BYTES:
            raise ValueError(f"snapshot of {len(data)} bytes exceeds {wire.MAX_PAYLOAD_BYTES}: not published")
        p = pipe if pipe is not None else self.client.pipeline(transaction=False)
        p.set(wire.node_key(self.node), data, px=self.ttl_ms)
        # The brief beside it, in the same pipeline and with the same TTL: the overview and the wall
        # of a big cluster read these and a full snapshot only where they show detail.
        p.set(wire.brief_key(self.node), wire.encode(brief(snap)), px=self.ttl_ms)
        # And its digest: the overview and the nodes table of a big cluster read nothing else.
        p.set(wire.digest_key(self.node), wire.encode(digest(snap)), px=self.ttl_ms)
        p.zadd(wire.NODES_KEY, {self.node: snap.ts})
        if hist is not None and self.hist_due(hist.ts):
            p.xadd(wire.hist_key(self.node), {"d": wire.encode(hist)}, maxlen=wire.HIST_MAXLEN,
                   approximate=True)
            self._last_hist_ts = hist.ts
        for payload in cluster or ():
            ttl = max(MIN_TTL_MS, int(payload.interval_s * TTL_INTERVALS * 1000))
            # Cluster payloads keep the last good data around much longer than a node snapshot:
            # "Ceph unreachable, last good data 2 min ago" needs the old data to still be there.
            p.set(wire.cluster_key(payload.name), wire.encode(payload), px=max(ttl, 3_600_000))
        if pipe is None:
            p.execute()
        return len(data)


def hist_point(snap: schema.NodeSnapshot) -> schema.HistPoint:
    """The compact history sample of one snapshot."""
    s = snap.system
    hp = schema.HistPoint(ts=snap.ts)
    if s is not None:
        hp.cpu = s.cpu.util_pct if s.cpu else None
        hp.mem = s.mem.used_bytes if s.mem else None
        hp.rx, hp.tx = node_net_rates(s)
        hp.dr, hp.dw = node_disk_rates(s)
    if snap.gpus:
        hp.gu = [g.util_pct for g in snap.gpus]
        hp.gm = [g.mem_used_bytes for g in snap.gpus]
        hp.gp = [g.power_mw for g in snap.gpus]
        hp.gt = [g.temp_c for g in snap.gpus]
    return hp
