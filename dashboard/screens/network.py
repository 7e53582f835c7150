"""Provides the Network screen: every bond of every node with its slaves, then NIC rates per node.

Degraded bonds come first and say why in words (a slave's MII down, an 802.3ad port that is up but
not distributing). LACP port states are shown as the words the bits stand for. NICs: physical ports
and bonds; virtual and loopback interfaces are hidden until ``v`` shows them (dimmed). Down nodes
are left out (their last report says nothing about now); stale ones are greyed.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.header import aged, oldest_detail
from clustertop.dashboard.widgets.ordered import OrderedTable
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.steady import Shape, steady_update
from clustertop.dashboard.widgets.table import SortCell, num_cell, text_cell
from clustertop.read import layers
from clustertop.read.reader import NodeView
from clustertop.wire import schema

BOND_COLUMNS = [
    ("node", "node"), ("name", "bond / slave"), ("state", "state"), ("speed", "speed"), ("rx", "rx"),
    ("tx", "tx"), ("fail", "link fail"), ("duplex", "duplex"), ("actor", "LACP actor"),
    ("partner", "LACP partner"), ("mode", "mode / agg"), ("why", "problem"),
]
#: Folded away first in a narrow terminal; the problem column (which slave, why) stays.
BOND_FOLD = ("actor", "partner", "mode", "duplex", "fail")
NIC_FOLD = ("drops", "errors", "kind")
NIC_COLUMNS = [
    ("node", "node"), ("nic", "NIC"), ("kind", "kind"), ("state", "state"), ("speed", "speed"), ("rx", "rx"),
    ("tx", "tx"), ("errors", "errors rx/tx"), ("drops", "drops rx/tx"),
]
#: LACP port state bits (IEEE 802.1AX; the kernel prints them as one number).
LACP_BITS = ((0x08, "sync"), (0x10, "collecting"), (0x20, "distributing"))
LACP_FLAGS = ((0x40, "defaulted"), (0x80, "expired"))
HIDDEN_KINDS = ("virtual", "loopback")
NIC_ORDER = {"bond": 0, "bond-slave": 1, "physical": 2, None: 3, "virtual": 4, "loopback": 5}
MAX_SUMMARY = 5
SEP = "\x1f"  # a separator no interface or host name contains


def mbps(v: int | None) -> str:
    """Link speeds as people say them: 100 Mb/s, 1 Gb/s, 25 Gb/s, 2.5 Gb/s; a negative or absurd one
    (past 1 Pb/s: a driver's -1 or a Redis writer's 2**64 - 1) is N/A."""
    if fmt.known(v, 0, 1e9) is None:
        return fmt.NA
    assert v is not None
    if v >= 1000:
        g = v / 1000
        return f"{g:.0f} Gb/s" if g == int(g) else f"{g:.1f} Gb/s"
    return f"{v} Mb/s"


def lacp_words(state: int | None, p: Palette) -> SortCell:
    """"sync collecting distributing", a missing bit as "NOT <bit>" in the critical colour."""
    if state is None:
        return SortCell(fmt.NA, "dim", None)
    cell = SortCell("", "", state)
    for i, (bit, word) in enumerate(LACP_BITS):
        if i:
            cell.append(" ")
        if state & bit:
            cell.append(word)
        else:
            cell.append(f"NOT {word}", p.text_style("crit"))
    for bit, word in LACP_FLAGS:
        if state & bit:
            cell.append(f" {word}", p.text_style("warn"))
    return cell


def bond_severity(b: schema.Bond) -> str:
    if b.mii_status is not None and b.mii_status != "up":
        return "crit"
    if b.degraded:
        # No slave carrying traffic is an outage; one slave lost is a degraded bond.
        return "warn" if any(s.ok for s in b.slaves or ()) else "crit"
    if b.degraded is None:
        return "na"
    return "ok"


def bond_rank(v: NodeView, b: schema.Bond) -> tuple[int, str, str]:
    """Problems first (outage, then degraded), then by node and bond name."""
    sev = bond_severity(b)
    return ({"crit": 0, "warn": 1}.get(sev, 2), v.host, b.name)


def _blank() -> SortCell:
    return SortCell("", "", None)


def _slave_counts(b: schema.Bond) -> tuple[int, int]:
    slaves = b.slaves or []
    return sum(1 for s in slaves if s.ok), len(slaves)


def _sum(values: list[float | None]) -> float | None:
    """A sum of parts, unknown as soon as one part is (a partial sum would read as a low rate)."""
    if not values or any(x is None for x in values):
        return None
    return sum(x for x in values if x is not None)


def bond_row(v: NodeView, b: schema.Bond, nic: schema.Nic | None, p: Palette) -> list[SortCell]:
    """The bond's own row: state with working/all slaves, speed, rates, summed link failures, why."""
    grey = v.state != "up"
    vs = p.text_style("stale") if grey else ""
    sev = "stale" if grey else bond_severity(b)
    sev_style = p.text_style(sev) if sev != "na" else "dim"
    working, total = _slave_counts(b)
    if b.mii_status is not None and b.mii_status != "up":
        state = f"DOWN {working}/{total}"
    elif b.degraded:
        state = f"DEGRADED {working}/{total}"
    elif b.degraded is None:
        state = fmt.NA
    else:
        state = f"ok {working}/{total}"
    if grey:
        state += f" ({v.state})"
    slaves = b.slaves or []
    rx = nic.rx_bytes_s if nic is not None else _sum([s.rx_bytes_s for s in slaves])
    tx = nic.tx_bytes_s if nic is not None else _sum([s.tx_bytes_s for s in slaves])
    fails = [s.link_failures for s in slaves if s.link_failures is not None]
    lacp = b.mode == "802.3ad"
    why = "; ".join(b.problems or [])
    return [
        text_cell(v.host, vs or "bold"),
        text_cell(b.name, vs or "bold"),
        SortCell(state, f"{sev_style} bold" if sev in ("crit", "warn") else sev_style, state),
        num_cell(mbps(b.speed_mbps), b.speed_mbps, vs),
        num_cell(fmt.rate(rx), rx, vs),
        num_cell(fmt.rate(tx), tx, vs),
        num_cell(fmt.num(sum(fails)) if fails else fmt.NA, sum(fails) if fails else None, vs),
        _blank(),
        text_cell(f"rate {b.lacp_rate}", vs) if lacp and b.lacp_rate else _blank(),
        text_cell(b.partner_mac, vs) if lacp and b.partner_mac else _blank(),
        text_cell(b.mode, vs),
        text_cell(why, sev_style, 200) if why else _blank(),
    ]


def slave_row(v: NodeView, b: schema.Bond, s: schema.BondSlave, glyph: str, p: Palette) -> list[SortCell]:
    grey = v.state != "up"
    vs = p.text_style("stale") if grey else ""
    if grey:
        sev = "stale"
    elif s.mii_status is not None and s.mii_status != "up":
        sev = "crit"
    elif s.ok is False:
        sev = "warn"
    elif s.ok is None:
        sev = "na"
    else:
        sev = "ok"
    style = p.text_style(sev) if sev != "na" else "dim"
    state = fmt.node_text(s.mii_status, 24) if s.mii_status else fmt.NA
    role = s.state if s.state in ("active", "backup") else None
    if role is None and b.active_slave and s.mii_status == "up":
        role = "active" if s.name == b.active_slave else "backup"  # procfs names only the active one
    if role is not None and b.mode == "active-backup":
        state += f" ({role})"
    elif s.ok is False and s.mii_status == "up":
        state += ", not carrying"
    lacp = b.mode == "802.3ad"
    agg = f"agg {fmt.num(s.aggregator_id)}" if s.aggregator_id is not None else ""
    if agg and b.active_aggregator_id is not None and s.aggregator_id == b.active_aggregator_id:
        agg += " (active)"
    return [
        _blank(),
        SortCell(f"{glyph} {fmt.node_text(s.name, 30)}", vs, s.name),
        SortCell(state, style, state),
        num_cell(mbps(s.speed_mbps), s.speed_mbps, vs),
        num_cell(fmt.rate(s.rx_bytes_s), s.rx_bytes_s, vs),
        num_cell(fmt.rate(s.tx_bytes_s), s.tx_bytes_s, vs),
        num_cell(fmt.num(s.link_failures), s.link_failures, vs or (p.text_style("warn") if s.link_failures else "")),
        text_cell(s.duplex, vs),
        lacp_words(s.actor_port_state, p) if lacp else _blank(),
        lacp_words(s.partner_port_state, p) if lacp else _blank(),
        text_cell(agg, vs) if agg else _blank(),
        text_cell(s.problem, style, 120) if s.problem else _blank(),
    ]


def nic_row(v: NodeView, n: schema.Nic, p: Palette) -> list[SortCell]:
    dim = v.state != "up" or n.kind in HIDDEN_KINDS
    vs = p.text_style("stale") if dim else ""
    if n.up is None:
        state = SortCell(fmt.NA, "dim", None)
    else:
        state = SortCell("up" if n.up else "DOWN", vs or p.text_style("ok" if n.up else "crit"), n.up)
    errors = None if n.rx_errors is None and n.tx_errors is None else \
        f"{fmt.num(n.rx_errors)}/{fmt.num(n.tx_errors)}"
    drops = None if n.rx_dropped is None and n.tx_dropped is None else \
        f"{fmt.num(n.rx_dropped)}/{fmt.num(n.tx_dropped)}"
    bad = bool(n.rx_errors or n.tx_errors)
    return [
        text_cell(v.host, vs or "bold"),
        text_cell(n.name, vs),
        text_cell(n.kind, vs or "dim"),
        state,
        num_cell(mbps(n.speed_mbps), n.speed_mbps, vs),
        num_cell(fmt.rate(n.rx_bytes_s), n.rx_bytes_s, vs),
        num_cell(fmt.rate(n.tx_bytes_s), n.tx_bytes_s, vs),
        num_cell(errors or fmt.NA, (n.rx_errors or 0) + (n.tx_errors or 0), vs or (p.text_style("warn") if bad else "")),
        num_cell(drops or fmt.NA, (n.rx_dropped or 0) + (n.tx_dropped or 0), vs),
    ]


def _nic_order(pair: layers.Pair) -> tuple[int, str]:
    n = pair[0]  # the merged NIC's name and kind are this entry's
    return NIC_ORDER.get(n.kind, 3), n.name


def summary_lines(nodes: list[tuple[NodeView, schema.Bond]], reporting: int, p_width: int) -> list[Content]:
    """"bonds 4 ok / 1 degraded · slaves 14 up / 1 down", then the degraded ones with their reason."""
    if not nodes:
        if reporting:
            return [Content.assemble(("no bonds on the ", "dim"), (str(reporting), "dim"),
                                     (" nodes that report them", "dim"))]
        return [Content.assemble(("bonds: N/A (no node reports its bonds)", "dim"))]
    bad = [(v, b) for v, b in nodes if bond_severity(b) in ("crit", "warn")]
    ok = len(nodes) - len(bad)
    slaves = [s for _, b in nodes for s in b.slaves or ()]
    s_ok = sum(1 for s in slaves if s.ok)
    s_bad = sum(1 for s in slaves if s.ok is False)
    head: list[str | tuple[str, str]] = [("bonds ", "bold"), (f"{ok} ok", "$ct-ok")]
    if bad:
        head += [" / ", (f"{len(bad)} degraded", "$ct-warn bold")]
    head += [(" · ", "dim"), "slaves ", (f"{s_ok} carrying traffic", "$ct-ok")]
    if s_bad:
        head += [" / ", (f"{s_bad} not", "$ct-crit")]
    lines = [Content.assemble(*head)]
    for v, b in bad[:MAX_SUMMARY]:
        sev = bond_severity(b)
        working, total = _slave_counts(b)
        label = "DOWN" if sev == "crit" else "DEGRADED"
        lines.append(Content.assemble(
            (f"{label:<9}", f"$ct-{sev} bold"), (fmt.node_text(v.host, 40), "bold"), " ",
            (fmt.node_text(b.name, 20), "bold"),
            (f" ({fmt.node_text(b.mode or 'mode N/A', 20)}, {working}/{total} slaves working): ", "dim"),
            (fmt.node_text("; ".join(b.problems or []) or "degraded", max(20, p_width - 40)), f"$ct-{sev}")))
    if len(bad) > MAX_SUMMARY:
        lines.append(Content.assemble((f"… and {len(bad) - MAX_SUMMARY} more degraded bonds (first in the table)",
                                       "dim")))
    return lines


class NetworkScreen(DataScreen):
    screen_name = "network"
    # Not in the footer (80 columns are taken by the screens); the NIC table's title names the key.
    BINDINGS = [Binding("v", "toggle_virtual", "Virtual NICs", show=False)]

    DEFAULT_CSS = """
    NetworkScreen #net-summary { height: auto; max-height: 7; padding: 0 1; }
    NetworkScreen #bonds { height: 3fr; min-height: 5; }
    NetworkScreen #nics-title { height: 1; background: $panel; padding: 0 1; }
    NetworkScreen #nics { height: 2fr; min-height: 4; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.show_virtual = False
        self._summary = ""
        self._summary_plain = ""
        self._summary_shape: Shape = None  # dashboard/widgets/steady.py
        self._title = ""

    def compose_body(self) -> Iterable[Widget]:
        yield Static("", id="net-summary")
        yield OrderedTable(BOND_COLUMNS, id="bonds", fold=BOND_FOLD)
        yield Static("", id="nics-title")
        yield OrderedTable(NIC_COLUMNS, id="nics", fold=NIC_FOLD)

    def on_mount(self) -> None:
        self.query_one("#bonds", OrderedTable).focus()

    def action_toggle_virtual(self) -> None:
        self.show_virtual = not self.show_virtual
        view = getattr(self.app, "view", None)
        if view is not None:
            self.show(view, force=True)

    def draw(self, view: View) -> None:
        assert view.state is not None
        p: Palette = self.app.palette  # type: ignore[attr-defined]
        # Each node's snapshot of this tick (its brief where its full snapshot is older, ``read.layers``): bonds
        # are whole in it, and so are the bonds' own NICs' rates; the NIC table's other figures are taken per node
        # below, without building any node's whole overlay.
        now = [(v, c) for v in view.state.nodes if v.state != "down" and (c := layers.current_head(v)) is not None]
        shown = [v for v, _ in now]
        bonds = [(v, b) for v, c in now for b in c.bonds or ()]
        bonds.sort(key=lambda vb: bond_rank(*vb))
        reporting = sum(1 for _, c in now if c.bonds is not None)
        nics_by_host: dict[str, dict[str, schema.Nic]] = {}  # of the nodes with bonds: their bonds' own NICs
        for v, c in now:
            if c.bonds:
                nics_by_host[v.host] = {n.name: n for n in (c.system.nics if c.system is not None else None) or ()}
        keys: list[str] = []
        items: list[tuple[NodeView, schema.Bond, schema.BondSlave | schema.Nic | None, str]] = []
        for v, b in bonds:
            key = f"{v.host}{SEP}{b.name}"
            keys.append(key)
            items.append((v, b, nics_by_host[v.host].get(b.name), ""))
            slaves = b.slaves or []
            for i, sl in enumerate(slaves):
                keys.append(f"{key}{SEP}{sl.name}")
                items.append((v, b, sl, "└─" if i == len(slaves) - 1 else "├─"))

        def bond_cells(item: tuple[NodeView, schema.Bond, schema.BondSlave | schema.Nic | None, str]) -> list[Text]:
            v, b, x, glyph = item
            if glyph:  # a slave row
                assert isinstance(x, schema.BondSlave)
                return list(slave_row(v, b, x, glyph, p))
            return list(bond_row(v, b, x if isinstance(x, schema.Nic) else None, p))

        self.query_one("#bonds", OrderedTable).show(keys, items, bond_cells)
        self._set_summary(summary_lines(bonds, reporting, self.size.width or 80))

        nic_keys: list[str] = []
        nic_items: list[tuple[NodeView, layers.Pair]] = []
        hidden = 0
        show_virtual = self.show_virtual
        for v in shown:
            # Every NIC as the node's snapshot lists it, unmerged (``read.layers``): name, kind and this tick's
            # rates from the brief beside the full snapshot's entry, merged only for the rows in view (cells).
            # One row per name (a node listing a NIC twice must not make two rows of one key).
            pairs = sorted({pr[0].name: pr for pr in layers.nic_pairs(v) or ()}.values(), key=_nic_order)
            for pr in pairs:
                if pr[0].kind in HIDDEN_KINDS and not show_virtual:
                    hidden += 1
                    continue
                nic_keys.append(f"{v.host}{SEP}{pr[0].name}")
                nic_items.append((v, pr))
        self.query_one("#nics", OrderedTable).show(
            nic_keys, nic_items, lambda item: list[Text](nic_row(item[0], layers.merge_nic(item[1]), p)))
        what = "virtual/loopback shown dimmed (v hides them)" if self.show_virtual else \
            f"{hidden} virtual/loopback hidden (v shows them)"
        title = aged(Content.assemble(("NICs per node", "bold"), ("  physical and bonds; ", "dim"), (what, "dim")),
                     "· rates of physical NICs and bonds current; state, speed, errors, drops, virtual NICs' rates",
                     oldest_detail(shown))
        if title.markup != self._title:
            self._title = title.markup
            self.query_one("#nics-title", Static).update(title, layout=False)

    def _set_summary(self, lines: list[Content]) -> None:
        content = Content("\n").join(lines)
        if content.markup != self._summary:
            self._summary = content.markup
            self._summary_plain = content.plain
            # Its rates change every read; the screen is laid out again only when its height may change.
            self._summary_shape = steady_update(self.query_one("#net-summary", Static), content, self._summary_shape)

    @property
    def summary_text(self) -> str:
        """What the summary says, as plain text (tests)."""
        return self._summary_plain
