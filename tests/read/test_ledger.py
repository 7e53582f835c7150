"""The GPU ledger: capacity vs allocated vs busy per node and cluster, and the two flags over time.

Inputs are wire structs as the agents and the kubernetes collector publish them; the clock is an
argument, so "idle for 15 minutes" is a sequence of updates, not a wait.
"""

from __future__ import annotations

from clustertop.read.ledger import Flag, LedgerSettings, LedgerTracker, match_hosts, update_from_state
from clustertop.read.reader import ClusterState, NodeView
from clustertop.wire import schema

T0 = 1_750_000_000.0
UID_A = "0b2b2c4e-1111-4a4a-8b8b-000000000001"
UID_B = "0b2b2c4e-2222-4a4a-8b8b-000000000002"
UID_GONE = "0b2b2c4e-3333-4a4a-8b8b-000000000003"


def proc(pid: int, uid: str | None, name: str = "python", user: str = "alice") -> schema.GpuProc:
    owner = (schema.Owner(kind="pod", pod_uid=uid, name="p", namespace="ml") if uid
             else schema.Owner(kind="user", name=user))
    return schema.GpuProc(pid=pid, name=name, user=user, owner=owner)


def gpu(index: int, util: int | None, procs: list[schema.GpuProc] | None) -> schema.Gpu:
    return schema.Gpu(index=index, util_pct=util, procs=procs)


def snap(host: str, gpus: list[schema.Gpu] | None, ts: float = T0) -> schema.NodeSnapshot:
    return schema.NodeSnapshot(host=host, ts=ts, gpus=gpus)


def k8s(pods: list[schema.K8sPod], nodes: list[schema.K8sNode] | None = None) -> schema.Kubernetes:
    nodes = nodes if nodes is not None else [
        schema.K8sNode(name="tower-1", gpu_capacity=2, gpu_allocatable=2, gpu_allocated=2),
        schema.K8sNode(name="tower-2", gpu_capacity=2, gpu_allocatable=2, gpu_allocated=1, unschedulable=True),
    ]
    return schema.Kubernetes(nodes=nodes, pods=pods)


def pod(name: str, uid: str, node: str | None, gpus: int, phase: str = "Running") -> schema.K8sPod:
    return schema.K8sPod(namespace="ml", name=name, uid=uid, node=node, gpus=gpus, phase=phase)


PODS = [pod("train-a", UID_A, "tower-1", 2), pod("train-b", UID_B, "tower-2", 1),
        pod("done", UID_GONE, "tower-2", 1, phase="Succeeded"), pod("waiting", "u-w", None, 4, phase="Pending")]


def test_rows_count_capacity_allocated_busy_per_node_and_cluster() -> None:
    snaps = [snap("tower-1", [gpu(0, 95, [proc(10, UID_A)]), gpu(1, 90, [proc(11, UID_A)])]),
             snap("tower-2", [gpu(0, 0, []), gpu(1, 3, [])]),
             snap("arm-1", [])]  # an agent with no GPUs and no Kubernetes node
    led = LedgerTracker().update(k8s(PODS), snaps, T0)
    rows = {r.node: r for r in led.nodes}
    assert [r.node for r in led.nodes] == ["arm-1", "tower-1", "tower-2"]
    assert (rows["tower-1"].capacity, rows["tower-1"].allocated, rows["tower-1"].busy) == (2, 2, 2)
    assert (rows["tower-2"].capacity, rows["tower-2"].allocated, rows["tower-2"].busy) == (2, 1, 0)
    assert rows["tower-2"].cordoned and not rows["tower-1"].cordoned
    assert rows["arm-1"].in_kubernetes is False and rows["arm-1"].capacity is None and rows["arm-1"].busy == 0
    c = led.cluster
    assert (c.capacity, c.allocatable, c.allocated, c.gpus_seen, c.busy) == (4, 4, 3, 4, 2)
    # Only pods holding GPUs: the Succeeded one freed its GPU, the Pending one holds none yet.
    assert sorted(p.name for p in led.pods) == ["train-a", "train-b"]
    use = {p.name: p for p in led.pods}
    assert use["train-a"].gpu_indices == [0, 1] and use["train-a"].util_pct == 95.0 and use["train-a"].idle is False
    assert use["train-b"].gpu_indices == [] and use["train-b"].idle is True
    assert led.flags == []  # nothing has lasted long enough yet


def test_unknown_stays_unknown_never_zero() -> None:
    # tower-1's agent is missing, tower-2 has no GPU data (NVML failed): busy is N/A, not 0.
    led = LedgerTracker().update(k8s(PODS), [snap("tower-2", None)], T0)
    rows = {r.node: r for r in led.nodes}
    assert rows["tower-1"].has_agent is False and rows["tower-1"].busy is None and rows["tower-1"].gpus_seen is None
    assert rows["tower-2"].has_agent is True and rows["tower-2"].busy is None
    assert led.cluster.busy is None and led.cluster.capacity == 4
    assert all(p.idle is None for p in led.pods)
    # Util unknown on every GPU: busy unknown too.
    led = LedgerTracker().update(k8s(PODS), [snap("tower-1", [gpu(0, None, []), gpu(1, None, [])])], T0)
    assert {r.node: r for r in led.nodes}["tower-1"].busy is None
    # No Kubernetes payload at all: the agents' rows still count.
    led = LedgerTracker().update(None, [snap("tower-1", [gpu(0, 50, [])])], T0)
    assert led.cluster.capacity is None and led.cluster.busy == 1 and led.pods == []


def test_idle_allocated_flag_needs_the_idle_time_and_clears_when_busy() -> None:
    tr = LedgerTracker(LedgerSettings(idle_below_pct=5, idle_after_s=600, unowned_after_s=60))

    def at(t: float, util: int) -> list[Flag]:
        snaps = [snap("tower-1", [gpu(0, util, [proc(10, UID_A)]), gpu(1, util, [proc(11, UID_A)])], ts=t),
                 snap("tower-2", [gpu(0, 0, []), gpu(1, 0, [])], ts=t)]
        return tr.update(k8s(PODS), snaps, t).flags

    assert at(T0, 2) == []
    assert at(T0 + 599, 1) == []
    flags = at(T0 + 600, 0)
    # train-a (procs on its 2 GPUs, idle) and train-b (holds 1 GPU, no process anywhere), both idle 10 min.
    by_pod = {f.pod: f for f in flags}
    assert set(by_pod) == {"ml/train-a", "ml/train-b"}
    a, b = by_pod["ml/train-a"], by_pod["ml/train-b"]
    assert a.kind == "idle-allocated" and a.since_ts == T0 and a.duration_s == 600 and a.gpu_indices == [0, 1]
    assert a.message == "pod ml/train-a holds 2 GPUs on tower-1 but they have been idle (<5% util) for 10 min"
    assert b.message == "pod ml/train-b holds 1 GPU on tower-2 but has run nothing on any GPU for 10 min"
    led = tr.update(k8s(PODS), [snap("tower-1", [gpu(0, 0, [proc(10, UID_A)]), gpu(1, 0, [proc(11, UID_A)])]),
                                snap("tower-2", [gpu(0, 0, []), gpu(1, 0, [])])], T0 + 601)
    assert {r.node: r.idle_allocated for r in led.nodes} == {"tower-1": 2, "tower-2": 1}
    assert led.cluster.idle_allocated == 3
    # One busy refresh resets train-a's clock; train-b keeps its own.
    flags = at(T0 + 700, 50)
    assert [f.pod for f in flags] == ["ml/train-b"]
    assert at(T0 + 701, 0) and [f.pod for f in at(T0 + 702, 0)] == ["ml/train-b"]
    assert [f.pod for f in at(T0 + 701 + 600, 0)] == ["ml/train-b", "ml/train-a"]  # longest first


def test_busy_gpu_no_pod_owns_is_flagged_only_on_kubernetes_nodes() -> None:
    tr = LedgerTracker(LedgerSettings(unowned_after_s=60, idle_after_s=10**6))
    rogue = [proc(4242, None, name="python3", user="bob")]
    snaps = [snap("tower-1", [gpu(0, 95, [proc(10, UID_A)]), gpu(1, 88, [proc(11, UID_A)])]),
             snap("tower-2", [gpu(0, 87, rogue), gpu(1, 0, [])]),
             snap("standalone", [gpu(0, 99, rogue)])]  # not a Kubernetes node: nobody's business
    assert tr.update(k8s(PODS), snaps, T0).flags == []
    led = tr.update(k8s(PODS), snaps, T0 + 61)
    assert [(f.kind, f.node, f.gpu_indices) for f in led.flags] == [("unowned-busy", "tower-2", [0])]
    assert led.flags[0].message == "tower-2 GPU 0 busy (87% util) for 61 s but no pod owns it: pid 4242 python3 (bob)"
    assert {r.node: r.unowned_busy for r in led.nodes}["tower-2"] == 1 and led.cluster.unowned_busy == 1
    # The process stops: the flag and its timer go.
    snaps[1] = snap("tower-2", [gpu(0, 0, []), gpu(1, 0, [])])
    assert tr.update(k8s(PODS), snaps, T0 + 62).flags == []
    snaps[1] = snap("tower-2", [gpu(0, 87, rogue), gpu(1, 0, [])])
    assert tr.update(k8s(PODS), snaps, T0 + 63).flags == []  # starts counting again
    # A pod-owned process whose pod we cannot see (another namespace) is still a pod's: no flag.
    snaps[1] = snap("tower-2", [gpu(0, 87, [proc(5, "other-uid")]), gpu(1, 0, [])])
    assert tr.update(k8s(PODS), snaps, T0 + 1000).flags == []
    # Without process lists ownership is unknown: no flag either way.
    snaps[1] = snap("tower-2", [gpu(0, 87, None), gpu(1, 0, None)])
    led = tr.update(k8s(PODS), snaps, T0 + 2000)
    assert led.flags == [] and {p.name: p.idle for p in led.pods}["train-b"] is None


def test_state_stays_bounded_to_what_is_current() -> None:
    tr = LedgerTracker(LedgerSettings(idle_after_s=60, unowned_after_s=60))
    for i in range(200):
        uid = f"uid-{i}"
        pods = [pod(f"p{i}", uid, "tower-1", 1)]
        tr.update(k8s(pods), [snap("tower-1", [gpu(0, 0, []), gpu(1, 50 + i % 2, [proc(i, None)])])], T0 + i)
    assert len(tr._idle_since) == 1 and len(tr._unowned_since) == 1


def test_host_names_match_short_names_and_update_from_reader_state() -> None:
    assert match_hosts(["tower-1.lab.example", "tower-2"], ["tower-1", "tower-2", "x"]) == {
        "tower-1": "tower-1.lab.example", "tower-2": "tower-2"}
    # Ambiguous short names are not guessed.
    assert match_hosts(["gpu.a.example", "gpu.b.example"], ["gpu"]) == {}
    nodes = [schema.K8sNode(name="tower-1.lab.example", gpu_capacity=2, gpu_allocatable=2, gpu_allocated=2)]
    pods = [pod("train-a", UID_A, "tower-1.lab.example", 2)]
    payload = schema.ClusterPayload(name="kubernetes", ok=True, kubernetes=k8s(pods, nodes))
    state = ClusterState(ts=T0, cluster={"kubernetes": payload}, nodes=[
        NodeView(host="tower-1", state="up", snap=snap("tower-1", [gpu(0, 70, [proc(1, UID_A)]), gpu(1, 0, [])])),
        NodeView(host="tower-9", state="down", snap=snap("tower-9", [gpu(0, 99, [])]))])
    led = update_from_state(LedgerTracker(), state)
    assert [r.node for r in led.nodes] == ["tower-1.lab.example"]  # the down node's old data is not counted
    assert led.nodes[0].busy == 1 and led.pods[0].gpu_indices == [0] and led.pods[0].idle is False
