"""Provides ``inert``: text from the cluster made safe to print, the one implementation both sides use;
and ``known``: its counterpart for numbers, the one test of whether a figure from the cluster is worth
showing at all.

Every string on the wire was chosen by a node or a Redis writer (a process name, a hostname, a task's
output). Printed raw, ESC sequences retitle or repaint the terminal, a carriage return overwrites the
line before it, and bidi overrides (U+202E) make "gpu01" read as something else. Such characters are
shown escaped (``\\x1b``, ``\\u202e``), never obeyed and never silently dropped: an operator should see
that a name is odd.
"""

from __future__ import annotations

import re

#: C0 and C1 controls, DEL, bidi embeddings/overrides/isolates and marks, zero-width characters,
#: line/paragraph separators and the BOM: invisible or terminal-driving, never plain text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def inert(text: object, *, lines: bool = False, limit: int | None = None) -> str:
    """``text`` with every control, bidi and zero-width character escaped; newlines and tabs kept when
    ``lines``; cut to ``limit`` characters (with "…") so a 1 MB name cannot flood a terminal."""
    s = str(text)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return (_UNSAFE_KEEP_LINES if lines else _UNSAFE).sub(_escape, s)


#: Past this magnitude a plain figure from the cluster (a count, a load, a clock, a latency, an id) is a
#: broken counter or a lie (2**64 - 1, 1e308), not a reading; and it stays within 11 digits on screen.
#: Sizes and rates have their own bounds, with units (the dashboard's fmt).
MAX_FIGURE = 1e10


def known(v: object, lo: float = -MAX_FIGURE, hi: float = MAX_FIGURE) -> float | None:
    """``v`` as a float where it is a figure worth showing; None (unknown, shown as "N/A") where it is
    missing, not a number, not finite (NaN fails every comparison, so it lands here too) or outside
    ``[lo, hi]``. Any node can write NaN, ±inf, 1e308 or 2**64 - 1 to Redis: printed as they are they
    raise (``int(nan)``), or fill a line with 309 digits."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # an int past float's range, a string
        return None
    return f if lo <= f <= hi else None
