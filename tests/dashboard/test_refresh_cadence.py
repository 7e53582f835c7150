"""The refresh cadence (dashboard/app.py ``_next_refresh_s``): refreshes start every ``refresh_s``, measured
from the start of the last one, so a node's change waits at most one interval for a read
(bench/end_to_end.py measures the latency); a refresh slower than that still leaves the app idle a while.

The clock is the app module's own ``time.monotonic``, replaced here by a hand-stepped one: the arithmetic is
checked exactly, nothing here depends on how fast this machine is.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from clustertop.dashboard import app as app_mod
from clustertop.dashboard.app import MIN_IDLE_FRAC, make_app
from clustertop.dashboard.settings import Settings
from clustertop.store import embedded

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(app_mod, "time", SimpleNamespace(monotonic=lambda: now[0], time=time.time))
    return now


def test_next_refresh_counts_from_the_start_of_this_one(clock: list[float]) -> None:
    _server, factory = embedded()
    app: Any = make_app(Settings(refresh_s=1.0), factory)
    app._refresh_started = clock[0]
    clock[0] += 0.25  # read, fold and draw took 250 ms
    assert app._next_refresh_s() == pytest.approx(0.75)
    clock[0] += 0.2  # 450 ms
    assert app._next_refresh_s() == pytest.approx(0.55)


def test_a_slow_refresh_still_leaves_the_app_idle(clock: list[float]) -> None:
    _server, factory = embedded()
    app: Any = make_app(Settings(refresh_s=2.0), factory)
    app._refresh_started = clock[0]
    clock[0] += 1.9  # nearly a whole interval
    assert app._next_refresh_s() == pytest.approx(MIN_IDLE_FRAC * 2.0)
    clock[0] += 30  # a read that took far longer than the interval
    assert app._next_refresh_s() == pytest.approx(MIN_IDLE_FRAC * 2.0)


async def test_the_app_arms_its_timer_from_the_refresh_start(redis_server: Any) -> None:
    """A real app on a real redis-server: each refresh stamps its start, and the timer armed after the read
    is ``_next_refresh_s`` (never a second chain of timers beside the first)."""
    app: Any = make_app(Settings(refresh_s=30.0), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.finished_reads < 1:
            await pilot.pause(0.01)
        first_start = app._refresh_started
        timer = app._refresh_timer
        assert timer is not None
        await pilot.pause(0.05)
        app.refresh_now()  # as a screen asking for other data does
        assert app._refresh_started > first_start
        while app.finished_reads < 2:
            await pilot.pause(0.01)
        assert app._refresh_timer is not timer  # the earlier timer was replaced, not doubled
