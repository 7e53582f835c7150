"""Job control in the demo, from the dashboard's keys: `k` on a simulated training process goes through the
real dialog, is signed with the demo's ephemeral key, checked and answered by the simulated node with the
real agent code, and ends the simulated job; Kubernetes, Celery and Dask actions act on the simulated cluster
(sim/control.py) and are audited in the demo operator's stream.

The demo's own backend (cli.modes.start_demo: embedded store, simulator thread, simulated agents) behind
the real app under Textual's pilot.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import OptionList

from clustertop import wire
from clustertop.cli import modes
from clustertop.control import trust
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.gpus import GpusScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from tests.support import builders as b
from tests.support.demo import demo_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _running(backend: modes.Backend, host: str, pid: int) -> bool:
    node = Reader(backend.client_factory(), wants=Wants()).read().node(host)
    return node is not None and node.snap is not None and any(
        p.pid == pid for g in node.snap.gpus for p in (g.procs or []))


async def test_k_in_the_demo_ends_a_simulated_job_verified(demo: modes.Backend) -> None:
    app = demo_app(demo)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, GpusScreen)
        procs = screen.query_one("#procs-table", LiveTable)
        for _ in range(12):  # the first GPU with a training process on it
            await b.wait_fresh(pilot)
            if procs.row_count:
                break
            await pilot.press("down")
        assert procs.row_count, "no simulated process on any of the first GPUs"
        await pilot.press("k")
        await b.wait_until(pilot, lambda: isinstance(app.screen, (ConfirmDialog, PickDialog)), "a dialog", tries=1500)
        if isinstance(app.screen, PickDialog):  # a process in a simulated pod: delete the pod, or signal it only
            pick = app.screen.query_one(OptionList)
            pick.highlighted = [o.id for o in pick.options].index("signal")
            await pilot.press("enter")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
        dialog = app.screen
        text = str(dialog.query_one("#body-text").render())
        assert "signed by" in text and "enrolled key" in text and "UNVERIFIED" not in text, text
        host = text.split(" pid ", 1)[0].split()[-1]
        pid = int(text.split(" pid ", 1)[1].split()[0])
        assert _running(demo, host, pid)
        await pilot.press("tab")
        await pilot.press("enter")
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
        out = acts.done[0].outcome
        assert out.ok and out.verified and out.audited, out.text
        await b.wait_until(pilot, lambda: not _running(demo, host, pid), "the simulated job gone", tries=1500)


async def test_a_pod_deleted_in_the_demo_is_gone_from_the_next_read_and_audited(demo: modes.Backend) -> None:
    """ctrl+d's entry point (ask_delete): the impact from the simulated cluster, the confirm dialog, the delete,
    the signed entry in the demo operator's own audit stream; the pod is gone from the next read. No real
    Kubernetes client is ever built."""
    app = demo_app(demo)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        acts = actions_of(app)
        k8s = Reader(demo.client_factory(), wants=Wants()).read().cluster["kubernetes"].kubernetes
        pod = next(p for p in k8s.pods if p.phase == "Running" and p.owner_kind == "Job")
        acts.ask_delete("Pod", pod.namespace, pod.name)
        await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
        text = str(app.screen.query_one("#body-text").render())
        assert pod.name in text and "the Job will recreate it" in text and "simulated cluster" in text, text
        await pilot.press("tab")
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
        out = acts.done[0].outcome
        assert out.ok and f"deleted pod {pod.namespace}/{pod.name}" in out.text, out.text
        assert "audit entry not written" not in out.text

        def listed() -> bool:
            view = app.view.state.cluster.get("kubernetes")
            return any(p.name == pod.name for p in view.kubernetes.pods)

        await b.wait_until(pilot, lambda: not listed(), "the pod gone from the dashboard's read", tries=1500)
        assert acts._k8s is None and acts._celery is None  # the simulated cluster, never a client
    entries = demo.client_factory().xrange(wire.operator_audit_key("demo-operator"))
    mine = [e for _i, f in entries if (e := trust._decode_entry(f)) is not None and e.action == "k8s.delete_pod"]
    assert len(mine) == 1 and mine[0].target == f"{pod.namespace}/{pod.name}" and mine[0].result == "ok"
    assert mine[0].where == "dashboard"


async def test_celery_revoke_and_dask_retire_act_on_the_simulated_cluster(demo: modes.Backend) -> None:
    app = demo_app(demo)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        acts = actions_of(app)
        state = Reader(demo.client_factory(), wants=Wants()).read()
        task = next(t for w in state.cluster["celery"].queues.workers for t in w.active or [])
        worker = state.cluster["dask"].queues.workers[0].name
        acts.execute("celery.terminate", task.id, lambda: acts.revoke(task.id, terminate=True))
        acts.execute("dask.retire", worker, lambda: acts.retire(worker))
        await b.wait_until(pilot, lambda: len(acts.done) == 2, "the outcomes", tries=1500)
        for done in acts.done:
            assert done.outcome.ok and "simulated cluster" in done.outcome.text, done.outcome.text

        def gone() -> bool:
            cl = app.view.state.cluster
            return (all(t.id != task.id for w in cl["celery"].queues.workers for t in w.active or [])
                    and all(w.name != worker for w in cl["dask"].queues.workers))

        await b.wait_until(pilot, gone, "the task and the worker gone from the read", tries=1500)
        assert acts._celery is None


async def test_c_in_the_demo_stops_a_simulated_container(demo: modes.Backend) -> None:
    """`c` on a tower's screen: the pick lists its simulated containers, the confirm dialog says whose key vouches
    for the container, the simulated node stops it with the real agent's container code; the next read shows it
    exited."""
    app = demo_app(demo)

    def triton() -> Any:
        snap = Reader(demo.client_factory(), wants=Wants()).read().node("gpu03").snap
        return next(c for c in snap.containers.containers if c.name == "triton-embed")

    before = triton()
    assert before.state == "running"
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        app.open_node("gpu03")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        screen = app.screen
        await b.wait_until(pilot, lambda: "triton-embed" in str(screen.query_one("#containers").render()),
                           "the containers section", tries=1500)
        await pilot.press("c")
        assert isinstance(app.screen, PickDialog)
        pick = app.screen.query_one(OptionList)
        pick.highlighted = [o.id for o in pick.options].index(before.id)
        await pilot.press("enter")
        assert isinstance(app.screen, PickDialog)
        await pilot.press("enter")  # the first action: stop
        await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
        text = str(app.screen.query_one("#body-text").render())
        assert "triton-embed" in text and before.id[:12] in text and "signed by" in text, text
        await pilot.press("tab", "enter")
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
        out = acts.done[0].outcome
        assert out.ok and out.verified and out.audited, out.text
        await b.wait_until(pilot, lambda: triton().state == "exited", "the container stopped", tries=1500)
    assert triton().id == before.id


async def test_ctrl_r_in_the_demo_retries_a_trial_of_a_grid_search(demo: modes.Backend) -> None:
    """The Task history tab of the demo: grid searches as groups ("N of M done"), and ctrl+r on an ended trial
    shows its arguments from the simulated backend, then queues it again (audited)."""
    from clustertop.dashboard.screens.work import SEP, WorkScreen

    app = demo_app(demo)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, WorkScreen)
        screen.query_one("#work-tabs").active = "history"  # type: ignore[attr-defined]

        def ended_row() -> str | None:
            return next((k for k in screen.table().keys if k.startswith(f"r{SEP}")
                         and screen.rows["history"][k].state in ("SUCCESS", "FAILURE")), None)

        await b.wait_until(pilot, lambda: ended_row() is not None, "an ended trial in the history", tries=1500)
        rows = screen.table().keys
        group = next(k for k in rows if k.startswith(f"g{SEP}"))
        assert " of " in str(screen.table().get_row(group)[1])  # "N of M done, K failed"
        key = ended_row()
        assert key is not None
        screen.table().move_cursor(screen.table().keys.index(key))
        await pilot.pause()
        await pilot.press("ctrl+r")
        await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
        await pilot.pause()
        await pilot.press("tab", "enter")
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the retry", tries=1500)
        assert acts.done[0].outcome.ok and "new task id" in acts.done[0].outcome.text, acts.done[0].outcome.text
        assert acts._celery is None  # the simulated cluster, never a client
    entries = demo.client_factory().xrange(wire.operator_audit_key("demo-operator"))
    mine = [e for _i, f in entries if (e := trust._decode_entry(f)) is not None and e.action == "celery.retry"]
    assert len(mine) == 1 and mine[0].result == "ok" and mine[0].where == "dashboard"
