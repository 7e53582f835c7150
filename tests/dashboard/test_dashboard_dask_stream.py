"""The Dask task stream drawn (dashboard/widgets/taskstream.py) below the Work screen's Task history table:
pure (rows per worker thread, spans by prefix, errors, the legend; hostile keys, workers and times), and from
a REAL scheduler's published stream (tests/collectors/test_dask.py's cluster: a scheduler and 3 workers with
1, 2 and 3 threads), collected by the real collector, published to a real redis-server and drawn by the app."""

from __future__ import annotations

import math
import operator
import time
from typing import Any

import pytest
from rich.cells import cell_len

from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.work import WorkScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.taskstream import COLOURS, colour, key_prefix, lanes, stream_lines
from clustertop.wire import schema
from tests.collectors.test_dask import cluster, collector, wait_for  # noqa: F401 - the real scheduler's fixture
from tests.dashboard.test_dashboard_work import HOSTS, cluster_snaps
from tests.support import builders as b

T0 = 1_700_000_000.0


def task(key: str, worker: str, start: float | None, stop: float | None, status: str = "OK") -> schema.DaskStreamTask:
    return schema.DaskStreamTask(key=key, worker=worker, status=status,
                                 start_ts=None if start is None else T0 + start, stop_ts=None if stop is None else T0 + stop)


def plain(lines: list[Any]) -> list[str]:
    return [c.plain for c in lines]


def test_key_prefix_is_dasks_key_split() -> None:
    assert key_prefix("('inc-5c3e8d07aa', 3)") == "inc"
    assert key_prefix("read-parquet-9f3a1b2c") == "read-parquet"
    assert key_prefix("flaky-12") == "flaky" and key_prefix("") == "?"
    assert key_prefix("0123456789abcdef0123456789abcdef") == "data"
    assert colour("inc") == colour("inc") and colour("inc") in COLOURS and "#e15759" not in COLOURS  # red: errors


def test_one_row_per_thread_busy_at_once_spans_where_they_ran() -> None:
    stream = [task("inc-1", "tcp://10.0.0.1:4000", 0, 5), task("inc-2", "tcp://10.0.0.1:4000", 1, 3),
              task("inc-3", "tcp://10.0.0.1:4000", 5, 10), task("flaky-1", "tcp://10.0.0.2:4000", 8, 10, "error")]
    rows = lanes(stream)
    assert [(w, [t.key for t in ts]) for w, ts in rows] == [
        ("10.0.0.1:4000", ["inc-1", "inc-3"]), ("10.0.0.1:4000", ["inc-2"]), ("10.0.0.2:4000", ["flaky-1"])]
    lines = stream_lines(stream, T0 + 12, 80, 10)
    text = plain(lines)
    assert text[0] == "Dask task stream  4 recent task(s) over 10.0 s, the last ended 2s ago"
    label_w = 18  # at least 18, else width // 5
    cells = 80 - label_w - 1
    first, second, third = text[1], text[2], text[3]
    assert first.startswith("10.0.0.1:4000") and second.startswith(" " * label_w)  # a worker named once
    assert third.startswith("10.0.0.2:4000")
    row = first[label_w + 1:]
    assert len(row) == cells and row.count("█") == cells  # inc-1 then inc-3: busy the whole span
    row2 = second[label_w + 1:]
    assert row2.strip() == "█" * (int(3 / 10 * cells) - int(1 / 10 * cells))
    assert third[label_w + 1:].strip().startswith("✖") and "█" not in third  # the error: its own glyph
    # The error is drawn in the critical colour, a prefix in its own.
    spans = {lines[3].plain[s.start:s.end]: str(s.style) for s in lines[3].spans}
    assert spans.get("✖" * (cells - int(8 / 10 * cells))) == "$ct-crit bold", spans
    assert any(str(s.style) == colour("inc") for s in lines[1].spans)
    assert text[-2].strip().startswith("-10.0 s") and text[-2].endswith("last end")
    assert text[-1] == "■ inc 3 mean 4.0 s  ■ flaky 1 mean 2.0 s 1 erred"  # (5 + 2 + 5) / 3


def test_rows_are_bounded_and_counted_and_ascii_works() -> None:
    stream = [task(f"t-{i}", f"tcp://w{i}:1", 0, 1) for i in range(30)]
    text = plain(stream_lines(stream, T0 + 1, 80, 5, ascii=True))
    assert len(text) == 1 + 4 + 1 + 2  # title, 4 rows, "… and 26 more", axis, legend
    assert text[5] == "… and 26 more worker thread row(s)" and "#" in text[1] and "█" not in "".join(text)


def test_unknown_and_hostile_never_crash_or_reach_the_terminal_raw() -> None:
    assert plain(stream_lines(None, T0, 80, 5))[0].startswith("Dask task stream  N/A")
    assert plain(stream_lines([], T0, 80, 5)) == ["Dask task stream  no tasks yet"]
    untimed = [task("x-1", "w", None, 3.0), task("x-2", "w", math.nan, math.inf)]
    assert plain(stream_lines(untimed, T0, 80, 5)) == ["Dask task stream  2 recent task(s), none with compute times"]
    evil = "\x1b[2J\u202e" + "界" * 5000 + "[bold]x[/]"
    stream = [schema.DaskStreamTask(key=evil + "-1", worker="tcp://" + evil, status="OK", start_ts=T0, stop_ts=T0 + 1),
              schema.DaskStreamTask(key="k-2", worker="w", status="\x1b]8;;x\x07", start_ts=T0 + 5, stop_ts=T0 + 2),
              schema.DaskStreamTask(key="k-3", worker="w", status="OK", start_ts=2.0**64, stop_ts=-1.0),
              schema.DaskStreamTask(key="k-4", worker="w", status="OK", start_ts=1.0, stop_ts=T0 + 6)]
    for width in (30, 80, 384):
        lines = stream_lines(stream, T0 + 6, width, 40)
        text = "\n".join(plain(lines))
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
        assert "\\x1b[2J" in text  # shown as a visible escape, cut to the label
        for line in plain(lines)[1:-1]:  # rows and axis: exactly the width in cells, whatever the names
            assert cell_len(line) <= max(30, width), (width, line)
        assert cell_len(plain(lines)[-1]) <= max(30, width) + 12  # the legend is cut, "+N more" at most
    # The stop before its start draws one cell (an error's glyph: its status is not OK); 1970 is clipped away.
    text = plain(stream_lines(stream, T0 + 6, 80, 40))
    assert "2 without times" not in text[0] and "1 without times" in text[0]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_stream_of_a_real_scheduler_drawn_on_the_work_screen(cluster: tuple[Any, Any],  # noqa: F811
                                                                       redis_server: Any) -> None:
    """A real computation (20 tasks, 4 failing, 3 workers) through the real collector; the cluster payload it
    makes, published to a real redis-server, drawn: a row per worker busy, the prefix in the legend with its
    errors, the title counting what the stream holds."""
    c, client = cluster
    col = collector([c.url])
    try:
        col.collect()  # registers the stream plugin when the scheduler had none
        futures = client.map(operator.truediv, [1] * 20, [i % 5 for i in range(20)], pure=False,
                             key=[f"streamed-{i}" for i in range(20)])
        wait_for("all 20 tasks to end", lambda: all(f.done() for f in futures))
        q = wait_for("the stream", lambda: (x := col.collect()).dask_task_stream and any(
            t.key.startswith("streamed-") for t in x.dask_task_stream) and x)
    finally:
        col.close()
    mine = [t for t in q.dask_task_stream if t.key.startswith("streamed-")]
    workers = {t.worker.split("://")[1] for t in mine}
    erred = sum(1 for t in mine if t.status == "error")
    now = time.time()
    payload = schema.ClusterPayload(name="dask", source_host="arm-01", ts=now, seq=1, ok=True, last_ok_ts=now,
                                    queues=q)
    b.publish(redis_server.client(), cluster_snaps(ts=now), cluster=[payload], keys={h: b.node_key(h) for h in HOSTS})
    app = make_app(Settings(frozen_time=now + 0.5, refresh_s=0.2, source_label="test"), redis_server.client)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, WorkScreen)
        for _ in range(6):
            await pilot.press("right_square_bracket")
        assert screen.pane == "history"
        box = screen.query_one("#dask-stream")

        def drawn() -> str:
            return str(box.render()) if box.display else ""

        await b.wait_until(pilot, lambda: "Dask task stream" in drawn(), "the stream drawn")
        text = drawn()
        assert f"{len(q.dask_task_stream)} recent task(s)" in text.splitlines()[0]
        for w in workers:
            assert w in text, (w, text)
        legend = text.splitlines()[-1]
        assert f"streamed {len(mine)}" in legend and (f"{erred} erred" in legend if erred else True), legend
        assert erred and "✖" in text  # the failures are drawn as errors
