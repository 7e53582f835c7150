"""The dashboard's garbage-collector policy (dashboard.gcpolicy): CPython's real collector, driven by
real allocations, and the app calling it once a read is on screen (a real redis-server behind it).

What the policy is worth in milliseconds is measured by bench/dashboard_refresh.py (``--gc``), not here.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.dashboard import gcpolicy
from clustertop.dashboard.app import make_app
from clustertop.dashboard.settings import Settings
from tests.support import builders as b


@pytest.fixture
def tuned() -> Iterator[None]:
    """``gcpolicy.tune()`` for one test, then the collector as it was (the rest of the session must
    not run with everything frozen)."""
    before = gc.get_threshold()
    gcpolicy.tune()
    try:
        yield
    finally:
        gcpolicy.untune(before)
        gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # garbage only the cyclic collector can free


def _young(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]  # n tracked containers, kept alive by the caller


def test_untuned_leaves_the_interpreter_alone() -> None:
    gcpolicy.untune(gc.get_threshold())  # as in any process that never called tune()
    keep = _young(gcpolicy.YOUNG_LIMIT * 2)
    assert gcpolicy.collect_if_due() is None
    del keep


def test_tune_raises_the_automatic_limits_above_the_idle_rule(tuned: None) -> None:
    young, middle, full = gc.get_threshold()
    assert young == gcpolicy.AUTO_YOUNG > gcpolicy.YOUNG_LIMIT
    assert middle > gcpolicy.MIDDLE_EVERY and full > gcpolicy.FULL_EVERY
    assert gc.get_freeze_count() > 0  # start-up is out of every collection's way


def test_idle_collection_follows_the_collectors_own_rule(tuned: None) -> None:
    gc.collect()  # counts from zero
    assert gcpolicy.collect_if_due() is None  # nothing new: no pass at all
    m, f = gcpolicy.MIDDLE_EVERY, gcpolicy.FULL_EVERY
    seen = []
    for _ in range((m + 1) * f + 1):
        keep = _young(gcpolicy.YOUNG_LIMIT * 2)
        seen.append(gcpolicy.collect_if_due())
        assert gc.get_count()[0] < gcpolicy.YOUNG_LIMIT  # the pass ran and reset the young count
        del keep
    # A middle pass once MIDDLE_EVERY young ones ran since the last, a full one once FULL_EVERY
    # middle ones did: the interpreter's rule, at the interpreter's cadence.
    assert seen[:m] == [0] * m and seen[m] == 1
    assert seen[m + 1:2 * m + 1] == [0] * m and seen[2 * m + 1] == 1
    assert seen.index(2) == len(seen) - 1 and seen.count(1) == f  # the full one in place of a young one


def test_idle_collection_frees_cycles(tuned: None) -> None:
    gc.collect()
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None  # reference counting alone never frees it
    keep = _young(gcpolicy.YOUNG_LIMIT * 2)
    assert gcpolicy.collect_if_due() == 0
    assert gone() is None
    del keep


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.mark.anyio
async def test_app_lets_go_of_the_previous_read_and_collects_after_the_repaint(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    b.publish(redis_server.client(), b.demo_cluster())
    calls: list[int] = []
    real = gcpolicy.collect_if_due

    def counted() -> int | None:
        calls.append(app.finished_reads)
        return real()

    monkeypatch.setattr(gcpolicy, "collect_if_due", counted)
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=0.1, source_label="test"), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        first = weakref.ref(app.view.state)
        await b.wait_reads(pilot, app.finished_reads + 2)
        await pilot.pause()
        assert first() is None  # freed by reference counting once a newer read was on screen
        assert app._previous_state is None
    # After reads on screen (app.finished_reads counts a read once it is drawn), at least two distinct ones.
    assert min(calls) >= 1 and len(set(calls)) >= 2


def test_a_slow_pass_puts_the_next_off_unless_the_young_count_nears_the_automatic_limit(
        tuned: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 10,000 nodes a pass after every refresh walked the read on screen each time (75-200 ms); after a
    slow one the next waits SPACING times as long, the reads in between freed by reference counting."""
    gc.collect()
    monkeypatch.setattr(gcpolicy, "SLOW_PASS_S", 0.0)  # every pass counts as slow
    monkeypatch.setattr(gcpolicy, "SPACING", 1e9)  # and puts the next one off for the rest of the test
    keep = _young(gcpolicy.YOUNG_LIMIT * 2)
    assert gcpolicy.collect_if_due() == 0
    more = _young(gcpolicy.YOUNG_LIMIT * 2)
    assert gcpolicy.collect_if_due() is None  # due by the count, put off by the last pass's length
    assert gc.get_count()[0] >= gcpolicy.YOUNG_LIMIT
    monkeypatch.setattr(gcpolicy, "AUTO_YOUNG", gcpolicy.YOUNG_LIMIT * 4)
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    del cycle
    assert gcpolicy.collect_if_due() == 0  # near the automatic limit: run now, never left to the interpreter
    assert ref() is None and gc.get_count()[0] < gcpolicy.YOUNG_LIMIT
    monkeypatch.setattr(gcpolicy, "SLOW_PASS_S", 1e9)  # a quick pass puts nothing off
    monkeypatch.setattr(gcpolicy, "_next_pass", 0.0)  # (the last one did, SLOW_PASS_S being 0 then)
    del keep, more
    for _ in range(3):
        keep = _young(gcpolicy.YOUNG_LIMIT * 2)
        assert gcpolicy.collect_if_due() == 0
        del keep


@pytest.mark.anyio
async def test_the_reader_thread_holds_no_read_past_its_message(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refresh's read is freed by the UI thread once it is done with it, never by the reader thread when
    its next read replaces it; the hidden GPU ledger's own reads (beside a digest overview) are read, folded and
    freed on the ledger's thread (``ClusterTop._ledger_loop``), never on the reader thread: at 10,000 nodes x 8
    GPUs freeing the ledger's read there took ~60 ms, inside the next refresh, between its read and its message."""
    import threading

    import clustertop.read.plan
    from clustertop.sim.simulate import SimCluster

    monkeypatch.setattr(clustertop.read.plan, "BRIEF_FROM_NODES", 0)
    monkeypatch.setattr("clustertop.dashboard.app.LEDGER_EVERY_S", 0.0)  # a ledger read after every refresh
    sim = SimCluster(seed=2, nodes=12, gpus_per_node=4)
    pairs, cluster = sim.step(b.NOW)
    b.publish(redis_server.client(), [s for s, _ in pairs], cluster=cluster)
    freed: list[tuple[str, str]] = []  # (the read's level, the thread that freed it)
    app = make_app(Settings(refresh_s=0.2, source_label="test"), redis_server.client)
    async with app.run_test(size=(148, 44)) as pilot:
        await b.wait_reads(pilot)
        source_read = app.source.read

        def watched(*args: Any, **kw: Any) -> Any:
            state = source_read(*args, **kw)
            weakref.finalize(state, lambda level=state.plan.level.name: freed.append(
                (level, threading.current_thread().name)))
            return state

        app.source.read = watched  # type: ignore[method-assign]
        ledger_read = app.ledger_source.read

        def watched_ledger(*args: Any, **kw: Any) -> Any:
            state = ledger_read(*args, **kw)
            weakref.finalize(state, lambda level=state.plan.level.name: freed.append(
                (level, threading.current_thread().name)))
            return state

        app.ledger_source.read = watched_ledger  # type: ignore[method-assign]
        await b.wait_until(pilot, lambda: sum(1 for lv, _ in freed if lv == "GPUS") >= 3, "ledger reads freed")
        await b.wait_until(pilot, lambda: sum(1 for lv, _ in freed if lv == "DIGESTS") >= 3, "reads freed")
    assert {t for lv, t in freed if lv == "DIGESTS"} == {"MainThread"}, freed
    assert {t for lv, t in freed if lv == "GPUS"} == {"clustertop-ledger"}, freed
