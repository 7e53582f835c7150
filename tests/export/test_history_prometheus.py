"""History past an hour from Prometheus (``[history] prometheus = URL``): a real Prometheus scraping `clustertop
exporter` over a node published in real time by the agent's own publisher, whose tier writer keeps its 1-minute
points in Redis; the node screen's 24 h read through Prometheus (dashboard/promhistory.py) gives the same
figures as the Redis tier for the same minutes, within sampling tolerance (Prometheus samples the exporter's
page every second, the tier folds the agent's own samples).

Heavy: Prometheus, and real minutes: it waits for one whole wall-clock minute to be folded (~1.5-2 min).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.agents.publisher import Publisher, hist_point
from clustertop.dashboard.promhistory import PromHistory
from clustertop.dashboard.ranges import RANGES
from clustertop.dashboard.source import Source
from clustertop.dashboard.trendrange import cluster_range
from tests.conftest import RedisServer
from tests.support import builders as b
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.heavy
HOST = "gpu-77"


def figures(t: float) -> tuple[float, int, float]:
    """CPU %, GPU 0 util % and rx bytes/s at time t: moving, so a mean over the wrong minute would differ."""
    return 50 + 40 * math.sin(2 * math.pi * t / 150), int(50 + 45 * math.cos(2 * math.pi * t / 150)), 2e6 + 1e6 * math.sin(t / 40)


def publisher_thread(client: Any, stop: threading.Event) -> None:
    pub = Publisher(client, HOST, 1.0, hist_every_s=1.0)
    while not stop.is_set():
        now = time.time()
        cpu, gu, rx = figures(now)
        snap = b.node(HOST, ts=now, cpu=cpu, rx=rx, tx=rx / 2, gpus=[b.gpu(0, gu), b.gpu(1, 100 - gu)])
        pub.publish(snap, hist_point(snap))
        stop.wait(1.0 - time.time() % 1.0)


@pytest.fixture
def live(redis_server: RedisServer) -> Iterator[tuple[Any, Prometheus]]:
    client = redis_server.client()
    stop = threading.Event()
    t = threading.Thread(target=publisher_thread, args=(redis_server.client(), stop), daemon=True)
    t.start()
    exporter = ExporterProcess("--redis", redis_server.url)
    prom = Prometheus({"clustertop": exporter.address})
    try:
        prom.wait_for(lambda: prom.value(f'clustertop_node_up{{node="{HOST}"}}') == 1, "the first scrape")
        yield client, prom
    finally:
        stop.set()
        t.join(5)
        prom.stop()
        exporter.stop()


def test_prometheus_and_the_redis_tier_agree_on_the_same_minutes(live: tuple[Any, Prometheus]) -> None:
    client, prom = live
    first_full = math.ceil(time.time() / 60) * 60  # Prometheus scrapes from here on: the first whole minute
    # Its bucket is folded when the first sample of the next minute arrives; Prometheus has it by then.
    while time.time() < first_full + 60 + 3:
        time.sleep(0.5)
    now = time.time()
    source = Source(lambda: client)
    redis_read = source.history_range(HOST, RANGES[1], now)
    prom_read = source.history_range(HOST, RANGES[1], now, PromHistory(prom.url, 10.0))
    assert redis_read.origin == "Redis, 1-minute points" and redis_read.note is None
    assert prom_read.origin == "Prometheus, 1-minute points" and prom_read.note is None, prom_read.note
    tier = {p.ts: p for p in redis_read.points}
    from_prom = {p.ts: p for p in prom_read.points}
    minute = first_full + 30  # both place a minute's point at its middle
    assert minute in tier and minute in from_prom, (sorted(tier), sorted(from_prom))
    t, p = tier[minute], from_prom[minute]
    assert t.cpu is not None and p.cpu is not None and abs(t.cpu - p.cpu) <= 3, (t.cpu, p.cpu)
    assert t.gu is not None and p.gu is not None and len(t.gu) == len(p.gu) == 2
    assert all(a is not None and c is not None and abs(a - c) <= 3 for a, c in zip(t.gu, p.gu, strict=True)), (t.gu, p.gu)
    assert t.rx is not None and p.rx is not None and abs(t.rx - p.rx) <= 0.05 * p.rx, (t.rx, p.rx)
    # And it is not a constant: the figures moved during the minute (the comparison could fail).
    assert abs(figures(first_full)[0] - figures(first_full + 59)[0]) > 5
    # The wall's 24 h (dashboard/trendrange.py): Prometheus's cluster totals and the Redis fold agree too.
    walls = [cluster_range(source, [HOST], RANGES[1], now, prometheus) for prometheus in (None, PromHistory(prom.url))]
    assert [w.origin for w in walls] == ["Redis, 1-minute points", "Prometheus, 1-minute points"]
    (ru, rp), (pu, pp) = ({ts: (u, p) for ts, u, p in w.points}[minute] for w in walls)
    assert None not in (ru, rp, pu, pp) and abs(ru - pu) <= 3 and abs(rp - pp) <= 0.05 * pp, (ru, pu, rp, pp)  # type: ignore[operator]

