"""The storage, network and people screens draw every node's detail without building any node's overlay (issue 18:
``read.layers``), and draw exactly what they drew from the built overlays; a table whose rows only move is not laid
out again. Real redis-server, the simulated cluster published by the real Publisher on the agents' full-snapshot
cadence, the real app under ``run_test``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from clustertop import wire
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.network import NetworkScreen
from clustertop.dashboard.screens.people import PeopleScreen
from clustertop.dashboard.screens.storage import StorageScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.ordered import OrderedTable
from clustertop.dashboard.widgets.table import LiveTable, SortCell
from clustertop.read import layers, model
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from tests.conftest import RedisServer
from tests.read.test_detail_read_layers import sim_cluster
from tests.support import builders as b

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def table_text(table: LiveTable) -> list[tuple[str, ...]]:
    return [(key, *(c.plain for c in table.get_row_at(i))) for i, key in enumerate(table.keys)]


def drawn(screen: Any) -> Any:
    """What a screen shows, in words (its sections, every row of its tables: built for this, not only those in view)."""
    if isinstance(screen, StorageScreen):
        return [screen.section_text(s) for s in ("disks", "filesystems", "mounts")]
    if isinstance(screen, NetworkScreen):
        return (screen.summary_text, str(screen.query_one("#nics-title", Static).visual.plain),  # type: ignore[union-attr]
                table_text(screen.query_one("#bonds", OrderedTable)), table_text(screen.query_one("#nics", OrderedTable)))
    assert isinstance(screen, PeopleScreen)
    return str(screen.query_one("#who-summary", Static).render()), table_text(screen.query_one("#who-table", LiveTable))


async def test_detail_screens_build_no_overlay_and_draw_what_the_overlays_say(redis_server: RedisServer) -> None:
    client = redis_server.client()
    sim, pubs, clock = sim_cluster(client, nodes=10)
    app = make_app(Settings(frozen_time=clock.t + 0.5, refresh_s=3600.0, source_label="test"), redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        for mode, cls in (("storage", StorageScreen), ("network", NetworkScreen), ("people", PeopleScreen)):
            app.switch_mode(mode)
            await b.wait_until(pilot, lambda cls=cls: isinstance(app.screen, cls), mode)  # type: ignore[misc]
            if cls is PeopleScreen:
                state = app.view.state
                user = next(p.user for v in state.nodes for g in layers.gpus(v) or () for p in g.procs or () if p.user)
                await pilot.press(*user, "enter")
            reads = app.finished_reads
            app.refresh_now()
            await b.wait_until(pilot, lambda reads=reads: app.finished_reads > reads, "a read")  # type: ignore[misc]
            await pilot.pause()
            state = app.view.state
            deferred = [v for v in state.nodes if v.layers is not None]
            assert len(deferred) >= 8, mode  # the nodes whose full snapshot is older than their brief
            assert all(v.pending for v in deferred), f"{mode} built an overlay"
            lazy = drawn(app.screen)
            assert any(lazy) and (cls is not PeopleScreen or lazy[1]), mode
            for v in state.nodes:
                v.snap  # noqa: B018 - every overlay built, as every read built them before
            app.screen.show(app.view, force=True)
            await pilot.pause()
            assert drawn(app.screen) == lazy, mode


async def test_storage_and_network_build_no_gpu_section_and_a_bad_one_still_makes_its_node_bad(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_server.client()
    sim, pubs, clock = sim_cluster(client, nodes=10)
    # One GPU node's brief of this tick with one field of one card of the wrong type (as any node may write).
    reader = Reader(client, clock=clock, brief_from=0)
    state = reader.read(ReadPlan(Level.DETAIL))
    bad = next(v.host for v in state.nodes if v.layers is not None and (layers.current(v) or v.snap).gpus)  # type: ignore[union-attr]
    raw = msgspec.msgpack.decode(wire.plain(client.get(wire.brief_key(bad))))
    raw["gpus"][0]["temp_c"] = [1, 2]
    client.set(wire.brief_key(bad), msgspec.msgpack.encode(raw))
    built: list[str] = []
    whole = model.whole

    def counted(head: Any) -> Any:
        built.append(head.host)
        return whole(head)

    monkeypatch.setattr(model, "whole", counted)
    app = make_app(Settings(frozen_time=clock.t + 0.5, refresh_s=3600.0, source_label="test"), redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        for mode, cls in (("storage", StorageScreen), ("network", NetworkScreen)):
            app.switch_mode(mode)
            await b.wait_until(pilot, lambda cls=cls: isinstance(app.screen, cls), mode)  # type: ignore[misc]
            reads = app.finished_reads
            app.refresh_now()
            await b.wait_until(pilot, lambda reads=reads: app.finished_reads > reads, "a read")  # type: ignore[misc]
            await pilot.pause()
            state = app.view.state
            v = state.node(bad)
            assert v is not None and v.state == "bad" and "$.gpus[0].temp_c" in (v.error or ""), mode
            assert any(a.rule == "NodeBadData" and a.node == bad for a in app.view.alerts), mode
            deferred = [v for v in state.nodes if v.layers is not None]
            assert len(deferred) >= 8, mode
            # Drawn again from this read as it came (the hidden GPU ledger may have built some after the repaint):
            # the screen itself builds no brief's GPU section.
            for v in deferred:
                v.layers._brief = None  # type: ignore[union-attr]
            built.clear()
            app.screen.show(app.view, force=True)
            await pilot.pause()
            assert not built, mode
            assert any(drawn(app.screen)), mode


class Rows(App[None]):
    def compose(self) -> ComposeResult:
        yield OrderedTable([("a", "a"), ("b", "b")], id="t")


def cells(item: tuple[str, str]) -> list[Any]:
    return [SortCell(item[0]), SortCell(item[1])]


def count_layouts(monkeypatch: pytest.MonkeyPatch, table: Any) -> list[bool]:
    """Every ``table.refresh`` from now on, by whether it asked for a layout."""
    layouts: list[bool] = []
    refresh = table.refresh

    def counted(*regions: Any, layout: bool = False, **kw: Any) -> Any:
        layouts.append(layout)
        return refresh(*regions, layout=layout, **kw)

    monkeypatch.setattr(table, "refresh", counted)
    return layouts


async def test_rows_that_only_move_are_not_laid_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Rows()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(OrderedTable)
        rows = {"x": ("node-1", "bond0"), "y": ("node-22", "bond1"), "z": ("n3", "b")}
        table.show(list(rows), list(rows.values()), cells)
        await pilot.pause()
        layouts = count_layouts(monkeypatch, table)
        order = ["z", "x", "y"]  # a bond that went bad moves up: the same rows, as wide as before
        table.show(order, [rows[k] for k in order], cells)
        await pilot.pause()
        assert table.keys == order and layouts and not any(layouts)
        assert [c.plain for c in table.get_row_at(0)] == ["n3", "b"]
        layouts.clear()
        rows["w"] = ("a-much-longer-node-name", "bond9")  # new rows, wider: the columns fit them, laid out anew
        table.show(list(rows), list(rows.values()), cells)
        await pilot.pause()
        assert any(layouts)
        assert table.get_row_at(3)[0].plain == "a-much-longer-node-name"


async def test_rows_reordered_out_of_view_keep_their_widths_until_the_set_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The network screen's problem-first order: the widest row moves out of view. The same rows in another order
    keep the columns as wide (a narrower fit would lay the whole screen out again); another set of rows (a filter)
    fits them anew."""
    app = Rows()
    async with app.run_test(size=(60, 8)) as pilot:
        table = app.query_one(OrderedTable)
        rows = {f"k{i:02d}": (f"n{i}", "b") for i in range(30)}
        rows["k00"] = ("a-much-longer-node-name", "bond9")
        table.show(list(rows), list(rows.values()), cells)
        await pilot.pause()
        table.move_cursor(3)  # the cursor stays on its row: not on the wide one, which it would follow
        await pilot.pause()
        wide = list(table._widths)
        layouts = count_layouts(monkeypatch, table)
        order = [*list(rows)[1:], "k00"]  # the wide row to the end, out of view
        table.show(order, [rows[k] for k in order], cells)
        await pilot.pause()
        assert table.keys == order and table.visible_rows()[1] < len(order) and not any(layouts)
        assert table._widths == wide
        some = order[:5]  # another set of rows: fitted anew, narrower, laid out
        table.show(some, [rows[k] for k in some], cells)
        await pilot.pause()
        assert any(layouts) and table._widths[0] < wide[0]
