"""Provides the simulated cluster services: Ceph (OSDs that flap), Celery/Dask queues, Kubernetes.

Each model keeps its own state, advances it in ``step`` and builds its schema payload on demand.
The numbers are shaped after real output (the Ceph dashboard API captures in the shared fixtures:
"1 osds down", "Degraded data redundancy: ..." and pg states like "active+undersized+degraded").
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from clustertop.sim.dask_progress import DaskProgress
from clustertop.sim.nodes import GIB, MIB, Job, _uuid
from clustertop.wire import schema

OSD_BYTES = 1_920_383_410_176  # a "1.92 TB" SATA SSD
OBJECT_BYTES = 4 * MIB

# (id, name, pg_num, applications, share of the stored data)
POOLS = (
    (1, ".mgr", 1, ["mgr"], 0.0001),
    (2, "rbd", 256, ["rbd"], 0.34),
    (3, "cephfs_metadata", 32, ["cephfs"], 0.004),
    (4, "cephfs_data", 512, ["cephfs"], 0.6559),
)


class CephModel:
    """30 SSD OSDs across the towers (6 each); one flaps now and then and the PGs recover."""

    def __init__(self, rng: random.Random, osd_hosts: list[tuple[str, list[int]]], mon_hosts: list[str]) -> None:
        self.fsid = _uuid(rng)
        self.osd_host = {osd: host for host, ids in osd_hosts for osd in ids}
        self.osd_ids = [osd for _, ids in osd_hosts for osd in ids]
        self.used_frac = {osd: rng.uniform(0.41, 0.53) for osd in self.osd_ids}
        self.lat = {osd: rng.uniform(0.4, 1.6) for osd in self.osd_ids}
        self.mon_hosts = mon_hosts[:3]
        self.mgr = f"{mon_hosts[0]}.{''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(6))}" \
            if mon_hosts else None
        self.down: dict[int, float] = {}  # osd -> when it comes back
        self.recovery: list[tuple[float, float, int]] = []  # (start, end, pgs) after an OSD returned
        self.read = 80e6
        self.write = 25e6
        self.seq = 0
        self.pgs_total = sum(p[2] for p in POOLS)
        n = max(1, len(self.osd_ids))
        self.pgs_per_osd = round(self.pgs_total * 3 / n)
        self.images = _images(rng)
        # What the operator's actions change (sim/control.py SimCeph): cluster flags, OSDs marked out.
        self.flags: set[str] = set()
        self.out: set[int] = set()
        self.snap_ids = 100  # the next snapshot id

    def flap(self, now: float, rng: random.Random) -> None:
        up = [o for o in self.osd_ids if o not in self.down]
        if up:
            self.down[rng.choice(up)] = now + rng.uniform(40, 150)

    def step(self, now: float, k: float, read_t: float, write_t: float,
             rng: random.Random) -> dict[int, tuple[float, float]]:
        """Advance; return per-OSD (read, write) bytes/s for the OSDs that are running."""
        for osd, back in list(self.down.items()):
            if now >= back:
                del self.down[osd]
                # Peering done, the returning OSD backfills the writes it missed.
                self.recovery.append((back, back + rng.uniform(20, 60), self.pgs_per_osd))
        self.recovery = [r for r in self.recovery if r[1] > now]
        self.read += (read_t - self.read) * k
        self.write += (write_t - self.write) * k
        up = [o for o in self.osd_ids if o not in self.down]
        if not up:
            return {}
        rec = self.recovering_bytes_s(now)
        r = self.read / len(up)
        w = (self.write * 3 + rec) / len(up)  # size-3 pools: every client byte is written thrice
        rnd = rng.random
        return {o: (r * (0.7 + 0.6 * rnd()), w * (0.7 + 0.6 * rnd())) for o in up}

    def recovering_bytes_s(self, now: float) -> float:
        return sum(1.1e8 + 4e7 * ((now * 7) % 1.0) for s, e, _ in self.recovery if s <= now < e)

    def degraded_pgs(self, now: float) -> tuple[int, int]:
        """(undersized+degraded, recovering) PG counts."""
        undersized = min(self.pgs_total, len(self.down) * self.pgs_per_osd)
        recovering = 0
        for s, e, pgs in self.recovery:
            if s <= now < e:
                recovering += max(1, int(pgs * (e - now) / (e - s)))
        return undersized, min(self.pgs_total - undersized, recovering)

    def payload(self, now: float, source_host: str) -> schema.ClusterPayload:
        self.seq += 1
        total = OSD_BYTES * len(self.osd_ids)
        used = int(sum(OSD_BYTES * f for f in self.used_frac.values()))
        stored = used // 3
        objects = stored // OBJECT_BYTES
        undersized, recovering = self.degraded_pgs(now)
        clean = self.pgs_total - undersized - recovering
        pg_states = {"active+clean": clean}
        if undersized:
            pg_states["active+undersized+degraded"] = undersized
        if recovering:
            pg_states["active+recovering+degraded"] = recovering
        bad_pgs = undersized + recovering
        degraded_objs = int(objects * bad_pgs / self.pgs_total)
        checks: list[schema.HealthCheck] = []
        if self.down:
            checks.append(schema.HealthCheck(
                code="OSD_DOWN", severity="HEALTH_WARN", message=f"{len(self.down)} osds down",
                count=len(self.down),
                detail=[f"osd.{o} (root=default,host={self.osd_host[o]}) is down" for o in sorted(self.down)]))
        if bad_pgs:
            copies = objects * 3
            pct = 100.0 * degraded_objs / copies if copies else 0.0
            checks.append(schema.HealthCheck(
                code="PG_DEGRADED", severity="HEALTH_WARN",
                message=f"Degraded data redundancy: {degraded_objs}/{copies} objects degraded ({pct:.3f}%), "
                        f"{bad_pgs} pgs degraded", count=bad_pgs))
        if self.flags:  # as Ceph words it: "noout,norebalance flag(s) set"
            checks.append(schema.HealthCheck(code="OSDMAP_FLAGS", severity="HEALTH_WARN",
                                             message=f"{','.join(sorted(self.flags))} flag(s) set"))
        osds = []
        for o in self.osd_ids:
            is_up = o not in self.down
            frac = self.used_frac[o]
            osds.append(schema.CephOsd(
                id=o, host=self.osd_host[o], up=is_up, in_=o not in self.out, state=["exists", "up"] if is_up else ["exists"],
                device_class="ssd", total_bytes=OSD_BYTES, used_bytes=int(OSD_BYTES * frac),
                pgs=self.pgs_per_osd, commit_latency_ms=round(self.lat[o], 1) if is_up else None,
                apply_latency_ms=round(self.lat[o], 1) if is_up else None))
        avail = (total - used) // 3
        pools = []
        for pid, name, pg_num, apps, share in POOLS:
            p_stored = int(stored * share)
            pools.append(schema.CephPool(
                id=pid, name=name, type="replicated", size=3, min_size=2, pg_num=pg_num, stored_bytes=p_stored,
                used_bytes=p_stored * 3, avail_bytes=avail, percent_used=round(100 * p_stored * 3 / total, 2),
                objects=p_stored // OBJECT_BYTES, applications=apps,
                read_bytes_s=round(self.read * (0.3 if name == "rbd" else 0.7 if name == "cephfs_data" else 0.0)),
                write_bytes_s=round(self.write * (0.45 if name == "rbd" else 0.55 if name == "cephfs_data" else 0.0))))
        ceph = schema.Ceph(
            fsid=self.fsid, status="HEALTH_WARN" if checks else "HEALTH_OK", checks=checks,
            mons=len(self.mon_hosts), mons_quorum=len(self.mon_hosts), mgr_active=self.mgr,
            mgr_standbys=min(1, max(0, len(self.mon_hosts) - 1)), osds_total=len(self.osd_ids),
            osds_up=len(self.osd_ids) - len(self.down), osds_in=len(self.osd_ids) - len(self.out), pgs_total=self.pgs_total,
            pg_states=pg_states, objects=objects, objects_degraded=degraded_objs, objects_misplaced=0,
            objects_unfound=0, total_bytes=total, used_bytes=used, avail_bytes=total - used,
            read_bytes_s=round(self.read), write_bytes_s=round(self.write),
            read_ops_s=round(self.read / 131072), write_ops_s=round(self.write / 65536),
            recovering_bytes_s=round(self.recovering_bytes_s(now)), osds=osds, pools=pools, images=self.images,
            detail_ts=now, url=f"https://{self.mon_hosts[0] if self.mon_hosts else 'ceph'}:8443")
        return schema.ClusterPayload(name="ceph", source_host=source_host, ts=now, seq=self.seq, interval_s=5.0,
                                     ok=True, last_ok_ts=now, ceph=ceph)


def _images(rng: random.Random) -> list[schema.RbdImage]:
    """A golden database image, protected snapshot @base, and copy-on-write clones of it."""
    feats = ["deep-flatten", "exclusive-lock", "fast-diff", "layering", "object-map"]
    clones = [f"db-clone{i}" for i in range(1, 4)]
    golden = schema.RbdImage(
        pool="rbd", name="db-golden", size_bytes=100 * GIB, used_bytes=int(61.4 * GIB), features=feats,
        snapshots=[schema.RbdSnap(name="base", id=4, size_bytes=100 * GIB, protected=True,
                                  ts="2025-11-22T09:05:11Z", children=[f"rbd/{c}" for c in clones])])
    out = [golden]
    for c in clones:
        out.append(schema.RbdImage(pool="rbd", name=c, size_bytes=100 * GIB, used_bytes=int(rng.uniform(0.4, 6) * GIB),
                                   parent="rbd/db-golden@base", features=feats, snapshots=[]))
    out.append(schema.RbdImage(pool="rbd", name="jupyter-home", size_bytes=500 * GIB,
                               used_bytes=int(rng.uniform(180, 260) * GIB), features=feats, snapshots=[]))
    return out


# ---------------------------------------------------------------------------------------------
# Celery on a Redis broker, and a Dask scheduler
# ---------------------------------------------------------------------------------------------

QUEUES = ("default", "gridsearch", "reports")
TASKS = {
    "default": ("pipeline.tasks.ingest_batch", 4.0, 15.0),
    "gridsearch": ("pipeline.tasks.evaluate_params", 20.0, 75.0),
    "reports": ("pipeline.tasks.render_report", 8.0, 30.0),
}


@dataclass(slots=True)
class CeleryTask:
    id: str
    queue: str
    args: str
    duration: float
    started: float = 0.0
    group: str | None = None  # the grid search's group id
    params: dict[str, float | int] | None = None  # the arguments themselves (what a retry re-sends)


@dataclass
class SimGroup:
    """A grid search as a saved Celery group in the result backend: "N of M done, K failed"."""

    id: str
    total: int
    done: int = 0
    failed: int = 0
    revoked: int = 0
    first_ts: float | None = None  # when the collector would have first seen it (the next payload)


#: Share of grid-search trials that fail (a diverging learning rate): the groups' "K failed".
GRID_FAIL = 0.04
GRID_TRACEBACK = ('Traceback (most recent call last):\n  File "/srv/pipeline/tasks.py", line 88, in evaluate_params\n'
                  '    loss = model.fit(params)\n  File "/srv/pipeline/model.py", line 141, in fit\n'
                  '    raise FloatingPointError(f"loss diverged at step {step}")\nFloatingPointError: loss diverged')


@dataclass
class CeleryWorker:
    host: str
    pool_size: int
    active: list[CeleryTask] = field(default_factory=list)


class QueuesModel:
    """Celery workers on the ARM boards drain three queues; a grid search floods one of them."""

    def __init__(self, rng: random.Random, workers: list[tuple[str, int]], dask_hosts: list[tuple[str, str]],
                 broker: str) -> None:
        self.broker = broker
        self.workers = [CeleryWorker(h, n) for h, n in workers]
        self.backlog: dict[str, list[CeleryTask]] = {q: [] for q in QUEUES}
        self.published = {q: 0.0 for q in QUEUES}  # smoothed rates
        self.delivered = {q: 0.0 for q in QUEUES}
        self.dask = [(h, f"tcp://{ip}:{rng.randrange(33000, 45000)}", rng.uniform(1.5, 5) * GIB) for h, ip in dask_hosts]
        self.dask_waiting = 0
        # Per computation progress and the task stream (sim/dask_progress.py: its own rng).
        self.dask_progress = DaskProgress.for_workers([addr for _h, addr, _m in self.dask])
        self.seq = 0
        self.grid_n = 0
        # Task history and groups (what the celery collector reads from the event stream and the result
        # backend), drawn from a stream of their own: the rest of the simulation stays as it was.
        self.hrng = random.Random(f"celery-history:{broker}")
        self.groups: list[SimGroup] = []
        self.recent: deque[tuple[CeleryTask, str, float, float, bool]] = deque(maxlen=40)  # task, worker, end, runtime, failed
        self.counts: dict[str, list[int]] = {}  # task name -> [succeeded, failed]
        self.runtimes: dict[str, deque[float]] = {}

    def _task(self, rng: random.Random, queue: str, args: str) -> CeleryTask:
        _, lo, hi = TASKS[queue]
        return CeleryTask(id=_uuid(rng), queue=queue, args=args, duration=rng.uniform(lo, hi))

    def grid_search(self, rng: random.Random) -> None:
        self.grid_n += 1
        n = rng.randrange(80, 400)  # ~60 pool slots on the ARM boards drain it in 1-5 min
        gid = _uuid(self.hrng)
        self.groups.append(SimGroup(gid, n))
        del self.groups[:-20]  # the collector publishes the 20 newest
        for i in range(n):
            params = {"lr": rng.choice((1e-4, 3e-4, 1e-3, 3e-3)), "depth": rng.randrange(4, 12), "trial": i}
            t = self._task(rng, "gridsearch", f"({params!r},)")
            t.group, t.params = gid, params
            self.backlog["gridsearch"].append(t)
        self.published["gridsearch"] += n / 5.0  # a burst: the rate spikes, then decays

    def dask_graph(self, rng: random.Random) -> None:
        n = rng.randrange(400, 3000)
        self.dask_waiting += n
        self.dask_progress.added(n)

    def step(self, now: float, dt: float, k: float, rng: random.Random) -> dict[str, int]:
        """Advance; return busy pool slots per worker host."""
        arrived = {q: 0 for q in QUEUES}
        if self.workers:
            for q, rate in (("default", 0.35), ("reports", 0.03)):
                n = int(rate * dt + rng.random())
                for _ in range(n):
                    self.backlog[q].append(self._task(rng, q, f"('s3://lab-raw/batch-{rng.randrange(10**6):06d}',)"))
                arrived[q] = n
        done = {q: 0 for q in QUEUES}
        busy: dict[str, int] = {}
        for w in self.workers:
            keep = []
            for t in w.active:
                if now - t.started >= t.duration:
                    done[t.queue] += 1
                    self._ended(t, w.host, now)
                else:
                    keep.append(t)
            w.active = keep
            # Prefetch in queue order: what the -Q list says.
            while len(w.active) < w.pool_size:
                name = next((q for q in QUEUES if self.backlog[q]), None)
                if name is None:
                    break
                t = self.backlog[name].pop(0)
                t.started = now
                w.active.append(t)
            busy[w.host] = len(w.active)
        if dt > 0:
            for q in QUEUES:
                self.published[q] += (arrived[q] / dt - self.published[q]) * k
                self.delivered[q] += (done[q] / dt - self.delivered[q]) * k
        capacity = sum(4 for _ in self.dask) * 2.0 * dt  # ~0.5 s tasks on 4 threads each
        self.dask_progress.step(now, min(self.dask_waiting, int(capacity)))
        self.dask_waiting = max(0, self.dask_waiting - int(capacity))
        return busy

    def _ended(self, t: CeleryTask, host: str, now: float) -> None:
        name = TASKS[t.queue][0]
        failed = t.queue == "gridsearch" and self.hrng.random() < GRID_FAIL
        runtime = round(now - t.started, 3)
        self.recent.append((t, f"celery@{host}", now, runtime, failed))
        c = self.counts.setdefault(name, [0, 0])
        c[1 if failed else 0] += 1
        if not failed:
            self.runtimes.setdefault(name, deque(maxlen=200)).append(runtime)
        g = next((g for g in self.groups if g.id == t.group), None) if t.group else None
        if g is not None:
            g.done += 1
            g.failed += failed

    def revoked(self, t: CeleryTask) -> None:
        """A revoked group member ends REVOKED in the backend: done, not failed."""
        g = next((g for g in self.groups if g.id == t.group), None) if t.group else None
        if g is not None:
            g.done += 1
            g.revoked += 1

    def find_ended(self, task_id: str) -> tuple[CeleryTask, bool] | None:
        """A recently ended task by id, and whether it failed (the demo's retry reads its arguments here)."""
        return next(((t, f) for t, _, _, _, f in self.recent if t.id == task_id), None)

    def history(self, now: float) -> schema.CeleryHistory:
        """Task history as the event stream collector publishes it: counts, percentiles, the 40 newest."""
        stats = []
        for name, (ok, bad) in sorted(self.counts.items(), key=lambda kv: -sum(kv[1])):
            runs = sorted(self.runtimes.get(name, ()))
            stats.append(schema.CeleryTaskStat(
                name=name, succeeded=ok, failed=bad, runtime_p50_s=runs[len(runs) // 2] if runs else None,
                runtime_p95_s=runs[min(len(runs) - 1, round(0.95 * (len(runs) - 1)))] if runs else None))
        recent = [schema.CeleryTask(
            id=t.id, name=TASKS[t.queue][0], state="FAILURE" if failed else "SUCCESS", worker=worker, ts=end,
            runtime_s=None if failed else runtime, args=t.args[:200], kwargs="{}",
            exception="FloatingPointError('loss diverged')" if failed else None,
            traceback=GRID_TRACEBACK if failed else None) for t, worker, end, runtime, failed in reversed(self.recent)]
        return schema.CeleryHistory(broker=self.broker, events=True, window_s=600.0, stats=stats, recent=recent)

    def celery_groups(self, now: float) -> schema.CeleryGroups:
        """The grid searches as the result backend reader publishes saved groups, newest first."""
        out = []
        for g in reversed(self.groups):
            if g.first_ts is None:
                g.first_ts = now
            out.append(schema.CeleryGroup(id=g.id, kind="group", name=TASKS["gridsearch"][0], total=g.total,
                                          done=g.done, failed=g.failed, revoked=g.revoked, ended=g.done >= g.total,
                                          first_ts=g.first_ts))
        return schema.CeleryGroups(backend=self.broker.rsplit("/", 1)[0] + "/1", groups=out)

    def payloads(self, now: float, celery_host: str | None, dask_host: str | None) -> list[schema.ClusterPayload]:
        """One payload per source, as the real collectors publish them: "celery" and "dask"."""
        self.seq += 1
        out = []
        if celery_host is not None:
            queues = []
            for q in QUEUES:
                depth = len(self.backlog[q])
                unacked = sum(1 for w in self.workers for t in w.active if t.queue == q)
                queues.append(schema.Queue(
                    broker=self.broker, name=q, kind="celery-redis", depth=depth, ready=depth, unacked=unacked,
                    consumers=len(self.workers), publish_rate=round(self.published[q], 2),
                    deliver_rate=round(self.delivered[q], 2), growing_unconsumed=bool(depth and not self.workers)))
            workers = [schema.Worker(
                name=f"celery@{w.host}", kind="celery", host=w.host, online=True, last_seen_ts=now,
                pool_size=w.pool_size,
                active=[schema.WorkerTask(id=t.id, name=TASKS[t.queue][0], started_ts=t.started,
                                          runtime_s=round(now - t.started, 1), args=t.args) for t in w.active])
                for w in self.workers]
            out.append(schema.ClusterPayload(
                name="celery", source_host=celery_host, ts=now, seq=self.seq, interval_s=2.0, ok=True,
                last_ok_ts=now, queues=schema.Queues(queues=queues, workers=workers,  # no errors: None, as real
                                                     task_history=[self.history(now)],
                                                     celery_groups=self.celery_groups(now))))
        if dask_host is not None and self.dask:
            workers = []
            processing_total = 0
            for h, addr, mem in self.dask:
                processing = min(8, self.dask_waiting // len(self.dask))
                processing_total += processing
                workers.append(schema.Worker(
                    name=addr, kind="dask", host=h, online=True, last_seen_ts=now, processing=processing,
                    mem_bytes=int(mem + processing * 90 * MIB), mem_limit_bytes=16 * GIB, nthreads=4))
            q = schema.Queues(workers=workers, dask_tasks_processing=processing_total,
                              dask_tasks_waiting=max(0, self.dask_waiting - processing_total),
                              dask_computations=self.dask_progress.computations())
            folded = self.dask_progress.folded(now)
            if folded is not None:  # as collectors/dask.py fills them
                q.dask_stream, q.dask_stream_bucket_s = folded.buckets, folded.bucket_s
                q.dask_stream_from_ts, q.dask_stream_to_ts = folded.from_ts, folded.to_ts
                q.dask_stream_other_workers = folded.other_workers
            out.append(schema.ClusterPayload(
                name="dask", source_host=dask_host, ts=now, seq=self.seq, interval_s=2.0, ok=True, last_ok_ts=now,
                queues=q))
        return out


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------


@dataclass
class K8sNodeInfo:
    name: str
    gpus: int
    cpu_m: int
    mem_bytes: int


STATIC_PODS = (  # (namespace, deployment, replicas)
    ("jupyterhub", "hub", 1),
    ("inference", "embedding-api", 2),
    ("mlflow", "mlflow-server", 1),
)


class KubernetesModel:
    def __init__(self, rng: random.Random, nodes: list[K8sNodeInfo], start: float) -> None:
        self.nodes = nodes
        self.seq = 0
        self.finished: list[tuple[Job, float, str]] = []  # (job, ended, phase), kept a few minutes
        self.static: list[schema.K8sPod] = []
        self.deployments: list[schema.K8sWorkload] = []
        for k, (ns, name, replicas) in enumerate(STATIC_PODS):
            self.deployments.append(schema.K8sWorkload(kind="Deployment", namespace=ns, name=name,
                                                       replicas=replicas, ready=replicas))
            rs = f"{name}-{rng.getrandbits(40):010x}"[:len(name) + 11]
            for r in range(replicas):
                node = nodes[(k + r) % len(nodes)].name if nodes else None
                self.static.append(schema.K8sPod(
                    namespace=ns, name=f"{rs}-{_suffix(rng)}", node=node, phase="Running", restarts=rng.randrange(0, 3),
                    created_ts=start - rng.uniform(2, 30) * 86400, owner_kind="ReplicaSet", owner=rs, uid=_uuid(rng)))

    def job_ended(self, job: Job, now: float) -> None:
        if job.namespace is not None:
            self.finished.append((job, now, "Failed" if job.fails else "Succeeded"))

    def payload(self, now: float, source_host: str, running: list[Job], pending: list[Job]) -> schema.ClusterPayload:
        self.seq += 1
        # Completed pods linger a few minutes, as with ttlSecondsAfterFinished; bounded either way.
        self.finished = [f for f in self.finished if now - f[1] < 300][-40:]
        allocated: dict[str, int] = {}
        pods = list(self.static)
        jobs: list[schema.K8sWorkload] = []
        for job in running:
            allocated[job.host] = allocated.get(job.host, 0) + len(job.gpus)
            pods.append(_pod(job, job.host, "Running", None))
            jobs.append(schema.K8sWorkload(kind="Job", namespace=job.namespace or "", name=job.job_name or job.name,
                                           active=1, succeeded=0, failed=0))
        for job in pending:
            pods.append(_pod(job, None, "Pending", "Unschedulable"))
            jobs.append(schema.K8sWorkload(kind="Job", namespace=job.namespace or "", name=job.job_name or job.name,
                                           active=1, succeeded=0, failed=0))
        for job, _, phase in self.finished:
            pods.append(_pod(job, job.host, phase, "Error" if phase == "Failed" else "Completed"))
            jobs.append(schema.K8sWorkload(kind="Job", namespace=job.namespace or "", name=job.job_name or job.name,
                                           active=0, succeeded=int(phase == "Succeeded"),
                                           failed=int(phase == "Failed")))
        nodes = [schema.K8sNode(name=n.name, ready=True, gpu_capacity=n.gpus, gpu_allocatable=n.gpus,
                                gpu_allocated=allocated.get(n.name, 0), cpu_allocatable_m=n.cpu_m,
                                mem_allocatable_bytes=n.mem_bytes) for n in self.nodes]
        k = schema.Kubernetes(server="https://10.10.0.2:6443", version="v1.29.4", nodes=nodes, pods=pods,
                              workloads=jobs + self.deployments)
        return schema.ClusterPayload(name="kubernetes", source_host=source_host, ts=now, seq=self.seq,
                                     interval_s=5.0, ok=True, last_ok_ts=now, kubernetes=k)


def _pod(job: Job, node: str | None, phase: str, reason: str | None) -> schema.K8sPod:
    return schema.K8sPod(namespace=job.namespace or "", name=job.name, node=node, phase=phase, reason=reason,
                         restarts=0, gpus=job.gpus_wanted, created_ts=job.created, owner_kind="Job",
                         owner=job.job_name, uid=job.uid)


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
