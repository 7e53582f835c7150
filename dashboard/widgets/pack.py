"""Provides pack: short parts laid out in lines of a width, each part whole.

Word wrap cuts a line at any space, so "384 GiB RAM 50 %" can end one line with "384" and start the
next with "GiB RAM": a figure away from its unit. Header lines and summaries are made of small
facts; these are kept whole, and a line breaks only between two of them.
"""

from __future__ import annotations

from textual.content import Content


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
