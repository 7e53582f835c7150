"""Provides the GPUs screen: every GPU of the cluster (nvitop-like) and the processes on the selected one.

At 1,000 nodes x 8 GPUs the table holds 8,000 (node, GPU) records; sorting reads one raw value
per GPU (``SORT_VALUES``) and cells are built only for the rows on screen (LiveTable).

Past ``plan.SUMMARY_FROM_NODES`` (10,000 nodes x 8 GPUs) it reads the bucket summaries' GPU columns and the
briefs' GPUs of the rows in view only (``dashboard.gpurows``, ``ReadPlan.gpus``); a sort by a column the
summaries lack, or a filter, reads every node's GPUs as below that size, and the screen says so.

The process table is where job control will hang its keys later; actions are declared on this
screen so ``check_action`` can hide them in read-only mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

from textual import on
from textual.binding import Binding
from textual.content import Content
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.gpurows import SUMMABLE, SummaryRows
from clustertop.dashboard.health import gpu_health
from clustertop.dashboard.screens.overview import summary_note
from clustertop.dashboard.screens.tabular import TableScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.steady import Shape, steady_update
from clustertop.dashboard.widgets.table import LiveTable, SortCell, num_cell, text_cell
from clustertop.read import plan as plans
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import NodeView
from clustertop.wire import schema
from clustertop.wire.digest import hot_c

GPU_COLUMNS = [
    ("node", "node"), ("idx", "#"), ("name", "name"), ("util", "util"), ("vram", "VRAM"), ("temp", "temp"),
    ("power", "power/limit"), ("fan", "fan"), ("pstate", "P"), ("ecc", "ECC c/u"), ("throttle", "throttle"),
]
#: Folded away first in a narrow terminal: the card's name is the same on most nodes.
GPU_FOLD = ("throttle", "ecc", "pstate", "fan", "name")
PROC_FOLD = ("kind",)
PROC_COLUMNS = [
    ("pid", "pid"), ("user", "user"), ("owner", "owner"), ("vram", "VRAM"), ("kind", "kind"), ("command", "command"),
]
BAR_W = 10


def bar_cell(frac: float | None, shown: str, sev: str, p: Palette, grey: bool, ascii: bool) -> SortCell:
    if frac is None:
        return SortCell(f"{'':{BAR_W}} {fmt.NA:>5}", "dim", None)
    filled, empty = fmt.bar(frac, BAR_W, ascii)
    cell = SortCell("", "", frac)
    cell.append(filled, str(p["stale" if grey else sev] + p.bar_empty))
    cell.append(empty, str(p.bar_empty))
    cell.append(f" {shown:>5}")
    return cell


def gpu_key(host: str, index: int) -> str:
    return f"{host}\x1f{index}"  # a separator no hostname contains


def key_host(key: str) -> str:
    """The node of a ``gpu_key``."""
    return key.split("\x1f", 1)[0]


def gpu_row(v: NodeView, g: schema.Gpu, p: Palette, ascii: bool) -> list[SortCell]:
    grey = v.state != "up"
    vs = p.text_style("stale") if grey else ""
    head = [text_cell(v.host, vs or "bold"), num_cell(fmt.num(g.index), g.index, vs),
            text_cell(g.name, vs, 24)]
    if g.lost:
        return head + [SortCell(f"LOST: {fmt.node_text(g.error or 'fell off the bus', 40)}",
                                p.text_style("crit"), -1)] + [num_cell(fmt.NA, None) for _ in range(7)]
    util = g.util_pct
    vram = (g.mem_used_bytes / g.mem_total_bytes
            if g.mem_used_bytes is not None and g.mem_total_bytes else None)
    hot = hot_c(g)
    temp_sev = "" if g.temp_c is None or g.temp_c < hot - 10 else ("warn" if g.temp_c < hot else "crit")
    power = (f"{fmt.watts(g.power_mw)}/{fmt.watts(g.power_limit_mw)}" if g.power_mw is not None else fmt.NA)
    ecc = (f"{fmt.num(g.ecc_corrected)}/{fmt.num(g.ecc_uncorrected)}"
           if g.ecc_corrected is not None or g.ecc_uncorrected is not None else fmt.NA)
    pstate = fmt.num(g.pstate)
    throttle = ",".join(g.throttle_reasons) if g.throttle_reasons else ("-" if g.throttle_reasons == [] else None)
    return head + [
        bar_cell(None if util is None else util / 100, fmt.pct(util), "info", p, grey, ascii),
        bar_cell(vram, fmt.pct(None if vram is None else 100 * vram), fmt.severity_of_pct(
            None if vram is None else 100 * vram, 90, 98), p, grey, ascii),
        num_cell(fmt.temp(g.temp_c), g.temp_c, vs or p.text_style(temp_sev) if temp_sev else vs),
        num_cell(power, g.power_mw, vs),
        num_cell(fmt.pct(g.fan_pct), g.fan_pct, vs),
        num_cell(pstate if pstate == fmt.NA else f"P{pstate}", g.pstate, vs),
        num_cell(ecc, g.ecc_uncorrected, vs or (p.text_style("crit") if g.ecc_uncorrected else "")),
        text_cell(throttle, vs or (p.text_style("warn") if g.throttle_reasons else ""), 40),
    ]


def proc_row(gp: schema.GpuProc) -> list[SortCell]:
    owner = None
    if gp.owner is not None:
        owner = f"{gp.owner.kind}:{gp.owner.namespace + '/' if gp.owner.namespace else ''}{gp.owner.name or ''}"
    return [
        num_cell(fmt.num(gp.pid), gp.pid),
        text_cell(gp.user, limit=16),
        text_cell(owner, limit=40),
        num_cell(fmt.bytes_(gp.used_mem_bytes), gp.used_mem_bytes),
        text_cell(gp.kind),
        text_cell(gp.cmdline or gp.name, limit=200),
    ]


def _vram_frac(g: schema.Gpu) -> float | None:
    if g.lost or g.mem_used_bytes is None or not g.mem_total_bytes:
        return None
    return g.mem_used_bytes / g.mem_total_bytes


GpuItem = tuple[NodeView, schema.Gpu]

#: The raw value each column sorts by (None = N/A, sorted last), as the cells show it: a lost
#: GPU sorts below every real utilisation and has no other values.
SORT_VALUES: dict[str, Callable[[NodeView, schema.Gpu], Any]] = {
    "node": lambda v, g: v.host,
    "idx": lambda v, g: g.index,
    "name": lambda v, g: g.name,
    "util": lambda v, g: -1 if g.lost else g.util_pct,
    "vram": lambda v, g: _vram_frac(g),
    "temp": lambda v, g: None if g.lost else g.temp_c,
    "power": lambda v, g: None if g.lost else g.power_mw,
    "fan": lambda v, g: None if g.lost else g.fan_pct,
    "pstate": lambda v, g: None if g.lost else g.pstate,
    "ecc": lambda v, g: (None if g.lost or (g.ecc_corrected is None and g.ecc_uncorrected is None)
                         else g.ecc_uncorrected),
    "throttle": lambda v, g: (None if g.lost else ",".join(g.throttle_reasons) if g.throttle_reasons
                              else ("-" if g.throttle_reasons == [] else None)),
}


def sort_value(item: GpuItem, column: str) -> Any:
    return SORT_VALUES[column](*item)


def sort_values(items: list[GpuItem], column: str) -> list[Any]:
    """``sort_value`` of every item (what LiveTable sorts by), as one pass: the columns people sort by
    most read their field inline; at 80,000 GPUs two calls per card were most of a sort's cost."""
    if column == "util":
        return [-1 if g.lost else g.util_pct for _, g in items]
    if column in ("temp", "power", "fan", "pstate"):
        field = {"temp": "temp_c", "power": "power_mw", "fan": "fan_pct", "pstate": "pstate"}[column]
        return [None if g.lost else getattr(g, field) for _, g in items]
    if column == "node":
        return [v.host for v, _ in items]
    if column == "idx":
        return [g.index for _, g in items]
    fn = SORT_VALUES[column]
    return [fn(v, g) for v, g in items]


#: Per host, its GPUs' indexes and their row keys (``gpu_key``), kept from one refresh to the next.
KeyCache = dict[str, tuple[list[int], list[str]]]


def gpu_rows(nodes: Iterable[NodeView], needle: str = "", cache: KeyCache | None = None) -> tuple[
        list[str], list[GpuItem], KeyCache]:
    """The GPU table's rows in node order: their keys, their (node, GPU) records, and the key cache for
    the next refresh. A node's keys are the same string objects refresh after refresh while its cards
    are (so the table's "same rows?" test is a pointer compare), and no per-card tuple is built in
    Python: 80,000 cards fold in a few passes of C."""
    known = cache or {}
    new: KeyCache = {}
    keys: list[str] = []
    items: list[GpuItem] = []
    for v in nodes:
        snap = v.snap
        if snap is None or v.state == "down" or not snap.gpus:
            continue
        gpus = [g for g in snap.gpus if matches(v, g, needle)] if needle else snap.gpus
        if not gpus:
            continue
        host = v.host
        idx = [g.index for g in gpus]
        got = known.get(host)
        if got is None or got[0] != idx:
            got = (idx, [gpu_key(host, i) for i in idx])
        new[host] = got
        keys += got[1]
        items += zip(repeat(v), gpus)
    return keys, items, new


def matches(v: NodeView, g: schema.Gpu, needle: str) -> bool:
    """The filter: a node name, a GPU model, or the user of a process on the GPU."""
    if needle in v.host.lower() or (g.name is not None and needle in g.name.lower()):
        return True
    return any(gp.user is not None and needle in gp.user.lower() for gp in g.procs or ())


class GpusScreen(TableScreen):
    screen_name = "gpus"
    plan_level = Level.GPUS  # every GPU's row: the briefs' GPUs (read_plan adds the selection's processes)
    #: Past ``plan.SUMMARY_FROM_NODES``: rows from the bucket summaries' GPU columns and the briefs of the rows in
    #: view (``read_plan``); False: every node's GPUs at any size (the bench's same-run baseline).
    summaries = True
    table_id = "gpus-table"
    filter_placeholder = "filter: node, GPU model or user (Esc clears)"
    # Job control on the process table (dashboard/actions.py asks, confirms, re-checks, audits).
    BINDINGS = [Binding("k", "signal_process('TERM')", "Terminate"), Binding("K", "signal_process('KILL')", "Kill")]

    DEFAULT_CSS = """
    GpusScreen #filter { display: none; dock: top; margin-top: 2; }
    GpusScreen.-filtering #filter { display: block; }
    GpusScreen #gpus-note { height: 1; padding: 0 1; color: $text-muted; display: none; }
    GpusScreen #gpus-note.-refused { color: $text; background: $warning 20%; }
    GpusScreen #gpus-table { height: 2fr; }
    GpusScreen #procs-title { height: 1; background: $panel; padding: 0 1; }
    GpusScreen #gpu-detail { height: auto; max-height: 3; padding: 0 1; }
    GpusScreen #procs-table { height: 1fr; min-height: 4; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self._keys: KeyCache = {}  # the rows' keys, reused while a node's cards are the same (gpu_rows)
        self._detail: Content | None = None  # the health lines shown, and their shape (_show_detail)
        self._detail_shape: Shape = None
        self.rows = SummaryRows(gpu_key)  # the rows of a summary read (``dashboard.gpurows``)
        self._from_summaries = False  # the table shows ``rows`` (ids), not (node, GPU) records
        self._rows_asked: frozenset[str] = frozenset()  # the hosts in view a refresh was last asked for
        self._note = ""

    def everything(self) -> bool:
        """Whether what is drawn needs every node's GPUs (``Level.GPUS``): a sort by a column the summaries lack,
        or a filter (a GPU model, a user: in the briefs only)."""
        if not self.summaries or self.needle:
            return True
        try:
            column = self.table.sort_column
        except NoMatches:
            return False
        return column is not None and column not in SUMMABLE

    def read_plan(self) -> ReadPlan:
        # Every row reads from briefs; the selected GPU's processes (VRAM, command line, start time for
        # k/K) come from its node's full snapshot. Past plan.SUMMARY_FROM_NODES, the rows from the summaries'
        # GPU columns and the briefs of the rows in view, a page either side (``ReadPlan.gpus``).
        full = frozenset((key_host(self.selected),)) if self.selected else frozenset()
        if self.everything():
            return ReadPlan(self.plan_level, full)
        return ReadPlan(Level.SUMMARIES, full, self._hosts_near(), gpus=True)

    def _hosts_near(self, pages: int = 1) -> frozenset[str]:
        """The hosts of the rows in view and ``pages`` pages either side."""
        try:
            table = self.table
        except NoMatches:
            return frozenset()
        top, bottom = table.visible_rows()
        page = max(1, bottom - top) * pages
        return frozenset(map(key_host, table.keys[max(0, top - page):bottom + page]))

    def covered(self, view: View) -> bool:
        # A summary read holds the rows; a row in view not in it yet shows the columns' figures until the read
        # asked for lands (``_ask_for_rows``). A sort or filter that needs every brief waits for that read.
        st = view.state
        if st is not None and st.plan.gpus and not self.everything():
            return True
        return super().covered(view)

    def compose_body(self) -> Iterable[Widget]:
        yield self.filter_input()
        yield Static("", id="gpus-note", markup=False)
        yield LiveTable(GPU_COLUMNS, id=self.table_id, fold=GPU_FOLD)
        yield Static("processes", id="procs-title")
        yield Static("", id="gpu-detail", markup=False)  # the selected GPU's health (dashboard/health.py)
        yield LiveTable(PROC_COLUMNS, id="procs-table", fold=PROC_FOLD)

    def draw(self, view: View) -> None:
        assert view.state is not None
        p: Palette = self.app.palette  # type: ignore[attr-defined]
        ascii = self.app.settings.ascii  # type: ignore[attr-defined]
        table = self.table
        st = view.state
        if self.everything() and not st.plan.covers(Level.GPUS):
            # A filter or a sort that needs every brief, over a summary read (the filter redraws at once): the rows
            # shown stay until the read of every brief, asked for now, lands.
            self._show_note(view)
            self.app.refresh_now()  # type: ignore[attr-defined]
            return
        self._from_summaries = st.summaries is not None and st.plan.gpus and not self.everything()
        if self._from_summaries:
            rows = self.rows
            rows.update(st)
            item = rows.item
            table.show_rows(rows.keys, rows.ids, lambda r: gpu_row(*item(r), p, ascii),
                            lambda r, col: rows.value(r, col), values=lambda _, col: rows.values(col))
        else:
            # Cheap records only: (node, GPU) pairs; cells are built by the table for rows in view.
            keys, items, self._keys = gpu_rows(st.nodes, self.needle, self._keys)
            table.show_rows(keys, items, lambda it: gpu_row(it[0], it[1], p, ascii), sort_value, values=sort_values)
        self.selected = table.cursor_key
        self._show_note(view)
        self._show_procs()
        if self._from_summaries:
            self._ask_for_rows()

    def _show_note(self, view: View) -> None:
        """One line on where the rows come from: the bucket summaries (as the overview says it), or every node's
        GPUs where a sort or filter needs them at a size that reads summaries otherwise."""
        st = view.state
        assert st is not None
        line = self.query_one("#gpus-note", Static)
        text, refused = "", False
        if not self.everything() and st.summaries is not None:
            s = st.summaries
            refused = bool(s.refused)
            text = summary_note(s, view.now, lead="order and off-screen figures from") + \
                " · rows in view from their nodes' briefs"
        elif self.summaries and len(st.nodes) >= plans.SUMMARY_FROM_NODES:
            why = f"filtering by {self.needle!r}" if self.needle else f"sorting by {self.table.sort_column}"
            took = ("reading…" if not st.plan.covers(Level.GPUS)
                    else f"{(st.fetch_ms + st.decode_ms) / 1000:.2f} s this read" if st.fetch_ms is not None
                    and st.decode_ms is not None else "N/A")
            text = fmt.node_text(f"{why} reads every node's GPUs ({took}); "
                                 "node, #, util, VRAM, temp and power sort from the bucket summaries", 300)
        line.set_class(refused, "-refused")
        if line.display != bool(text):
            line.display = bool(text)
        if text != self._note:
            self._note = text
            line.update(text, layout=False)

    def _ask_for_rows(self) -> None:
        """A refresh now where rows in view have no brief in the last read (a scroll, a sort, the first summary
        read): asked once per set of hosts, so it fills within one read."""
        if not self._from_summaries:
            return
        in_view = self._hosts_near(0)
        missing = in_view - self.rows.views.keys()
        if missing and in_view != self._rows_asked:
            self._rows_asked = in_view
            self.app.refresh_now()  # type: ignore[attr-defined]

    @on(LiveTable.Scrolled, "#gpus-table")
    def _scrolled(self, _: LiveTable.Scrolled) -> None:
        self.call_after_refresh(self._ask_for_rows)  # once the scroll is laid out: the rows it shows

    @on(LiveTable.Sorted, "#gpus-table")
    def _sorted(self, _: LiveTable.Sorted) -> None:
        st = self.app.view.state  # type: ignore[attr-defined]
        if st is None:
            return
        if self.everything() != (not st.plan.gpus) and self.summaries:
            self.app.refresh_now()  # type: ignore[attr-defined]  # the other kind of read (every brief, or summaries)
        else:
            self.call_after_refresh(self._ask_for_rows)

    def _cursor_gpu(self) -> GpuItem | None:
        table = self.table
        if table.cursor_key is None:
            return None
        item = table.cursor_item
        if self._from_summaries:
            return self.rows.item(item)
        return item  # type: ignore[no-any-return]

    def _show_procs(self) -> None:
        table = self.table
        item = self._cursor_gpu()
        title = self.query_one("#procs-title", Static)
        procs_table = self.query_one("#procs-table", LiveTable)
        procs = item[1].procs if item is not None else None
        state = self.app.view.state  # type: ignore[attr-defined]
        # Asked for only once: a node that was read in full but has only a brief left (gone stale)
        # shows what its brief has (greyed, VRAM N/A) instead of asking again and again. A row made of the
        # summaries' columns (no brief of its node in this read yet) waits for its node too.
        reading = item is not None and (item[0].brief or item[0].snap is None) and state is not None \
            and not state.plan.in_full(item[0].host)
        if reading:
            # A brief lists the processes without their VRAM and command lines: none are shown from
            # it (nothing to signal either) until the read of this node in full lands, asked for now.
            procs = []
            self.app.refresh_now()  # type: ignore[attr-defined]
        if item is None:
            title.update("processes: no GPU selected", layout=False)
        else:
            where = f"{fmt.node_text(item[0].host)} GPU {fmt.num(item[1].index)}"
            count = ("reading…" if reading else "N/A (not reported)" if procs is None
                     else str(len(procs)) if procs else "none")
            if not reading and item[0].detail_age_s is not None:
                # The node's full snapshot is from an earlier tick (its agent's cadence): say how old, until
                # the fresh one asked for lands (a second or two).
                count += f" (detail {fmt.age(item[0].detail_age_s)} old)"
            # Where the cursor is in the whole list: with thousands of rows, the only place it shows.
            title.update(Content(f"processes on {where}: {count} · row {table.cursor_row + 1} of {table.row_count}"),
                         layout=False)
        procs_table.sync({str(gp.pid): proc_row(gp) for gp in procs or ()})
        if item is None or item[1].lost:
            self._show_detail(Content(""))
        elif reading:
            self._show_detail(Content.assemble(("driver, clocks, PCIe, XIDs: reading…", "dim")))
        else:
            self._show_detail(Content("\n").join(gpu_health(item[1], max(20, self.size.width - 2))[:3]))

    def _show_detail(self, content: Content) -> None:
        """The selected GPU's health lines, laid out again only when their height may change: a layout per
        refresh repainted the whole screen (~20 ms at 8,000 GPUs)."""
        if content == self._detail:
            return
        self._detail = content
        self._detail_shape = steady_update(self.query_one("#gpu-detail", Static), content, self._detail_shape)

    @on(LiveTable.RowHighlighted, "#gpus-table")
    def _highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self.selected = event.key
        self._show_procs()

    def action_signal_process(self, sig: str) -> None:
        """k / K: the selected row of the process table, through the one guarded path."""
        from clustertop.dashboard.actions import actions_of

        acts = actions_of(self.app)
        if not acts.allowed("terminate process" if sig == "TERM" else "kill process"):
            return
        item = self._cursor_gpu()
        pid = self.query_one("#procs-table", LiveTable).cursor_key
        procs = (item[1].procs or []) if item is not None else []
        proc = next((gp for gp in procs if str(gp.pid) == pid), None)
        acts.ask_signal(item[0].host if item is not None else "", proc, sig)
