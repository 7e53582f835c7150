"""Provides the nodes screen: one sortable, filterable row per node; Enter opens the node."""

from __future__ import annotations

from collections.abc import Iterable

from textual import on
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Input

from collectors.reader import NodeView
from dashboard import fmt
from dashboard.screens.base import DataScreen
from dashboard.view import View
from dashboard.widgets.palette import Palette, node_state_severity
from dashboard.widgets.table import LiveTable, SortCell, num_cell, text_cell

COLUMNS = [
    ("host", "host"), ("state", "state"), ("age", "age"), ("cpu", "CPU"), ("load", "load"), ("mem", "mem"),
    ("gpus", "GPUs busy"), ("vram", "VRAM"), ("power", "power"), ("rx", "net rx"), ("tx", "net tx"),
    ("uptime", "uptime"), ("agent", "agent cpu/rss"),
]
SORT_CYCLE = [k for k, _ in COLUMNS]


def node_row(v: NodeView, p: Palette) -> list[SortCell]:
    grey = v.state != "up"
    vs = p.text_style("stale") if grey else ""
    state = v.state + (" v+" if v.newer_schema and v.state == "up" else "")
    head = [
        text_cell(v.host, "bold" if not grey else vs),
        SortCell(state, p.text_style(node_state_severity(v.state)), v.state),
        num_cell(fmt.age(v.age_s), v.age_s, vs),
    ]
    snap = v.snap if v.state != "down" else None  # down: listed with its age, values hidden
    s = snap.system if snap is not None else None
    cpu = s.cpu.util_pct if s is not None and s.cpu is not None else None
    mem = s.mem if s is not None else None
    mem_pct = (100 * mem.used_bytes / mem.total_bytes
               if mem is not None and mem.used_bytes is not None and mem.total_bytes else None)
    gpus = snap.gpus if snap is not None else None
    busy = vram_used = vram_total = power = None
    gpus_shown = fmt.NA
    if gpus is not None:
        alive = [g for g in gpus if not g.lost]
        utils = [g.util_pct for g in alive if g.util_pct is not None]
        busy = sum(1 for u in utils if u >= 10) if utils else None
        gpus_shown = f"{fmt.num(busy)}/{len(gpus)}" if gpus else "-"
        used = [g.mem_used_bytes for g in alive if g.mem_used_bytes is not None]
        total = [g.mem_total_bytes for g in alive if g.mem_total_bytes is not None]
        vram_used = sum(used) if used else None
        vram_total = sum(total) if total else None
        pw = [g.power_mw for g in alive if g.power_mw is not None]
        power = sum(pw) if pw else None
    rx = tx = None
    if s is not None and s.nics is not None:
        top = [n for n in s.nics if n.kind in (None, "physical", "bond")]
        rxs = [n.rx_bytes_s for n in top if n.rx_bytes_s is not None]
        txs = [n.tx_bytes_s for n in top if n.tx_bytes_s is not None]
        rx = sum(rxs) if rxs else None
        tx = sum(txs) if txs else None
    agent = snap.agent if snap is not None else None
    agent_shown = fmt.NA
    if agent is not None and (agent.cpu_pct is not None or agent.rss_bytes is not None):
        agent_shown = f"{fmt.pct(agent.cpu_pct, 1)} {fmt.bytes_(agent.rss_bytes, 0)}"
    vram_shown = (f"{fmt.gib(vram_used)}/{fmt.gib(vram_total)} GiB"
                  if vram_used is not None and vram_total is not None else fmt.NA)
    mem_shown = (f"{fmt.pct(mem_pct)} of {fmt.gib(mem.total_bytes)}G" if mem_pct is not None and mem else fmt.NA)
    return head + [
        num_cell(fmt.pct(cpu), cpu, vs or p.text_style(_sev(cpu))),
        num_cell(fmt.num(s.load1 if s else None, 2), s.load1 if s else None, vs),
        num_cell(mem_shown, mem_pct, vs or p.text_style(_sev(mem_pct, 85, 95))),
        num_cell(gpus_shown, busy, vs),
        num_cell(vram_shown, vram_used, vs),
        num_cell(fmt.watts(power), power, vs),
        num_cell(fmt.rate(rx), rx, vs),
        num_cell(fmt.rate(tx), tx, vs),
        num_cell(fmt.duration(s.uptime_s if s else None), s.uptime_s if s else None, vs),
        num_cell(agent_shown, agent.cpu_pct if agent else None, vs),
    ]


def _sev(v: float | None, warn: float = 75, crit: float = 90) -> str:
    sev = fmt.severity_of_pct(v, warn, crit)
    return "" if sev in ("ok", "na") else sev


def matches(v: NodeView, needle: str) -> bool:
    if not needle:
        return True
    hay = [v.host, v.state]
    if v.snap is not None:
        hay.append(v.snap.role or "")
        hay.extend(f"{k}={val}" for k, val in (v.snap.labels or {}).items())
    return any(needle in h.lower() for h in hay)


class NodesScreen(DataScreen):
    screen_name = "nodes"

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
    ]

    DEFAULT_CSS = """
    NodesScreen #filter { display: none; dock: top; margin-top: 2; }
    NodesScreen.-filtering #filter { display: block; }
    NodesScreen LiveTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.needle = ""

    def compose_body(self) -> Iterable[Widget]:
        yield Input(placeholder="filter: host, state, role or label (Esc clears)", id="filter")
        yield LiveTable(COLUMNS, id="nodes-table")

    def on_mount(self) -> None:
        self.query_one(LiveTable).focus()

    def draw(self, view: View) -> None:
        assert view.state is not None
        p: Palette = self.app.palette  # type: ignore[attr-defined]
        rows = {v.host: node_row(v, p) for v in view.state.nodes if matches(v, self.needle)}
        self.query_one(LiveTable).sync(rows)

    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip().lower()
        self._redraw()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one(LiveTable).focus()

    def clear_filter(self) -> bool:
        """Escape: clear an open filter first. Returns True when there was one."""
        if not self.has_class("-filtering"):
            return False
        self.query_one("#filter", Input).value = ""
        self.needle = ""
        self.remove_class("-filtering")
        self.query_one(LiveTable).focus()
        self._redraw()
        return True

    def _redraw(self) -> None:
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.draw(view)

    def action_sort_next(self) -> None:
        table = self.query_one(LiveTable)
        i = SORT_CYCLE.index(table.sort_column) + 1 if table.sort_column in SORT_CYCLE else 0
        table.sort_column, table.sort_reverse = None, False
        table.sort_by(SORT_CYCLE[i % len(SORT_CYCLE)])

    def action_sort_reverse(self) -> None:
        table = self.query_one(LiveTable)
        if table.sort_column is not None:
            table.sort_by(table.sort_column)

    @on(DataTable.RowSelected, "#nodes-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.open_node(event.row_key.value)  # type: ignore[attr-defined]
