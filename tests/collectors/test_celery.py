"""Tests for the ``celery`` collector and Celery job control, against a real Celery worker on a real
redis-server (fixture ``redis_server``) and a real RabbitMQ (``tests/support/rabbitmq.py``).

The worker is ``celery -A ct_celery_app worker --pool=prefork --concurrency=2`` in a subprocess
(tests/fixtures/queues/ct_celery_app.py). Nothing is faked except where said.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertop.collectors import queues_parse
from clustertop.collectors.base import Context
from clustertop.collectors.celery import CeleryCollector, CeleryUnreachable, amqp_vhost, parse_settings
from clustertop.config import ConfigError
from clustertop.control.celery import CeleryControl, TemplateError, load_template, parse_template, render
from clustertop.store import redact
from clustertop.wire import schema
from tests.conftest import FIXTURES, RedisServer, free_port

APP_DIR = FIXTURES / "queues"
#: Deadline for a real component to reach a state (a wait, not a timed assertion).
WAIT_S = 30.0


def wait_for(what: str, cond: Callable[[], Any], timeout: float = WAIT_S, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Clock:
    """A monotonic clock the test moves, so ``inspect_interval`` caching is decided by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class CeleryWorker:
    """A real Celery worker process on ``broker`` consuming ``queues``."""

    def __init__(self, broker: str, queues: str = "work", name: str = "w1", concurrency: int = 2,
                 events: bool = False, backend: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.name = f"{name}@ct-test"
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"ct-celery-{os.getpid()}-{name}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "CT_BROKER": broker, "PYTHONPATH": str(APP_DIR), "CT_BACKEND": backend or "",
               **(extra_env or {})}  # CT_BROKER_KEYPREFIX, CT_BACKEND_KEYPREFIX, CT_RESULT_SERIALIZER
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ct_celery_app", "worker", "--pool=prefork",
             f"--concurrency={concurrency}", "-Q", queues, "-n", self.name, "--without-gossip",
             "--without-mingle", *(["-E"] if events else ["--without-heartbeat"]), "-l", "WARNING"],
            cwd=APP_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        # Ping over the prefixed pub/sub channels when the worker's broker has a global_keyprefix.
        self.control = CeleryControl(broker, timeout=1.0,
                                     broker_keyprefix=(extra_env or {}).get("CT_BROKER_KEYPREFIX", ""))

    def wait_ready(self) -> None:
        def pong() -> bool:
            assert self.proc.poll() is None, f"worker exited: {self.output()}"
            return bool(self.control.app.control.ping(destination=[self.name], timeout=0.5))

        wait_for(f"worker {self.name} to answer ping", pong)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:  # pool children left behind by a killed main process
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.control.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture
def worker(redis_server: RedisServer) -> Iterator[CeleryWorker]:
    w = CeleryWorker(redis_server.url)
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def collector(brokers: list[str], clock: Clock | None = None, **opts: Any) -> CeleryCollector:
    ctx = Context(node="poller", config={"brokers": brokers, "request_timeout": 1.0, **opts}, config_file="agent.toml")
    return CeleryCollector(ctx, clock=clock or Clock())


def direct_depth(client: Any, queue: str) -> tuple[int, int]:
    """(sum of LLEN over every key that holds the queue, number of such keys), read straight from Redis."""
    keys = [k for k in client.keys(queue + "*") if k == queue.encode() or k.startswith((queue + queues_parse.SEP).encode())]
    return sum(client.llen(k) for k in keys), len(keys)


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def test_priority_keys_follow_kombu_layout() -> None:
    from kombu.transport import redis as kombu_redis

    # The constants we rely on, read from the installed kombu rather than remembered.
    assert list(queues_parse.PRIORITY_STEPS) == kombu_redis.PRIORITY_STEPS
    assert queues_parse.SEP == kombu_redis.Channel.sep
    assert queues_parse.BINDING_PREFIX == kombu_redis.Channel.keyprefix_queue % ""
    assert queues_parse.priority_keys("q") == ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
    assert [queues_parse.priority_step(p) for p in (0, 2, 3, 5, 9, 200)] == [0, 0, 3, 3, 9, 9]


def test_bindings_parse_skips_celery_plumbing_and_foreign_members() -> None:
    sep = queues_parse.SEP
    members = [f"work{sep}{sep}work".encode(), f"gpu{sep}{sep}gpu", f"{sep}{sep}w1@h.celery.pidbox",
               f"x{sep}{sep}0f3e.reply.celery.pidbox", b"not-kombu", f"a{sep}{sep}"]
    assert queues_parse.queues_from_bindings(members) == {"work", "gpu"}


def test_settings_errors_name_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"agent.toml: \[collectors.celery\] brokers: required"):
        parse_settings({}, "agent.toml")
    with pytest.raises(ConfigError, match=r"\[collectors.celery\] brokers: not a redis:// or amqp:// URL: 'http://u:\*\*\*@h'"):
        parse_settings({"brokers": ["http://u:secret@h"]}, "agent.toml")
    with pytest.raises(ConfigError, match=r"\[collectors.celery\] management_password: not allowed"):
        parse_settings({"brokers": ["redis://h"], "management_password": "x"}, "agent.toml")
    with pytest.raises(ConfigError, match=r"\[collectors.celery\] brokres: unknown key"):
        parse_settings({"brokers": ["redis://h"], "brokres": []}, "agent.toml")
    with pytest.raises(ConfigError, match=r"inspect_interval: must be > 0"):
        parse_settings({"brokers": ["redis://h"], "inspect_interval": 0}, "agent.toml")
    with pytest.raises(ConfigError, match=r"management_user: required with management_password_file"):
        parse_settings({"brokers": ["amqp://h//"], "management_password_file": "/x"}, "agent.toml")
    with pytest.raises(ConfigError, match=r"priority_steps"):
        parse_settings({"brokers": ["redis://h"], "priority_steps": [3, 6]}, "agent.toml")
    s = parse_settings({"brokers": ["redis://h"], "timeout": 4}, None)
    assert s.timeout_s == 4.0 and s.inspect_interval_s == 30.0 and s.queues is None


def test_amqp_vhost_follows_kombu() -> None:
    assert amqp_vhost("amqp://u@h//") == "/"
    assert amqp_vhost("amqp://u@h") == "/"
    assert amqp_vhost("amqp://u@h/") == "/"
    assert amqp_vhost("amqp://u@h/prod") == "prod"
    assert amqp_vhost("amqp://u@h/%2Fx") == "/x"


def test_growth_tracker_flags_only_growth_without_consumers() -> None:
    g = queues_parse.GrowthTracker()

    def poll(depth: int | None, consumers: int | None) -> bool:
        q = schema.Queue(broker="b", name="q", depth=depth, consumers=consumers)
        g.update([q])
        return q.growing_unconsumed

    assert [poll(1, 0), poll(2, 0), poll(3, 0)] == [False, False, True]
    assert poll(3, 0) is True  # 2, 3, 3: grew over the window, never shrank
    assert poll(4, 1) is False  # a consumer came: history cleared
    assert [poll(5, 0), poll(5, 0), poll(5, 0)] == [False, False, False]  # flat is not growing
    assert [poll(6, None), poll(7, None), poll(8, None)] == [False, False, False]  # consumers unknown: no guess
    assert [poll(9, 0), poll(8, 0), poll(10, 0)] == [False, False, False]  # a dip means someone reads


def test_rabbit_parse_on_captured_answer() -> None:
    import json

    data = json.loads((APP_DIR / "rabbit_queues.json").read_text())
    qs = {q.name: q for q in queues_parse.parse_rabbit_queues(data, "amqp://u@h//")}
    assert "celery@ct-test.celery.pidbox" not in qs and not any(n.startswith("celeryev") for n in qs)
    assert qs["backlog"].depth == 25 and qs["backlog"].consumers == 0
    assert qs["work"].consumers == 1
    assert qs["fresh"].depth is None  # declared, no stats yet: unknown, not 0
    named = queues_parse.parse_rabbit_queues(data, "b", ["backlog", "missing"])
    assert [q.name for q in named] == ["backlog", "missing"] and named[1].depth is None


def test_templates_render_typed_values_and_refuse_bad_input(tmp_path: Path) -> None:
    tpl = load_template(APP_DIR / "send_task.toml")
    from clustertop.control.celery import resolve_params

    p = resolve_params(tpl, {"path": "/x", "times": "3"})
    assert p == {"path": "/x", "text": "hello", "times": 3}
    assert render(tpl.args, p) == ["/x", "hello"] and render(tpl.kwargs, p) == {"times": 3}
    y = load_template(APP_DIR / "send_task.yaml")
    assert render(y.args, resolve_params(y, {"path": "/y", "text": "a"})) == ["/y", "run-a"]
    with pytest.raises(TemplateError, match="parameter text: 'c' is not one of"):
        resolve_params(y, {"path": "/y", "text": "c"})
    with pytest.raises(TemplateError, match="parameter path is required"):
        resolve_params(tpl, {})
    with pytest.raises(TemplateError, match="unknown parameter 'pth'"):
        resolve_params(tpl, {"pth": "/x"})
    with pytest.raises(TemplateError, match="expected int"):
        resolve_params(tpl, {"path": "/x", "times": "three"})
    with pytest.raises(TemplateError, match=r"placeholder \{who\} has no \[params.who\]"):
        parse_template("t", {"task": "x", "args": ["{who}"]})
    # Nothing is evaluated: attribute access in a placeholder is just text.
    assert render("{path.__class__}", {"path": "/x"}) == "{path.__class__}"
    bad = tmp_path / "bad.toml"
    bad.write_text("task = \n")
    with pytest.raises(TemplateError, match="not valid TOML"):
        load_template(bad)


# ---------------------------------------------------------------------------------------------
# Redis broker with a real worker
# ---------------------------------------------------------------------------------------------


def test_redis_depth_is_llen_sum_over_priority_lists(worker: CeleryWorker, redis_server: RedisServer) -> None:
    app = worker.control.app
    # "backlog" has no consumer: every message stays where kombu filed it.
    for i in range(12):
        app.send_task("ct.add", args=(i, i), queue="backlog", priority=[0, 2, 4, 7, 9, 5][i % 6])
    client = redis_server.client()
    depth, lists = direct_depth(client, "backlog")
    assert depth == 12 and lists == 4  # priorities 0..9 landed in all four step lists

    c = collector([redis_server.url])
    try:
        q = c.collect()
        backlog = next(x for x in q.queues or [] if x.name == "backlog")
        assert backlog.depth == depth and backlog.kind == "celery-redis"
        assert backlog.consumers == 0  # discovered from kombu's bindings; no worker consumes it
        work = next(x for x in q.queues or [] if x.name == "work")
        assert work.consumers == 1 and work.depth == direct_depth(client, "work")[0]
        assert not any(x.name.endswith(".pidbox") for x in q.queues or [])
        assert backlog.broker == redis_server.url and q.errors is None
    finally:
        c.close()


def test_worker_online_with_pool_and_active_task_runtime(worker: CeleryWorker, redis_server: RedisServer,
                                                         tmp_path: Path) -> None:
    app = worker.control.app
    marker = tmp_path / "long"
    app.send_task("ct.touch_after", args=(str(marker), 30), queue="work")
    wait_for("the long task to start", lambda: Path(str(marker) + ".started").exists())
    clock = Clock()
    c = collector([redis_server.url], clock)
    try:
        q = c.collect()
        (w,) = q.workers or []
        assert w.name == worker.name and w.online is True and w.host == "ct-test"
        assert w.pool_size == 2
        (t,) = w.active or []
        assert t.name == "ct.touch_after" and t.started_ts is not None
        assert t.runtime_s is not None and t.runtime_s >= 0
        started = t.started_ts
        # Within inspect_interval the cached answer is reused: no new broadcast, same task start.
        c.inspectors[0].state.workers[w.name].pool_size = -1  # would be overwritten by a new round
        assert (c.collect().workers or [])[0].pool_size == -1
        clock.t += 31
        w2 = (c.collect().workers or [])[0]
        assert w2.pool_size == 2 and (w2.active or [])[0].started_ts == started
        worker.control.revoke((w2.active or [])[0].id, terminate=True, signal="SIGKILL")
    finally:
        c.close()


def test_revoke_and_terminate_stops_a_running_task(worker: CeleryWorker, tmp_path: Path) -> None:
    app = worker.control.app
    marker = tmp_path / "victim"
    res = app.send_task("ct.touch_after", args=(str(marker), 20), queue="work")
    started = wait_for("the task to start", lambda: Path(str(marker) + ".started").exists() and
                       Path(str(marker) + ".started").read_text())
    pid = int(started)
    r = worker.control.revoke(res.id, terminate=True, signal="SIGTERM")
    assert r.ok, r.text
    assert res.id in r.text and worker.name in r.data

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie of the pool child also counts as stopped: it can no longer write the file.
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except OSError:
            return True

    wait_for("the pool process running the task to be terminated", gone)
    active = wait_for("the worker to report no active task",
                      lambda: (a := app.control.inspect(timeout=1).active()) is not None and
                      a.get(worker.name) == [] and a)
    assert active[worker.name] == []
    assert not marker.exists()  # the task never completed


def test_pool_grow_and_shrink_really_change_the_worker(worker: CeleryWorker, redis_server: RedisServer) -> None:
    def size() -> int | None:
        stats = worker.control.app.control.inspect(timeout=1, destination=[worker.name]).stats() or {}
        return queues_parse.pool_size(stats.get(worker.name, {}))

    assert size() == 2
    r = worker.control.pool_grow(worker.name, 2)
    assert r.ok and "pool will grow" in r.text
    wait_for("the pool to have 4 processes", lambda: size() == 4)
    r = worker.control.pool_shrink(worker.name, 1)
    assert r.ok and "pool will shrink" in r.text
    wait_for("the pool to have 3 processes", lambda: size() == 3)
    clock = Clock()
    c = collector([redis_server.url], clock)
    try:
        assert (c.collect().workers or [])[0].pool_size == 3
    finally:
        c.close()
    bad = worker.control.pool_grow("nobody@nowhere", 1)
    assert not bad.ok and bad.text.endswith("no worker replied")


def test_send_from_template_runs_the_task(worker: CeleryWorker, tmp_path: Path) -> None:
    out = tmp_path / "written"
    r = worker.control.send(load_template(APP_DIR / "send_task.toml"), {"path": str(out), "text": "ab", "times": "3"})
    assert r.ok and r.data["task_id"] in r.text
    wait_for("the task's file", lambda: out.exists() and out.read_text() == "ababab")
    refused = worker.control.send(load_template(APP_DIR / "send_task.toml"), {"times": "3"})
    assert not refused.ok and "parameter path is required" in refused.text


def test_shutdown_stops_the_worker_and_it_goes_offline(worker: CeleryWorker, redis_server: RedisServer) -> None:
    clock = Clock()
    c = collector([redis_server.url], clock)
    try:
        assert (c.collect().workers or [])[0].online is True
        r = worker.control.shutdown(worker.name)
        assert r.ok and "shutdown" in r.text.lower()
        wait_for("the worker process to exit", lambda: worker.proc.poll() is not None)
        clock.t += 31
        q = c.collect()
        (w,) = q.workers or []
        assert w.name == worker.name and w.online is False  # kept, shown offline
        work = next(x for x in q.queues or [] if x.name == "work")
        assert work.consumers == 0
    finally:
        c.close()


def test_growing_queue_without_consumer_is_flagged(worker: CeleryWorker, redis_server: RedisServer) -> None:
    app = worker.control.app
    clock = Clock()
    c = collector([redis_server.url], clock)
    flags = []
    try:
        for _ in range(3):
            app.send_task("ct.add", args=(1, 1), queue="backlog")
            app.send_task("ct.add", args=(1, 1), queue="work")  # consumed: drains, never flagged
            q = c.collect()
            flags.append({x.name: x.growing_unconsumed for x in q.queues or []})
            clock.t += 11
    finally:
        c.close()
    assert [f["backlog"] for f in flags] == [False, False, True]
    assert not any(f["work"] for f in flags)


def test_one_broker_down_others_report_all_down_raises(worker: CeleryWorker, redis_server: RedisServer) -> None:
    dead = f"redis://:secret@127.0.0.1:{free_port()}/0"
    c = collector([redis_server.url, dead])
    try:
        q = c.collect()
        assert any(x.name == "work" for x in q.queues or [])
        assert [w.name for w in q.workers or []] == [worker.name]
        assert redact(dead) == dead.replace(":secret@", "***@")
        errs = [e for e in q.errors or [] if e.startswith(f"broker {redact(dead)}: ")]
        assert errs and any("ConnectionError" in e for e in errs)
        assert not any("secret" in e for e in q.errors or [])
    finally:
        c.close()
    only_dead = collector([dead])
    try:
        with pytest.raises(CeleryUnreachable, match=r"Celery brokers unreachable: broker redis://\*\*\*@127.0.0.1"):
            only_dead.collect()
    finally:
        only_dead.close()


def test_configured_queues_and_no_celery_package(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_server.client()
    client.lpush("gpu", b"m1", b"m2")
    client.lpush("gpu" + queues_parse.SEP + "9", b"m3")
    client.set("notalist", b"x")  # someone else's key where a queue name was configured
    # Stand-in for a polling node without celery installed: the import machinery refuses it.
    monkeypatch.setitem(sys.modules, "celery", None)
    c = collector([redis_server.url], queues=["gpu", "absent", "notalist"])
    try:
        q = c.collect()
    finally:
        c.close()
    assert q.workers is None
    assert q.errors and "celery package not installed on poller" in q.errors[0]
    assert {x.name: x.depth for x in q.queues or []} == {"gpu": 3, "absent": 0, "notalist": None}
    assert all(x.consumers is None for x in q.queues or [])  # nobody asked the workers: unknown


# ---------------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rabbit() -> Iterator[Any]:
    from tests.support.rabbitmq import RabbitMQ, unavailable_reason

    why = unavailable_reason()
    if why is not None:
        print(f"\nSKIP RabbitMQ tests: {why}", file=sys.stderr)
        pytest.skip(why)
    try:
        server = RabbitMQ()
    except RuntimeError as e:
        print(f"\nSKIP RabbitMQ tests: rabbitmq-server cannot start here: {e}", file=sys.stderr)
        pytest.skip(f"rabbitmq-server cannot start here: {e}")
    try:
        yield server
    finally:
        server.stop()


def test_rabbitmq_depth_matches_management_api_and_published(rabbit: Any, tmp_path: Path) -> None:
    w = CeleryWorker(rabbit.amqp_url, queues="work", name="rw")
    try:
        w.wait_ready()
        app = w.control.app
        for i in range(25):
            app.send_task("ct.add", args=(i, i), queue="backlog")
        api = wait_for("RabbitMQ to count 25 messages in backlog",
                       lambda: (q := rabbit.api("/api/queues/%2F/backlog")).get("messages") == 25 and q)
        pw = tmp_path / "rabbit.pass"
        pw.write_text("guest\n")
        c = collector([rabbit.amqp_url], management_url=rabbit.management_url, management_user="guest",
                      management_password_file=str(pw))
        try:
            q = c.collect()
        finally:
            c.close()
        qs = {x.name: x for x in q.queues or []}
        assert qs["backlog"].depth == api["messages"] == 25
        assert qs["backlog"].ready == api["messages_ready"] and qs["backlog"].consumers == 0
        assert qs["work"].consumers == api_consumers(rabbit, "work") == 1
        assert qs["backlog"].kind == "rabbitmq" and qs["backlog"].broker == f"amqp://guest:***@127.0.0.1:{rabbit.port}//"
        assert [x.name for x in q.workers or []] == [w.name] and (q.workers or [])[0].pool_size == 2
        assert not any(n.endswith(".pidbox") or n.startswith("celeryev") for n in qs)
    finally:
        w.stop()


def api_consumers(rabbit: Any, name: str) -> int:
    return int(rabbit.api(f"/api/queues/%2F/{name}")["consumers"])


def test_rabbitmq_wrong_password_is_an_error_not_a_crash(rabbit: Any, tmp_path: Path) -> None:
    pw = tmp_path / "rabbit.pass"
    pw.write_text("wrong\n")
    c = collector([rabbit.amqp_url], management_url=rabbit.management_url, management_user="guest",
                  management_password_file=str(pw), inspect_interval=3600)
    try:
        with pytest.raises(CeleryUnreachable, match="management API refused guest: HTTP 401"):
            c.collect()
    finally:
        c.close()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers: a hung server."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def test_hung_broker_times_out_and_the_other_still_reports(redis_server: RedisServer, blackhole: int) -> None:
    redis_server.client().lpush("work", b"m")
    hung = f"redis://127.0.0.1:{blackhole}/0"
    c = collector([redis_server.url, hung], queues=["work"])
    try:
        q = c.collect()  # returns: every call has a timeout (request_timeout = 1 s here)
    finally:
        c.close()
    assert [(x.broker, x.depth) for x in q.queues or []] == [(redis_server.url, 1)]
    errs = [e for e in q.errors or [] if e.startswith(f"broker {hung}: ")]
    assert errs and any("Timeout" in e for e in errs), q.errors


def test_hung_management_api_times_out(blackhole: int) -> None:
    c = collector([f"amqp://u@127.0.0.1:{free_port()}//"], management_url=f"http://127.0.0.1:{blackhole}",
                  inspect_interval=3600)
    c.inspectors = []  # only the management API is under test here
    try:
        with pytest.raises(CeleryUnreachable, match="ReadTimeout"):
            c.collect()
    finally:
        c.close()
