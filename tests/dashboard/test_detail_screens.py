"""The screens that draw every node's detail (storage, network, people) read it without pinning any node
(``Level.DETAIL``, issue 18): against a real redis-server with agents (the real Publisher) on the full-snapshot
cadence, they draw each node's last full snapshot with this tick's figures over it, say how old the rest is
(the header, and beside the columns only a full snapshot carries), and write no want key.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.css.query import NoMatches
from textual.widgets import Static

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.network import NetworkScreen
from clustertop.dashboard.screens.people import PeopleScreen
from clustertop.dashboard.screens.storage import StorageScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.read.plan import Level
from tests.conftest import RedisServer
from tests.support import builders as b

pytestmark = pytest.mark.anyio

HOSTS = ("gpu01", "gpu02")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def header(app: Any) -> str:
    try:
        return str(app.screen.query_one(ClusterHeader).text)
    except NoMatches:  # still composing
        return ""


async def test_detail_screens_say_how_old_the_detail_is_and_want_nothing(redis_server: RedisServer) -> None:
    client = redis_server.client()
    # Agents at a 10 s interval writing their full snapshot every 60 s: three ticks, 20 s from the full
    # snapshot to the last brief and digest (long TTLs: nothing expires mid-test).
    pubs = {h: Publisher(client, h, 10.0, full_every_s=60.0, tiers=False) for h in HOSTS}
    for k in range(3):
        for h, pub in pubs.items():
            pub.publish(b.tower(h, utils=(11 + 30 * k, 5), ts=b.NOW - 20 + 10 * k, seq=k + 1))
    assert all(p.fulls == 1 for p in pubs.values())
    assert StorageScreen.plan_level is NetworkScreen.plan_level is PeopleScreen.plan_level is Level.DETAIL
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=0.2, source_label="test"), redis_server.client)
    async with app.run_test(size=(120, 40)) as pilot:  # not the big overview (it wants its busiest GPUs' nodes)
        await b.wait_reads(pilot)
        note = "detail of 2 nodes up to 20s old (their last full snapshots, not asked)"
        app.switch_mode("storage")
        await b.wait_until(pilot, lambda: isinstance(app.screen, StorageScreen) and note in header(app),
                           "the storage screen, with its detail's age")
        assert "fresh asked" not in header(app)
        disks = app.screen.section_text("disks")
        assert "read/write current; IOPS, util, await, queue up to 20s old" in disks.splitlines()[0]
        reads = app.finished_reads
        await b.wait_until(pilot, lambda: app.finished_reads >= reads + 3, "three more reads")
        app.switch_mode("network")
        await b.wait_until(pilot, lambda: isinstance(app.screen, NetworkScreen) and note in header(app),
                           "the network screen, with its detail's age")
        title = str(app.screen.query_one("#nics-title", Static).visual.plain)
        assert "state, speed, errors, drops, virtual NICs' rates up to 20s old" in title
        app.switch_mode("people")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PeopleScreen) and note in header(app),
                           "the people screen, with its detail's age")
        await pilot.press(*"alice", "enter")
        await b.wait_until(pilot, lambda: "up to 20s old" in str(app.screen.query_one("#who-summary").render()),
                           "the people screen's summary, with the process lists' age")
        reads = app.finished_reads
        await b.wait_until(pilot, lambda: app.finished_reads >= reads + 3, "three more reads")
    # No screen of these asked any agent for its full snapshot: the agents kept their cadence.
    assert client.keys(wire.want_key("*")) == []
    for k, ts in ((3, b.NOW + 1), (4, b.NOW + 2)):
        for h, pub in pubs.items():
            pub.publish(b.tower(h, utils=(50 + k, 5), ts=ts, seq=k + 1))
    assert [pubs[h].fulls for h in HOSTS] == [1, 1]
