"""The Work screen's Kubernetes depth keys (dashboard/k8s_ops.py) against the real control plane of
tests/support/k8s_cluster.py (``FakeKubelet`` stands in for kubelets: none can run here) and a real
redis-server: ``H`` shows a Deployment's rollout history with its change-causes, ``u`` shows the undo's
target first and rolls back after the confirm (audited, signed), ``R`` restarts, ``i`` describes with the
events escaped; read-only hides and refuses undo and restart.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from clustertop import wire
from clustertop.dashboard import k8s_ops
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.logs import LogsViewer
from clustertop.dashboard.screens.work import WorkScreen
from clustertop.wire import schema
from tests.dashboard.test_dashboard_actions import app_for, audit_entries, body_text, key  # noqa: F401 - fixture
from tests.support import builders as b
from tests.support.k8s_cluster import K8sCluster, k8s_cluster  # noqa: F401 - the session fixture

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _deployment(node: str, image: str, cause: str) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                           "terminationGracePeriodSeconds": 5,
                                           "containers": [{"name": "main", "image": image}]}}}}


async def test_history_undo_restart_describe_from_the_work_screen(redis_server: Any, key: Any,  # noqa: F811
                                                                   k8s_cluster: K8sCluster) -> None:  # noqa: F811
    from kubernetes import client as kc

    from tests.collectors.test_k8s_real import node_body, wait_for

    api = k8s_cluster.client("admin")
    core, apps = kc.CoreV1Api(api), kc.AppsV1Api(api)
    tag = uuid.uuid4().hex[:6]
    ns, node = f"dk-{tag}", f"fake-dk-{tag}"

    def dep() -> Any:
        return apps.read_namespaced_deployment("web", ns)

    def at(rev: str) -> Any:
        return lambda d: (d.metadata.annotations.get("deployment.kubernetes.io/revision") == rev
                          and d.status.observed_generation == d.metadata.generation and d.status.updated_replicas == 1
                          and d.status.available_replicas == 1 and d.status.replicas == 1)

    core.create_namespace({"metadata": {"name": ns}})
    body = node_body(node, 0)
    core.create_node(body)
    core.patch_node_status(node, {"status": body["status"]})
    app = None
    try:
        apps.create_namespaced_deployment(ns, _deployment(node, "registry.local/web:1", "one"))
        wait_for("revision 1", dep, at("1"))
        apps.patch_namespaced_deployment("web", ns, {
            "metadata": {"annotations": {"kubernetes.io/change-cause": "two"}},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.local/web:2"}]}}}})
        wait_for("revision 2", dep, at("2"))
        core.create_namespaced_event(ns, {
            "metadata": {"name": f"web.{tag}"}, "type": "Warning", "reason": "Odd", "message": "esc \x1b[31m [b]x[/b]",
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": ns, "apiVersion": "apps/v1"},
            "lastTimestamp": "2026-01-01T00:00:00Z"})
        payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True, kubernetes=schema.Kubernetes(
            workloads=[schema.K8sWorkload(kind="Deployment", namespace=ns, name="web", replicas=1, ready=1)]))
        rc = redis_server.client()
        b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
        app = app_for(redis_server, kubeconfig=str(k8s_cluster.kubeconfigs["admin"]), operator="alice@ops",
                      operator_key=key[0])
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6")
            screen = app.screen
            assert isinstance(screen, WorkScreen)
            screen.query_one("#work-tabs").active = "workloads"
            await b.wait_until(pilot, lambda: screen.table("workloads").row_count == 1, "the deployment row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            for action in ("k8s_describe", "k8s_history", "k8s_undo", "k8s_restart"):
                assert screen.check_action(action, ()) is True, action

            await pilot.press("H")
            viewer = app.screen
            assert isinstance(viewer, LogsViewer)
            await b.wait_until(pilot, lambda: viewer.text is not None or viewer.error is not None, "history",
                               tries=1500)
            assert viewer.error is None and viewer.text is not None
            assert "status: deployment web successfully rolled out" in viewer.text
            assert "revision 1: one [main=registry.local/web:1]" in viewer.text
            assert "revision 2: two [main=registry.local/web:2]" in viewer.text
            await pilot.press("escape")

            await pilot.press("u")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the undo plan", tries=1500)
            text = body_text(app.screen)
            assert "revision 1: one" in text and "main=registry.local/web:2" in text, text
            assert dep().spec.template.spec.containers[0].image == "registry.local/web:2"  # nothing yet
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the undo", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            d = wait_for("revision 3", dep, at("3"))
            assert d.spec.template.spec.containers[0].image == "registry.local/web:1"

            await pilot.press("R")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the restart dialog", tries=1500)
            assert "every pod is replaced" in body_text(app.screen)
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 2, "the restart", tries=1500)
            assert acts.done[1].outcome.ok, acts.done[1].outcome.text
            d = wait_for("revision 4", dep, at("4"))
            assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations

            await pilot.press("i")
            viewer = app.screen
            assert isinstance(viewer, LogsViewer)
            await b.wait_until(pilot, lambda: viewer.text is not None or viewer.error is not None, "describe",
                               tries=1500)
            assert viewer.text is not None, viewer.error
            assert f"Deployment {ns}/web" in viewer.text and "revision: 4" in viewer.text
            assert "Warning Odd: esc \\x1b[31m [b]x[/b]" in viewer.text and "\x1b" not in viewer.text
            await pilot.press("escape")

            got = [(e.actor, e.action, e.target, e.result, e.where) for e in audit_entries(rc)]
            assert got == [("ops", "k8s.rollout_undo", f"{ns}/web to revision 1", "ok", "dashboard"),
                           ("ops", "k8s.rollout_restart", f"{ns}/web", "ok", "dashboard")], got
    finally:
        if app is not None:
            actions_of(app).close()
        core.delete_namespace(ns)
        core.delete_node(node)
        api.close()


async def test_read_only_hides_and_refuses_undo_restart_cordon_drain(redis_server: Any) -> None:
    payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True, kubernetes=schema.Kubernetes(
        workloads=[schema.K8sWorkload(kind="Deployment", namespace="ml", name="web", replicas=1)]))
    rc = redis_server.client()
    b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
    app = app_for(redis_server, read_only=True, kubeconfig="/nonexistent")
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, WorkScreen)
        screen.query_one("#work-tabs").active = "workloads"
        await b.wait_until(pilot, lambda: screen.table("workloads").row_count == 1, "the deployment row")
        for action in ("k8s_undo", "k8s_restart", "k8s_cordon", "k8s_drain"):
            assert screen.check_action(action, ()) is False, action
        assert screen.check_action("k8s_history", ()) is True  # a read
        acts = actions_of(app)
        k8s_ops.ask_undo(acts, "ml", "web")
        k8s_ops.ask_restart(acts, "ml", "web", 1)
        k8s_ops.ask_cordon(acts, "n1", True)
        k8s_ops.ask_drain(acts, "n1")
        screen.action_k8s_undo()
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        assert not isinstance(app.screen, ConfirmDialog) and acts.done == []
        assert rc.xlen(wire.operator_audit_key("ops")) == 0
        assert any("read-only" in n.message for n in app._notifications)


async def test_cordon_and_drain_from_the_gpu_ledger(redis_server: Any, key: Any,  # noqa: F811
                                                    k8s_cluster: K8sCluster) -> None:  # noqa: F811
    """D on a Kubernetes node's ledger row: the plan first (evict / refused, the PDB), then the drain: the
    pod under a PodDisruptionBudget with minAvailable = replicas is refused (429), the other evicted. C
    uncordons it again."""
    from kubernetes import client as kc

    from clustertop.control import k8s_rollout
    from clustertop.control.kubernetes import K8sControl
    from tests.cli.test_k8s_ops_cli import _get_pdb_json
    from tests.collectors.test_k8s_real import node_body, wait_for

    api = k8s_cluster.client("admin")
    core, apps = kc.CoreV1Api(api), kc.AppsV1Api(api)
    ctl = K8sControl(str(k8s_cluster.kubeconfigs["admin"]))
    tag = uuid.uuid4().hex[:6]
    ns, node = f"dd-{tag}", f"fake-dd-{tag}"

    def pods() -> dict[str, Any]:
        return {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}

    core.create_namespace({"metadata": {"name": ns}})
    body = node_body(node, 0)
    core.create_node(body)
    core.patch_node_status(node, {"status": body["status"]})
    app = None
    try:
        for name in ("free", "guarded"):
            d = _deployment(node, "registry.local/x:1", "v1")
            d["metadata"]["name"] = name
            d["spec"]["selector"]["matchLabels"] = d["spec"]["template"]["metadata"]["labels"] = {"app": name}
            apps.create_namespaced_deployment(ns, d)
        k8s_rollout.send(ctl, "create pdb", "POST", f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets",
                         {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep"},
                          "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}},
                         "application/json")
        wait_for("2 pods running", pods, lambda ps: len(ps) == 2 and all(p.status.phase == "Running"
                                                                           for p in ps.values()))
        wait_for("PDB observed", lambda: _get_pdb_json(ctl, ns),
                 lambda b_: (b_.get("status") or {}).get("disruptionsAllowed") == 0
                 and (b_.get("status") or {}).get("currentHealthy") == 1)
        free = next(n for n in pods() if n.startswith("free-"))
        guarded = next(n for n in pods() if n.startswith("guarded-"))
        payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True, kubernetes=schema.Kubernetes(
            nodes=[schema.K8sNode(name=node, ready=True, gpu_capacity=0, gpu_allocatable=0)]))
        rc = redis_server.client()
        b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
        app = app_for(redis_server, kubeconfig=str(k8s_cluster.kubeconfigs["admin"]), operator="alice@ops",
                      operator_key=key[0], drain_timeout_s=90)  # [dashboard] drain_timeout
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6")
            screen = app.screen
            assert isinstance(screen, WorkScreen)
            screen.query_one("#work-tabs").active = "ledger"
            table = screen.table("ledger")
            await b.wait_until(pilot, lambda: node in table.keys, "the node's ledger row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            table.move_cursor(table.get_row_index("gpu-01"))
            await pilot.pause()
            assert screen.check_action("k8s_drain", ()) is False  # an agent's node not in Kubernetes
            table.move_cursor(table.get_row_index(node))
            await pilot.pause()
            assert screen.check_action("k8s_drain", ()) is True and screen.check_action("k8s_cordon", ()) is True

            await pilot.press("D")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the drain plan", tries=1500)
            text = body_text(app.screen)
            assert f"node {node}: will be cordoned; 2 pod(s) to evict, 0 ignored, 0 refused" in text, text
            assert f"evict   {ns}/{guarded}: ReplicaSet guarded-" in text and f"PDB {ns}/keep (0 disruption" in text
            assert "waits up to 90 s for the evicted pods to go" in text, text
            assert not core.read_node(node).spec.unschedulable  # the plan changed nothing
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the drain", tries=1500)
            out = acts.done[0].outcome
            assert not out.ok and "1 evicted, 1 not evicted" in out.text, out.text
            assert f"{ns}/{guarded}: refused by its PodDisruptionBudget" in out.text
            assert "1 of 1 pod(s) gone after" in out.text and "still there" not in out.text, out.text
            assert core.read_node(node).spec.unschedulable is True
            left = pods()
            assert free not in left  # the drain waited for it to go
            assert guarded in left

            # The ledger row says cordoned once the collector does; here the payload is republished so.
            payload.kubernetes.nodes[0].unschedulable = True  # type: ignore[union-attr]
            payload.ts = time.time()
            b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
            await b.wait_until(pilot, lambda: screen.ledger is not None and any(
                r.node == node and r.cordoned for r in screen.ledger.nodes), "the cordoned row", tries=1500)
            await pilot.press("C")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the uncordon dialog", tries=1500)
            assert "the scheduler may place pods on it again" in body_text(app.screen)
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 2, "the uncordon", tries=1500)
            assert acts.done[1].outcome.ok and "was cordoned before" in acts.done[1].outcome.text
            assert not core.read_node(node).spec.unschedulable

            got = [(e.action, e.target, e.result.split(":")[0], e.where) for e in audit_entries(rc)]
            assert got == [("k8s.drain", node, "failed", "dashboard"), ("k8s.uncordon", node, "ok", "dashboard")], got
    finally:
        if app is not None:
            actions_of(app).close()
        core.delete_namespace(ns)
        core.delete_node(node)
        ctl.close()
        api.close()
