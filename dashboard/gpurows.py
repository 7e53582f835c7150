"""Provides the GPU table's rows from a read of bucket summaries (issue 18: 10,000 nodes x 8 GPUs).

Past ``plan.SUMMARY_FROM_NODES`` the GPU table reads the 64 bucket summaries with their GPU columns
(``wire.summary.GpuColumns``: every card's host, index, util, VRAM, temperature and power as int lists,
decoded in C) and the briefs' GPUs only of the hosts whose rows are in view, of the selection's node and of
every host no believed summary covers (``ReadPlan.gpus``). The table's rows, their count and their order
come from the columns; a row's cells from its node's brief where this read has it, else from the columns
(N/A for what they lack: name, fan, P-state, ECC, throttle) until the read that asks for it lands.

Rows are ids (ints) into arrays kept here in node order (host, then the card's place on its node: the
order a read of every brief gives, ``screens.gpus.gpu_rows``); the keys (``gpu_key``) and that order are
made again only when the cards change (a node joins, leaves, gains a card), not per refresh. A sort reads
one column picked into node order with ``operator.itemgetter`` (C); the table sorts that.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from clustertop.read.model import ClusterState, NodeView
from clustertop.wire import schema

#: The columns the summaries' GPU columns sort by; the others (name, fan, P, ECC, throttle) and a filter need
#: every node's brief (``Level.GPUS``).
SUMMABLE = frozenset({"node", "idx", "util", "vram", "temp", "power"})

GpuItem = tuple[NodeView, schema.Gpu]


def _pick(col: Sequence[Any], order: list[int]) -> Sequence[Any]:
    """``col`` in ``order`` (in C): a tuple, or a list for fewer than two positions."""
    if len(order) > 1:
        return itemgetter(*order)(col)  # type: ignore[no-any-return]
    return [col[i] for i in order]


def _bucket(s: Any) -> int:
    return int(s.bucket)


class SummaryRows:
    """The GPU table's rows of the last summary read (``update``), as ids into node-ordered arrays."""

    def __init__(self, key: Any) -> None:
        self._key = key  # screens.gpus.gpu_key (passed in: this module is below the screen)
        self._layout: Any = None
        self.ids: list[int] = []  # the row ids, in node order: what the table is given as items
        self.keys: list[str] = []  # gpu_key of each row id
        self._base: list[int] = []  # row id -> position in the raw arrays
        self._hosts: list[str] = []
        self._index: list[int | None] = []
        self._cols: dict[str, list[Any]] = {}
        self._values: dict[str, Sequence[Any]] = {}
        self._state: ClusterState | None = None  # the read of the last update
        self.views: dict[str, NodeView] = {}  # the hosts read with their GPUs in this read
        self._lost: frozenset[int] = frozenset()  # raw positions of the columns' lost cards
        self.from_columns = 0  # rows whose cells came from the columns (no brief in this read) since update

    def update(self, state: ClusterState) -> None:
        """The rows of ``state``. A redraw of the same read (a filter cleared, the screen shown again) keeps
        everything, the columns already picked into node order included (VRAM divides ~80,000 pairs: ~4 ms)."""
        if state is self._state:
            return
        self._state = state
        s = state.summaries
        assert s is not None
        parts = sorted((b for b in s.believed if b.gpus is not None), key=_bucket)
        covered = s.covered
        views = {n.host: n for n in s.read_here if n.snap is not None and n.state != "down" and n.snap.gpus}
        # Cards not in the columns: of the hosts no believed summary covers, and of those their summary calls stale, down
        # or bad (the columns hold the up nodes' cards; the reader read these hosts' briefs: ``Reader._summaries``).
        quiet = {h for b in parts if b.states.count("u") != len(b.states)
                 for h, letter in zip(b.hosts, b.states, strict=False) if letter != "u"}
        extra = [v for h, v in views.items() if h not in covered or h in quiet]
        layout = ([(b.hosts, b.gpus.node, b.gpus.index) for b in parts],  # type: ignore[union-attr]
                  [(v.host, [g.index for g in v.snap.gpus]) for v in extra])  # type: ignore[union-attr]
        same = layout == self._layout  # the same cards on the same hosts: keys, order and hosts kept
        hosts: list[str] = self._hosts if same else []
        index: list[int | None] = self._index if same else []
        util: list[int | None] = []
        used: list[int | None] = []
        total: list[int | None] = []
        temp: list[int | None] = []
        power: list[int | None] = []
        lost: list[int] = []  # raw positions of cards that fell off the bus
        for b in parts:
            c = b.gpus
            assert c is not None
            if c.lost:
                start = len(util)
                lost += [start + i for i in c.lost]  # open_summary checked each is in range
            if not same:
                hosts += map(b.hosts.__getitem__, c.node)  # open_summary checked every position is in range
                index += c.index
            util += c.util_pct
            used += c.mem_used_bytes
            total += c.mem_total_bytes
            temp += c.temp_c
            power += c.power_mw
        for p in lost:  # as the full read sorts them: by util below every real figure, nothing else known
            util[p] = -1
            used[p] = total[p] = temp[p] = power[p] = None
        self._lost = frozenset(lost)
        for v in extra:  # no believed summary covers it: its brief's GPUs, as the full read sorts them
            gpus = v.snap.gpus  # type: ignore[union-attr]
            if not same:
                hosts += [v.host] * len(gpus)  # type: ignore[arg-type]
                index += [g.index for g in gpus]  # type: ignore[union-attr]
            util += [-1 if g.lost else g.util_pct for g in gpus]  # type: ignore[union-attr]
            used += [None if g.lost else g.mem_used_bytes for g in gpus]  # type: ignore[union-attr]
            total += [None if g.lost else g.mem_total_bytes for g in gpus]  # type: ignore[union-attr]
            temp += [None if g.lost else g.temp_c for g in gpus]  # type: ignore[union-attr]
            power += [None if g.lost else g.power_mw for g in gpus]  # type: ignore[union-attr]
        if not same:
            # Node order: by host (hosts of different buckets interleave), a host's cards as listed (a stable sort).
            self._layout = layout
            base = sorted(range(len(hosts)), key=hosts.__getitem__)
            key = self._key
            self._base = base
            self.keys = [key(hosts[p], index[p]) for p in base]
            self.ids = list(range(len(base)))
            self._values = {"node": _pick(hosts, base), "idx": _pick(index, base)}
        else:
            self._values = {k: self._values[k] for k in ("node", "idx")}
        self._hosts, self._index = hosts, index
        self._cols = {"util": util, "used": used, "total": total, "temp": temp, "power": power}
        self.views = views
        self.from_columns = 0

    def values(self, column: str) -> Sequence[Any]:
        """Every row's value of ``column`` in node order (None = N/A); a column the summaries lack is all N/A."""
        got = self._values.get(column)
        if got is None:
            cols = self._cols
            if column == "vram":  # used / total; None where either is N/A or the total is 0: never 0
                raw: Sequence[Any] = [u / t if u is not None and t else None
                                      for u, t in zip(cols["used"], cols["total"], strict=True)]
            else:
                raw = cols[column] if column in cols else [None] * len(self._hosts)
            got = self._values[column] = _pick(raw, self._base)
        return got

    def value(self, row: int, column: str) -> Any:
        return self.values(column)[row]

    def host(self, row: int) -> str:
        return self._hosts[self._base[row]]

    def item(self, row: int) -> GpuItem:
        """Row ``row``'s node and card: its brief's, where this read has it; else made of the columns (the
        figures they carry, None for the rest: shown N/A), on a view of its host with no snapshot."""
        p = self._base[row]
        host, index = self._hosts[p], self._index[p]
        v = self.views.get(host)
        if v is not None:
            for g in v.snap.gpus or ():  # type: ignore[union-attr]
                if g.index == index:
                    return v, g
        self.from_columns += 1
        if p in self._lost:
            return NodeView(host=host, state="up"), schema.Gpu(index=index, lost=True)  # type: ignore[arg-type]
        c = self._cols
        g = schema.Gpu(index=index, util_pct=c["util"][p], mem_used_bytes=c["used"][p],  # type: ignore[arg-type]
                       mem_total_bytes=c["total"][p], temp_c=c["temp"][p], power_mw=c["power"][p])
        return NodeView(host=host, state="up"), g
