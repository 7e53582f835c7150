"""Provides pack: short facts laid out in lines of a width, each fact whole; and FactLines, a Static
that shows facts so, for its own width.

Word wrap cuts a line at any space, so "384 GiB RAM 50 %" can end one line with "384" and start the
next with "GiB RAM": a figure away from its unit. Header lines and summaries are made of small
facts; these are kept whole, and a line breaks only between two of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.content import Content
from textual.widgets import Static

Part = str | tuple[str, str]  # text, or (text, style)


def facts(groups: Iterable[Sequence[Part]]) -> list[Content]:
    """One Content per fact, from its (text, style) parts; empty facts left out."""
    return [Content.assemble(*g) for g in groups if g]


def pack(parts: list[Content], width: int, sep: Content | str = "  ") -> list[Content]:
    """``parts`` joined by ``sep`` in as many lines of ``width`` cells as they need, a part never cut
    in two (one wider than the line gets a line of its own, which its widget crops); no separator at
    a line's end."""
    sep = Content(sep) if isinstance(sep, str) else sep
    gap = sep.cell_length
    lines: list[list[Content]] = [[]]
    used = 0
    for part in parts:
        w = part.cell_length
        if lines[-1] and used + gap + w > width:
            lines.append([])
            used = 0
        used += w + (gap if lines[-1] else 0)
        lines[-1].append(part)
    return [sep.join(line) for line in lines]


class FactLines(Static):
    """Groups of facts, each group packed into its own lines (``pack``) for this widget's width:
    packed again on a resize, redrawn only when the text changes, laid out again only when the
    height does. ``lines`` is the hook for what to show at a width (the header's short words)."""

    DEFAULT_CSS = """
    FactLines { height: auto; }
    """

    def __init__(self, sep: Content | str = "  ", id: str | None = None) -> None:
        super().__init__("", id=id)
        self.sep = sep
        self.groups: tuple[list[Content], ...] = ()
        self._shown: tuple[str, ...] = ()
        self._rows = 0
        self._plain = ""

    @property
    def text(self) -> str:
        """What it says, a line per line shown, as plain text (tests, snapshots of a screen in words)."""
        return self._plain

    def show_facts(self, *groups: list[Content]) -> None:
        self.groups = groups
        self.redraw()

    def lines(self, width: int) -> list[Content]:
        return [line for g in self.groups for line in pack(g, width, self.sep)]

    def on_resize(self) -> None:
        if self._shown:  # packed for a width: pack again
            self.redraw()

    def redraw(self) -> None:
        # Before its first layout it has no size yet: it spans the screen, so the app's width.
        width = max(1, (self.size.width or self.app.size.width or 80) - 2)
        lines = self.lines(width)
        key = tuple(line.markup for line in lines)
        if key == self._shown:
            return
        self._shown = key
        # A fact wider than the line still wraps within its line.
        rows = sum(len(line.wrap(width)) for line in lines)
        self.update(Content("\n").join(lines), layout=rows != self._rows)
        self._rows = rows
        self._plain = "\n".join(line.plain for line in lines)
