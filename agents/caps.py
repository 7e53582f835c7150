"""Provides the process's effective capabilities, read from /proc/self/status (pure parser + one reader).

The agent checks CAP_KILL at start when ``[security] signal_users`` asks to signal other users: the
shipped unit grants no capability at all, the signal-users.conf drop-in grants exactly that one.
"""

from __future__ import annotations

#: Bit numbers from linux/capability.h.
CAP_KILL = 5


def effective(status_text: str) -> int | None:
    """The CapEff bit mask of a /proc/<pid>/status text; None when the line is missing or garbled."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None


def has_capability(bit: int, status_path: str = "/proc/self/status") -> bool:
    """Does this process hold capability ``bit`` in its effective set? False when that cannot be read."""
    try:
        with open(status_path) as f:
            mask = effective(f.read())
    except OSError:
        return False
    return mask is not None and bool(mask >> bit & 1)
