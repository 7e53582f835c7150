"""Job control from the dashboard's keys, against real parts: a real redis-server, a real
``agents.commands.CommandExecutor`` thread (as the agent runs it) and real ``sleep`` processes,
the real Kubernetes control plane of tests/support/k8s_cluster.py, a real Celery worker.

What is proven: read-only hides and refuses every action (the footer's check AND a direct
``action_*`` call); ``k`` on a process row -> dialog -> confirm really terminates the process and
the agent's audit entry lands in the stream; Enter on a fresh dialog cancels; markup in a process
name shows literally; no key -> an explanation, no dialog; a real pod deleted through the
dashboard with the dashboard's own audit entry.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.control import signing
from clustertop.dashboard.actions import Actions, actions_of, kill_loss
from clustertop.dashboard.app import WRITE_ACTIONS, make_app
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.logs import LogsViewer
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.audit import AuditScreen
from clustertop.dashboard.screens.gpus import GpusScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.work import WorkScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.wire import schema
from tests.support import builders as b
from tests.support.k8s_cluster import VIEW_NAMESPACE, K8sCluster, k8s_cluster  # noqa: F401 - the session fixture

pytestmark = pytest.mark.anyio
NODE = "gpu-01"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key(tmp_path: Any) -> tuple[str, str]:
    kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    return kp, pub


@pytest.fixture
def agent(redis_server: Any, tmp_path: Any, key: tuple[str, str]) -> Iterator[CommandExecutor]:
    """The node's command executor in its own thread, as ``clustertop agent`` runs it."""
    stop = threading.Event()
    cfg = {"security": {"operator_keys": [key[1]], "allow_root": True}, "templates": {}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "state"), block_ms=100)
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    yield ex
    stop.set()
    t.join(10)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["sleep", "300"])
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


def publish_victim(client: Any, pid: int, cmdline: str = "sleep 300", name: str = "sleep") -> schema.GpuProc:
    """gpu-01 with the real process on GPU 0 (the GPU collector cannot run here: no GPU; the
    process itself, its pid and its start time are real)."""
    proc = schema.GpuProc(pid=pid, used_mem_bytes=3 * b.GIB, user="root", name=name, cmdline=cmdline,
                          start_ts=psutil.Process(pid).create_time(), owner=schema.Owner(kind="user", name="root"))
    snap = b.tower(NODE, (80, 5), ts=time.time())
    assert snap.gpus is not None
    snap.gpus[0].procs = [proc]
    assert snap.system is not None
    snap.system.procs = [schema.Proc(pid=pid, user="root", name=name, cmdline=cmdline, start_ts=proc.start_ts,
                                     cpu_pct=1.0)]
    b.publish(client, [snap])
    return proc


def app_for(redis_server: Any, **kw: Any) -> Any:
    settings = Settings(refresh_s=kw.pop("refresh_s", 0.3), source_label="test", action_timeout_s=20, **kw)
    return make_app(settings, redis_server.client)


async def open_gpu_procs(pilot: Any) -> GpusScreen:
    await b.wait_reads(pilot)
    await pilot.press("3")
    screen = pilot.app.screen
    assert isinstance(screen, GpusScreen)
    procs = screen.query_one("#procs-table", LiveTable)
    await b.wait_until(pilot, lambda: procs.row_count == 1, "the process row")
    return screen


def audit_entries(client: Any) -> list[schema.AuditEntry]:
    return [wire.decode(f[b"a"], schema.AuditEntry) for _id, f in client.xrange(wire.AUDIT_KEY)]


def body_text(dialog: ConfirmDialog) -> str:
    return str(dialog.query_one("#body-text").render())


# ---------------------------------------------------------------------------------------------
# Read-only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["read_only", "wall"])
async def test_read_only_hides_and_refuses_every_action(redis_server: Any, victim: Any, key: Any,
                                                        how: str) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0], **{how: True})
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        # Hidden: the app's check, and every screen that binds a job-control key.
        for action in WRITE_ACTIONS:
            assert app.check_action(action, ()) is False, action
        gpus, work = GpusScreen(), WorkScreen()
        app.install_screen(gpus, "t-gpus")
        app.install_screen(work, "t-work")
        for action in ("signal_process",):
            assert gpus.check_action(action, ("TERM",)) is False
        for action in ("job_delete", "job_kill", "job_logs", "job_scale", "job_pool", "job_launch"):
            assert work.check_action(action, ()) is False, action
        # Refused: direct calls reach the guard and stop there (no dialog, no command, no audit).
        acts = actions_of(app)
        proc = schema.Proc(pid=victim.pid, user="root", cmdline="sleep 300", start_ts=psutil.Process(victim.pid).create_time())
        acts.ask_signal(NODE, proc, "KILL")
        acts.ask_pick_process(NODE, "TERM")
        acts.ask_delete("Pod", "ml", "x")
        acts.ask_logs("ml", "x")
        acts.ask_scale("ml", "x", 1)
        acts.ask_revoke("celery@w1", schema.WorkerTask(id="t1"), terminate=True)
        acts.ask_pool("celery@w1", 1, 2)
        acts.ask_retire("tcp://1.2.3.4:1", 0)
        acts.ask_launch()
        work.action_job_delete()
        work.action_job_kill()
        work.action_job_launch()
        # The execution-time guard too: a stale dialog's callback calling execute() directly.
        called: list[int] = []
        acts.execute("signal", "x", lambda: called.append(1))  # type: ignore[arg-type,return-value]
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmDialog, PickDialog, LogsViewer))
        assert called == []
        assert client.xlen(wire.cmd_key(NODE)) == 0 and client.xlen(wire.AUDIT_KEY) == 0
        assert victim.poll() is None
        msgs = [n.message for n in app._notifications]
        assert any("read-only" in m and "refused" in m for m in msgs), msgs


# ---------------------------------------------------------------------------------------------
# k / K on a real process
# ---------------------------------------------------------------------------------------------


async def test_k_terminates_a_real_process_and_the_agent_audits_it(redis_server: Any, agent: Any, victim: Any,
                                                                   key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0], operator="alice@ops")
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        text = body_text(dialog)
        for want in (NODE, str(victim.pid), "root", "sleep 300", "user root", "SIGTERM",
                     "frees 3.0 GiB of VRAM on GPU 0", "TERM lets it clean up"):
            assert want in text, (want, text)
        assert dialog.focused is not None and dialog.focused.id == "cancel"  # Cancel is the default
        await pilot.press("tab")
        assert dialog.focused is not None and dialog.focused.id == "confirm"
        await pilot.press("enter")
        assert victim.wait(20) == -signal.SIGTERM  # really terminated, by the agent
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
        out = acts.done[0].outcome
        assert out.ok and out.audited and f"sent TERM to pid {victim.pid}" in out.text
        entries = audit_entries(client)
        assert len(entries) == 1  # the agent's entry; the dashboard does not write a second one
        e = entries[0]
        assert (e.actor, e.action, e.result, e.where) == ("alice@ops", "signal", "ok", f"agent:{NODE}")
        assert str(victim.pid) in e.target and e.command_id == out.command_id
        # The audit screen shows it (read in its worker).
        await pilot.press("7")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        await b.wait_until(pilot, lambda: screen.query_one(LiveTable).row_count == 1, "audit row")
        row = [c.plain for c in screen.query_one(LiveTable).get_row_at(0)]
        assert row[1:5] == ["alice@ops", "signal", e.target, "ok"]
        assert "the 1 newest entry" in str(screen.query_one("#audit-status").render())


async def test_shift_k_on_the_node_screen_picks_then_kills(redis_server: Any, agent: Any, victim: Any,
                                                           key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        app.open_node(NODE)
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        await pilot.press("K")
        assert isinstance(app.screen, PickDialog)
        await pilot.press("enter")  # picking only selects: the confirm dialog comes next
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and "SIGKILL" in body_text(dialog)
        await pilot.press("tab", "enter")
        assert victim.wait(20) == -signal.SIGKILL


async def test_enter_on_a_fresh_dialog_cancels(redis_server: Any, agent: Any, victim: Any, key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("K")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")
        assert isinstance(app.screen, GpusScreen)
        await pilot.press("k", "escape")
        assert isinstance(app.screen, GpusScreen)
        await pilot.pause(0.5)
        assert client.xlen(wire.cmd_key(NODE)) == 0  # nothing was sent
        assert victim.poll() is None and actions_of(app).done == []


async def test_markup_in_a_process_name_shows_literally(redis_server: Any, victim: Any, key: Any) -> None:
    client = redis_server.client()
    evil = "[b]python[/b] [$accent]x[/] [@click=app.quit]y[/]"
    publish_victim(client, victim.pid, cmdline=evil, name="[red]sleep")
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert evil in body_text(dialog)
        await pilot.press("escape")


async def test_without_a_key_it_explains_how_to_get_one(redis_server: Any, victim: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server)  # no operator key
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        assert isinstance(app.screen, GpusScreen)  # no dialog that could only fail
        msgs = [n.message for n in app._notifications]
        assert any("clustertop keygen" in m and "--key" in m for m in msgs), msgs
        assert client.xlen(wire.cmd_key(NODE)) == 0


async def test_an_agent_that_never_answers_is_audited_by_the_dashboard(redis_server: Any, victim: Any,
                                                                       key: Any) -> None:
    client = redis_server.client()
    proc = publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    app.settings.action_timeout_s = 1.0
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        acts = actions_of(app)
        assert proc.start_ts is not None
        acts.execute("signal", f"{NODE} pid {victim.pid}", lambda: acts.signal(NODE, victim.pid, proc.start_ts or 0, "TERM"))
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the timeout", tries=1500)
        assert not acts.done[0].outcome.ok and "no answer within 1 s" in acts.done[0].outcome.text
        (e,) = audit_entries(client)
        assert e.where == "dashboard" and e.result.startswith("failed: ") and e.command_id
        assert client.xlen(wire.cmd_key(NODE)) == 1  # it was sent, signed, and is waiting for an agent
        assert victim.poll() is None


def test_kill_loss_names_what_is_lost() -> None:
    gp = b.gpu_proc(7001, "python", "alice", 9.0, pod="train-resnet-0")
    snap = b.tower("gpu-06", (99, 97))
    assert snap.gpus is not None
    snap.gpus[1].procs = [gp]
    pods = [schema.K8sPod(namespace="ml", name="train-resnet-0", owner_kind="Job", owner="train-resnet")]
    text = kill_loss(gp, snap, "TERM", pods)
    assert "training job in pod ml/train-resnet-0: unsaved progress since the last checkpoint" in text
    assert "owned by Job train-resnet" in text and "frees 9.0 GiB of VRAM on GPU 1" in text
    snap.tasks = [schema.Task(id="t9", template="train", pid=7001, job="j1", rank=1)]
    assert "task t9 from template train (job j1, rank 1: the other ranks may stall or fail)" in kill_loss(
        gp, snap, "KILL", pods)
    assert "KILL gives it no chance" in kill_loss(gp, snap, "KILL")
    plain = schema.Proc(pid=5, user="bob")
    assert kill_loss(plain, None, "TERM").startswith("work of user bob")
    assert isinstance(Actions, type)


# ---------------------------------------------------------------------------------------------
# Kubernetes: a real control plane (tests/support/k8s_cluster.py), the pod deleted through the dashboard
# ---------------------------------------------------------------------------------------------


async def test_ctrl_d_deletes_a_real_pod_with_the_impact_shown_first(redis_server: Any,
                                                                    k8s_cluster: K8sCluster) -> None:  # noqa: F811
    import json

    from kubernetes import client as kc

    from clustertop.collectors import kubernetes_parse as k8s_parse
    from tests.collectors.test_k8s_real import node_body, pod_body, wait_for

    cluster = k8s_cluster

    api = cluster.client("admin")
    core = kc.CoreV1Api(api)
    tag = str(int(time.time() * 1000) % 10**8)
    ns, node, pod = f"dash-{tag}", f"fake-dash-{tag}", "scratch"
    core.create_namespace({"metadata": {"name": ns}})
    body = node_body(node, 2)
    core.create_node(body)
    core.patch_node_status(node, {"status": body["status"]})
    core.create_namespaced_pod(ns, pod_body(pod, 1, node))

    def phase() -> str | None:
        try:
            return str(core.read_namespaced_pod(pod, ns).status.phase)
        except kc.exceptions.ApiException as e:
            if e.status == 404:
                return None
            raise

    wait_for("pod running", phase, lambda p: p == "Running")
    raw = core.list_namespaced_pod(ns, _preload_content=False)
    pods = k8s_parse.parse_pods(json.loads(raw.data))
    payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True,
                                    kubernetes=schema.Kubernetes(pods=pods))
    rc = redis_server.client()
    b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
    app = app_for(redis_server, kubeconfig=str(cluster.kubeconfigs["admin"]), operator="alice@ops")
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6")
            screen = app.screen
            assert isinstance(screen, WorkScreen)
            screen.query_one("#work-tabs").active = "pods"
            await b.wait_until(pilot, lambda: screen.table("pods").row_count == 1, "the pod row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            assert acts.k8s_allowed == {"delete_pod": True, "delete_job": True, "create_job": True,
                                        "scale_deployment": True, "pod_logs": True}
            # l: logs come from a kubelet; none serves here -> a clear error in the viewer.
            await pilot.press("l")
            viewer = app.screen
            assert isinstance(viewer, LogsViewer)
            await b.wait_until(pilot, lambda: viewer.error is not None, "the logs answer", tries=1500)
            assert "kubelet did not serve" in viewer.error
            await pilot.press("escape")
            await pilot.press("ctrl+d")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the impact preview", tries=1500)
            dialog = app.screen
            assert "not managed: gone for good; its running processes are killed" in body_text(dialog)
            assert phase() == "Running"  # the preview changed nothing
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the delete", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            wait_for("pod deleted", phase, lambda p: p is None)
            (e,) = audit_entries(rc)
            assert (e.actor, e.action, e.target, e.result, e.where) == (
                "alice@ops", "k8s.delete_pod", f"{ns}/{pod}", "ok", "dashboard")
    finally:
        actions_of(app).close()
        api.close()


async def test_can_i_hides_kubernetes_keys_the_operator_may_not_use(redis_server: Any,
                                                                     k8s_cluster: K8sCluster) -> None:  # noqa: F811
    cluster = k8s_cluster
    pods = [schema.K8sPod(namespace=VIEW_NAMESPACE, name="p1", node="n1", phase="Running")]
    payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True,
                                    kubernetes=schema.Kubernetes(pods=pods))
    b.publish(redis_server.client(), [b.tower("gpu-01", ts=time.time())], cluster=[payload])
    app = app_for(redis_server, kubeconfig=str(cluster.kubeconfigs["reader"]))
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6")
            screen = app.screen
            assert isinstance(screen, WorkScreen)
            screen.query_one("#work-tabs").active = "pods"
            await b.wait_until(pilot, lambda: screen.table("pods").row_count == 1, "the pod row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            assert acts.k8s_allowed is not None and not acts.k8s_allowed["delete_pod"]
            assert screen.check_action("job_delete", ()) is False  # hidden: Kubernetes said no
            assert screen.check_action("job_launch", ()) is True
    finally:
        actions_of(app).close()


# ---------------------------------------------------------------------------------------------
# Celery: a real worker (tests/collectors/test_celery.py's harness) on the same real redis-server
# ---------------------------------------------------------------------------------------------


@pytest.mark.heavy  # a real Celery worker / Dask cluster
async def test_ctrl_k_terminates_a_real_celery_task_and_plus_grows_the_pool(redis_server: Any, tmp_path: Any) -> None:
    import os
    from pathlib import Path

    pytest.importorskip("celery")
    from tests.collectors.test_celery import CeleryWorker, wait_for

    worker = CeleryWorker(redis_server.url)
    app = None
    try:
        worker.wait_ready()
        marker = tmp_path / "victim"
        res = worker.control.app.send_task("ct.touch_after", args=(str(marker), 60), queue="work")
        started = Path(str(marker) + ".started")
        pid = int(wait_for("the task to start", lambda: started.exists() and started.read_text()))
        payload = schema.ClusterPayload(name="celery", ts=time.time(), ok=True, queues=schema.Queues(workers=[
            schema.Worker(name=worker.name, host="ct-test", online=True, pool_size=2,
                          active=[schema.WorkerTask(id=res.id, name="ct.touch_after", runtime_s=1.0)])]))
        rc = redis_server.client()
        b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
        app = app_for(redis_server, celery_broker=redis_server.url, operator="alice@ops", refresh_s=5)
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6", "right_square_bracket")
            screen = app.screen
            assert isinstance(screen, WorkScreen) and screen.pane == "workers"
            await b.wait_until(pilot, lambda: screen.table().row_count == 2, "worker and task rows")
            await pilot.press("plus")  # on the worker row: grow its pool by one (cheap to undo: no dialog)
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "pool grow", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            from clustertop.collectors import queues_parse

            def size() -> int | None:
                stats = worker.control.app.control.inspect(timeout=1, destination=[worker.name]).stats() or {}
                return queues_parse.pool_size(stats.get(worker.name, {}))

            wait_for("the pool to have 3 processes", lambda: size() == 3)
            await pilot.press("down", "ctrl+k")
            dialog = app.screen
            assert isinstance(dialog, ConfirmDialog) and res.id in body_text(dialog)
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 2, "revoke+terminate", tries=1500)
            assert acts.done[1].outcome.ok, acts.done[1].outcome.text

            def gone() -> bool:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                try:
                    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
                except OSError:
                    return True

            wait_for("the pool process running the task to be terminated", gone)
            assert not marker.exists()
            entries = audit_entries(rc)
            assert [(e.action, e.result, e.where, e.actor) for e in entries] == [
                ("celery.pool_grow", "ok", "dashboard", "alice@ops"),
                ("celery.terminate", "ok", "dashboard", "alice@ops")]
            assert res.id in entries[1].target
    finally:
        if app is not None:
            actions_of(app).close()
        worker.stop()


async def test_n_launches_a_template_on_a_real_agent(redis_server: Any, tmp_path: Any, key: Any) -> None:
    from textual.widgets import Input, SelectionList

    from clustertop.dashboard.dialogs.launcher import LauncherDialog

    stop = threading.Event()
    cfg = {"security": {"operator_keys": [key[1]], "allow_root": True},
           "templates": {"nap": {"argv": ["sleep", "{s}"], "params": {"s": "int"}, "description": "sleep a while"}}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "state"), block_ms=100)
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    try:
        snap = b.tower(NODE, ts=time.time())
        snap.templates = [schema.TemplateInfo(name="nap", description="sleep a while", params={"s": "int"})]
        b.publish(redis_server.client(), [snap])
        app = app_for(redis_server, operator_key=key[0])
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6", "n")
            await b.wait_until(pilot, lambda: isinstance(app.screen, LauncherDialog), "the launcher")
            dialog = app.screen
            await b.wait_until(pilot, lambda: dialog.current is not None, "the first template picked")
            await pilot.pause()
            dialog.query_one("#form Input", Input).value = "300"
            dialog.query_one("#nodes", SelectionList).select_all()
            dialog.query_one("#confirm").press()
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the launch confirmation")
            assert "nap" in body_text(app.screen) and "s=300" in body_text(app.screen)
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the launch", tries=1500)
            out = acts.done[0].outcome
            assert out.ok and "launched nap as task" in out.text, out.text
            (task,) = ex.tasks()
            assert task.state == "running" and task.argv == ["sleep", "300"]
            ex.task_mgr.stop(task.id)
    finally:
        stop.set()
        t.join(10)
