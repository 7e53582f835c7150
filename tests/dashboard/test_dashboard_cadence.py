"""A node's screen with agents on the full-snapshot cadence (issue 18, the byte budget), against a real
redis-server: the screen draws the node's current figures (its brief) over its last full snapshot's detail with that
detail's age ("detail 20s old"), asks for a fresh one (its want key), and draws the fresh one, unmarked, once the
node's agent (the real Publisher) answers."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Static

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader
from tests.conftest import RedisServer
from tests.support import builders as b

pytestmark = pytest.mark.anyio

HOSTS = ("gpu01", "gpu02")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def info(app: Any) -> str:
    return str(app.screen.query_one("#info", Static).visual.plain)


async def test_node_screen_shows_detail_age_asks_and_draws_the_fresh_one(redis_server: RedisServer) -> None:
    client = redis_server.client()
    # Agents at a 10 s interval writing their full snapshot every 60 s (long TTLs: a slow machine never sees a
    # key expire mid-test); three ticks, 20 s apart from the full snapshot to the last digest.
    pubs = {h: Publisher(client, h, 10.0, full_every_s=60.0, tiers=False) for h in HOSTS}
    for k in range(3):
        for h, pub in pubs.items():
            pub.publish(b.tower(h, utils=(11 + 30 * k, 5), ts=b.NOW - 20 + 10 * k, seq=k + 1))
    assert all(p.fulls == 1 for p in pubs.values())
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=0.2, source_label="test"), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:  # not the big overview (it wants its busiest GPUs' nodes)
        await b.wait_reads(pilot)
        await pilot.press("enter")  # the first tile: gpu01
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen) and "detail 20s old" in info(app),
                           "the node's last full snapshot, with its age")
        assert app.screen.host == "gpu01"
        assert "detail of 1 node up to 20s old" in app.screen.query_one(ClusterHeader).text
        gpus = str(app.screen.query_one("#gpus", Static).visual.plain)
        # This tick's figures (its brief's) over the older detail (the GPU's clocks, driver ...): 71 %, not 11 %.
        assert "71 %" in gpus and "11 %" not in gpus and "550.54.14" in gpus
        await b.wait_until(pilot, lambda: bool(client.exists(wire.want_key("gpu01"))), "the want key")
        assert not client.exists(wire.want_key("gpu02"))
        # The agent's next tick sees the want; the one after writes in full.
        for k, ts in ((3, b.NOW + 0.1), (4, b.NOW + 0.2)):
            for h, pub in pubs.items():
                pub.publish(b.tower(h, utils=(50 + k, 5), ts=ts, seq=k + 1))
        assert [pubs[h].fulls for h in HOSTS] == [2, 1]
        await b.wait_until(pilot, lambda: "detail" not in info(app) and "54 %" in str(
            app.screen.query_one("#gpus", Static).visual.plain), "the fresh full snapshot, unmarked")
        assert "detail of" not in app.screen.query_one(ClusterHeader).text


async def test_a_dashboard_that_may_not_ask_says_so(redis_server: RedisServer) -> None:
    """A Redis user without the right to write want keys (an ACL from before them): the node's screen still
    draws, with the detail's age, and says the fresh snapshot could not be requested (never "requested")."""
    import redis

    admin = redis_server.client()
    pub = Publisher(admin, "gpu01", 10.0, full_every_s=60.0, tiers=False)
    for k in range(3):
        pub.publish(b.tower("gpu01", ts=b.NOW - 20 + 10 * k, seq=k + 1))
    admin.execute_command("ACL", "SETUSER", "oldviewer", "on", ">pw", "~*", "+@read", "+@connection")

    def factory() -> Any:
        return redis.Redis(host="127.0.0.1", port=redis_server.port, username="oldviewer", password="pw")

    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=0.2, source_label="test"), factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen) and "could not be requested" in info(app),
                           "the refusal, said")
        assert "detail 20s old" in info(app) and "NoPermission" in info(app)
        assert "fresh could not be asked" in app.screen.query_one(ClusterHeader).text
        assert not admin.exists(wire.want_key("gpu01"))
