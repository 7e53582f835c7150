"""Provides the nodes screen: one sortable, filterable row per node; Enter opens the node.

Rows are drawn only where they are on screen (LiveTable): sorting reads one raw value per node
for the sort column (``SORT_VALUES``), and cells are built for the rows in view only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual import on
from textual.widget import Widget

from collectors import schema
from collectors.cluster import node_net_rates
from collectors.reader import NodeView
from dashboard import fmt
from dashboard.screens.tabular import TableScreen
from dashboard.view import View
from dashboard.widgets.palette import Palette, node_state_severity
from dashboard.widgets.table import LiveTable, SortCell, num_cell, text_cell

COLUMNS = [
    ("host", "host"), ("state", "state"), ("age", "age"), ("cpu", "CPU"), ("load", "load"), ("mem", "mem"),
    ("gpus", "GPUs busy"), ("vram", "VRAM"), ("power", "power"), ("rx", "net rx"), ("tx", "net tx"),
    ("uptime", "uptime"), ("agent", "agent cpu/rss"),
]
#: Folded away first when the terminal is narrow (80 columns keeps host to net rx whole).
FOLD = ("agent", "uptime", "tx", "load", "power")


def _gpu_sums(gpus: list[schema.Gpu]) -> tuple[int | None, int | None, int | None, int | None]:
    """(busy, VRAM used, VRAM total, power) over a node's live GPUs; None where none reports."""
    busy = n_util = 0
    used = total = power = None
    for g in gpus:
        if g.lost:
            continue
        if g.util_pct is not None:
            n_util += 1
            busy += g.util_pct >= 10
        if g.mem_used_bytes is not None:
            used = (used or 0) + g.mem_used_bytes
        if g.mem_total_bytes is not None:
            total = (total or 0) + g.mem_total_bytes
        if g.power_mw is not None:
            power = (power or 0) + g.power_mw
    return (busy if n_util else None), used, total, power


def _shown_snap(v: NodeView) -> schema.NodeSnapshot | None:
    return v.snap if v.state != "down" else None  # down: listed with its age, values hidden


def _system(v: NodeView) -> schema.System | None:
    snap = _shown_snap(v)
    return snap.system if snap is not None else None


def _cpu(s: schema.System | None) -> float | None:
    return s.cpu.util_pct if s is not None and s.cpu is not None else None


def _mem_pct(s: schema.System | None) -> float | None:
    mem = s.mem if s is not None else None
    if mem is None or mem.used_bytes is None or not mem.total_bytes:
        return None
    return 100 * mem.used_bytes / mem.total_bytes


def _vram_used(v: NodeView) -> int | None:
    snap = _shown_snap(v)
    if snap is None or snap.gpus is None:
        return None
    _, used, total, _ = _gpu_sums(snap.gpus)
    return used if total is not None else None  # shown only as used/total


def _gpu_value(v: NodeView, i: int) -> int | None:
    snap = _shown_snap(v)
    return _gpu_sums(snap.gpus)[i] if snap is not None and snap.gpus is not None else None


def _agent_cpu(v: NodeView) -> float | None:
    snap = _shown_snap(v)
    return snap.agent.cpu_pct if snap is not None and snap.agent is not None else None


#: The raw value each column sorts by (None = N/A, sorted last): the same numbers the cells show,
#: computed for one column over every node without building any cell.
SORT_VALUES: dict[str, Callable[[NodeView], Any]] = {
    "host": lambda v: v.host,
    "state": lambda v: v.state,
    "age": lambda v: v.age_s,
    "cpu": lambda v: _cpu(_system(v)),
    "load": lambda v: (s := _system(v)) and s.load1,
    "mem": lambda v: _mem_pct(_system(v)),
    "gpus": lambda v: _gpu_value(v, 0),
    "vram": _vram_used,
    "power": lambda v: _gpu_value(v, 3),
    "rx": lambda v: node_net_rates(_system(v))[0],
    "tx": lambda v: node_net_rates(_system(v))[1],
    "uptime": lambda v: (s := _system(v)) and s.uptime_s,
    "agent": _agent_cpu,
}


def sort_value(v: NodeView, column: str) -> Any:
    return SORT_VALUES[column](v)


def node_row(v: NodeView, p: Palette) -> list[SortCell]:
    grey = v.state != "up"
    vs = p.text_style("stale") if grey else ""
    state = v.state + (" v+" if v.newer_schema and v.state == "up" else "")
    head = [
        text_cell(v.host, "bold" if not grey else vs),
        SortCell(state, p.text_style(node_state_severity(v.state)), v.state),
        num_cell(fmt.age(v.age_s), v.age_s, vs),
    ]
    snap = _shown_snap(v)
    s = snap.system if snap is not None else None
    cpu = _cpu(s)
    mem = s.mem if s is not None else None
    mem_pct = _mem_pct(s)
    gpus = snap.gpus if snap is not None else None
    busy = vram_used = vram_total = power = None
    gpus_shown = fmt.NA
    if gpus is not None:
        busy, vram_used, vram_total, power = _gpu_sums(gpus)
        gpus_shown = f"{fmt.num(busy)}/{len(gpus)}" if gpus else "-"
    rx, tx = node_net_rates(s)
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


class NodesScreen(TableScreen):
    screen_name = "nodes"
    reads_briefs = True  # the nodes table: briefs are all it draws
    table_id = "nodes-table"
    filter_placeholder = "filter: host, state, role or label (Esc clears)"

    DEFAULT_CSS = """
    NodesScreen #filter { display: none; dock: top; margin-top: 2; }
    NodesScreen.-filtering #filter { display: block; }
    NodesScreen LiveTable { height: 1fr; }
    """

    def compose_body(self) -> Iterable[Widget]:
        yield self.filter_input()
        yield LiveTable(COLUMNS, id=self.table_id, fold=FOLD)

    def draw(self, view: View) -> None:
        assert view.state is not None
        p: Palette = self.app.palette  # type: ignore[attr-defined]
        needle = self.needle
        shown = [v for v in view.state.nodes if matches(v, needle)] if needle else view.state.nodes
        self.table.show_rows([v.host for v in shown], shown, lambda v: node_row(v, p), sort_value)

    @on(LiveTable.RowSelected, "#nodes-table")
    def _open(self, event: LiveTable.RowSelected) -> None:
        self.app.open_node(event.key)  # type: ignore[attr-defined]
