"""Celery's key prefixes and result serializers in the ``celery`` collector (collectors/celery.py,
celery_groups.py): a real Celery worker (tests/fixtures/queues/ct_celery_app.py) whose broker has
``broker_transport_options={"global_keyprefix": ...}`` and whose Redis result backend has
``result_backend_transport_options={"global_keyprefix": ...}`` and ``result_serializer="msgpack"``, on a real
redis-server: queue depths, workers, task history, chord and group progress all read through the prefixes,
the msgpack results read. A worker with ``result_serializer="pickle"``: its results are never unpickled (a
result whose unpickling would create a file leaves none) and the groups say so. The pure parts are fed real
kombu serializer output. Nothing is faked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, group

from clustertop.collectors import celery_groups
from clustertop.collectors.celery import backend_keyprefix, parse_settings
from clustertop.collectors.queues_parse import glob_escape
from clustertop.config import ConfigError
from tests.collectors.test_celery import CeleryWorker, collector, wait_for
from tests.collectors.test_celery_groups import backend_url, close_client, groups_of, run_and_check
from tests.conftest import RedisServer

BROKER_P, BACKEND_P = "proj:", "res"  # Celery makes the backend's "res_"


def client(broker: str, backend: str, serializer: str) -> Any:
    app = Celery("ct-client", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(task_default_queue="work", result_extended=True,
                    broker_transport_options={"global_keyprefix": BROKER_P},
                    result_backend_transport_options={"global_keyprefix": BACKEND_P},
                    result_serializer=serializer, result_accept_content=["json", serializer])
    return app


def env(serializer: str) -> dict[str, str]:
    return {"CT_BROKER_KEYPREFIX": BROKER_P, "CT_BACKEND_KEYPREFIX": BACKEND_P, "CT_RESULT_SERIALIZER": serializer}


@pytest.mark.heavy  # a real Celery worker
def test_prefixed_broker_and_backend_with_msgpack_results(redis_server: RedisServer) -> None:
    be = backend_url(redis_server)
    w = CeleryWorker(redis_server.url, name="pfx", events=True, backend=be, extra_env=env("msgpack"))
    c = collector([redis_server.url], clock=time.monotonic, inspect_interval=0.5, result_backend=be,  # type: ignore[arg-type]
                  broker_keyprefix=BROKER_P, result_backend_keyprefix=BACKEND_P)
    app = client(redis_server.url, be, "msgpack")
    try:
        w.wait_ready()
        wait_for("the event receiver to listen", lambda: c.streams[0].since is not None)
        # Queued where no worker consumes: kombu keeps it in "proj:idle", which the collector counts.
        for i in range(5):
            app.send_task("ct.add", args=(i, 1), queue="idle")
        broker = redis_server.client()
        assert broker.llen(BROKER_P + "idle") == 5 and not broker.exists("idle")

        def idle() -> Any:
            q = c.collect()
            return q if any(x.name == "idle" and x.depth == 5 for x in q.queues or ()) else None

        q = wait_for("the prefixed queue's depth", idle)
        # Remote control over the prefixed channels: the worker is listed, online, consuming "work".
        assert any(x.name == w.name and x.online for x in q.workers or ()), q.workers
        # A chord and a saved group: their progress through the backend's prefix, results in msgpack.
        run_and_check(app, c)
        backend = redis.Redis.from_url(be)
        metas = backend.keys("res_celery-task-meta-*")
        assert metas and not backend.keys("celery-task-meta-*")
        assert all(celery_groups.serializer_of(backend.getrange(k, 0, 15)) == "msgpack" for k in metas[:20])
        assert not any(g.note for g in groups_of(c).values())
    finally:
        close_client(app)
        c.close()
        w.stop()


@pytest.mark.heavy  # a real Celery worker
def test_pickled_results_are_never_unpickled(redis_server: RedisServer, tmp_path: Path) -> None:
    be = backend_url(redis_server)
    w = CeleryWorker(redis_server.url, name="pkl", backend=be, extra_env=env("pickle"))
    c = collector([redis_server.url], clock=time.monotonic, inspect_interval=0.5, result_backend=be,  # type: ignore[arg-type]
                  broker_keyprefix=BROKER_P, result_backend_keyprefix=BACKEND_P, task_events=False)
    app = client(redis_server.url, be, "pickle")
    wires = [str(tmp_path / f"unpickled-{i}") for i in range(3)]
    try:
        w.wait_ready()
        saved = group(app.signature("ct.tripwire", args=(p,)) for p in wires).apply_async()
        saved.save()
        backend = redis.Redis.from_url(be)
        wait_for("the three pickled results", lambda: all(
            backend.exists(f"res_celery-task-meta-{r.id}") for r in saved.results))
        assert backend.getrange(f"res_celery-task-meta-{saved.results[0].id}", 0, 1)[:1] == b"\x80"  # pickle
        for _ in range(3):
            g = groups_of(c).get(saved.id)
        assert g is not None, groups_of(c)
        assert g.note == "result serializer pickle: not read (unsafe: unpickling runs code from the network)"
        assert (g.done, g.failed, g.ended) == (None, None, None)  # unknown, not "0 done"
        q = c.collect()
        assert q.celery_groups is not None and q.celery_groups.note is not None
        assert "pickle: not read (unsafe" in q.celery_groups.note
        assert not any(os.path.exists(p) for p in wires)  # nothing was unpickled here
    finally:
        close_client(app)
        c.close()
        w.stop()


def test_serializers_told_apart_by_their_real_output() -> None:
    from kombu.serialization import dumps

    meta = {"status": "SUCCESS", "result": [1, "x" * 500], "traceback": None, "children": [], "date_done": "d",
            "task_id": "t" * 36}
    got = {}
    for name in ("json", "msgpack", "pickle", "yaml"):
        _ctype, _enc, data = dumps(meta, serializer=name)
        raw = data if isinstance(data, bytes) else data.encode()
        got[name] = (celery_groups.serializer_of(raw[:64]), celery_groups.status_of(raw[:64]))
    assert got == {"json": ("json", "SUCCESS"), "msgpack": ("msgpack", "SUCCESS"), "pickle": ("pickle", None),
                   "yaml": ("yaml", None)}
    _c, _e, tail = dumps({"status": "FAILURE", "result": {"exc_type": "ZeroDivisionError"}}, serializer="msgpack")
    assert celery_groups.status_of(tail[:64]) == "FAILURE"
    # A saved group (GroupResult.as_tuple) in msgpack; pickle refused with the reason, never loaded.
    tup = {"result": [["g1", None], [[["m1", None], None], [["m2", None], None]]]}
    assert celery_groups.taskset_members(dumps(tup, serializer="msgpack")[2]) == ["m1", "m2"]
    with pytest.raises(ValueError, match=r"^result serializer pickle: not read \(unsafe"):
        celery_groups.taskset_members(dumps(tup, serializer="pickle")[2])
    with pytest.raises(ValueError, match=r"^not valid msgpack"):
        celery_groups.taskset_members(b"\x82\xa6result")  # cut short
    for deep in (b"\x91" * 1_000_000 + b"\xc0", b"[" * 1_000_000):  # whoever writes the backend: one group's note
        with pytest.raises(ValueError, match=r"^not valid (msgpack|json)"):
            celery_groups.taskset_members(b"\x81\xa6result" + deep if deep[:1] == b"\x91" else b"{\"result\": " + deep)
    # Hostile prefixes: nothing read as a state, nothing raised.
    for junk in (b"\x81\xa6status\xa3bad", b"\x81\xa6status\xd9\xff", b"\xdf\x00", b"\x81\xa5statu", b"\x80\x09",
                 b"\xff\xfe", b""):
        assert celery_groups.status_of(junk) is None, junk
    assert celery_groups.group_key(b"res_celery-taskset-meta-g1.d", b"res_celery-taskset-meta-") == ("g1", b".d")
    assert celery_groups.group_key(b"celery-taskset-meta-g1", b"res_celery-taskset-meta-") is None


def test_key_prefix_settings_name_file_and_key() -> None:
    ok = parse_settings({"brokers": ["redis://h/0"], "broker_keyprefix": "p:", "result_backend": "redis://h/1",
                         "result_backend_keyprefix": "r"}, "agent.toml")
    assert (ok.broker_keyprefix, ok.result_backend_keyprefix) == ("p:", "r_")  # "_" added as Celery adds it
    assert backend_keyprefix("r.") == "r." and backend_keyprefix("") == ""
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    for opts, key, why in (
            ({"broker_keyprefix": ""}, "broker_keyprefix", "empty"),
            ({"broker_keyprefix": "x" * 200}, "broker_keyprefix", "200 characters"),
            ({"broker_keyprefix": "a\x1b[2J"}, "broker_keyprefix", "control characters"),
            ({"result_backend_keyprefix": "r"}, "result_backend_keyprefix", "needs result_backend"),
            ({"brokers": ["amqp://h//"], "broker_keyprefix": "p"}, "broker_keyprefix", "Redis brokers only"),
            ({"broker_keyprefix": 5}, "broker_keyprefix", "")):
        with pytest.raises(ConfigError, match=rf"agent\.toml: \[collectors\.celery\] {key}: .*{why}"):
            parse_settings({"brokers": ["redis://h/0"], **opts}, "agent.toml")
