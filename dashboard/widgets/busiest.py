"""Provides the busiest GPUs of the cluster and who owns them: the overview's panel on a big terminal.

Ranked from the digests (every node's per-card utilisation, read at any cluster size); the owner, VRAM
and temperature come from a node's full snapshot where the read has it (the overview asks for the full
snapshots of the nodes it ranks, so at 1,000 nodes too), else they say N/A.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.read.model import view_digest
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
    name, then index). A card that reports no utilisation (or an absurd one) is not ranked.

    8,000 cards at 1,000 nodes, 80,000 at 10,000, for ~25 lines on screen: each node's best card first
    (one list comprehension per node); only cards at least as busy as the ``limit``-th best of those can
    be among the ``limit`` best (the ``limit`` nodes with the busiest best cards already hold ``limit``
    cards that busy), so only those are ranked, from a heap."""
    if limit <= 0:
        return []
    hi = fmt.MAX_PCT
    best: list[tuple[float, int, list[int | None]]] = []  # (node's busiest card, node position, utils)
    for pos, v in enumerate(nodes):
        if v.state != "up":
            continue
        d = view_digest(v)
        utils = d.gpu_util_pct if d is not None else None
        if not utils:
            continue
        # The common case first, in C: every card reports, and the busiest is a sane figure (then it is the
        # busiest of the sane ones too). Else fmt.known's test, inline: ints from the typed wire; None, NaN,
        # bools and absurd figures fail it.
        try:
            top = max(utils)
        except TypeError:  # a None among them
            top = None
        if type(top) is int and 0 <= top <= hi:
            best.append((top, pos, utils))
            continue
        ok = [u for u in utils if u is not None and not isinstance(u, bool) and 0 <= u <= hi]
        if ok:
            best.append((max(ok), pos, utils))
    if not best:
        return []
    floor = heapq.nlargest(limit, [b[0] for b in best])[-1] if len(best) >= limit else 0
    ranked = [(-float(u), nodes[pos].host, i, pos) for top, pos, utils in best if top >= floor
              for i, u in enumerate(utils)
              if u is not None and not isinstance(u, bool) and floor <= u <= hi]
    out = []
    for neg, host, i, pos in heapq.nsmallest(limit, ranked):
        v = nodes[pos]
        gpus = v.snap.gpus if v.snap is not None and v.snap.gpus else []
        g = next((x for x in gpus if x.index == i), None)
        out.append(Busy(host, i, -neg, g))
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
