"""The kubernetes collector and the steering module against a REAL Kubernetes 1.20 API server
(tests/support/k8s_cluster.py: etcd + kube-apiserver + controller-manager + scheduler on loopback, RBAC on).

What is real: the API server's validation, defaulting, RBAC, dry run, watch cache, the scheduler's
GPU accounting (a pod asking more GPUs than any node has stays Pending/Unschedulable), the Job,
ReplicaSet and garbage-collector controllers. What stands in: ``FakeKubelet`` reports pods on
``fake-*`` Nodes Running and confirms their deletion, because no kubelet can run here. Waiting is
for a state, with a generous bound; nothing asserts how fast.

``K8S_RECORD=1`` also writes the raw API answers to tests/fixtures/k8s/api/ (test_k8s_parse.py).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from clustertop import wire
from clustertop.collectors.base import Context
from clustertop.collectors.kubernetes import KubernetesCollector, KubernetesError, KubernetesUnreachable
from clustertop.control.kubernetes import K8sControl, K8sControlError
from clustertop.wire import schema
from tests.conftest import FIXTURES, RedisServer
from tests.support.k8s_cluster import VIEW_NAMESPACE, K8sCluster, k8s_cluster  # noqa: F401 - the session fixture
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
TEMPLATE = FIXTURES / "k8s" / "templates" / "train-job.yaml"
RECORD_DIR = FIXTURES / "k8s" / "api"



def node_body(name: str, gpus: int, conditions: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    # No addresses: the API server would connect to a node address for logs/exec; none may leave loopback.
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": res, "allocatable": {**res, "cpu": "15500m"},
                       "conditions": [{"type": t, "status": s, "lastHeartbeatTime": now, "lastTransitionTime": now,
                                       "reason": "Test", "message": "set by the test"}
                                      for t, s in conditions or [("Ready", "True")]]}}


def pod_body(name: str, gpus: int, node: str | None = None, *, exit0: bool = False, owner: Any = None
             ) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never" if exit0 else "Always",
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": "pytorch/pytorch:2.3",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}}]}
    if node:
        spec["nodeName"] = node  # bound directly, as a pre-scheduled pod: deterministic placement
    labels = {"app": name}
    if exit0:
        labels["fake-kubelet/exit"] = "0"
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


class World:
    """One namespace and three GPU Nodes of this module's own, shared by its tests."""

    def __init__(self, cluster: K8sCluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.api = cluster.client("admin")
        # Any: the tests send plain dicts (as JSON goes on the wire); client 37's stubs want models.
        self.core: Any = cast(Any, client.CoreV1Api(self.api))
        self.batch: Any = cast(Any, client.BatchV1Api(self.api))
        self.apps: Any = cast(Any, client.AppsV1Api(self.api))
        tag = uuid.uuid4().hex[:6]
        self.ns = f"ml-{tag}"
        self.a, self.b, self.c = f"fake-gpu-a-{tag}", f"fake-gpu-b-{tag}", f"fake-gpu-c-{tag}"
        self.core.create_namespace({"metadata": {"name": self.ns}})
        for name, gpus, cond in ((self.a, 2, None), (self.b, 4, [("Ready", "True"), ("MemoryPressure", "True")]),
                                 (self.c, 2, [("Ready", "Unknown")])):
            body = node_body(name, gpus, cond)
            self.core.create_node(body)
            # Status is a subresource: set it explicitly, as a kubelet's status update would.
            self.core.patch_node_status(name, {"status": body["status"]})

    def pods(self, selector: str | None = None) -> list[Any]:
        kw = {"label_selector": selector} if selector else {}
        return list(self.core.list_namespaced_pod(self.ns, **kw).items)

    def phase(self, name: str) -> str | None:
        from kubernetes.client.rest import ApiException

        try:
            return str(self.core.read_namespaced_pod(name, self.ns).status.phase)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def close(self) -> None:
        self.api.close()


@pytest.fixture(scope="module")
def world(k8s_cluster: K8sCluster) -> Iterator[World]:  # noqa: F811
    w = World(k8s_cluster)
    try:
        yield w
    finally:
        w.close()


def collector(cluster: K8sCluster, user: str = "reader", **options: Any) -> KubernetesCollector:
    return KubernetesCollector(Context(node="t", config={"kubeconfig": str(cluster.kubeconfigs[user]), **options}))


def test_control_plane_started_and_costs(k8s_cluster: K8sCluster) -> None:  # noqa: F811
    """Figures for the report (printed; run with -s): start times and resident memory."""
    rss = k8s_cluster.rss_mb()
    print(f"\nk8s start: {json.dumps({k: round(v, 2) for k, v in k8s_cluster.timings.items()})}; "
          f"RSS MB: {json.dumps({k: round(v) for k, v in rss.items()})}")
    assert set(rss) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    assert k8s_cluster.kubelet is not None and k8s_cluster.kubelet.thread.is_alive()


def test_collector_sees_nodes_pods_workloads_and_allocation(k8s_cluster: K8sCluster, world: World) -> None:  # noqa: F811
    w = world
    w.core.create_namespaced_pod(w.ns, pod_body("train-a", 2, w.a))
    w.core.create_namespaced_pod(w.ns, pod_body("train-b", 1, w.b))
    w.core.create_namespaced_pod(w.ns, pod_body("finished", 1, w.b, exit0=True))  # Succeeded: frees its GPU
    w.core.create_namespaced_pod(w.ns, pod_body("too-big", 8))  # no node has 8 GPUs: the scheduler says so
    job = {"metadata": {"name": "etl"}, "spec": {"backoffLimit": 0, "template": {
        "metadata": {"labels": {"app": "etl"}},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": w.b},
                 "containers": [{"name": "etl", "image": "busybox",
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    w.batch.create_namespaced_job(w.ns, job)
    dep = {"metadata": {"name": "serve"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "serve"}},
           "template": {"metadata": {"labels": {"app": "serve"}}, "spec": {
               "nodeSelector": {"kubernetes.io/hostname": w.a}, "terminationGracePeriodSeconds": 5,
               "containers": [{"name": "serve", "image": "nginx"}]}}}}
    w.apps.create_namespaced_deployment(w.ns, dep)

    col = collector(k8s_cluster)

    def settled(k: schema.Kubernetes) -> bool:
        pods = {p.name: p for p in k.pods or () if p.namespace == w.ns}
        deps = {x.name: x for x in k.workloads or () if x.namespace == w.ns and x.kind == "Deployment"}
        return (len(pods) == 7 and all(p.phase == "Running" for n, p in pods.items()
                                       if n.startswith(("train-", "etl-", "serve-")))
                and pods["finished"].phase == "Succeeded" and pods["too-big"].reason == "Unschedulable"
                and deps.get("serve") is not None and deps["serve"].ready == 2)

    k = wait_for("pods settled", col.collect, settled)
    try:
        assert k.server == k8s_cluster.server and k.version == "v1.20.2" and k.errors is None
        nodes = {n.name: n for n in k.nodes or ()}
        a, b, c = nodes[w.a], nodes[w.b], nodes[w.c]
        # Allocated = GPU requests of non-terminated pods bound there: train-a on a; train-b + etl on b.
        assert (a.gpu_capacity, a.gpu_allocatable, a.gpu_allocated) == (2, 2, 2)
        assert (b.gpu_capacity, b.gpu_allocatable, b.gpu_allocated) == (4, 4, 2)
        assert (c.gpu_capacity, c.gpu_allocated) == (2, 0)
        assert a.cpu_allocatable_m == 15500 and a.mem_allocatable_bytes == 64 * 1024**3
        assert (a.ready, a.conditions) == (True, None)
        assert (b.ready, b.conditions) == (True, {"MemoryPressure": "True"})  # only the abnormal ones
        assert (c.ready, c.conditions) == (False, {"Ready": "Unknown"})
        assert not any(n.unschedulable for n in (a, b, c))

        pods = {p.name: p for p in k.pods or () if p.namespace == w.ns}
        api_pods = {p.metadata.name: p for p in w.pods()}
        assert pods["train-a"].node == w.a and pods["train-a"].gpus == 2 and pods["train-a"].owner_kind is None
        assert pods["train-a"].uid == api_pods["train-a"].metadata.uid and pods["train-a"].restarts == 0
        assert pods["too-big"].phase == "Pending" and pods["too-big"].node is None and pods["too-big"].gpus == 8
        assert pods["finished"].reason == "Completed"
        etl = [p for n, p in pods.items() if n.startswith("etl-")]
        assert len(etl) == 1 and (etl[0].owner_kind, etl[0].owner, etl[0].node, etl[0].gpus) == ("Job", "etl", w.b, 1)
        serve = [p for n, p in pods.items() if n.startswith("serve-")]
        assert len(serve) == 2 and all(p.owner_kind == "ReplicaSet" and p.owner and p.owner.startswith("serve-")
                                       for p in serve)
        assert all(p.created_ts and abs(p.created_ts - time.time()) < 3600 for p in pods.values())
        wl = {(x.kind, x.name): x for x in k.workloads or () if x.namespace == w.ns}
        assert wl[("Job", "etl")].active == 1 and wl[("Job", "etl")].succeeded == 0
        assert (wl[("Deployment", "serve")].replicas, wl[("Deployment", "serve")].ready) == (2, 2)
        assert k.pods_total is not None and k.pods_total >= 7

        # Cordon shows.
        w.core.patch_node(w.c, {"spec": {"unschedulable": True}})
        k = wait_for("cordon", col.collect, lambda k: any(n.name == w.c and n.unschedulable for n in k.nodes or ()))
        # The wire payload fits and decodes back to the same thing.
        payload = schema.ClusterPayload(name="kubernetes", ok=True, kubernetes=k)
        assert wire.decode(wire.encode(payload), schema.ClusterPayload).kubernetes == k
        if os.environ.get("K8S_RECORD"):
            _record(w)
    finally:
        col.close()


def _record(w: World) -> None:
    """Raw API answers (as the collector receives them) for the pure parser tests."""
    RECORD_DIR.mkdir(parents=True, exist_ok=True)
    note = {"_provenance": "recorded by tests/collectors/test_k8s_real.py (K8S_RECORD=1) from kube-apiserver v1.20.2 built "
                           "from Debian's kubernetes source package; pods made Running by the stand-in kubelet"}
    calls = {
        "nodes.json": lambda: w.core.list_node(_preload_content=False),
        "pods.json": lambda: w.core.list_namespaced_pod(w.ns, _preload_content=False),
        "jobs.json": lambda: w.batch.list_namespaced_job(w.ns, _preload_content=False),
        "deployments.json": lambda: w.apps.list_namespaced_deployment(w.ns, _preload_content=False),
        "version.json": lambda: __import__("kubernetes").client.VersionApi(w.api).get_code(_preload_content=False),
    }
    for fname, call in calls.items():
        data = json.loads(call().data)
        if fname == "nodes.json":  # only this module's nodes: other tests' nodes are noise
            data["items"] = [n for n in data["items"] if n["metadata"]["name"] in (w.a, w.b, w.c)]
        (RECORD_DIR / fname).write_text(json.dumps({**note, **data}, indent=1, sort_keys=True) + "\n")


def test_ledger_joins_the_real_view_with_agent_snapshots(k8s_cluster: K8sCluster, world: World) -> None:  # noqa: F811
    """The collector's real pods (uids from the API server) joined with node snapshots as agents on
    those nodes would publish them (no GPU here: the snapshots stand in for the gpu collector)."""
    from clustertop.read.ledger import LedgerSettings, LedgerTracker

    w = world
    col = collector(k8s_cluster)
    try:
        k = col.collect()
    finally:
        col.close()
    uid = {p.name: p.uid for p in k.pods or () if p.namespace == w.ns}

    def proc(pid: int, pod_uid: str | None) -> schema.GpuProc:
        owner = schema.Owner(kind="pod", pod_uid=pod_uid) if pod_uid else schema.Owner(kind="user", name="bob")
        return schema.GpuProc(pid=pid, name="python", user="bob", owner=owner)

    t0 = time.time()

    def snaps(util_a: int) -> list[schema.NodeSnapshot]:
        return [schema.NodeSnapshot(host=w.a, ts=t0, gpus=[
                    schema.Gpu(index=0, util_pct=util_a, procs=[proc(10, uid["train-a"])]),
                    schema.Gpu(index=1, util_pct=util_a, procs=[proc(11, uid["train-a"])])]),
                schema.NodeSnapshot(host=w.b, ts=t0, gpus=[
                    schema.Gpu(index=i, util_pct=90 if i == 3 else 0, procs=[proc(20, None)] if i == 3 else [])
                    for i in range(4)])]

    tr = LedgerTracker(LedgerSettings(idle_below_pct=5, idle_after_s=300, unowned_after_s=60))
    tr.update(k, snaps(1), t0)
    led = tr.update(k, snaps(1), t0 + 301)
    rows = {r.node: r for r in led.nodes}
    assert (rows[w.a].capacity, rows[w.a].allocated, rows[w.a].busy, rows[w.a].idle_allocated) == (2, 2, 0, 2)
    assert (rows[w.b].capacity, rows[w.b].allocated, rows[w.b].busy, rows[w.b].unowned_busy) == (4, 2, 1, 1)
    assert rows[w.c].has_agent is False and rows[w.c].busy is None
    words = sorted(f.message for f in led.flags if w.ns in f.message or f.node in (w.a, w.b))
    assert f"pod {w.ns}/train-a holds 2 GPUs on {w.a} but they have been idle (<5% util) for 5 min" in words
    assert f"{w.b} GPU 3 busy (90% util) for 5 min but no pod owns it: pid 20 python (bob)" in words
    # train-b and the etl pod hold GPUs on b but run nothing on any: idle too.
    assert any(m.startswith(f"pod {w.ns}/train-b holds 1 GPU on {w.b} but has run nothing") for m in words)
    assert not any("train-a" in f.message for f in tr.update(k, snaps(80), t0 + 302).flags)


def test_restricted_identities(k8s_cluster: K8sCluster, world: World) -> None:  # noqa: F811
    w = world
    # A namespace-limited reader: nodes are refused (cluster scope), the namespace's pods still flow.
    w.core.create_namespaced_pod(VIEW_NAMESPACE, pod_body("notebook", 1, w.b))
    col = collector(k8s_cluster, "nsviewer", namespaces=[VIEW_NAMESPACE])
    try:
        k = wait_for("notebook running", col.collect,
                     lambda k: any(p.name == "notebook" and p.phase == "Running" for p in k.pods or ()))
        assert k.nodes is None
        assert k.errors and any(e.startswith("nodes: HTTP 403: ") and 'cannot list resource "nodes"' in e
                                for e in k.errors), k.errors
        assert {p.namespace for p in k.pods or ()} == {VIEW_NAMESPACE}
        assert k.workloads == []
    finally:
        col.close()
    # The cluster reader limited to one namespace by config: GPU allocation still counts every namespace.
    col = collector(k8s_cluster, "reader", namespaces=[VIEW_NAMESPACE])
    try:
        k = col.collect()
        assert {p.namespace for p in k.pods or ()} == {VIEW_NAMESPACE} and k.errors is None
        b = next(n for n in k.nodes or () if n.name == w.b)
        assert b.gpu_allocated == 3  # train-b and etl (another namespace) + notebook
    finally:
        col.close()
    # A token the server does not know: refused, in words.
    bad = k8s_cluster.dir / "kubeconfig-bad"
    bad.write_text(k8s_cluster.kubeconfigs["reader"].read_text().replace("reader-token-2", "wrong-token"))
    col = KubernetesCollector(Context(node="t", config={"kubeconfig": str(bad)}))
    try:
        with pytest.raises(KubernetesError, match=r"refused the credentials: nodes: HTTP 401: Unauthorized"):
            col.collect()
    finally:
        col.close()


def test_can_i_for_admin_reader_and_namespace_viewer(k8s_cluster: K8sCluster, world: World) -> None:  # noqa: F811
    admin = K8sControl(str(k8s_cluster.kubeconfigs["admin"]))
    reader = K8sControl(str(k8s_cluster.kubeconfigs["reader"]))
    viewer = K8sControl(str(k8s_cluster.kubeconfigs["nsviewer"]))
    try:
        assert admin.allowed_actions(world.ns) == {"delete_pod": True, "delete_job": True, "create_job": True,
                                                   "scale_deployment": True, "pod_logs": True, "rollout": True,
                                                   "nodes": True}
        assert reader.allowed_actions(world.ns) == {"delete_pod": False, "delete_job": False, "create_job": False,
                                                    "scale_deployment": False, "pod_logs": False, "rollout": False,
                                                    "nodes": False}
        assert reader.can_i("list", "pods") and reader.can_i("list", "nodes") and not reader.can_i("list", "secrets")
        assert viewer.can_i("get", "pods", VIEW_NAMESPACE) and viewer.can_i("get", "pods/log", VIEW_NAMESPACE)
        assert not viewer.can_i("get", "pods", world.ns) and not viewer.can_i("delete", "pods", VIEW_NAMESPACE)
        # And the refusal is real, not only advice: the server says no.
        with pytest.raises(K8sControlError, match="forbidden") as e:
            reader.scale_deployment(world.ns, "serve", 5)
        assert e.value.status == 403
    finally:
        for c in (admin, reader, viewer):
            c.close()


def test_steering_delete_scale_logs(k8s_cluster: K8sCluster, world: World) -> None:  # noqa: F811
    w = world
    ctl = K8sControl(str(k8s_cluster.kubeconfigs["admin"]))
    try:
        # An unmanaged pod: gone for good.
        w.core.create_namespaced_pod(w.ns, pod_body("scratch", 1, w.c))
        wait_for("scratch running", lambda: w.phase("scratch"), lambda p: p == "Running")
        imp = ctl.preview_delete_pod(w.ns, "scratch")
        assert (imp.phase, imp.restarts, imp.gpus, imp.node, imp.owner_kind) == ("Running", 0, 1, w.c, None)
        assert imp.consequence == "not managed: gone for good; its running processes are killed"
        assert w.phase("scratch") == "Running"  # a preview changes nothing
        # The name now means another pod than the one the operator saw: the server refuses.
        with pytest.raises(K8sControlError, match="the UID in the precondition .* does not match the UID in record") as e:
            ctl.delete_pod(w.ns, "scratch", uid="00000000-0000-0000-0000-000000000000")
        assert e.value.status == 409 and w.phase("scratch") == "Running"
        ctl.delete_pod(w.ns, "scratch", uid=imp.uid)
        wait_for("scratch deleted", lambda: w.phase("scratch"), lambda p: p is None)

        # A Job's pod: the Job controller makes a new one.
        old = [p.metadata.name for p in w.pods("job-name=etl")]
        assert len(old) == 1
        imp = ctl.delete_pod(w.ns, old[0])
        assert imp.owner_kind == "Job" and imp.recreated and imp.consequence.startswith("the Job will recreate it")
        assert "owned by Job etl" in imp.text()
        new = wait_for("etl pod replaced", lambda: [p.metadata.name for p in w.pods("job-name=etl")],
                       lambda names: len(names) == 1 and names[0] != old[0])
        wait_for("replacement running", lambda: w.phase(new[0]), lambda p: p == "Running")

        # Deleting the Job takes its pods with it (Background propagation; the garbage collector acts).
        imp = ctl.preview_delete_job(w.ns, "etl")
        assert (imp.pods, imp.running, imp.gpus) == (1, 1, 1)
        assert "its 1 pod(s) are deleted with it, 1 of them running; not managed by anything" in imp.text()
        ctl.delete_job(w.ns, "etl")
        wait_for("etl pods gone", lambda: w.pods("job-name=etl"), lambda pods: pods == [])
        with pytest.raises(K8sControlError, match='jobs.batch "etl" not found') as e:
            ctl.preview_delete_job(w.ns, "etl")
        assert e.value.status == 404

        # Scale a Deployment up and down; the stand-in kubelet confirms the removals.
        assert ctl.scale_deployment(w.ns, "serve", 3) == (2, 3)
        wait_for("3 serve pods", lambda: [p.status.phase for p in w.pods("app=serve")],
                 lambda ph: ph == ["Running"] * 3)
        assert ctl.scale_deployment(w.ns, "serve", 0) == (3, 0)
        wait_for("serve scaled to 0", lambda: w.pods("app=serve"), lambda pods: pods == [])
        with pytest.raises(K8sControlError, match="replicas must be a whole number"):
            ctl.scale_deployment(w.ns, "serve", -1)

        # Logs come from a kubelet; there is none behind these Nodes: a clear error, not a hang.
        with pytest.raises(K8sControlError, match=r"^logs unavailable for .*/train-a: the node's kubelet did not serve"):
            ctl.pod_logs(w.ns, "train-a")
        with pytest.raises(K8sControlError, match="not a valid Kubernetes name"):
            ctl.preview_delete_pod(w.ns, "../../nodes")
    finally:
        ctl.close()


def test_create_job_from_template_dry_run_first(k8s_cluster: K8sCluster, world: World) -> None:  # noqa: F811
    w = world
    ctl = K8sControl(str(k8s_cluster.kubeconfigs["admin"]))
    try:
        params = {"name": "resnet", "image": "pytorch/pytorch:2.3", "gpus": 1, "epochs": 3, "parallelism": 1}
        plan = ctl.prepare_job(str(TEMPLATE), params, namespace=w.ns)
        # The server's answer, with its defaults applied (pod spec defaults, the generated selector).
        assert plan.name == "train-resnet" and plan.preview["metadata"]["namespace"] == w.ns
        pod_spec = plan.preview["spec"]["template"]["spec"]
        assert (pod_spec["dnsPolicy"], pod_spec["terminationGracePeriodSeconds"]) == ("ClusterFirst", 30)
        assert plan.preview["spec"]["parallelism"] == 1 and plan.body["spec"]["parallelism"] == 1
        assert "controller-uid" in plan.preview["spec"]["selector"]["matchLabels"]
        c = plan.preview["spec"]["template"]["spec"]["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert c["args"] == ["--epochs", "3", "--out", "/runs/resnet/model.pt"]
        # A dry run creates nothing.
        assert [j.metadata.name for j in w.batch.list_namespaced_job(w.ns).items if j.metadata.name == "train-resnet"] == []
        created = ctl.create_job(plan)
        assert created.name == "train-resnet" and created.uid
        job = wait_for("job done", lambda: w.batch.read_namespaced_job("train-resnet", w.ns),
                       lambda j: (j.status.succeeded or 0) == 1)
        assert job.metadata.uid == created.uid
        # The server refuses what it would refuse for real, already at the dry run.
        with pytest.raises(K8sControlError, match="already exists") as e:
            ctl.prepare_job(str(TEMPLATE), params, namespace=w.ns)
        assert e.value.status == 409
        with pytest.raises(K8sControlError, match="Invalid value"):
            ctl.prepare_job(str(TEMPLATE), {**params, "name": "Bad_Name"}, namespace=w.ns)
    finally:
        ctl.close()


def test_api_server_down_is_unreachable_and_agent_keeps_last_good(k8s_cluster: K8sCluster, world: World,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    from clustertop.agents.agent import Agent
    from clustertop.agents.config import AgentConfig, CollectorConfig

    redis_srv = RedisServer()
    collectors = {n: CollectorConfig(name=n, enabled=False) for n in ("host", "gpu", "bonds", "nfs")}
    collectors["kubernetes"] = CollectorConfig(name="kubernetes", interval_s=1.0, options={
        "kubeconfig": str(k8s_cluster.kubeconfigs["reader"]), "request_timeout": 3})
    cfg = AgentConfig(file=str(tmp_path / "agent.toml"), redis_url=redis_srv.url, node="t", interval_s=1.0,
                      collectors=collectors)
    agent = Agent(cfg, dry_run=True)  # dry run: every collector each tick, no lease to wait for
    client = redis_srv.client()

    def published() -> schema.ClusterPayload:
        snap, cluster = agent.tick()
        assert agent.publish(snap, cluster)
        return wire.decode(client.get(wire.cluster_key("kubernetes")), schema.ClusterPayload)

    try:
        p = wait_for("agent publishes kubernetes", published, lambda p: p.ok and p.kubernetes is not None)
        assert p.kubernetes is not None and any(n.name == world.a for n in p.kubernetes.nodes or ())
        good_ts = p.last_ok_ts
        k8s_cluster.stop_process("kube-apiserver")
        col = collector(k8s_cluster)
        with pytest.raises(KubernetesUnreachable, match=r"^Kubernetes API unreachable: https://127\.0\.0\.1:\d+: "
                                                        r"NewConnectionError: .*Connection refused"):
            col.collect()
        col.close()
        p = wait_for("agent reports the outage", published, lambda p: not p.ok)
        assert p.error is not None and "Kubernetes API unreachable" in p.error
        assert p.kubernetes is not None and any(n.name == world.a for n in p.kubernetes.nodes or ())  # last good
        assert p.last_ok_ts == good_ts
    finally:
        agent.close()
        redis_srv.stop()
        k8s_cluster.restart("kube-apiserver")
