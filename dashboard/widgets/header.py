"""Provides the cluster header: the whole cluster as one machine, in one line, plus a status line.

Built as ``Content`` from (text, style) parts, never as markup strings: text from nodes or from
error messages stays literal (``rich.markup.escape`` does not escape Textual's ``[$variable]`` tags).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets.pack import FactLines, Part, facts, pack
from clustertop.read.cluster import Totals
from clustertop.read.model import NodeView

SEP_C = Content.assemble((" · ", "dim"))


def _v(s: str, style: str = "") -> Part:
    return (fmt.NA, "dim") if s == fmt.NA else (s, style)


def cuda_cores(n: int | None) -> str:
    """20000 -> "20,000" (the figure people quote); unknown or absurd -> N/A."""
    v = fmt.known(n, 0, fmt.MAX_NUM)
    return fmt.NA if v is None else f"{v:,.0f}"


def totals_line(t: Totals, compact: bool = False) -> list[Content]:
    """"5/15 nodes up · 10 GPUs 7 busy · 88 % GPU util · 72/110 GiB VRAM · 1.9 kW · ...".

    ``compact``: the same facts in fewer cells ("5/15 up · 10 GPU 7 busy · 88 % util · 72/110G VRAM
    ..."), for a narrow terminal where the full line would take three rows; trouble keeps its words.
    """
    g: list[list[Part]] = [[(f"{t.nodes_up}/{t.nodes_total}", "bold"), " up" if compact else " nodes up"]]
    if t.gpus_total == 0:
        g.append(["no GPUs"])  # every reporting node checked and has none: not "N/A", not zeros
    elif t.gpus_total is not None:
        # Counts are sums of what nodes say, so they go through fmt like any other node figure: a
        # digest claiming 2**64 - 1 lost GPUs shows N/A, not a 20-digit number.
        busy: list[Part] = [_v(fmt.num(t.gpus_total), "bold"), " GPU " if compact else " GPUs ",
                            _v(fmt.num(t.gpus_busy)), " busy"]
        if t.gpus_lost:
            busy.append((f" {fmt.num(t.gpus_lost)} lost", "$ct-crit"))
        g.append(busy)
        g.append([_v(fmt.pct(t.gpu_util_pct)), " util" if compact else " GPU util"])
        if t.cuda_cores:  # known where NVML or the card's name says; a sum of what nodes report
            g.append([_v(cuda_cores(t.cuda_cores)), " CUDA" if compact else " CUDA cores"])
        g.append([_v(fmt.gib(t.vram_used_bytes)), "/", _v(fmt.gib(t.vram_total_bytes)),
                  "G VRAM" if compact else " GiB VRAM"])
        g.append([_v(fmt.watts(t.power_mw))])
    else:
        g.append(["GPUs ", _v(fmt.NA)])
    if t.mem_total_bytes is not None and t.mem_total_bytes:
        used = 100 * t.mem_used_bytes / t.mem_total_bytes if t.mem_used_bytes is not None else None
        g.append([f"{fmt.gib(t.mem_total_bytes)}{'G' if compact else ' GiB'} RAM ", _v(fmt.pct(used))])
    else:
        g.append(["RAM ", _v(fmt.NA)])
    g.append([_v(fmt.num(t.cpu_cores)), " cores ", _v(fmt.pct(t.cpu_util_pct))])
    if t.ceph_status is not None:
        sev = {"HEALTH_OK": "$ct-ok", "HEALTH_WARN": "$ct-warn"}.get(t.ceph_status, "$ct-crit")
        status = t.ceph_status.removeprefix("HEALTH_") if compact else t.ceph_status
        g.append(["Ceph ", (fmt.node_text(status, 20), sev)])
    elif t.ceph_unreachable:
        g.append(["Ceph ", ("unreachable", "$ct-crit bold")])
    if t.bonds_total:  # "bonds 15 ok / 1 degraded": only where some node reports bonds
        bad = t.bonds_degraded or 0
        if compact and bad:
            g.append([(f"{fmt.num(bad)} bond{'s' if bad > 1 else ''} degraded", "$ct-warn bold")])
        else:
            bonds: list[Part] = [f"bonds {fmt.num(t.bonds_total - bad)} ok"]
            if bad:
                bonds += [" / ", (f"{fmt.num(bad)} degraded", "$ct-warn bold")]
            g.append(bonds)
    if t.tasks_queued is not None:
        g.append([f"{fmt.num(t.tasks_queued)} queued"])
    return facts(g)


def status_line(t: Totals | None, source: str, read_ts: float | None, unreachable_since: float | None,
                error: str | None, now: float, screen_name: str) -> list[Content]:
    g: list[list[Part]] = [[("clustertop", "bold"), " ", screen_name]]
    if source:
        g.append([fmt.node_text(source, 60)])
    if unreachable_since is not None:
        data_age = f"; showing data {fmt.age(now - read_ts)} old" if read_ts is not None else "; no data yet"
        g.append([(f"store unreachable since {fmt.clock(unreachable_since)}", "$ct-crit bold"),
                  (f" ({fmt.node_text(error or '?', 80)}){data_age}", "$ct-crit")])
    elif read_ts is not None:
        g.append([f"read {fmt.clock(read_ts)}"])
    else:
        g.append(["connecting…"])
    if t is not None:
        if t.nodes_stale:
            g.append([(f"{t.nodes_stale} stale", "$ct-stale")])
        if t.nodes_down:
            g.append([(f"{t.nodes_down} down", "$ct-crit")])
        if t.nodes_bad:
            g.append([(f"{t.nodes_bad} bad data", "$ct-crit")])
    return facts(g)


def detail_note(nodes: Iterable[NodeView], want_error: str | None = None,
                asked: Callable[[str], bool] | None = None) -> list[Content]:
    """Where up nodes are drawn from a full snapshot of an earlier tick (their agents rewrite it every few
    seconds, or every tick once they see this dashboard's request: docs/architecture.md "Byte budget"): how
    many and how old, until the fresh ones land. Nothing when every full snapshot drawn is current.
    ``want_error``: why the request could not be written (then it says so, not "asked"). ``asked(host)``: whether
    this screen asks for that node's fresh full snapshot (None: every node); the others' detail is their
    agents' last full snapshot, current figures drawn over it from their briefs (``Level.DETAIL``), and is said
    as such, never as awaited."""
    waiting: list[float] = []
    stored: list[float] = []
    for v in nodes:
        if v.detail_age_s is not None and v.state == "up":
            (waiting if asked is None or asked(v.host) else stored).append(v.detail_age_s)
    out = []
    if waiting:
        n = len(waiting)
        how = "fresh asked" if want_error is None else "fresh could not be asked"
        out.append([(f"detail of {n} node{'s' if n > 1 else ''} up to {fmt.age(max(waiting))} old ({how})",
                     "$ct-stale")])
    if stored:
        n = len(stored)
        out.append([(f"detail of {n} node{'s' if n > 1 else ''} up to {fmt.age(max(stored))} old "
                     f"(their last full snapshots, not asked)", "$ct-stale")])
    return facts(out) if out else []


def oldest_detail(nodes: Iterable[NodeView]) -> float | None:
    """How old the oldest detail drawn of the up nodes is (``NodeView.detail_age_s``), None if all is current: what
    a section drawing fields only the full snapshot carries says beside them."""
    return max((v.detail_age_s for v in nodes if v.detail_age_s is not None and v.state == "up"), default=None)


def aged(line: Content, what: str, age: float | None) -> Content:
    """``line`` (a section's title) followed by "WHAT up to 12s old" where ``age`` is known."""
    return line if age is None else Content.assemble(line, (f"  {what} up to {fmt.age(age)} old", "$ct-stale"))


class ClusterHeader(FactLines):
    """Two fixed lines: the totals and where the data comes from. Updated only when the text changes."""

    DEFAULT_CSS = """
    ClusterHeader { height: auto; max-height: 4; background: $panel; padding: 0 1; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(SEP_C, id=id)
        self._totals: Totals | None = None

    def show(self, t: Totals | None, status: list[Content]) -> None:
        """The one-machine line for ``t`` (None: no read yet) over ``status``, each fact whole."""
        self._totals = t
        self.show_facts(status)

    def lines(self, width: int) -> list[Content]:
        # Where the line would take three rows (a narrow terminal), it says the same in short words
        # in two: chosen for the width, so again on a resize.
        t = self._totals
        totals = pack(totals_line(t) if t is not None else totals_line_empty(), width, self.sep)
        if len(totals) > 2 and t is not None:
            totals = pack(totals_line(t, compact=True), width, self.sep)
        return totals + super().lines(width)


def totals_line_empty() -> list[Content]:
    return [Content.assemble(("waiting for the first read…", "dim"))]
