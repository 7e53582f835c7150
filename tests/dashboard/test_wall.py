"""The wall display with the pilot: what a room sees, and that it runs unattended.

Rotation, the critical banner, stale data and the clock are driven through ``WallScreen.tick``
(the wall's own one-second step) and a clock the test moves, never by sleeping. Data goes through
the real Publisher into a real redis-server or the embedded store.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import ContentSwitcher, Static

from clustertop import wire
from clustertop.dashboard.app import WALL_ACTIONS, make_app
from clustertop.dashboard.history import TotalsHistory
from clustertop.dashboard.screens.help import HelpScreen
from clustertop.dashboard.screens.wall import (
    BANNER_S,
    PAGES,
    WallScreen,
    figures,
    seed_from_history,
)
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets import bigtext
from clustertop.dashboard.widgets.bigtext import BigFigures
from clustertop.dashboard.widgets.heatgrid import GpuCell, HeatGrid, cells_of, choose_preset, level
from clustertop.dashboard.widgets.plots import PlotPanel, downsample
from clustertop.dashboard.widgets.timeline import MAX_EVENTS, AlertLog, Timeline
from clustertop.read.cluster import Alert
from clustertop.store import embedded
from clustertop.wire import schema
from tests.support import builders as b

pytestmark = pytest.mark.anyio

WALL_SIZES = [(202, 58), (384, 108), (480, 135)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def wall_app(factory: Any, **kw: Any) -> Any:
    settings = Settings(frozen_time=b.NOW + 0.5, refresh_s=kw.pop("refresh_s", 3600), source_label="test",
                        wall=True, wall_page_s=kw.pop("wall_page_s", 20.0), **kw)
    return make_app(settings, factory)


def healthy_store() -> Any:
    _server, factory = embedded()
    b.publish(factory(), b.demo_cluster(), hist=12, cluster=[b.ceph("HEALTH_OK"), b.queues(41)])
    return factory


def title_text(app: Any) -> str:
    return str(app.screen.query_one("#title", Static).render())


def text_of(widget: Any) -> str:
    return str(widget.render())


# -- start, keys, read-only ------------------------------------------------------------------------


async def test_wall_is_the_only_screen_and_takes_no_keys_but_quit() -> None:
    app = wall_app(healthy_store())
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        screen = app.screen
        assert isinstance(screen, WallScreen)
        assert app.settings.effective_read_only and app.settings.read_only  # forced by make_app
        theme = app.theme
        for key in ("1", "2", "3", "4", "5", "question_mark", "t", "escape", "ctrl+p", "enter", "s", "slash"):
            await pilot.press(key)
        await pilot.pause()
        assert app.screen is screen and not isinstance(app.screen, HelpScreen)
        assert app.theme == theme
        assert app.check_action("go", ("nodes",)) is False
        assert app.check_action("command_palette", ()) is False
        assert app.check_action("quit", ()) is True and WALL_ACTIONS == {"quit"}
        await pilot.press("q")
    assert app.return_code == 0


async def test_ctrl_c_quits_the_wall() -> None:
    app = wall_app(healthy_store())
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.return_code == 0


async def test_wall_shows_the_totals_big_with_words(redis_server: Any) -> None:
    b.publish(redis_server.client(), b.demo_cluster(), cluster=[b.ceph("HEALTH_WARN"), b.queues(41)])
    app = wall_app(redis_server.client)
    async with app.run_test(size=(384, 108)) as pilot:
        await b.wait_reads(pilot)
        figs = app.screen.query_one(BigFigures)
        # 5 towers x 2 GPUs: utils (90-10i, 5i) -> 9 busy; power sum(50 + 2u) = 1250 W; VRAM 40 of 110 GiB.
        by_label = {f.label: f.big for f in figs.figures}
        assert by_label["nodes up / total"] == "8/8"
        assert by_label["GPUs busy / total"] == "9/10"
        assert by_label["GPU power"] == "1.2 kW" or by_label["GPU power"] == "1.3 kW"
        assert by_label["VRAM used / total GiB"] == "40/110"
        assert by_label["tasks queued"] == "41"
        assert figs.k >= 2  # big enough to read across a room at 384x108
        rendered = text_of(figs)
        assert "█" in rendered and "nodes up / total" in rendered
        assert "CEPH" not in rendered  # Ceph is on the pages, not among the totals
        heat = app.screen.query_one(HeatGrid)
        assert len(heat.cells) == 10
        words = text_of(heat)
        assert "gpu-01/0" in words and "BUSY" in words and "IDLE" in words  # the text cue, not only colour


# -- rotation and banner ---------------------------------------------------------------------------


async def test_pages_rotate_on_their_own() -> None:
    app = wall_app(healthy_store(), wall_page_s=20.0)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        wall: WallScreen = app.screen
        switcher = wall.query_one(ContentSwitcher)
        assert wall.page == 0 and switcher.current == "page-gpus"
        wall.tick(19.0)
        assert wall.page == 0
        assert "next in 1 s" in title_text(app)
        wall.tick(1.0)
        await pilot.pause()
        assert wall.page == 1 and switcher.current == "page-trends"
        wall.tick(20.0)
        await pilot.pause()
        assert switcher.current == "page-health"
        await pilot.pause()
        assert "Alert timeline" in text_of(wall.query_one(Timeline))
        wall.tick(20.0)
        assert wall.page == 0 and len(PAGES) == 3


async def test_no_rotation_when_page_seconds_is_zero() -> None:
    app = wall_app(healthy_store(), wall_page_s=0)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        app.screen.tick(3600.0)
        assert app.screen.page == 0


def lost_gpu_cluster(lost: bool) -> list[schema.NodeSnapshot]:
    snaps = b.demo_cluster()
    if lost:
        assert snaps[2].gpus is not None
        snaps[2].gpus[1] = b.gpu(1, None, None, lost=True, error="fell off the bus")
    return snaps


async def test_critical_alert_interrupts_rotation_for_a_while(redis_server: Any) -> None:
    b.publish(redis_server.client(), lost_gpu_cluster(True))
    app = wall_app(redis_server.client, wall_page_s=20.0)
    async with app.run_test(size=(384, 108)) as pilot:
        await b.wait_reads(pilot)
        await pilot.pause()
        wall: WallScreen = app.screen
        assert wall.has_class("-banner")
        banner = text_of(wall.query_one("#banner", Static))
        assert "GPU 1 lost" in banner and "gpu-03" in banner and "█" in banner  # big word + the cause
        assert not wall.query_one("#pages").display
        wall.tick(100.0)
        assert wall.page == 0, "the banner holds the rotation"
        assert "paused by a critical alert" in title_text(app)
        wall.tick(BANNER_S)  # shown long enough: the pages come back and rotate again
        await pilot.pause()
        assert not wall.has_class("-banner") and wall.query_one("#pages").display
        assert "1 CRIT" in text_of(wall.query_one("#ticker", Static))  # still said, in one line
        wall.tick(20.0)
        assert wall.page == 1


async def test_banner_goes_when_the_alert_clears(redis_server: Any) -> None:
    b.publish(redis_server.client(), lost_gpu_cluster(True))
    app = wall_app(redis_server.client, refresh_s=0.1)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        await pilot.pause()
        assert app.screen.has_class("-banner")
        b.publish(redis_server.client(), lost_gpu_cluster(False))
        await b.wait_until(pilot, lambda: not app.screen.has_class("-banner"), "banner to clear")
        # The timeline remembers it: opened and cleared.
        events = list(app.screen.alert_log.events)
        gpu = [e for e in events if e.alert.source == "gpu"]
        assert gpu and gpu[0].cleared_ts is not None


# -- stale data, clock ------------------------------------------------------------------------------


async def test_old_data_is_shown_stale_with_its_age() -> None:
    app = wall_app(healthy_store())
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        wall: WallScreen = app.screen
        wall.tick(1.0)
        assert "data 0 s old" in title_text(app) and not wall.has_class("-stale")
        app.clock = lambda: b.NOW + 75.5  # no read since (refresh is an hour): 75 s pass on the clock
        wall.tick(1.0)
        await pilot.pause()
        assert wall.has_class("-stale")
        assert "STALE: data 75 s old" in title_text(app)
        clock = text_of(wall.query_one("#clock", Static))
        assert "█" in clock or "▀" in clock  # the clock is drawn big


async def test_store_gone_is_stale_and_says_why(redis_server: Any) -> None:
    b.publish(redis_server.client(), b.demo_cluster())
    app = wall_app(redis_server.client, refresh_s=0.1)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        redis_server.stop()
        await b.wait_until(pilot, lambda: app.view.unreachable, "a failed read")
        app.clock = lambda: b.NOW + 30.5
        app.screen.tick(1.0)
        await pilot.pause()
        assert "STALE: data 30 s old - store unreachable" in title_text(app)
        assert app.screen.has_class("-stale")
        assert app.screen.query_one(BigFigures).figures[0].big == "8/8"  # last data kept, dimmed


async def test_drift_moves_the_screen_and_keeps_its_size() -> None:
    app = wall_app(healthy_store())
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        wall: WallScreen = app.screen
        drift = wall.query_one("#drift")
        before = drift.content_region
        wall.tick(241.0)  # DRIFT_S: one step
        await pilot.pause()
        after = drift.content_region
        assert wall.drift_step == 1
        assert after.size == before.size and after.offset != before.offset


# -- layout by the grid we get ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40), *WALL_SIZES], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_layout_fits_every_size(size: tuple[int, int]) -> None:
    app = wall_app(healthy_store())
    async with app.run_test(size=size) as pilot:
        await b.wait_reads(pilot)
        await pilot.pause()
        wall: WallScreen = app.screen
        w, h = size
        for widget in wall.query("*"):
            if widget.display and widget.region.area:
                assert widget.region.right <= w and widget.region.bottom <= h, f"{widget} overflows at {size}"
        figs = wall.query_one(BigFigures)
        if size in WALL_SIZES:
            assert figs.k >= 1
            tw, th, cols, rows = wall.query_one(HeatGrid).preset
            assert cols * rows >= 10  # every GPU has a tile
            assert th >= 5
        for page in ("trends", "health"):
            wall.next_page()
            await pilot.pause()
            assert wall.query_one("#pages").current == f"page-{page}"
            for widget in wall.query(f"#page-{page} *"):
                if widget.display and widget.region.area:
                    assert widget.region.right <= w and widget.region.bottom <= h, f"{widget} overflows at {size}"
            if page == "trends":
                # Every chart keeps a title with its figure: plotext drops one wider than the chart,
                # so a narrow chart takes the title's short form.
                for panel in wall.query(PlotPanel):
                    first = next(line for line in text_of(panel).splitlines() if line.strip())
                    assert " - now " in first or first.strip().startswith("Ceph r "), (panel.id, size, first)


async def test_plots_draw_only_when_data_changed() -> None:
    _server, factory = embedded()
    b.publish(factory(), b.demo_cluster(), hist=30)
    app = wall_app(factory)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        wall: WallScreen = app.screen
        await b.wait_until(pilot, lambda: bool(wall.seed), "history seed")
        wall.show_page(1)
        await pilot.pause()
        await pilot.pause()
        panel = wall.query_one("#plot-util", PlotPanel)
        text = text_of(panel)
        assert "GPU utilisation" in text and "60 min ago" in text and text.splitlines()[-1].rstrip().endswith("now")
        draws = panel.draws
        for _ in range(5):
            wall.tick(1.0)
            wall.show(app.view)  # same view version: nothing to draw
        assert panel.draws == draws


async def test_node_text_stays_literal_on_the_wall() -> None:
    _server, factory = embedded()
    host = "[b]x[/b][$ct-crit]y"
    snap = b.tower(host, (99, 1))
    assert snap.gpus is not None
    snap.gpus[0].lost = True
    b.publish(factory(), [snap])
    app = wall_app(factory)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        await pilot.pause()
        assert f"{host}/1" in text_of(app.screen.query_one(HeatGrid))
        assert host in text_of(app.screen.query_one("#banner", Static))


# -- pieces -----------------------------------------------------------------------------------------


def test_block_font_sizes_and_ascii() -> None:
    lines = bigtext.render("15/15", 2)
    w, h = bigtext.size("15/15", 2)
    assert len(lines) == h == 5 and all(len(x) == w for x in lines)
    assert set("".join(lines)) <= {" ", "█", "▀", "▄"}
    ascii_lines = bigtext.render("1.6 kW", 1, ascii=True)
    assert all(c.isascii() for c in "".join(ascii_lines)) and "#" in "".join(ascii_lines)
    assert bigtext.fit_scale(["888/888"], 200, 40) > bigtext.fit_scale(["888/888"], 60, 40) >= 1
    assert bigtext.fit_scale(["888/888"], 10, 40) == 0
    assert bigtext.render("", 3) == [] and bigtext.render("?~", 1)  # unknown characters still draw


def test_gpu_levels_say_what_colour_says() -> None:
    def cell(util: int | None, state: str = "up", problem: str | None = None) -> GpuCell:
        return GpuCell("n", 0, util, None, None, None, state, problem)

    assert level(cell(3)) == ("IDLE", "stale")
    assert level(cell(30)) == ("LOW", "info")
    assert level(cell(70)) == ("BUSY", "ok")
    assert level(cell(95)) == ("FULL", "warn")
    assert level(cell(95, problem="HOT")) == ("HOT", "crit")
    assert level(cell(None)) == ("N/A", "na")
    assert level(cell(50, state="stale")) == ("STALE", "stale")
    assert level(cell(50, state="down")) == ("DOWN", "stale")


def test_heat_grid_presets_scale_from_ten_to_thousands() -> None:
    tw, th, cols, rows = choose_preset(10, 250, 70)
    assert cols * rows >= 10 and th >= 8  # a few GPUs on a wall: big tiles with big figures
    tw, th, cols, rows = choose_preset(2000, 380, 70)
    assert cols * rows >= 2000 and th <= 2
    tw, th, cols, rows = choose_preset(100_000, 100, 20)
    assert cols * rows < 100_000  # shows "+N more" in the last tile


def test_cells_of_marks_lost_hot_and_stale_nodes() -> None:
    from clustertop.read.reader import NodeView

    hot = b.tower("a", (50, 50))
    assert hot.gpus is not None
    hot.gpus[0].temp_c = 95
    hot.gpus[1].lost = True
    cells = cells_of([NodeView("a", "up", snap=hot), NodeView("b", "stale", snap=b.tower("b"))])
    assert [c.problem for c in cells[:2]] == ["HOT", "LOST"] and cells[1].util_pct is None
    assert [level(c)[0] for c in cells[2:]] == ["STALE", "STALE"]


def test_alert_log_is_bounded_and_tracks_clearing() -> None:
    log = AlertLog()
    a = Alert("critical", "gpu", "n1", "gpu0", "GPU 0 lost")
    log.update([a], 10.0)
    log.update([], 20.0)
    assert log.events[0].ts == 10.0 and log.events[0].cleared_ts == 20.0
    for i in range(10_000):  # weeks of flapping alerts
        log.update([Alert("warning", "bond", f"n{i % 50}", "bond0", f"flap {i}")], 30.0 + i)
    assert len(log.events) == MAX_EVENTS and len(log._open) <= MAX_EVENTS


def test_the_history_the_wall_plots_is_bounded() -> None:
    from clustertop.read.cluster import Totals

    h = TotalsHistory(refresh_s=1.0, window_s=600)
    for i in range(5000):
        h.add(float(i), Totals(tasks_queued=i))
    assert len(h) == 601 and h.points("tasks_queued")[-1] == (4999.0, 4999.0)
    h.add(4999.0, Totals(tasks_queued=1))  # same timestamp: not a second sample, the newer reading
    assert len(h) == 601 and h.points("tasks_queued")[-1] == (4999.0, 1.0)
    h.add_gap(5000.0)
    assert h.points("tasks_queued")[-1] == (5000.0, None)  # a gap, not 0


def test_seed_from_history_is_cluster_mean_util_and_summed_power() -> None:
    p = schema.HistPoint
    node_a = [p(ts=100.0, gu=[90, 10], gp=[200_000, 50_000]), p(ts=105.0, gu=[80, None], gp=[180_000, None])]
    node_b = [p(ts=101.0, gu=[50], gp=[100_000])]
    (pt,) = seed_from_history([node_a, node_b], bucket_s=10.0)
    assert pt.gpu_util_pct == pytest.approx((90 + 10 + 80 + 50) / 4)
    assert pt.power_mw == pytest.approx((250_000 + 180_000) / 2 + 100_000)


def test_downsample_means_per_bucket_and_keeps_gaps() -> None:
    pts = [(float(t), 10.0 if t < 50 else None) for t in range(100)]
    out = downsample(pts, 0.0, 100.0, 10)
    assert len(out) == 5 and all(v == 10.0 for _, v in out)


def test_figures_say_trouble_in_words() -> None:
    from clustertop.read.cluster import Totals

    t = Totals(nodes_total=5, nodes_up=3, nodes_down=1, nodes_stale=1, gpus_total=4, gpus_busy=2, gpus_lost=1)
    figs = {f.label: f for f in figures(t, [])}
    assert "nodes up / total - 1 DOWN" in figs and figs["nodes up / total - 1 DOWN"].style == "$ct-crit"
    assert figs["GPUs busy / total - 1 LOST"].big == "2/4"
    assert figs["GPU power"].big == "N/A" and figs["GPU power"].style == "dim"  # unknown, never 0
    # In a narrow column (a wall in an 80-column terminal) the short labels keep the trouble words.
    grid = BigFigures()
    grid.figures, grid.cols, grid.k = figures(t, []), 8, 0
    labels = grid.render_figures(80).plain.splitlines()[1].split()
    assert labels[:2] == ["1", "DOWN"] and labels[2:4] == ["1", "LOST"] and "power" in labels
    assert all(len(f.short) <= 7 for f in figures(t, []))


def test_wire_key_for_lost_gpu_fixture_is_what_the_banner_test_needs() -> None:
    from clustertop.read.cluster import alerts
    from clustertop.read.reader import NodeView

    nodes = [NodeView(s.host, "up", snap=s) for s in lost_gpu_cluster(True)]
    crit = [a for a in alerts(nodes) if a.severity == "critical"]
    assert [(a.node, a.subject) for a in crit] == [("gpu-03", "gpu1")]
    assert wire.name_in(wire.node_key("gpu-03"), wire.node_key) == "gpu-03"
