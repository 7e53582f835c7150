"""The pod-naming join (clustertop.read.owners): a GPU process's pod uid, as a node's cgroups give it, named
from the Kubernetes payload. The pods are the real API server's (tests/fixtures/k8s/api/pods.json, recorded
from tests/support/k8s_cluster.py by test_k8s_real.py) through the kubernetes collector's parser; the read is a
real Reader on a real redis-server, the node published by the agent's own Publisher."""

from __future__ import annotations

import json
import time

from clustertop.agents.publisher import Publisher
from clustertop.collectors.kubernetes_parse import parse_pods
from clustertop.collectors.owner import parse_cgroup
from clustertop.read import owners
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.wire import schema
from tests.conftest import FIXTURES


def real_pods() -> list[schema.K8sPod]:
    return parse_pods(json.loads((FIXTURES / "k8s" / "api" / "pods.json").read_text()))


def cgroup_of(uid: str, systemd: bool) -> str:
    """/proc/<pid>/cgroup of a process in pod ``uid`` under kubelet's cgroupfs or systemd driver (v1 hybrid)."""
    cid = "ab" * 32
    if systemd:
        path = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/" \
               f"cri-containerd-{cid}.scope"
    else:
        path = f"/kubepods/besteffort/pod{uid}/{cid}"
    return f"12:memory:{path}\n11:cpu,cpuacct:{path}\n1:name=systemd:{path}\n0::/\n"


def test_a_gpu_process_in_a_real_pod_is_named_on_read(redis_server) -> None:
    pods = real_pods()
    train = next(p for p in pods if p.name == "train-a")
    etl = next(p for p in pods if p.name.startswith("etl-"))
    client = redis_server.client()
    # What a node knows: the uids in its processes' cgroups, nothing else.
    o1, o2 = parse_cgroup(cgroup_of(train.uid or "", False)), parse_cgroup(cgroup_of(etl.uid or "", True))
    assert (o1.kind, o1.pod_uid, o1.name) == ("pod", train.uid, None)
    stranger = schema.Owner(kind="pod", pod_uid="00000000-0000-0000-0000-000000000000")
    snap = schema.NodeSnapshot(host="gpu-a", ts=time.time(), gpus=[schema.Gpu(index=0, procs=[
        schema.GpuProc(pid=10, owner=o1), schema.GpuProc(pid=11, owner=o2), schema.GpuProc(pid=12, owner=stranger)])],
        system=schema.System(procs=[schema.Proc(pid=10, owner=o1)]))
    k8s = schema.ClusterPayload(name="kubernetes", source_host="gpu-b", ts=time.time(), ok=True,
                                kubernetes=schema.Kubernetes(pods=pods))
    Publisher(client, "gpu-a", 60.0).publish(snap, cluster=[k8s])
    for plan in (ReadPlan(), ReadPlan(level=Level.BRIEFS), ReadPlan(level=Level.GPUS)):
        state = Reader(client, brief_from=1).read(plan)
        nv = state.node("gpu-a")
        assert nv is not None and nv.snap is not None
        procs = nv.snap.gpus[0].procs if nv.snap.gpus else None
        assert procs is not None
        assert [(p.owner.namespace, p.owner.name) for p in procs if p.owner] == [
            (train.namespace, "train-a"), (etl.namespace, etl.name), (None, None)]  # unknown uid: not guessed
        assert procs[0].owner and procs[0].owner.pod_uid == train.uid  # the uid stays: what a delete is checked by
        if plan.level is not Level.GPUS:
            assert nv.snap.system and nv.snap.system.procs and nv.snap.system.procs[0].owner
            assert nv.snap.system.procs[0].owner.name == "train-a"
    assert owners.pod_of(o2, owners.pod_index(state.cluster)) == etl
    assert etl.owner_kind == "Job"  # what the kill dialog says deleting the pod leads to


def test_without_a_kubernetes_payload_nothing_changes() -> None:
    o = schema.Owner(kind="pod", pod_uid="u")
    snap = schema.NodeSnapshot(gpus=[schema.Gpu(index=0, procs=[schema.GpuProc(pid=1, owner=o)])])
    owners.name_pods([snap, None], {})
    assert snap.gpus and snap.gpus[0].procs and snap.gpus[0].procs[0].owner is o
    assert owners.named(schema.Owner(kind="container", name="c"), {"u": real_pods()[0]}).name == "c"  # type: ignore[union-attr]
    # the simulator's owners carry names already: found by namespace/name
    sim = real_pods()[0]
    assert owners.pod_of(schema.Owner(kind="pod", name=sim.name, namespace=sim.namespace),
                         {p.uid or "": p for p in real_pods()}) == sim
