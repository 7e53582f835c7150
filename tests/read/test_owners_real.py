"""The pod-naming join (clustertop.read.owners) against the REAL Kubernetes API server
(tests/support/k8s_cluster.py: etcd + kube-apiserver + controller-manager + scheduler, RBAC on; heavy).

A Deployment's ReplicaSet makes a pod with a GPU on a ``fake-*`` Node (FakeKubelet, the one stand-in: no
kubelet can run here, so it marks the pod Running). The real kubernetes collector reads it with the
read-only ``reader`` credentials; the node's side is what collectors.owner parses from /proc/<pid>/cgroup
for a process in that pod: a kubepods cgroup path built from the pod's real uid (the cgroup file itself is
the one thing made up: no kubelet made a cgroup). Both go through the agent's Publisher to a real
redis-server and back through the real Reader; what is asserted is what the dashboard shows: the GPU
table's owner cell and the kill dialog's owner line and pod offer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from clustertop.agents.publisher import Publisher
from clustertop.collectors.base import Context
from clustertop.collectors.kubernetes import KubernetesCollector
from clustertop.collectors.owner import parse_cgroup
from clustertop.dashboard.actions import owner_words
from clustertop.dashboard.screens.gpus import proc_row
from clustertop.read import owners
from clustertop.read.reader import Reader
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support import waiting
from tests.support.k8s_cluster import K8sCluster, k8s_cluster  # noqa: F401 - the session fixture (heavy)

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T], ok: Callable[[T], bool], limit_s: float = 90.0) -> T:
    """The ReplicaSet controller, scheduler and kubelet act asynchronously: every 0.3 s, up to 90 s."""
    return waiting.wait_for(what, fn, ok, limit_s, step_s=0.3)


def kubepods_cgroup(uid: str) -> str:
    """/proc/<pid>/cgroup of a container process in pod ``uid``, kubelet's systemd driver on cgroup v2
    (the uid's dashes spelled as underscores, as systemd slice names must)."""
    cid = "c0" * 32
    return (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/"
            f"cri-containerd-{cid}.scope\n")


def test_a_gpu_process_is_named_from_the_live_apiserver(k8s_cluster: K8sCluster,  # noqa: F811
                                                         redis_server: RedisServer) -> None:
    from kubernetes import client

    tag = uuid.uuid4().hex[:6]
    ns, node, dep = f"o-{tag}", f"fake-owners-{tag}", "trainer"  # short: the owner cell shows 40 characters
    api = k8s_cluster.client("admin")
    core: Any = cast(Any, client.CoreV1Api(api))
    apps: Any = cast(Any, client.AppsV1Api(api))
    res = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"capacity": res, "allocatable": res, "conditions": [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now}]}
    col = KubernetesCollector(Context(node="t", config={"kubeconfig": str(k8s_cluster.kubeconfigs["reader"])}))
    try:
        core.create_namespace({"metadata": {"name": ns}})
        core.create_node({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}, "status": status})
        core.patch_node_status(node, {"status": status})
        apps.create_namespaced_deployment(ns, {"metadata": {"name": dep}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": dep}},
            "template": {"metadata": {"labels": {"app": dep}}, "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "train", "image": "pytorch/pytorch:2.3",
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}})

        def mine(k: schema.Kubernetes) -> list[schema.K8sPod]:
            return [p for p in k.pods or () if p.namespace == ns]

        k8s = wait_for("the Deployment's pod Running", col.collect,
                       lambda k: len(mine(k)) == 1 and mine(k)[0].phase == "Running")
        pod = mine(k8s)[0]
        api_pod = core.list_namespaced_pod(ns).items[0]
        assert pod.uid == api_pod.metadata.uid and pod.name == api_pod.metadata.name  # the API's own uid
        assert pod.owner_kind == "ReplicaSet" and pod.owner and pod.owner.startswith(f"{dep}-")
        assert pod.node == node and pod.gpus == 1

        # The node's side: only the uid, parsed from the cgroup line by the agent's own parser.
        owner = parse_cgroup(kubepods_cgroup(pod.uid or ""))
        assert (owner.kind, owner.pod_uid, owner.name, owner.namespace) == ("pod", pod.uid, None, None)
        gone = parse_cgroup(kubepods_cgroup(str(uuid.uuid4())))  # a pod the apiserver does not know
        snap = schema.NodeSnapshot(host=node, ts=time.time(), gpus=[schema.Gpu(index=0, procs=[
            schema.GpuProc(pid=4242, used_mem_bytes=3 << 30, user="alice", name="python", owner=owner),
            schema.GpuProc(pid=4243, used_mem_bytes=1 << 30, user="bob", name="python", owner=gone)])])
        payload = schema.ClusterPayload(name="kubernetes", source_host="lease-holder", ts=time.time(), ok=True,
                                        kubernetes=k8s)
        Publisher(redis_server.client(), node, 60.0).publish(snap, cluster=[payload])

        state = Reader(redis_server.client()).read()
        nv = state.node(node)
        assert nv is not None and nv.snap is not None and nv.snap.gpus
        read_procs = nv.snap.gpus[0].procs or []
        cells = [str(proc_row(p)[2]) for p in read_procs]  # the GPU table's owner column, as shown (40 chars)
        assert len(cells[0]) < 40  # so the whole name is on screen, not cut
        assert cells == [f"pod:{ns}/{pod.name}", "pod:"]  # the unknown uid stays unnamed: never guessed
        named = read_procs[0].owner
        assert named is not None and named.pod_uid == pod.uid  # the uid stays: a pod delete is checked by it
        # The kill dialog: its owner line, and the pod it offers to delete instead (with its ReplicaSet).
        assert owner_words(named) == f"pod {ns}/{pod.name}"
        offered = owners.pod_of(named, owners.pod_index(state.cluster))
        assert offered is not None and (offered.namespace, offered.name, offered.owner_kind, offered.owner) == (
            ns, pod.name, "ReplicaSet", pod.owner)
        assert owners.pod_of(read_procs[1].owner, owners.pod_index(state.cluster)) is None
    finally:
        col.close()
        core.delete_namespace(ns)
        core.delete_node(node)
        api.close()
