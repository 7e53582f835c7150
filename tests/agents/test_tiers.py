"""The history tiers: the pure fold (wire/tiers.py), and the agent's writer (agents/tiers.py) through the real
publisher against a real redis-server: buckets on wall-clock minutes, gaps left as gaps, and an agent
restart (mid-minute, or across minutes it was down for) neither losing nor duplicating a bucket.
"""

from __future__ import annotations

import math
from typing import Any

from clustertop import wire
from clustertop.agents.publisher import Publisher, hist_point
from clustertop.wire import schema
from clustertop.wire.tiers import (
    MINUTE,
    TEN_MINUTES,
    Bucket,
    TierPoint,
    as_hist,
    block_starts,
    bucket_start,
    figures_of,
    points,
    put,
    unq,
)
from tests.conftest import RedisServer
from tests.support import builders as b

T0 = 1_800_000_000  # a 10-minute boundary (and so a minute's)
MIB = 1 << 20


def hp(ts: float, cpu: float | None = 50.0, gu: list[int | None] | None = None, **kw: Any) -> schema.HistPoint:
    return schema.HistPoint(ts=ts, cpu=cpu, gu=gu, **kw)


def test_a_bucket_keeps_mean_and_max_of_what_it_saw() -> None:
    bk = Bucket(T0)
    bk.add(figures_of(hp(T0, 20.0, [10, 90], mem=4 * MIB, gp=[100_000, 200_000], gt=[60, 71], rx=2048.0)))
    bk.add(figures_of(hp(T0 + 5, 60.0, [30, None], mem=6 * MIB, gp=[300_000, 200_000], gt=[65, 70])))
    p = bk.point()
    assert p.n == 2
    assert p.a == {"cpu": 40, "gu": [20, 90], "mem": 5, "gp": 400, "gt": 70, "rx": 2}  # gt: hottest card, 71 then 70
    assert p.x == {"cpu": 60, "gp": 500, "gt": 71, "rx": 2}  # no maximum kept of mem, nor per card


def test_unknown_and_hostile_figures_are_left_out_not_zero() -> None:
    bk = Bucket(T0)
    bk.add(figures_of(hp(T0, cpu=None, gu=[None], rx=math.nan, tx=float(2**64), mem=None)))
    p = bk.point()
    assert p.n == 1 and p.a is None and p.x is None  # a sample of nothing: no figure at all
    blk = schema.TierBlock(start=T0, step=60)
    put(blk, T0, p)
    assert points(wire.decode(wire.encode(blk), schema.TierBlock)) == [(T0, p)]  # counted, nothing known
    assert as_hist(T0, p, MINUTE).cpu is None


def test_ten_minute_buckets_weigh_minutes_by_their_samples() -> None:
    m1, m2 = Bucket(T0), Bucket(T0 + 60)
    for _ in range(12):
        m1.add(figures_of(hp(T0, 10.0)))
    m2.add(figures_of(hp(T0 + 60, 70.0)))  # one sample only: a minute mostly missed
    ten = Bucket(T0)
    for p in (m1.point(), m2.point()):
        ten.add(unq(p), unq(p, peak=True), p.n)
    t = ten.point()
    assert t.n == 13 and t.a == {"cpu": round((12 * 10 + 70) / 13)} and t.x == {"cpu": 70}


def test_buckets_are_wall_clock_aligned_and_a_slot_is_written_once() -> None:
    assert bucket_start(T0 + 59.9, MINUTE) == T0 and bucket_start(T0 + 60, MINUTE) == T0 + 60
    assert bucket_start(T0 + 599, TEN_MINUTES) == T0
    assert block_starts(MINUTE, T0 - 1, T0 + 3600) == [T0 - 3600, T0, T0 + 3600]
    blk = schema.TierBlock(start=T0, step=60)
    assert put(blk, T0 + 120, TierPoint(n=3, a={"cpu": 7}, x={"cpu": 9}))
    assert not put(blk, T0 + 120, TierPoint(n=12, a={"cpu": 1}))  # taken: never rewritten
    assert put(blk, T0 + 180, TierPoint(n=2, a={"gu": [1, None], "cpu": 5}))  # a figure appears: a new column
    back = wire.decode(wire.encode(blk), schema.TierBlock)
    assert back.rows[:2] == [None, None]  # minutes 0 and 1: gaps
    assert points(back) == [(T0 + 120, TierPoint(n=3, a={"cpu": 7}, x={"cpu": 9})),
                            (T0 + 180, TierPoint(n=2, a={"cpu": 5, "gu": [1, None]}))]


def test_hostile_rows_are_skipped_like_gaps() -> None:
    blk = schema.TierBlock(start=T0, step=60, cols=["cpu", "zz-unknown"], rows=[[0, 5], [], None, [4, 9, 1]])
    assert points(blk) == [(T0 + 180, TierPoint(n=4, a={"cpu": 9, "zz-unknown": 1}))]
    assert as_hist(T0 + 180, points(blk)[0][1], MINUTE).cpu == 9.0  # the unknown figure is ignored
    assert points(schema.TierBlock(start=T0, step=0, cols=["cpu"], rows=[[1, 2]])) == []
    wide = schema.TierBlock(start=T0, step=60, cols=["gu"], rows=[[1, list(range(10_000))]])
    assert len(as_hist(T0, points(wide)[0][1], MINUTE).gu or ()) == 64  # not 10,000 plot series


def tier(client: Any, name: str, hours: int = 2) -> list[tuple[int, TierPoint]]:
    """Every filled bucket of node n1's tier ``name`` from T0 on (blocks read as the dashboard will)."""
    t = MINUTE if name == "1m" else TEN_MINUTES
    out: list[tuple[int, TierPoint]] = []
    for start in block_starts(t, T0, T0 + hours * 3600):
        data = client.get(wire.tier_block_key("n1", name, start))
        if data is not None:
            out += points(wire.decode(data, schema.TierBlock))
    return out


def run(pub: Publisher, start: float, stop: float, cpu: float = 40.0, every: float = 5.0) -> None:
    ts = start
    while ts < stop:
        snap = b.node("n1", ts=ts, cpu=cpu)
        pub.publish(snap, hist_point(snap))
        ts += every


def test_minutes_with_no_data_are_gaps(redis_server: RedisServer) -> None:
    c = redis_server.client()
    pub = Publisher(c, "n1", 5.0)
    run(pub, T0, T0 + 180)
    run(pub, T0 + 360, T0 + 425)  # nothing from minute 3 to 5: the agent (or its node) was away
    starts = [s for s, _ in tier(c, "1m")]
    assert starts == [T0, T0 + 60, T0 + 120, T0 + 360]
    assert all(p.n == 12 and p.a is not None and p.a["cpu"] == 40 for _, p in tier(c, "1m"))


def test_a_restart_mid_minute_rebuilds_the_bucket_without_duplicates(redis_server: RedisServer) -> None:
    c = redis_server.client()
    run(Publisher(c, "n1", 5.0), T0, T0 + 90, cpu=20.0)  # 12 samples of minute 0, 6 of minute 1, then gone
    run(Publisher(c, "n1", 5.0), T0 + 90, T0 + 185, cpu=80.0)  # a new process, same minute
    got = tier(c, "1m")
    assert [s for s, _ in got] == [T0, T0 + 60, T0 + 120]
    assert got[1][1].n == 12 and got[1][1].a == {**(got[1][1].a or {}), "cpu": 50}  # half at 20 %, half at 80 %


def test_minutes_that_closed_while_the_agent_was_down_are_written_late(redis_server: RedisServer) -> None:
    c = redis_server.client()
    run(Publisher(c, "n1", 5.0), T0, T0 + 25, cpu=30.0)  # minute 0, half done: the agent stops
    run(Publisher(c, "n1", 5.0), T0 + 200, T0 + 245, cpu=90.0)  # back in minute 3, on to minute 4
    got = tier(c, "1m")
    assert [s for s, _ in got] == [T0, T0 + 180]  # minute 0 from the stream's samples; 1 and 2 are gaps
    assert got[0][1].n == 5 and (got[0][1].a or {})["cpu"] == 30
    assert got[1][1].n == 8 and (got[1][1].a or {})["cpu"] == 90


def test_the_ten_minute_tier_survives_a_restart(redis_server: RedisServer) -> None:
    c = redis_server.client()
    run(Publisher(c, "n1", 5.0), T0, T0 + 300, cpu=10.0)
    run(Publisher(c, "n1", 5.0), T0 + 300, T0 + 1205, cpu=50.0)
    tens = tier(c, "10m")
    assert [s for s, _ in tens] == [T0, T0 + 600]
    assert tens[0][1].n == 120 and (tens[0][1].a or {})["cpu"] == 30
    assert (tens[0][1].x or {})["cpu"] == 50
    assert len(tier(c, "1m")) == 20


def test_a_store_outage_keeps_buckets_pending(redis_server: RedisServer) -> None:
    c = redis_server.client()
    pub = Publisher(c, "n1", 5.0)
    run(pub, T0, T0 + 65)
    assert pub.tiers is not None and not pub.tiers.has_work() and len(tier(c, "1m")) == 1

    class Down:
        def set(self, *a: Any, **kw: Any) -> None:
            raise OSError("connection refused")

    pub.tiers.add(hp(T0 + 125))  # minute 1 closes while the store is down
    pub.client = Down()
    pub._flush_tiers()
    assert pub.tiers.has_work()
    pub.client = c
    pub._flush_tiers()
    assert [s for s, _ in tier(c, "1m")] == [T0, T0 + 60] and not pub.tiers.has_work()


def test_blocks_expire_by_themselves_and_hold_an_hour(redis_server: RedisServer) -> None:
    c = redis_server.client()
    run(Publisher(c, "n1", 5.0), T0, T0 + 3605)
    full = wire.decode(c.get(wire.tier_block_key("n1", "1m", T0)), schema.TierBlock)
    assert len(full.rows) == 60 and all(full.rows)
    ttl_h = c.pttl(wire.tier_block_key("n1", "1m", T0)) / 3600_000
    assert 24 < ttl_h <= 25  # gone once its newest minute is a day old


def test_a_figure_by_name_joins_the_tiers(redis_server: RedisServer) -> None:
    # How another figure (energy, say) joins: by name, through the same fold and the same blocks.
    from clustertop.agents.tiers import TierWriter

    c = redis_server.client()
    w = TierWriter("n1")
    for i in range(13):
        w.add(hp(T0 + 5 * i), extra={"kwh": 2.0 + i % 2, "cpu": 999.0})  # a figure already there is not replaced
        if w.has_work():
            w.flush(c)
    (start, p), = tier(c, "1m")
    assert start == T0 and p.a is not None and p.a["kwh"] == round((6 * 2 + 6 * 3) / 12) and p.a["cpu"] == 50
