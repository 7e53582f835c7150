"""Rates and unacknowledged counts of Celery queues on a Redis broker, computed by the real collector.

The real parts: a redis-server (fixture ``redis_server``) and a real Celery worker (``worker``, the same
process ``tests/collectors/test_celery.py`` runs: prefork, concurrency 2, prefetch 1, consuming "work").
Tasks are held open by a file gate (``ct.hold_late``, acks_late) so the test decides exactly how many
messages are in the lists, in kombu's unacked hash and through the workers at each poll; the rates are
then checked against those known counts over the window the test measured around the two polls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustertop.collectors import queues_parse
from clustertop.collectors.queues_parse import RedisSample, redis_rates
from clustertop.wire import schema
from tests.collectors.test_celery import CeleryWorker, Clock, collector, direct_depth, wait_for
from tests.conftest import RedisServer


@pytest.fixture
def worker(redis_server: RedisServer) -> Iterator[CeleryWorker]:
    w = CeleryWorker(redis_server.url)
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def test_unacked_layout_follows_installed_kombu() -> None:
    from kombu.transport import redis as kombu_redis

    assert queues_parse.UNACKED_KEY == kombu_redis.Channel.unacked_key


def test_rates_balance_lists_unacked_and_worker_counters() -> None:
    prev = RedisSample(t=10.0, ready=3, unacked=0, counters=(("w1", 100, 0),))
    # 10 s later: 4 ready, 2 delivered-unacked; the worker started 6 more, 1 of them still running acks_late.
    cur = RedisSample(t=20.0, ready=4, unacked=2, counters=(("w1", 106, 1),))
    r = redis_rates(prev, cur)
    assert r is not None
    # acked = 6 started - 1 still unacknowledged = 5; delivered = dU 2 + 5 = 7; published = dR 1 + 7 = 8
    assert (r.deliver, r.publish) == (pytest.approx(0.7), pytest.approx(0.8))
    # No consumer at all: nothing acked, deliveries are what entered the unacked hash.
    r0 = redis_rates(RedisSample(0.0, 0, 0, ()), RedisSample(4.0, 8, 0, ()))
    assert r0 is not None and (r0.publish, r0.deliver) == (2.0, 0.0)


@pytest.mark.parametrize("cur", [
    RedisSample(20.0, 4, 2, None),  # a consumer also reads another queue: counters not per queue
    RedisSample(20.0, 4, 2, (("w1", 106, 1), ("w2", 5, 0))),  # a new worker: its earlier count unknown
    RedisSample(20.0, 4, 2, (("w1", 3, 0),)),  # counter went back: the worker restarted
    RedisSample(10.0, 4, 2, (("w1", 106, 1),)),  # no time passed
])
def test_rates_unknown_when_the_counters_do_not_cover_the_queue(cur: RedisSample) -> None:
    assert redis_rates(RedisSample(10.0, 3, 0, (("w1", 100, 0),)), cur) is None


def test_unacked_values_and_routes_are_hostile_data() -> None:
    sep = queues_parse.SEP
    routes = queues_parse.binding_routes({
        "work": [f"work{sep}{sep}work".encode()],
        "fan": [f"{sep}{sep}a", f"{sep}{sep}b"],
        "odd": [b"\xff\xfe", "x" * 10_000],
    })
    assert queues_parse.route_queue(routes, "work", "work") == "work"
    assert queues_parse.route_queue(routes, "fan", "") is None  # two queues: not guessed
    assert queues_parse.route_queue(routes, "", "direct-to-q") == "direct-to-q"  # default exchange
    assert queues_parse.route_queue(routes, "nobody", "rk") is None
    assert queues_parse.unacked_route(b'[{"body": "x"}, "work", "work"]') == ("work", "work")
    assert queues_parse.unacked_route(b'[{}, null, "q"]') == ("", "q")
    for bad in (b"", b"\xff", b"[1, 2]", b"[{}, 1, 2]", b"{}", b"[" * 100_000, b"NaN"):
        assert queues_parse.unacked_route(bad) is None
    assert queues_parse.started_total({"total": {"a": 2, "b": 3}}) == 5
    assert queues_parse.started_total({"total": {}}) == 0
    for bad_stats in (None, {}, {"total": []}, {"total": {"a": 2**64}}, {"total": {"a": "3"}}, {"total": {"a": True}},
                      {"total": {"a": -1}}):
        assert queues_parse.started_total(bad_stats) is None
    assert queues_parse.running_unacked([{"acknowledged": False}, {"acknowledged": True}]) == 1
    assert queues_parse.running_unacked([]) == 0
    for bad_active in (None, {}, [{"id": "x"}], ["x"]):
        assert queues_parse.running_unacked(bad_active) is None


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=300), members=st.lists(st.one_of(st.binary(max_size=60), st.text(max_size=60))),
       stats=st.recursive(st.none() | st.integers() | st.text(max_size=5) | st.floats(),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4)))
def test_parsers_never_raise_on_hostile_input(value: bytes, members: list[Any], stats: Any) -> None:
    r = queues_parse.unacked_route(value)
    assert r is None or all(isinstance(x, str) for x in r)
    routes = queues_parse.binding_routes({"x": members})
    assert all(isinstance(q, str) and q for qs in routes.values() for q in qs)
    n = queues_parse.started_total(stats)
    assert n is None or (n >= 0 and n in schema.WIRE_INTS)  # a count the wire carries, never negative
    assert queues_parse.running_unacked(stats) in (None, *range(100))


# ---------------------------------------------------------------------------------------------
# A real worker on a real broker
# ---------------------------------------------------------------------------------------------


class Poller:
    """Polls the collector and remembers the monotonic span of each poll, so a rate can be checked
    against a known message count over the window bounds the test measured (not a timing assertion:
    the window is wherever the polls fell, the count is exact)."""

    def __init__(self, c: Any, clock: Clock) -> None:
        self.c, self.clock = c, clock
        self.spans: list[tuple[float, float]] = []

    def poll(self) -> dict[str, schema.Queue]:
        self.clock.t += 31  # every poll is a fresh worker inspection
        t0 = time.monotonic()
        q = self.c.collect()
        self.spans.append((t0, time.monotonic()))
        assert q.errors is None, q.errors
        return {x.name: x for x in q.queues or []}

    def check(self, rate: float | None, count: int) -> None:
        """``rate`` covers exactly ``count`` messages between the last two polls."""
        assert rate is not None
        (s0, e0), (s1, e1) = self.spans[-2], self.spans[-1]
        assert count / (e1 - s0) - 1e-9 <= rate <= count / (s1 - e0) + 1e-9, (rate, count, self.spans[-2:])


def test_redis_unacked_and_rates_with_a_real_worker(worker: CeleryWorker, redis_server: RedisServer,
                                                   tmp_path: Path) -> None:
    app = worker.control.app
    client = redis_server.client()
    c = collector([redis_server.url], (clock := Clock()), queues=["work", "backlog"])
    p = Poller(c, clock)
    try:
        first = p.poll()
        assert first["work"].unacked == 0 and first["work"].depth == 0
        assert first["work"].publish_rate is None and first["work"].deliver_rate is None  # one sample: no rate yet

        # Two acks_late tasks fill the worker (concurrency 2, prefetch 1): they stay unacknowledged while held.
        gates = [tmp_path / f"hold{i}" for i in range(2)]
        for g in gates:
            app.send_task("ct.hold_late", args=(str(g),), queue="work")
        wait_for("both held tasks to start", lambda: all(Path(f"{g}.started").exists() for g in gates))
        for i in range(5):  # nobody can take these now: they wait in the list
            app.send_task("ct.add", args=(i, i), queue="work")
        for i in range(4):  # no consumer at all
            app.send_task("ct.add", args=(i, i), queue="backlog")
        wait_for("5 messages in work's list", lambda: direct_depth(client, "work")[0] == 5)
        assert client.hlen(queues_parse.UNACKED_KEY) == 2  # what kombu itself holds, read directly
        second = p.poll()
        work, backlog = second["work"], second["backlog"]
        assert (work.ready, work.unacked, work.depth, work.consumers) == (5, 2, 5, 1)
        assert (backlog.ready, backlog.unacked, backlog.depth, backlog.consumers) == (4, 0, 4, 0)
        p.check(work.publish_rate, 7)  # 2 held + 5 waiting were published in this window
        p.check(work.deliver_rate, 2)  # only the 2 held ones reached the worker
        p.check(backlog.publish_rate, 4)
        p.check(backlog.deliver_rate, 0)

        for g in gates:  # release: the held two are acknowledged, then the five run (acked on start)
            Path(f"{g}.release").touch()
        wait_for("work to drain", lambda: direct_depth(client, "work")[0] == 0
                 and client.hlen(queues_parse.UNACKED_KEY) == 0)
        wait_for("the worker to count 7 tasks started", lambda: sum(
            ((app.control.inspect(timeout=1).stats() or {}).get(worker.name) or {}).get("total", {}).values()) == 7)
        third = p.poll()
        work = third["work"]
        assert (work.ready, work.unacked, work.depth) == (0, 0, 0)
        p.check(work.deliver_rate, 5)  # the five waiting ones were delivered in this window
        p.check(work.publish_rate, 0)  # nothing new was published
        p.check(third["backlog"].publish_rate, 0)
    finally:
        c.close()


def test_unacked_of_an_unknown_exchange_makes_counts_unknown_not_zero(redis_server: RedisServer) -> None:
    """A message delivered from a fanout/topic exchange cannot be placed in one queue: unacked is None,
    said in errors; the lists are still read. No worker needed: the hash is written as kombu writes it."""
    client = redis_server.client()
    sep = queues_parse.SEP
    client.sadd(queues_parse.BINDING_PREFIX + "fan", f"{sep}{sep}a", f"{sep}{sep}b")
    client.lpush("a", b"m")
    client.hset(queues_parse.UNACKED_KEY, "tag-1", b'[{"body": ""}, "fan", ""]')
    c = collector([redis_server.url], Clock(), queues=["a", "b"])
    try:
        q = c.collect()
    finally:
        c.close()
    by = {x.name: x for x in q.queues or []}
    assert by["a"].ready == by["a"].depth == 1 and by["a"].unacked is None
    assert q.errors and any("1 unacknowledged messages of no known queue" in e for e in q.errors)


def test_unacked_hash_is_read_in_bounded_steps_and_hostile_entries_stay_unknown(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu's hash written as kombu writes it (no worker needed): a backlog is read a bounded batch per
    poll, each entry once; an entry too large to read and a key that is not a hash make unacked unknown,
    while the lists are still counted."""
    from clustertop.collectors import celery as celery_mod

    client = redis_server.client()
    sep = queues_parse.SEP
    client.sadd(queues_parse.BINDING_PREFIX + "work", f"work{sep}{sep}work")
    client.hset(queues_parse.UNACKED_KEY, mapping={f"t{i}": b'[{"body": "x"}, "work", "work"]' for i in range(7)})
    monkeypatch.setattr(celery_mod, "UNACKED_READ_MAX", 3)
    c = collector([redis_server.url], Clock(), queues=["work"])
    reads: list[int] = []
    real_hmget = c.redis[0].client.hmget
    c.redis[0].client.hmget = lambda key, tags: reads.append(len(tags)) or real_hmget(key, tags)
    try:
        polls = [c.collect() for _ in range(4)]
        assert [(q.queues or [])[0].unacked for q in polls] == [None, None, 7, 7]
        assert polls[0].errors and "4 unacknowledged messages still to read" in polls[0].errors[0]
        assert reads == [3, 3, 1]  # each entry read once, then only counted
        client.hset(queues_parse.UNACKED_KEY, "huge", b"[" + b" " * (celery_mod.UNACKED_VALUE_MAX + 1))
        q = c.collect()
        assert (q.queues or [])[0].unacked is None and reads == [3, 3, 1]  # never read
        assert q.errors and "1 unacknowledged messages over" in q.errors[0]
        client.delete(queues_parse.UNACKED_KEY)
        client.set(queues_parse.UNACKED_KEY, b"not a hash")
        client.lpush("work", b"m")
        q = c.collect()
        (work,) = q.queues or []
        assert (work.ready, work.unacked, work.depth) == (1, None, 1)
        assert q.errors and "is not kombu's unacked hash" in q.errors[0]
    finally:
        c.close()
