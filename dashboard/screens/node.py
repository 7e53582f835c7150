"""Provides the node detail screen: one node in full, plus history plots from its hist stream.

History is read only here (on drill-down, then every HIST_EVERY_S while shown) in a worker; the
plots are plotext output rendered as plain text into a Static (few plots, large).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import events, work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.containers import container_section
from clustertop.dashboard.health import gpu_health, sensors_section
from clustertop.dashboard.messages import HistoryRead
from clustertop.dashboard.nodetrust import UNCHECKED, Trust
from clustertop.dashboard.ranges import RANGES, next_range
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.ceph_maint import maintenance_section
from clustertop.dashboard.widgets.pack import Part, facts, pack
from clustertop.dashboard.widgets.plots import downsample, fit_window, render
from clustertop.dashboard.widgets.steady import Shape, steady_update
from clustertop.errors import describe
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import NodeView
from clustertop.wire import schema

HIST_EVERY_S = 5.0
#: 24 h and 7 d change once a minute at most: re-read this often while shown.
RANGE_EVERY_S = 30.0


def _line(*parts: Part) -> Content:
    return Content.assemble(*parts)


def _lines(title: str, rows: list[Content]) -> Content:
    return Content("\n").join([Content.assemble((title, "bold $primary")), *rows])


def _na(s: str) -> Part:
    return (s, "dim") if s == fmt.NA else s


def _unit(shown: str, unit: str, na_label: str = "") -> tuple[Part, ...]:
    """A figure and its unit; an unknown one is N/A alone ("await N/A", not "N/A ms")."""
    return ((f"{na_label}{fmt.NA}", "dim"),) if shown == fmt.NA else (shown, unit)


def _facts(width: int, *groups: list[Part] | tuple[Part, ...]) -> list[Content]:
    """Rows of "label value" facts two spaces apart, each fact whole (``pack``): at 80 columns
    "arch aarch64" moves to the next row rather than leave "arch" at the end of one."""
    return pack(facts(groups), width)


def trust_line(t: Trust) -> Content:
    """"trust verified: signed by gpu01's enrolled key SHA256:…", or why not (dashboard/nodetrust.py)."""
    style = {"ok": "$ct-ok", "crit": "bold $ct-crit", "stale": "$ct-stale"}.get(t.severity, "dim")
    return _line("trust ", (t.word, f"bold {style}" if t.severity == "ok" else style), ": ",
                 (fmt.node_text(t.text, 300), "" if t.severity == "ok" else style))


def info_section(v: NodeView, width: int = 200, trust: Trust | None = None, want_error: str | None = None) -> Content:
    snap = v.snap
    s = snap.system if snap else None
    sev = {"up": "$ct-ok", "stale": "$ct-stale", "down": "$ct-crit", "bad": "$ct-crit"}[v.state]
    rows = _facts(width, ["state ", (v.state.upper(), f"bold {sev}")], [f"data age {fmt.age(v.age_s)}"],
                  [f"last seen {fmt.clock(v.last_seen_ts)}"])
    if trust is not None:
        rows.append(trust_line(trust))
    if v.error:
        rows.append(_line((fmt.node_text(v.error, 300), "$ct-crit")))
        rows.append(_line(("values below are the last good snapshot", "$ct-stale")))
    elif v.detail_age_s is not None and v.state == "up":
        # The node is live (its digest is this tick's) but its full snapshot is from an earlier tick: its agent
        # rewrites it every few seconds, and every tick once it sees this screen's request (a second or two).
        # The reader drew this tick's brief over it (wire.brief.fresh): only what a brief leaves out is old.
        asked = ("a fresh one is requested" if want_error is None else
                 f"a fresh one could not be requested ({fmt.node_text(want_error, 120)})")
        rows.append(_line((f"detail {fmt.age(v.detail_age_s)} old: utilisation, memory, temperatures and power are "
                           f"current; clocks, PCIe, processes and containers are from the node's last full "
                           f"snapshot; {asked}", "$ct-stale")))
    if v.newer_schema and snap is not None:
        rows.append(_line((f"note: this node speaks schema v{fmt.num(snap.v)} (newer than this dashboard); "
                           "fields it does not know are not shown", "$ct-info")))
    if s is not None:
        rows += _facts(width, ["host ", fmt.node_text(s.hostname)], ["os ", _na(fmt.node_text(s.os))],
                       ["kernel ", _na(fmt.node_text(s.kernel))], ["arch ", _na(fmt.node_text(s.arch))])
        rows += _facts(width, ["cpu ", _na(fmt.node_text(s.cpu_model))],
                       [_na(fmt.num(s.cpu_count)), " threads / ", _na(fmt.num(s.cpu_physical)), " cores"],
                       [*_unit(fmt.num(s.cpu_mhz), " MHz", "clock ")])
        rows += _facts(width, ["uptime ", _na(fmt.duration(s.uptime_s))],
                       ["load ", _na(fmt.num(s.load1, 2)), " ", _na(fmt.num(s.load5, 2)), " ",
                        _na(fmt.num(s.load15, 2))], ["processes ", _na(fmt.num(s.procs_total))])
    if snap is not None:
        labels = ", ".join(f"{k}={val}" for k, val in sorted((snap.labels or {}).items()))
        rows += _facts(width, ["role ", _na(fmt.node_text(snap.role))],
                       ["labels ", _na(fmt.node_text(labels or None))], [f"seq {fmt.num(snap.seq)}"],
                       [f"interval {fmt.seconds(snap.interval_s)}"])
    return _lines("System", rows)


def cpu_section(s: schema.System | None, width: int, ascii: bool) -> Content:
    per = s.cpu.per_cpu_pct if s is not None and s.cpu is not None else None
    c = s.cpu if s is not None else None
    head = _facts(width, ["all ", _na(fmt.pct(c.util_pct if c else None))],
                  ["user ", _na(fmt.pct(c.user_pct if c else None))], ["system ", _na(fmt.pct(c.system_pct if c else None))],
                  ["iowait ", _na(fmt.pct(c.iowait_pct if c else None))], ["steal ", _na(fmt.pct(c.steal_pct if c else None))])
    if not per:
        return _lines("CPU", [*head, _line(("per-CPU: N/A", "dim"))])
    cell_w = 22  # "123 " + bar 12 + " 100%"
    cols = max(1, width // cell_w)
    rows = list(head)
    for start in range(0, len(per), cols):
        parts: list[Part] = []
        for i in range(start, min(start + cols, len(per))):
            filled, empty = fmt.bar(per[i] / 100, 12, ascii)
            sev = {"ok": "$ct-ok", "warn": "$ct-warn", "crit": "$ct-crit", "na": "dim"}[fmt.severity_of_pct(per[i])]
            shown = fmt.num(fmt.known(per[i], 0, fmt.MAX_PCT))  # NaN, 1e308: N/A, not 309 digits
            parts += [(f"{i:>3} ", "dim"), (filled, f"{sev} on $ct-bar-empty"), (empty, "on $ct-bar-empty"),
                      f"{shown:>4}{'%' if shown != fmt.NA else ''} "]
        rows.append(_line(*parts))
    return _lines("CPU", rows)


def mem_section(s: schema.System | None, width: int = 200) -> Content:
    m = s.mem if s is not None else None
    if m is None:
        return _lines("Memory", [_line(("N/A", "dim"))])
    pct = 100 * m.used_bytes / m.total_bytes if m.used_bytes is not None and m.total_bytes else None
    return _lines("Memory", _facts(width, ["used ", _na(fmt.bytes_(m.used_bytes)), " of ", _na(fmt.bytes_(m.total_bytes)),
                                           " (", _na(fmt.pct(pct)), ")"],
                                   ["available ", _na(fmt.bytes_(m.available_bytes))],
                                   ["cached ", _na(fmt.bytes_(m.cached_bytes))],
                                   ["swap ", _na(fmt.bytes_(m.swap_used_bytes)), "/", _na(fmt.bytes_(m.swap_total_bytes))]))


def gpu_section(gpus: list[schema.Gpu] | None, width: int = 200) -> Content:
    if gpus is None:
        return _lines("GPUs", [_line(("N/A (not reported)", "dim"))])
    if not gpus:
        return _lines("GPUs", [_line("none")])
    rows = []
    for g in gpus:
        if g.lost:
            rows.append(_line(f"{fmt.num(g.index)} ", (f"LOST: {fmt.node_text(g.error or 'fell off the bus', 100)}", "$ct-crit")))
            continue
        rows += _facts(width, [f"{fmt.num(g.index)} ", (fmt.node_text(g.name, 28), "bold")], ["util ", _na(fmt.pct(g.util_pct))],
                       ["vram ", _na(fmt.bytes_(g.mem_used_bytes)), "/", _na(fmt.bytes_(g.mem_total_bytes))],
                       [_na(fmt.temp(g.temp_c))], [_na(fmt.watts(g.power_mw)), "/", _na(fmt.watts(g.power_limit_mw))],
                       ["fan ", _na(fmt.pct(g.fan_pct))], ["P", _na(fmt.num(g.pstate))],
                       ["procs ", str(len(g.procs or ()))])
        rows += [Content("   ") + line for line in gpu_health(g, width - 3)]  # versions, clocks, link, errors
    return _lines("GPUs", rows)


def disk_section(s: schema.System | None) -> Content:
    rows = []
    for d in (s.disks if s else None) or ():
        rows.append(_line(f"{fmt.node_text(d.name, 12):<12} r ", _na(fmt.rate(d.read_bytes_s)), "  w ",
                          _na(fmt.rate(d.write_bytes_s)), "  util ", _na(fmt.pct(d.util_pct)), "  await ",
                          *_unit(fmt.num(d.await_ms, 1), " ms")))
    for f in (s.filesystems if s else None) or ():
        pct = 100 * f.used_bytes / f.total_bytes if f.used_bytes is not None and f.total_bytes else None
        rows.append(_line(f"{fmt.node_text(f.mountpoint, 24):<24} ", _na(fmt.bytes_(f.used_bytes)), "/",
                          _na(fmt.bytes_(f.total_bytes)), " (", _na(fmt.pct(pct)), ") ",
                          (fmt.node_text(f.fstype or "", 10), "dim")))
    return _lines("Disks and filesystems", rows or [_line(("N/A", "dim"))])


def nic_section(s: schema.System | None) -> Content:
    rows = []
    for n in (s.nics if s else None) or ():
        state = "up" if n.up else ("down" if n.up is False else fmt.NA)
        rows.append(_line(f"{fmt.node_text(n.name, 14):<14} ", (f"{state:<4}", "$ct-ok" if n.up else "$ct-crit"),
                          "  rx ", _na(fmt.rate(n.rx_bytes_s)), "  tx ", _na(fmt.rate(n.tx_bytes_s)),
                          "  ", *_unit(fmt.num(n.speed_mbps), " Mb/s", "speed "), "  ",
                          (fmt.node_text(n.kind or "", 12), "dim")))
    return _lines("Network", rows or [_line(("N/A", "dim"))])


def proc_section(s: schema.System | None, limit: int = 15) -> Content:
    procs = (s.procs if s else None) or []
    rows = [_line(("    pid user         cpu     rss  command", "dim"))]
    for p in sorted(procs, key=lambda p: -(p.cpu_pct or 0))[:limit]:
        rows.append(_line(f"{fmt.num(p.pid):>7} ", f"{fmt.node_text(p.user, 10):<10} ", f"{fmt.pct(p.cpu_pct):>6} ",
                          f"{fmt.bytes_(p.rss_bytes, 0):>8}  ", fmt.node_text(p.cmdline or p.name, 120)))
    if not procs:
        rows.append(_line(("N/A", "dim")))
    return _lines("Top processes", rows)


def collector_section(snap: schema.NodeSnapshot | None, width: int = 200) -> Content:
    if snap is None:
        return _lines("Collectors", [_line(("N/A", "dim"))])
    rows = []
    for name, st in sorted(snap.collectors.items()):
        rows.append(_line(f"{fmt.node_text(name, 14):<14} ", ("ok  " if st.ok else "FAIL", "$ct-ok" if st.ok else "$ct-crit"),
                          f" {fmt.num(st.duration_ms, 1):>6} ms  ",
                          (fmt.node_text(st.error, 100), "$ct-crit") if st.error else ""))
    a = snap.agent
    if a is not None:
        rows += _facts(width, [("agent ", "bold"), fmt.node_text(a.version)], ["cpu ", _na(fmt.pct(a.cpu_pct, 1))],
                       ["rss ", _na(fmt.bytes_(a.rss_bytes))], ["tick ", *_unit(fmt.num(a.tick_ms, 1), " ms")],
                       ["publish errors ", _na(fmt.num(a.publish_errors))], ["read-only"] if a.read_only else [])
    return _lines("Collectors and agent cost", rows or [_line(("none reported", "dim"))])


def plot(title: str, points: list[schema.HistPoint], series: dict[str, list[float | None]], now: float,
         width: int, height: int, ylim: tuple[float, float] | None, ascii: bool,
         window_s: float | None = None, step_s: float | None = None) -> str:
    """History ``points`` (oldest first) charted by the dashboard's one plot wrapper; ``series``: one value
    per point (None where the node had none), per label. ``window_s``: the range shown (None: the
    shortest that holds the points, up to an hour); ``step_s``: the points' spacing where they are
    buckets (24 h, 7 d): they are averaged to about one per column, and a column (or bucket) with no
    data is drawn as a gap, not bridged."""
    window = window_s or (fit_window(points[0].ts, now) if points else fit_window(now, now))
    pts = {label: [(p.ts, v) for p, v in zip(points, values, strict=True) if v is not None]
           for label, values in series.items()}
    gap = None
    if step_s:
        cols = max(10, width - 10)
        pts = {label: downsample(vals, now - window, now, cols) for label, vals in pts.items()}
        gap = 1.5 * max(step_s, window / cols)  # one empty column (or bucket) is drawn as a gap
    return render(title, pts, now, window, width, height, ylim, ascii, empty="no history", gap_s=gap)


def side_by_side(blocks: list[str], width: int) -> str:
    """Text blocks (plots) in columns ``width`` wide, two spaces apart, top-aligned."""
    if len(blocks) == 1:
        return blocks[0]
    cols = [b.splitlines() for b in blocks]
    height = max(len(c) for c in cols)
    return "\n".join("  ".join(f"{c[y] if y < len(c) else '':<{width}}" for c in cols).rstrip()
                     for y in range(height))


class NodeScreen(DataScreen):
    screen_name = "node"
    plan_level = Level.DIGESTS  # the other nodes: the header's totals (this node in full: read_plan)
    BINDINGS = [Binding("escape", "app.back", "Back"),
                # Job control: pick one of the node's processes, then confirm (dashboard/actions.py).
                Binding("k", "signal_process('TERM')", "Terminate"), Binding("K", "signal_process('KILL')", "Kill"),
                # History range: 1 h (5-second points), 24 h (1-minute), 7 d (10-minute): dashboard/ranges.py.
                Binding("h", "cycle_range", "1h/24h/7d", show=False),
                # The node's containers: pick one, then stop / restart / kill it (issue 16).
                Binding("c", "container_action", "Containers", show=False),
                # Ceph maintenance (dashboard/ceph_ops.py): noout / norebalance, this node's OSDs out / in.
                # In the footer on a node Ceph places OSDs on (its section is on screen; at 80 columns
                # "o Ceph" fits after k/K); on any other node the same key is kept off the footer (the
                # cluster flags, or "no data"): the first binding whose check_action allows it runs.
                Binding("o", "ceph_maint", "Ceph"),
                Binding("o", "ceph_maint_offscreen", "Ceph", show=False)]

    DEFAULT_CSS = """
    /* The gap between sections is the grid's gutter, not a margin: in a grid row of height auto
       a section's margin-bottom was taken out of its own height, cutting its last line. */
    NodeScreen #sections { layout: grid; grid-size: 1; grid-rows: auto; grid-gutter: 1 2; padding: 0 1; }
    NodeScreen.-wide #sections { grid-size: 2; }
    NodeScreen .section { height: auto; }
    NodeScreen #plots { color: $ct-info; column-span: 2; }
    """

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host
        self.points: list[schema.HistPoint] = []
        self.hist_error: str | None = None
        self.range = RANGES[0]
        self.hist_origin = ""
        self.hist_note: str | None = None
        self._prom: object = None
        self._range_read_at = 0.0
        self._sig: tuple[object, ...] = ()
        self._plot_sig: tuple[object, ...] = ()
        self._asked_seal = False
        self._shapes: dict[str, Shape] = {}  # per section, the shape it was drawn at (steady_update)
        self._has_osds = False  # Ceph places OSDs here: "o Ceph" in the footer

    def read_plan(self) -> ReadPlan:
        return ReadPlan(self.plan_level, frozenset((self.host,)))  # this node in full; the header from digests

    @property
    def screen_name_full(self) -> str:
        return f"node {self.host}"

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="sections"):
            for name in ("info", "gpus", "cpus", "sensors", "mem", "nics", "disks", "procs", "containers", "ceph", "collectors", "plots"):
                yield Static("", id=name, classes="section", markup=False)

    def on_mount(self) -> None:
        self.screen_name = f"node {fmt.node_text(self.host, 40)}"
        self.query_one("#sections").focus()
        self.load_history()
        self.set_interval(HIST_EVERY_S, self._history_tick)

    def _history_tick(self) -> None:
        # History is read only while someone is looking at it; 24 h and 7 d less often than the hour.
        now = self.app.view.now  # type: ignore[attr-defined]
        if self.is_current and (self.range.tier is None or now - self._range_read_at >= RANGE_EVERY_S):
            self.load_history()

    def action_cycle_range(self) -> None:
        self.range = next_range(self.range)
        self.points, self.hist_error, self.hist_note, self.hist_origin = [], None, None, ""
        self._plot_sig = ()
        self.query_one("#plots", Static).update(Content(f"history {self.range.label}: reading…"))
        self.load_history()

    def _prometheus(self) -> object:
        settings = self.app.settings  # type: ignore[attr-defined]
        if self._prom is None and settings.history_prometheus:
            from clustertop.dashboard.promhistory import PromHistory

            self._prom = PromHistory(settings.history_prometheus, settings.history_timeout_s)
        return self._prom

    @work(thread=True, exclusive=True, group="history")
    def load_history(self) -> None:
        source = self.app.source  # type: ignore[attr-defined]
        rng, now = self.range, self.app.view.now  # type: ignore[attr-defined]
        self._range_read_at = now
        try:
            got = source.history_range(self.host, rng, now, self._prometheus() if rng.tier else None)
            self.post_message(HistoryRead(self.host, got.points, None, rng.label, got.origin, got.note))
        except Exception as e:  # a Redis error here must not take the screen down
            self.post_message(HistoryRead(self.host, [], describe(e), rng.label))

    def on_history_read(self, msg: HistoryRead) -> None:
        if msg.host != self.host or msg.range_label != self.range.label:
            return  # an answer for the range shown before the last `h`
        if msg.error is None or not self.points:
            self.points = msg.points
            self.hist_origin, self.hist_note = msg.origin, msg.note
        self.hist_error = msg.error
        self._draw_plots(self.app.view.now)  # type: ignore[attr-defined]

    def draw(self, view: View) -> None:
        assert view.state is not None
        v = view.state.node(self.host)
        if v is None:
            self.query_one("#info", Static).update(Content.assemble(
                (f"node {fmt.node_text(self.host)} is no longer listed", "$ct-crit")))
            return
        snap = v.snap
        trust = self.app.trust.of(self.host)  # type: ignore[attr-defined]
        if trust.word == UNCHECKED and not self._asked_seal and self.host not in view.state.sealed:
            # Opened between reads: the read this was drawn from did not take this node's seal. Ask
            # for the next one now (once) rather than show "unchecked" for a whole refresh interval.
            self._asked_seal = True
            self.app.refresh_now()  # type: ignore[attr-defined]
        ceph = view.state.cluster.get("ceph")  # the OSDs Ceph places on this node, for its maintenance
        sig = (v.state, id(snap), snap.seq if snap else None, fmt.age(v.age_s), fmt.age(v.detail_age_s),
               view.state.want_error, v.error,
               self.size.width, trust,
               (ceph.seq, ceph.ts) if ceph is not None else None)
        if sig == self._sig:
            return
        self._sig = sig
        s = snap.system if snap else None
        width = self.size.width // (2 if self.has_class("-wide") else 1) - 4
        ascii = self.app.settings.ascii  # type: ignore[attr-defined]
        self._set("info", info_section(v, width, trust, view.state.want_error))
        self._set("cpus", cpu_section(s, width, ascii))
        self._set("sensors", sensors_section(snap.sensors if snap else None, width))
        self._set("mem", mem_section(s, width))
        self._set("gpus", gpu_section(snap.gpus if snap else None, width))
        self._set("disks", disk_section(s))
        self._set("nics", nic_section(s))
        self._set("procs", proc_section(s))
        # Shown only where an engine reports (no socket: None, and the screen stays as it was).
        cs = snap.containers if snap else None
        self._set("containers", container_section(cs))
        self.query_one("#containers", Static).display = cs is not None
        maint = maintenance_section(ceph, self.host)  # None: Ceph places no OSD here (or is not configured)
        self._set("ceph", maint or Content(""))
        self.query_one("#ceph", Static).display = maint is not None
        if (maint is not None) != self._has_osds:
            self._has_osds = maint is not None
            self.refresh_bindings()  # the footer only when it changes, not every read
        self._set("collectors", collector_section(snap, width))

    def _set(self, wid: str, content: Content) -> None:
        # Figures change every read: a new layout only when the section's height may change (steady.py).
        self._shapes[wid] = steady_update(self.query_one(f"#{wid}", Static), content, self._shapes.get(wid))

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        if self.points:  # plots are sized for the screen: redraw now, not at the next history read
            self.call_after_refresh(self._draw_plots, self.app.view.now)  # type: ignore[attr-defined]

    def _draw_plots(self, now: float) -> None:
        pts = self.points
        width = self.size.width - 4
        rng = self.range
        sig = (len(pts), pts[-1].ts if pts else None, width, self.size.height, self.hist_error, rng, self.hist_note)
        if sig == self._plot_sig:
            return
        self._plot_sig = sig
        ascii = self.app.settings.ascii  # type: ignore[attr-defined]
        # The 1 h keeps its own look (and its snapshots); 24 h and 7 d say their range and source.
        head = "" if rng.tier is None else f"history {rng.label}: {self.hist_origin} (h: 1 h / 24 h / 7 d)\n"
        if self.hist_note:
            head += fmt.node_text(self.hist_note, 300) + ": Redis shown\n"
        window = None if rng.tier is None else float(rng.seconds)
        step = None if rng.tier is None else float(rng.tier.step_s)
        if not pts:
            text = f"history: {self.hist_error}" if self.hist_error else (
                "history: none recorded yet" if rng.tier is None else f"no history in the last {rng.label} yet")
            self.query_one("#plots", Static).update(Content(head + text))
            return
        ngpu = max((len(p.gu or ()) for p in pts), default=0)
        # As many side by side as keep 60 columns each, sharing the width: three across a wall or
        # a 200-column terminal, two from ~124 columns (the third under them), one per row at 80.
        count = 3 if ngpu else 2
        cols = max(1, min(count, width // 60))
        w = max(30, (width - 2 * (cols - 1)) // cols)
        h = max(14, self.size.height // 4)  # a wall's 108 rows get plots 27 high
        cpu = plot("CPU %", pts, {"cpu": [p.cpu for p in pts]}, now, w, h, (0, 100), ascii, window, step)
        gpu_series: dict[str, list[float | None]] = {
            f"gpu{i}": [(p.gu[i] if p.gu is not None and i < len(p.gu) else None) for p in pts] for i in range(ngpu)}
        mib = 1024 * 1024
        net = plot("network MiB/s", pts, {
            "rx": [None if p.rx is None else p.rx / mib for p in pts],
            "tx": [None if p.tx is None else p.tx / mib for p in pts]}, now, w, h, None, ascii, window, step)
        blocks = [cpu, net]
        if ngpu:
            blocks.insert(1, plot("GPU util %", pts, gpu_series, now, w, h, (0, 100), ascii, window, step))
        blocks = [side_by_side(blocks[i:i + cols], w) for i in range(0, len(blocks), cols)]
        text = head + "\n\n".join(blocks)
        if self.hist_error:
            text = f"history read failed ({self.hist_error}); showing the last read\n" + text
        self.query_one("#plots", Static).update(Content(text))

    def action_container_action(self) -> None:
        from clustertop.dashboard.actions import actions_of

        actions_of(self.app).ask_pick_container(self.host)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)  # read-only: both Ceph bindings hidden and refused
        if action in ("ceph_maint", "ceph_maint_offscreen") and allowed:
            return self._has_osds == (action == "ceph_maint")
        return allowed

    def action_ceph_maint_offscreen(self) -> None:
        self.action_ceph_maint()

    def action_ceph_maint(self) -> None:
        from clustertop.dashboard.actions import actions_of
        from clustertop.dashboard.ceph_ops import ask_maint

        state = self.app.view.state  # type: ignore[attr-defined]
        ask_maint(actions_of(self.app), state.cluster.get("ceph") if state is not None else None, self.host)

    def action_signal_process(self, sig: str) -> None:
        from clustertop.dashboard.actions import actions_of

        actions_of(self.app).ask_pick_process(self.host, sig)
