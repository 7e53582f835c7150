"""Group and chord progress from a Redis result backend (``collectors/celery_groups.py``), against a real
Celery worker (``-E``, ``result_extended``) on a real redis-server broker and on a real RabbitMQ broker, the
result backend a real redis-server: a real chord whose header has failing tasks and a real saved group,
read mid-way and at the end. Hostile keys are written into the real backend. Nothing is faked.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from celery import Celery, chord, group

from clustertop import wire
from clustertop.collectors import celery_groups
from clustertop.collectors.celery import CeleryCollector
from clustertop.config import ConfigError
from clustertop.wire import schema
from tests.collectors.test_celery import CeleryWorker, collector, rabbit, wait_for  # noqa: F401
from tests.conftest import RedisServer, free_port
from tests.support import hostile

N = 12  # ct.slow_fail(i) fails for i % 3 == 0: 4 of 12


def backend_url(server: RedisServer) -> str:
    return server.url.rsplit("/", 1)[0] + "/1"  # the same server, another database (a usual setup)


def client(broker: str, backend: str) -> Any:
    app = Celery("ct-client", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(task_default_queue="work", result_extended=True)
    return app


def close_client(app: Any) -> None:
    """The client's Redis backend subscribed to each sent task's result; each AsyncResult unsubscribes
    when collected, which after the test would meet a stopped redis-server: end the subscriptions now."""
    rc = getattr(app.backend, "result_consumer", None)
    if rc is not None and getattr(rc, "_pubsub", None) is not None:
        rc.subscribed_to.clear()
        rc.stop()
    app.close()


def groups_of(c: CeleryCollector) -> dict[str, schema.CeleryGroup]:
    q = c.collect()
    assert q.celery_groups is not None and q.celery_groups.groups is not None, q.celery_groups
    return {g.id: g for g in q.celery_groups.groups}


def run_and_check(app: Any, c: CeleryCollector) -> None:
    ch = chord([app.signature("ct.slow_fail", args=(i, 0.4)) for i in range(N)], app.signature("ct.collect"))
    res = ch.apply_async()
    header = res.parent.id  # the chord's header group
    saved = group(app.signature("ct.slow_fail", args=(i, 0.4)) for i in range(N)).apply_async()
    saved.save()
    seen: list[tuple[int | None, int | None]] = []

    def midway() -> schema.CeleryGroup | None:
        g = groups_of(c).get(header)
        if g is not None:
            seen.append((g.done, g.total))
        return g if g is not None and g.total == N and g.done is not None and 0 < g.done < N else None

    mid = wait_for("the chord read mid-way", midway, every=0.05)
    assert mid.kind == "chord" and mid.ended is False and mid.failed is not None and mid.failed <= mid.done

    def at_end() -> dict[str, schema.CeleryGroup] | None:
        gs = groups_of(c)
        a, b = gs.get(header), gs.get(saved.id)
        return gs if a is not None and a.ended and b is not None and b.done == N else None

    gs = wait_for("both groups to end", at_end)
    a, b = gs[header], gs[saved.id]
    # A header task failed: Celery fails the callback with a ChordError; the chord still counts every part.
    assert (a.kind, a.total, a.done, a.failed, a.ended) == ("chord", N, N, N // 3, True)
    assert (b.kind, b.total, b.done, b.failed, b.revoked, b.ended) == ("group", N, N, N // 3, 0, True)
    assert b.name == "ct.slow_fail" and a.name == "ct.slow_fail"  # named from the event stream
    # (states polled, not res.get(): get() subscribes to the backend, and unsubscribes when collected)
    wait_for("the chord's callback to fail", lambda: res.state == "FAILURE")
    assert type(res.result).__name__ == "ChordError"
    # What the collector says agrees with Celery's own view of the same results.
    assert sum(r.state == "FAILURE" for r in saved.results) == b.failed
    assert len(wire.encode(schema.Queues(celery_groups=schema.CeleryGroups(backend="b", groups=list(gs.values()))))) < 8000


def run_on(w: Any, c: Any, app: Any) -> None:
    """``run_and_check`` once the worker is up and the collector's event receiver listens; then all three closed."""
    try:
        w.wait_ready()
        wait_for("the event receiver to listen", lambda: c.streams[0].since is not None)
        run_and_check(app, c)
    finally:
        close_client(app)
        c.close()
        w.stop()


@pytest.mark.heavy  # a real Celery worker
def test_chord_and_saved_group_on_redis(redis_server: RedisServer) -> None:
    be = backend_url(redis_server)
    w = CeleryWorker(redis_server.url, name="grp", events=True, backend=be)
    c = collector([redis_server.url], clock=time.monotonic, inspect_interval=0.5, result_backend=be)  # type: ignore[arg-type]
    app = client(redis_server.url, be)
    run_on(w, c, app)


@pytest.mark.heavy  # a real Celery worker and RabbitMQ
def test_chord_and_saved_group_on_rabbitmq(rabbit: Any, redis_server: RedisServer, tmp_path: Path) -> None:  # noqa: F811
    pw = tmp_path / "rabbit.pass"
    pw.write_text("guest\n")
    be = backend_url(redis_server)
    w = CeleryWorker(rabbit.amqp_url, name="grp", events=True, backend=be)
    c = collector([rabbit.amqp_url], clock=time.monotonic, inspect_interval=0.5, result_backend=be,  # type: ignore[arg-type]
                  management_url=rabbit.management_url, management_user="guest", management_password_file=str(pw))
    app = client(rabbit.amqp_url, be)
    run_on(w, c, app)


def test_no_backend_is_none_and_bad_backend_names_the_key(redis_server: RedisServer) -> None:
    c = collector([redis_server.url], task_events=False)
    try:
        assert c.collect().celery_groups is None  # not configured: unknown, never an empty list
    finally:
        c.close()
    with pytest.raises(ConfigError) as e:
        collector([redis_server.url], result_backend="rpc://")
    assert "agent.toml" in str(e.value) and "result_backend" in str(e.value)
    # A backend that is down: said in its own note; the broker's queues still flow.
    c = collector([redis_server.url], task_events=False, result_backend=f"redis://127.0.0.1:{free_port()}/1")
    try:
        q = c.collect()
        assert q.queues is not None and q.celery_groups is not None and q.celery_groups.groups is None
        assert "result backend" in (q.celery_groups.note or "")
    finally:
        c.close()


def test_hostile_keys_in_the_backend(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever can write the backend chooses group ids and contents: none of it crashes a poll or grows
    the payload past its bounds; what cannot be read is None with a reason, never 0."""
    import redis

    monkeypatch.setattr(celery_groups, "GROUPS_MAX", 30)
    be = backend_url(redis_server)
    r = redis.Redis.from_url(be)
    p = celery_groups.TASKSET_PREFIX
    evil = [s + str(i) for i, s in enumerate(x for x in hostile.NASTY if x.strip())][:10] + ["\u202e" + "g" * 190]
    for gid in evil:
        r.set(p + gid.encode("utf-8", "surrogatepass"), b'{"result": [["x", null], [[["m1", null], null]]]}')
    r.set(p + b"notjson", b"\x80\x04pickle")
    r.set(p + b"huge.s", b"99999999999999999999")  # not a size anyone would believe: ignored
    r.sadd(p + b"wrongtype", b"x")  # a set where a saved group's string should be
    r.set(p + b"chord.s", b"3")
    r.sadd(p + b"chord.d", b"a:0", b"\xff\xfe:1", b"b" * 300 + b":2")
    r.set(celery_groups.TASK_PREFIX + b"a", b'{"status": "FAILURE", "result": "' + b"x" * 1_000_000 + b'"}')
    r.set(celery_groups.TASK_PREFIX + b"m1", b'{"status": "SUCCESS", "result": 1}')
    r.set(p + b"many", b'{"result": [["many", null], [' + b",".join(
        b'[["m%d", null], null]' % i for i in range(celery_groups.MEMBERS_MAX + 1)) + b"]]}")
    c = collector([redis_server.url], task_events=False, result_backend=be, clock=time.monotonic)  # type: ignore[arg-type]
    try:
        q = c.collect()
        # The one pickled taskset is named in the backend's note (never unpickled), nothing else is.
        assert q.celery_groups is not None and q.celery_groups.note == celery_groups.unreadable("pickle")
        gs = {g.id: g for g in q.celery_groups.groups or ()}
        assert set(evil) <= set(gs) and all((gs[x].total, gs[x].done, gs[x].failed) == (1, 1, 0) for x in evil)
        # 3 returned (SCARD); of their ids only "a" is readable text (the others are skipped), and it failed
        assert (gs["chord"].kind, gs["chord"].total, gs["chord"].done, gs["chord"].failed) == ("chord", 3, 3, 1)
        assert gs["notjson"].total is None and "pickle: not read (unsafe" in (gs["notjson"].note or "")
        assert gs["many"].done is None and "bound" in (gs["many"].note or "")
        assert "huge" not in gs or gs["huge"].total is None
        assert "wrongtype" not in gs or gs["wrongtype"].total is None
        # Past the tracked bound: said, not silently dropped; the payload stays bounded.
        for i in range(40):
            r.set(p + b"g%d" % i, b'{"result": [["g", null], []]}')
        c.backend._due = 0.0  # type: ignore[union-attr]  # the next discovery round now, not in 30 s
        q = c.collect()
        assert q.celery_groups is not None and "tracked" in (q.celery_groups.note or "")
        assert len(q.celery_groups.groups or ()) == celery_groups.PUBLISHED_MAX
        assert len(wire.encode(q)) < wire.MAX_PAYLOAD_BYTES // 4
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(q.celery_groups), type=schema.CeleryGroups) == q.celery_groups
        assert gs["many"].total == celery_groups.MEMBERS_MAX + 1 and c.backend is not None
        assert c.backend.groups["notjson"].unread is not None  # not read again at every poll
        # An ended group is only asked whether it still exists; once its key expires it is forgotten.
        assert c.backend is not None and c.backend.groups[evil[0]].ended
        r.delete(p + evil[0].encode("utf-8", "surrogatepass"))
        c.collect()
        assert evil[0] not in c.backend.groups and evil[1] in c.backend.groups
    finally:
        c.close()
        r.close()


def test_pure_parts() -> None:
    g = celery_groups
    assert g.group_key(b"celery-taskset-meta-abc.j") == ("abc", b".j")
    assert g.group_key(b"celery-taskset-meta-abc") == ("abc", b"")
    assert g.group_key(b"celery-taskset-meta-\xff") is None and g.group_key(b"other") is None
    assert g.status_of(b'{"status": "FAILURE", "result": {"exc_type": ') == "FAILURE"
    assert g.status_of(b"\x80\x04pickled") is None and g.status_of(None) is None
    assert g.taskset_members(b'{"result": [["g", null], [[["a", null], null], [["b", ["p", null]], null]]]}') == ["a", "b"]
    for bad in (b"[]", b'{"result": 5}', b"\xff", b'{"result": [["g", null], [[[5, null], null]]]}'):
        with pytest.raises(ValueError):
            g.taskset_members(bad)
    assert g.chord_member(b"abc:3") == "abc" and g.chord_member(b"\xff:1") is None
    assert g.parse_int(b"12") == 12 and g.parse_int(b"1e9") is None and g.parse_int(b"9" * 30) is None


@pytest.mark.heavy  # a real Celery worker
def test_retry_resends_a_failed_task_and_is_audited_refused_without_full_args(redis_server: RedisServer) -> None:
    """Retry = the same name, args, kwargs and queue as a new task, read from the result backend; the CLI
    shows them, sends on --yes, audits; refused (and audited) where the backend has no extended result."""
    import json

    from clustertop.control.celery import CeleryControl, RetryPlan
    from tests.cli.test_steer_cli import audit, ct

    be = backend_url(redis_server)
    w = CeleryWorker(redis_server.url, name="rt", backend=be)
    app = client(redis_server.url, be)
    ctl = CeleryControl(redis_server.url, timeout=2.0, backend=be)
    try:
        w.wait_ready()
        first = app.send_task("ct.maybe_fail", args=(3,), kwargs={"fail_every": 3})
        wait_for("the task to fail", lambda: first.state == "FAILURE")
        plan = ctl.retry_plan(first.id)
        assert isinstance(plan, RetryPlan), plan
        assert (plan.name, plan.args, plan.kwargs, plan.queue, plan.state) == (
            "ct.maybe_fail", [3], {"fail_every": 3}, "work", "FAILURE")
        r = ctl.retry(plan)
        assert r.ok and r.data["task_id"] != first.id, r.text
        again = app.AsyncResult(r.data["task_id"])
        wait_for("the retried task to run on the worker", lambda: again.state == "FAILURE")
        assert (again.name, again.args, again.kwargs, again.worker) == ("ct.maybe_fail", [3], {"fail_every": 3}, w.name)

        # From the CLI: shown, sent, audited; then refusals, audited too.
        common = ["--broker", redis_server.url, "--backend", be, "--redis", redis_server.url, "--operator", "bob"]
        out = ct("celery", "retry", first.id, "--yes", *common)
        assert out.returncode == 0, out.stderr + out.stdout
        assert "ct.maybe_fail" in out.stdout and '"fail_every": 3' in out.stdout and "new task id" in out.stdout
        new_id = out.stdout.rsplit("new task id ", 1)[1].split()[0]
        wait_for("the CLI's retry to run", lambda: app.AsyncResult(new_id).state == "FAILURE")
        # A result stored without result_extended (no name, no args: what a worker without it writes): refused.
        bare = "bare-\x1b[2J"
        import redis

        rb = redis.Redis.from_url(be)
        rb.set(f"celery-task-meta-{bare}", json.dumps({"status": "FAILURE", "result": {"exc_type": "ValueError"},
                                                       "traceback": None, "children": [], "task_id": bare}))
        rb.close()
        refused = ct("celery", "retry", bare, "--yes", *common)
        assert refused.returncode == 1 and "result_extended" in refused.stderr and "\x1b" not in refused.stderr
        no_backend = CeleryControl(redis_server.url).retry_plan(first.id)
        assert not isinstance(no_backend, RetryPlan) and "no result backend" in no_backend.text
        got = [(e.action, e.result.split(":")[0], e.where, e.actor) for e in audit(redis_server)]
        assert got == [("celery.retry", "ok", "cli", "bob"), ("celery.retry", "refused", "cli", "bob")]
    finally:
        ctl.close()
        close_client(app)
        w.stop()
