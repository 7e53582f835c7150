"""Provides the busiest GPUs of a set of nodes, ranked from their digests: the one ranking the overview's panel
(``dashboard.widgets.busiest``) and the bucket summaries' ``top_gpus`` (``read.summary``) both use.

8,000 cards at 1,000 nodes, 80,000 at 10,000, for ~25 lines on screen: each node's best card first (one list
comprehension per node); only cards at least as busy as the ``limit``-th best of those can be among the
``limit`` best (the ``limit`` nodes with the busiest best cards already hold ``limit`` cards that busy), so only
those are ranked, from a heap.
"""

from __future__ import annotations

import heapq

from clustertop.read.model import NodeView, view_digest

#: A utilisation past this is no reading (the dashboard's ``fmt.MAX_PCT``: a per-process CPU % is of one core,
#: 1,000 cores at 100 %); a card reporting it is not ranked.
MAX_UTIL_PCT = 100_000.0


def busiest_cards(nodes: list[NodeView], limit: int, hi: float = MAX_UTIL_PCT) -> list[tuple[str, int, float, int]]:
    """The ``limit`` GPUs with the highest utilisation on nodes that are up, highest first (ties by node name,
    then index), as (host, card index, utilisation, the node's position in ``nodes``). A card that reports no
    utilisation (or an absurd one: negative, NaN, a bool, past ``hi``) is not ranked."""
    if limit <= 0:
        return []
    best: list[tuple[float, int, list[int | None]]] = []  # (node's busiest card, node position, utils)
    for pos, v in enumerate(nodes):
        if v.state != "up":
            continue
        d = view_digest(v)
        utils = d.gpu_util_pct if d is not None else None
        if not utils:
            continue
        # The common case first, in C: every card reports, and the busiest is a sane figure (then it is the
        # busiest of the sane ones too). Else wire.text.known's test, inline: ints from the typed wire; None,
        # NaN, bools and absurd figures fail it.
        try:
            top = max(utils)  # type: ignore[type-var]
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
    return [(host, i, -neg, pos) for neg, host, i, pos in heapq.nsmallest(limit, ranked)]
