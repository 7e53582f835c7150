"""One user's work (clustertop.read.people.find), pure: NodeViews built from tests/support/builders.py, the
pods' and workers' payloads as the collectors' structs, the energy through read.energy.windows."""

from __future__ import annotations

import math

from clustertop.read import people
from clustertop.read.energy import windows
from clustertop.read.model import NodeView
from clustertop.wire import schema
from tests.support import builders as b
from tests.support.hostile import ABSURD_INTS

GIB = b.GIB
UID = "4f1c2a9e-0b7d-4c3e-9a55-2d6b8e1f0c77"
CID = "ab" * 32
EVIL = "\u202eevil\x1b[31m"  # a user name is node text like any other


def k8s() -> schema.ClusterPayload:
    pod = schema.K8sPod(namespace="ml", name="train-a-7d9f-x2", node="gpu-a", phase="Running", gpus=2,
                        owner_kind="ReplicaSet", owner="train-a-7d9f", uid=UID)
    other = schema.K8sPod(namespace="ml", name="someone-else", node="gpu-a", phase="Running", gpus=1, uid="u-2")
    return schema.ClusterPayload(name="kubernetes", source_host="gpu-b", ts=b.NOW, ok=True,
                                 kubernetes=schema.Kubernetes(pods=[pod, other]))


def celery() -> schema.ClusterPayload:
    w = schema.Worker(name="w1@gpu-a", host="gpu-a", active=[
        schema.WorkerTask(id="t-1", name="pipeline.resize", runtime_s=12.0),
        schema.WorkerTask(id="t-2", name="pipeline.report")])
    idle = schema.Worker(name="w2@gpu-b", host="gpu-b", active=[schema.WorkerTask(id="t-9", name="not.hers")])
    return schema.ClusterPayload(name="celery", source_host="gpu-b", ts=b.NOW, ok=True,
                                 queues=schema.Queues(workers=[w, idle]))


def gpu_a() -> schema.NodeSnapshot:
    in_pod = schema.Owner(kind="pod", pod_uid=UID)  # as collectors.owner parses it: the uid only
    in_ctr = schema.Owner(kind="container", name=CID[:12], container_id=CID)
    worker = schema.Owner(kind="celery", name="w1@%h")  # `celery worker -n w1@%h`: Celery expands %h itself
    g0 = b.gpu(0, procs=[schema.GpuProc(pid=10, used_mem_bytes=6 * GIB, user="alice", cmdline="python train.py",
                                        owner=in_pod),
                         schema.GpuProc(pid=11, used_mem_bytes=2 * GIB, user="bob", cmdline="python other.py")])
    g1 = b.gpu(1, procs=[schema.GpuProc(pid=12, used_mem_bytes=None, user="alice", name="infer", owner=in_ctr)])
    procs = [schema.Proc(pid=10, user="alice", cmdline="python train.py", cpu_pct=300.0, owner=in_pod),
             schema.Proc(pid=13, user="alice", cmdline="celery -A pipeline worker -n w1@%h", cpu_pct=50.0, owner=worker),
             schema.Proc(pid=20, user="bob", cmdline="bash", cpu_pct=1.0)]
    snap = b.node("gpu-a", gpus=[g0, g1], procs=procs)
    snap.containers = schema.Containers(containers=[schema.Container(id=CID, name="infer-svc", state="running",
                                                                     template="infer")])
    snap.tasks = [schema.Task(id="task-1", template="sweep", pid=12, state="running", job="j7", rank=0),
                  schema.Task(id="task-2", template="sweep", pid=20, state="running"),  # bob's
                  schema.Task(id="task-3", template="sweep", pid=10, state="exited")]  # over: not held now
    return snap


def views() -> list[NodeView]:
    stale = b.node("gpu-s", gpus=[b.gpu(0, procs=[b.gpu_proc(30, user="alice", mem_gib=1.0)])], procs=[])
    down = b.node("gpu-d", gpus=[b.gpu(0, procs=[b.gpu_proc(40, user="alice")])])
    blind = b.node("gpu-n", gpus=[])
    blind.system = None  # no host collector: its processes are unknown, not absent
    return [NodeView("gpu-a", "up", snap=gpu_a()), NodeView("gpu-s", "stale", snap=stale),
            NodeView("gpu-d", "down", snap=down), NodeView("gpu-n", "up", snap=blind), NodeView("gpu-x", "down")]


def test_a_users_work_with_pods_containers_tasks_and_celery_joined_through_their_processes() -> None:
    w = people.find("alice", views(), {"kubernetes": k8s(), "celery": celery()})
    got = [(i.kind, i.host, i.name, i.pid) for i in w.items]
    assert got == [
        ("gpu-process", "gpu-a", "python train.py", 10), ("gpu-process", "gpu-a", "infer", 12),
        ("gpu-process", "gpu-s", "python train.py --epochs 90", 30),
        ("process", "gpu-a", "python train.py", 10), ("process", "gpu-a", "celery -A pipeline worker -n w1@%h", 13),
        ("pod", "gpu-a", "ml/train-a-7d9f-x2", None),
        ("container", "gpu-a", "infer-svc", None),
        ("task", "gpu-a", "sweep", 12),
        ("celery-task", "gpu-a", "pipeline.resize", None), ("celery-task", "gpu-a", "pipeline.report", None)]
    by = {(i.kind, i.pid, i.name): i for i in w.items}
    g10 = by[("gpu-process", 10, "python train.py")]
    assert (g10.gpu, g10.gpu_uuid, g10.vram_bytes, g10.owner) == (0, "GPU-00000000", 6 * GIB, "pod " + UID)
    pod = by[("pod", None, "ml/train-a-7d9f-x2")]
    assert (pod.gpus, pod.state, pod.owner, pod.ident, pod.via) == (2, "Running", "ReplicaSet train-a-7d9f", UID,
                                                                  "gpu-a pid 10")
    ctr = by[("container", None, "infer-svc")]
    assert (ctr.ident, ctr.state, ctr.owner, ctr.via) == (CID, "running", "template infer", "gpu-a pid 12")
    task = by[("task", 12, "sweep")]
    assert (task.ident, task.owner, task.via) == ("task-1", "job j7 rank 0", "gpu-a pid 12")
    assert by[("celery-task", None, "pipeline.resize")].owner == "worker w1@gpu-a"
    assert by[("gpu-process", 30, "python train.py --epochs 90")].node_state == "stale"
    # GPUs held: the cards her processes are on; VRAM summed where known, the unknown counted, not zero.
    assert w.gpus == [("gpu-a", 0), ("gpu-a", 1), ("gpu-s", 0)]
    assert (w.vram_bytes, w.vram_unknown) == (7 * GIB, 1)
    assert w.nodes == 3 and w.no_procs == ["gpu-n"]  # the down nodes are not searched
    assert not w.energy_read and w.energy_hour is None


def test_a_namespace_keeps_its_pods_processes_and_counts_the_rest() -> None:
    """``:ns ml``: only alice's processes in ml's pods and what joins through them; the others counted by why,
    a process listed both as a GPU process and a Proc counted once."""
    views_ = views()
    extra = b.node("gpu-k", gpus=[b.gpu(0, procs=[schema.GpuProc(pid=50, user="alice", name="lost",
                                                                 owner=schema.Owner(kind="pod", pod_uid="gone"))])],
                   procs=[schema.Proc(pid=51, user="alice", name="web", owner=schema.Owner(kind="pod", pod_uid="u-9"))])
    pods = k8s()
    assert pods.kubernetes is not None
    pods.kubernetes.pods.append(schema.K8sPod(namespace="web", name="front", node="gpu-k", uid="u-9"))
    views_.append(NodeView("gpu-k", "up", snap=extra))
    w = people.find("alice", views_, {"kubernetes": pods, "celery": celery()}, namespace="ml")
    assert [(i.kind, i.host, i.pid) for i in w.items] == [
        ("gpu-process", "gpu-a", 10), ("process", "gpu-a", 10), ("pod", "gpu-a", None)]
    assert w.namespace == "ml"
    # gpu-a: 12 (container) and 13 (celery worker); gpu-s: 30 (no owner) -> no pod; 50 unknown pod; 51 web's.
    assert w.hidden == {"no pod": 3, "unknown pod": 1, "other namespace": 1}
    assert w.gpus == [("gpu-a", 0)] and (w.vram_bytes, w.vram_unknown) == (6 * GIB, 0)  # only what is shown
    web = people.find("alice", views_, {"kubernetes": pods}, namespace="web")
    assert [(i.kind, i.pid, i.name) for i in web.items] == [("process", 51, "web"), ("pod", None, "web/front")]
    assert web.hidden == {"no pod": 3, "unknown pod": 1, "other namespace": 1}  # pid 10 is ml's
    empty = people.find("alice", views_, {"kubernetes": pods}, namespace="nobody")
    assert empty.items == [] and sum(empty.hidden.values()) == 6
    # No namespace: nothing hidden, everything as before.
    assert people.find("alice", views_, {"kubernetes": pods}).hidden == {}


def test_bob_gets_his_own_and_nothing_of_alices() -> None:
    w = people.find("bob", views(), {"kubernetes": k8s(), "celery": celery()})
    assert [(i.kind, i.pid) for i in w.items] == [("gpu-process", 11), ("process", 20), ("task", 20)]
    assert w.gpus == [("gpu-a", 0)] and w.vram_bytes == 2 * GIB


def test_exact_names_or_a_numeric_uid_only() -> None:
    snap = b.node("n1", gpus=[b.gpu(0, procs=[schema.GpuProc(pid=5, used_mem_bytes=GIB, uid=1001)])],
                  procs=[schema.Proc(pid=5, uid=1001), schema.Proc(pid=6, user="alice", uid=1000)])
    nv = [NodeView("n1", "up", snap=snap)]
    assert [(i.kind, i.pid) for i in people.find("1001", nv, {}).items] == [("gpu-process", 5), ("process", 5)]
    assert [i.pid for i in people.find("1000", nv, {}).items] == [6]
    for nobody in ("Alice", "ali", "alice ", "", "\u0661\u0660\u0660\u0660"):  # case, prefix, space, Arabic-digit uid
        w = people.find(nobody, nv, {})
        assert w.items == [] and w.gpus == [] and w.vram_bytes == 0, nobody


def test_hostile_names_and_figures_stay_data() -> None:
    big = "x" * (1 << 20)
    procs = [schema.GpuProc(pid=i, used_mem_bytes=v, user=EVIL, cmdline=big) for i, v in enumerate(ABSURD_INTS, 1)]
    snap = b.node(EVIL, gpus=[b.gpu(0, procs=procs)], procs=[schema.Proc(pid=1, user=EVIL, cpu_pct=math.nan,
                                                                          rss_bytes=2**64 - 1, owner=schema.Owner(
                                                                              kind="pod", pod_uid="\x00" * 40))])
    w = people.find(EVIL, [NodeView(EVIL, "up", snap=snap)], {"kubernetes": k8s()})
    gp = sorted((i for i in w.items if i.kind == "gpu-process"), key=lambda i: i.pid or 0)
    assert len(gp) == len(ABSURD_INTS) and all(i.name == big for i in gp)  # unescaped here: printing escapes
    # 2**64 - 1, 2**63 - 1, negative: garbage, unknown; 2**32 and 10**15 are plausible byte counts.
    assert [i.vram_bytes for i in gp] == [None, None, None, None, 2**32, 10**15]
    assert (w.vram_bytes, w.vram_unknown) == (2**32 + 10**15, 4)
    p = next(i for i in w.items if i.kind == "process")
    assert (p.cpu_pct, p.rss_bytes) == (None, None)
    assert not any(i.kind == "pod" for i in w.items)  # an unknown uid names no pod


def test_too_many_items_are_counted_not_listed() -> None:
    n = people.MAX_ITEMS + 5
    snap = b.node("n1", gpus=[], procs=[schema.Proc(pid=i, user="alice") for i in range(n)])
    w = people.find("alice", [NodeView("n1", "up", snap=snap)], {})
    assert len(w.items) == people.MAX_ITEMS and w.omitted == 5


def test_energy_from_the_ledgers_user_subject() -> None:
    now = b.NOW
    use = [schema.EnergyUse(kind="user", name="alice", joules=7.2e6, gpu_s=7200.0),
           schema.EnergyUse(kind="user", name="uid 1001", joules=3.6e6, gpu_s=3600.0),
           schema.EnergyUse(kind="user", name="bob", joules=1.0, gpu_s=1.0)]
    led = schema.EnergyLedger(host="n1", ts=now, recent={int(now) - 100: use}, hours={int(now) - 1000: use})
    w = people.find("alice", [], {}, windows([led], now))
    assert w.energy_read and w.energy_hour is not None and w.energy_day is not None
    assert (w.energy_hour.kwh, w.energy_day.gpu_hours) == (2.0, 2.0)
    w = people.find("1001", [], {}, windows([led], now))  # a uid without a name, as the ledger writes it
    assert w.energy_day is not None and w.energy_day.kwh == 1.0
    w = people.find("carol", [], {}, windows([led], now))
    assert w.energy_read and w.energy_hour is None  # read, and none charged to her
