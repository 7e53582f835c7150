"""Provides ``wait_for``: poll until a real component has acted (controllers, a scheduler, a stand-in kubelet).

A bound that turns a hang into a readable failure, never a timing assertion: the message names what was
awaited and the last value seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T], ok: Callable[[T], bool], limit_s: float = 60.0,
             step_s: float = 0.2) -> T:
    """``fn()`` every ``step_s`` until ``ok(result)``; that result, or AssertionError after ``limit_s``."""
    end = time.monotonic() + limit_s
    while True:
        v = fn()
        if ok(v):
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not reached in {limit_s:.0f} s; last: {v!r}"[:2000])
        time.sleep(step_s)


def until(fn: Callable[[], T], what: str, limit_s: float = 20.0) -> T:
    """``fn()`` until it is truthy; that value (``wait_for`` with ``bool``, a 50 ms step)."""
    return wait_for(what, fn, bool, limit_s, 0.05)
