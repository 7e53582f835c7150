"""The GPU table past ``plan.SUMMARY_FROM_NODES`` (lowered here, as the overview's tests do): its rows and their
order come from the bucket summaries' GPU columns and equal what a read of every node's GPUs gives, for every
column the summaries sort by; the rows in view are drawn from their nodes' briefs, the same cells as the full
read's; a refused, stale or column-less bucket's hosts are read from their briefs; a sort by a column the
summaries lack reads every brief and says so; the cursor keeps its card; hostile names never reach the terminal
raw; N/A stays N/A. Real redis-server, the real app under ``run_test``, summaries folded (with columns, from a
read of the briefs' GPUs, as a summary node with ``gpu_columns`` does) and sealed with a real node key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from textual.widgets import Input, Static

from clustertop.control import signing
from clustertop.control.summary import seal
from clustertop.dashboard.app import make_app
from clustertop.dashboard.gpurows import SUMMABLE, SummaryRows
from clustertop.dashboard.screens.gpus import GpusScreen, gpu_key, gpu_row, gpu_rows, sort_values
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.table import LiveTable, sorted_order
from clustertop.read import plan as plans
from clustertop.read.cluster import by_bucket
from clustertop.read.model import ClusterState, NodeView, SummaryRead
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.summary import fold
from clustertop.wire import schema
from clustertop.wire.summary import BUCKETS, BucketSummary, GpuColumns, bucket_of, summary_key
from tests.support import builders as b

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("summaries_from_here")]  # tests/dashboard/conftest.py
NODES = 240
HEAD = "head01"
EVIL_HOST = "evil\x1b[2J\u202e-gpu"
EVIL_GPU = "\x1b[31mNVIDIA\u202e\x07 H100"


def cluster(client: Any) -> None:
    """240 nodes of 1-3 cards with many ties (util in 7 steps, temps in 5) and N/A figures, a hostile host and GPU name."""
    snaps = []
    for i in range(NODES):
        host = EVIL_HOST if i == 17 else f"gpu-{(i * 37) % NODES:03d}"
        gpus = [b.gpu(k, None if (i + k) % 11 == 0 else ((i * 3 + k) % 7) * 15,
                      None if (i + k) % 13 == 0 else float((i + 2 * k) % 9),
                      temp=None if (i + k) % 17 == 0 else 50 + (i + k) % 5,
                      power_w=None if (i + k) % 19 == 0 else 100.0 + (i * k) % 6,
                      name=EVIL_GPU if i == 17 else "NVIDIA H100")
                for k in range(1 + i % 3)]
        if i % 23 == 5:  # a card fallen off the bus: sorts by util below every real figure, says LOST
            gpus[-1] = schema.Gpu(index=gpus[-1].index, lost=True, error="GPU is lost", name="NVIDIA H100")
        snaps.append(b.node(host, gpus=gpus, ts=time.time()))
    b.publish(client, snaps)


def full_read(client: Any) -> ClusterState:
    reader = Reader(client)
    reader.read()
    return reader.read(ReadPlan(Level.GPUS))


def write(client: Any, key: signing.PrivateKey, buckets: Any = range(BUCKETS), *, columns: bool = True,
          ts: float | None = None) -> ClusterState:
    """Every bucket of ``buckets`` folded from a read of the briefs' GPUs (columns with every figure) and sealed."""
    st = full_read(client)
    groups = by_bucket(st.nodes)
    for bucket in buckets:
        client.set(summary_key(bucket), seal(fold(groups[bucket], bucket, HEAD, time.time() if ts is None else ts,
                                                  seq=1, interval_s=600.0, gpu_columns=columns), key))
    return st


def expected(st: ClusterState, column: str | None, reverse: bool = False, needle: str = "") -> list[str]:
    """The table's keys as a read of every node's GPUs orders them (today's path)."""
    keys, items, _ = gpu_rows(st.nodes, needle)
    if column is None:
        return keys
    return [keys[i] for i in sorted_order(sort_values(items, column), reverse)]


async def open_gpus(pilot: Any) -> tuple[GpusScreen, LiveTable]:
    app = pilot.app
    await b.wait_reads(pilot, 1)
    app.switch_mode("gpus")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, GpusScreen)
    table = screen.query_one("#gpus-table", LiveTable)
    app.refresh_now()  # the first read was in full (nothing known yet: plan.ReadPlan.sized)
    await b.wait_until(pilot, lambda: app.view.state.plan.gpus and table.row_count > 0, "a summary read")
    return screen, table


@asynccontextmanager
async def on_gpus(redis_server: Any, before: Callable[[Any, signing.PrivateKey], None] | None = None
                  ) -> AsyncIterator[tuple[Any, ClusterState, GpusScreen, LiveTable]]:
    """The tests' set-up: the cluster, every bucket's summary sealed by HEAD, ``before(client, HEAD's key)`` (more
    summaries written), then the real app on its GPU screen reading them. Yields (pilot, the full read the
    summaries were folded from, the screen, its table)."""
    client = redis_server.client()
    cluster(client)
    key = b.node_key(HEAD)
    full = write(client, key)
    if before is not None:
        before(client, key)
    app = make_app(Settings(refresh_s=600.0, source_label="test", known=b.known_nodes(HEAD)), redis_server.client)
    async with app.run_test(size=(160, 40)) as pilot:
        screen, table = await open_gpus(pilot)
        yield pilot, full, screen, table


def plain(cells: list[Any]) -> list[str]:
    return [c.plain for c in cells]


async def in_view_from_briefs(pilot: Any, screen: GpusScreen, table: LiveTable) -> None:
    def done() -> bool:
        top, bottom = table.visible_rows()
        return all(screen.rows.host(r) in screen.rows.views for r in table._items[top:bottom])
    await b.wait_until(pilot, done, "the rows in view read from their briefs")


async def test_gpu_table_from_summaries_equals_the_full_read(redis_server: Any) -> None:
    async with on_gpus(redis_server) as (pilot, full, screen, table):
        app = pilot.app
        st = app.view.state
        assert st.plan.level is Level.SUMMARIES and len(st.summaries.believed) == BUCKETS
        assert len(st.summaries.read_here) < NODES // 2  # the rows in view, not every node
        # Every card, in node order; then the same order as the full read for every column summaries sort by.
        assert table.keys == expected(full, None)
        for column in sorted(SUMMABLE):
            for reverse in (False, True):
                table.sort_column, table.sort_reverse = column, not reverse
                table.sort_by(column)  # flips to ``reverse``
                assert table.keys == expected(full, column, reverse), (column, reverse)
        assert table.row_count == sum(len(n.snap.gpus) for n in full.nodes)
        assert "row 1 of" in str(screen.query_one("#procs-title", Static).render())
        note = str(screen.query_one("#gpus-note", Static).render())
        assert f"order and off-screen figures from {BUCKETS}/{BUCKETS} bucket summaries, folded by head01" in note

        # The rows in view: their nodes' briefs, read by the refresh the sort asked for; the full read's cells.
        table.sort_by("util")
        await b.wait_fresh(pilot, 1)
        await in_view_from_briefs(pilot, screen, table)
        p, ascii = app.palette, app.settings.ascii
        by_key = dict(zip(*gpu_rows(full.nodes)[:2], strict=True))
        top, bottom = table.visible_rows()
        assert bottom - top > 10
        for r in range(top, bottom):
            v, g = by_key[table.keys[r]]
            assert plain(table.get_row_at(r)) == plain(gpu_row(v, g, p, ascii))
        # A row far off screen is drawn from the columns until read: its figures, N/A (never 0) for the rest.
        far = table._items[-1]
        v, g = screen.rows.item(far)
        fv, fg = by_key[table.keys[-1]]
        assert v.snap is None and g.util_pct == fg.util_pct and g.temp_c == fg.temp_c
        cells = plain(gpu_row(v, g, p, ascii))
        assert cells[2] == "N/A" and cells[7] == "N/A"  # name, fan: not in the columns
        na = next(r for r in range(table.row_count) if table.item_at(r) is not None
                  and screen.rows.value(table.item_at(r), "util") is None)
        assert plain(gpu_row(*screen.rows.item(table.item_at(na)), p, ascii))[3].strip().endswith("N/A")
        # A lost card off screen: LOST from the columns' ``lost`` positions, as its brief would say.
        lost = [r for r in range(table.row_count) if by_key[table.keys[r]][1].lost]
        assert lost and all(screen.rows.value(table.item_at(r), "util") == -1 for r in lost)
        cells = plain(gpu_row(*screen.rows.item(table.item_at(lost[-1])), p, ascii))
        assert cells[3].startswith("LOST") and "N/A" in cells[4]

        # A scroll to the end asks for the rows now in view: within one read they are drawn from their briefs.
        reads = app.finished_reads
        await pilot.press("end")
        await b.wait_until(pilot, lambda: app.finished_reads > reads, "the read the scroll asked for")
        await in_view_from_briefs(pilot, screen, table)

        # Hostile text escaped in the table.
        evil = next(r for r in range(table.row_count) if table.keys[r].startswith(EVIL_HOST))
        table.move_cursor(evil)
        await b.wait_fresh(pilot, 1)
        await in_view_from_briefs(pilot, screen, table)
        text = "".join(plain(table.get_row_at(evil)))
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text and "\\x1b" in text


async def test_refused_stale_and_columnless_buckets_read_briefs(redis_server: Any) -> None:
    forged, stale, bare = (bucket_of(h) for h in ("gpu-001", "gpu-002", "gpu-003"))
    assert len({forged, stale, bare}) == 3

    def spoil(client: Any, key: signing.PrivateKey) -> None:
        write(client, signing.new_key(), [forged])  # signed by a key nobody enrolled
        write(client, key, [stale], ts=time.time() - 3600)  # older than 3 intervals
        write(client, key, [bare], columns=False)  # folded without columns

    async with on_gpus(redis_server, spoil) as (pilot, full, screen, table):
        app = pilot.app
        hosts = [n.host for n in full.nodes]
        app.refresh_now()  # the next read too: those hosts ride in its first MGET (``Reader._uncovered``)
        await b.wait_fresh(pilot, 1)
        st = app.view.state
        assert set(st.summaries.refused) == {forged, stale, bare}
        assert st.summaries.refused[bare] == "no GPU columns"
        # Their hosts' cards are there, from their briefs (never empty), in the full read's order.
        mine = {h for h in hosts if bucket_of(h) in {forged, stale, bare}}
        assert mine <= screen.rows.views.keys()
        assert table.keys == expected(full, None)
        table.sort_by("temp")
        assert table.keys == expected(full, "temp")
        note = screen.query_one("#gpus-note", Static)
        assert "3 buckets refused" in str(note.render()) and note.has_class("-refused")


async def test_sort_by_fan_reads_every_brief_and_says_so(redis_server: Any) -> None:
    async with on_gpus(redis_server) as (pilot, full, screen, table):
        app = pilot.app
        table.sort_by("util")
        table.move_cursor(7)
        card = table.cursor_key
        table.sort_by("power")  # the cursor keeps its card across a re-sort
        assert table.cursor_key == card and table.keys[table.cursor_row] == card
        table.sort_by("fan")
        await b.wait_until(pilot, lambda: app.view.state.plan.level is Level.GPUS, "a read of every brief")
        await pilot.pause()
        assert table.cursor_key == card
        assert table.keys == expected(full, "fan")
        note = str(screen.query_one("#gpus-note", Static).render())
        assert "sorting by fan reads every node's GPUs" in note
        table.sort_by("util")  # back to a column the summaries hold: back to the summaries
        await b.wait_until(pilot, lambda: app.view.state.plan.gpus, "a summary read again")
        assert table.cursor_key == card and table.keys == expected(full, "util")
        # A filter (a GPU model or a user is in the briefs only): every brief read, the rows kept meanwhile.
        screen.action_filter()
        rows = table.row_count
        screen.query_one("#filter", Input).value = "gpu-01"
        await pilot.pause()
        assert table.row_count == rows or app.view.state.plan.level is Level.GPUS  # never a partial list
        want = expected(full, "util", needle="gpu-01")
        await b.wait_until(pilot, lambda: app.view.state.plan.level is Level.GPUS and table.keys == want,
                           "the filtered rows from every brief")
        assert "filtering by 'gpu-01' reads every node's GPUs" in str(screen.query_one("#gpus-note", Static).render())


async def test_below_the_threshold_nothing_changes(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plans, "SUMMARY_FROM_NODES", 2000)
    client = redis_server.client()
    cluster(client)
    full = write(client, b.node_key(HEAD))
    app = make_app(Settings(refresh_s=600.0, source_label="test", known=b.known_nodes(HEAD)), redis_server.client)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot, 1)
        app.switch_mode("gpus")
        await pilot.pause()
        app.refresh_now()
        await b.wait_fresh(pilot, 1)
        screen = app.screen
        assert isinstance(screen, GpusScreen)
        st = app.view.state
        assert st.plan.level is Level.GPUS and st.summaries is None
        assert not screen.query_one("#gpus-note", Static).display
        assert screen.query_one("#gpus-table", LiveTable).keys == expected(full, None)


def test_plan_of_the_gpu_table() -> None:
    p = ReadPlan(Level.SUMMARIES, frozenset({"a"}), frozenset({"b"}), gpus=True)
    assert p.sized(50) == ReadPlan()  # below brief_from: every node in full
    assert p.sized(500, summary_from=1000) == ReadPlan(Level.GPUS, frozenset({"a"}))
    assert p.sized(5000, summary_from=1000) is p
    assert ReadPlan(Level.DIGESTS, gpus=True).gpus is False  # only a summary read carries it
    summaries = ReadPlan(Level.SUMMARIES, frozenset({"a"}), frozenset({"b"}))
    assert not summaries.holds(p) and p.holds(summaries)  # the overview's read has no GPU columns
    assert ReadPlan(Level.GPUS, frozenset({"a"})).holds(p)


def test_vram_fractions_are_na_never_zero_and_made_once_per_read() -> None:
    """``SummaryRows.values("vram")``: used / total in node order, None (N/A) where either is N/A, the total is 0
    or the card fell off the bus, never 0; an uncovered host's brief counts the same. Made once per read: a redraw
    of the same read hands back the same list (no 80,000 divisions again); a new read makes it anew."""
    gib = 2**30

    def read(used: list[int | None], total: list[int | None]) -> ClusterState:
        cols = GpuColumns(node=[0, 0, 1, 1, 1], index=[0, 1, 0, 1, 2], util_pct=[10] * 5, mem_used_bytes=used,
                          mem_total_bytes=total, temp_c=[None] * 5, power_mw=[None] * 5, lost=[4])
        s = BucketSummary(bucket=0, hosts=["a", "c"], states="uu", seqs=[1, 1], gpus=cols)
        brief = b.node("b", gpus=[b.gpu(0, mem_used_gib=2.0, mem_total_gib=8.0), b.gpu(1, mem_used_gib=None)])
        return ClusterState(ts=0.0, summaries=SummaryRead(buckets=1, believed=[s], covered=frozenset({"a", "c"}),
                                                          read_here=[NodeView("b", "up", snap=brief)]))

    rows = SummaryRows(gpu_key)
    first = read([gib, None, 3 * gib, gib, gib], [4 * gib, 4 * gib, 0, None, 4 * gib])
    rows.update(first)
    got = rows.values("vram")
    # Node order: a's cards, b's (its brief), c's; c's third card is lost (the columns' ``lost``).
    assert [rows.host(r) for r in range(len(got))] == ["a", "a", "b", "b", "c", "c", "c"]
    assert list(got) == [0.25, None, 0.25, None, None, None, None]
    rows.update(first)  # a redraw of the same read
    assert rows.values("vram") is got
    second = read([2 * gib, None, 3 * gib, gib, gib], [4 * gib, 4 * gib, 4 * gib, None, 4 * gib])
    rows.update(second)  # a new read: made again from its own figures
    assert list(rows.values("vram")) == [0.5, None, 0.25, None, 0.75, None, None]
    rows.update(first)  # back to the first read's objects: its figures, not the second's
    assert list(rows.values("vram")) == list(got)
