"""Provides the publisher: one pipeline per tick (latest snapshot with TTL, node index, history).

Used by the real agent and by the simulator alike, so simulated clusters exercise the real path.

Each history point also feeds the node's downsampled tiers (``agents/tiers.py``: 1-minute points kept
24 h, 10-minute points kept 7 d), written after the tick's MULTI, never failing it.

With a node key, each tick also writes a ``schema.NodeSeal``: the SHA-256 of the node, brief and digest
payload bytes, signed once, in the SAME MULTI as the three payloads and with their TTL, so a reader (who
reads payload and seal in one MULTI too) never pairs a payload of one tick with the seal of another; and
every ANNOUNCE_EVERY_S the node's public key (``nodekey:{host}``, a claim for ``clustertop enrol
--from-redis``; the operator's known_nodes file, never Redis, decides which key is trusted).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from clustertop import store, wire
from clustertop.agents.tiers import TierWriter
from clustertop.control import signing
from clustertop.store.resp import errors as store_errors
from clustertop.wire import schema
from clustertop.wire.brief import brief
from clustertop.wire.digest import digest, node_disk_rates, node_net_rates

log = logging.getLogger(__name__)

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
                 key: signing.PrivateKey | None = None, tiers: bool = True) -> None:
        self.client = client
        self.node = node
        self.interval_s = interval_s
        self.hist_every_s = hist_every_s
        self.key = key
        self._pub_b64 = base64.b64encode(key.public().raw) if key is not None else b""
        self._announced_ts: float | None = None
        self._last_hist_ts = 0.0
        #: The 1-minute and 10-minute history tiers (agents/tiers.py), fed with the history points.
        self.tiers = TierWriter(node) if tiers else None
        self.ttl_ms = max(MIN_TTL_MS, int(interval_s * TTL_INTERVALS * 1000))

    def hist_due(self, ts: float) -> bool:
        return ts - self._last_hist_ts >= self.hist_every_s - 1e-3

    def publish(self, snap: schema.NodeSnapshot, hist: schema.HistPoint | None = None,
                cluster: list[schema.ClusterPayload] | None = None, pipe: Any = None, shared: Any = None) -> int:
        """Write one tick. Returns the payload size. Raises redis errors to the caller (who backs off).

        ``pipe``: an open pipeline to append to (the simulator batches many nodes per round trip); it must
        be transactional for the seal to be atomic with the payloads, as the publisher's own one is.
        ``shared``: with ``pipe``, where the node index and cluster payloads go instead (on a Redis Cluster they
        are in other slots than the node's MULTI: the simulator passes one plain pipeline for all its nodes).
        """
        data = wire.encode(snap)
        if len(data) > wire.MAX_PAYLOAD_BYTES:
            raise ValueError(f"snapshot of {len(data)} bytes exceeds {wire.MAX_PAYLOAD_BYTES}: not published")
        brief_data = wire.encode(brief(snap))
        digest_data = wire.encode(digest(snap))
        # MULTI/EXEC: payloads and seal of one tick land together, never half of them (a reader's
        # MULTI then sees all of one tick or all of the next).
        p = pipe if pipe is not None else self.client.pipeline(transaction=True)
        # Redis Cluster through redis-py: a MULTI cannot span slots, and the node index and cluster payloads
        # are not in the node's slot: they go in a plain pipeline beside it (they never needed the MULTI).
        # The agent's own client splits a MULTI per slot by itself (store.slots).
        if shared is None:
            shared = self.client.pipeline(transaction=False) if pipe is None and _needs_split(self.client) else p
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
        shared.zadd(wire.NODES_KEY, {self.node: snap.ts})
        if hist is not None and self.hist_due(hist.ts):
            p.xadd(wire.hist_key(self.node), {"d": wire.encode(hist)}, maxlen=wire.HIST_MAXLEN,
                   approximate=True)
            self._last_hist_ts = hist.ts
            if self.tiers is not None:
                self.tiers.add(hist)
        for payload in cluster or ():
            ttl = max(MIN_TTL_MS, int(payload.interval_s * TTL_INTERVALS * 1000))
            # Cluster payloads keep the last good data around much longer than a node snapshot:
            # "Ceph unreachable, last good data 2 min ago" needs the old data to still be there.
            shared.set(wire.cluster_key(payload.name), wire.encode(payload), px=max(ttl, 3_600_000))
        if pipe is None:
            p.execute()
            if shared is not p:
                shared.execute()
        self._flush_tiers()
        self._announced_ts = announced  # queued (and sent, unless the caller's pipeline fails: then again in 60 s)
        return len(data)


    def _flush_tiers(self) -> None:
        # A block SET a minute (two every 10 minutes), outside the tick's MULTI: a tier write that fails
        # must not fail the publish of the snapshot (the block is written at the next tick).
        if self.tiers is None or not self.tiers.has_work():
            return
        try:
            self.tiers.flush(self.client)
        except store_errors() as e:
            log.debug("history tiers not written yet: %s", e)


def _needs_split(client: Any) -> bool:
    """A redis-py Redis Cluster client (the agent's own client splits its MULTIs by slot itself)."""
    return not getattr(client, "bounded_reads", False) and store.sharded(client)


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
