"""Task history from Celery's event stream (``collectors/celery_events.py``) against a real Celery worker
(``-E``) on a real redis-server and on a real RabbitMQ, running a real group of tasks of which some fail.
Nothing is faked; the pure part is also fed hostile events directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from celery import Celery, group

from clustertop import wire
from clustertop.collectors import celery_events
from clustertop.collectors.celery import CeleryCollector
from clustertop.wire import schema
from tests.collectors.test_celery import CeleryWorker, collector, rabbit, wait_for  # noqa: F401
from tests.conftest import RedisServer

N = 9  # group size; ct.maybe_fail(i) fails for i % 3 == 0: 3 failures


@pytest.fixture
def client_app() -> Iterator[Callable[[str], Any]]:
    """A Celery client app per broker that sends the fixture app's tasks by name."""
    apps: list[Any] = []

    def make(broker: str) -> Any:
        app = Celery("ct-client", broker=broker, set_as_current=False)
        app.conf.task_default_queue = "work"  # what the fixture worker consumes
        apps.append(app)
        return app

    yield make
    for a in apps:
        a.close()


@pytest.fixture
def events_worker(redis_server: RedisServer) -> Iterator[CeleryWorker]:
    w = CeleryWorker(redis_server.url, name="ev", events=True)
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def history(c: CeleryCollector) -> schema.CeleryHistory:
    q = c.collect()
    assert q.task_history is not None and len(q.task_history) == 1
    return q.task_history[0]


def stat(h: schema.CeleryHistory, name: str) -> schema.CeleryTaskStat | None:
    return next((s for s in h.stats or [] if s.name == name), None)


def run_group_and_check(app: Any, c: CeleryCollector) -> schema.CeleryHistory:
    wait_for("the event receiver to listen", lambda: c.streams[0].since is not None)
    res = group(app.signature("ct.maybe_fail", args=(i,)) for i in range(N)).apply_async()
    app.send_task("ct.retry_once", args=(7,))
    seen: dict[str, schema.CeleryHistory] = {}

    def all_done() -> bool:
        h = history(c)
        seen["h"] = h
        s = stat(h, "ct.maybe_fail")
        r = stat(h, "ct.retry_once")
        return s is not None and s.succeeded + s.failed == N and r is not None and r.succeeded == 1

    wait_for("the group's events", all_done)
    h = seen["h"]
    s = stat(h, "ct.maybe_fail")
    assert s is not None and (s.succeeded, s.failed, s.retried, s.revoked) == (6, 3, 0, 0)
    assert s.runtime_p50_s is not None and 0 <= s.runtime_p50_s <= s.runtime_p95_s  # type: ignore[operator]
    r = stat(h, "ct.retry_once")
    assert r is not None and (r.succeeded, r.retried, r.failed) == (1, 1, 0)
    assert h.events is True
    ids = {child.id for child in res.results}
    recent = {t.id: t for t in h.recent or []}
    assert ids <= set(recent)
    for child_id in ids:
        t = recent[child_id]
        i = int((t.args or "").strip("(,)"))
        assert t.name == "ct.maybe_fail" and t.worker == "ev@ct-test"
        if i % 3 == 0:
            assert t.state == "FAILURE" and t.exception is not None and "fails on purpose" in t.exception
            assert t.traceback is not None and "ValueError" in t.traceback and "Traceback" in t.traceback
        else:
            assert t.state == "SUCCESS" and t.runtime_s is not None and t.traceback is None
    # The retried task's final state is SUCCESS even though its task-retried event may arrive last.
    assert any(t.name == "ct.retry_once" and t.state == "SUCCESS" for t in recent.values())
    return h


def test_group_with_failures_on_redis(events_worker: CeleryWorker, redis_server: RedisServer,
                                      client_app: Callable[[str], Any]) -> None:
    c = collector([redis_server.url])
    try:
        h = run_group_and_check(client_app(redis_server.url), c)
        assert len(msgspec.msgpack.encode(h)) < wire.MAX_PAYLOAD_BYTES // 4
    finally:
        c.close()
    thread = c.streams[0]._thread
    assert thread is not None and not thread.is_alive()  # close() ended the receiver


def test_group_with_failures_on_rabbitmq(rabbit: Any, tmp_path: Path,  # noqa: F811 - the fixture
                                         client_app: Callable[[str], Any]) -> None:
    pw = tmp_path / "rabbit.pass"
    pw.write_text("guest\n")
    w = CeleryWorker(rabbit.amqp_url, name="ev", events=True)
    c = collector([rabbit.amqp_url], management_url=rabbit.management_url, management_user="guest",
                  management_password_file=str(pw))
    try:
        w.wait_ready()
        run_group_and_check(client_app(rabbit.amqp_url), c)
    finally:
        c.close()
        w.stop()


def test_worker_without_events_is_said_not_zero(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
                                                client_app: Callable[[str], Any]) -> None:
    monkeypatch.setattr(celery_events, "QUIET_S", 3.0)
    w = CeleryWorker(redis_server.url, name="quiet")  # no -E, no heartbeats
    c = collector([redis_server.url], inspect_interval=0.5)
    try:
        w.wait_ready()
        client_app(redis_server.url).send_task("ct.add", args=(1, 2))  # it runs, but no event tells of it
        h = wait_for("events off", lambda: (x := history(c)).events is False and x)
        assert h.note is not None and "-E" in h.note
        assert h.stats is None and h.recent is None  # unknown, not zero tasks
    finally:
        c.close()
        w.stop()


def test_task_history_is_bounded_and_survives_hostile_events() -> None:
    h = celery_events.TaskHistory("redis://x")
    evil = "\x1b[2J\u202e" + "A" * 1_000_000
    events: list[Any] = [
        {"type": "task-received", "uuid": "a", "name": evil, "args": evil, "kwargs": {"k": 1}, "hostname": evil},
        {"type": "task-failed", "uuid": "a", "exception": evil, "traceback": evil, "timestamp": math.nan},
        {"type": "task-succeeded", "uuid": "b", "runtime": 2**64, "timestamp": "x"},
        {"type": "task-succeeded", "uuid": "c", "runtime": math.inf},
        {"type": "task-failed", "uuid": 5}, {"type": None}, "not a dict", {"uuid": "d"},
    ]
    h.feed(events, now=100.0)
    for i in range(celery_events.MAX_TASKS + 500):
        h.event({"type": "task-succeeded", "uuid": f"t{i}", "name": f"n{i % 300}", "runtime": 0.5}, 100.0)
    assert len(h.tasks) == celery_events.MAX_TASKS
    assert len(h.names) <= celery_events.MAX_NAMES
    out = h.render(100.0, True, None, 0)
    assert len(msgspec.msgpack.encode(out)) < wire.MAX_PAYLOAD_BYTES // 4
    assert len(out.recent or []) == celery_events.RECENT_N
    assert any(s.name == celery_events.OTHER for s in out.stats or [])
    # failed counted once even if the event came twice; the hostile runtimes are unknown, not huge
    h2 = celery_events.TaskHistory("b")
    h2.feed(events + [events[1]], 1.0)
    out2 = h2.render(1.0, True, None, 0)
    assert sum(s.failed for s in out2.stats or []) == 1
    tb = next(t for t in out2.recent or [] if t.id == "a")
    assert tb.traceback is not None and len(tb.traceback) == celery_events.TRACEBACK_MAX
    assert all(t.runtime_s is None for t in out2.recent or [] if t.id in ("b", "c"))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(out2), type=schema.CeleryHistory) == out2


def test_many_brokers_share_the_payload_budget() -> None:
    """Eight brokers full of long tracebacks and arguments still encode well within the payload limit."""
    big = "x" * 100_000
    outs = []
    for n in range(8):
        h = celery_events.TaskHistory(f"redis://b{n}")
        for i in range(500):
            h.event({"type": "task-received", "uuid": f"t{i}", "name": f"name{i}", "args": big, "kwargs": big}, 1.0)
            h.event({"type": "task-failed", "uuid": f"t{i}", "exception": big, "traceback": big}, 1.0)
        outs.append(h.render(1.0, True, None, 0, share=8))
    q = schema.Queues(task_history=outs)
    assert len(wire.encode(q)) < wire.MAX_PAYLOAD_BYTES // 2
    assert all(len(o.recent or []) == celery_events.RECENT_N // 8 for o in outs)


def test_late_event_does_not_roll_state_back_and_events_off_needs_time() -> None:
    h = celery_events.TaskHistory("b")
    h.feed([{"type": "task-succeeded", "uuid": "r", "timestamp": 10.0, "hostname": "w"},
            {"type": "task-retried", "uuid": "r", "timestamp": 9.0, "hostname": "w"},
            {"type": "task-retried", "uuid": "r", "timestamp": 11.0, "hostname": "w"},
            {"type": "task-started", "uuid": "s", "timestamp": 10.0, "hostname": "w"},
            {"type": "task-received", "uuid": "s", "timestamp": 9.0, "hostname": "w"}], now=50.0)
    assert h.tasks["r"].state == "SUCCESS" and h.tasks["s"].state == "STARTED"
    assert h.names["(unknown name)"].retried == 2
    assert h.events_on(since=45.0, now=50.0) == (True, None)
    q = celery_events.TaskHistory("b")
    assert q.events_on(since=None, now=50.0) == (None, None)
    assert q.events_on(since=45.0, now=50.0) == (None, None)  # listened 5 s: too early to say
    on, note = q.events_on(since=30.0, now=50.0)
    assert on is False and note is not None
    # Events flow, but one online worker never sent any: named.
    on, note = h.events_on(since=0.0, now=50.0, online=["w", "silent@x"])
    assert on is True and note is not None and "silent@x" in note and " w," not in note
