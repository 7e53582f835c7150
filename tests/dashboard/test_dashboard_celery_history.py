"""The Work screen's Celery history tab: rows from a known payload (pure), and the screen on a real
redis-server: the tab's rows, revoke/terminate keys only on tasks they can act on, Enter on a failed
task shows its traceback with control characters escaped."""

from __future__ import annotations

from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.dialogs.logs import LogsViewer
from clustertop.dashboard.screens.work import SEP, WorkScreen, dask_rows, history_rows
from clustertop.dashboard.settings import Settings
from clustertop.wire import schema
from tests.dashboard.test_dashboard_work import HOSTS, cluster_snaps, k8s_payload
from tests.support import builders as b

BROKER = "redis://broker:6379/0"
EVIL_TB = "Traceback (most recent call last):\n  File \"t.py\", line 1\n\x1b[2Jboom\u202e\nValueError: nope"


def history(events: bool | None = True) -> schema.CeleryHistory:
    return schema.CeleryHistory(
        broker=BROKER, events=events, window_s=600.0,
        stats=[schema.CeleryTaskStat(name="ct.maybe_fail", succeeded=6, failed=3, runtime_p50_s=0.002,
                                     runtime_p95_s=0.004)],
        recent=[schema.CeleryTask(id="t-fail", name="ct.maybe_fail", state="FAILURE", worker="ev@h",
                                  args="(0,)", exception="ValueError('nope')", traceback=EVIL_TB),
                schema.CeleryTask(id="t-run", name="ct.slow", state="STARTED", worker="ev@h", args="(1,)"),
                schema.CeleryTask(id="t-ok", name="ct.maybe_fail", state="SUCCESS", worker="ev@h", runtime_s=0.001,
                                  args="(1,)")])


def test_history_rows_counts_states_and_events_off_in_words() -> None:
    rows = history_rows([history()], "green", "red")
    stat = [c.plain for c in rows[f"s{SEP}{BROKER}{SEP}ct.maybe_fail"]]
    assert stat[3:9] == ["6", "3", "0", "0", "0.002s", "0.004s"]
    failed = [c.plain for c in rows[f"r{SEP}{BROKER}{SEP}t-fail"]]
    assert failed[1] == "FAILURE" and "ValueError" in failed[9]
    assert [c.plain for c in rows[f"r{SEP}{BROKER}{SEP}t-ok"]][8] == "0.001s"
    off = schema.CeleryHistory(broker=BROKER, events=False, note="no Celery events for 10 s: ... -E ...")
    rows = history_rows([off], "green", "red")
    assert list(rows) == [f"b{SEP}{BROKER}"] and "-E" in rows[f"b{SEP}{BROKER}"][9].plain
    # Unknown is not zero: no stats rows at all, the header says why.


COMP = schema.DaskComputation(id="c-1", groups=["flaky"], states={"memory": 16, "erred": 4, "processing": 0})


def test_dask_rows_n_of_m_done_and_unknown_is_not_zero() -> None:
    rows = dask_rows([COMP, schema.DaskComputation(id="c-2", groups=["x"])], "green", "red")
    assert list(rows) == [f"d{SEP}c-2", f"d{SEP}c-1"]  # newest first
    cells = [c.plain for c in rows[f"d{SEP}c-1"]]
    assert cells[1] == "16 of 20 done, 4 erred" and cells[4] == "4"
    assert "erred 4" in cells[9] and "memory 16" in cells[9] and "█" * 20 in cells[9]
    assert [c.plain for c in rows[f"d{SEP}c-2"]][1] == "N/A"


def payload(ts: float = b.NOW) -> schema.ClusterPayload:
    return schema.ClusterPayload(name="celery", source_host="arm-01", ts=ts, seq=1, ok=True, last_ok_ts=ts,
                                 queues=schema.Queues(queues=[], workers=[], task_history=[history()],
                                                      dask_computations=[COMP]))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def history_tab(pilot: Any, row: str | None = None, what: str = "the row") -> WorkScreen:
    """The Work screen's Task history tab after the first read; with ``row``, once that row is drawn, on it."""
    screen = await b.work_tab(pilot, "history")
    if row is not None:
        await b.wait_until(pilot, lambda: row in screen.table().keys, what)
        screen.table().move_cursor(screen.table().keys.index(row))
        await pilot.pause()
    return screen


@pytest.mark.anyio
async def test_history_tab_keys_and_traceback(redis_server: Any) -> None:
    b.publish(redis_server.client(), cluster_snaps(), cluster=[k8s_payload(), payload()],
              keys={h: b.node_key(h) for h in HOSTS})
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=0.2, source_label="test"), redis_server.client)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, WorkScreen)
        for _ in range(6):
            await pilot.press("right_square_bracket")
        assert screen.pane == "history"
        await b.wait_until(pilot, lambda: screen.table().row_count == 7,
                           "broker, name, 3 task rows, the groups' no-backend note, 1 computation")
        table = screen.table()

        async def select(key: str) -> None:
            table.move_cursor(table.keys.index(key))
            await pilot.pause()

        await select(f"r{SEP}{BROKER}{SEP}t-run")
        assert screen.check_action("job_kill", ()) and screen.check_action("job_delete", ())
        await select(f"r{SEP}{BROKER}{SEP}t-ok")
        assert not screen.check_action("job_kill", ()) and not screen.check_action("job_delete", ())
        await select(f"r{SEP}{BROKER}{SEP}t-fail")
        assert not screen.check_action("job_delete", ())
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: isinstance(app.screen, LogsViewer) and app.screen.text is not None,
                           "the traceback viewer")
        text = app.screen.text
        assert text is not None and "ValueError: nope" in text and "Traceback" in text
        assert "\x1b" not in text and "\u202e" not in text and "\\x1b[2J" in text
        await pilot.press("escape")
        assert isinstance(app.screen, WorkScreen)


# ---------------------------------------------------------------------------------------------
# Groups and chords (collectors/celery_groups.py) and retry (ctrl+r)
# ---------------------------------------------------------------------------------------------

BACKEND = "redis://backend:6379/1"
EVIL_ID = "3f2a\x1b[2J\u202e" + "g" * 150


def groups() -> schema.CeleryGroups:
    return schema.CeleryGroups(backend=BACKEND, groups=[
        schema.CeleryGroup(id=EVIL_ID, kind="chord", name="[bold]ct.grid\x1b]0;x\x07", total=64, done=41, failed=3,
                           revoked=0, ended=False, first_ts=b.NOW),
        schema.CeleryGroup(id="old", kind="group", total=None, note="saved group: not JSON (...)")])


def test_group_rows_n_of_m_done_k_failed_escaped_and_unknown_is_not_zero() -> None:
    from clustertop.dashboard.screens.work import NO_BACKEND, group_rows

    rows = group_rows([groups()], True, "green", "red")
    assert list(rows) == [f"G{SEP}{BACKEND}", f"g{SEP}{BACKEND}{SEP}{EVIL_ID}", f"g{SEP}{BACKEND}{SEP}old"]
    cells = [c.plain for c in rows[f"g{SEP}{BACKEND}{SEP}{EVIL_ID}"]]
    assert cells[1] == "41 of 64 done, 3 failed" and cells[3] == "38" and cells[4] == "3"
    bar = cells[9]
    assert "█" * 12 in bar and "running" in bar  # 41/64 of 20 cells: 12 full and a part
    assert cells[0].startswith("chord 3f2a\\x1b[") and "\x1b" not in cells[0] and "\u202e" not in cells[0]
    old = [c.plain for c in rows[f"g{SEP}{BACKEND}{SEP}old"]]
    assert old[1] == "N/A" and old[3] == "N/A" and "not JSON" in old[9]
    # Failures known, revocations not (a payload that says so): how many succeeded is not known either.
    g = groups()
    g.groups[0].revoked = None  # type: ignore[index]
    cells = [c.plain for c in group_rows([g], True, "green", "red")[f"g{SEP}{BACKEND}{SEP}{EVIL_ID}"]]
    assert cells[3] == "N/A" and cells[6] == "N/A" and cells[4] == "3"
    # No backend configured, task history there: the reason, never an empty list that reads as "no groups".
    assert [c.plain for c in group_rows(None, True, "g", "r")["G"]][9] == NO_BACKEND
    assert group_rows(None, False, "g", "r") == {}


@pytest.mark.anyio
async def test_groups_on_the_history_tab_at_80x24(redis_server: Any) -> None:
    p = payload()
    assert p.queues is not None
    p.queues.celery_groups = groups()
    b.publish(redis_server.client(), cluster_snaps(), cluster=[k8s_payload(), p],
              keys={h: b.node_key(h) for h in HOSTS})
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=0.2, source_label="test"), redis_server.client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await history_tab(pilot)
        await b.wait_until(pilot, lambda: screen.table().row_count == 9, "history, 3 group rows, the computation")
        table = screen.table()
        table.move_cursor(table.keys.index(f"g{SEP}{BACKEND}{SEP}{EVIL_ID}"))
        await pilot.pause()
        assert not screen.check_action("job_retry", ()) and not screen.check_action("job_delete", ())
        table.move_cursor(table.keys.index(f"r{SEP}{BROKER}{SEP}t-fail"))
        await pilot.pause()
        assert screen.check_action("job_retry", ())  # an ended task: retry fits
        table.move_cursor(table.keys.index(f"r{SEP}{BROKER}{SEP}t-run"))
        await pilot.pause()
        assert not screen.check_action("job_retry", ())  # still running: nothing to retry yet
        shown = "".join(str(c) for c in table.get_row(f"g{SEP}{BACKEND}{SEP}{EVIL_ID}"))
        assert "41 of 64 done, 3 failed" in shown and "\x1b" not in shown and "\u202e" not in shown


@pytest.mark.heavy  # a real Celery worker
@pytest.mark.anyio
async def test_ctrl_r_shows_the_backends_args_escaped_then_retries_on_a_real_worker(redis_server: Any,
                                                                                  tmp_path: Any) -> None:
    from celery import Celery

    from clustertop.control import signing
    from clustertop.dashboard.actions import actions_of
    from clustertop.dashboard.dialogs.confirm import ConfirmDialog
    from tests.collectors.test_celery import CeleryWorker, wait_for
    from tests.collectors.test_celery_groups import close_client
    from tests.dashboard.test_dashboard_actions import app_for, audit_entries, body_text

    be = redis_server.url.rsplit("/", 1)[0] + "/1"
    worker = CeleryWorker(redis_server.url, name="rt", backend=be)
    client = Celery("ct-client", broker=redis_server.url, backend=be, set_as_current=False)
    client.conf.update(task_default_queue="work", result_extended=True)
    kp, _pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    evil = "\x1b[2J\u202e[bold]boom" + "x" * 3000  # whoever writes the backend chose this: shown escaped, whole
    app = None
    try:
        worker.wait_ready()
        first = client.send_task("ct.write", args=(str(tmp_path / "out"), evil), kwargs={"times": 1})
        wait_for("the task to end", lambda: first.state == "SUCCESS")
        (tmp_path / "out").unlink()
        p = schema.ClusterPayload(name="celery", ts=b.NOW, ok=True, queues=schema.Queues(task_history=[
            schema.CeleryHistory(broker=BROKER, events=True, recent=[
                schema.CeleryTask(id=first.id, name="ct.write", state="SUCCESS", worker=worker.name)])]))
        b.publish(redis_server.client(), cluster_snaps(), cluster=[p], keys={h: b.node_key(h) for h in HOSTS})
        app = app_for(redis_server, celery_broker=redis_server.url, celery_backend=be, operator_key=kp,
                      frozen_time=b.NOW + 0.5)
        async with app.run_test(size=(160, 50)) as pilot:
            await history_tab(pilot, f"r{SEP}{BROKER}{SEP}{first.id}", "the task row")
            await pilot.press("ctrl+r")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
            await pilot.pause()
            text = body_text(app.screen)  # type: ignore[arg-type]
            assert "ct.write" in text and "work" in text and "x" * 3000 in text  # in full
            # ESC as JSON writes it (\u001b), the bidi override as the escaper does; markup shown literally
            assert "\x1b" not in text and "\u202e" not in text and "[bold]boom" in text
            assert "\\u001b[2J" in text and "\\u202e" in text
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the retry", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            wait_for("the retried task to write the file again", lambda: (tmp_path / "out").exists())
            assert (tmp_path / "out").read_text() == evil
            entries = audit_entries(redis_server.client())
            assert [(e.action, e.result, e.where) for e in entries] == [("celery.retry", "ok", "dashboard")]
            assert first.id in entries[0].target
    finally:
        if app is not None:
            actions_of(app).close()
        close_client(client)
        worker.stop()


@pytest.mark.anyio
async def test_ctrl_r_without_a_result_backend_is_refused_with_the_reason_and_audited(redis_server: Any,
                                                                                    tmp_path: Any) -> None:
    """No backend configured: the arguments exist only as the events' truncated repr, which is never re-sent."""
    from clustertop.control import signing
    from clustertop.dashboard.actions import actions_of
    from tests.dashboard.test_dashboard_actions import app_for, audit_entries

    kp, _pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    b.publish(redis_server.client(), cluster_snaps(), cluster=[k8s_payload(), payload()],
              keys={h: b.node_key(h) for h in HOSTS})
    app = app_for(redis_server, celery_broker=redis_server.url, operator_key=kp, frozen_time=b.NOW + 0.5)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await history_tab(pilot, f"r{SEP}{BROKER}{SEP}t-fail", "the failed task's row")
            await pilot.press("ctrl+r")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the refusal", tries=1500)
            out = acts.done[0].outcome
            assert not out.ok and "no result backend" in out.text and "truncated" in out.text
            assert isinstance(app.screen, WorkScreen)  # no dialog: nothing to confirm
            entries = audit_entries(redis_server.client())
            assert [(e.action, e.target, e.result.split(":")[0]) for e in entries] == [
                ("celery.retry", "t-fail", "refused")]
    finally:
        actions_of(app).close()
