"""The Dask task stream drawn (dashboard/widgets/taskstream.py) below the Work screen's Task history table:
pure (an older agent's entries: rows per worker thread, spans by prefix; the folded stream: a row per worker,
occupancy per slice of the window; errors, the legend; hostile keys, workers and times), and from
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
from clustertop.dashboard.widgets.taskstream import (
    COLOURS,
    bucket_lines,
    colour,
    key_prefix,
    lanes,
    stream_lines,
)
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


def folded(buckets: list[tuple[str, str | None, float, int, float, int]], other: int = 0,
           threads: dict[str, int] | None = None) -> schema.Queues:
    """A folded stream over [T0 - 60, T0] in 1 s buckets: (prefix, worker, t from T0, tasks, busy_s, errors)."""
    return schema.Queues(
        workers=[schema.Worker(name=w, kind="dask", nthreads=n) for w, n in (threads or {}).items()],
        dask_stream=[schema.DaskStreamBucket(prefix=p, worker=w, t=T0 + t, tasks=n, busy_s=bs, errors=e)
                     for p, w, t, n, bs, e in buckets],
        dask_stream_bucket_s=1.0, dask_stream_from_ts=T0 - 60, dask_stream_to_ts=T0, dask_stream_other_workers=other)


def test_folded_stream_a_row_per_worker_over_the_window() -> None:
    """60 s over 60 cells (80 columns, label 19): one cell a second; the height is the threads' occupancy."""
    w1, w2 = "tcp://10.0.0.1:4000", "tcp://10.0.0.2:4000"
    q = folded([("inc", w1, -60 + s, 10, 2.0, 0) for s in range(60)]  # 2 of 2 threads busy all along
               + [("flaky", w2, -10, 4, 0.5, 2), ("inc", w2, -30, 1, 0.25, 0)], threads={w1: 2, w2: 1})
    lines = bucket_lines(q, T0 + 3, 80, 10)
    text = plain(lines)
    assert text[0] == "Dask task stream  605 task(s) over the last 1m (1 s buckets), to 3s ago; 2 erred"
    label_w, cells = 18, 80 - 18 - 1
    assert text[1].startswith("10.0.0.1:4000") and text[2].startswith("10.0.0.2:4000")  # busiest first
    row1 = text[1][label_w + 1:]
    assert len(row1) == cells and set(row1) == {"█"}  # busy the whole window
    row2 = text[2][label_w + 1:]
    # 61 cells over 60 s: a 1 s bucket falls on one or two cells; 0.25 s of 1 thread is low, the error is its glyph.
    assert row2.count("✖") == 1 and set(row2) <= set(" ✖▁▂▃") and row2.strip() != "✖"
    assert row2.index("✖") > cells * 5 // 6 - 2 and cells // 2 - 2 <= row2.index(row2.strip()[0]) <= cells // 2 + 1
    assert text[-2].strip().startswith("-1m") and text[-2].endswith("last poll")
    assert text[-1] == "■ inc 601 mean 200 ms  ■ flaky 4 mean 125 ms 2 erred"  # (60 x 2 + 0.25) / 601
    assert any(str(sp.style) == colour("inc") for sp in lines[1].spans)
    assert any(str(sp.style) == "$ct-crit bold" for sp in lines[2].spans)


def test_folded_stream_bounded_unknown_and_hostile() -> None:
    many = folded([("t", f"tcp://w{i}:1", -1, 1, 0.5, 0) for i in range(30)] + [("t", None, -1, 9, 4.0, 0)], other=70)
    text = plain(bucket_lines(many, T0, 80, 5, ascii=True))
    assert text[5] == "… and 96 more worker(s)" and "█" not in "".join(text)  # 26 named + the 70 folded
    text = plain(bucket_lines(many, T0, 80, 40, ascii=True))
    assert text[31].startswith("(70 other workers)") and "@" in text[31]  # the folded rest: last
    assert plain(bucket_lines(folded([]), T0, 80, 5)) == ["Dask task stream  no tasks ended in the last 1m"]
    unknown = folded([("x", "w", -1, 1, 1.0, 0)])
    unknown.dask_stream_from_ts = math.nan
    assert plain(bucket_lines(unknown, T0, 80, 5))[0].startswith("Dask task stream  N/A")
    evil = "\x1b[2J\u202e" + "界" * 5000 + "[bold]x[/]"
    q = folded([(evil, "tcp://" + evil, -5, 2**62, 1e300, 2**62), ("k", "w", math.nan, 1, 1.0, 0),
                ("k", "w", 2.0**64, 1, math.inf, 0), ("k", "w", -2, -5, -1.0, -1)])
    for width in (30, 80, 384):
        lines = plain(bucket_lines(q, T0, width, 40))
        joined = "\n".join(lines)
        assert "\x1b" not in joined and "\u202e" not in joined and "\\x1b[2J" in joined
        for line in lines[1:-1]:
            assert cell_len(line) <= max(30, width), (width, line)


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
        q = wait_for("the stream", lambda: (x := col.collect()).dask_stream and sum(
            bk.tasks or 0 for bk in x.dask_stream if bk.prefix == "streamed") == 20 and x)
    finally:
        col.close()
    mine = [bk for bk in q.dask_stream if bk.prefix == "streamed"]
    workers = {bk.worker.split("://")[1] for bk in mine}
    erred = sum(bk.errors or 0 for bk in mine)
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
        total = sum(bk.tasks or 0 for bk in q.dask_stream)
        assert f"{total} task(s) over the last" in text.splitlines()[0] and f"; {erred} erred" in text.splitlines()[0]
        for w in workers:
            assert w in text, (w, text)
        legend = text.splitlines()[-1]
        assert "streamed 20" in legend and f"{erred} erred" in legend, legend
        assert erred == 4 and "✖" in text  # the failures are drawn as errors
