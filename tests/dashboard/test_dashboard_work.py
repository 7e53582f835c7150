"""The Work screen: rows from known payloads (pure), the screen on a real redis-server (tabs, pod
filter, keys that fit the selected row only, the GPU ledger's flags in words once they have lasted),
and SVG snapshots of the screen and of a confirm dialog at 80x24 and 200x60.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.work import (
    SEP,
    WorkScreen,
    flags_text,
    pod_rows,
    queue_rows,
    task_rows,
    worker_rows,
)
from clustertop.dashboard.settings import Settings
from clustertop.read.ledger import LedgerTracker
from clustertop.store import embedded
from clustertop.wire import schema
from tests.support import builders as b

SIZES = [(80, 24), (200, 60)]
MIN = 60.0


def k8s_payload(ts: float = b.NOW) -> schema.ClusterPayload:
    """gpu-01 in Kubernetes with 2 GPUs, both requested by one pod whose process idles on GPU 1."""
    return schema.ClusterPayload(name="kubernetes", source_host="gpu-01", ts=ts, seq=1, ok=True, last_ok_ts=ts,
                                 kubernetes=schema.Kubernetes(
        nodes=[schema.K8sNode(name="gpu-01", ready=True, gpu_capacity=2, gpu_allocatable=2, gpu_allocated=2),
               schema.K8sNode(name="gpu-02", ready=True, gpu_capacity=2, gpu_allocatable=2, gpu_allocated=0)],
        pods=[schema.K8sPod(namespace="ml", name="train-resnet-0", node="gpu-01", phase="Running", restarts=0,
                            gpus=2, created_ts=ts - 2 * 3600, owner_kind="Job", owner="train-resnet", uid="uid-1"),
              schema.K8sPod(namespace="ml", name="[b]etl[/b]-7", node="gpu-02", phase="Pending", restarts=3,
                            gpus=0, created_ts=ts - 300, owner_kind="Job", owner="etl", uid="uid-2"),
              schema.K8sPod(namespace="web", name="serve-5d9f-abc", node="gpu-02", phase="Running", restarts=0,
                            created_ts=ts - 86400, owner_kind="ReplicaSet", owner="serve-5d9f", uid="uid-3")],
        workloads=[schema.K8sWorkload(kind="Job", namespace="ml", name="train-resnet", active=1),
                   schema.K8sWorkload(kind="Deployment", namespace="web", name="serve", replicas=2, ready=2)]))


def celery_payload(ts: float = b.NOW) -> schema.ClusterPayload:
    return schema.ClusterPayload(name="celery", source_host="arm-01", ts=ts, seq=1, ok=True, last_ok_ts=ts,
                                 queues=schema.Queues(
        queues=[schema.Queue(broker="redis://broker:6379/0", name="gpu", kind="celery-redis", depth=120, ready=120,
                             consumers=0, publish_rate=2.5, growing_unconsumed=True),
                schema.Queue(broker="redis://broker:6379/0", name="celery", kind="celery-redis", depth=3,
                             consumers=2)],
        workers=[schema.Worker(name="celery@arm-01", host="arm-01", online=True, pool_size=4, mem_bytes=300 * 2**20,
                               active=[schema.WorkerTask(id="5f1c-task", name="etl.resize", runtime_s=95.0)]),
                 schema.Worker(name="celery@arm-02", host="arm-02", online=False, pool_size=None)]))


def dask_payload(ts: float = b.NOW) -> schema.ClusterPayload:
    return schema.ClusterPayload(name="dask", source_host="arm-01", ts=ts, seq=1, ok=True, last_ok_ts=ts,
                                 queues=schema.Queues(workers=[
        schema.Worker(name="tcp://10.0.0.5:40000", kind="dask", host="arm-03", online=True, nthreads=4,
                      processing=7, mem_bytes=2 * 2**30, mem_limit_bytes=4 * 2**30)]))


def cluster_snaps(ts: float = b.NOW) -> list[schema.NodeSnapshot]:
    snaps = [b.tower("gpu-01", (2, 1), ts=ts), b.tower("gpu-02", (90, 0), ts=ts), b.node("arm-01", ts=ts, gpus=[])]
    g = snaps[0].gpus
    assert g is not None
    pod_owner = schema.Owner(kind="pod", name="train-resnet-0", namespace="ml", pod_uid="uid-1")
    g[1].procs = [schema.GpuProc(pid=4242, user="alice", name="python", cmdline="python train.py --epochs 90",
                                 used_mem_bytes=9 * b.GIB, start_ts=ts - 3600, start_ticks=8_640_000, uid=1001,
                                 owner=pod_owner)]
    g2 = snaps[1].gpus
    assert g2 is not None
    g2[0].procs = [schema.GpuProc(pid=777, user="bob", name="torchrun", used_mem_bytes=10 * b.GIB,
                                  start_ts=ts - 600, start_ticks=8_934_000, uid=1002,
                                  owner=schema.Owner(kind="user", name="bob"))]
    snaps[0].tasks = [schema.Task(id="t-a0", template="train", pid=500, state="running", job="job42", rank=0,
                                  started_ts=ts - 125)]
    snaps[1].tasks = [schema.Task(id="t-a1", template="train", pid=501, state="running", job="job42", rank=1,
                                  started_ts=ts - 125),
                      schema.Task(id="t-solo", template="nap", pid=600, state="exited", exit_code=0,
                                  started_ts=ts - 50, ended_ts=ts - 20)]
    return snaps


HOSTS = ("gpu-01", "gpu-02", "arm-01")


def publish_all(client: Any, ts: float = b.NOW) -> None:
    """The cluster, each node sealing what it publishes with its (fixed, test) key, as agents do."""
    b.publish(client, cluster_snaps(ts), cluster=[k8s_payload(ts), celery_payload(ts), dask_payload(ts)],
              keys={h: b.node_key(h) for h in HOSTS})


# ---------------------------------------------------------------------------------------------
# Rows (pure)
# ---------------------------------------------------------------------------------------------


def test_queue_rows_flag_growth_without_consumers() -> None:
    rows = queue_rows(celery_payload().queues.queues, "red")  # type: ignore[union-attr]
    gpu = rows[f"redis://broker:6379/0{SEP}gpu"]
    assert [c.plain for c in gpu][3:] == ["120", "120", "N/A", "0", "2.5", "N/A", "growing, no consumer"]
    assert rows[f"redis://broker:6379/0{SEP}celery"][-1].plain == ""


def test_worker_rows_put_tasks_under_their_worker() -> None:
    w = celery_payload().queues.workers  # type: ignore[union-attr]
    rows = worker_rows(w, b.NOW, "green", "red")
    assert list(rows) == [f"w{SEP}celery@arm-01", f"t{SEP}celery@arm-01{SEP}5f1c-task", f"w{SEP}celery@arm-02"]
    assert [c.plain for c in rows[f"w{SEP}celery@arm-01"]][3:6] == ["online", "4", "1"]
    task = [c.plain for c in rows[f"t{SEP}celery@arm-01{SEP}5f1c-task"]]
    assert task[1] == "  ↳ etl.resize 5f1c-task" and task[6] == "1m"
    assert rows[f"w{SEP}celery@arm-02"][3].plain == "OFFLINE" and rows[f"w{SEP}celery@arm-02"][4].plain == "N/A"


def test_pod_rows_filter_and_keep_markup_literal() -> None:
    pods = k8s_payload().kubernetes.pods  # type: ignore[union-attr]
    assert len(pod_rows(pods, b.NOW, "", "y", "r")) == 3
    only = pod_rows(pods, b.NOW, "PENDING", "y", "r")
    assert list(only) == ["ml/[b]etl[/b]-7"] and only["ml/[b]etl[/b]-7"][1].plain == "[b]etl[/b]-7"
    assert [c.plain for c in pod_rows(pods, b.NOW, "resnet", "y", "r")["ml/train-resnet-0"]] == [
        "ml", "train-resnet-0", "gpu-01", "Running", "0", "2", "2h", "Job train-resnet"]


def test_task_rows_group_a_multi_node_job() -> None:
    tasks = [(s.host, t) for s in cluster_snaps() for t in s.tasks or ()]
    rows = task_rows(tasks, b.NOW, "g", "r")
    head = [c.plain for c in rows[f"job{SEP}job42"]]
    assert head[:4] == ["job job42", "2 node(s)", "train", "2/2 running"]
    assert rows[f"gpu-02{SEP}t-a1"][0].plain == "  rank 1: t-a1" and rows[f"gpu-02{SEP}t-a1"][4].plain == "2m"
    # Sorted by the group column, the header comes first, then rank 0, rank 1; solo tasks after.
    order = sorted(rows, key=lambda k: rows[k][0].sort_value)
    assert order == [f"job{SEP}job42", f"gpu-01{SEP}t-a0", f"gpu-02{SEP}t-a1", f"gpu-02{SEP}t-solo"]
    assert rows[f"gpu-02{SEP}t-solo"][4].plain == "30s" and rows[f"gpu-02{SEP}t-solo"][7].plain == "0"


def test_ledger_flags_in_words_once_they_have_lasted() -> None:
    tracker = LedgerTracker()
    k8s = k8s_payload().kubernetes
    first = tracker.update(k8s, cluster_snaps(), b.NOW)
    assert first.flags == [] and "no GPU flags" in flags_text(first, "y").plain
    later = tracker.update(k8s, cluster_snaps(b.NOW + 3600), b.NOW + 3600)
    text = flags_text(later, "y").plain
    assert "pod ml/train-resnet-0 holds 2 GPUs on gpu-01 but they have been idle (<5% util) for 60 min" in text
    assert "gpu-02 GPU 0 busy (90% util) for 60 min but no pod owns it: pid 777 torchrun (bob)" in text


# ---------------------------------------------------------------------------------------------
# The screen on a real redis-server
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_work_screen_tabs_filter_and_row_keys(redis_server: Any) -> None:
    publish_all(redis_server.client())
    settings = Settings(frozen_time=b.NOW + 0.5, refresh_s=0.2, source_label="test")
    app = make_app(settings, redis_server.client)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, WorkScreen)
        await b.wait_until(pilot, lambda: screen.table("queues").row_count == 2, "queue rows")
        summary = str(screen.query_one("#work-summary").render())
        assert "queues 2 (123 queued) 1 growing, no consumer" in summary and "workers 2/3 online" in summary
        assert "pods 3 (1 pending)" in summary and "tasks 2 running" in summary
        await pilot.press("right_square_bracket")
        assert screen.pane == "workers"
        await b.wait_until(pilot, lambda: screen.table().row_count == 4, "worker rows")
        # On a Celery worker: pool keys, no revoke; on its task: ctrl+k and ctrl+d; on a Dask worker: retire.
        assert screen.check_action("job_pool", (1,)) and not screen.check_action("job_kill", ())
        await pilot.press("down")
        assert screen.check_action("job_kill", ()) and screen.check_action("job_delete", ())
        assert not screen.check_action("job_pool", (1,))
        screen.table().move_cursor(3)
        await pilot.pause()
        assert screen.table().cursor_key == "w\x1ftcp://10.0.0.5:40000" and screen.check_action("job_delete", ())
        await pilot.press("right_square_bracket")
        assert screen.pane == "pods"
        await b.wait_until(pilot, lambda: screen.table().row_count == 3, "pod rows")
        assert screen.check_action("job_logs", ()) and screen.check_action("job_delete", ())
        assert not screen.check_action("job_scale", ())
        await pilot.press("slash", *"pending")
        await b.wait_until(pilot, lambda: screen.table().row_count == 1, "filtered to the pending pod")
        await pilot.press("enter", "escape")  # leave the input, then Esc clears the filter
        await b.wait_until(pilot, lambda: screen.table().row_count == 3, "filter cleared")
        assert isinstance(app.screen, WorkScreen)
        await pilot.press("right_square_bracket")
        assert screen.pane == "workloads"
        await b.wait_until(pilot, lambda: screen.table().row_count == 2, "workload rows")
        assert screen.table().cursor_key == "Job\x1fml/train-resnet"
        assert screen.check_action("job_delete", ()) and not screen.check_action("job_scale", ())
        await pilot.press("down")
        assert screen.check_action("job_scale", ()) and not screen.check_action("job_delete", ())
        await pilot.press("right_square_bracket")
        assert screen.pane == "ledger"
        await b.wait_until(pilot, lambda: screen.table().row_count == 4, "ledger rows: 3 nodes + cluster")
        cluster = [c.plain for c in screen.table().get_row(f"{SEP}cluster")]
        assert cluster[:6] == ["cluster", "4", "4", "2", "4", "1"]
        # An hour later (the app's clock is the frozen one): the flags have lasted, in words.
        settings.frozen_time = b.NOW + 3600
        publish_all(redis_server.client(), b.NOW + 3600)
        await b.wait_until(pilot, lambda: "idle (<5% util) for 60 min" in str(
            screen.query_one("#ledger-flags").render()), "idle-allocated flag", tries=1000)
        assert "no pod owns it" in str(screen.query_one("#ledger-flags").render())
        await pilot.press("right_square_bracket")
        assert screen.pane == "tasks"
        await b.wait_until(pilot, lambda: screen.table().row_count == 4, "task rows")
        assert screen.table().keys[0] == "job\x1fjob42"
        assert not screen.check_action("job_delete", ())  # the job's header row: not one task
        await pilot.press("down")
        assert screen.table().cursor_key == "gpu-01\x1ft-a0" and screen.check_action("job_delete", ())  # stop it
        await pilot.press("7")
        assert type(app.screen).__name__ == "AuditScreen"
        # Nothing done yet: the screen says so in words, not "newest 0 entries".
        await b.wait_until(pilot, lambda: "no entries yet" in str(app.screen.query_one("#audit-status").render()),
                           "the empty audit trail")


# ---------------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def snapshot_app(relabel: bool = False) -> Any:
    """The cluster with every node enrolled. ``relabel``: then a Redis writer rewrites gpu-01's snapshot
    after its node sealed it (the training process shown as a miner)."""
    from clustertop import wire

    _server, factory = embedded()
    client = factory()
    publish_all(client)
    if relabel:
        snap = wire.decode(client.get(wire.node_key("gpu-01")), schema.NodeSnapshot)
        assert snap.gpus is not None and snap.gpus[1].procs
        snap.gpus[1].procs[0].cmdline = "/tmp/.x/xmrig --donate-level 0"
        client.set(wire.node_key("gpu-01"), wire.encode(snap), keepttl=True)
    settings = Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="redis://test:6379",
                        operator_key="/nonexistent/ops.key",  # only read when an action runs
                        known=b.known_nodes(*HOSTS))
    return make_app(settings, factory)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_work_screen_snapshot(snap_compare: Any, size: tuple[int, int], utc: None) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("6")
        await pilot.press("right_square_bracket")  # workers: a task under its worker
        await b.wait_until(pilot, lambda: pilot.app.screen.table().row_count == 4, "worker rows")
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_confirm_dialog_snapshot(snap_compare: Any, size: tuple[int, int], utc: None) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("3")
        await pilot.press("down")  # gpu-01 GPU 1: the pod's training process
        await b.wait_until(pilot, lambda: pilot.app.screen.query_one("#procs-table").row_count == 1, "proc row")
        await pilot.press("k")  # the dialog opens once a worker has read and checked gpu-01's seal
        # The process runs in a pod the Kubernetes payload knows: deleting the pod is offered first (issue 16).
        await b.wait_until(pilot, lambda: isinstance(pilot.app.screen, PickDialog), "the pod offer", tries=1500)
        await pilot.press("down", "enter")  # the process only
        await b.wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), "the dialog", tries=1500)
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_unverified_confirm_dialog_snapshot(snap_compare: Any, size: tuple[int, int], utc: None) -> None:
    """gpu-01's snapshot changed after its seal: the dialog says so in the warning colour, shows what Redis
    claims, and keeps the kill button disabled until the pid is typed."""
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("3")
        await pilot.press("down")
        await b.wait_until(pilot, lambda: pilot.app.screen.query_one("#procs-table").row_count == 1, "proc row")
        await pilot.press("k")
        await b.wait_until(pilot, lambda: isinstance(pilot.app.screen, PickDialog), "the pod offer", tries=1500)
        await pilot.press("down", "enter")  # the process only, not its pod
        await b.wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), "the dialog", tries=1500)
        await pilot.pause()

    assert snap_compare(snapshot_app(relabel=True), terminal_size=size, run_before=go)


@pytest.mark.anyio
async def test_ledger_is_kept_every_read_on_the_work_screen_and_every_few_seconds_elsewhere() -> None:
    from clustertop.dashboard.app import LEDGER_EVERY_S
    from clustertop.read.ledger import Ledger, LedgerRow

    _server, factory = embedded()
    app = make_app(Settings(frozen_time=b.NOW, refresh_s=3600), factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        app.ledger = Ledger(ts=b.NOW, nodes=[], cluster=LedgerRow(node="cluster"), pods=[], flags=[])
        assert not app._ledger_due(b.NOW + 1)  # overview: the fold waits ...
        assert app._ledger_due(b.NOW + LEDGER_EVERY_S)  # ... a few seconds at most
        assert app._ledger_due(b.NOW - 60)  # a clock stepped back: never stuck
        await pilot.press("6")
        assert isinstance(app.screen, WorkScreen)
        assert app._ledger_due(b.NOW + 1)  # shown: every read


@pytest.mark.anyio
async def test_hidden_ledger_is_brought_up_to_date_after_the_repaint_and_a_shown_one_before() -> None:
    _server, factory = embedded()
    publish_all(factory())
    app = make_app(Settings(frozen_time=b.NOW, refresh_s=3600), factory)
    # Per ledger update: whether the work screen was up, and whether the read it is for had been
    # handed to the screen already (app.finished_reads counts reads once they are drawn).
    updates: list[tuple[bool, int]] = []
    async with app.run_test(size=(120, 40)) as pilot:
        import clustertop.dashboard.app as app_module

        real = app_module.update_ledger

        def spy(tracker: Any, state: Any) -> Any:
            updates.append((isinstance(app.screen, WorkScreen), app.finished_reads))
            return real(tracker, state)

        app_module.update_ledger = spy  # type: ignore[assignment]
        try:
            await b.wait_reads(pilot)
            await pilot.pause()
            app.ledger = None  # due at the next read
            updates.clear()
            app.refresh_now()
            await b.wait_fresh(pilot)
            await pilot.pause()
            assert updates == [(False, app.finished_reads)]  # overview: after the read was drawn
            assert app.ledger is not None and app.ledger.ts == app.view.state.ts  # type: ignore[union-attr]
            await pilot.press("6")
            await pilot.pause()
            updates.clear()
            app.refresh_now()
            await b.wait_fresh(pilot)
            assert updates[:1] == [(True, app.finished_reads - 1)]  # work screen: before the read is drawn
        finally:
            app_module.update_ledger = real  # type: ignore[assignment]
