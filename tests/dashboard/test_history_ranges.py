"""The node screen's history ranges (h: 1 h / 24 h / 7 d) against a real redis-server holding tiers the agent's
own writer (agents/tiers.py) made: the right tier per range, the range on the time axis, gaps left as gaps,
garbage in one block spoiling nothing else, and a Prometheus that does not answer shown as such (the Redis
tiers drawn instead, labelled).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from textual.widgets import Static

from clustertop import wire
from clustertop.agents.tiers import TierWriter
from clustertop.dashboard.app import make_app
from clustertop.dashboard.promhistory import PromHistory
from clustertop.dashboard.ranges import RANGES, tier_points
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.source import Source
from clustertop.dashboard.widgets.plots import _runs, render
from clustertop.wire import schema
from clustertop.wire.tiers import MINUTE, TEN_MINUTES
from tests.conftest import RedisServer, free_port
from tests.support import builders as b

pytestmark = pytest.mark.anyio
NOW = b.NOW
HOST = "gpu-01"
GAP = (NOW - 6 * 3600, NOW - 5 * 3600)  # an hour with no data: the node was off


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fill_tiers(client: Any, hours: float = 30.0, every: float = 30.0, host: str = HOST,
               gu: list[int | None] | None = None, gp: list[int | None] | None = None) -> None:
    """``hours`` of history of ``host`` through the agent's tier writer, two samples a minute; CPU at 20 %
    before the gap and 80 % after it, GPUs at ``gu`` (50 and 10 %) drawing ``gp`` mW."""
    w = TierWriter(host)
    ts = NOW - hours * 3600
    while ts <= NOW:
        if not GAP[0] <= ts < GAP[1]:
            w.add(schema.HistPoint(ts=ts, cpu=20.0 if ts < GAP[0] else 80.0, gu=gu or [50, 10], gp=gp,
                                   rx=1 << 20, tx=0.0))
            if w.has_work():
                w.flush(client)
        ts += every


def test_each_range_reads_its_tier_and_gaps_stay_gaps(redis_server: RedisServer) -> None:
    c = redis_server.client()
    fill_tiers(c)
    day = tier_points(c, HOST, MINUTE, NOW, 86400)
    assert 1300 < len(day) <= 1440 and all(NOW - 86400 <= p.ts <= NOW for p in day)
    assert not [p for p in day if GAP[0] + 60 <= p.ts < GAP[1] - 60]  # no zeros where there was nothing
    assert {p.cpu for p in day} == {20.0, 80.0} and {tuple(p.gu or ()) for p in day} == {(50, 10)}
    week = tier_points(c, HOST, TEN_MINUTES, NOW, 7 * 86400)
    assert 160 < len(week) <= 181 and not [p for p in week if GAP[0] + 600 <= p.ts < GAP[1] - 600]
    # Garbage in one block (a broken or hostile writer): that hour is a gap, the rest is there.
    hour = MINUTE.block_of(NOW - 3 * 3600)
    c.set(wire.tier_block_key(HOST, "1m", hour), b"\xc1garbage")
    c.set(wire.tier_block_key(HOST, "1m", hour + 3600), wire.encode(schema.TierBlock(start=0, step=60, rows=[[1, 2]])))
    after = tier_points(c, HOST, MINUTE, NOW, 86400)
    assert len(after) == len(day) - 120 and not [p for p in after if hour <= p.ts < hour + 7200]


def test_a_gap_is_not_drawn_across() -> None:
    pts = [(0.0, 1.0), (1.0, 1.0), (10.0, 2.0), (11.0, 2.0)]
    assert _runs(pts, 3.0) == [pts[:2], pts[2:]] and _runs(pts, None) == [pts]
    day = render("cpu", {"cpu": [(NOW - 86400 + 60 * i, 50.0) for i in range(1440)]}, NOW, 86400, 60, 10)
    assert "24 h ago" in day and "now" in day  # the time axis says the range
    week = render("cpu", {"cpu": [(NOW - 3600, 50.0)]}, NOW, 7 * 86400, 60, 10)
    assert "7 d ago" in week


def app_for(factory: Any, **kw: Any) -> Any:
    return make_app(Settings(frozen_time=NOW + 0.5, refresh_s=0.2, source_label="test", **kw), factory)


def plots(app: Any) -> str:
    return str(app.screen.query_one("#plots", Static).visual.plain)


async def test_h_cycles_the_node_screen_through_its_ranges(redis_server: RedisServer) -> None:
    c = redis_server.client()
    b.publish(c, b.demo_cluster(), hist=12)
    fill_tiers(c)
    app = app_for(redis_server.client)
    async with app.run_test(size=(200, 60)) as pilot:
        await b.wait_reads(pilot)
        app.open_node(HOST)
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen) and len(app.screen.points) == 13,
                           "the hour")
        assert "min ago" in plots(app) and "history 24 h" not in plots(app)
        await pilot.press("h")
        await b.wait_until(pilot, lambda: "history 24 h: Redis, 1-minute points" in plots(app), "24 h")
        assert app.screen.range is RANGES[1] and len(app.screen.points) > 1300
        assert "24 h ago" in plots(app) and "CPU %" in plots(app) and "GPU util %" in plots(app)
        await pilot.press("h")
        await b.wait_until(pilot, lambda: "history 7 d: Redis, 10-minute points" in plots(app), "7 d")
        assert "7 d ago" in plots(app)
        await pilot.press("h")
        await b.wait_until(pilot, lambda: app.screen.range is RANGES[0] and len(app.screen.points) == 13, "1 h again")
        assert "history 24 h" not in plots(app) and "history 7 d" not in plots(app)


async def test_prometheus_unreachable_shows_the_redis_tiers_and_says_so(redis_server: RedisServer) -> None:
    c = redis_server.client()
    b.publish(c, b.demo_cluster(), hist=12)
    fill_tiers(c, hours=3)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = app_for(redis_server.client, history_prometheus=dead, history_timeout_s=2.0)
    async with app.run_test(size=(120, 60)) as pilot:
        await b.wait_reads(pilot)
        app.open_node(HOST)
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen) and len(app.screen.points) == 13, "1 h")
        await pilot.press("h")
        await b.wait_until(pilot, lambda: "Prometheus unreachable" in plots(app), "the fallback")
        text = plots(app)
        assert "Redis shown" in text and "history 24 h: Redis, 1-minute points" in text
        assert 150 < len(app.screen.points) <= 180  # the three hours the tiers hold


class FakePrometheusAnswers:
    """A real HTTP server on loopback that answers /api/v1/query_range with what it is told (a
    Prometheus gone wrong, or a hostile one: the dashboard must neither crash nor show raw values)."""

    def __init__(self, body: bytes) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_prometheus_answering_garbage_falls_back_and_hostile_values_are_dropped(redis_server: RedisServer) -> None:
    c = redis_server.client()
    fill_tiers(c, hours=2)
    source = Source(lambda: c)
    html = FakePrometheusAnswers(b"<html>not the API</html>")
    try:
        got = source.history_range(HOST, RANGES[1], NOW, PromHistory(html.url, 2.0))
    finally:
        html.stop()
    assert got.origin == "Redis, 1-minute points" and got.note and "Prometheus unreachable" in got.note
    assert 100 < len(got.points) <= 120
    step = [NOW - NOW % 60 - 60, NOW - NOW % 60]
    hostile = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"node": HOST, "gpu": "0"}, "values": [[step[0], "NaN"], [step[1], "42"]]},
        {"metric": {"node": HOST, "gpu": "99999999999"}, "values": [[step[1], "50"]]},  # no such card index
        {"metric": {"node": HOST, "gpu": "\u202e1"}, "values": [[step[1], "50"]]},
        {"metric": {}, "values": [[step[1], "+Inf"], ["soon", "1"], [step[1]], "x"]},
        "not a series"]}}
    odd = FakePrometheusAnswers(json.dumps(hostile).encode())
    try:
        pts = PromHistory(odd.url, 2.0).node(HOST, NOW - 3600, NOW, 60)
    finally:
        odd.stop()
    assert [p.ts for p in pts] == [step[1] - 30]  # NaN, +Inf and broken pairs are no points at all
    assert pts[0].gu == [42] and pts[0].cpu == 42.0  # the stub answers every figure's query alike


async def test_the_wall_trends_turn_to_24_hours_of_the_cluster(redis_server: RedisServer) -> None:
    from clustertop.dashboard.screens.wall import PAGES, WallScreen
    from clustertop.dashboard.widgets.plots import PlotPanel

    c = redis_server.client()
    b.publish(c, b.demo_cluster(), hist=12)
    fill_tiers(c, hours=26, gp=[100_000, 50_000])
    fill_tiers(c, hours=26, host="gpu-02", gu=[90, 90], gp=[200_000, 200_000])
    app = make_app(Settings(frozen_time=NOW + 0.5, refresh_s=3600, source_label="test", wall=True, wall_page_s=0),
                   redis_server.client)
    async with app.run_test(size=(202, 58)) as pilot:
        await b.wait_reads(pilot)
        wall = app.screen
        assert isinstance(wall, WallScreen)
        await pilot.press("h")  # the wall takes no keys: the rotation moves the trends on
        wall.next_page()
        assert wall.trend_range is RANGES[0]  # the first time round: the hour
        for _ in PAGES:
            wall.next_page()
        assert wall.page_name == "trends" and wall.trend_range is RANGES[1]  # the next time: 24 h
        await b.wait_until(pilot, lambda: "Redis, 1-minute points" in str(wall.query_one("#plot-util", PlotPanel).render()),
                           "the 24 h trend")
        util = str(wall.query_one("#plot-util", PlotPanel).render())
        assert "24 h ago" in util and "cluster mean, 24 h" in util
        assert "24 h ago" in str(wall.query_one("#plot-power", PlotPanel).render())
        assert "24 h" not in str(wall.query_one("#plot-ceph", PlotPanel).render())  # Ceph's stays the hour
        # (The last minutes also hold the demo nodes' own points: b.publish writes their hour through the
        # real publisher, tiers and all.)
        both = [(u, p) for ts, u, p in wall.trend_points if not GAP[0] - 60 <= ts < GAP[1] + 60 and ts < NOW - 300]
        assert len(both) > 1300 and set(both) == {(60.0, 550_000.0)}  # mean of 4 cards; sum of 2 nodes
        assert not [ts for ts, _, _ in wall.trend_points if GAP[0] + 60 <= ts < GAP[1] - 60]
