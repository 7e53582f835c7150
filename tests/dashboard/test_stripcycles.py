"""Repainted lines are freed by reference counting (dashboard/stripcycles.py): no ``Strip`` left in a cycle.

Textual's ``Strip`` cached itself as the answer to ``crop_extend(0, n)`` and ``divide([n])``; every whole-width
line then waited for the cyclic collector, which at 1,000 nodes spent 60-120 ms a middle pass on them."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from rich.segment import Segment
from textual.strip import Strip

from clustertop.dashboard import stripcycles
from clustertop.dashboard.app import make_app
from clustertop.dashboard.settings import Settings
from clustertop.store import embedded
from tests.support import builders as b

pytestmark = pytest.mark.anyio


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """The collector's finds kept in ``gc.garbage`` (DEBUG_SAVEALL) while the test runs, then let go."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_a_whole_width_strip_answers_itself_without_caching_itself(saved_garbage: list[Any]) -> None:
    stripcycles.install()
    strip = Strip([Segment("gpu01 "), Segment("97%")], 9)
    assert strip.crop_extend(0, 9, None) is strip
    assert list(strip.divide([9])) == [strip] and list(strip.divide([9, 12])) == [strip]
    assert strip.crop_extend(0, 12, None).cell_length == 12 and strip.crop_extend(2, 5, None).text == "u01"
    assert [s.text for s in strip.divide([3, 9])] == ["gpu", "01 97%"]
    del strip
    gc.collect()
    assert not [x for x in saved_garbage if isinstance(x, Strip)]


@pytest.mark.parametrize("patched", [True, False])
async def test_refreshes_leave_no_strip_for_the_collector(saved_garbage: list[Any], patched: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """And with Textual's own methods, they do: the check can fail (and says when an upgrade made the patch moot)."""
    stripcycles.install()  # what importing the app does
    if not patched:
        monkeypatch.setattr(Strip, "crop_extend", stripcycles._crop_extend)
        monkeypatch.setattr(Strip, "divide", stripcycles._divide)
    _server, factory = embedded()
    b.publish(factory(), b.demo_cluster(), hist=12, cluster=[b.ceph("HEALTH_OK"), b.queues(41)])
    for wall in (False, True):
        app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test", wall=wall), factory)
        async with app.run_test(size=(202, 58)) as pilot:
            await b.wait_reads(pilot)
            await pilot.pause()
            gc.collect()
            saved_garbage.clear()
            for i in range(3):
                b.publish(factory(), b.demo_cluster(ts=b.NOW + 1 + i))  # every tile changes: lines repainted
                app.refresh_now()
                await b.wait_reads(pilot, 2 + i)
                await pilot.pause()
            gc.collect()
            cyclic = [x for x in saved_garbage if isinstance(x, Strip)]
            if patched:
                assert not cyclic, f"{len(cyclic)} strips freed by the collector, wall={wall}"
            else:
                assert len(cyclic) > 50, f"Textual's Strip no longer caches itself (wall={wall}): drop stripcycles"
