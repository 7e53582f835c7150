"""Provides ``inert``: text from the cluster made safe to print, the one implementation both sides use.

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
