"""The agent evaluates alerts headless: two real agents with ``[alerts]`` against a real redis-server, on
the agent's own RESP client. One holds the "alerts" lease and writes the signed state; when it stops, the
other takes over and carries on from that state (no second "fired"), with no dashboard anywhere. A
refused Alertmanager URL shows as a delivery failure in the state, and the agent's own tick goes on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop import wire
from clustertop.agents.agent import Agent
from clustertop.agents.config import AgentConfig, CollectorConfig
from clustertop.alerting import store
from clustertop.alerting.config import AlertsSection
from clustertop.collectors import base
from clustertop.control.trust import KnownNodes
from clustertop.wire.alerts import ALERTS_KEY, ALERTS_LEASE
from tests.conftest import RedisServer, free_port
from tests.support import builders as b
from tests.support.agent_thread import Running
from tests.support.waiting import until as wait


def agent(node: str, url: str, am: str, tmp: Any) -> Agent:
    # no node collectors: this test is about the alerts thread, not about what this machine has
    cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
    return Agent(AgentConfig(node=node, redis_url=url, interval_s=0.3, collectors=cols, state_dir=str(tmp / node),
                             alerts=AlertsSection(interval=0.2, alertmanager=[am], timeout=0.5)))


@pytest.fixture
def troubled(redis_server: RedisServer) -> Iterator[Any]:
    n2 = b.tower("n2")
    n2.gpus[0] = b.gpu(0, None, lost=True)  # type: ignore[index]
    c = redis_server.client()
    b.publish(c, [b.tower("n1"), n2])
    yield c


def test_one_agent_evaluates_and_the_other_carries_on(redis_server: RedisServer, troubled: Any, tmp_path: Any) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    a1, a2 = agent("ag1", redis_server.url, refused, tmp_path), agent("ag2", redis_server.url, refused, tmp_path)
    known = KnownNodes(keys={"ag1": a1.node_key.public(), "ag2": a2.node_key.public()})  # type: ignore[union-attr]
    r1 = Running(a1)
    try:
        got = wait(lambda: (r := store.read(troubled, known, time.time())).state is not None
                   and any(x.rule == "GpuLost" and x.state == "firing" for x in r.state.alerts) and r, "GpuLost firing")
        assert got.verified and got.state.host == "ag1" and "evaluated by ag1 (verified)" in got.text
        wait(lambda: (s := store.read(troubled, known, time.time()).state) is not None and s.delivery[0].failures >= 1,
             "the refused Alertmanager in the state")
        d = store.read(troubled, known, time.time()).state.delivery[0]  # type: ignore[union-attr]
        assert d.ok is False and d.url == refused and "refused" in (d.error or "").lower()
        assert a1.ticks >= 1 and troubled.get(wire.node_key("ag1")) is not None  # its own tick goes on
        r2 = Running(a2)  # standby: the lease is held
        time.sleep(1.0)
        assert store.read(troubled, known, time.time()).state.host == "ag1"  # type: ignore[union-attr]
        r1.close()  # hand-over: released at once, ag2 takes it
        wait(lambda: (s := store.read(troubled, known, time.time()).state) is not None and s.host == "ag2",
             "ag2 evaluating")
        state = store.read(troubled, known, time.time()).state
        assert state is not None
        assert [e.kind for e in state.events] == ["fired"]  # carried on: no second notice for the same GPU
        r2.close()
    finally:
        r1.close()
    assert troubled.get(wire.lease_key(ALERTS_LEASE)) is None
    assert troubled.get(ALERTS_KEY) is not None  # the state stays for the next evaluator and for readers
