"""The demo's Kubernetes, Celery and Dask control (sim.control.SimControl) on the running simulated cluster:
each action changes what the next read shows, as the real controller's next move would.

The demo's own backend (cli.modes.start_demo: embedded store, the real simulator thread running the queued
calls between ticks); the effects are checked in the published payloads, through the real Reader.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from clustertop.cli import modes
from clustertop.control.kubernetes import K8sControlError
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from clustertop.sim.control import SimControl
from clustertop.sim.simulate import SimCluster
from clustertop.wire import schema


def _read(backend: modes.Backend) -> Any:
    return Reader(backend.client_factory(), wants=Wants()).read()


def _k8s(backend: modes.Backend) -> schema.Kubernetes:
    k = _read(backend).cluster["kubernetes"].kubernetes
    assert k is not None
    return k  # type: ignore[no-any-return]


def _eventually(cond: Callable[[], bool], what: str) -> None:
    deadline = time.time() + 5  # a bound that turns a hang into a readable failure, not a timing check
    while not cond():
        assert time.time() < deadline, what
        time.sleep(0.05)


def _gpu_pids(backend: modes.Backend, host: str) -> set[int]:
    node = _read(backend).node(host)
    assert node is not None and node.snap is not None
    return {p.pid for g in node.snap.gpus for p in (g.procs or [])}


def test_deleting_a_job_pod_ends_its_process_and_the_job_makes_a_new_pod(demo: modes.Backend) -> None:
    ctl = demo.demo_control
    pod = next(p for p in _k8s(demo).pods if p.phase == "Running" and p.owner_kind == "Job")
    assert pod.node is not None
    # Its GPU process, from the node's full snapshot: the first read asks for it (a want), and the full
    # snapshot read may predate the pod, so the process is looked for until a fresh one lands.
    pids: list[int] = []

    def found() -> bool:
        node = _read(demo).node(pod.node)
        pids[:] = [p.pid for g in (node.snap.gpus if node and node.snap else []) for p in (g.procs or [])
                   if p.owner and p.owner.pod_uid == pod.uid]
        return bool(pids)

    _eventually(found, "the pod's GPU process on its node")
    pid = pids[0]
    imp = ctl.k8s.delete_pod(pod.namespace, pod.name, uid=pod.uid)
    assert imp.owner_kind == "Job" and "the Job will recreate it" in imp.consequence and "simulated" in imp.consequence
    # Gone from the next read, with its GPU process; the Job has a new pod (new name), pending or running.
    _eventually(lambda: all(p.name != pod.name for p in _k8s(demo).pods), "the deleted pod still listed")
    _eventually(lambda: pid not in _gpu_pids(demo, pod.node), "its GPU process still on the node")

    def replacements() -> list[schema.K8sPod]:
        return [p for p in _k8s(demo).pods if p.owner == pod.owner and p.namespace == pod.namespace]

    # The Job's new pod: looked for until the simulator has made it (under load a read may come first).
    _eventually(lambda: len(replacements()) == 1, "the Job's replacement pod")
    again = replacements()
    assert again[0].name != pod.name and again[0].uid != pod.uid
    assert again[0].phase in ("Pending", "Running")
    # The name now means nothing: a second delete is a 404, not a silent success.
    with pytest.raises(K8sControlError, match="not found"):
        ctl.k8s.delete_pod(pod.namespace, pod.name)


def test_deleting_a_deployment_pod_brings_a_replacement_and_scaling_changes_the_count(demo: modes.Backend) -> None:
    ctl = demo.demo_control
    pods = [p for p in _k8s(demo).pods if p.namespace == "inference"]
    assert len(pods) == 2 and all(p.owner_kind == "ReplicaSet" for p in pods)
    ctl.k8s.delete_pod("inference", pods[0].name)
    _eventually(lambda: pods[0].name not in {p.name for p in _k8s(demo).pods}, "the deleted replica still listed")
    now = [p for p in _k8s(demo).pods if p.namespace == "inference"]
    assert len(now) == 2 and pods[1] in now  # the other replica untouched, a new one instead of the deleted
    assert ctl.k8s.scale_deployment("inference", "embedding-api", 4) == (2, 4)

    def deployment() -> schema.K8sWorkload:
        return next(w for w in _k8s(demo).workloads if w.kind == "Deployment" and w.name == "embedding-api")

    _eventually(lambda: deployment().replicas == 4, "the Deployment's replicas unchanged")
    assert len([p for p in _k8s(demo).pods if p.namespace == "inference"]) == 4
    assert ctl.k8s.scale_deployment("inference", "embedding-api", 0) == (4, 0)
    _eventually(lambda: not [p for p in _k8s(demo).pods if p.namespace == "inference"], "replicas left at 0")
    with pytest.raises(K8sControlError, match="not found"):
        ctl.k8s.scale_deployment("inference", "nope", 1)
    with pytest.raises(K8sControlError, match="replicas"):
        ctl.k8s.scale_deployment("inference", "embedding-api", -1)


def test_deleting_a_job_takes_all_its_pods(demo: modes.Backend) -> None:
    ctl = demo.demo_control
    job = next(w for w in _k8s(demo).workloads if w.kind == "Job" and w.active)
    imp = ctl.k8s.delete_job(job.namespace, job.name)
    assert imp.pods and imp.pods >= 1
    _eventually(lambda: all(p.owner != job.name for p in _k8s(demo).pods), "a pod of the deleted Job still listed")
    assert all(w.name != job.name for w in _k8s(demo).workloads if w.kind == "Job")


def test_revoke_drops_a_queued_task_and_terminate_ends_a_running_one(demo: modes.Backend) -> None:
    ctl = demo.demo_control
    # What is queued is in the broker only (the payload shows depths): ask the model, in its own thread.
    # The last of the queue: the workers take from the front between ticks.
    queued = ctl.call(lambda now: [t.id for ts in ctl.sim.queues.backlog.values() for t in ts][-1:])
    assert queued, "the demo opens with a grid search queued"
    r = ctl.celery.revoke(queued[0])
    assert r.ok and r.data["dropped"] == 1 and "flagged as revoked" in r.text
    assert ctl.call(lambda now: all(t.id != queued[0] for ts in ctl.sim.queues.backlog.values() for t in ts))
    workers = _read(demo).cluster["celery"].queues.workers
    task = next(t for w in workers for t in w.active or [])
    r = ctl.celery.revoke(task.id, terminate=True)
    assert r.ok and r.data["terminated"] == 1

    def running() -> set[str]:
        return {t.id for w in _read(demo).cluster["celery"].queues.workers for t in w.active or []}

    _eventually(lambda: task.id not in running(), "the terminated task still active")


def test_grid_search_group_progress_and_retry_of_a_failed_trial(demo: modes.Backend) -> None:
    """The grid searches are saved groups: "N of M done, K failed" moves as trials end; a failed trial's
    retry (its arguments from the simulated backend) queues a new task with the same arguments."""
    def newest() -> schema.CeleryGroup:
        q = _read(demo).cluster["celery"].queues
        assert q.celery_groups is not None and q.celery_groups.groups
        return q.celery_groups.groups[0]

    g = newest()
    assert g.total and g.done is not None and g.failed is not None and g.done <= g.total and g.failed <= g.done
    _eventually(lambda: (newest().done or 0) > (g.done or 0), "the grid search's group never advanced")
    ctl = demo.demo_control

    def failed_task() -> schema.CeleryTask | None:
        h = _read(demo).cluster["celery"].queues.task_history[0]
        return next((t for t in h.recent or [] if t.state == "FAILURE"), None)

    ctl.call(lambda now: ctl.sim.queues.recent.append(  # one trial that failed, so the test need not wait for one
        (ctl.sim.queues.backlog["gridsearch"][-1], "celery@x", now, 1.0, True)))
    _eventually(lambda: failed_task() is not None, "no failed trial in the task history")
    t = failed_task()
    assert t is not None and t.traceback and "FloatingPointError" in t.traceback
    plan = ctl.celery.retry_plan(t.id)
    assert plan.name == "pipeline.tasks.evaluate_params" and plan.queue == "gridsearch" and "lr" in plan.args[0]
    r = ctl.celery.retry(plan)
    assert r.ok and r.data["task_id"] != t.id and r.data["from"] == t.id
    queued = ctl.call(lambda now: [x for x in ctl.sim.queues.backlog["gridsearch"] if x.id == r.data["task_id"]])
    assert queued and queued[0].params == plan.args[0] and queued[0].group is None
    refused = ctl.celery.retry_plan("no-such-task")
    assert not refused.ok and "no result" in refused.text


def test_pool_resize_and_dask_retire_show_in_the_next_read(demo: modes.Backend) -> None:
    ctl = demo.demo_control
    w = _read(demo).cluster["celery"].queues.workers[0]
    assert ctl.celery.pool_grow(w.name, 2).ok

    def size() -> int | None:
        return next(x.pool_size for x in _read(demo).cluster["celery"].queues.workers if x.name == w.name)

    _eventually(lambda: size() == (w.pool_size or 0) + 2, "the pool did not grow")
    r = ctl.celery.pool_shrink(w.name, 10_000)
    assert not r.ok and "cannot shrink" in r.text
    assert not ctl.celery.pool_grow("celery@nobody", 1).ok
    dask = _read(demo).cluster["dask"].queues.workers
    r = ctl.retire_worker(dask[0].name)
    assert r.ok and r.data["retired"] == [dask[0].name]
    _eventually(lambda: dask[0].name not in {x.name for x in _read(demo).cluster["dask"].queues.workers},
                "the retired worker still listed")
    assert not ctl.retire_worker(dask[0].name).ok  # once gone, nothing to retire


def test_a_call_nobody_runs_fails_and_never_runs_later() -> None:
    sim = SimCluster(seed=3, nodes=3)
    sim.step(1000.0)
    ctl = SimControl(sim, wait_s=0.2)  # no simulator thread: nobody runs the queue
    ran: list[float] = []
    with pytest.raises(RuntimeError, match="did not answer"):
        ctl.call(ran.append)
    assert ctl.run_pending(None, 1001.0) == 0 and ran == []  # the cancelled call is dropped, not done late


def _served(ctl: SimControl, fn: Callable[[], Any]) -> Any:
    """``fn`` (a SimControl action) answered by this thread playing the simulator's (``run_pending``)."""
    import threading

    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    while t.is_alive():
        ctl.run_pending(None, time.time())
        time.sleep(0.005)
    return out[0]


@pytest.mark.parametrize("parent_used", [int(61.4 * 2**30), None], ids=["known", "unknown"])
def test_a_flattened_clone_uses_what_its_parent_used_or_unknown(parent_used: int | None) -> None:
    sim = SimCluster(seed=3, nodes=3)
    sim.step(1000.0)  # built at the first step
    ctl = SimControl(sim, wait_s=5)
    images = {f"{i.pool}/{i.name}": i for i in sim.ceph.images}
    golden = images["rbd/db-golden"]
    clone = next(i for i in sim.ceph.images if i.parent == "rbd/db-golden@base")
    golden.used_bytes = parent_used
    own = clone.used_bytes
    assert own is not None
    r = _served(ctl, lambda: ctl.ceph.flatten(f"{clone.pool}/{clone.name}"))
    assert r.ok and clone.parent is None
    # A partial sum would pass for the whole: with the parent's figure unknown, so is the clone's.
    assert clone.used_bytes == (own + parent_used if parent_used is not None else None)
