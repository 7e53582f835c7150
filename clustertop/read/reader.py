"""Provides the read side: the whole cluster in one Redis round trip, decoded and classified.

Shared by the dashboard (called from a worker thread) and `clustertop snapshot`.
One bad node never spoils the read: its error is kept on its NodeView.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

import msgspec

from clustertop import wire
from clustertop.read.bucketread import fold_uncovered
from clustertop.read.cluster import age_text, summarize
from clustertop.read.fullcache import FullCache
from clustertop.read.model import DOWN_AFTER_S, ClusterState, Layers, NodeView, SummaryRead
from clustertop.read.owners import name_pods, name_snapshot, pod_index
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.shards import ShardFetch
from clustertop.read.summary import merge
from clustertop.read.want import Wants
from clustertop.wire import schema
from clustertop.wire.brief import decode_head, fresh
from clustertop.wire.digest import RULES, digest
from clustertop.wire.summary import BUCKETS, LETTER_STATES, BucketCheckMemo, BucketSummary, summary_key

KINDS = ("digest", "brief", "full")
#: A bucket summary written longer ago than this many of its intervals is not believed (its hosts are read
#: from their digests): a digest's key lives 3 intervals, and a summary is folded from digests up to one old.
SUMMARY_STALE_INTERVALS = 3.0
KEYS = {"digest": wire.digest_key, "brief": wire.brief_key, "full": wire.node_key}
#: The NodeSeal field that holds each kind's SHA-256.
SEAL_FIELD = {"digest": "digest", "brief": "brief", "full": "node"}

#: Raw payloads of one read: per kind ("digest", "brief", "full"), host -> its key's value (None: no key).
Raw = dict[str, dict[str, bytes | None]]


class OlderAgents:
    """Per-node upgrade tolerance, in this one place: the hosts whose agent publishes less than this
    dashboard reads, learnt from what each read finds, so mixed versions during an upgrade show every
    node as up and with this dashboard's own verdicts.

    - ``without_brief``: no brief key at the last read (an agent from before briefs, or a node gone
      quiet). Its full key is read beside its brief key, so an old agent is never taken for a dead one.
    - ``without_digest``: no usable digest at the last read: none (an agent from before digests, or a
      node gone quiet), or one made by older rules (``rules`` below ``wire.digest.RULES``: an old agent's
      verdicts are not this dashboard's). Its brief (or full snapshot) is read and folded here with the
      same ``digest()`` the agents run.

    A host leaves a set at the first read that finds what it lacked (the agent was upgraded); the first
    read that finds it lacking costs one more MGET, once.
    """

    def __init__(self) -> None:
        self.without_brief: set[str] = set()
        self.without_digest: set[str] = set()

    @staticmethod
    def usable(d: schema.NodeDigest) -> bool:
        """Whether a node's digest was made by rules at least as new as this dashboard's."""
        return d.rules >= RULES

    def keys(self, known: list[str], plan: ReadPlan, asked: ReadPlan | None = None) -> dict[str, list[str]]:
        """Per kind, the hosts whose key of that kind a read by ``plan`` takes: ``plan.full_hosts`` in
        full, the others' digests, and their briefs where ``plan`` covers them or the digest is not
        usable (with the full key where the agent writes no brief).

        A read of every node in full takes every digest too (freshness: a full snapshot's key outlives its
        node, "Byte budget" in docs/architecture.md), and every brief: where a node's full snapshot is from
        an earlier tick, its brief is what the screen draws (a small cluster read in full by the size rule
        for a screen of briefs) or what brings the full snapshot up to date (``wire.brief.fresh``). Likewise
        a host read in full has its brief read beside it, in the same round trip."""
        keys: dict[str, list[str]] = {"digest": [], "brief": [], "full": []}
        if plan.level >= Level.DETAIL:
            keys["full"] = keys["digest"] = keys["brief"] = known
            return keys
        keys["digest"] = known
        briefs = plan.covers(Level.GPUS) or plan.gpus  # ``plan.gpus``: the hosts a summary read reads here
        in_full, nb, nd = plan.full_hosts, self.without_brief, self.without_digest
        brief_hosts, full_hosts = keys["brief"], keys["full"]
        for h in known:
            if h in in_full:
                full_hosts.append(h)
                # Its brief brings an older full snapshot up to date, and where the digest is not usable its
                # key says whether the node is up (a full key may outlive its node).
                brief_hosts.append(h)
            elif briefs or h in nd:
                brief_hosts.append(h)  # read even where it was missing: an upgraded agent has it
                if h in nb:
                    full_hosts.append(h)
        return keys

    def learn_briefs(self, briefs: dict[str, bytes | None]) -> None:
        for host, data in briefs.items():
            if data is None:
                self.without_brief.add(host)
            else:
                self.without_brief.discard(host)

    def forget(self, listed: set[str]) -> None:
        """Forget hosts no longer in the index."""
        self.without_brief &= listed
        self.without_digest &= listed


class Reader:
    """Reads the cluster; remembers the last good data per node to show stale nodes honestly."""

    def __init__(self, client: Any, clock: Any = time.time, brief_from: int | None = None,
                 shard_fetch: bool = True, wants: Wants | None = None,
                 hosts: Callable[[str], bool] | None = None) -> None:
        self.client = client
        #: Reads only the index's hosts this says yes to (a summary node reads its buckets' hosts: agents/summaries.py);
        #: None: every host. The index itself is read whole (one ZRANGE), then filtered.
        self.hosts = hosts
        #: Asks the agents for the full snapshots this reader reads (``read.want``); None: asks nothing (the
        #: alert evaluator, tests), so it reads full snapshots as often as their agents write them.
        self.wants = wants
        #: On a Redis Cluster, the reader's own per-shard fetch (``read.shards``); False: redis-py's cluster
        #: pipeline for every read, as before it (the bench's same-run baseline).
        self.shard_fetch = ShardFetch() if shard_fetch else None
        self.clock = clock
        # Below this many nodes every read is full (``ReadPlan.sized``; None: BRIEF_FROM_NODES).
        self.brief_from = brief_from
        self.known: list[str] = []
        self.last_good: dict[str, schema.NodeSnapshot] = {}  # full snapshots
        #: Where the last good full snapshot was shown brought up to date by a newer brief: that brief (the
        #: node's last good snapshot is their overlay, built only if it is shown again: ``_node``).
        self._good_over: dict[str, schema.NodeSnapshot] = {}
        #: Builds the overlays of the last read, which it defers to whoever reads them (``NodeView.defer``).
        self._overlays = _Overlays()
        self.last_brief: dict[str, schema.NodeSnapshot] = {}
        self.last_digest: dict[str, schema.NodeDigest] = {}  # read, or folded from a snapshot
        self.last_cluster: dict[str, schema.ClusterPayload] = {}
        self.older = OlderAgents()
        #: Each node's last full snapshot as read, decoded: a read fetches only the ones that changed
        #: (``read.fullcache``). ``_skipped``: the hosts whose full snapshot the last ``_fetch`` left out.
        self.fulls = FullCache()
        self._skipped: set[str] = set()
        #: How a bucket summary's raw value is opened: (raw, bucket, columns) -> (the summary, None) where it is
        #: to be believed, else (None, why not): ``control.summary.open_summary`` against the dashboard's
        #: known_nodes (``read`` checks no signature itself); columns=False: its GPU columns are not decoded.
        #: None: no summary is believed, and a read at ``Level.SUMMARIES`` reads every host from its digest (and
        #: says why).
        self.open_summary: Callable[[bytes, int, bool], tuple[BucketSummary | None, str | None]] | None = None
        #: The hosts this reader already found of their bucket, for whoever sets ``open_summary`` to hand it on
        #: (``open_summary(..., memo=reader.bucket_check)``): this reader's own, so no other reader's checks count.
        self.bucket_check = BucketCheckMemo()
        #: From this many nodes a plan at ``Level.SUMMARIES`` reads summaries (None: ``plan.SUMMARY_FROM_NODES``).
        self.summary_from: int | None = None
        #: Hosts the last summary read found no believed summary covering: their digests ride in the next
        #: read's first MGET (a bucket whose summary went missing costs the second MGET once, not every read).
        self._uncovered: set[str] = set()
        self._quiet: set[str] = set()  # covered hosts not up by their summary, read by the GPU table (``_summaries``)
        self._covered_up: dict[str, NodeView] = {}  # host -> its view while a believed summary says it is up
        self._raw_summaries: list[bytes | None] = []

    def read(self, plan: ReadPlan = ALL_FULL, seals: Collection[str] = ()) -> ClusterState:
        """The cluster as ``plan`` says: every node's full snapshot (``ALL_FULL``); or every node's
        digest, full snapshots of ``plan.full_hosts``, and of every other node what ``plan.level`` says
        beyond its digest: its brief, its brief's GPUs only (decoded where its digest stands for the
        rest), or nothing more. Below ``brief_from`` nodes, everything in full anyway (``ReadPlan.sized``);
        the state returned carries the plan the read was made by. At ``Level.SUMMARIES`` (from ``summary_from``
        nodes): the bucket summaries, and the digests of ``plan.digest_hosts`` and of every host no believed
        summary covers (``_summaries``; ``state.summaries`` says what was believed and what refused, and why).

        ``seals``: hosts whose seal to read too, each in the same MGET as the payload it covers (one
        command, so both come from one tick), kept raw in ``state.sealed`` for whoever verifies them:
        the node on screen and a few more per read, never all (a verification costs ~66 µs)."""
        t0 = time.perf_counter()
        asked, plan = plan, plan.sized(len(self.known), self.brief_from, self.summary_from)
        all_full = plan.level >= Level.DETAIL
        index, raw, raw_cluster, raw_seals = self._fetch(plan, seals, asked)
        t1 = time.perf_counter()
        now = self.clock()
        lean = plan.level is Level.GPUS or plan.gpus
        state = ClusterState(ts=now, fetch_ms=(t1 - t0) * 1000, plan=plan)
        self._overlays = _Overlays()  # this read's: its views' overlays are named from its own payload
        # At Level.SUMMARIES: the hosts a believed summary covers and whose digest was not read, with the
        # state their summary gives them; every other host is read as below (its digest, in this read).
        cover: dict[str, str | None] = {}
        read_index = index
        if plan.level is Level.SUMMARIES:
            # The overview draws no GPU column: a plan that reads them (the GPU table) passes columns=True.
            state.summaries, cover, read_index = self._summaries(raw, now, columns=plan.gpus)
        digests, digest_errors = self._digests(read_index, raw)
        fulls, brief_data = raw["full"], raw["brief"]
        last_digest, is_newer = self.last_digest, wire.is_newer
        # Full snapshots left out as unchanged whose digest, read now, names another one: fetched now.
        if late := self.fulls.changed([h for h in self._skipped if h not in fulls], digests):
            self._mget(raw, [("full", h) for h in late])
        covered_up = self._covered_up
        read_here: list[NodeView] = []  # at Level.SUMMARIES, the views of the hosts read
        for host, last_seen in index:
            if cover and (covered := cover.get(host)) is not None:
                # Folded into its bucket's summary and not in view: its state, no figures (its tile is drawn
                # from its digest once scrolled to, by the next read: ``ReadPlan.digest_hosts``). Up, it is one
                # view kept read after read (nothing in it changes: no figures, no age): 10,000 views not built.
                if covered == "up":
                    view = covered_up.get(host)
                    if view is None:
                        view = covered_up[host] = NodeView(host=host, state="up")
                    state.nodes.append(view)
                else:
                    state.nodes.append(NodeView(host=host, state=covered, last_seen_ts=last_seen,
                                                age_s=max(0.0, now - last_seen)))
                continue
            full_data, brief = fulls.get(host), brief_data.get(host)
            if brief is not None and full_data is not None and not plan.in_full(host):
                full_data = None  # read only because the node was new: a brief where briefs were asked
            known = self.fulls.known(host, full_data, host in fulls) if plan.in_full(host) else None
            d = digests.get(host)
            if d is not None and full_data is None and brief is None and known is None:
                # Up by its digest alone (a digest-only read: the overview, the nodes table): what ``_node``
                # makes of such a node, without its general case (~2 µs a node less: 20 ms at 10,000).
                last_digest[host] = d
                state.nodes.append(NodeView(host=host, state="up", last_seen_ts=last_seen,
                                            age_s=max(0.0, now - d.ts), digest=d, newer_schema=is_newer(d)))
                if cover:
                    read_here.append(state.nodes[-1])
                continue
            state.nodes.append(self._node(host, last_seen, full_data, brief, digests.get(host),
                                          digest_errors.get(host), now, all_full, lean, asked.in_full(host), known))
            if cover:
                read_here.append(state.nodes[-1])
        if self.wants is not None:
            self.wants.send(self.client, asked.wanted(self.known))
            state.want_error = self.wants.error
        for name, data in zip(wire.CLUSTER_NAMES, raw_cluster, strict=True):
            if data is None:
                continue
            try:
                self.last_cluster[name] = wire.decode(data, schema.ClusterPayload)
            except wire.WireError as e:
                state.cluster_errors[name] = f"bad {name} data: {e}"
        for host, (kind, seal) in raw_seals.items():
            state.sealed[host] = (SEAL_FIELD[kind], raw[kind].get(host), seal)
        state.cluster = dict(self.last_cluster)
        # Pod uids (all a node's cgroups say) named from the Kubernetes payload: clustertop.read.owners.
        # An overlay left to be built when read (``NodeView.defer``) is named then, from this same payload.
        # At Level.SUMMARIES only the hosts read have a snapshot (at most those read in full).
        name_pods((n.snap for n in (read_here if cover else state.nodes) if not n.pending), state.cluster)
        self._overlays.cluster = state.cluster
        if state.summaries is not None:
            s = state.summaries
            if not s.believed:
                # None believed (no summary nodes, no known_nodes): every host was read from its digest, and the
                # totals are a digest read's (``summarize`` is the merge of every bucket's fold, exactly).
                s.read_here = state.nodes
                state.totals = summarize(state.nodes, state.cluster)
            else:
                s.read_here = read_here if cover else [n for n in state.nodes if n.host not in s.covered]
                s.local = fold_uncovered(s, [n for n in s.read_here if n.host not in s.covered], now)
                state.totals = merge(s.believed + s.local, state.cluster)
        else:
            state.totals = summarize(state.nodes, state.cluster)
        state.decode_ms = (time.perf_counter() - t1) * 1000
        # Forget what was cached of nodes removed from the index.
        listed = {h for h, _ in index}
        for cache in (self.last_good, self.last_brief, self.last_digest, self._good_over, self._covered_up):
            if not cache.keys() <= listed:  # one pass in C; the loop below only when a node went away
                for h in [h for h in cache if h not in listed]:
                    del cache[h]
        self.older.forget(listed)
        self.fulls.forget(listed)
        return state

    def _fetch(self, plan: ReadPlan, seals: Collection[str] = (), asked: ReadPlan | None = None) -> tuple[
            list[tuple[str, float]], Raw, list[bytes | None], dict[str, tuple[str, bytes | None]]]:
        """One round trip in steady state: index + every known node's keys (``OlderAgents.keys``) +
        cluster keys, pipelined. Returns the sorted index and, per kind ("digest", "brief", "full"),
        host -> payload; and per host of ``seals`` it read a payload of, (kind, its seal). A node that
        appears in the index for the first time costs one extra MGET, once.
        """
        known = list(self.known)
        summaries = plan.level is Level.SUMMARIES
        if summaries:
            # The bucket summaries beside the digests of the tiles in view, of the nodes read in full, and of
            # the hosts the last read found no believed summary for (``_summaries`` reads any others).
            want = plan.digest_hosts | plan.full_hosts | self._uncovered | (self._quiet if plan.gpus else set())
            known = [h for h in known if h in want]
        keys = self.older.keys(known, plan, asked)
        # Full snapshots unchanged since the last read (their digest said so) are not fetched: ``read.fullcache``.
        self._skipped = self.fulls.skip(keys["full"], self.last_digest, seals)
        if self._skipped:
            keys["full"] = [h for h in keys["full"] if h not in self._skipped]
        sealed_in = _seal_kinds(keys, seals)
        kinds = [k for k in KINDS if keys[k]]
        raw: Raw = {k: {} for k in KINDS}
        raw_seals: dict[str, tuple[str, bytes | None]] = {}
        if _sharded(self.client):
            # Redis Cluster: an MGET must stay in one slot, and a node's keys share one (its host is their
            # hash tag), so one MGET per node, seal included; every shard gets its commands in one write
            # before any reply is read (one round trip per shard, the shards working in parallel).
            per_host = _per_host(kinds, keys, sealed_in)
            # Each summary key has a tag of its own ({bN}): one command each, spread over the shards.
            summary_cmds = [["MGET", summary_key(b)] for b in range(BUCKETS)] if summaries else []
            res = self._on_shards([["MGET", *host_keys] for host_keys, _ in per_host.values()] + summary_cmds +
                                  [["MGET", *[wire.cluster_key(n) for n in wire.CLUSTER_NAMES]]],  # one tag: {cluster}
                                  index=True)
            if summaries:
                got_summaries = res[-1 - BUCKETS:-1]
                self._raw_summaries = [v[0] for v in got_summaries]
                res = res[:-1 - BUCKETS] + res[-1:]
            for (host, (_, host_kinds)), values in zip(per_host.items(), res[1:-1], strict=True):
                for k, value in zip(host_kinds, values, strict=True):
                    if k in raw:
                        raw[k][host] = value
                    else:  # "seal:" + the kind it rides with
                        raw_seals[host] = (k[5:], value)
        else:
            p = self.client.pipeline(transaction=False)
            p.zrange(wire.NODES_KEY, 0, -1, withscores=True)
            for k in kinds:
                # A seal rides in the MGET of the payload it is checked against: MGET is one command, so
                # the two can't straddle a tick (the agent writes both in one MULTI).
                p.mget([KEYS[k](h) for h in keys[k]] + [wire.seal_key(h) for h in sealed_in[k]])
            if summaries:
                p.mget([summary_key(b) for b in range(BUCKETS)])
            p.mget([wire.cluster_key(n) for n in wire.CLUSTER_NAMES])
            res = p.execute()
            if summaries:
                self._raw_summaries = res[-2]
            for i, k in enumerate(kinds):
                got_k, n = res[1 + i], len(keys[k])
                raw[k] = dict(zip(keys[k], got_k[:n], strict=True))
                for h, seal in zip(sealed_in[k], got_k[n:], strict=True):
                    raw_seals[h] = (k, seal)
        index = [(_text(h), float(s)) for h, s in res[0]]
        if self.hosts is not None:
            keep = self.hosts
            index = [hs for hs in index if keep(hs[0])]
        known_set = set(known)  # not the list: 1,000 nodes made this a 5 ms quadratic scan per read
        # At Level.SUMMARIES ``_summaries`` reads the new hosts no summary covers.
        missing = [] if summaries else [h for h, _ in index if h not in known_set]
        if missing:
            # Every payload of a node new to the index: what it has is not known yet.
            first = KINDS
            self._mget(raw, [(k, h) for h in missing for k in first])
        index.sort(key=lambda hs: hs[0])
        self.known = [h for h, _ in index]
        return index, raw, res[-1], raw_seals

    def _summaries(self, raw: Raw, now: float, columns: bool = True
                   ) -> tuple[SummaryRead, dict[str, str | None], list[tuple[str, float]]]:
        """The bucket summaries ``_fetch`` read, opened (``open_summary``: signed by an enrolled node, of this
        bucket, every host it names of it) and believed where fresh; every index host that no believed summary
        covers gets its digest read now (one more MGET at most, and from the next read on in the first one).
        Returns what was made of the summaries, the covered hosts whose digest was not read (host -> the state
        their summary gives them), and the hosts to read from their digests (as index entries)."""
        out = SummaryRead(buckets=BUCKETS)
        open_summary = self.open_summary
        digests_read = raw["digest"]
        cover: dict[str, str | None] = {}  # None: a letter open_summary let through unknown
        letter_state = LETTER_STATES.get
        for bucket, data in enumerate(self._raw_summaries):
            if data is None:
                out.refused[bucket] = "missing"
                continue
            if open_summary is None:
                out.refused[bucket] = "no known_nodes to check it against"
                continue
            summary, why = open_summary(data, bucket, columns)
            if summary is None:
                out.refused[bucket] = why or "refused"
                continue
            if columns and summary.gpus is None:  # the GPU table's read: its hosts' briefs are read instead
                out.refused[bucket] = "no GPU columns"
                continue
            age = now - summary.ts
            if not age <= SUMMARY_STALE_INTERVALS * max(1.0, summary.interval_s):  # NaN stamps are stale too
                out.refused[bucket] = f"stale: written {age_text(age)} ago"
                continue
            out.believed.append(summary)
            # In C: ~156 hosts a bucket, 10,000 in all, every read (open_summary checked the letters).
            cover.update(zip(summary.hosts, map(letter_state, summary.states), strict=False))
        covered = out.covered = frozenset(cover)
        # The GPU table's read (``columns``): a host its summary calls stale, down or bad has no cards in the columns
        # (the up nodes' only), so its own digest and brief are read, as a read of every brief shows it.
        quiet = self._quiet = {h for h, st in cover.items() if st != "up"} if columns else set()
        for h in digests_read:  # read whatever the summaries say (the tiles in view): their digests stand
            cover.pop(h, None)
        uncovered = set(self.known).difference(covered)
        self._uncovered = uncovered
        out.from_digests = len(uncovered)
        kinds = ("digest", "brief") if columns else ("digest",)  # the GPU table's read: their briefs' GPUs too
        if need := [(k, h) for h in sorted(uncovered | quiet) if h not in digests_read for k in kinds]:
            self._mget(raw, need)
        for h in quiet:
            cover.pop(h, None)
        return out, cover, [(h, 0.0) for h in digests_read]  # ``_digests`` reads the hosts only

    def _mget(self, raw: Raw, wanted: list[tuple[str, str]]) -> None:
        keys = [KEYS[k](h) for k, h in wanted]
        if _sharded(self.client):  # one MGET per node (one slot each), one round trip per shard
            per_host: dict[str, list[str]] = {}
            for (_, h), key in zip(wanted, keys, strict=True):
                per_host.setdefault(h, []).append(key)
            values = dict(zip([k for ks in per_host.values() for k in ks],
                              [v for vs in self._on_shards([["MGET", *ks] for ks in per_host.values()])
                               for v in vs], strict=True))
            got = [values[k] for k in keys]
        else:
            got = self.client.mget(keys)
        for (k, h), data in zip(wanted, got, strict=True):
            raw[k][h] = data

    def _on_shards(self, commands: list[list[str]], index: bool = False) -> list[Any]:
        """On a Redis Cluster, the replies of ``commands`` (each within one slot), after the node index's
        (``ZRANGE``, as (host, score) pairs) if ``index``: one round trip per shard, by ``read.shards``, or
        by redis-py's cluster pipeline where that hands the read back (a redirect, a failed connection, any
        error reply, the agent's own client): that one follows MOVED/ASK and refreshes its slot map."""
        head: list[list[Any]] = [["ZRANGE", wire.NODES_KEY, 0, -1, "WITHSCORES"]] if index else []
        if self.shard_fetch is not None:
            got = self.shard_fetch.fetch(self.client, head + commands)
            if got is not None:
                if index:
                    flat = got[0]
                    got[0] = list(zip(flat[::2], flat[1::2], strict=True))
                return got
        p = self.client.pipeline(transaction=False)
        if index:
            p.zrange(wire.NODES_KEY, 0, -1, withscores=True)
        for c in commands:
            p.execute_command(*c)  # redis-py blocks its pipeline's mget() on a cluster
        return p.execute()

    def _digests(self, index: list[tuple[str, float]], raw: Raw) -> tuple[dict[str, schema.NodeDigest], dict[str, str]]:
        """Decode the digests read. A host without a usable one gets its snapshot read (one more MGET
        the first time; from then on it is in ``older.without_digest`` and its snapshot is in the pipeline)."""
        out: dict[str, schema.NodeDigest] = {}
        errors: dict[str, str] = {}
        raw_digests = raw["digest"]
        without_digest = self.older.without_digest
        usable = self.older.usable
        lacking: list[tuple[str, str]] = []
        for host, _ in index:
            data = raw_digests.get(host)
            d = None
            if data is not None:
                try:
                    d = wire.decode(data, schema.NodeDigest)
                    if d.host != host:
                        raise wire.WireError(f"payload names host {d.host!r}")
                except wire.WireError as e:
                    errors[host], d = f"digest: {e}", None
            if d is not None and usable(d):
                out[host] = d
                without_digest.discard(host)
                if host not in raw["brief"]:
                    continue
            else:
                without_digest.add(host)
            # A snapshot is needed (no usable digest, or briefs were asked) and none came: read the
            # payloads not tried yet (an agent from before digests has briefs; one from before briefs,
            # only its full key).
            if raw["brief"].get(host) is None and raw["full"].get(host) is None:
                lacking += [(k, host) for k in ("brief", "full") if host not in raw[k]]
        if lacking:
            self._mget(raw, lacking)
        self.older.learn_briefs(raw["brief"])
        return out, errors

    def _node(self, host: str, last_seen: float, full_data: bytes | None, brief_data: bytes | None,
              fresh_digest: schema.NodeDigest | None, digest_error: str | None, now: float,
              all_full: bool, lean: bool = False, wanted: bool = True,
              known_full: schema.NodeSnapshot | None = None) -> NodeView:
        """``wanted``: the read was asked for this node in full (not only by the size rule). ``known_full``: its
        full snapshot as kept decoded (``read.fullcache``: not fetched this read, or the same bytes again)."""
        view = NodeView(host=host, state="down", last_seen_ts=last_seen, age_s=max(0.0, now - last_seen))
        # The snapshot: the full one where read, else the brief.
        has_full = full_data is not None or known_full is not None
        data, is_brief = (full_data, False) if has_full else (brief_data, brief_data is not None)
        errors = [digest_error] if digest_error else []
        fresh_snap = None
        layers: Layers | None = None  # the full snapshot read and the newer brief laid over it (``_overlay``)
        if data is not None or has_full:
            try:
                if not is_brief and brief_data is not None and not wanted and fresh_digest is not None and \
                        (known_full.ts if known_full is not None else wire.decode(data, _Stamp).ts) < fresh_digest.ts:
                    # Read in full by the size rule only, and from an earlier tick: this tick's brief is what
                    # is drawn (below), so the full one is not built at all (its time stamp told).
                    data, is_brief = brief_data, True
                # Only a brief's GPUs where the digest stands for the rest; such a cut is not kept
                # as the node's last brief (a stale node's fallback must be the whole brief).
                cut = is_brief and lean and fresh_digest is not None
                if known_full is not None and not is_brief:
                    snap = known_full  # decoded and checked when its bytes were read
                else:
                    assert data is not None
                    snap = _gpus_only(wire.decode(data, _GpusOnly)) if cut else wire.decode(data, schema.NodeSnapshot)
                    if snap.host and snap.host != host:
                        raise wire.WireError(f"payload names host {snap.host!r}")
                    if not is_brief:
                        self.fulls.put(host, data, snap)
                full_ts = snap.ts
                if not is_brief and brief_data is not None:
                    layers = self._overlay(host, snap, brief_data, errors)
                if not is_brief and (layers is not None or (fresh_digest is not None and full_ts < fresh_digest.ts)):
                    # A full snapshot from an earlier tick (its agent rewrites it every few seconds, or while
                    # someone wants it), asked for in full (else its brief was taken above): its brief's
                    # figures are drawn over it (``_overlay``); what only it carries is never passed off as
                    # current: the view says how old that detail is.
                    view.detail_age_s = max(0.0, now - full_ts)
                if not cut:
                    if is_brief:
                        self.last_brief[host] = snap
                    else:
                        self.last_good[host] = snap
                        if layers is not None:
                            self._good_over[host] = layers.head  # its GPUs built only if shown again
                        else:
                            self._good_over.pop(host, None)
                fresh_snap = snap
                view.brief = is_brief
            except wire.WireError as e:
                errors.insert(0, str(e))
        view.snap = fresh_snap
        if layers is not None:
            # Built when first read (a node's screen, the exporter, the CLI), not here: the screens of every node's
            # detail draw from the two layers (``read.layers``) and the overlay of 1,000 nodes is never built.
            view.defer(layers, partial(self._overlays.build, layers))
        if fresh_snap is None and (fresh_digest is None or errors):
            # Nothing usable now: the newest of what was last read, full or brief (a full read prefers
            # full data, but a brief of a stale node beats showing nothing at all). A node that is up
            # in a digest-only read keeps no snapshot: an old one would pass for its current state.
            full_snap, brief_snap = self.last_good.get(host), self.last_brief.get(host)
            over = self._good_over.get(host) if full_snap is not None else None
            good_ts = over.ts if over is not None else full_snap.ts if full_snap is not None else None
            if brief_snap is not None and (good_ts is None or (brief_snap.ts > good_ts and not all_full)):
                view.snap, view.brief = brief_snap, True
            else:
                view.snap = full_snap
                if full_snap is not None and over is not None:
                    # As it was shown: the brief laid over it, built if read.
                    view.defer(Layers(full_snap, over), partial(self._overlays.build, Layers(full_snap, over)))
        if fresh_digest is not None:
            view.digest = fresh_digest
        elif fresh_snap is not None:
            view.digest = digest(view.snap or fresh_snap)  # a deferred overlay is built here: no digest read
        else:
            # Nothing fresh: the node's last digest. It is never older than the snapshot kept above,
            # since whenever a snapshot was kept its digest was kept in the same call; and it is the
            # same object read after read, so a stale node's tile is not redrawn every time.
            view.digest = self.last_digest.get(host)
        if view.digest is not None:
            self.last_digest[host] = view.digest
            view.age_s = max(0.0, now - view.digest.ts)
        elif view.snap is not None:
            view.age_s = max(0.0, now - view.snap.ts)
        newest = layers.head if layers is not None else fresh_snap  # an overlay's ``v`` is its brief's
        view.newer_schema = (newest is not None and wire.is_newer(newest)) or (
            fresh_digest is not None and wire.is_newer(fresh_digest))
        # The key's TTL (kept by Redis's clock) is what says "fresh": agent clocks may be skewed,
        # so the snapshot's own ts only feeds the age shown, never the up/stale decision.
        # A full snapshot its agent writes on a cadence lives longer than its node (``full_every_s``): it is
        # no sign of life by itself, the digest or brief beside it is.
        alive = fresh_digest is not None or brief_data is not None or (
            fresh_snap is not None and not fresh_snap.full_every_s)
        if errors:
            view.state, view.error = "bad", f"bad data from node {host}: {'; '.join(errors)}"
        elif alive:
            view.state = "up"
        elif view.age_s is not None and view.age_s <= DOWN_AFTER_S:
            view.state = "stale"
        else:
            view.state = "down"
        return view


    @staticmethod
    def _overlay(host: str, full: schema.NodeSnapshot, brief_data: bytes, errors: list[str]) -> Layers | None:
        """``full`` and the node's brief where that is from a later tick, to bring it up to date
        (``wire.brief.fresh``: every figure the brief carries is the brief's, the rest stays the full
        snapshot's; built by ``_Overlays.build`` when first read); None where there is nothing to lay over it.
        A bad brief is said (``errors``) and leaves the full snapshot as it is (None). The brief is decoded and
        checked here, in the read, so a bad one marks its node bad whether or not its overlay is ever built."""
        try:
            # Its time stamp first (msgspec skips the rest): a full snapshot of the brief's tick, as while a
            # reader wants it, needs nothing from the brief, and the brief is not built at all. Not ``<=``: a
            # NaN stamp on either side overlays nothing.
            data = wire.plain(brief_data)  # inflated once for both decodes
            if not wire.decode_plain(data, _Stamp).ts > full.ts:
                return None
            # Its GPU section checked, not built: most of a brief's decode, and the storage and network screens
            # draw no GPUs (``Layers.brief`` builds it for whoever reads it: the GPU ledger, the people screen).
            newer = decode_head(data)
            if newer.host and newer.host != host:
                raise wire.WireError(f"payload names host {newer.host!r}")
        except wire.WireError as e:
            errors.append(f"brief: {e}")
            return None
        return Layers(full, newer)


class _Overlays:
    """Builds the overlays one read deferred (``NodeView.defer``), their pod owners named from that read's
    Kubernetes payload as ``name_pods`` names its other snapshots. It holds that payload, not the read: a
    reference back to the read from its own views would be a cycle, freed only by the collector."""

    __slots__ = ("cluster", "pods")

    def __init__(self) -> None:
        self.cluster: dict[str, schema.ClusterPayload] = {}  # set once the read has its payloads
        self.pods: dict[str, schema.K8sPod] | None = None

    def build(self, layers: Layers) -> schema.NodeSnapshot:
        snap = fresh(layers.full, layers.brief)
        if self.pods is None:
            self.pods = pod_index(self.cluster)
        name_snapshot(snap, self.pods)
        return snap


def _sharded(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (redis-py's ``RedisCluster``, as ``store.connect``
    returns for a cluster node's URL), or the agent's own client once it found one (the alert evaluator reads
    with it): multi-key commands must then stay within one slot."""
    if getattr(client, "bounded_reads", False):  # store.resp (redis-py's clients have a cluster() method)
        return getattr(client, "cluster", None) is not None
    return callable(getattr(client, "get_node_from_key", None))


def _per_host(kinds: list[str], keys: dict[str, list[str]],
              sealed_in: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """host -> (every key of it a read takes: its payloads, then its seal; one slot, one MGET) and the kind
    of each ("digest", "brief", "full"; "seal:" + the kind the seal is checked against)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for k in kinds:
        key_fn = KEYS[k]
        for h in keys[k]:
            e = out.get(h)
            if e is None:
                e = out[h] = ([], [])
            e[0].append(key_fn(h))
            e[1].append(k)
        for h in sealed_in[k]:
            out[h][0].append(wire.seal_key(h))
            out[h][1].append("seal:" + k)
    return out


def _seal_kinds(keys: dict[str, list[str]], seals: Collection[str]) -> dict[str, list[str]]:
    """Per kind, the hosts of ``seals`` whose seal is read beside that kind of payload: the fullest one
    read of each (a node's screen checks its full snapshot; the nodes table, its digest)."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    if not seals:
        return out
    wanted = set(seals)
    for k in ("full", "brief", "digest"):
        for h in keys[k]:
            if h in wanted:
                out[k].append(h)
                wanted.discard(h)
    return out


class _Stamp(msgspec.Struct, gc=False):
    """A payload decoded for its time stamp only (msgspec skips the rest without building it)."""

    ts: float = 0.0


class _GpusOnly(msgspec.Struct, kw_only=True, gc=False):
    """A brief decoded for its GPUs: msgspec skips the other sections without building them (1,000
    8-GPU briefs: ~13 ms instead of ~23)."""

    v: int = schema.SCHEMA_VERSION
    host: str = ""
    ts: float = 0.0
    seq: int = 0
    interval_s: float = 1.0
    role: str | None = None
    labels: dict[str, str] | None = None
    gpus: list[schema.Gpu] | None = None


def _gpus_only(o: _GpusOnly) -> schema.NodeSnapshot:
    return schema.NodeSnapshot(v=o.v, host=o.host, ts=o.ts, seq=o.seq, interval_s=o.interval_s, role=o.role,
                               labels=o.labels, gpus=o.gpus)


def _text(b: bytes | str) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b

