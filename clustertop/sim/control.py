"""Provides the demo's Kubernetes, Celery, Dask and Ceph control: the dashboard's actions, acting on the simulated
cluster instead of an API server, a broker, a scheduler or a ceph-mgr.

``SimControl.k8s`` and ``SimControl.celery`` answer the methods the dashboard calls on
``control.kubernetes.K8sControl`` and ``control.celery.CeleryControl`` (same arguments, same result types:
``Impact``, ``Result``), and ``retire_worker`` the one of ``control.dask``. What each does to the model is
what the real controller would do next: a deleted pod is gone with its GPU process, and its Job or
ReplicaSet makes a new one (new name); a scaled Deployment gets or loses pods; a revoked task leaves its
queue; a retired Dask worker leaves the scheduler; an RBD snapshot, clone, flatten, cluster flag or OSD
out/in changes the simulated Ceph (``SimCeph``: ``control.ceph.CephControl``'s methods, Ceph's refusals). Nothing here opens a kubeconfig, a broker or a socket.

Every call runs in the simulator's thread, between ticks (``run_pending``, from ``start_thread``'s
``each_tick``): the dashboard's worker thread queues it and waits for the answer, so an action and the
model's step never race. The dashboard audits these actions as it audits the real ones (``Actions.execute``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import queue
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from clustertop.control.celery import Result, RetryPlan
from clustertop.control.kubernetes import RECREATES, Impact, K8sControlError, _check_name
from clustertop.sim.nodes import Job, _uuid
from clustertop.sim.services import _suffix
from clustertop.wire import schema

T = TypeVar("T")

#: How long an action waits for the simulator thread (it runs queued calls once per tick).
WAIT_S = 10.0
SIMULATED = " (simulated cluster)"


class SimControl:
    """The demo's stand-in for the operator's Kubernetes, Celery and Dask clients."""

    def __init__(self, sim: Any, wait_s: float = WAIT_S) -> None:
        self.sim = sim
        self.wait_s = wait_s
        self._calls: queue.SimpleQueue[tuple[Callable[[float], Any], concurrent.futures.Future[Any]]] = \
            queue.SimpleQueue()
        self._now = 0.0
        self.k8s = SimKubernetes(self)
        self.celery = SimCelery(self)
        self.ceph = SimCeph(self)

    def call(self, fn: Callable[[float], T]) -> T:
        """Run ``fn(now)`` in the simulator's thread; its result, or its exception, here."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((fn, fut))
        try:
            return fut.result(self.wait_s)  # type: ignore[no-any-return]
        except concurrent.futures.TimeoutError:
            fut.cancel()  # never done later, behind the operator's back
            raise RuntimeError(f"the simulator did not answer within {self.wait_s:g} s (demo stopping?)") from None

    def run_pending(self, client: Any, now: float) -> int:
        """The simulator thread's side: run every queued call (``each_tick``). Returns how many ran."""
        n = 0
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return n
            if not fut.set_running_or_notify_cancel():
                continue
            n += 1
            try:
                fut.set_result(fn(now))
            except Exception as e:  # noqa: BLE001 - the caller gets it, the simulator goes on
                fut.set_exception(e)

    def retire_worker(self, worker: str) -> Result:
        """``control.dask.retire_worker`` on the simulated scheduler: the worker leaves, its queued work stays."""
        def act(now: float) -> Result:
            q = self.sim.queues
            left = [w for w in q.dask if w[1] != worker]
            if len(left) == len(q.dask):
                return Result(False, f"retire {worker}: the scheduler retired nothing (unknown worker){SIMULATED}",
                              {"retired": []})
            q.dask = left
            return Result(True, f"retired {worker}{SIMULATED}", {"retired": [worker]})

        return self.call(act)


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------


class SimKubernetes:
    """``K8sControl``'s methods the dashboard uses, on ``SimCluster.k8s`` and its jobs."""

    def __init__(self, ctl: SimControl) -> None:
        self.ctl = ctl
        self._rs: dict[tuple[str, str], str] = {}  # (namespace, deployment) -> its ReplicaSet's name

    def close(self) -> None:
        pass

    def allowed_actions(self, namespace: str | None = None) -> dict[str, bool]:
        # The demo's operator may do everything the simulated cluster can do; Job templates and logs it has not.
        return {"delete_pod": True, "delete_job": True, "scale_deployment": True, "create_job": False,
                "pod_logs": False, "rollout": False, "nodes": False}  # no ReplicaSet history in the model: no undo/restart

    # -- where a pod is in the model ------------------------------------------------------------

    def _find(self, namespace: str, name: str) -> tuple[str, Any]:
        sim = self.ctl.sim
        for p in sim.k8s.static:
            if p.namespace == namespace and p.name == name:
                return "static", p
        for j in sim.running:
            if j.namespace == namespace and j.name == name:
                return "running", j
        for j in sim.pending:
            if j.namespace == namespace and j.name == name:
                return "pending", j
        for f in sim.k8s.finished:
            if f[0].namespace == namespace and f[0].name == name:
                return "finished", f
        raise K8sControlError(f"pod {namespace}/{name}: not found (404){SIMULATED}", status=404)

    def _impact(self, namespace: str, name: str) -> Impact:
        _check_name("namespace", namespace)
        _check_name("pod", name)
        where, obj = self._find(namespace, name)
        if where == "static":
            p: schema.K8sPod = obj
            imp = Impact(kind="Pod", namespace=namespace, name=name, phase=p.phase, restarts=p.restarts, gpus=p.gpus,
                         node=p.node, owner_kind=p.owner_kind, owner=p.owner, uid=p.uid, recreated=True,
                         consequence=RECREATES["ReplicaSet"] + " (a Deployment's pods come back as new pods with "
                                                               "new names)")
        else:
            job: Job = obj[0] if where == "finished" else obj
            phase = {"running": "Running", "pending": "Pending"}.get(where) or obj[2]
            imp = Impact(kind="Pod", namespace=namespace, name=name, phase=phase, restarts=0, gpus=job.gpus_wanted,
                         node=job.host or None, owner_kind="Job", owner=job.job_name, uid=job.uid,
                         recreated=where != "finished", consequence=RECREATES["Job"])
        if imp.phase == "Running":
            imp.consequence += "; its running processes are killed"
        imp.consequence += SIMULATED
        return imp

    def preview_delete_pod(self, namespace: str, name: str) -> Impact:
        return self.ctl.call(lambda now: self._impact(namespace, name))

    def delete_pod(self, namespace: str, name: str, uid: str | None = None,
                   grace_period_s: int | None = None) -> Impact:
        def act(now: float) -> Impact:
            imp = self._impact(namespace, name)
            if uid is not None and imp.uid != uid:
                raise K8sControlError(f"delete pod {namespace}/{name}: the name now means another pod (409)"
                                      f"{SIMULATED}", status=409)
            self._delete(namespace, name, now)
            return imp

        return self.ctl.call(act)

    def _delete(self, namespace: str, name: str, now: float) -> None:
        sim = self.ctl.sim
        where, obj = self._find(namespace, name)
        if where == "static":
            # The ReplicaSet makes a replacement at once: same node here, a new name, a fresh start.
            sim.k8s.static.remove(obj)
            sim.k8s.static.append(self._new_replica(obj.namespace, obj.owner, obj.node, now))
        elif where == "running":
            self._stop(obj, now)
            sim.pending.append(self._retry(obj, now))  # the Job controller: a new pod, waiting for GPUs
        elif where == "pending":
            sim.pending.remove(obj)
            sim.pending.append(self._retry(obj, now))
        else:
            sim.k8s.finished.remove(obj)  # a finished Job's pod: nothing makes it again

    def _stop(self, job: Job, now: float) -> None:
        """The pod's process ends now: its GPUs free (as at a job's end in ``SimCluster._schedule``, without the
        "Succeeded" pod a finished run leaves behind)."""
        sim = self.ctl.sim
        sim.running.remove(job)
        node = sim.by_host[job.host]
        for gi in job.gpus:
            g = node.gpus[gi]
            if g.job is job:
                g.job = None
                g.free_at = now + sim.rng.uniform(15, 60)

    def _retry(self, job: Job, now: float) -> Job:
        rng = self.ctl.sim.rng
        uid = _uuid(rng)
        owner = schema.Owner(kind="pod", pod_uid=uid, container_id=f"{rng.getrandbits(256):064x}")
        new = dataclasses.replace(job, name=f"{job.job_name}-{_suffix(rng)}", uid=uid, owner=owner, pid=0, start=0.0,
                                  end=0.0, gpus=[], host="", created=now, _gpu_proc=None)
        new.gpu_owner = schema.Owner(kind="pod", pod_uid=uid)  # as SimCluster._new_job sets it
        return new

    def _new_replica(self, namespace: str, rs: str | None, node: str | None, now: float) -> schema.K8sPod:
        rng = self.ctl.sim.rng
        return schema.K8sPod(namespace=namespace, name=f"{rs}-{_suffix(rng)}", node=node, phase="Running", restarts=0,
                             created_ts=now, owner_kind="ReplicaSet", owner=rs,
                             uid=_uuid(rng))

    def preview_delete_job(self, namespace: str, name: str) -> Impact:
        return self.ctl.call(lambda now: self._job_impact(namespace, name))

    def _job_pods(self, namespace: str, name: str) -> tuple[list[Job], list[Job], list[Any]]:
        sim = self.ctl.sim
        return ([j for j in sim.running if j.namespace == namespace and j.job_name == name],
                [j for j in sim.pending if j.namespace == namespace and j.job_name == name],
                [f for f in sim.k8s.finished if f[0].namespace == namespace and f[0].job_name == name])

    def _job_impact(self, namespace: str, name: str) -> Impact:
        _check_name("namespace", namespace)
        _check_name("job", name)
        running, pending, finished = self._job_pods(namespace, name)
        pods = len(running) + len(pending) + len(finished)
        if not pods:
            raise K8sControlError(f"job {namespace}/{name}: not found (404){SIMULATED}", status=404)
        consequence = (f"its {pods} pod(s) are deleted with it" + (f", {len(running)} of them running" if running
                                                                    else "")
                       + "; not managed by anything: gone for good")
        if finished and not running and not pending:
            consequence = "finished job: " + consequence
        return Impact(kind="Job", namespace=namespace, name=name, pods=pods, running=len(running),
                      gpus=sum(j.gpus_wanted for j in running), consequence=consequence + SIMULATED)

    def delete_job(self, namespace: str, name: str, uid: str | None = None) -> Impact:
        def act(now: float) -> Impact:
            imp = self._job_impact(namespace, name)
            running, pending, finished = self._job_pods(namespace, name)
            for j in running:
                self._stop(j, now)
            sim = self.ctl.sim
            sim.pending = [j for j in sim.pending if j not in pending]
            sim.k8s.finished = [f for f in sim.k8s.finished if f not in finished]
            return imp

        return self.ctl.call(act)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> tuple[int | None, int]:
        _check_name("namespace", namespace)
        _check_name("deployment", name)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise K8sControlError(f"replicas must be a whole number >= 0, got {replicas!r}")

        def act(now: float) -> tuple[int | None, int]:
            k8s = self.ctl.sim.k8s
            if not self._rs:  # every Deployment has pods when the model is built: learn their ReplicaSets once
                self._rs = {(d.namespace, d.name): p.owner for d in k8s.deployments for p in k8s.static
                            if p.namespace == d.namespace and p.owner and p.owner.startswith(f"{d.name}-")}
            dep = next((d for d in k8s.deployments if d.namespace == namespace and d.name == name), None)
            rs = self._rs.get((namespace, name))
            if dep is None or rs is None:
                raise K8sControlError(f"deployment {namespace}/{name}: not found (404){SIMULATED}", status=404)
            before = dep.replicas
            mine = [p for p in k8s.static if p.namespace == namespace and p.owner == rs]
            for p in sorted(mine, key=lambda p: -(p.created_ts or 0))[:max(0, len(mine) - replicas)]:
                k8s.static.remove(p)  # scale down: the newest go first, as the ReplicaSet controller picks
            nodes = [n.name for n in k8s.nodes] or [None]
            for i in range(len(mine), replicas):
                k8s.static.append(self._new_replica(namespace, rs, nodes[i % len(nodes)], now))
            k8s.deployments[k8s.deployments.index(dep)] = msgspec.structs.replace(dep, replicas=replicas, ready=replicas)
            return before, replicas

        return self.ctl.call(act)

    # -- what the demo does not have ------------------------------------------------------------

    def pod_logs(self, namespace: str, name: str, container: str | None = None, tail_lines: int = 200) -> str:
        raise K8sControlError(f"logs unavailable for {namespace}/{name}: simulated pods write no logs{SIMULATED}")

    def prepare_job(self, template_path: str, params: dict[str, Any], namespace: str | None = None) -> Any:
        raise K8sControlError("the demo's simulated Kubernetes takes no Job templates")

    def create_job(self, plan: Any) -> Any:
        raise K8sControlError("the demo's simulated Kubernetes takes no Job templates")


# ---------------------------------------------------------------------------------------------
# Celery
# ---------------------------------------------------------------------------------------------


class SimCelery:
    """``CeleryControl``'s revoke and pool methods, on ``SimCluster.queues``; replies worded as Celery's."""

    def __init__(self, ctl: SimControl) -> None:
        self.ctl = ctl

    def close(self) -> None:
        pass

    def revoke(self, task_id: str, terminate: bool = False, signal: str = "SIGTERM",
               workers: list[str] | None = None) -> Result:
        what = f"{'terminate' if terminate else 'revoke'} task {task_id}"

        def act(now: float) -> Result:
            q = self.ctl.sim.queues
            if not q.workers:
                return Result(False, f"{what}: no worker replied")
            dropped = 0
            for name in q.backlog:
                kept = [t for t in q.backlog[name] if t.id != task_id]
                for t in q.backlog[name]:
                    if t.id == task_id:
                        q.revoked(t)
                dropped += len(q.backlog[name]) - len(kept)
                q.backlog[name] = kept
            killed = 0
            if terminate:
                for w in q.workers:
                    kept = [t for t in w.active if t.id != task_id]
                    for t in w.active:
                        if t.id == task_id:
                            q.revoked(t)
                    killed += len(w.active) - len(kept)
                    w.active = kept
            # Every worker keeps the id in its revoked set and says so, known task or not (as Celery does).
            replies = f"{len(q.workers)} worker(s) replied: tasks flagged as revoked: {task_id}"
            effect = f"{dropped} queued cop{'y' if dropped == 1 else 'ies'} dropped"
            if terminate:
                effect += f", {killed} running cop{'y' if killed == 1 else 'ies'} terminated ({signal})"
            return Result(True, f"{what}: {replies} ({effect}; simulated cluster)",
                          {"dropped": dropped, "terminated": killed})

        return self.ctl.call(act)

    def _pool(self, worker: str, n: int, grow: bool) -> Result:
        what = f"{'grow' if grow else 'shrink'} {worker} pool by {n}"

        def act(now: float) -> Result:
            w = next((w for w in self.ctl.sim.queues.workers if f"celery@{w.host}" == worker), None)
            if w is None:
                return Result(False, f"{what}: no worker replied")
            if not grow and w.pool_size - n < 1:
                return Result(False, f"{what}: {worker}: pool has {w.pool_size} process(es), cannot shrink by {n}"
                                     f"{SIMULATED}")
            w.pool_size += n if grow else -n
            return Result(True, f"{what}: {worker}: pool will {'grow' if grow else 'shrink'} (now "
                                f"{w.pool_size}){SIMULATED}")

        return self.ctl.call(act)

    def pool_grow(self, worker: str, n: int = 1) -> Result:
        return self._pool(worker, n, grow=True)

    def pool_shrink(self, worker: str, n: int = 1) -> Result:
        return self._pool(worker, n, grow=False)

    def retry_plan(self, task_id: str) -> RetryPlan | Result:
        """The simulated result backend keeps every recent task's arguments (as result_extended does)."""
        def act(now: float) -> RetryPlan | Result:
            found = self.ctl.sim.queues.find_ended(task_id)
            if found is None:
                return Result(False, f"retry {task_id}: no result in the backend (not ended yet, expired, or "
                                     f"another backend){SIMULATED}")
            t, failed = found
            from clustertop.sim.services import TASKS

            return RetryPlan(task_id=task_id, name=TASKS[t.queue][0], args=[t.params if t.params else t.args],
                             kwargs={}, queue=t.queue, state="FAILURE" if failed else "SUCCESS")

        return self.ctl.call(act)

    def retry(self, plan: RetryPlan) -> Result:
        """Queue the same task again under a new id (no group: as a real send_task)."""
        def act(now: float) -> Result:
            q = self.ctl.sim.queues
            found = q.find_ended(plan.task_id)
            if found is None or plan.queue not in q.backlog:
                return Result(False, f"retry {plan.task_id}: not sent (task or queue unknown){SIMULATED}")
            old = found[0]
            new = dataclasses.replace(old, id=_uuid(q.hrng), started=0.0, group=None)
            q.backlog[plan.queue].append(new)
            return Result(True, f"retried {plan.name} {plan.task_id} to queue {plan.queue}: new task id {new.id}"
                                f"{SIMULATED}", {"task_id": new.id, "from": plan.task_id})

        return self.ctl.call(act)


# ---------------------------------------------------------------------------------------------
# Ceph
# ---------------------------------------------------------------------------------------------


def _refused(what: str, errno: int, words: str) -> Result:
    # The real client's wording of a mgr refusal (control.ceph._refusal), Ceph's errno and words.
    return Result(False, f"{what}: refused by Ceph (HTTP 400): [errno {errno}] {words}{SIMULATED}")


class SimCeph:
    """``CephControl``'s actions on ``SimCluster.ceph`` (services.CephModel): its RBD images, flags and OSDs.
    Refused where Ceph refuses: an unknown image or snapshot, a name taken, unprotect or delete of a snapshot
    clones use (or a protected one), a clone of an unprotected snapshot, flatten of an image with no parent."""

    def __init__(self, ctl: SimControl) -> None:
        self.ctl = ctl

    def close(self) -> None:
        pass

    def _image(self, spec: str) -> schema.RbdImage | None:
        return next((im for im in self.ctl.sim.ceph.images if f"{im.pool}/{im.name}" == spec), None)

    def _snap(self, spec: str, snap: str) -> tuple[schema.RbdImage | None, schema.RbdSnap | None]:
        im = self._image(spec)
        return im, next((s for s in (im.snapshots or []) if s.name == snap), None) if im is not None else None

    def snap_create(self, spec: str, snap: str) -> Result:
        what = f"created snapshot {spec}@{snap}"

        def act(now: float) -> Result:
            im, s = self._snap(spec, snap)
            if im is None:
                return _refused(what, 2, f"RBD image not found (error opening image {spec})")
            if s is not None:
                return _refused(what, 17, f"RBD image already exists (error creating snapshot {snap} of {spec})")
            model = self.ctl.sim.ceph
            model.snap_ids += 1
            stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            im.snapshots = [*(im.snapshots or []), schema.RbdSnap(name=snap, id=model.snap_ids, size_bytes=im.size_bytes,
                                                                  protected=False, ts=stamp, children=[])]
            return Result(True, what + SIMULATED)

        return self.ctl.call(act)

    def snap_protect(self, spec: str, snap: str, protect: bool = True) -> Result:
        what = f"{'protected' if protect else 'unprotected'} snapshot {spec}@{snap}"

        def act(now: float) -> Result:
            im, s = self._snap(spec, snap)
            if s is None:
                return _refused(what, 2, f"RBD snapshot not found (snapshot {spec}@{snap})")
            if not protect and s.children:
                return _refused(what, 16, f"RBD image is busy (error unprotecting snapshot {spec}@{snap}: "
                                          f"{len(s.children)} clone(s) use it)")
            s.protected = protect
            return Result(True, what + SIMULATED)

        return self.ctl.call(act)

    def snap_remove(self, spec: str, snap: str) -> Result:
        what = f"deleted snapshot {spec}@{snap}"

        def act(now: float) -> Result:
            im, s = self._snap(spec, snap)
            if im is None or s is None:
                return _refused(what, 2, f"RBD snapshot not found (snapshot {spec}@{snap})")
            if s.protected:
                return _refused(what, 16, f"RBD image is busy (error removing snapshot {spec}@{snap}: protected)")
            im.snapshots = [x for x in im.snapshots or [] if x is not s]
            return Result(True, what + SIMULATED)

        return self.ctl.call(act)

    def clone(self, spec: str, snap: str, child: str) -> Result:
        what = f"cloned {spec}@{snap} into {child}"

        def act(now: float) -> Result:
            im, s = self._snap(spec, snap)
            if im is None or s is None:
                return _refused(what, 2, f"RBD snapshot not found (snapshot {spec}@{snap})")
            if not s.protected:
                return _refused(what, 22, f"Invalid argument (error cloning {spec}@{snap}: parent snapshot must "
                                          "be protected)")
            if self._image(child) is not None:
                return _refused(what, 17, f"RBD image already exists (error creating clone {child})")
            pool, _, name = child.rpartition("/")
            s.children = [*(s.children or []), child]
            self.ctl.sim.ceph.images.append(schema.RbdImage(
                pool=pool, name=name, size_bytes=s.size_bytes, used_bytes=0, parent=f"{spec}@{snap}",
                features=list(im.features or []), snapshots=[]))
            return Result(True, what + SIMULATED)

        return self.ctl.call(act)

    def flatten(self, spec: str) -> Result:
        what = f"flattened {spec} (no parent now)"

        def act(now: float) -> Result:
            im = self._image(spec)
            if im is None:
                return _refused(what, 2, f"RBD image not found (error opening image {spec})")
            if not im.parent:
                return _refused(what, 22, f"Invalid argument (error flattening {spec}: image has no parent)")
            p_spec, _, p_snap = im.parent.partition("@")
            _, s = self._snap(p_spec, p_snap)
            if s is not None:
                s.children = [c for c in s.children or [] if c != spec]
            parent = self._image(p_spec)
            # Every object the parent held is copied in: the clone now uses what the parent used. Either
            # figure unknown leaves the sum unknown (None), never a partial sum passing as the whole.
            known = im.used_bytes is not None and parent is not None and parent.used_bytes is not None
            im.used_bytes = im.used_bytes + parent.used_bytes if known else None  # type: ignore[operator,union-attr]
            im.parent = None
            return Result(True, what + SIMULATED)

        return self.ctl.call(act)

    def set_flag(self, flag: str, on: bool) -> Result:
        from clustertop.control.ceph import FLAGS

        what = f"{'set' if on else 'unset'} {flag}"
        if flag not in FLAGS:
            return Result(False, f"{what}: refused: only {', '.join(FLAGS)} can be changed here")

        def act(now: float) -> Result:
            flags = self.ctl.sim.ceph.flags
            if (flag in flags) == on:
                return Result(True, f"{what}: already {'set' if on else 'unset'}, nothing changed{SIMULATED}")
            (flags.add if on else flags.discard)(flag)
            now_set = ", ".join(sorted(flags | {"sortbitwise", "recovery_deletes", "purged_snapdirs"}))
            return Result(True, f"{what}: cluster flags now {now_set}{SIMULATED}", {"flags": sorted(flags)})

        return self.ctl.call(act)

    def osd_mark(self, osd_id: int, action: str) -> Result:
        if action not in ("out", "in"):
            return Result(False, f"osd.{osd_id}: refused: action must be out or in, got {action!r}")
        what = f"marked osd.{osd_id} {action}"

        def act(now: float) -> Result:
            model = self.ctl.sim.ceph
            if osd_id not in model.osd_ids:
                return Result(False, f"{what}: refused: the cluster has no osd.{osd_id}{SIMULATED}")
            (model.out.add if action == "out" else model.out.discard)(osd_id)
            return Result(True, what + SIMULATED)

        return self.ctl.call(act)
