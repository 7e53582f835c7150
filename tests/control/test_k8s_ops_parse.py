"""The pure halves of control/k8s_rollout.py, k8s_nodes.py and k8s_describe.py on hand-written API JSON,
including malformed and hostile objects (the real control plane runs them in tests/cli/test_k8s_ops_cli.py)."""

from __future__ import annotations

import math
from typing import Any

from clustertop.control import k8s_describe as kd
from clustertop.control import k8s_nodes as kn
from clustertop.control import k8s_rollout as ro


def rs(name: str, rev: Any, owner_uid: str, cause: str | None = None, image: str = "img:1") -> dict[str, Any]:
    ann = {"deployment.kubernetes.io/revision": rev, "deployment.kubernetes.io/revision-history": "1"}
    if cause is not None:
        ann["kubernetes.io/change-cause"] = cause
    return {"metadata": {"name": name, "annotations": ann,
                         "ownerReferences": [{"kind": "Deployment", "name": "d", "uid": owner_uid, "controller": True}]},
            "spec": {"template": {"metadata": {"labels": {"app": "d", "pod-template-hash": name[-3:]}},
                                  "spec": {"containers": [{"name": "m", "image": image}]}}},
            "status": {"replicas": 1}}


DEP = {"metadata": {"name": "d", "uid": "u1", "resourceVersion": "42", "generation": 3,
                    "annotations": {"deployment.kubernetes.io/revision": "2", "kubernetes.io/change-cause": "two"}},
       "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "m", "image": "img:2"}]}}},
       "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}


def test_history_keeps_only_owned_numbered_replicasets_in_order() -> None:
    sets = [rs("d-bbb", "2", "u1", "two", "img:2"), rs("d-aaa", "1", "u1", None), rs("other-ccc", "9", "u2", "x"),
            rs("d-ddd", "not a number", "u1"), {"metadata": None}, {}]
    revs = ro.history_from(DEP, sets)
    assert [(r.number, r.replicaset, r.change_cause, r.images) for r in revs] == [
        (1, "d-aaa", None, ["m=img:1"]), (2, "d-bbb", "two", ["m=img:2"])]
    assert revs[0].text() == "revision 1: <no change-cause> [m=img:1] (ReplicaSet d-aaa, 1 pod(s))"


def test_undo_patch_is_kubectls_and_guarded_by_resource_version() -> None:
    target = ro.history_from(DEP, [rs("d-aaa", "1", "u1", "one")])[0]
    test, tmpl, ann = ro.undo_patch(DEP, target)
    assert test == {"op": "test", "path": "/metadata/resourceVersion", "value": "42"}
    assert tmpl["value"]["metadata"]["labels"] == {"app": "d"}  # pod-template-hash dropped
    assert target.template["metadata"]["labels"]["pod-template-hash"] == "aaa"  # the plan's copy untouched
    # The controller's own annotations stay the Deployment's; the rest (the change-cause) are the target's.
    assert ann["value"] == {"deployment.kubernetes.io/revision": "2", "kubernetes.io/change-cause": "one"}


def test_rollout_status_reads_like_kubectl() -> None:
    assert ro.status_from(DEP) == ro.RolloutStatus(True, False, "deployment d successfully rolled out")
    newer = {**DEP, "metadata": {**DEP["metadata"], "generation": 4}}
    assert ro.status_from(newer).text == "waiting for the deployment spec update to be observed"
    assert ro.status_from({**DEP, "status": {**DEP["status"], "updatedReplicas": 1}}).text == "1 of 2 new replicas updated"
    assert ro.status_from({**DEP, "status": {**DEP["status"], "replicas": 3}}).text == "1 old replicas pending termination"
    assert ro.status_from({**DEP, "status": {**DEP["status"], "availableReplicas": None}}).text == \
        "0 of 2 updated replicas available"
    stuck = {**DEP, "status": {**DEP["status"], "conditions": [{"type": "Progressing",
                                                                 "reason": "ProgressDeadlineExceeded"}]}}
    assert ro.status_from(stuck).failed
    # Garbage never raises: a missing status is "not observed", NaN/huge numbers are not counts.
    assert ro.status_from({}) == ro.RolloutStatus(False, False, "waiting for the deployment spec update to be observed")
    assert not ro.status_from({"metadata": {"generation": math.nan}, "spec": {"replicas": "x"},
                               "status": {"updatedReplicas": 2**64}}).failed


def pod(name: str, owner: str | None = None, **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": name}}
    if owner:
        md["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
    md.update(extra.pop("md", {}))
    return {"metadata": md, "spec": extra.pop("spec", {}), "status": extra.pop("status", {"phase": "Running"})}


def test_drain_plan_sorts_pods_like_kubectl() -> None:
    pods = [pod("web", "ReplicaSet"), pod("ds", "DaemonSet"), pod("static", md={"annotations": {kn.MIRROR: "x"}}),
            pod("done", status={"phase": "Succeeded"}), pod("loner"),
            pod("scratch", "ReplicaSet", spec={"volumes": [{"name": "tmp", "emptyDir": {}}]}),
            pod("db", "StatefulSet")]
    pdbs = [{"metadata": {"name": "keep-db", "namespace": "ns"},
             "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}},
             "status": {"disruptionsAllowed": 0}},
            {"metadata": {"name": "empty", "namespace": "ns"}, "spec": {"selector": {}}},  # v1beta1: matches none
            {"metadata": {"name": "elsewhere", "namespace": "other"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}]
    plan = kn.classify("n1", False, pods, pdbs)
    assert [p.name for p in plan.evict] == ["web", "db"]
    assert [p.name for p in plan.ignored] == ["ds", "static", "done"]
    assert [p.name for p in plan.refused] == ["loner", "scratch"]
    assert plan.evict[1].pdbs == ["ns/keep-db (0 disruption(s) allowed)"] and plan.evict[0].pdbs == []
    assert plan.evict[0].uid == "uid-web"
    assert plan.lines()[0] == "node n1: will be cordoned; 2 pod(s) to evict, 3 ignored, 2 refused"
    forced = kn.classify("n1", True, pods, pdbs, force=True, delete_local_data=True)
    assert [p.name for p in forced.evict] == ["web", "loner", "scratch", "db"] and not forced.refused
    assert forced.lines()[0].startswith("node n1: already cordoned")


def test_drain_plan_survives_malformed_pods() -> None:
    junk = [{}, {"metadata": {"ownerReferences": ["x", None]}, "spec": {"volumes": [None, "v"]}},
            {"metadata": {"name": "\x1b[2J", "namespace": "ns", "labels": {"a": "b"}}, "status": None}]
    pdbs: list[dict[str, Any]] = [{"metadata": {"namespace": "ns"},
                                   "spec": {"selector": {"matchExpressions": [None, {"operator": "Bogus"}]}}}]
    plan = kn.classify("n", False, junk, pdbs)
    assert len(plan.refused) == 3 and all(not p.pdbs for p in plan.refused)


def test_events_parse_sort_cap_and_describe_text() -> None:
    raw = {"items": [{"type": "Warning", "reason": "BackOff", "message": "m2", "count": 4,
                      "lastTimestamp": "2026-01-02T00:00:00Z", "source": {"component": "kubelet"}},
                     {"type": "Normal", "reason": "Scheduled", "message": "m1", "count": True,
                      "eventTime": "2026-01-01T00:00:00Z", "reportingComponent": "default-scheduler"},
                     None, "x"]}
    ev = kd.parse_events(raw)
    assert [e.text() for e in ev] == ["2026-01-01T00:00:00Z Normal Scheduled: m1 [default-scheduler]",
                                      "2026-01-02T00:00:00Z Warning BackOff (x4): m2 [kubelet]"]
    many = {"items": [{"reason": "r", "lastTimestamp": f"2026-01-01T00:00:{i:02d}Z"} for i in range(60)]}
    assert len(kd.parse_events(many)) == kd.MAX_EVENTS and kd.parse_events(many)[-1].last.endswith(":59Z")
    assert kd.parse_events(None) == [] and kd.parse_events({"items": None}) == []
    pod_obj = {"metadata": {"name": "p", "namespace": "ns", "ownerReferences": [{"kind": "Job", "name": "j"}]},
               "spec": {"nodeName": "n1"},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "reason": "X"}],
                          "containerStatuses": [{"name": "c", "image": "i", "ready": False, "restartCount": 2,
                                                 "state": {"waiting": {}}}]}}
    lines = kd.describe_lines("Pod", pod_obj, ev)
    assert lines[:2] == ["Pod ns/p", "  created: N/A"]
    for want in ("  controlled by: Job j", "  node: n1", "  restarts: 2", "  container c: i ready=False state=waiting",
                 "  pod IP: N/A", "conditions:", "  Ready=False (X)", "events:"):
        assert want in lines, (want, lines)
    assert kd.describe_lines("Node", {"metadata": {"name": "n"}}, [])[-2:] == [
        "conditions: none", "events: none (kept about an hour by the API server)"]
