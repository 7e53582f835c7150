"""Provides the overview screen: the one-machine header, node tiles, alerts and cluster sparklines.

On a terminal with room to spare (``BIG_W`` x ``BIG_H`` and up: 200x60, a 384x108 wall monitor) the
overview fills it with what an operator looks at next: the tiles take the height they need (at most
``TILES_MAX_FRAC`` of the body, then they scroll), and below them the cluster trends (GPU utilisation and
power, seeded from the nodes' history streams so they do not start empty), the busiest GPUs with their
owners, and the alert timeline. The sparklines give way to the trend charts there. Smaller terminals
(80x24 over ssh) keep the compact layout: sparklines, tiles, alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.screens.wall import SEED_BUCKET_S, SeedPoint, SeedRead, seed_from_history
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.alerts import AlertsStrip
from clustertop.dashboard.widgets.busiest import BusiestGpus, Busy, busiest
from clustertop.dashboard.widgets.plots import PlotPanel, downsample, fit_window, render
from clustertop.dashboard.widgets.sparks import ClusterSparks
from clustertop.dashboard.widgets.tiles import GAP_X, GAP_Y, STRIDE_X, TILE_H_ROOMY, NodeTiles
from clustertop.dashboard.widgets.timeline import AlertLog, Timeline
from clustertop.errors import describe
from clustertop.read.bucketread import busiest_of
from clustertop.read.cluster import age_text
from clustertop.read.model import ClusterState, SummaryRead
from clustertop.read.plan import Level, ReadPlan

#: How often the demo's start-up notice is redrawn while the simulator fills the store.
STARTUP_EVERY_S = 0.25
#: The big layout from this terminal size up (cells).
BIG_W, BIG_H = 150, 45
#: The tiles' share of the body at most, in the big layout (a big cluster's tiles scroll there).
TILES_MAX_FRAC = 0.5
#: History read to seed the trends: at most this many points in all, so 1,000 nodes read the last
#: minutes of each (a bounded read, in a worker thread, once) and 15 nodes the whole hour.
SEED_MAX_POINTS = 100_000
SEED_HOST_POINTS = 720  # an hour at the publisher's 5 s history interval
#: The trend charts redraw at most this often (plotext costs tens of ms per chart).
PLOT_EVERY_S = 5.0
#: ... made that long after the refresh that found them due, in the idle time before the next one, and shown by
#: the next refresh (or PLOT_EVERY_S later if none comes): their ~28 ms (two charts at 384x108) and their repaint
#: kept out of the refresh a person waits for (at 10,000 nodes they made its p95). A chart is so at most one
#: refresh older than drawn at once.
PLOT_AFTER_S = 0.3


class OverviewScreen(DataScreen):
    screen_name = "overview"
    # Tiles, alerts and totals: digests are all it draws, and past plan.SUMMARY_FROM_NODES the bucket summaries
    # hold the totals, alerts and every host's state, with the digests of the tiles in view (``read_plan``).
    plan_level = Level.SUMMARIES
    # Not in the footer (help lists it): acknowledging is rare, the footer is short at 80 columns.
    BINDINGS = [Binding("a", "silence", "Acknowledge alert", show=False)]

    DEFAULT_CSS = """
    OverviewScreen NodeTiles { height: 1fr; padding: 1 1 0 1; }
    OverviewScreen ClusterSparks { border-top: solid $panel; }
    OverviewScreen #startup { height: 1; padding: 0 1; background: $warning 20%; display: none; }
    OverviewScreen #summaries { height: 1; padding: 0 1; color: $text-muted; display: none; }
    OverviewScreen #summaries.-refused { color: $text; background: $warning 20%; }
    OverviewScreen #big { display: none; height: 1fr; border-top: solid $panel; }
    OverviewScreen #trends { width: 3fr; }
    OverviewScreen #side { width: 2fr; border-left: solid $panel; }
    OverviewScreen #busiest { height: auto; max-height: 50%; }
    OverviewScreen #ov-timeline { height: 1fr; border-top: solid $panel; }
    OverviewScreen.-big #big { display: block; }
    OverviewScreen.-big ClusterSparks { display: none; }
    OverviewScreen.-big NodeTiles { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.alert_log = AlertLog()
        self.seed: list[SeedPoint] = []
        self.seed_note = ""
        self._seeded = False
        self.seed_done = False  # the history read is in (tests and snapshots wait for it)
        self._owner_hosts: frozenset[str] = frozenset()
        self._tiles_asked: frozenset[str] = frozenset()  # the tiles in view a refresh was last asked for
        self._summary_text = ""
        self._last_plot = -1e18
        self._plot_timer: Any = None  # the charts' draw, due PLOT_AFTER_S after the refresh that asked for it
        self._startup_timer: Any = None

    def compose_body(self) -> Iterable[Widget]:
        ascii = self._ascii
        yield Static("", id="startup", markup=False)
        yield Static("", id="summaries", markup=False)
        yield ClusterSparks(ascii=ascii, id="sparks")
        yield NodeTiles(ascii=ascii, id="tiles")
        with Horizontal(id="big"):
            with Vertical(id="trends"):
                yield PlotPanel(id="ov-util")
                yield PlotPanel(id="ov-power")
            with Vertical(id="side"):
                yield BusiestGpus(ascii=ascii, id="busiest")
                yield Timeline(id="ov-timeline", empty="no alerts since the overview opened")
        yield AlertsStrip(id="alerts")

    @property
    def _ascii(self) -> bool:
        return bool(getattr(self.app, "settings", None) and self.app.settings.ascii)  # type: ignore[attr-defined]

    @property
    def big(self) -> bool:
        return self.has_class("-big")

    def on_mount(self) -> None:
        self.query_one(NodeTiles).focus()
        self._fit()
        self._startup_tick()
        startup = self._startup()
        if startup is not None:
            self._startup_timer = self.set_interval(STARTUP_EVERY_S, self._startup_tick)
            go = getattr(startup, "go", None)
            if go is not None:
                self.call_after_refresh(go.set)  # first frame out: the demo's simulator may take the CPU now

    # -- the demo's start-up notice -----------------------------------------------------------------

    def _startup(self) -> Any:
        settings = getattr(self.app, "settings", None)
        return getattr(settings, "startup", None)

    def _startup_tick(self) -> None:
        """The demo's start-up notice ("simulating the last 5 min of 1,000 nodes ... 40 %") until it is live."""
        startup = self._startup()
        text = startup.text() if startup is not None else None
        notice = self.query_one("#startup", Static)
        notice.display = text is not None
        if text is not None:
            notice.update(fmt.node_text(text, 300))
        elif self._startup_timer is not None:
            self._startup_timer.stop()
            self._startup_timer = None

    # -- what it reads ------------------------------------------------------------------------------

    def read_plan(self) -> ReadPlan:
        # The busiest GPUs' owners are in their nodes' full snapshots: those few, beside every digest (past
        # plan.SUMMARY_FROM_NODES, beside the summaries and the digests of the tiles in view).
        return ReadPlan(self.plan_level, self._owner_hosts if self.big else frozenset(), self._tile_hosts())

    def _tile_hosts(self) -> frozenset[str]:
        try:
            return self.query_one(NodeTiles).visible_hosts()
        except NoMatches:
            return frozenset()

    def covered(self, view: View) -> bool:
        # The digests are what the body needs; a busiest GPU whose node the read did not hold in full says
        # N/A for its owner until the next read (which asks for it): asking again at once would chase a
        # ranking that moves with every read.
        return view.state is None or view.state.plan.covers(self.plan_level)

    # -- drawing ------------------------------------------------------------------------------------

    def draw(self, view: View) -> None:
        assert view.state is not None
        self.query_one(NodeTiles).set_nodes(view.state.nodes, unreachable=view.unreachable)
        self._show_summaries(view.state, view.now)
        feed = view.feed
        self.query_one(AlertsStrip).show(view.alerts, view.first_seen,
                                         feed.notes(view.alerts) if feed is not None else None,
                                         feed.status() if feed is not None else None)
        self.alert_log.update(view.alerts, view.now)  # kept at every size: the timeline is there when it grows
        if self.big:
            self._fit_tiles()
            self._draw_big(view)
            if not self._seeded:
                self._seeded = True
                self._start_seed(view)
        else:
            self.query_one(ClusterSparks).show(view.history)

    def _show_summaries(self, state: ClusterState, now: float) -> None:
        """Say what a read of bucket summaries drew from; and where tiles in view have no figures in it (the
        first such read, a scroll), ask for the read that has them."""
        line = self.query_one("#summaries", Static)
        s = state.summaries
        if line.display != (s is not None):
            line.display = s is not None
        if s is None:
            return
        line.set_class(bool(s.refused), "-refused")
        text = summary_note(s, now)
        if text != self._summary_text:
            # One line of fixed height: no layout (an update that lays the screen out repaints all of it).
            self._summary_text = text
            line.update(text, layout=False)
        self._ask_for_tiles()

    def _ask_for_tiles(self) -> None:
        """A refresh now where the tiles in view have no digest in the last read (asked once per set of tiles)."""
        state = self.app.view.state  # type: ignore[attr-defined]
        if state is None or state.summaries is None:
            return
        in_view = self._tile_hosts()
        if not in_view <= state.plan.digest_hosts and in_view != self._tiles_asked:
            self._tiles_asked = in_view
            self.app.refresh_now()  # type: ignore[attr-defined]

    def on_node_tiles_scrolled(self, _: NodeTiles.Scrolled) -> None:
        self.call_after_refresh(self._ask_for_tiles)  # once the scroll is laid out: the tiles it shows

    def action_silence(self) -> None:
        """Acknowledge an alert: a silence in Alertmanager (dashboard/alertfeed.py)."""
        from clustertop.dashboard.alertfeed import ask_silence

        ask_silence(self.app, self.app.view.alerts)  # type: ignore[attr-defined]

    def _draw_big(self, view: View) -> None:
        assert view.state is not None
        panel = self.query_one(BusiestGpus)
        limit = max(1, min(40, (self.size.height or 60) // 4))
        if view.state.summaries is not None:
            # The summaries' busiest cards merged with those of the hosts read from their digests; a card's
            # owner where its node was read in full (``read_plan``: these hosts, next read).
            in_full = {n.host: n for n in view.state.summaries.read_here if n.host in view.state.plan.full_hosts}
            rows = []
            for top in busiest_of(view.state, limit):
                v = in_full.get(top.host)
                gpus = v.snap.gpus if v is not None and v.snap is not None and v.snap.gpus else []
                rows.append(Busy(top.host, top.index, top.util_pct, next((g for g in gpus if g.index == top.index), None)))
        else:
            rows = busiest(view.state.nodes, limit)
        self._owner_hosts = frozenset(b.host for b in rows)
        panel.show(rows, view.state.totals.gpus_total)
        self.query_one(Timeline).show(self.alert_log, view.now)
        self._draw_plots(view)

    def _draw_plots(self, view: View, force: bool = False) -> None:
        """The trend charts, every PLOT_EVERY_S of read time: made PLOT_AFTER_S after the refresh that finds them
        due (off its path) and shown by the next one; drawn now when ``force`` (the seed read in: idle time)."""
        self._show_prepared()
        now = view.now
        if not force and now - self._last_plot < PLOT_EVERY_S:
            return
        self._last_plot = now
        if force:
            self._plot(view)
        elif self._plot_timer is None:
            self._plot_timer = self.set_timer(PLOT_AFTER_S, self._prepare_plots)

    def _prepare_plots(self) -> None:
        self._plot_timer = None
        view = getattr(self.app, "view", None)
        if view is None or view.state is None or not self.big or self.app.screen is not self:
            self._last_plot = -1e18  # not made: due again at the next refresh that draws this screen
            return
        self._plot(view, prepare=True)
        self.set_timer(PLOT_EVERY_S, self._show_prepared)  # no refresh by then (a long refresh_s): shown anyway

    def _show_prepared(self) -> None:
        for panel in self.query(PlotPanel):
            panel.show_prepared()

    def _plot(self, view: View, prepare: bool = False) -> None:
        now = view.now
        hist = view.history
        first_live = hist.samples[0].ts if hist.samples else now
        seed = [s for s in self.seed if s.ts < first_live]
        oldest = seed[0].ts if seed else first_live
        window = fit_window(oldest, now)
        t0 = now - window
        t = view.state.totals if view.state is not None else None
        note = f"  ({self.seed_note})" if self.seed_note else ""
        key = (view.version, self.app.theme, len(seed), window)
        util = [(s.ts, s.gpu_util_pct) for s in seed] + hist.points("gpu_util_pct")
        power = [(s.ts, None if s.power_mw is None else s.power_mw / 1e6) for s in seed] + hist.points("power_mw", 1e6)
        # A cluster drawing more than 1 GW (fmt.MAX_MW) is a lie summed up, not a level: left out, as the
        # tiles show it N/A, so the axis never labels itself with it.
        power = [(ts, fmt.known(v, 0, fmt.MAX_MW / 1e6)) for ts, v in power]
        ascii = self._ascii
        util_now = fmt.pct(t.gpu_util_pct) if t is not None else fmt.NA
        power_now = fmt.watts(t.power_mw) if t is not None else fmt.NA
        util_panel, power_panel = self.query_one("#ov-util", PlotPanel), self.query_one("#ov-power", PlotPanel)
        (util_panel.prepare if prepare else util_panel.show)(key, lambda w, h: render(
            (f"GPU utilisation %, cluster mean - now {util_now}{note}", f"GPU util % - now {util_now}"),
            {"util": downsample(util, t0, now, max(10, w - 12))}, now, window, w, h, (0, 100), ascii,
            empty="no data yet: this chart fills while the overview runs"))
        (power_panel.prepare if prepare else power_panel.show)(key, lambda w, h: render(
            (f"GPU power kW, cluster total - now {power_now}{note}", f"GPU power kW - now {power_now}"),
            {"kW": downsample(power, t0, now, max(10, w - 12))}, now, window, w, h, None, ascii,
            empty="no data yet: this chart fills while the overview runs"))

    # -- layout -------------------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._fit()
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.draw(view)

    def _fit(self) -> None:
        w, h = self.size.width or self.app.size.width, self.size.height or self.app.size.height
        big = w >= BIG_W and h >= BIG_H
        if big != self.big:
            self.set_class(big, "-big")
            self._last_plot = -1e18
            if not big:
                self.query_one(NodeTiles).styles.height = None  # back to the compact layout's 1fr
        if big:
            self._fit_tiles()

    def _fit_tiles(self) -> None:
        """The tiles' height in the big layout: every row at the roomy tile height, up to TILES_MAX_FRAC of
        the screen (past that they scroll, at the compact height the grid then picks itself)."""
        tiles = self.query_one(NodeTiles)
        n = len(tiles.views)
        width = max(1, (self.size.width or self.app.size.width) - 2)  # the tiles' padding
        cols = max(1, (width + GAP_X) // STRIDE_X)
        rows = -(-n // cols) if n else 1
        need = rows * (TILE_H_ROOMY + GAP_Y) - GAP_Y + 1  # + the padding on top
        cap = max(6, int((self.size.height or self.app.size.height) * TILES_MAX_FRAC))
        height = min(need, cap)
        if tiles.styles.height is None or tiles.styles.height.value != height:
            tiles.styles.height = height

    # -- seeding the trends from the nodes' history streams ------------------------------------------

    def _start_seed(self, view: View) -> None:
        assert view.state is not None
        hosts = [n.host for n in view.state.nodes if n.state == "up"]
        if not hosts:
            self._seeded = False  # nothing up yet (the demo still filling in): try again at the next read
            return
        self._seed(hosts, max(12, min(SEED_HOST_POINTS, SEED_MAX_POINTS // len(hosts))))

    @work(thread=True, exclusive=True, group="overview-seed", exit_on_error=False)
    def _seed(self, hosts: list[str], count: int) -> None:
        source = self.app.source  # type: ignore[attr-defined]
        try:
            hists = [source.history(h, count) for h in hosts]
        except Exception as e:  # the trends then fill while running; the overview itself goes on
            self.post_message(SeedRead([], describe(e)))
            return
        self.post_message(SeedRead(seed_from_history(hists, SEED_BUCKET_S)))

    def on_seed_read(self, msg: SeedRead) -> None:
        self.seed = msg.points
        self.seed_note = "history unreadable; fills while running" if msg.error else ""
        self.seed_done = True
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None and self.big:
            self._draw_plots(view, force=True)

    def on_node_tiles_opened(self, event: NodeTiles.Opened) -> None:
        self.app.open_node(event.host)  # type: ignore[attr-defined]


#: The reasons a summary line lists at most (the rest are counted).
REFUSED_SHOWN = 3


def summary_note(s: SummaryRead, now: float, lead: str = "totals from") -> str:
    """What a read of bucket summaries drew from, in one line: "totals from 64/64 bucket summaries, folded by
    head01, 0.8 s old", and the buckets refused with why ("3 buckets refused: b7 missing; …; 412 hosts read
    from their digests"). Folder names and reasons are node data: escaped, cut short. ``lead``: what the
    screen drew from them (the GPU table: "order and off-screen figures from")."""
    parts = [f"{lead} {len(s.believed)}/{s.buckets} bucket summaries"]
    folders = s.folders()
    if folders:
        more = f" (+{len(folders) - 1} more)" if len(folders) > 1 else ""
        parts[0] += f", folded by {fmt.node_text(folders[0], 40)}{more}"
        age = s.age_s(now)
        parts[0] += f", {age:.1f} s old" if age is not None and age < 90 else f", {age_text(age)} old"
    missing = sum(1 for why in s.refused.values() if why == "missing")
    if missing:
        parts.append(f"{missing} bucket{'s' if missing != 1 else ''} without a summary")
    refused = sorted((b, why) for b, why in s.refused.items() if why != "missing")
    if refused:
        shown = [f"b{b} {fmt.node_text(why, 60)}" for b, why in refused[:REFUSED_SHOWN]]
        left = len(refused) - len(shown)
        parts.append(f"{len(refused)} bucket{'s' if len(refused) != 1 else ''} refused: " + "; ".join(shown)
                     + (f"; +{left} more" if left > 0 else ""))
    if s.from_digests:
        parts.append(f"{fmt.num(s.from_digests)} host{'s' if s.from_digests != 1 else ''} read from their digests")
    return " · ".join(parts)
