"""The wall of hundreds to thousands of GPUs reads digests only: one-line tiles (utilisation and colour) are all
a digest holds, and what they show equals what the briefs give. Real redis-server, the real Publisher."""

from __future__ import annotations

from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.wall import BANNER_S, WallScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.heatgrid import HeatGrid, cells_of, choose_preset, level, one_line
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.tiles import _gpu_line
from clustertop.read.model import NodeView
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.wire import schema
from clustertop.wire.digest import digest
from tests.support import builders as b

pytestmark = pytest.mark.anyio


def troubled(host: str, n: int = 8) -> schema.NodeSnapshot:
    """A tower of ``n`` cards: utilisations spread over every word, one lost, one with uncorrected ECC errors,
    one hot, one both hot and ECC (ECC wins, as in ``cells_of``), one reporting no utilisation."""
    snap = b.tower(host, tuple((13 * i + len(host)) % 101 for i in range(n)))
    gpus = snap.gpus
    assert gpus is not None
    gpus[1].lost = True
    gpus[2].ecc_uncorrected = 3
    gpus[3].temp_c = 99
    gpus[4].temp_c, gpus[4].ecc_uncorrected = 99, 1
    gpus[5].util_pct = None
    return snap


def shown(cells: list[Any]) -> list[tuple[Any, ...]]:
    """What a one-line tile draws of a cell: its place, its figure and its word/colour."""
    return [(c.host, c.index, c.util_pct, level(c)) for c in cells]


def test_one_line_tiles_from_digests_equal_those_from_briefs() -> None:
    snaps = [troubled(f"gpu{i:02d}") for i in range(6)]
    states = ["up", "up", "stale", "down", "up", "up"]
    from_snaps = cells_of([NodeView(s.host, st, snap=s) for s, st in zip(snaps, states, strict=True)])
    from_digests = cells_of([NodeView(s.host, st, digest=digest(s)) for s, st in zip(snaps, states, strict=True)])
    assert shown(from_digests) == shown(from_snaps)
    words = {level(c)[0] for c in from_digests}
    assert {"LOST", "ECC", "HOT", "STALE", "DOWN", "N/A"} <= words
    # What a digest lacks is unknown there, never 0.
    assert all(c.temp_c is None and c.power_mw is None and c.mem_frac is None for c in from_digests)


def test_digest_marks_ecc_and_the_overview_tile_colours_it_as_trouble() -> None:
    d = digest(troubled("gpu01"))
    assert d.gpu_marks is not None and d.gpu_marks[:5] == ".xehe"
    p = Palette({"ct-crit": "red", "ct-warn": "yellow", "ct-ok": "green", "ct-info": "blue"})
    segs = _gpu_line(d, p, False, False)
    crit = [s.text for s in segs if s.style == p["crit"]]
    assert "".join(crit).count("✗") == 1 and len("".join(crit)) == 3  # the lost card and the two with ECC
    assert any(s.style == p["warn"] for s in segs)  # the hot one


def many_towers(n: int) -> list[schema.NodeSnapshot]:
    snaps = [troubled(f"gpu{i:03d}") for i in range(n)]
    snaps[min(7, n - 1)].bonds = [schema.Bond(name="bond0", degraded=True, problems=["slave eth1 down"],
                                  slaves=[schema.BondSlave(name="eth0", ok=True), schema.BondSlave(name="eth1", ok=False)])]
    return snaps


def wall_app(client: Any) -> Any:
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test", wall=True, wall_page_s=0),
                   client)
    app.source.brief_from = 0  # the plan's level at any size (below 200 nodes every read is in full otherwise)
    return app


async def past_the_banner(pilot: Any) -> None:
    """The lost and ECC cards are critical alerts: their banner hides the pages for ``BANNER_S``; let it pass."""
    await b.wait_reads(pilot)
    pilot.app.screen.tick(BANNER_S + 1)
    await pilot.pause()
    assert not pilot.app.screen.banner_keys


async def read_again(pilot: Any) -> None:
    app = pilot.app
    done = app.finished_reads
    app.refresh_now()
    await b.wait_reads(pilot, done + 1)
    await pilot.pause()


async def test_a_wall_of_hundreds_of_gpus_reads_digests_and_draws_what_briefs_give(redis_server: Any) -> None:
    snaps = many_towers(48)  # 384 cards: one-line tiles at 202x58
    b.publish(redis_server.client(), snaps)
    app = wall_app(redis_server.client)
    async with app.run_test(size=(202, 58)) as pilot:
        await past_the_banner(pilot)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WallScreen)
        assert screen.read_plan().level is Level.DIGESTS  # the first draw counted the cards
        await read_again(pilot)
        state = app.view.state
        assert state.plan.level is Level.DIGESTS and all(n.snap is None for n in state.nodes)
        grid = screen.query_one(HeatGrid)
        assert grid.preset[1] == 1 and len(grid.cells) == 48 * 8
        briefs = Reader(redis_server.client(), clock=lambda: b.NOW + 0.5, brief_from=0).read(ReadPlan(Level.BRIEFS))
        assert shown(grid.cells) == shown(cells_of(briefs.nodes))
        # The degraded bond, from the node's digest: its host and its words on the health side.
        health = str(screen.query_one("#health-side").render())
        assert "gpu007" in health and "gpu006" not in health and "bond0 degraded: slave eth1 down" in health
        assert "1 DEGRADED" in health


async def test_a_few_gpus_are_read_from_briefs_with_their_figures(redis_server: Any) -> None:
    b.publish(redis_server.client(), many_towers(3))  # 24 cards: tiles of several lines
    app = wall_app(redis_server.client)
    async with app.run_test(size=(202, 58)) as pilot:
        await past_the_banner(pilot)
        await read_again(pilot)
        grid = app.screen.query_one(HeatGrid)
        assert app.view.state.plan.level is Level.BRIEFS and grid.preset[1] >= 4
        assert "°C" in str(grid.render()) and "gpu000/0" in str(grid.render())


async def test_tiles_grown_past_one_line_wait_for_the_briefs_not_na(redis_server: Any) -> None:
    b.publish(redis_server.client(), many_towers(48))
    app = wall_app(redis_server.client)
    async with app.run_test(size=(202, 58)) as pilot:
        await past_the_banner(pilot)
        await read_again(pilot)
        assert app.view.state.plan.level is Level.DIGESTS
        grid = app.screen.query_one(HeatGrid)
        drawn: list[tuple[int, bool]] = []  # every grid drawn: (tile lines, every live card's temperature known)
        render_grid = grid.render_grid

        def watch(w: int, h: int) -> Any:
            lines = render_grid(w, h)
            drawn.append((grid.preset[1], all(c.temp_c is not None for c in grid.cells if c.problem != "LOST")))
            return lines

        grid.render_grid = watch  # type: ignore[method-assign]
        await pilot.resize_terminal(480, 135)  # room for 3-line tiles, which show temperature and power
        await b.wait_until(pilot, lambda: app.view.state.plan.level is Level.BRIEFS and drawn and drawn[-1][0] >= 3,
                           "a read of briefs drawn in big tiles")
        assert not one_line(48 * 8, *grid.room)
        assert (1, False) in drawn  # the digests' cells, drawn at the new size ...
        assert all(temps for th, temps in drawn if th > 1), drawn  # ... in one-line tiles: never N/A in a big one
        assert "gpu000/0" in str(grid.render())  # a name: no one-line tile shows one


def test_one_line_follows_the_presets() -> None:
    assert one_line(8000, 236, 65) and choose_preset(8000, 236, 65)[1] == 1
    assert not one_line(40, 236, 65)
    assert not one_line(8000, 0, 0)  # a grid never laid out: briefs
