"""``clustertop k8s rollout | cordon | uncordon | drain`` as real subprocesses against the real control plane of
tests/support/k8s_cluster.py (``FakeKubelet`` stands in for the kubelets of ``fake-*`` Nodes: no kubelet can
run here; it marks pods Running/Ready and confirms deletions, as a kubelet reports). The Deployment controller,
the disruption controller (PodDisruptionBudget status) and the Eviction subresource are the real ones.
Audit entries are read back from a real redis-server. Waiting is for a state, never timed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_steer_cli import audit, ct
from tests.support.k8s_cluster import K8sCluster, k8s_cluster  # noqa: F401 - the session fixture


def _deployment(name: str, node: str, replicas: int, image: str, cause: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                           "terminationGracePeriodSeconds": 5,
                                           "containers": [{"name": "main", "image": image}]}}}}


def test_rollout_history_undo_restart_on_the_real_control_plane(redis_server: Any, k8s_cluster: K8sCluster,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    from kubernetes import client as kc

    from clustertop.control import k8s_rollout, signing
    from clustertop.control.kubernetes import K8sControl, K8sControlError
    from tests.collectors.test_k8s_real import node_body, wait_for

    api = k8s_cluster.client("admin")
    core, apps = kc.CoreV1Api(api), kc.AppsV1Api(api)
    tag = uuid.uuid4().hex[:6]
    ns, node = f"ro-{tag}", f"fake-ro-{tag}"
    key_path, _pub, _ = signing.generate(str(tmp_path), "alice")
    admin = ["--kubeconfig", str(k8s_cluster.kubeconfigs["admin"]), "--redis", redis_server.url, "--key", key_path]
    reader = ["--kubeconfig", str(k8s_cluster.kubeconfigs["reader"]), "--redis", redis_server.url]

    def dep() -> Any:
        return apps.read_namespaced_deployment("web", ns)

    def rolled_out(d: Any) -> bool:
        st = d.status
        return (d.metadata.generation == st.observed_generation and st.updated_replicas == 2
                and st.available_replicas == 2 and (st.replicas or 0) == 2)

    try:
        core.create_namespace({"metadata": {"name": ns}})
        body = node_body(node, 0)
        core.create_node(body)
        core.patch_node_status(node, {"status": body["status"]})
        apps.create_namespaced_deployment(ns, _deployment("web", node, 2, "registry.local/web:1", "first: image 1"))
        wait_for("revision 1 rolled out", dep, rolled_out)
        # The second rollout: a new image and a new change-cause (as `kubectl annotate` would set it).
        apps.patch_namespaced_deployment("web", ns, {
            "metadata": {"annotations": {"kubernetes.io/change-cause": "second: image 2"}},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.local/web:2"}]}}}})
        wait_for("revision 2 rolled out", dep, lambda d: rolled_out(d) and
                 d.metadata.annotations.get("deployment.kubernetes.io/revision") == "2")

        r = ct("k8s", "rollout", "history", f"{ns}/web", *admin)
        assert r.returncode == 0, r.stderr
        assert "2 revision(s)" in r.stdout
        assert "revision 1: first: image 1 [main=registry.local/web:1]" in r.stdout
        assert "revision 2: second: image 2 [main=registry.local/web:2]" in r.stdout
        r = ct("k8s", "rollout", "status", f"{ns}/web", "--wait", "60", *admin)
        assert r.returncode == 0 and "successfully rolled out" in r.stdout, r.stderr

        # The reader may read but not change: refused before anything, nothing audited.
        r = ct("k8s", "rollout", "undo", f"{ns}/web", "--yes", *reader)
        assert r.returncode == 1 and "may not patch deployments" in r.stderr, r.stderr
        # No terminal, no --yes: the plan is shown, then refused; the template is untouched.
        r = ct("k8s", "rollout", "undo", f"{ns}/web", *admin)
        assert r.returncode == 1 and "not a terminal" in r.stderr, r.stderr
        assert ("back from revision 2 to the pod template of revision 1 (first: image 1); images "
                "main=registry.local/web:2 -> main=registry.local/web:1") in r.stdout, r.stdout
        assert dep().spec.template.spec.containers[0].image == "registry.local/web:2"
        assert audit(redis_server) == []

        r = ct("k8s", "rollout", "undo", f"{ns}/web", "--yes", *admin)
        assert r.returncode == 0 and "to the template of revision 1" in r.stdout, r.stderr
        d = wait_for("undo rolled out as revision 3", dep, lambda d: rolled_out(d) and
                     d.metadata.annotations.get("deployment.kubernetes.io/revision") == "3")
        assert d.spec.template.spec.containers[0].image == "registry.local/web:1"
        assert d.metadata.annotations["kubernetes.io/change-cause"] == "first: image 1"
        # Revision 1's ReplicaSet was adopted again as revision 3: history shows 2 and 3, 3 with 1's cause.
        r = ct("k8s", "rollout", "history", f"{ns}/web", *admin)
        assert r.returncode == 0, r.stderr
        assert "revision 1:" not in r.stdout and "revision 2: second: image 2" in r.stdout
        assert "revision 3: first: image 1 [main=registry.local/web:1]" in r.stdout
        r = ct("k8s", "rollout", "undo", f"{ns}/web", "--to-revision", "7", "--yes", *admin)
        assert r.returncode == 1 and "no revision 7 (have: 2, 3)" in r.stderr, r.stderr

        r = ct("k8s", "rollout", "restart", f"{ns}/web", "--yes", *admin)
        assert r.returncode == 0 and "restarted deployment" in r.stdout, r.stderr
        d = wait_for("restart rolled out as revision 4", dep, lambda d: rolled_out(d) and
                     d.metadata.annotations.get("deployment.kubernetes.io/revision") == "4")
        stamp = d.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]
        assert stamp in r.stdout
        assert d.spec.template.spec.containers[0].image == "registry.local/web:1"

        # An undo planned on a Deployment that changed since (here: scaled) is refused by the patch's
        # resourceVersion test, not applied over the change.
        ctl = K8sControl(str(k8s_cluster.kubeconfigs["admin"]))
        try:
            plan = k8s_rollout.plan_undo(ctl, ns, "web")
            assert plan.target.number == 3
            apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})  # was 2
            with pytest.raises(K8sControlError) as err:
                k8s_rollout.undo(ctl, plan)
            assert err.value.status in (409, 422), (err.value.status, str(err.value))
            assert dep().metadata.annotations["deployment.kubernetes.io/revision"] == "4"
        finally:
            ctl.close()

        # describe and events: the real deployment controller's events; hostile event text arrives escaped.
        core.create_namespaced_event(ns, {
            "metadata": {"name": f"web.{tag}"}, "type": "Warning", "reason": "Odd\x1b[2J", "count": 3,
            "message": "evil \x1b]0;pwned\x07 \u202eright-to-left " + "x" * 5000,
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": ns, "apiVersion": "apps/v1"},
            "source": {"component": "test"}, "lastTimestamp": "2026-01-01T00:00:00Z"})
        # The reader may read deployments but not events: described, events said to be not permitted.
        r = ct("k8s", "describe", "deployment", f"{ns}/web", *reader)
        assert r.returncode == 0 and "revision: 4" in r.stdout, r.stderr
        assert r.stdout.rstrip().endswith("events: not shown (Kubernetes says you may not list events here)")
        r = ct("k8s", "events", "deployment", f"{ns}/web", *reader)
        assert r.returncode == 1 and "may not list events" in r.stderr, r.stderr
        r = ct("k8s", "describe", "deployment", f"{ns}/web", *admin)
        assert r.returncode == 0, r.stderr
        for want in (f"Deployment {ns}/web", "revision: 4", "change-cause: first: image 1",
                     "container main: registry.local/web:1", "Available=True", "Progressing=True",
                     "Normal ScalingReplicaSet", "[deployment-controller]"):
            assert want in r.stdout, (want, r.stdout)
        r = ct("k8s", "events", "deployment", f"{ns}/web", *admin)
        assert r.returncode == 0, r.stderr
        assert "2026-01-01T00:00:00Z Warning Odd\\x1b[2J (x3): evil \\x1b]0;pwned\\x07 \\u202eright" in r.stdout
        assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout
        r = ct("k8s", "events", "pod", f"{ns}/nothing-here", *admin)
        assert r.returncode == 0 and "no events" in r.stdout, r.stderr

        got = [(e.actor, e.action, e.target, e.result, e.where) for e in audit(redis_server)]
        assert got == [("alice", "k8s.rollout_undo", f"{ns}/web to revision 1", "ok", "cli"),
                       ("alice", "k8s.rollout_restart", f"{ns}/web", "ok", "cli")], got
    finally:
        core.delete_namespace(ns)
        core.delete_node(node)
        api.close()


def test_cordon_drain_respects_pdb_uncordon_on_the_real_control_plane(
        redis_server: Any, k8s_cluster: K8sCluster) -> None:  # noqa: F811
    from kubernetes import client as kc

    from clustertop.control import k8s_rollout
    from clustertop.control.kubernetes import K8sControl
    from tests.collectors.test_k8s_real import node_body, pod_body, wait_for

    api = k8s_cluster.client("admin")
    core, apps = kc.CoreV1Api(api), kc.AppsV1Api(api)
    ctl = K8sControl(str(k8s_cluster.kubeconfigs["admin"]))
    tag = uuid.uuid4().hex[:6]
    ns, node = f"dr-{tag}", f"fake-dr-{tag}"
    admin = ["--kubeconfig", str(k8s_cluster.kubeconfigs["admin"]), "--redis", redis_server.url,
             "--operator", "bob"]
    reader = ["--kubeconfig", str(k8s_cluster.kubeconfigs["reader"]), "--redis", redis_server.url]

    def pods() -> dict[str, Any]:
        return {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}

    try:
        core.create_namespace({"metadata": {"name": ns}})
        body = node_body(node, 0)
        core.create_node(body)
        core.patch_node_status(node, {"status": body["status"]})
        apps.create_namespaced_deployment(ns, _deployment("batch", node, 2, "registry.local/batch:1", "v1"))
        apps.create_namespaced_deployment(ns, _deployment("guarded", node, 1, "registry.local/db:1", "v1"))
        core.create_namespaced_pod(ns, pod_body("loner", 0, node))
        # minAvailable = replicas: the disruption controller allows 0 disruptions.
        k8s_rollout.send(ctl, "create pdb", "POST", f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets",
                         {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
                          "metadata": {"name": "keep-db"},
                          "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}},
                         "application/json")
        wait_for("4 pods running", pods, lambda ps: len(ps) == 4 and
                 all(p.status.phase == "Running" for p in ps.values()))
        wait_for("PDB observed", lambda: _get_pdb_json(ctl, ns),
                 lambda b: (b.get("status") or {}).get("currentHealthy") == 1
                 and (b.get("status") or {}).get("disruptionsAllowed") == 0)
        names = pods()
        batch = sorted(n for n in names if n.startswith("batch-"))
        guarded = next(n for n in names if n.startswith("guarded-"))

        r = ct("k8s", "drain", node, "--yes", *reader)
        assert r.returncode == 1 and "may not patch nodes cluster-wide" in r.stderr, r.stderr
        r = ct("k8s", "drain", node, "--dry-run", *admin)
        assert r.returncode == 0, r.stderr
        assert f"node {node}: will be cordoned; 3 pod(s) to evict, 0 ignored, 1 refused" in r.stdout, r.stdout
        for b in batch:
            assert f"evict   {ns}/{b}: ReplicaSet batch-" in r.stdout
        assert f"evict   {ns}/{guarded}: ReplicaSet guarded-" in r.stdout
        assert f"PDB {ns}/keep-db (0 disruption(s) allowed)" in r.stdout
        assert f"REFUSED {ns}/loner: not managed by a controller" in r.stdout
        assert not core.read_node(node).spec.unschedulable  # a dry run changes nothing

        r = ct("k8s", "drain", node, "--yes", *admin)
        assert r.returncode == 1, r.stderr  # the node still has pods: the PDB's and the loner
        assert core.read_node(node).spec.unschedulable is True
        assert f"NOT evicted {ns}/{guarded}: refused by its PodDisruptionBudget" in r.stdout, r.stdout
        for b in batch:
            assert f"evicted {ns}/{b}: evicted" in r.stdout
        # The drain waited for the two evicted pods to leave the node (the stand-in kubelet confirms the
        # deletions, often before the first look: no "0 of 2" is promised); the 429'd pod is not waited on.
        assert "2 of 2 pod(s) gone" in r.stdout and "STILL THERE" not in r.stdout, r.stdout
        left = {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}
        assert not set(batch) & set(left)  # gone when the command returned, not later
        assert guarded in left and "loner" in left
        # Their replacements cannot go anywhere: the only node they select is cordoned.
        assert all(p.status.phase == "Pending" for n, p in left.items() if n.startswith("batch-"))

        r = ct("k8s", "uncordon", node, "--yes", *admin)
        assert r.returncode == 0 and "was cordoned before" in r.stdout, r.stderr
        assert not core.read_node(node).spec.unschedulable
        r = ct("k8s", "cordon", node, "--yes", *admin)
        assert r.returncode == 0 and "was not cordoned before" in r.stdout, r.stderr
        assert core.read_node(node).spec.unschedulable is True

        got = [(e.actor, e.action, e.target, e.result.split(":")[0], e.where) for e in audit(redis_server)]
        assert got == [("bob", "k8s.drain", node, "failed", "cli"), ("bob", "k8s.uncordon", node, "ok", "cli"),
                       ("bob", "k8s.cordon", node, "ok", "cli")], got
    finally:
        core.delete_namespace(ns)
        core.delete_node(node)
        ctl.close()
        api.close()


def _get_pdb_json(ctl: Any, ns: str) -> dict[str, Any]:
    from clustertop.control.k8s_nodes import list_pdbs

    items = list_pdbs(ctl, ns)
    return items[0] if items else {}


def test_drain_waits_bounded_and_names_pods_still_there(redis_server: Any, k8s_cluster: K8sCluster) -> None:  # noqa: F811
    """A node no kubelet serves (not ``fake-*``: the stand-in kubelet leaves it alone): an evicted pod gets its
    deletionTimestamp and stays, as on a node whose kubelet is gone. The drain waits ``--timeout`` and names
    it; exit 1 and the audit entry says failed."""
    from kubernetes import client as kc

    from tests.collectors.test_k8s_real import node_body, pod_body

    api = k8s_cluster.client("admin")
    core = kc.CoreV1Api(api)
    tag = uuid.uuid4().hex[:6]
    ns, node = f"dw-{tag}", f"gone-{tag}"
    admin = ["--kubeconfig", str(k8s_cluster.kubeconfigs["admin"]), "--redis", redis_server.url, "--operator", "eve"]
    try:
        core.create_namespace({"metadata": {"name": ns}})
        body = node_body(node, 0)
        core.create_node(body)
        core.patch_node_status(node, {"status": body["status"]})
        core.create_namespaced_pod(ns, pod_body("stuck", 0, node))
        r = ct("k8s", "drain", node, "--force", "--yes", "--timeout", "2", *admin)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert f"evicted {ns}/stuck: evicted" in r.stdout and "0 of 1 pod(s) gone" in r.stdout, r.stdout
        assert f"STILL THERE {ns}/stuck after 2 s" in r.stdout, r.stdout
        assert f"0 of 1 pod(s) gone after 2 s; still there: {ns}/stuck" in r.stderr, r.stderr
        assert core.read_namespaced_pod("stuck", ns).metadata.deletion_timestamp is not None  # marked, not gone
        got = [(e.actor, e.action, e.target, e.result.split(":")[0]) for e in audit(redis_server)]
        assert ("eve", "k8s.drain", node, "failed") in got, got
    finally:
        try:
            core.delete_namespaced_pod("stuck", ns, grace_period_seconds=0)
        except kc.exceptions.ApiException:
            pass
        core.delete_namespace(ns)
        core.delete_node(node)
        api.close()
