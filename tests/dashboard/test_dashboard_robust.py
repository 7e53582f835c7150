"""Robustness: garbage, newer schemas, nodes that stop reporting, hostile text, and a store that dies.

The app must keep running and show each case honestly (never a crash, never a made-up 0).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.alerts import AlertsStrip
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.dashboard.widgets.palette import Palette
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.dashboard.widgets.tiles import NodeTiles, render_tile
from tests.support import builders as b

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tile_text(app: Any, host: str) -> str:
    tiles = app.screen.query_one(NodeTiles)
    for t in tiles.tiles:
        if t.host == host:
            return "\n".join("".join(seg.text for seg in line) for line in t.lines)
    raise AssertionError(f"no tile for {host}")


def alerts_text(app: Any) -> str:
    return str(app.screen.query_one(AlertsStrip).render())


async def test_garbage_newer_schema_and_a_node_that_stops_reporting(redis_server: Any) -> None:
    client = redis_server.client()
    b.publish(client, [b.tower("gpu-01"), b.tower("gpu-02")])
    b.write_raw(client, "junk-01", b"\xc1\xff\x00 not msgpack at all")
    b.write_raw(client, "future-01", b.newer_schema_payload("future-01"))
    settings = Settings(frozen_time=b.NOW + 1, refresh_s=0.1)
    app = make_app(settings, redis_server.client)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        states = {n.host: n.state for n in app.view.state.nodes}
        assert states == {"future-01": "up", "gpu-01": "up", "gpu-02": "up", "junk-01": "bad"}
        assert "BAD DATA" in tile_text(app, "junk-01")
        assert "bad data from node junk-01" in alerts_text(app)
        assert "up v+" in tile_text(app, "future-01")  # newer schema: shown, with a note

        # gpu-02 stops reporting: its key expires (deleted here), the index keeps it.
        b.silence(client, "gpu-02")
        settings.frozen_time = b.NOW + 30
        await b.wait_until(pilot, lambda: app.view.state.node("gpu-02").state == "stale", "stale")
        assert "stale 30s" in tile_text(app, "gpu-02")
        assert "1 stale" in app.screen.query_one(ClusterHeader).text
        settings.frozen_time = b.NOW + 300
        await b.wait_until(pilot, lambda: app.view.state.node("gpu-02").state == "down", "down")
        assert "DOWN" in tile_text(app, "gpu-02") and "last seen 5m ago" in tile_text(app, "gpu-02")
        assert "down, last seen 5m ago" in alerts_text(app)
        # future-01 and gpu-01 still have keys (no TTL on raw writes; publisher TTL is 3 s of Redis
        # time, so re-publish gpu-01 to keep it up while the frozen clock jumps).
        b.publish(client, [b.tower("gpu-01", ts=b.NOW + 300)])
        await b.wait_fresh(pilot, 2)
        assert app.view.state.node("gpu-01").state == "up"

        # Drill into the newer-schema node: the note is there, values decoded as far as v1 goes.
        app.open_node("future-01")
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen), "node screen")
        await b.wait_fresh(pilot)
        info = str(app.screen.query_one("#info").render())
        assert "schema v2" in info and "AMD Ryzen 9 5950X" in info
        await pilot.press("escape")
        app.open_node("junk-01")
        await b.wait_fresh(pilot)
        info = str(app.screen.query_one("#info").render())
        assert "bad data from node junk-01" in info and "BAD" in info


async def test_markup_and_escape_codes_in_node_text_show_literally(redis_server: Any) -> None:
    evil_name = "[bold red]x[/] [$ct-crit]boom [@click=app.quit]q"
    evil_cmd = "\x1b[31mred\x1b[0m \x07bell [link=http://evil]l[/link]"
    procs = [b.gpu_proc(31337, evil_name, "mallory", 1.0, cmdline=evil_cmd)]
    host_procs = [b.schema.Proc(pid=31337, user="mallory", name=evil_name, cmdline=evil_cmd, cpu_pct=99.0)]
    b.publish(redis_server.client(), [b.node("gpu-01", gpus=[b.gpu(0, 90, procs=procs)], procs=host_procs)])
    app = make_app(Settings(frozen_time=b.NOW + 1, refresh_s=0.2), redis_server.client)
    async with app.run_test(size=(200, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("3")
        table = app.screen.query_one("#procs-table", LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == 1, "process row")
        shown = table.get_row_at(0)[5].plain
        assert shown == "\\x1b[31mred\\x1b[0m \\x07bell [link=http://evil]l[/link]"
        assert not any(c in shown for c in "\x1b\x07")
        app.open_node("gpu-01")
        await b.wait_fresh(pilot)
        procs_text = str(app.screen.query_one("#procs").render())
        assert "\\x1b[31mred" in procs_text and "[link=http://evil]l[/link]" in procs_text
        # The whole screen, as drawn: the literal text is on it, and the app is still running.
        await pilot.pause()
        svg = app.export_screenshot()
        assert "link=http://evil" in svg.replace("&#160;", " ")
        assert app.is_running


def test_markup_in_a_host_name_stays_literal_in_its_tile() -> None:
    from clustertop.read.reader import NodeView

    snap = b.tower("[b]evil[/b]")
    tile = render_tile(NodeView(host="[b]evil[/b]", state="up", snap=snap, age_s=0.0), Palette({}))
    assert "".join(s.text for s in tile[0]).startswith("[b]evil[/b]")


def test_tall_tile_says_na_for_bond_slaves_it_cannot_read() -> None:
    """A bond listed with its slaves unreadable is N/A on the tile, never a healthy-looking 0/0."""
    from clustertop.read.reader import NodeView
    from clustertop.wire import schema

    snap = b.tower("gpu-01")
    snap.bonds = [schema.Bond(name="bond0", slaves=None)]
    lines = render_tile(NodeView(host="gpu-01", state="up", snap=snap, age_s=0.0), Palette({}), roomy=True)
    net = "".join(s.text for s in lines[5])
    assert net.startswith("bond N/A") and "0/0" not in net
    snap.bonds = [schema.Bond(name="bond0", slaves=[schema.BondSlave(name="eth0", ok=True),
                                                    schema.BondSlave(name="eth1", ok=False)], degraded=True)]
    lines = render_tile(NodeView(host="gpu-01", state="up", snap=snap, age_s=0.0), Palette({}), roomy=True)
    assert "".join(s.text for s in lines[5]).startswith("bond 1/2")


def start_redis_on(port: int) -> tuple[subprocess.Popen[bytes], str]:
    d = tempfile.mkdtemp(prefix="ct-redis-")
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, d
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not come back on port {port}")


async def test_store_stopped_mid_run_then_back(redis_server: Any) -> None:
    b.publish(redis_server.client(), b.demo_cluster())
    app = make_app(Settings(frozen_time=b.NOW + 1, refresh_s=0.1), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        header = app.screen.query_one(ClusterHeader)
        assert "8/8 nodes up" in header.text
        port = redis_server.port
        redis_server.stop()
        await b.wait_until(pilot, lambda: app.view.unreachable, "store unreachable")
        await b.wait_fresh(pilot)
        assert "store unreachable since" in header.text
        assert "8/8 nodes up" in header.text  # the last data stays on screen ...
        assert app.screen.has_class("-unreachable")  # ... marked stale
        assert len(app.screen.query_one(NodeTiles).tiles) == 8
        proc, d = start_redis_on(port)
        try:
            b.publish(redis_server.client(), b.demo_cluster()[:3])
            await b.wait_until(pilot, lambda: not app.view.unreachable, "recovery")
            await b.wait_fresh(pilot)
            assert "store unreachable" not in header.text
            assert "3/3 nodes up" in header.text
            assert not app.screen.has_class("-unreachable")
        finally:
            proc.terminate()
            proc.wait(5)
            shutil.rmtree(d, ignore_errors=True)


def test_a_read_landing_on_a_screen_without_its_widgets_draws_nothing_and_waits() -> None:
    """A read can be handled while a screen is still composing or already torn down (the app
    exiting): it must not raise (it took the whole app down at exit), and must not count as drawn."""
    from clustertop.dashboard.history import TotalsHistory
    from clustertop.dashboard.screens.overview import OverviewScreen
    from clustertop.dashboard.view import View

    screen = OverviewScreen()  # never mounted: no header, no tiles
    view = View(history=TotalsHistory(1.0), source_label="test")
    view.version = 5
    screen.show(view)
    assert screen._drawn != 5  # drawn for real on resume or the next read
