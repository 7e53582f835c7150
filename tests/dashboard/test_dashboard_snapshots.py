"""SVG snapshots (pytest-textual-snapshot) of every screen at 80x24 and 384x108.

Deterministic: frozen clock, UTC, fixed data written through the real Publisher into the embedded
store, no refresh during the shot. Update with ``pytest --snapshot-update`` after looking at
``snapshot_report.html``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.settings import Settings
from clustertop.store import embedded
from clustertop.wire import schema
from tests.support import builders as b

SIZES = [(80, 24), (384, 108)]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def scenario_client() -> Any:
    """8 healthy nodes, a hot GPU, a stale node, a down node and a bad-data node, Ceph warning."""
    _server, factory = embedded()
    client = factory()
    snaps = b.demo_cluster(ts=b.NOW)
    hot = b.tower("gpu-06", (99, 97), ts=b.NOW, cpu=95.0)
    assert hot.gpus is not None
    hot.gpus[0].temp_c = 93
    hot.gpus[1].procs = [b.gpu_proc(7001, "python", "alice", 9.0, pod="train-resnet-0")]
    hot.gpus[0].procs = [b.gpu_proc(7002, "torchrun", "bob", 10.0)]
    b.publish(client, [*snaps, hot], hist=30, cluster=[b.ceph("HEALTH_WARN"), b.queues(41)])
    b.publish(client, [b.tower("gpu-07", ts=b.NOW - 20), b.tower("gpu-08", ts=b.NOW - 400)])
    b.silence(client, "gpu-07", "gpu-08")  # stopped reporting
    b.write_raw(client, "arm-09", b"\x92\x01garbage")
    return factory


async def wait_first_read(pilot: Any) -> None:
    await b.wait_reads(pilot)
    screen = pilot.app.screen
    if getattr(screen, "big", False):  # the big overview: its trends seeded from history, and drawn
        await b.wait_until(pilot, lambda: screen.seed_done, "the trends seeded from history")
        await b.wait_until(pilot, lambda: all(p.draws for p in screen.query("PlotPanel")), "the charts drawn")
        await pilot.pause()


def app_for(factory: Any, known: Any = None) -> Any:
    return make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="redis://test:6379",
                             known=known), factory)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_overview(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(scenario_client()), terminal_size=size, run_before=wait_first_read)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_nodes(snap_compare: Any, size: tuple[int, int]) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(app_for(scenario_client()), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_gpus(snap_compare: Any, size: tuple[int, int]) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("3")
        await pilot.pause()
        # Select gpu-06 GPU 0 (the hot one with a process): rows are in node order, 2 per tower.
        for _ in range(10):
            await pilot.press("down")
        await pilot.pause()

    assert snap_compare(app_for(scenario_client()), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_node_detail(snap_compare: Any, size: tuple[int, int]) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        pilot.app.open_node("gpu-06")
        await b.wait_until(pilot, lambda: len(getattr(pilot.app.screen, "points", ())) == 31, "history")
        await pilot.pause()

    assert snap_compare(app_for(scenario_client()), terminal_size=size, run_before=go)


def test_help(snap_compare: Any) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app_for(scenario_client()), terminal_size=(80, 24), run_before=go)


def sim_client(nodes: int | None = None) -> Any:
    from clustertop.sim.simulate import SimCluster, make_publishers, prefill_history, publish

    _server, factory = embedded()
    client = factory()
    sim = SimCluster(seed=1, nodes=nodes)
    # Each node seals what it publishes, as in `clustertop demo`; with fixed test keys (the demo's are
    # fresh each run), so the fingerprints in the shot stay the same.
    sim.keys = {h: b.node_key(h) for h in sim.hosts}
    # A long publisher interval only lengthens the key TTL: nothing expires during the shot.
    pubs = make_publishers(sim, client, 600.0)
    prefill_history(client, sim, b.NOW, seconds=600)
    publish(client, sim, b.NOW, pubs)
    return factory


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_demo_cluster_overview(snap_compare: Any, size: tuple[int, int]) -> None:
    """The simulated demo cluster (seed 1), frozen: what `clustertop demo` looks like."""
    assert snap_compare(app_for(sim_client()), terminal_size=size, run_before=wait_first_read)


def test_demo_cluster_node_detail(snap_compare: Any) -> None:
    async def go(pilot: Any) -> None:
        await b.wait_reads(pilot)
        host = next(n.host for n in pilot.app.view.state.nodes if n.snap and n.snap.gpus)
        pilot.app.open_node(host)
        await b.wait_until(pilot, lambda: len(getattr(pilot.app.screen, "points", ())) > 10, "history")
        await b.wait_until(pilot, lambda: pilot.app.trust.of(host).word == "verified", "its seal checked")
        await pilot.pause()

    from clustertop.sim.simulate import SimCluster

    known = b.known_nodes(*SimCluster(seed=1).hosts)  # the demo enrols its simulated nodes
    assert snap_compare(app_for(sim_client(), known), terminal_size=(384, 108), run_before=go)


def test_scenario_is_what_the_snapshots_claim() -> None:
    """Guards the snapshot data itself, so an accepted SVG cannot hide a wrong scenario."""
    from clustertop.read.reader import Reader

    state = Reader(scenario_client()(), clock=lambda: b.NOW + 0.5).read()
    states = {n.host: n.state for n in state.nodes}
    assert states["gpu-07"] == "stale" and states["gpu-08"] == "down" and states["arm-09"] == "bad"
    assert sum(1 for s in states.values() if s == "up") == 9
    node = state.node("gpu-06")
    assert node is not None and node.snap is not None and isinstance(node.snap, schema.NodeSnapshot)
