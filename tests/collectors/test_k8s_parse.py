"""Pure parsers on API JSON: recorded from the real API server (fixtures/k8s/api/, see their
``_provenance``) and, for states only a kubelet writes, hand-written in the same shape
(fixtures/k8s/kubelet-states.json)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from clustertop.collectors import kubernetes_parse as k8s_parse
from clustertop.wire import schema
from tests.conftest import FIXTURES

API = FIXTURES / "k8s" / "api"


def load(name: str) -> Any:
    return json.loads((FIXTURES / "k8s" / name).read_text())


def test_quantities() -> None:
    q = k8s_parse.parse_quantity
    assert q("2") == 2 and q("7800m") == Decimal("7.8") and q("64Gi") == 64 * 2**30 and q("1e3") == 1000
    assert q("128974848") == 128974848 and q("129M") == 129 * 10**6 and q("0.5") == Decimal("0.5")
    assert q("") is None and q("lots") is None and q("5Qi") is None and q(None) is None and q(True) is None


def test_pods_in_kubelet_written_states() -> None:
    pods = {p.name: p for p in k8s_parse.parse_pods(load("kubelet-states.json"))}
    crashy = pods["crashy-7d9f-abcde"]
    assert (crashy.phase, crashy.reason, crashy.restarts, crashy.gpus) == ("Running", "CrashLoopBackOff", 8, 1)
    assert (crashy.owner_kind, crashy.owner, crashy.node) == ("ReplicaSet", "crashy-7d9f", "tower-1")
    assert crashy.uid == "11111111-aaaa-4bbb-8ccc-000000000001"
    assert crashy.created_ts == 1763805600.0  # 2025-11-22T10:00:00Z
    oom = pods["oom-job-xyz12"]
    # Effective request: max(init 4, app 1 + 2) = 4, as the scheduler counts it.
    assert (oom.phase, oom.reason, oom.gpus, oom.owner_kind) == ("Failed", "OOMKilled", 4, "Job")
    pull = pods["pull-fail"]
    assert (pull.phase, pull.reason, pull.restarts, pull.owner_kind) == ("Pending", "ImagePullBackOff", 0, None)
    ev = pods["evicted"]
    assert (ev.phase, ev.reason, ev.restarts) == ("Failed", "Evicted", None)  # no statuses left: unknown
    assert pods["leaving"].reason == "Terminating"

    nodes = [schema.K8sNode(name="tower-1"), schema.K8sNode(name="tower-2"), schema.K8sNode(name="idle")]
    k8s_parse.allocate(nodes, list(pods.values()))
    # Failed pods free their GPUs; a pod still terminating (or not yet pulled) holds them.
    assert [n.gpu_allocated for n in nodes] == [1, 3, 0]


def test_select_pods_keeps_gpu_and_troubled_pods_first() -> None:
    plain = [schema.K8sPod(namespace="a", name=f"web-{i}", phase="Running", restarts=0, node="n") for i in range(5)]
    gpu = schema.K8sPod(namespace="a", name="train", phase="Running", gpus=2, node="n", restarts=0)
    crash = schema.K8sPod(namespace="a", name="crash", phase="Running", reason="CrashLoopBackOff", restarts=9, node="n")
    pods = plain[:2] + [crash] + plain[2:] + [gpu]
    assert [p.name for p in k8s_parse.select_pods(pods, 10)] == ["crash", "train"] + [f"web-{i}" for i in range(5)]
    assert [p.name for p in k8s_parse.select_pods(pods, 3)] == ["crash", "train", "web-0"]
    assert [p.name for p in k8s_parse.select_pods(pods, 2)] == ["crash", "train"]
    assert [p.name for p in k8s_parse.select_pods(pods, 1)] == ["train"]
    assert k8s_parse.select_pods(pods, 0) == []


def test_malformed_input_degrades() -> None:
    assert k8s_parse.parse_pods({"items": None}) == [] and k8s_parse.parse_nodes("garbage") == []
    p = k8s_parse.parse_pod({"metadata": {}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "x"}}}]}})
    assert (p.name, p.gpus, p.phase, p.restarts, p.created_ts) == ("?", 0, None, None, None)
    n = k8s_parse.parse_node({"metadata": {"name": "bare"}})
    assert (n.gpu_capacity, n.ready, n.conditions) == (None, None, None)  # no status: unknown, not 0


recorded = pytest.mark.skipif(not (API / "pods.json").exists(), reason="fixtures/k8s/api not recorded yet (K8S_RECORD=1)")


@recorded
def test_recorded_nodes() -> None:
    data = json.loads((API / "nodes.json").read_text())
    nodes = sorted(k8s_parse.parse_nodes(data), key=lambda n: n.name)
    assert [(n.gpu_capacity, n.gpu_allocatable, n.ready) for n in nodes] == [(2, 2, True), (4, 4, True), (2, 2, False)]
    assert [n.conditions for n in nodes] == [None, {"MemoryPressure": "True"}, {"Ready": "Unknown"}]
    assert nodes[2].unschedulable and not nodes[0].unschedulable
    assert nodes[0].cpu_allocatable_m == 15500 and nodes[0].mem_allocatable_bytes == 64 * 2**30


@recorded
def test_recorded_pods_jobs_deployments_version() -> None:
    pods = {p.name.split("-")[0]: p for p in k8s_parse.parse_pods(json.loads((API / "pods.json").read_text()))}
    assert pods["train"].phase == "Running" and pods["train"].gpus in (1, 2) and pods["train"].restarts == 0
    assert pods["too"].phase == "Pending" and pods["too"].reason == "Unschedulable" and pods["too"].node is None
    assert pods["finished"].phase == "Succeeded" and pods["finished"].reason == "Completed"
    assert (pods["etl"].owner_kind, pods["etl"].owner) == ("Job", "etl")
    assert pods["serve"].owner_kind == "ReplicaSet"
    assert all(p.uid and p.created_ts for p in pods.values())
    jobs = k8s_parse.parse_jobs(json.loads((API / "jobs.json").read_text()))
    assert [(j.kind, j.name, j.replicas, j.active, j.succeeded, j.failed) for j in jobs] == [("Job", "etl", 1, 1, 0, 0)]
    deps = k8s_parse.parse_deployments(json.loads((API / "deployments.json").read_text()))
    assert [(d.kind, d.name, d.replicas, d.ready) for d in deps] == [("Deployment", "serve", 2, 2)]
    assert k8s_parse.parse_version(json.loads((API / "version.json").read_text())) == "v1.20.2"
