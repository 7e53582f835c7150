"""Provides the publisher: one pipeline per tick (latest snapshot with TTL, node index, history).

Used by the real agent and by the simulator alike, so simulated clusters exercise the real path.

Each history point also feeds the node's downsampled tiers (``agents/tiers.py``: 1-minute points kept
24 h, 10-minute points kept 7 d), written after the tick's MULTI, never failing it.

With a node key, each tick also writes a ``schema.NodeSeal``: the SHA-256 of the node, brief and digest
payload bytes, signed once, in the SAME MULTI as the three payloads and with their TTL, so a reader (who
reads payload and seal in one MULTI too) never pairs a payload of one tick with the seal of another; and
every ANNOUNCE_EVERY_S the node's public key (``nodekey:{host}``, a claim for ``clustertop enrol
--from-redis``; the operator's known_nodes file, never Redis, decides which key is trusted).

The full snapshot is the one payload not written every tick (the byte budget, docs/architecture.md "Byte
budget"): brief, digest and seal every tick; the full snapshot every ``full_every_s`` of snapshot time, and
every ``wanted_every_s`` (2 s by default: every second tick) while a reader wants it (``wire.want_key``: the
tick's MULTI asks its PTTL, so the agent learns it with no round trip of its own, and publishes in full from
the next tick). Its key then lives
``full_every_s`` longer than the others, so it stays readable between writes; freshness comes from the
digest's key. The seal of a tick that did not rewrite it still names the SHA-256 of the one stored.
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
#: The agent's default for ``[agent] full_every`` (seconds between full snapshots nobody asked for): see
#: docs/architecture.md "Byte budget" for the bytes against the staleness of what only the full one holds.
FULL_EVERY_S = 15.0
#: The agent's default for ``[agent] full_every_wanted`` (seconds between full snapshots while a reader wants
#: them): every second tick at the default interval. Each screen draws this tick's figures from the brief over
#: the full snapshot's detail (``wire.brief.fresh``), so the detail (processes, clocks, containers) is at most
#: this old, said on the screen; and a watched tower writes ~2.4 KB/s instead of ~3.3 (docs: "Byte budget").
FULL_EVERY_WANTED_S = 2.0


def seal(node: str, snap: schema.NodeSnapshot, node_bytes: bytes, brief_bytes: bytes, digest_bytes: bytes,
         key: signing.PrivateKey, node_sha: str | None = None) -> schema.NodeSeal:
    """The signed seal over one tick's three payloads (as encoded: the bytes readers get are the bytes hashed).
    ``node_sha``: the SHA-256 of the full snapshot stored, when this tick does not rewrite it."""
    s = schema.NodeSeal(host=node, seq=snap.seq, ts=snap.ts,
                        node=node_sha if node_sha is not None else hashlib.sha256(node_bytes).hexdigest(),
                        brief=hashlib.sha256(brief_bytes).hexdigest(),
                        digest=hashlib.sha256(digest_bytes).hexdigest())
    signing.sign_struct("seal", s, key)
    return s


class Publisher:
    """``key``: the node's private key; None publishes no seal (tests, an unkeyed simulator), which readers
    show as unverified. ``full_every_s``: seconds (of snapshot time) between full snapshots nobody wants;
    0 writes one every tick, as agents before the byte budget did. ``wanted_every_s``: between those some reader
    wants (0 or up to the interval: every tick)."""

    def __init__(self, client: Any, node: str, interval_s: float, hist_every_s: float = 5.0,
                 key: signing.PrivateKey | None = None, tiers: bool = True, full_every_s: float = 0.0,
                 wanted_every_s: float = 0.0) -> None:
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
        self.full_every_s = full_every_s if full_every_s > interval_s else 0.0
        self.wanted_every_s = min(wanted_every_s, self.full_every_s) if wanted_every_s > interval_s else 0.0
        # The node key outlives its cadence by the others' TTL: readable until the next full write is overdue.
        self.full_ttl_ms = self.ttl_ms + int(self.full_every_s * 1000)
        #: The last full snapshot written: its snapshot time and SHA-256 (what every seal names until the next).
        self._full_ts: float | None = None
        self._full_sha: str | None = None
        #: A reader wanted the full snapshot at the last tick (its want key's PTTL, read in that tick's MULTI).
        self.wanted = False
        #: False once Redis refused the PTTL (an ACL from before want keys): then full every tick, as before.
        self.probe_want = True
        #: Where the PTTL sits in a caller's pipeline (``publish(pipe=...)``): the caller hands the results to
        #: ``saw``. None: not queued this tick.
        self.want_at: int | None = None
        self.fulls = 0  # full snapshots written (tests and benches count them)
        #: The digest of the last tick published: the simulator folds its bucket summaries from it (sim.simulate).
        self.last_digest: schema.NodeDigest | None = None

    def full_due(self, ts: float) -> bool:
        """Whether the tick at ``ts`` writes the full snapshot: always without a cadence or a want probe, at
        the first tick, every ``wanted_every_s`` while wanted (every tick without one), and every ``full_every_s``
        (a clock stepped back counts as due)."""
        if not self.full_every_s or not self.probe_want or self._full_ts is None:
            return True
        every = self.full_every_s
        if self.wanted:
            if not self.wanted_every_s:
                return True
            every = self.wanted_every_s
        return not 0 <= ts - self._full_ts < every - 1e-3

    def saw(self, results: list[Any]) -> None:
        """Learn the want from the results of the caller's pipeline this publisher queued into."""
        if self.want_at is not None and self.want_at < len(results):
            self.wanted = _wants(results[self.want_at])
        self.want_at = None

    def hist_due(self, ts: float) -> bool:
        return ts - self._last_hist_ts >= self.hist_every_s - 1e-3

    def publish(self, snap: schema.NodeSnapshot, hist: schema.HistPoint | None = None,
                cluster: list[schema.ClusterPayload] | None = None, pipe: Any = None, shared: Any = None) -> int:
        """Write one tick. Returns the bytes of the payloads written (full snapshot when written, brief, digest,
        seal, history point, cluster payloads; as stored, packed). Raises redis errors to the caller (who backs off).

        ``pipe``: an open pipeline to append to (the simulator batches many nodes per round trip); it must
        be transactional for the seal to be atomic with the payloads, as the publisher's own one is.
        ``shared``: with ``pipe``, where the node index and cluster payloads go instead (on a Redis Cluster they
        are in other slots than the node's MULTI: the simulator passes one plain pipeline for all its nodes).
        """
        # The cadence rides in the full snapshot itself: readers then never take its key for a sign of life.
        snap.full_every_s = self.full_every_s or None
        # Stored packed (deflate with a preset dictionary per kind, clustertop/wire/compress.py: an 8-GPU
        # tower's three payloads ~19 KB -> ~2.2 KB); the seal hashes the bytes as stored. The full snapshot is
        # encoded and packed only on ticks that write it; the size guard is on what is written (the brief,
        # a cut of the snapshot, every tick; the full one when due: an oversized one is never marked written,
        # so every tick is due and refused until it fits).
        full = self.full_due(snap.ts)
        data = wire.pack(_fits(wire.encode(snap), "snapshot"), "node") if full else b""
        brief_data = wire.pack(_fits(wire.encode(brief(snap)), "brief"), "brief")
        d = digest(snap)
        # Which full snapshot the node's key holds (this tick's, or the last one written): a reader that keeps
        # it decoded fetches it again only when this changes (``read.reader.FullCache``).
        d.full_ts = snap.ts if full else self._full_ts
        digest_data = wire.pack(wire.encode(d), "digest")
        self.last_digest = d
        # MULTI/EXEC: payloads and seal of one tick land together, never half of them (a reader's
        # MULTI then sees all of one tick or all of the next).
        p = pipe if pipe is not None else self.client.pipeline(transaction=True)
        # Redis Cluster through redis-py: a MULTI cannot span slots, and the node index and cluster payloads
        # are not in the node's slot: they go in a plain pipeline beside it (they never needed the MULTI).
        # The agent's own client splits a MULTI per slot by itself (store.slots).
        if shared is None:
            shared = self.client.pipeline(transaction=False) if pipe is None and _needs_split(self.client) else p
        # Does a reader want the full snapshot? Asked inside the MULTI (the want key shares the node's slot),
        # first in it: the answer comes back with this tick's replies, and the next tick acts on it.
        want_at = None
        if self.full_every_s and self.probe_want:
            want_at = 0 if pipe is None else len(p) if hasattr(p, "__len__") else None
            if want_at is not None:
                p.pttl(wire.want_key(self.node))
        if full:
            p.set(wire.node_key(self.node), data, px=self.full_ttl_ms)
        full_sha = hashlib.sha256(data).hexdigest() if full else self._full_sha
        # The brief beside it, in the same pipeline and with the same TTL: the overview and the wall
        # of a big cluster read these and a full snapshot only where they show detail.
        p.set(wire.brief_key(self.node), brief_data, px=self.ttl_ms)
        # And its digest: the overview and the nodes table of a big cluster read nothing else.
        p.set(wire.digest_key(self.node), digest_data, px=self.ttl_ms)
        written = len(data) + len(brief_data) + len(digest_data)  # (data: b"" on a tick that does not write it)
        announced = self._announced_ts
        if self.key is not None:
            seal_data = wire.pack(wire.encode(seal(self.node, snap, data, brief_data, digest_data, self.key,
                                                   node_sha=full_sha)), "seal")
            p.set(wire.seal_key(self.node), seal_data, px=self.ttl_ms)
            written += len(seal_data)
            if announced is None or not 0 <= snap.ts - announced < ANNOUNCE_EVERY_S:
                p.set(wire.nodekey_key(self.node), self._pub_b64, px=int(ANNOUNCE_TTL_S * 1000))
                announced = snap.ts
        shared.zadd(wire.NODES_KEY, {self.node: snap.ts})
        if hist is not None and self.hist_due(hist.ts):
            hist_data = wire.pack(wire.encode(hist), "hist")
            p.xadd(wire.hist_key(self.node), {"d": hist_data}, maxlen=wire.HIST_MAXLEN, approximate=True)
            written += len(hist_data)
            self._last_hist_ts = hist.ts
            if self.tiers is not None:
                self.tiers.add(hist)
        for payload in cluster or ():
            ttl = max(MIN_TTL_MS, int(payload.interval_s * TTL_INTERVALS * 1000))
            # Cluster payloads keep the last good data around much longer than a node snapshot:
            # "Ceph unreachable, last good data 2 min ago" needs the old data to still be there.
            cluster_data = wire.pack(wire.encode(payload), "cluster")
            shared.set(wire.cluster_key(payload.name), cluster_data, px=max(ttl, 3_600_000))
            written += len(cluster_data)
        if pipe is None:
            try:
                res = p.execute()
            except store_errors() as e:
                # Whatever Redis holds now (restarted empty, failed over to a replica that missed a write), the
                # next tick that lands writes the full snapshot again, and its seal names that one.
                self._full_ts = None
                if want_at is not None and "NOPERM" in str(e):
                    # An ACL from before want keys: say so once and publish in full every tick from now on.
                    log.warning("Redis refuses PTTL on %s (%s): full snapshot every tick; regenerate the "
                                "ACL with `clustertop acl`", wire.want_key(self.node), e)
                    self.probe_want = False
                raise
            if want_at is not None:
                self.wanted = _wants(res[want_at])
            if shared is not p:
                shared.execute()
        else:
            self.want_at = want_at
        if full:  # (with a caller's pipeline: queued; should it fail, seals name a missing one until the next)
            self._full_ts, self._full_sha = snap.ts, full_sha
            self.fulls += 1
        self._flush_tiers()
        self._announced_ts = announced  # queued (and sent, unless the caller's pipeline fails: then again in 60 s)
        return written

    def _flush_tiers(self) -> None:
        # A block SET a minute (two every 10 minutes), outside the tick's MULTI: a tier write that fails
        # must not fail the publish of the snapshot (the block is written at the next tick).
        if self.tiers is None or not self.tiers.has_work():
            return
        try:
            self.tiers.flush(self.client)
        except store_errors() as e:
            log.debug("history tiers not written yet: %s", e)


def _fits(data: bytes, what: str) -> bytes:
    if len(data) > wire.MAX_PAYLOAD_BYTES:
        raise ValueError(f"{what} of {len(data)} bytes exceeds {wire.MAX_PAYLOAD_BYTES}: not published")
    return data


def _wants(pttl: Any) -> bool:
    """A want key's PTTL as the agent honours it: expiring, and within ``wire.WANT_MAX_MS`` (-2: no key; -1: no
    expiry, ignored, as is a PX beyond the cap: neither may pin the node to full snapshots for ever)."""
    return isinstance(pttl, int) and 0 < pttl <= wire.WANT_MAX_MS


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
