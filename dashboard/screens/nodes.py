"""Provides the nodes screen: one sortable, filterable row per node; Enter opens the node.

Rows are drawn only where they are on screen (LiveTable): sorting reads one raw value per node
for the sort column (``SORT_VALUES``), and cells are built for the rows in view only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual import on
from textual.widget import Widget

from clustertop.dashboard import fmt
from clustertop.dashboard.nodetrust import Trust
from clustertop.dashboard.screens.tabular import TableScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.palette import Palette, node_state_severity
from clustertop.dashboard.widgets.table import LiveTable, SortCell, num_cell, text_cell
from clustertop.read.model import view_digest
from clustertop.read.plan import Level
from clustertop.read.reader import NodeView
from clustertop.wire.schema import NodeDigest

COLUMNS = [
    ("host", "host"), ("state", "state"), ("age", "age"), ("trust", "trust"), ("cpu", "CPU"), ("load", "load"),
    ("mem", "mem"),
    ("gpus", "GPUs busy"), ("vram", "VRAM"), ("power", "power"), ("rx", "net rx"), ("tx", "net tx"),
    ("uptime", "uptime"), ("agent", "agent cpu/rss"),
]
#: Folded away first when the terminal is narrow (80 columns keeps host, state, age, trust, CPU, mem,
#: GPUs busy and VRAM whole).
FOLD = ("agent", "uptime", "tx", "load", "power", "rx")


def _shown(v: NodeView) -> NodeDigest | None:
    return view_digest(v) if v.state != "down" else None  # down: listed with its age, values hidden


def _mem_pct(d: NodeDigest | None) -> float | None:
    if d is None or d.mem_used_bytes is None or not d.mem_total_bytes:
        return None
    return 100 * d.mem_used_bytes / d.mem_total_bytes


def _busy(d: NodeDigest | None) -> int | None:
    return d.gpus_busy if d is not None and d.gpus is not None and d.gpu_util_n else None


def _vram_used(d: NodeDigest | None) -> int | None:
    return d.vram_used_bytes if d is not None and d.vram_total_bytes is not None else None  # shown as used/total


def _field(name: str) -> Callable[[NodeView], Any]:
    def value(v: NodeView) -> Any:
        d = _shown(v)
        return getattr(d, name) if d is not None else None
    return value


#: The raw value each column sorts by (None = N/A, sorted last): the same numbers the cells show,
#: computed for one column over every node without building any cell.
SORT_VALUES: dict[str, Callable[[NodeView], Any]] = {
    "host": lambda v: v.host,
    "state": lambda v: v.state,
    "age": lambda v: v.age_s,
    "cpu": _field("cpu_util_pct"),
    "load": _field("load1"),
    "mem": lambda v: _mem_pct(_shown(v)),
    "gpus": lambda v: _busy(_shown(v)),
    "vram": lambda v: _vram_used(_shown(v)),
    "power": _field("power_mw"),
    "rx": _field("net_rx_bytes_s"),
    "tx": _field("net_tx_bytes_s"),
    "uptime": _field("uptime_s"),
    "agent": _field("agent_cpu_pct"),
}


#: The columns a row shows from its digest (all but host, state and age).
COLUMN_VALUES = ("cpu", "load", "mem", "gpus", "vram", "power", "rx", "tx", "uptime", "agent")


def sort_value(v: NodeView, column: str, trust_of: Callable[[str], Trust] | None = None) -> Any:
    if column == "trust":
        return trust_of(v.host).word if trust_of is not None else None
    return SORT_VALUES[column](v)


def trust_cell(t: Trust | None, p: Palette) -> SortCell:
    """The node's trust (dashboard/nodetrust.py): a word, in its severity's colour."""
    if t is None:
        return SortCell(fmt.NA, "dim", None)
    style = "dim" if t.severity == "na" else p.text_style(t.severity)
    return SortCell(t.word, f"bold {style}" if t.severity == "crit" else style, t.word)


def node_row(v: NodeView, p: Palette, trust_of: Callable[[str], Trust] | None = None) -> list[SortCell]:
    grey = v.state != "up"
    vs = p.text_style("stale") if grey else ""
    state = v.state + (" v+" if v.newer_schema and v.state == "up" else "")
    head = [
        text_cell(v.host, "bold" if not grey else vs),
        SortCell(state, p.text_style(node_state_severity(v.state)), v.state),
        num_cell(fmt.age(v.age_s), v.age_s, vs),
        trust_cell(trust_of(v.host) if trust_of is not None else None, p),
    ]
    # The numbers each column sorts by (SORT_VALUES), so a cell always shows what it sorts as.
    x = {col: SORT_VALUES[col](v) for col in COLUMN_VALUES}
    cpu, load, mem_pct, busy, vram_used = x["cpu"], x["load"], x["mem"], x["gpus"], x["vram"]
    power, rx, tx, uptime, agent_cpu = x["power"], x["rx"], x["tx"], x["uptime"], x["agent"]
    d = _shown(v)
    gpus_shown = fmt.NA
    if d is not None and d.gpus is not None:
        gpus_shown = f"{fmt.num(busy)}/{fmt.num(d.gpus)}" if d.gpus else "-"
    agent_rss = d.agent_rss_bytes if d is not None else None
    agent_shown = fmt.NA
    if agent_cpu is not None or agent_rss is not None:
        agent_shown = f"{fmt.pct(agent_cpu, 1)} {fmt.bytes_(agent_rss, 0)}"
    # A known VRAM used or memory % implies a digest with its total (_vram_used, _mem_pct).
    vram_shown = f"{fmt.gib(vram_used)}/{fmt.gib(d.vram_total_bytes)} GiB" if d is not None and vram_used is not None else fmt.NA
    mem_shown = f"{fmt.pct(mem_pct)} of {fmt.gib(d.mem_total_bytes)}G" if d is not None and mem_pct is not None else fmt.NA
    return head + [
        num_cell(fmt.pct(cpu), cpu, vs or p.text_style(_sev(cpu))),
        num_cell(fmt.num(load, 2), load, vs),
        num_cell(mem_shown, mem_pct, vs or p.text_style(_sev(mem_pct, 85, 95))),
        num_cell(gpus_shown, busy, vs),
        num_cell(vram_shown, vram_used, vs),
        num_cell(fmt.watts(power), power, vs),
        num_cell(fmt.rate(rx), rx, vs),
        num_cell(fmt.rate(tx), tx, vs),
        num_cell(fmt.duration(uptime), uptime, vs),
        num_cell(agent_shown, agent_cpu, vs),
    ]


def _sev(v: float | None, warn: float = 75, crit: float = 90) -> str:
    sev = fmt.severity_of_pct(v, warn, crit)
    return "" if sev in ("ok", "na") else sev


def matches(v: NodeView, needle: str) -> bool:
    if not needle:
        return True
    hay = [v.host, v.state]
    d = view_digest(v)
    if d is not None:
        hay.append(d.role or "")
        hay.extend(f"{k}={val}" for k, val in (d.labels or {}).items())
    return any(needle in h.lower() for h in hay)


class NodesScreen(TableScreen):
    screen_name = "nodes"
    plan_level = Level.DIGESTS  # the nodes table: a row is a digest
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
        trust_of = self.app.trust.of  # type: ignore[attr-defined]
        self.table.show_rows([v.host for v in shown], shown, lambda v: node_row(v, p, trust_of),
                             lambda v, col: sort_value(v, col, trust_of))

    @on(LiveTable.RowSelected, "#nodes-table")
    def _open(self, event: LiveTable.RowSelected) -> None:
        self.app.open_node(event.key)  # type: ignore[attr-defined]
