"""Provides the publisher: one pipeline per tick (latest snapshot with TTL, node index, history).

Used by the real agent and by the simulator alike, so simulated clusters exercise the real path.

With a node key, each tick also writes a ``schema.NodeSeal``: the SHA-256 of the node, brief and digest
payload bytes, signed once, in the SAME MULTI as the three payloads and with their TTL, so a reader (who
reads payload and seal in one MULTI too) never pairs a payload of one tick with the seal of another; and
every ANNOUNCE_EVERY_S the node's public key (``nodekey:{host}``, a claim for ``clustertop enrol
--from-redis``; the operator's known_nodes file, never Redis, decides which key is trusted).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from clustertop import wire
from clustertop.control import signing
from clustertop.wire import schema
from clustertop.wire.brief import brief
from clustertop.wire.digest import digest, node_disk_rates, node_net_rates

#: A node's key outlives this many intervals; after that the node reads as stale.
TTL_INTERVALS = 3.0
MIN_TTL_MS = 3000
#: The public key is announced at the first publish and again this often (seconds of snapshot time);
#: it expires after ANNOUNCE_TTL_S, so a node gone for good stops offering a key to enrol.
ANNOUNCE_EVERY_S = 60.0
ANNOUNCE_TTL_S = 600.0


def seal(node: str, snap: schema.NodeSnapshot, node_bytes: bytes, brief_bytes: bytes, digest_bytes: bytes,
         key: signing.PrivateKey) -> schema.NodeSeal:
    """The signed seal over one tick's three payloads (as encoded: the bytes readers get are the bytes hashed)."""
    s = schema.NodeSeal(host=node, seq=snap.seq, ts=snap.ts, node=hashlib.sha256(node_bytes).hexdigest(),
                        brief=hashlib.sha256(brief_bytes).hexdigest(),
                        digest=hashlib.sha256(digest_bytes).hexdigest())
    signing.sign_struct("seal", s, key)
    return s


class Publisher:
    """``key``: the node's private key; None publishes no seal (tests, an unkeyed simulator), which readers
    show as unverified."""

    def __init__(self, client: Any, node: str, interval_s: float, hist_every_s: float = 5.0,
                 key: signing.PrivateKey | None = None) -> None:
        self.client = client
        self.node = node
        self.interval_s = interval_s
        self.hist_every_s = hist_every_s
        self.key = key
        self._pub_b64 = base64.b64encode(key.public().raw) if key is not None else b""
        self._announced_ts: float | None = None
        self._last_hist_ts = 0.0
        self.ttl_ms = max(MIN_TTL_MS, int(interval_s * TTL_INTERVALS * 1000))

    def hist_due(self, ts: float) -> bool:
        return ts - self._last_hist_ts >= self.hist_every_s - 1e-3

    def publish(self, snap: schema.NodeSnapshot, hist: schema.HistPoint | None = None,
                cluster: list[schema.ClusterPayload] | None = None, pipe: Any = None) -> int:
        """Write one tick. Returns the payload size. Raises redis errors to the caller (who backs off).

        ``pipe``: an open pipeline to append to (the simulator batches many nodes per round trip); it must
        be transactional for the seal to be atomic with the payloads, as the publisher's own one is.
        """
        data = wire.encode(snap)
        if len(data) > wire.MAX_PAYLOAD_BYTES:
            raise ValueError(f"snapshot of {len(data)} bytes exceeds {wire.MAX_PAYLOAD_BYTES}: not published")
        brief_data = wire.encode(brief(snap))
        digest_data = wire.encode(digest(snap))
        # MULTI/EXEC: payloads and seal of one tick land together, never half of them (a reader's
        # MULTI then sees all of one tick or all of the next).
        p = pipe if pipe is not None else self.client.pipeline(transaction=True)
        p.set(wire.node_key(self.node), data, px=self.ttl_ms)
        # The brief beside it, in the same pipeline and with the same TTL: the overview and the wall
        # of a big cluster read these and a full snapshot only where they show detail.
        p.set(wire.brief_key(self.node), brief_data, px=self.ttl_ms)
        # And its digest: the overview and the nodes table of a big cluster read nothing else.
        p.set(wire.digest_key(self.node), digest_data, px=self.ttl_ms)
        announced = self._announced_ts
        if self.key is not None:
            p.set(wire.seal_key(self.node),
                  wire.encode(seal(self.node, snap, data, brief_data, digest_data, self.key)), px=self.ttl_ms)
            if announced is None or not 0 <= snap.ts - announced < ANNOUNCE_EVERY_S:
                p.set(wire.nodekey_key(self.node), self._pub_b64, px=int(ANNOUNCE_TTL_S * 1000))
                announced = snap.ts
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
        self._announced_ts = announced  # queued (and sent, unless the caller's pipeline fails: then again in 60 s)
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
