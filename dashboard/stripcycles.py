"""Provides ``install``: Textual's ``Strip`` without the reference cycles its caches make of whole-width strips.

A ``Strip`` caches what it derives, and two of its methods cache the strip itself when the answer is the strip
unchanged: ``crop_extend(0, n)`` of a strip ``n`` cells long, and ``divide([n])`` (the compositor's cut of a line
one widget fills, nearly every line of a screen). Each such strip then refers to itself and is freed only by the
cyclic garbage collector, with its segments and its seven caches: ~5,000 objects a refresh on the wall at 1,000
nodes, ~110,000 by each middle-generation pass of ``dashboard.gcpolicy`` (every 20 refreshes), which then took
60-120 ms. Freed by reference counting instead, they never reach the collector.

Both methods answer exactly as before (the same strip; a new one-item list for ``divide``); only that answer is
no longer cached, and it costs nothing to make. Textual is pinned (constraints.txt), and
``tests/dashboard/test_stripcycles.py`` checks that a screen's repaint leaves no cycle, so an upgrade that
changes these methods (or adds another such cache) shows there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.style import Style
from textual.strip import Strip

_crop_extend = Strip.crop_extend
_divide = Strip.divide


def _crop_extend_acyclic(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    if start == 0 and end == self.cell_length:  # Textual's own answer (extend and crop are both the strip)
        return self
    return _crop_extend(self, start, end, style)


def _divide_acyclic(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    cuts = list(cuts)
    n = self.cell_length
    if [cut for cut in cuts if cut <= n] == [n]:  # Textual's own answer, [self], not cached on self
        return [self]
    return _divide(self, cuts)


def install() -> None:
    """Patch ``Strip`` (idempotent)."""
    if Strip.crop_extend is _crop_extend_acyclic:
        return
    Strip.crop_extend = _crop_extend_acyclic  # type: ignore[method-assign]
    Strip.divide = _divide_acyclic  # type: ignore[assignment]
