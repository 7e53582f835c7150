"""SVG snapshots of the wall (202x58, 384x108, 480x135) and of the terminal screens at 200x60.

The demo cluster (``SimCluster(seed=1)``) with ten minutes of history, frozen clock, UTC, no
refresh during the shot and no page rotation (its countdown would tick with real time). Update
with ``pytest tests/dashboard/test_wall_snapshots.py --snapshot-update`` after looking at the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.settings import Settings
from clustertop.store import embedded
from tests.support import builders as b

WALL_SIZES = [(202, 58), (384, 108), (480, 135)]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def sim_client(lost_gpu: bool = False) -> Any:
    from clustertop.sim.simulate import SimCluster, make_publishers, prefill_history, publish

    _server, factory = embedded()
    client = factory()
    sim = SimCluster(seed=1)
    pubs = make_publishers(sim, client, 600.0)  # a long interval only lengthens the key TTL
    prefill_history(client, sim, b.NOW, seconds=600)
    publish(client, sim, b.NOW, pubs)
    if lost_gpu:
        from clustertop import wire
        from clustertop.wire import schema

        host = "gpu03"
        snap = wire.decode(client.get(wire.node_key(host)), schema.NodeSnapshot)
        assert snap.gpus is not None
        snap.gpus[1].lost = True
        snap.gpus[1].error = "fell off the bus (Xid 79)"
        b.publish(client, [snap])
    return factory


def wall_app(factory: Any, theme: str | None = None) -> Any:
    return make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="demo (simulated, seed 1)",
                             wall=True, wall_page_s=0, theme=theme), factory)


async def settle(pilot: Any, page: int = 0) -> None:
    await b.wait_reads(pilot)
    wall = pilot.app.screen
    await b.wait_until(pilot, lambda: bool(wall.seed), "history seed")
    if page:
        wall.show_page(page)
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", WALL_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_wall_gpus(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(wall_app(sim_client()), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", WALL_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_wall_trends(snap_compare: Any, size: tuple[int, int]) -> None:
    async def go(pilot: Any) -> None:
        await settle(pilot, page=1)

    assert snap_compare(wall_app(sim_client()), terminal_size=size, run_before=go)


def test_wall_health_and_timeline(snap_compare: Any) -> None:
    async def go(pilot: Any) -> None:
        await settle(pilot, page=2)

    assert snap_compare(wall_app(sim_client()), terminal_size=(384, 108), run_before=go)


def test_wall_critical_banner_high_contrast(snap_compare: Any) -> None:
    assert snap_compare(wall_app(sim_client(lost_gpu=True), theme="high-contrast"), terminal_size=(384, 108),
                        run_before=settle)


def test_wall_colorblind_theme(snap_compare: Any) -> None:
    assert snap_compare(wall_app(sim_client(), theme="colorblind"), terminal_size=(202, 58), run_before=settle)


def terminal_on_screen(snap_compare: Any, key: str, size: tuple[int, int]) -> bool:
    """The interactive app (not the wall) on the demo data, on screen ``key``, compared at ``size``."""
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="demo (simulated, seed 1)"),
                   sim_client())

    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press(key)
        await pilot.pause()
        await pilot.pause()

    return bool(snap_compare(app, terminal_size=size, run_before=go))


@pytest.mark.parametrize("key", ["1", "2", "3"], ids=["overview", "nodes", "gpus"])
def test_terminal_200x60(snap_compare: Any, key: str) -> None:
    assert terminal_on_screen(snap_compare, key, (200, 60))


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_wall_in_a_small_terminal(snap_compare: Any, size: tuple[int, int]) -> None:
    """The wall started in whatever terminal is at hand: every mode at every size in the matrix."""
    assert snap_compare(wall_app(sim_client()), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("key", ["1", "3"], ids=["overview", "gpus"])
def test_terminal_480x135(snap_compare: Any, key: str) -> None:
    """The interactive app on a 4K screen's grid (8x16 px cells), not only the wall."""
    assert terminal_on_screen(snap_compare, key, (480, 135))
