"""Provides ``steady_update``: new text for a Static whose height rarely changes, without a new layout.

``Static.update`` lays the whole screen out again by default, and a layout repaints every widget on it:
a section whose figures change every read (a node's rates, a bond summary, a GPU's clocks) cost the
screen a full repaint per refresh (~20 ms at 1,000 nodes: the big tables under it were repainted too).
The layout is needed only when the text's height may change: another number of lines, another width,
or a line long enough to wrap.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

#: (lines, width) of text in which no line can wrap; None where one may (or nothing was drawn yet).
Shape = tuple[int, int] | None


def steady_update(widget: Static, content: Content, last: Shape) -> Shape:
    """Show ``content`` in ``widget``, with a new layout only where its shape differs from ``last`` (or a
    line may wrap). Returns the shape to pass next time."""
    width = widget.size.width
    lines = content.split() if content.plain else []
    shape = (len(lines), width) if width and all(line.cell_length <= width for line in lines) else None
    widget.update(content, layout=shape is None or shape != last)
    return shape
