"""Provides the busiest GPUs of the cluster and who owns them: the overview's panel on a big terminal.

Ranked from the digests (every node's per-card utilisation, read at any cluster size); the owner, VRAM
and temperature come from a node's full snapshot where the read has it (the overview asks for the full
snapshots of the nodes it ranks, so at 1,000 nodes too), else they say N/A.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.read.busiest import busiest_cards
from clustertop.read.reader import NodeView
from clustertop.wire import schema

BAR_W = 10

@dataclass(frozen=True)
class Busy:
    host: str
    index: int
    util_pct: float
    gpu: schema.Gpu | None  # from the node's full snapshot, when the read holds it


def busiest(nodes: list[NodeView], limit: int) -> list[Busy]:
    """The ``limit`` GPUs with the highest utilisation on nodes that are up, highest first (ties by node
    name, then index), ranked by ``read.busiest.busiest_cards`` (the one ranking: the bucket summaries' busiest
    cards are ranked by it too); each with its card from the node's full snapshot where the read has it."""
    out = []
    for host, i, util, pos in busiest_cards(nodes, limit, fmt.MAX_PCT):
        v = nodes[pos]
        gpus = v.snap.gpus if v.snap is not None and v.snap.gpus else []
        g = next((x for x in gpus if x.index == i), None)
        out.append(Busy(host, i, util, g))
    return out


def owners(g: schema.Gpu | None) -> str:
    """Who runs on the card, in words: pods and users of its processes, most VRAM first."""
    if g is None:
        return fmt.NA
    procs = sorted(g.procs or [], key=lambda p: -(fmt.known(p.used_mem_bytes, 0) or 0))
    seen: list[str] = []
    for p in procs:
        o = p.owner
        if o is not None and o.name:
            ns = f"{o.namespace}/" if o.namespace else ""
            word = f"{o.kind} {ns}{o.name}" if o.kind in ("pod", "container") else f"{o.name}"
        else:
            word = p.user or f"pid {p.pid}"
        word = fmt.node_text(word, 60)
        if word not in seen:
            seen.append(word)
    return ", ".join(seen) if seen else "idle (no processes)"


class BusiestGpus(Static):
    """The panel: a title and one line per GPU, as many as fit."""

    DEFAULT_CSS = """
    BusiestGpus { height: 1fr; padding: 0 1; }
    """

    def __init__(self, ascii: bool = False, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.ascii = ascii
        self._last = ""

    def rows_wanted(self) -> int:
        return max(0, (self.size.height or 0) - 2)

    def show(self, rows: list[Busy], total_gpus: int | None) -> None:
        w = max(30, (self.size.width or 80) - 2)
        head = Content.assemble(("Busiest GPUs", "bold"),
                                (f"  {len(rows)} of {fmt.num(total_gpus)} by utilisation, with owners", "dim"))
        lines = [head]
        hw = max([4, *(len(fmt.node_text(b.host, 24)) for b in rows)])
        for b in rows:
            g = b.gpu
            vram = (f"{fmt.gib(g.mem_used_bytes)}/{fmt.gib(g.mem_total_bytes)} GiB" if g is not None else fmt.NA)
            temp = fmt.temp(g.temp_c) if g is not None else fmt.NA
            filled, empty = fmt.bar(b.util_pct / 100, BAR_W, self.ascii)
            left = f"{fmt.node_text(b.host, 24):<{hw}} GPU{b.index:<2} "
            mid = f" {fmt.pct(b.util_pct):>5} {vram:>13} {temp:>6}  "
            room = max(8, w - len(left) - BAR_W - len(mid))
            # Busy is not trouble: one colour for every bar (hot cards are the tiles' and alerts' business).
            lines.append(Content.assemble((left, "bold"), (filled, "$ct-info"), (empty, "dim"), mid,
                                          fmt.node_text(owners(g), room)))
        if not rows:
            lines.append(Content.styled("no GPU reports utilisation", "dim"))
        content = Content("\n").join(lines)
        if content.markup != self._last:
            self._last = content.markup
            self.update(content, layout=False)
