"""Provides the simulated cluster (`clustertop demo`, `clustertop simulate`, benchmarks and tests).

Shaped like the cluster clustertop was born for: 5 GPU towers (2x GTX 1080 Ti, 6 Ceph OSD SSDs, a
3x1G balance-alb bond) and 10 ARM boards running Celery workers. Training jobs start, ramp their
GPUs and end; a grid search floods a queue and drains; a bond slave loses link and comes back; an
OSD flaps and its PGs recover.

``SimCluster`` is a pure model: ``random.Random(seed)`` and the ``now`` values passed to ``step``
are its only inputs, so the same seed and the same times give the same snapshots. Wall time and
Redis belong to the drivers below (``publish``, ``prefill_history``, ``run``, ``start_thread``),
which write through the real ``agents.publisher.Publisher``, so a simulated cluster exercises the
same path as real agents.

Scaling (``nodes=N``): up to 50 nodes keep the seed cluster's 1:2 tower:ARM mix; above that every
node is a GPU tower (the shape of the 1,000-node x 8-GPU benchmark). Ceph OSDs live on at most
the first 20 towers and Kubernetes manages at most the first 32, so cluster payloads stay far
below the wire limit whatever N is.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from clustertop import store, wire
from clustertop.agents.energy import KEY_TTL_MS, Ledger
from clustertop.agents.publisher import FULL_EVERY_S, FULL_EVERY_WANTED_S, Publisher
from clustertop.collectors import containers as engine_api
from clustertop.control import signing
from clustertop.control.summary import SummaryTooLarge, seal
from clustertop.read.cluster import by_bucket
from clustertop.read.model import NodeView
from clustertop.read.plan import SUMMARY_FROM_NODES
from clustertop.read.summary import fold
from clustertop.sim.containers import CONFIG as CONTAINERS_CONFIG
from clustertop.sim.containers import SimEngine
from clustertop.sim.nodes import (
    GIB,
    MIB,
    MODELS,
    USERS,
    Job,
    SimNode,
    build_arm,
    build_tower,
    smoothing,
    step_node,
)
from clustertop.sim.services import CephModel, K8sNodeInfo, KubernetesModel, QueuesModel, _suffix
from clustertop.wire import schema
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key

log = logging.getLogger("clustertop.simulate")

DEFAULT_TOWERS, DEFAULT_ARMS = 5, 10
ALL_TOWERS_ABOVE = 50
CEPH_MAX_HOSTS = 20
K8S_MAX_NODES = 32
MAX_PENDING = 4
FULL_REFRESH_UP_TO = 100  # nodes; above, slow parts refresh every 4th tick
OSDS_PER_TOWER = 6


class SimCluster:
    """A deterministic, lively simulated cluster. ``step(now)`` advances it and returns one tick."""

    def __init__(self, seed: int = 1, nodes: int | None = None, gpus_per_node: int | None = None,
                 start_ts: float | None = None, keys: bool = False, part: tuple[int, int] | None = None,
                 summaries: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.gpus_per_node = 2 if gpus_per_node is None else max(0, gpus_per_node)
        if nodes is None:
            towers, arms = DEFAULT_TOWERS, DEFAULT_ARMS
        elif nodes > ALL_TOWERS_ABOVE:
            towers, arms = nodes, 0
        else:
            nodes = max(1, nodes)
            towers = max(1, round(nodes / 3))
            arms = nodes - towers
        width = max(2, len(str(max(towers, arms))))
        self.tower_hosts = [f"gpu{i:0{width}d}" for i in range(1, towers + 1)]
        self.arm_hosts = [f"arm{i:0{width}d}" for i in range(1, arms + 1)]
        self.hosts: list[str] = self.tower_hosts + self.arm_hosts
        #: ``part=(i, k)``: this process is part i of k (``simulate --procs k``). Every part builds and steps the
        #: same seed-derived cluster (jobs, events, Ceph, queues: the shared rng, identical in every part while
        #: they step at the same times), but steps and returns only its own hosts, with its nodes' noise from a
        #: second rng of its own. A part's hosts are whole buckets (``wire.summary.bucket_of``; ``part_buckets``),
        #: so each part folds and writes its own buckets' summaries; the part holding the first tower alone returns
        #: the cluster payloads. None: the whole cluster, exactly as before parts existed.
        self.part = part
        self.own_hosts = self.hosts
        self.node_rng = self.rng
        if part is not None:
            i, k = part
            if not 0 <= i < k:
                raise ValueError(f"part {i} of {k}: need 0 <= part < parts")
            mine = set(part_buckets(self.hosts, k)[i])
            self.own_hosts = [h for h in self.hosts if bucket_of(h) in mine]
            self.node_rng = random.Random(f"clustertop-sim/{seed}/{i}/{k}")
        #: ``keys=True``: each simulated node gets its own key, in memory only (fresh each run, never from
        #: the seed: a key anyone can derive would vouch for nothing). Its publisher then seals every tick
        #: as a real agent does, and the demo enrols ``node_keys()`` as its known nodes.
        self.keys: dict[str, signing.PrivateKey] = {h: signing.new_key() for h in self.hosts} if keys else {}
        #: Bucket summaries (``wire.summary``, issue 18): after each tick every bucket of this tick's nodes is folded
        #: from their digests and sealed by ``summary_folder`` with ``summary_key``, as a summary node's agent does
        #: (``write_summaries``). With node keys the folder is the first node (a simulated summary node, enrolled
        #: by the demo with the others); ``simulate --summary-key FILE`` names another. No key: none are written
        #: (an unsigned summary is refused by every reader). A part (``simulate --procs``) writes its own buckets'.
        self.summaries = summaries
        #: ... and only from this many nodes (``read.plan.SUMMARY_FROM_NODES``: below it no reader reads them, and
        #: ~700 bytes a bucket would be ~670 B/node/s at 30 nodes). ``simulate --summary-key`` sets it to 0.
        self.summaries_from = SUMMARY_FROM_NODES
        self.summary_folder = self.hosts[0]
        self.summary_key: signing.PrivateKey | None = self.keys.get(self.summary_folder)
        self.summary_seq = 0
        self.energy_ledgers: dict[str, Ledger] = {}  # per GPU node, as its agent keeps it (publish)
        self.interval_s = 1.0  # what snapshots announce; the drivers set it to their tick
        self.start_ts = start_ts
        self.nodes: list[SimNode] = []
        self.last_ts: float | None = None
        self.pending: list[Job] = []
        self.running: list[Job] = []
        #: The templates the towers' snapshots advertise (``sim.agents``: the demo's simulated agents launch
        #: them); None: no executor, as an agent without one says.
        self.templates: list[schema.TemplateInfo] | None = None

    def node_keys(self) -> dict[str, signing.PublicKey]:
        """host -> the public half of that simulated node's key ({} unless built with ``keys=True``)."""
        return {h: k.public() for h, k in self.keys.items()}

    # -- construction, at the first step (or at start_ts) ------------------------------------

    def _build(self, t0: float) -> None:
        rng = self.rng
        ceph_hosts = self.tower_hosts[:CEPH_MAX_HOSTS]
        osd_hosts = [(h, list(range(i * OSDS_PER_TOWER, (i + 1) * OSDS_PER_TOWER))) for i, h in enumerate(ceph_hosts)]
        osds = dict(osd_hosts)
        for i, h in enumerate(self.tower_hosts):
            self.nodes.append(build_tower(h, i, self.gpus_per_node, osds.get(h, []), rng, t0))
        broker = self.arm_hosts[0] if self.arm_hosts else ""
        for i, h in enumerate(self.arm_hosts):
            self.nodes.append(build_arm(h, i, broker, rng, t0))
        self.towers = [n for n in self.nodes if n.tower]
        self.k8s_hosts = self.tower_hosts[:K8S_MAX_NODES]
        self.ceph = CephModel(rng, osd_hosts, ceph_hosts)
        self.queues = QueuesModel(
            rng, [(n.host, n.pool_size) for n in self.nodes if not n.tower],
            [(n.host, n.ip) for n in self.towers[:32]], f"redis://{broker or 'localhost'}:6379/0")
        self.k8s = KubernetesModel(
            rng, [K8sNodeInfo(n.host, len(n.gpus), n.cores * 1000 - 500, n.mem_total - 2 * GIB)
                  for n in self.towers[:K8S_MAX_NODES]], t0)
        self.by_host = {n.host: n for n in self.nodes}
        # Each tower's container engine (sim/containers.py: its own random stream, so nothing else changes).
        self.engines = {n.host: SimEngine(n.host, self.seed, t0, n.cores, n.mem_total) for n in self.towers}
        self.container_templates = engine_api.template_infos(engine_api.settings(CONTAINERS_CONFIG, None)) or None
        own = set(self.own_hosts)
        self.own_nodes = [n for n in self.nodes if n.host in own]
        self.by_own = own
        # Lease holders: the first tower polls Ceph, Kubernetes and the Dask scheduler, the first ARM
        # board (the broker's host) Celery. Their snapshots carry those collectors' statuses.
        self.by_host[self.tower_hosts[0]].extra_collectors = ("ceph", "dask", "kubernetes")
        if self.arm_hosts:
            self.by_host[self.arm_hosts[0]].extra_collectors = ("celery",)
        # Scale event rates with the cluster, so a big one is as lively per node as the small one.
        self.scale = max(1.0, len(self.towers) / DEFAULT_TOWERS)
        self.next_bond = t0 + rng.uniform(40, 200) / self.scale
        self.next_osd = t0 + rng.uniform(90, 300)
        self.next_grid = t0 + rng.uniform(30, 150)
        self.next_pending = t0 + rng.uniform(30, 150) / self.scale
        self.next_dask = t0 + rng.uniform(20, 120)
        # Start mid-flight: jobs already running at various ages, two pods waiting for GPUs.
        for node in self.towers:
            for gi, g in enumerate(node.gpus):
                if g.job is not None:
                    continue
                if rng.random() < 0.65:
                    idle = [i for i in range(gi, len(node.gpus)) if node.gpus[i].job is None]
                    self._start_job(node, idle[:self._gpus_wanted(len(node.gpus), len(idle))], t0,
                                    age=rng.uniform(0, 1200))
                else:
                    g.free_at = t0 + rng.uniform(0, 120)
        for _ in range(2 if self.k8s_hosts else 0):
            self.pending.append(self._new_job(t0 - self.rng.uniform(10, 200), k8s=True))
        # A grid search is already under way when the demo opens: queues are the first thing that looks
        # dead in a quiet cluster, and a newcomer should see them fill and drain within a minute.
        if self.arm_hosts:
            self.queues.grid_search(rng)

    # -- jobs ------------------------------------------------------------------------------------

    def _new_job(self, now: float, k8s: bool, gpus_wanted: int = 1) -> Job:
        rng = self.rng
        user = rng.choice(USERS)
        model = rng.choice(MODELS)
        bs = rng.choice((32, 64, 128, 256))
        lr = rng.choice(("1e-4", "3e-4", "1e-3", "0.1"))
        if k8s:
            job_name = f"train-{model.replace('.', '-')}-{rng.randrange(1000, 9999)}"
            name = f"{job_name}-{_suffix(rng)}"
            cmd = f"python /workspace/train.py --model {model} --bs {bs} --lr {lr}"
            # What a real agent knows of a pod from /proc/<pid>/cgroup: its uid and container id; the
            # reader names it from the Kubernetes payload (clustertop.read.owners), as for real nodes.
            owner = schema.Owner(kind="pod", pod_uid=None, container_id=f"{rng.getrandbits(256):064x}")
            ns, uid = "ml", None
        else:
            job_name = None
            name = f"{user}/{model}"
            cmd = f"python train.py --model {model} --bs {bs} --lr {lr}"
            owner = schema.Owner(kind="user", name=user)
            ns, uid = None, None
        if gpus_wanted > 1:
            cmd = cmd.replace("python ", f"torchrun --nproc_per_node={gpus_wanted} ", 1)
        job = Job(name=name, user=user if not k8s else "root", model=model, cmdline=cmd, pid=0, start=0.0,
                  load_s=rng.uniform(20, 60), end=0.0, vram_frac=rng.uniform(0.62, 0.97),
                  cpu_cores=rng.uniform(2.5, 6.0) * gpus_wanted, rss_bytes=int(rng.uniform(5, 16) * GIB),
                  owner=owner, gpus=[], host="", namespace=ns, job_name=job_name, uid=uid,
                  gpus_wanted=gpus_wanted, created=now, fails=rng.random() < 0.06)
        if k8s:
            job.uid = f"{rng.getrandbits(128):032x}"
            job.uid = f"{job.uid[:8]}-{job.uid[8:12]}-{job.uid[12:16]}-{job.uid[16:20]}-{job.uid[20:]}"
            owner.pod_uid = job.uid
            job.gpu_owner = schema.Owner(kind="pod", pod_uid=job.uid)
        return job

    def _gpus_wanted(self, gpus: int, idle: int) -> int:
        """Mostly single-GPU runs on the 2-GPU towers; 8-GPU servers mostly run data-parallel jobs."""
        r = self.rng.random()
        if gpus >= 8:
            want = 8 if r < 0.25 else 4 if r < 0.7 else 2 if r < 0.9 else 1
        else:
            want = 4 if r < 0.1 else 2 if r < 0.3 else 1
        while want > idle:
            want //= 2
        return max(1, want)

    def _start_job(self, node: SimNode, gpus: list[int], now: float, job: Job | None = None,
                   age: float = 0.0) -> None:
        rng = self.rng
        if job is None:
            job = self._new_job(now - age, k8s=node.host in self.k8s_hosts and rng.random() < 0.6,
                                gpus_wanted=len(gpus))
        job.host = node.host
        job.boot_ts = node.boot_ts
        job.gpus = gpus
        job.start = now - age
        job.end = job.start + rng.uniform(240, 1500)
        if age:
            job.end = max(job.end, now + rng.uniform(20, 600))
        node.next_pid += rng.randrange(3, 400)
        job.pid = node.next_pid
        # Keep the node's memory believable when a big node runs several jobs at once.
        job.rss_bytes = min(job.rss_bytes, int((node.mem_total - node.mem_base) * 0.6 / max(1, len(node.gpus))
                                               * len(gpus)))
        for gi in gpus:
            node.gpus[gi].job = job
            node.gpus[gi].idle = None
        self.running.append(job)

    def _schedule(self, now: float) -> None:
        rng = self.rng
        ended: list[Job] = []
        for job in self.running:
            if now >= job.end:
                ended.append(job)
        for job in ended:
            self.running.remove(job)
            node = self.by_host[job.host]
            for gi in job.gpus:
                g = node.gpus[gi]
                g.job = None
                g.free_at = now + rng.uniform(15, 200)
            self.k8s.job_ended(job, now)
        for node in self.towers:
            for g in node.gpus:
                if g.job is not None or g.free_at > now:
                    continue
                idle = [i for i, x in enumerate(node.gpus) if x.job is None and x.free_at <= now]
                if node.host in self.k8s_hosts:
                    pod = next((p for p in self.pending if p.gpus_wanted <= len(idle)), None)
                    if pod is not None:
                        self.pending.remove(pod)
                        self._start_job(node, idle[:pod.gpus_wanted], now, job=pod)
                        continue
                    if self.pending and rng.random() < 0.5:
                        # The scheduler holds this GPU for a pod that needs more than one.
                        g.free_at = now + rng.uniform(10, 60)
                        continue
                if rng.random() < 0.55:
                    self._start_job(node, idle[:self._gpus_wanted(len(node.gpus), len(idle))], now)
                else:
                    g.free_at = now + rng.uniform(20, 240)

    def _events(self, now: float) -> None:
        rng = self.rng
        while now >= self.next_bond and self.towers:
            node = rng.choice(self.towers)
            link = rng.choice(node.links)
            if link.down_until <= self.next_bond:
                link.down_until = self.next_bond + rng.uniform(25, 120)
                link.failures += 1
                node.link_change_at = self.next_bond  # shown at the next step, full refresh or not
            self.next_bond += rng.uniform(120, 420) / self.scale
        while now >= self.next_osd:
            if self.ceph.osd_ids:
                self.ceph.flap(self.next_osd, rng)
            self.next_osd += rng.uniform(300, 700)
        while now >= self.next_grid:
            if self.arm_hosts:
                self.queues.grid_search(rng)
            self.next_grid += rng.uniform(180, 480)
        while now >= self.next_pending:
            if self.k8s_hosts and len(self.pending) < MAX_PENDING:
                n = self.gpus_per_node
                want = self._gpus_wanted(n, n) if n > 2 else (2 if rng.random() < 0.25 and n == 2 else 1)
                self.pending.append(self._new_job(self.next_pending, k8s=True, gpus_wanted=want))
            self.next_pending += rng.uniform(60, 240) / self.scale
        while now >= self.next_dask:
            if self.queues.dask:
                self.queues.dask_graph(rng)
            self.next_dask += rng.uniform(120, 400)

    # -- the tick --------------------------------------------------------------------------------

    def step(self, now: float) -> tuple[list[tuple[schema.NodeSnapshot, schema.HistPoint]],
                                        list[schema.ClusterPayload]]:
        """Advance to ``now`` (seconds) and return every node's (snapshot, history point) and the
        cluster payloads. The first step settles every smoothed value at its target, so the first
        tick already looks like a cluster that has been running for a while."""
        first = self.last_ts is None
        if first:
            if self.start_ts is None:
                self.start_ts = now
            self._build(self.start_ts)
            self.last_ts = self.start_ts
        assert self.last_ts is not None
        dt = min(max(0.0, now - self.last_ts), 3600.0)
        self.last_ts = max(self.last_ts, now)
        if first:
            k_temp = k_fast = 1.0
            k_load = (1.0, 1.0, 1.0)
        else:
            k_temp = smoothing(dt, 45.0)  # a GPU heatsink: tens of seconds
            k_fast = smoothing(dt, 3.0)
            k_load = (smoothing(dt, 60.0), smoothing(dt, 300.0), smoothing(dt, 900.0))
        self._events(now)
        self._schedule(now)
        busy = self.queues.step(now, dt, k_fast if not first else 1.0, self.rng)
        read_t = 4e7 + sum(1.2e8 if now - j.start < j.load_s else 2.5e7 for j in self.running)
        write_t = 1.5e7 + 4e6 * len(self.running) + 3e7 * self.rng.random()
        osd_rates = self.ceph.step(now, k_fast if not first else 1.0, read_t, write_t, self.rng)
        statuses = self._cluster_statuses(now)
        out = []
        interval = self.interval_s
        # Big clusters refresh disks/NICs/processes every few ticks (staggered), GPUs every tick.
        stride = 1 if len(self.nodes) <= FULL_REFRESH_UP_TO else 4
        rng = self.node_rng
        for node in self.own_nodes:
            if not node.tower:
                node.busy_slots = busy.get(node.host, 0)
            full = first or stride == 1 or (node.seq + node.index) % stride == 0
            out.append(step_node(node, rng, now, dt, k_temp, k_fast, k_load, interval, osd_rates, statuses,
                                 full))
            if self.templates is not None and node.tower:
                out[-1][0].templates = self.templates  # what its simulated agent launches (the demo)
            engine = self.engines.get(node.host)
            if engine is not None:
                engine.advance(now)
                out[-1][0].containers = engine.published(full, self.container_templates)
        holder = self.tower_hosts[0]
        cluster = [self.ceph.payload(now, holder)] if self.ceph.osd_ids else []
        cluster += self.queues.payloads(now, self.arm_hosts[0] if self.arm_hosts else None, holder)
        if self.k8s_hosts:
            cluster.append(self.k8s.payload(now, holder, [j for j in self.running if j.namespace], self.pending))
        if self.part is not None and holder not in self.by_own:
            cluster = []  # built all the same: the shared rng must draw alike in every part
        return out, cluster

    def _cluster_statuses(self, now: float) -> dict[str, schema.CollectorStatus]:
        rnd = self.rng.random
        return {
            "ceph": schema.CollectorStatus(ok=True, duration_ms=round(40 + 100 * rnd(), 2), last_ok_ts=now,
                                           interval_s=5.0),
            "kubernetes": schema.CollectorStatus(ok=True, duration_ms=round(30 + 60 * rnd(), 2), last_ok_ts=now,
                                                 interval_s=5.0),
            "celery": schema.CollectorStatus(ok=True, duration_ms=round(8 + 17 * rnd(), 2), last_ok_ts=now,
                                             interval_s=2.0),
            "dask": schema.CollectorStatus(ok=True, duration_ms=round(3 + 6 * rnd(), 2), last_ok_ts=now,
                                           interval_s=2.0),
        }


# ---------------------------------------------------------------------------------------------
# Drivers: Redis, wall time
# ---------------------------------------------------------------------------------------------

#: Prefill writes at most this many history points in all (1,000 nodes get a shorter history).
PREFILL_MAX_POINTS = 60_000


def make_publishers(sim: SimCluster, client: Any, interval_s: float, every: float = 5.0,
                    tiers: bool = False, full_every_s: float = FULL_EVERY_S) -> dict[str, Publisher]:
    # No history tiers unless asked: each writer re-reads its node's 1-hour stream on start, and a
    # prefilled 1,000-node cluster would read ~150 MB of it at once. The full snapshot on the agents'
    # cadence (every ``full_every_s``, every ``FULL_EVERY_WANTED_S`` while a reader wants it), as real agents
    # publish it.
    return {h: Publisher(client, h, interval_s, hist_every_s=every, key=sim.keys.get(h), tiers=tiers,
                         full_every_s=full_every_s, wanted_every_s=FULL_EVERY_WANTED_S) for h in sim.own_hosts}


def publish(client: Any, sim: SimCluster, now: float, publishers: dict[str, Publisher]) -> int:
    """One tick of every node plus the cluster payloads, in ONE pipeline. Returns the payload bytes written
    (``Publisher.publish``: full snapshots when due, briefs, digests, seals, history, cluster payloads). Redis
    errors propagate to the caller, who backs off.

    On a Redis Cluster (``store.sharded``) a MULTI cannot span slots: signing nodes get one MULTI each (a
    node's keys share its slot: ``wire`` hash-tags them by host), and the node index, cluster payloads and
    energy ledgers go in one plain pipeline beside them, which redis-py splits per shard. Unsigned nodes
    need no MULTI, so their one plain pipeline already works there."""
    ticks, cluster = sim.step(now)
    if sim.keys and store.sharded(client):
        return _publish_per_node(client, sim, now, publishers, ticks, cluster)
    # Signing nodes: one MULTI, so no reader pairs a node's payload of this tick with its seal of the last.
    p = client.pipeline(transaction=bool(sim.keys))
    total = 0
    pubs = []
    for i, (snap, hist) in enumerate(ticks):
        pub = _publisher(client, sim, publishers, snap.host)
        total += pub.publish(snap, hist, cluster=cluster if i == 0 else None, pipe=p)
        pubs.append(pub)
    _energy(sim, ticks, now, p)
    write_summaries(sim, ticks, publishers, now, p)
    res = p.execute()
    for pub in pubs:  # each learns whether a reader wants its full snapshot (its PTTL in this pipeline)
        pub.saw(res)
    return total


def write_summaries(sim: SimCluster, ticks: list[tuple[schema.NodeSnapshot, schema.HistPoint]],
                    publishers: dict[str, Publisher], now: float, pipe: Any) -> int:
    """This tick's nodes folded per bucket (``read.summary.fold``: from the digests their publishers just made, GPU
    columns from their snapshots) and sealed (``control.summary.seal``), SET with PX = 3 intervals in ``pipe``;
    buckets without a node are not written. Returns the bytes written (0 when ``sim`` writes none: no key, asked
    not to, or fewer than ``sim.summaries_from`` nodes in the whole cluster)."""
    key = sim.summary_key
    if not sim.summaries or key is None or len(sim.hosts) < sim.summaries_from:
        return 0
    sim.summary_seq += 1
    views = [NodeView(snap.host, "up", snap=snap, digest=publishers[snap.host].last_digest) for snap, _ in ticks]
    px = int(max(MIN_SUMMARY_PX_S, SUMMARY_PX_INTERVALS * sim.interval_s) * 1000)
    total = 0
    for bucket, group in enumerate(by_bucket(views)):
        if not group:
            continue
        summary = fold(group, bucket, sim.summary_folder, now, seq=sim.summary_seq, interval_s=sim.interval_s)
        try:
            data = seal(summary, key)
        except SummaryTooLarge as e:  # not with simulated data; said, and the bucket's digests are read instead
            log.warning("bucket summary not written: %s", e)
            continue
        pipe.set(summary_key(bucket), data, px=px)
        total += len(data)
    return total


#: A summary lives this many of its intervals (as a digest does: 3), at least MIN_SUMMARY_PX_S.
SUMMARY_PX_INTERVALS = 3.0
MIN_SUMMARY_PX_S = 2.0


def _publish_per_node(client: Any, sim: SimCluster, now: float, publishers: dict[str, Publisher],
                      ticks: list[tuple[schema.NodeSnapshot, schema.HistPoint]],
                      cluster: list[schema.ClusterPayload]) -> int:
    """``publish`` on a Redis Cluster with signing nodes: one round trip per node (its MULTI), one for the rest."""
    shared = client.pipeline(transaction=False)
    total = 0
    for i, (snap, hist) in enumerate(ticks):
        multi = client.pipeline(transaction=True)
        pub = _publisher(client, sim, publishers, snap.host)
        total += pub.publish(snap, hist, cluster=cluster if i == 0 else None, pipe=multi, shared=shared)
        pub.saw(multi.execute())
    _energy(sim, ticks, now, shared)
    write_summaries(sim, ticks, publishers, now, shared)
    shared.execute()
    return total


def _publisher(client: Any, sim: SimCluster, publishers: dict[str, Publisher], host: str) -> Publisher:
    pub = publishers.get(host)
    if pub is None:
        pub = publishers[host] = Publisher(client, host, sim.interval_s, key=sim.keys.get(host), tiers=False,
                                           full_every_s=FULL_EVERY_S, wanted_every_s=FULL_EVERY_WANTED_S)
    return pub


def _energy(sim: SimCluster, ticks: list[tuple[schema.NodeSnapshot, schema.HistPoint]], now: float, pipe: Any) -> None:
    """Each node's energy ledger, as its agent keeps it (agents/energy.py), written in the tick's pipeline."""
    ledgers = sim.energy_ledgers
    for snap, _ in ticks:
        if not snap.gpus:
            continue
        led = ledgers.get(snap.host)
        if led is None:
            led = ledgers[snap.host] = Ledger(snap.host)
        led.observe(snap)
        if led.due(now):
            pipe.set(wire.energy_key(snap.host), wire.pack(wire.encode(led.payload(now)), "energy"), px=KEY_TTL_MS)
            led.saved(now)


def prefill_history(client: Any, sim: SimCluster, now: float, seconds: float = 3600, every: float = 5,
                    progress: Callable[[int, int], None] | None = None) -> int:
    """Run the model through the last ``seconds`` before ``now`` and write one history point per
    node every ``every`` seconds, so the demo's plots are full at once. Returns points written.

    A fresh sim starts ``seconds`` ago; one that already ran continues from where it stands.
    Capped at PREFILL_MAX_POINTS in all: a 1,000-node cluster gets the last minutes, not an hour.
    ``progress(done, total)`` is called after each simulated step (the demo's start-up notice).
    """
    from clustertop import wire

    n = max(1, len(sim.hosts))
    steps = int(seconds // every)
    steps = max(0, min(steps, PREFILL_MAX_POINTS // n))
    if steps == 0:
        return 0
    t = now - steps * every
    if sim.last_ts is None:
        sim.start_ts = t if sim.start_ts is None else min(sim.start_ts, t)
    elif sim.last_ts > t:
        t = sim.last_ts
    written = 0
    total = max(1, int((now - t + every - 1e-6) // every))
    done = 0
    p = client.pipeline(transaction=False)
    while t < now - 1e-6:
        ticks, _ = sim.step(t)
        for snap, hist in ticks:
            # Auto ids ("*"): explicit ones from simulated time could collide with the ids the
            # server then gives live ticks; readers order by HistPoint.ts anyway.
            p.xadd(wire.hist_key(snap.host), {"d": wire.pack(wire.encode(hist), "hist")}, maxlen=wire.HIST_MAXLEN,
                   approximate=True)
            written += 1
        if len(p) >= 5000:
            p.execute()
        t += every
        done += 1
        if progress is not None:
            progress(min(done, total), total)
    p.execute()
    return written


#: How long the demo's simulator waits for the screen's first frame before it starts filling the store anyway
#: (a screen that never says so, such as the wall, costs at most this much).
STARTUP_HOLD_S = 2.0


class Startup:
    """The demo's start-up, for the screen to say while it runs: the dashboard opens at once and the
    simulator fills the store behind it (an hour of history, then the first live tick).

    ``text()`` is None once the first live tick is in; ``error`` says why it stopped, if it did."""

    def __init__(self, nodes: int, history_s: float, every_s: float = 5.0) -> None:
        self.nodes = nodes
        self.history_s = history_s
        self.every_s = every_s
        self.done = 0
        self.total = 0
        self.error: str | None = None
        self.live = threading.Event()
        #: Set by the screen once it has drawn its first frame: the simulation (CPU-bound, in a thread of
        #: the same process) waits for it, at most STARTUP_HOLD_S, so it does not slow that frame down.
        self.go = threading.Event()

    def step(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def text(self) -> str | None:
        if self.error is not None:
            return f"demo simulator failed to start: {self.error}"
        if self.live.is_set():
            return None
        pct = 100 * self.done // self.total if self.total else 0
        # The span prefill_history settled on (a big cluster gets minutes, not the hour asked for).
        span = self.total * self.every_s if self.total else self.history_s
        return (f"demo: simulating the last {span / 60:.0f} min of {self.nodes:,} nodes "
                f"(history for the trends) ... {pct} %")


def start_thread(client_factory: Callable[[], Any], seed: int, nodes: int | None, interval_s: float,
                 stop: threading.Event, sim: SimCluster | None = None,
                 publishers: dict[str, Publisher] | None = None,
                 clock: Callable[[], float] = time.time, startup: Startup | None = None,
                 each_tick: Callable[[Any, float], None] | None = None) -> threading.Thread:
    """The demo's simulator: publishes a tick every ``interval_s`` until ``stop`` is set.

    Pass ``sim`` (and its ``publishers``) to continue a cluster that ``prefill_history`` or a first
    ``publish`` already ran. ``startup``: first the history (``prefill_s`` of it) and the first tick, in
    this thread, its progress there for the screen; the dashboard need not wait for any of it.
    ``each_tick(client, now)`` runs after every tick (the demo's simulated agents' command loop)."""
    model = sim if sim is not None else SimCluster(seed=seed, nodes=nodes)
    model.interval_s = interval_s

    def loop() -> None:
        client = client_factory()
        pubs = publishers if publishers is not None else make_publishers(model, client, interval_s)
        if startup is not None:
            startup.go.wait(STARTUP_HOLD_S)
            try:
                t = clock()
                prefill_history(client, model, t, seconds=startup.history_s, progress=startup.step)
                publish(client, model, max(t, model.last_ts or 0.0), pubs)
            except Exception as e:  # said on the screen, not a silent empty demo
                startup.error = f"{type(e).__name__}: {e}"
                log.exception("demo start-up failed")
                return
            startup.live.set()
        delay = 0.0
        while not stop.is_set():
            try:
                now = max(clock(), model.last_ts or 0.0)
                publish(client, model, now, pubs)
                if each_tick is not None:
                    each_tick(client, now)
                delay = 0.0
            except Exception as e:  # never let the demo's data source die silently
                delay = min(10.0, max(0.5, delay * 2))
                log.warning("simulator tick failed: %s: %s", type(e).__name__, e)
            stop.wait(delay or interval_s)

    th = threading.Thread(target=loop, name="clustertop-sim", daemon=True)
    th.start()
    return th


def part_buckets(hosts: list[str], parts: int) -> list[list[int]]:
    """The buckets each of ``parts`` parts simulates: the buckets that hold a host, dealt in turn (at most one
    part per such bucket: ``run`` asks for no more parts than that)."""
    held = sorted({bucket_of(h) for h in hosts})
    return [held[i::parts] for i in range(parts)]


#: A finite run (``--ticks N``) that cannot reach the store for this long exits 1 (``--give-up`` overrides);
#: a run without ``--ticks`` is a daemon and retries for ever, backing off up to 10 s.
GIVE_UP_S = 30.0


def run(args: Any) -> int:
    """`clustertop simulate --redis URL --nodes N --seed S --interval I [--gpus-per-node G]
    [--duration S | --ticks K] [--procs P] [--give-up S]`."""
    if not args.redis:
        print("clustertop simulate: no store: give --redis URL (or set CLUSTERTOP_REDIS)", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("clustertop simulate: --interval must be above 0", file=sys.stderr)
        return 2
    procs = getattr(args, "procs", 1) or 1
    if procs < 1:
        print("clustertop simulate: --procs must be at least 1", file=sys.stderr)
        return 2
    hosts = SimCluster(seed=args.seed, nodes=args.nodes).hosts
    procs = min(procs, len({bucket_of(h) for h in hosts}), BUCKETS)  # a part is whole buckets: none without a node
    if procs == 1:
        return _run_part(args, None, time.time())
    return _run_parts(args, procs)


def _run_parts(args: Any, procs: int) -> int:
    """``--procs P``: P forked processes, part i of P each (``SimCluster(part=...)``), all on one time grid
    from ``t0`` so their shared models step alike. Exit status: the worst of theirs."""
    import multiprocessing

    t0 = time.time()
    ctx = multiprocessing.get_context("fork")  # nothing connected yet: each part opens its own client
    kids = [ctx.Process(target=_part_main, args=(args, (i, procs), t0), name=f"clustertop-sim-{i}")
            for i in range(procs)]
    for k in kids:
        k.start()
    try:
        for k in kids:
            k.join()
    except KeyboardInterrupt:  # the parts got the SIGINT too (same process group): wait for their summaries
        for k in kids:
            k.join(5)
            if k.is_alive():
                k.terminate()
        return 130
    codes = [k.exitcode or 0 for k in kids]
    failed = [i for i, c in enumerate(codes) if c != 0]
    if failed:
        print(f"clustertop simulate: {len(failed)} of {procs} parts failed (part "
              f"{', '.join(str(i + 1) for i in failed)})", file=sys.stderr)
        return max(c if c > 0 else 1 for c in codes)  # killed by a signal (negative): 1
    return 0


def _part_main(args: Any, part: tuple[int, int], t0: float) -> None:
    sys.exit(_run_part(args, part, t0))


def _summary_signer(args: Any, sim: SimCluster) -> str:
    """Set up ``sim``'s bucket summaries from ``--summary-key FILE`` (a private key, as ``clustertop keygen`` writes
    it; the folder is its NAME, as enrolled in readers' known_nodes) and ``--no-summaries``; says what it does."""
    if getattr(args, "no_summaries", False):
        sim.summaries = False
        return "none (--no-summaries)"
    path = getattr(args, "summary_key", None)
    if path:
        sim.summary_key = signing.load_private(path)
        sim.summary_folder = os.path.basename(path).removesuffix(".key")
        sim.summaries_from = 0  # asked for: whatever the cluster's size
    if not sim.summaries:
        return "none"
    if sim.summary_key is None:
        return "none (no --summary-key: unsigned summaries would be refused)"
    return f"signed as {sim.summary_folder}"


def _run_part(args: Any, part: tuple[int, int] | None, t0: float) -> int:
    from clustertop.store import connect, redact
    from clustertop.store.resp import errors as store_errors

    client = connect(args.redis, args.redis_password_file, args.redis_ca_file)
    sim = SimCluster(seed=args.seed, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                     start_ts=t0 if part is not None else None, part=part)
    sim.interval_s = interval = args.interval
    summaries = _summary_signer(args, sim)
    full_every = getattr(args, "full_every", None)
    pubs = make_publishers(sim, client, interval, full_every_s=FULL_EVERY_S if full_every is None else full_every)
    url = redact(args.redis)
    tag = "" if part is None else f"part {part[0] + 1}/{part[1]}: "
    give_up = GIVE_UP_S if getattr(args, "give_up", None) is None else args.give_up
    failures = (*store_errors(), OSError)

    def say(msg: str) -> None:  # one write a line: the parts share one stderr
        sys.stderr.write(f"{tag}{msg}\n")
        sys.stderr.flush()

    whole = f"{len(sim.own_hosts)} nodes" if part is None else \
        f"{len(sim.own_hosts)} of {len(sim.hosts)} nodes ({len(part_buckets(sim.hosts, part[1])[part[0]])} buckets)"
    say(f"simulating {whole} (seed {args.seed}) into {url} every {interval:g} s; bucket summaries: {summaries}")
    started = time.monotonic()
    ticks = 0
    backoff = 0.0
    down_since: float | None = None
    last_error = ""
    next_tick = time.monotonic()
    grid = 0  # parts: tick n is at t0 + n * interval, the same instants in every part
    try:
        while True:
            if args.ticks is not None and ticks >= args.ticks:
                break
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
            try:
                if part is None:
                    now = max(time.time(), sim.last_ts or 0.0)
                else:
                    # Behind by more than a tick (a slow tick, an outage): skip to the grid point just passed.
                    grid = max(grid, int((time.time() - t0) / interval))
                    now = t0 + grid * interval
                nbytes = publish(client, sim, now, pubs)
                ticks += 1
                grid += 1
                if ticks == 1:
                    # The model's static parts now live for the whole run: keep the cyclic GC from
                    # re-walking them every collection (a few ms a tick at 1,000 nodes).
                    gc.freeze()
                if down_since is not None:
                    say(f"store reachable again after {time.monotonic() - down_since:.0f} s")
                    down_since = None
                backoff = 0.0
                log.debug("tick %d: %d bytes", ticks, nbytes)
                if part is None:
                    next_tick += interval
                    time.sleep(max(0.0, next_tick - time.monotonic()))
                else:
                    time.sleep(max(0.0, t0 + grid * interval - time.time()))
            except failures as e:
                last_error = f"{type(e).__name__}: {e}"
                if down_since is None:  # say it once per outage, not once per retry
                    down_since = time.monotonic()
                    limit = f" for up to {give_up:g} s" if args.ticks is not None else ""
                    say(f"store {url} unreachable ({last_error}); retrying with backoff{limit}")
                down_s = time.monotonic() - down_since
                if args.ticks is not None and down_s >= give_up:
                    say(f"giving up: store {url} unreachable for {down_s:.0f} s ({last_error}); "
                        f"published {ticks} of {args.ticks} ticks")
                    return 1
                backoff = min(10.0, max(0.5, backoff * 2))
                if args.ticks is not None:
                    backoff = min(backoff, max(0.0, give_up - down_s) + 0.01)  # try once more at the limit
                time.sleep(backoff)
                next_tick = time.monotonic()
    except KeyboardInterrupt:
        say(f"interrupted: published {ticks} ticks of {len(sim.own_hosts)} nodes")
        return 130
    if down_since is not None:  # --duration ran out during an outage: the run did not do its job
        say(f"stopped after {args.duration:g} s with the store {url} unreachable for "
            f"{time.monotonic() - down_since:.0f} s ({last_error}); published {ticks} ticks")
        return 1
    say(f"published {ticks} ticks of {len(sim.own_hosts)} nodes")
    return 0


__all__ = ["SimCluster", "Startup", "publish", "prefill_history", "start_thread", "run", "make_publishers", "MIB"]
