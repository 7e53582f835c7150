"""Provides the wall screen: the cluster on a 4K screen across a room, with no one at the keys.

Big totals, then pages that rotate by themselves (every GPU as a heat tile; history plots; the
alert timeline with Ceph, bond and queue health), a critical-alert banner that interrupts the
rotation, and a clock with the age of the data always on top. Everything is laid out from the grid
the screen actually gets (202x58 in a browser up to 480x135 in a small-font terminal).

Runs for weeks: every buffer is bounded, nothing is rebuilt on a timer, and the whole screen
drifts by a cell every few minutes so static text does not burn into the panel. The one-second
``tick`` (clock, data age, rotation, banner, drift) takes the elapsed seconds as an argument, so
tests drive it directly instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from textual import work
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Static

from clustertop.dashboard import fmt
from clustertop.dashboard.ranges import RANGES, Range, range_named
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets import bigtext
from clustertop.dashboard.widgets.bigtext import BigFigures, Figure
from clustertop.dashboard.widgets.header import cuda_cores
from clustertop.dashboard.widgets.heatgrid import HeatGrid, cells_of, one_line
from clustertop.dashboard.widgets.plots import PlotPanel, downsample, render
from clustertop.dashboard.widgets.timeline import SEV_STYLE, SEV_WORD, AlertLog, Timeline
from clustertop.errors import describe
from clustertop.read.cluster import Alert, Totals, queue_payloads
from clustertop.read.model import NodeView, view_digest
from clustertop.read.plan import Level, ReadPlan
from clustertop.wire import schema

PAGES = (("gpus", "GPUs"), ("trends", "Trends"), ("health", "Health and alerts"))
#: A critical alert is shown big for this long (or until it clears), then the rotation resumes.
BANNER_S = 120.0
#: The whole screen moves by one cell this often (burn-in): a 4-step cycle of offsets.
DRIFT_S = 240.0
DRIFT_STEPS = ((0, 0), (1, 0), (1, 1), (0, 1))
#: Plots are hour-scale: redrawing them more often than this shows nothing new.
PLOT_EVERY_S = 10.0
PLOT_WINDOW_S = 3600.0
#: Data older than this many refresh intervals (within STALE_MIN_S..STALE_MAX_S) shows as stale: a wall
#: refreshing every few minutes still says so once its data is a minute old.
STALE_INTERVALS = 3
STALE_MIN_S = 5.0
STALE_MAX_S = 60.0
#: History streams are read once at start to seed the GPU plots, only while that stays cheap.
SEED_MAX_NODES = 64
SEED_BUCKET_S = 10.0
#: The 24 h / 7 d trends change once a minute at most: read again this often while shown.
RANGE_EVERY_S = 60.0


@dataclass(frozen=True)
class SeedPoint:
    ts: float
    gpu_util_pct: float | None
    power_mw: float | None


class SeedRead(Message):
    def __init__(self, points: list[SeedPoint], error: str | None = None) -> None:
        super().__init__()
        self.points = points
        self.error = error


def seed_from_history(hists: list[list[schema.HistPoint]], bucket_s: float = SEED_BUCKET_S) -> list[SeedPoint]:
    """Cluster GPU utilisation (mean over GPUs) and power (sum over nodes) per time bucket."""
    util: dict[int, list[float]] = {}
    power: dict[int, dict[int, list[float]]] = {}  # bucket -> node -> that node's power samples
    for node_i, pts in enumerate(hists):
        for p in pts:
            if fmt.known(p.ts, -1e15, 1e15) is None:  # a NaN or 1e308 timestamp: no bucket (int() raised)
                continue
            b = int(p.ts // bucket_s)
            us = [u for u in (p.gu or ()) if fmt.known(u, 0, fmt.MAX_PCT) is not None]
            if us:
                util.setdefault(b, []).extend(us)
            ps = [w for w in (p.gp or ()) if fmt.known(w, 0, fmt.MAX_MW) is not None]
            if ps:
                power.setdefault(b, {}).setdefault(node_i, []).append(sum(ps))
    out = []
    for b in sorted(set(util) | set(power)):
        u = util.get(b)
        pw = power.get(b)
        out.append(SeedPoint((b + 0.5) * bucket_s, sum(u) / len(u) if u else None,
                             sum(sum(v) / len(v) for v in pw.values()) if pw else None))
    return out


def figures(t: Totals, alerts: list[Alert]) -> list[Figure]:
    """The one-machine totals, big. Each label carries a word when the colour means trouble."""
    gib = 1024**3

    def ratio(a: float | None, b: float | None, scale: float = 1.0, hi: float = fmt.MAX_NUM) -> str:
        if fmt.known(a, 0, hi) is None or fmt.known(b, 0, hi) is None:  # a sum past ``hi``: a node's lie
            return fmt.NA
        return f"{a / scale:.0f}/{b / scale:.0f}"  # type: ignore[operator]

    # Short labels (7 characters at most) stand in where a column is narrow (a wall in a small
    # terminal); trouble stays in words there too.
    nodes_sev = "$ct-ok"
    nodes_label, nodes_short = "nodes up / total", "nodes"
    if t.nodes_down or t.nodes_bad:
        nodes_sev = "$ct-crit"
        nodes_short = f"{t.nodes_down + t.nodes_bad} DOWN"
        nodes_label += f" - {nodes_short}"
    elif t.nodes_stale:
        nodes_sev = "$ct-warn"
        nodes_short = f"{t.nodes_stale} STALE"
        nodes_label += f" - {nodes_short}"
    gpus_label, gpus_short = "GPUs busy / total", "busy"
    gpus_sev = "$ct-info"
    if t.gpus_lost:
        gpus_short = f"{fmt.num(t.gpus_lost)} LOST"
        gpus_label += f" - {gpus_short}"
        gpus_sev = "$ct-crit"
    vram_pct = (100 * t.vram_used_bytes / t.vram_total_bytes
                if t.vram_used_bytes is not None and t.vram_total_bytes else None)
    ram_pct = (100 * t.mem_used_bytes / t.mem_total_bytes
               if t.mem_used_bytes is not None and t.mem_total_bytes else None)
    growing = any(a.source == "queue" and a.severity != "info" for a in alerts)
    out = [
        Figure(f"{t.nodes_up}/{t.nodes_total}", nodes_label, nodes_sev, nodes_short),
        Figure(ratio(t.gpus_busy, t.gpus_total), gpus_label, gpus_sev, gpus_short),
        # "… (mean), 20,000 CUDA cores", like the CPU figure's "…, 64 cores" (where the cards' cores are known)
        Figure(_big_pct(t.gpu_util_pct), "GPU utilisation (mean)" + (
            f", {cuda_cores(t.cuda_cores)} CUDA cores" if t.cuda_cores else ""), "$ct-info", "GPU %"),
        Figure(ratio(t.vram_used_bytes, t.vram_total_bytes, gib, fmt.MAX_BYTES), "VRAM used / total GiB",
               _sev(vram_pct), "VRAM"),
        Figure(_kw(t.power_mw), "GPU power", "$ct-info", "power"),
        Figure(ratio(t.mem_used_bytes, t.mem_total_bytes, gib, fmt.MAX_BYTES), "RAM used / total GiB",
               _sev(ram_pct), "RAM"),
        Figure(_big_pct(t.cpu_util_pct), f"CPU utilisation, {fmt.num(t.cpu_cores)} cores", "$ct-info", "CPU"),
        Figure(fmt.num(t.tasks_queued), "tasks queued" + (" - GROWING" if growing else ""),
               "$ct-warn" if growing else "$ct-info", "GROWING" if growing else "queued"),
    ]
    return [f if f.big != fmt.NA else Figure(f.big, f.label, "dim", f.short) for f in out]


def _big_pct(v: float | None) -> str:
    f = fmt.known(v, 0, fmt.MAX_PCT)
    return fmt.NA if f is None else f"{f:.0f}%"


def _kw(mw: float | None) -> str:
    f = fmt.known(mw, 0, fmt.MAX_MW)
    return fmt.NA if f is None else f"{f / 1e6:.1f} kW"


def _sev(pct: float | None) -> str:
    sev = fmt.severity_of_pct(pct)
    return {"ok": "$ct-ok", "warn": "$ct-warn", "crit": "$ct-crit"}.get(sev, "dim")


# ---------------------------------------------------------------------------------------------
# Health: Ceph, bonds, queues, Kubernetes
# ---------------------------------------------------------------------------------------------

_CEPH = {"HEALTH_OK": ("OK", "$ct-ok"), "HEALTH_WARN": ("WARN", "$ct-warn"), "HEALTH_ERR": ("ERR", "$ct-crit")}


def health_lines(view: View, width: int, ascii: bool) -> list[Content]:
    assert view.state is not None
    cluster = view.state.cluster
    nodes = view.state.nodes
    t = view.state.totals
    lines: list[Content] = []
    ceph = cluster.get("ceph")
    word, style = ("N/A", "dim")
    if ceph is not None and not ceph.ok:
        word, style = ("DOWN", "$ct-crit")
    elif ceph is not None and ceph.ceph is not None and ceph.ceph.status:
        word, style = _CEPH.get(ceph.ceph.status, ("ERR", "$ct-crit"))
    big = bigtext.render(f"CEPH {word}", 1, ascii) if width >= bigtext.size(f"CEPH {word}", 1)[0] else []
    lines.extend(Content.styled(b, style) for b in big)
    if not big:
        lines.append(Content.assemble(("Ceph ", "bold"), (word, style + " bold")))
    c = ceph.ceph if ceph is not None and ceph.ok else None
    if c is not None:
        used = 100 * c.used_bytes / c.total_bytes if c.used_bytes is not None and c.total_bytes else None
        lines.append(Content.assemble(
            "OSDs ", (f"{fmt.num(c.osds_up)} up", "$ct-ok" if c.osds_up == c.osds_total else "$ct-warn"),
            f" / {fmt.num(c.osds_in)} in / {fmt.num(c.osds_total)}   used ", (fmt.pct(used), _sev(used))))
        lines.append(Content(f"client read {fmt.rate(c.read_bytes_s)}  write {fmt.rate(c.write_bytes_s)}"
                             + (f"  recovery {fmt.rate(c.recovering_bytes_s)}" if c.recovering_bytes_s else "")))
        for chk in (c.checks or ())[:4]:
            sev = "$ct-crit" if chk.severity == "HEALTH_ERR" else "$ct-warn"
            lines.append(Content.assemble(("  ! ", sev), (fmt.node_text(chk.code, 30), sev),
                                          " ", fmt.node_text(chk.message, max(10, width - 40))))
    elif ceph is not None and not ceph.ok:
        lines.append(Content.styled(fmt.node_text(ceph.error or "no answer", width), "$ct-crit"))
    else:
        lines.append(Content.styled("no Ceph configured", "dim"))
    lines.append(Content(""))

    bonds_total = t.bonds_total
    degraded = t.bonds_degraded or 0
    if bonds_total is None:
        lines.append(Content.assemble(("Bonds ", "bold"), ("N/A", "dim")))
    else:
        lines.append(Content.assemble(("Bonds ", "bold"), (f"{fmt.num(bonds_total - degraded)} OK", "$ct-ok"),
                                      "  ", (f"{fmt.num(degraded)} DEGRADED", "$ct-warn bold") if degraded else
                                      ("0 degraded", "dim")))
    for n in nodes:  # each degraded bond, as its node's digest says it (``wire.digest.node_alerts``)
        d = view_digest(n) if n.state == "up" else None
        for a in (d.alerts or ()) if d is not None and d.bonds_degraded else ():
            if a.source == "bond":
                lines.append(Content.assemble(("  ! ", "$ct-warn"), (fmt.node_text(n.host, 24), "bold"), " ",
                                              fmt.node_text(a.message, max(10, width - 30))))
    lines.append(Content(""))

    qs = queue_payloads(cluster)
    lines.append(Content.assemble(("Queues ", "bold"), (f"{fmt.num(t.tasks_queued)} queued", ""),
                                  f"   {fmt.num(t.workers_online)} workers online"))
    rows = []
    for p in qs:
        for q in (p.queues.queues or ()) if p.queues else ():
            rows.append(q)
    rows.sort(key=lambda q: -(q.depth or 0))
    for q in rows[:8]:
        mark = ("  ! ", "$ct-warn") if q.growing_unconsumed else ("    ", "")
        lines.append(Content.assemble(mark, (f"{fmt.node_text(q.name, 24):<24}", "bold"),
                                      f"{fmt.num(q.depth):>7}  ", (f"{fmt.num(q.consumers)} consumers", "dim")))
    if not rows:
        lines.append(Content.styled("    none reported", "dim"))
    if t.pods_running is not None:
        lines.append(Content(""))
        lines.append(Content.assemble(("Kubernetes ", "bold"), f"{t.pods_running} pods running",
                                      f"   {fmt.num(t.gpus_allocated)} GPUs allocated"))
    return lines


class HealthPanel(Static):
    DEFAULT_CSS = """
    HealthPanel { height: 1fr; width: 1fr; padding: 0 1; }
    """

    def __init__(self, ascii: bool = False, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.ascii = ascii
        self._key: object = None

    def show(self, view: View) -> None:
        w, h = self.size.width - 2, self.size.height
        key = (view.version, w, h)
        if key == self._key or w <= 0:
            return
        self._key = key
        lines = health_lines(view, w, self.ascii)
        self.update(Content("\n").join(lines[: max(1, h)]), layout=False)


# ---------------------------------------------------------------------------------------------
# The screen
# ---------------------------------------------------------------------------------------------


def gpu_hosts(nodes: list[NodeView]) -> list[str]:
    """The nodes that reported GPUs (their history streams hold the GPU trends)."""
    out = []
    for n in nodes:
        d = view_digest(n)
        if d is not None and d.gpus:
            out.append(n.host)
    return out


class WallScreen(DataScreen):
    screen_name = "wall"
    #: Figures, alerts, bonds and the heat grid's one-line tiles are all in the digests; tiles of two lines or
    #: more show each card's name, VRAM, temperature and power: the briefs (``read_plan``).
    plan_level = Level.BRIEFS
    BINDINGS = [
        Binding("q", "app.quit", "Quit", show=False),
        Binding("ctrl+c", "app.quit", "Quit", show=False, priority=True),
    ]

    # Only Textual's own variables here: this CSS is parsed when the wall is the first screen, before
    # the app registers the clustertop themes; the severity colours come in Content styles instead.
    DEFAULT_CSS = """
    WallScreen { layout: vertical; overflow: hidden; }
    WallScreen #drift { padding: 0 1 1 0; height: 1fr; width: 1fr; }
    WallScreen #top { height: auto; }
    WallScreen #title { width: 1fr; height: auto; padding: 0 1; }
    WallScreen #clock { width: auto; height: auto; padding: 0 1; color: $foreground; }
    WallScreen #totals { height: 12; margin-top: 1; }
    WallScreen #banner { display: none; height: 1fr; border: heavy $error; padding: 0 2; }
    WallScreen.-banner #banner { display: block; }
    WallScreen.-banner #pages { display: none; }
    WallScreen #pages { height: 1fr; border-top: solid $panel; }
    WallScreen #page-gpus, WallScreen #page-health { layout: horizontal; }
    WallScreen #page-gpus HeatGrid { width: 1fr; padding: 1 1 0 1; }
    WallScreen .side { width: 38%; min-width: 40; border-left: solid $panel; padding-top: 1; }
    WallScreen #page-trends { layout: grid; grid-size: 2 2; grid-gutter: 1 2; padding: 1 1 0 1; }
    WallScreen #ticker { height: 1; padding: 0 1; background: $panel; }
    WallScreen.-stale #totals, WallScreen.-stale #pages, WallScreen.-stale #banner { text-opacity: 45%; }
    WallScreen.-narrow .side { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.page = 0
        self.page_elapsed = 0.0
        self.elapsed = 0.0  # seconds of ticks since the screen started (drives banner and drift)
        self.drift_step = 0
        self.alert_log = AlertLog()
        self.seed: list[SeedPoint] = []
        self.seed_note = ""
        self._seeded = False
        self.banner_seen: dict[str, float] = {}  # critical alert key -> elapsed when first shown
        self.banner_keys: list[str] = []
        self._last_plot = -1e9
        self.trend_range = RANGES[0]
        self.trend_points: list[tuple[float, float | None, float | None]] = []  # (ts, util %, power mW)
        self.trend_origin = ""
        self.trend_note: str | None = None
        self._trend_read_at = -1e9
        self._trend_visits = -1
        self._clock_text = ""
        self._status: object = None
        self._mono = time.monotonic()
        self._cells_n = 0  # GPUs in the heat grid's last draw (``read_plan``)

    # -- composition ------------------------------------------------------------------------------

    def compose(self) -> Iterable[Widget]:  # type: ignore[override]
        ascii = self._ascii
        with Vertical(id="drift"):
            with Horizontal(id="top"):
                yield Static("", id="title")
                yield Static("", id="clock")
            yield BigFigures(ascii=ascii, id="totals")
            yield Static("", id="banner")
            with ContentSwitcher(id="pages", initial="page-gpus"):
                with Container(id="page-gpus"):
                    yield HeatGrid(ascii=ascii, id="heat")
                    yield HealthPanel(ascii=ascii, id="health-side", classes="side")
                with Container(id="page-trends"):
                    for name in ("plot-util", "plot-power", "plot-ceph", "plot-queue"):
                        yield PlotPanel(id=name)
                with Container(id="page-health"):
                    yield Timeline(id="timeline")
                    yield HealthPanel(ascii=ascii, id="health-main", classes="side")
            yield Static("", id="ticker")

    @property
    def _ascii(self) -> bool:
        settings = getattr(self.app, "settings", None)
        return bool(settings and settings.ascii)

    @property
    def page_s(self) -> float:
        settings = getattr(self.app, "settings", None)
        return float(getattr(settings, "wall_page_s", 20.0) or 0.0)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._on_timer)

    def read_plan(self) -> ReadPlan:
        """Digests where the heat grid's tiles are one line (thousands of GPUs: everything the wall draws is in
        them, at a third of the briefs' decode), else briefs. The grid's size is its last on screen."""
        gpus = self._cells_n  # the grid's count at its last draw (the count ``_draw_page`` judges by)
        grids = self.query(HeatGrid)  # none before the screen is composed
        if gpus and grids and one_line(gpus, *grids.first().room):
            return ReadPlan(Level.DIGESTS)
        return ReadPlan(self.plan_level)

    def on_resize(self) -> None:
        w, h = self.size.width, self.size.height
        self.set_class(w < 150, "-narrow")
        totals = self.query_one(BigFigures)
        rows = totals.plan(max(20, w - 2), max(4, int(h * 0.33)))
        totals.styles.height = rows
        clock_k = 2 if h >= 90 else 1
        self._clock_k = clock_k
        self._clock_text = ""
        self._update_clock(force=True)
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.show(view, force=True)
        self.call_after_refresh(self._want_briefs)  # once the grid has its new size

    # -- the one-second tick ----------------------------------------------------------------------

    def _on_timer(self) -> None:
        now = time.monotonic()
        dt, self._mono = now - self._mono, now
        self.tick(min(dt, 5.0))

    def tick(self, dt: float = 1.0) -> None:
        """Advance the wall's own time by ``dt`` seconds: rotation, banner, drift, clock, age."""
        self.elapsed += dt
        if not self.banner_keys and self.page_s > 0:  # a banner interrupts the rotation
            self.page_elapsed += dt
            if self.page_elapsed >= self.page_s:
                self.next_page()
        self._update_banner()
        step = int(self.elapsed // DRIFT_S) % len(DRIFT_STEPS)
        if step != self.drift_step:
            self.set_drift(step)
        self._update_clock()
        self._update_status()

    def next_page(self) -> None:
        index = (self.page + 1) % len(PAGES)
        if PAGES[index][0] == "trends":  # each time round, the next of the ranges the wall shows
            labels = self.app.settings.history_wall or ["1 h"]  # type: ignore[attr-defined]
            self._trend_visits += 1
            self.set_trend_range(range_named(labels[self._trend_visits % len(labels)]))
        self.show_page(index)

    def show_page(self, index: int) -> None:
        self.page = index
        self.page_elapsed = 0.0
        self.query_one(ContentSwitcher).current = f"page-{PAGES[index][0]}"
        self._last_plot = -1e9
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.call_after_refresh(self._draw_page, view)  # after the page got its size
        self._update_status(force=True)

    def set_drift(self, step: int) -> None:
        """Burn-in: move everything by a cell; the 1-cell slack keeps the layout size constant."""
        self.drift_step = step
        dx, dy = DRIFT_STEPS[step]
        self.query_one("#drift").styles.padding = (dy, 1 - dx, 1 - dy, dx)

    @property
    def page_name(self) -> str:
        return PAGES[self.page][0]

    # -- drawing ----------------------------------------------------------------------------------

    def show(self, view: View, force: bool = False) -> None:
        # No ClusterHeader here (DataScreen.show would look for it): the wall draws its own top.
        if view.version == self._drawn and not force:
            return
        self._drawn = view.version
        if view.state is not None:
            self.draw(view)
        self._update_status(force=True)

    def draw(self, view: View) -> None:
        assert view.state is not None
        state = view.state
        self.alert_log.update(view.alerts, view.now)
        feed_state = view.feed.state if view.feed is not None else None
        if feed_state is not None:  # what fired before the wall started, from the evaluating agent
            self.alert_log.seed(feed_state.events, feed_state.seq)
        self.query_one(BigFigures).show(figures(state.totals, view.alerts))
        self._update_banner(view)
        self._draw_page(view)
        if not self._seeded:
            self._seeded = True
            self._start_seed(view)

    def _draw_page(self, view: View) -> None:
        if view.state is None:
            return
        name = self.page_name
        if name == "gpus":
            grid = self.query_one(HeatGrid)
            cells = cells_of(view.state.nodes)
            self._cells_n = len(cells)
            p = self.app.palette  # type: ignore[attr-defined]
            ink = self.app.get_css_variables().get("background")
            grid.show(cells, p, ink, one_line=not view.state.plan.covers(Level.BRIEFS))
            self._want_briefs(view)
            self.query_one("#health-side", HealthPanel).show(view)
        elif name == "trends":
            self._draw_plots(view)
        else:
            self.query_one(Timeline).show(self.alert_log, view.now)
            self.query_one("#health-main", HealthPanel).show(view)

    def _want_briefs(self, view: View | None = None) -> None:
        """A read of digests whose grid now has room for tiles of two lines or more (the screen grew, or GPUs
        left): the briefs are read now, not at the next refresh; meanwhile the tiles stay one line."""
        view = view or getattr(self.app, "view", None)
        if view is None or view.state is None or view.unreachable or view.state.plan.covers(Level.BRIEFS):
            return
        if self.page_name == "gpus" and not one_line(self._cells_n, *self.query_one(HeatGrid).room):
            self.app.refresh_now()  # type: ignore[attr-defined]

    def set_trend_range(self, rng: Range) -> None:
        """The GPU trends' range (1 h, 24 h, 7 d: dashboard/trendrange.py); the Ceph and queue plots stay 1 h.
        The wall takes no keys: the rotation moves it on (``[history] wall``)."""
        if rng is self.trend_range:
            return
        self.trend_range = rng
        self.trend_points, self.trend_origin, self.trend_note = [], "", None
        self._trend_read_at, self._last_plot = -1e9, -1e9
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self._draw_plots(view)

    @work(thread=True, exclusive=True, group="wall-range", exit_on_error=False)
    def _read_trends(self, hosts: list[str], now: float) -> None:
        from clustertop.dashboard.promhistory import PromHistory
        from clustertop.dashboard.trendrange import cluster_range

        settings = self.app.settings  # type: ignore[attr-defined]
        rng = self.trend_range
        prom = PromHistory(settings.history_prometheus, settings.history_timeout_s) if settings.history_prometheus else None
        try:
            got = cluster_range(self.app.source, hosts, rng, now, prom)  # type: ignore[attr-defined]
        except Exception as e:  # the wall goes on; the plots say why they are empty
            self.app.call_from_thread(self._trends_read, rng, [], "", f"history unreadable: {describe(e)}")
            return
        self.app.call_from_thread(self._trends_read, rng, got.points, got.origin, got.note)

    def _trends_read(self, rng: object, points: list[tuple[float, float | None, float | None]], origin: str,
                     note: str | None) -> None:
        if rng is not self.trend_range:
            return  # an answer for the range shown before the last `h`
        self.trend_points, self.trend_origin, self.trend_note = points, origin, note
        self._last_plot = -1e9
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None and self.page_name == "trends":
            self._draw_plots(view)

    def _draw_plots(self, view: View) -> None:
        if self.elapsed - self._last_plot < PLOT_EVERY_S and self._last_plot > -1e9:
            return
        self._last_plot = self.elapsed
        now = view.now
        rng = self.trend_range
        if rng.tier is not None and view.state is not None and now - self._trend_read_at >= RANGE_EVERY_S:
            self._trend_read_at = now
            self._read_trends(gpu_hosts(view.state.nodes), now)
        ascii = self._ascii
        t0 = now - PLOT_WINDOW_S
        hist = view.history
        first_live = hist.samples[0].ts if hist.samples else now
        seed = [s for s in self.seed if s.ts < first_live]
        version = (view.version, self.app.theme, len(seed))

        def series(live: list[tuple[float, float | None]], seeded: list[tuple[float, float | None]],
                   w: int) -> list[tuple[float, float]]:
            return downsample([*seeded, *live], t0, now, max(10, w - 12))

        util_live = hist.points("gpu_util_pct")
        power_live = hist.points("power_mw", 1e6)
        util_seed = [(s.ts, s.gpu_util_pct) for s in seed]
        power_seed = [(s.ts, None if s.power_mw is None else s.power_mw / 1e6) for s in seed]
        note = f" ({self.seed_note})" if self.seed_note else ""
        window, gap, span = PLOT_WINDOW_S, None, ""
        if rng.tier is not None:  # 24 h / 7 d: the range's own points, not the hour's ring
            window, span = float(rng.seconds), f", {rng.label}"
            version = (version, rng, len(self.trend_points), self.trend_note)
            util_live, util_seed = [(ts, u) for ts, u, _ in self.trend_points], []
            power_live, power_seed = [(ts, None if p is None else p / 1e6) for ts, _, p in self.trend_points], []
            said = self.trend_note or self.trend_origin or "reading…"
            note = f" ({fmt.node_text(said, 120)})"

        def trend(live: list[tuple[float, float | None]], seeded: list[tuple[float, float | None]],
                  w: int) -> list[tuple[float, float]]:
            return downsample([*seeded, *live], now - window, now, max(10, w - 12))

        if rng.tier is not None:
            gap = 1.5 * max(float(rng.tier.step_s), window / 60)
        t = view.state.totals if view.state is not None else Totals()
        last_io = view.ceph_io.last

        def filling(n: int) -> str:
            return "   (fills while the wall runs)" if n < 3 else ""

        self.query_one("#plot-util", PlotPanel).show(version, lambda w, h: render(
            (f"GPU utilisation %, cluster mean{span} - now {fmt.pct(t.gpu_util_pct)}{note}",
             f"GPU util %{span} - now {fmt.pct(t.gpu_util_pct)}"), {"util": trend(util_live, util_seed, w)}, now,
            window, w, h, (0, 100), ascii, gap_s=gap))
        self.query_one("#plot-power", PlotPanel).show(version, lambda w, h: render(
            (f"GPU power kW{span} - now {fmt.watts(t.power_mw)}{note}",
             f"GPU power kW{span} - now {fmt.watts(t.power_mw)}"),
            {"kW": trend(power_live, power_seed, w)}, now, window, w, h, None, ascii, gap_s=gap))
        mib = 1024 * 1024
        io = view.ceph_io
        rd, wr = io.points("read_bytes_s", mib), io.points("write_bytes_s", mib)
        self.query_one("#plot-ceph", PlotPanel).show(version, lambda w, h: render(
            (f"Ceph client I/O MiB/s - now read {fmt.rate(last_io.read_bytes_s if last_io else None)}, write "
             f"{fmt.rate(last_io.write_bytes_s if last_io else None)}{filling(len(io))}",
             f"Ceph r {fmt.rate(last_io.read_bytes_s if last_io else None)} "
             f"w {fmt.rate(last_io.write_bytes_s if last_io else None)}"),
            {"read": series(rd, [], w), "write": series(wr, [], w)}, now, PLOT_WINDOW_S, w, h, None, ascii))
        self.query_one("#plot-queue", PlotPanel).show(version, lambda w, h: render(
            (f"tasks queued - now {fmt.num(t.tasks_queued)}{filling(len(hist))}",
             f"queued - now {fmt.num(t.tasks_queued)}"),
            {"queued": series(hist.points("tasks_queued"), [], w)}, now, PLOT_WINDOW_S, w, h, None, ascii))

    # -- banner -------------------------------------------------------------------------------------

    def _update_banner(self, view: View | None = None) -> None:
        view = view or getattr(self.app, "view", None)
        if view is None:
            return
        crit = [a for a in view.alerts if a.severity == "critical"]
        live = {a.key for a in crit}
        for key in [k for k in self.banner_seen if k not in live]:
            del self.banner_seen[key]  # cleared: a new occurrence gets its own banner time
        for a in crit:
            self.banner_seen.setdefault(a.key, self.elapsed)
        showing = [a for a in crit if self.elapsed - self.banner_seen[a.key] < BANNER_S]
        keys = [a.key for a in showing]
        if keys == self.banner_keys and self.has_class("-banner") == bool(keys):
            return
        self.banner_keys = keys
        self.set_class(bool(keys), "-banner")
        if keys:
            self.query_one("#banner", Static).update(self._banner_content(showing))
        else:
            self.page_elapsed = 0.0  # the page that was interrupted gets its full time again
            self.call_after_refresh(self._draw_page, view)

    def _banner_content(self, alerts: list[Alert]) -> Content:
        """CRITICAL in the block font, then each alert's node and cause big enough to read from the door."""
        w = max(20, self.size.width - 8)
        room = max(6, self.query_one("#banner").size.height or self.size.height // 2)
        word = "CRITICAL" if len(alerts) == 1 else f"{len(alerts)} CRITICAL"
        k = bigtext.fit_scale([word], w, max(3, room // 4), max_k=6)
        lines = [Content.styled(x, "$ct-crit bold") for x in bigtext.render(word, k, self._ascii)]
        if not lines:
            lines = [Content.styled(word, "$ct-crit bold")]
        lines.append(Content(""))
        used = len(lines) + 2
        shown = 0
        for a in alerts:
            where = fmt.node_text(a.node) if a.node else "cluster"
            # Node text drawn as block characters is still data: it goes in as plain text, never markup.
            text = f"{where}: {fmt.node_text(a.message, 120)}".upper()
            ka = max(1, k - 1)
            while ka > 1 and len(bigtext.wrap(text, ka, w)) * bigtext.size("0", ka)[1] > (room - used) // 2:
                ka -= 1
            big = [ln for part in bigtext.wrap(text, ka, w) for ln in bigtext.render(part, ka, self._ascii)]
            if used + len(big) + 1 > room:
                break
            lines.extend(Content.styled(x, "$foreground bold") for x in big)
            lines.append(Content.assemble(("CRIT ", "$ct-crit bold"), (where, "bold"), "  ",
                                          fmt.node_text(a.message, w - len(where) - 8)))
            used += len(big) + 1
            shown += 1
        for a in alerts[shown:][:10]:
            where = fmt.node_text(a.node) if a.node else "cluster"
            lines.append(Content.assemble(("CRIT ", "$ct-crit bold"), (where, "bold"), "  ",
                                          fmt.node_text(a.message, w - len(where) - 8)))
        lines.append(Content(""))
        lines.append(Content.styled(f"shown until it clears or for {BANNER_S:.0f} s; the pages then rotate again",
                                    "dim"))
        return Content("\n").join(lines)

    # -- clock, data age, ticker ----------------------------------------------------------------------

    def _now(self) -> float:
        return float(self.app.clock())  # type: ignore[attr-defined]

    def _update_clock(self, force: bool = False) -> None:
        text = time.strftime("%H:%M:%S", time.localtime(self._now()))
        if text == self._clock_text and not force:
            return
        self._clock_text = text
        k = getattr(self, "_clock_k", 1)
        lines = bigtext.render(text, k, self._ascii)
        self.query_one("#clock", Static).update(Content("\n").join(Content(x) for x in lines), layout=force)

    def data_age(self, view: View) -> float | None:
        """Seconds since the newest data was true: since the last read, plus how old the freshest
        node's snapshot was at that read when no node is up."""
        if view.read_ts is None:
            return None
        age = max(0.0, self._now() - view.read_ts)
        state = view.state
        if state is not None and state.nodes and not any(n.state == "up" for n in state.nodes):
            ages = [n.age_s for n in state.nodes if n.age_s is not None]
            if ages:
                age += min(ages)
        return age

    def is_stale(self, age: float | None) -> bool:
        refresh = float(getattr(self.app, "settings").refresh_s)  # noqa: B009
        return age is None or age > min(STALE_MAX_S, max(STALE_MIN_S, STALE_INTERVALS * refresh))

    def _update_status(self, force: bool = False) -> None:
        view: View | None = getattr(self.app, "view", None)
        if view is None:
            return
        age = self.data_age(view)
        stale = self.is_stale(age) and view.read_ts is not None
        self.set_class(stale, "-stale")
        label = fmt.node_text(view.source_label, 60)
        n = len(view.state.nodes) if view.state is not None else 0
        if age is None:
            age_part: tuple[str, str] = ("waiting for the first read", "$ct-warn bold")
        elif stale:
            why = " - store unreachable" if view.unreachable else ""
            age_part = (f"STALE: data {fmt.num(age)} s old{why}", "$ct-crit bold")  # inf: a node's -inf index score
        else:
            age_part = (f"data {fmt.num(age)} s old", "$ct-ok")
        remaining = max(0, int(self.page_s - self.page_elapsed + 0.999)) if self.page_s > 0 else None
        page_word = f"page {self.page + 1}/{len(PAGES)} {PAGES[self.page][1]}"
        if self.banner_keys:
            page_word += " - paused by a critical alert"
        elif remaining is not None:
            page_word += f" - next in {remaining} s"
        status = (age_part, page_word, label, n, tuple(a.key for a in view.alerts))
        if status == self._status and not force:
            return
        self._status = status
        title = [
            Content.assemble(("clustertop wall", "bold"), ("  ", ""), (label, "dim"), f"  {n} nodes"),
            Content.assemble(age_part),
            Content.styled(page_word, "dim"),
        ]
        self.query_one("#title", Static).update(Content("\n").join(title), layout=False)
        self.query_one("#ticker", Static).update(self._ticker(view.alerts), layout=False)

    def _ticker(self, alerts: list[Alert]) -> Content:
        if not alerts:
            return Content.assemble(("no alerts", "$ct-ok"), ("   read-only wall - q quits", "dim"))
        counts = {s: sum(1 for a in alerts if a.severity == s) for s in ("critical", "warning", "info")}
        parts: list[str | tuple[str, str]] = [(f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}: ", "bold")]
        for sev, n in counts.items():
            if n:
                parts.append((f"{n} {SEV_WORD[sev]}  ", SEV_STYLE[sev]))
        worst = alerts[0]  # cluster.alerts sorts the most severe first
        where = fmt.node_text(worst.node) if worst.node else "cluster"
        parts += ["- ", (where, "bold"), " ", fmt.node_text(worst.message, max(10, self.size.width - 60))]
        return Content.assemble(*parts)

    # -- seeding the GPU plots from the nodes' history streams ---------------------------------------

    def _start_seed(self, view: View) -> None:
        assert view.state is not None
        hosts = gpu_hosts(view.state.nodes)
        if not hosts:
            return
        if len(hosts) > SEED_MAX_NODES:
            self.seed_note = "fills while the wall runs"
            return
        self._seed(hosts)

    @work(thread=True, exclusive=True, group="wall-seed", exit_on_error=False)
    def _seed(self, hosts: list[str]) -> None:
        source = self.app.source  # type: ignore[attr-defined]
        try:
            hists = [source.history(h) for h in hosts]
        except Exception as e:  # the plots then fill while running; the wall itself goes on
            self.post_message(SeedRead([], describe(e)))
            return
        self.post_message(SeedRead(seed_from_history(hists)))

    def on_seed_read(self, msg: SeedRead) -> None:
        self.seed = msg.points
        if msg.error:
            self.seed_note = "history unreadable; fills while running"
        self._last_plot = -1e9
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None and self.page_name == "trends":
            self._draw_plots(view)
