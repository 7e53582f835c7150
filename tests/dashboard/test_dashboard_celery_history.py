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
        await b.wait_until(pilot, lambda: screen.table().row_count == 6, "broker, name, 3 task rows, 1 computation")
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
