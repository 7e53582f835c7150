"""Retry (clustertop/control/celery.py ``retry_plan``/``retry``) of tasks whose results a worker stored in msgpack
(Celery's ``result_serializer="msgpack"``) and in pickle, on a prefixed broker and result backend.

Real Celery workers (tests/fixtures/queues/ct_celery_app.py with ``CT_RESULT_SERIALIZER``, ``CT_BROKER_KEYPREFIX``,
``CT_BACKEND_KEYPREFIX``) on a real redis-server; the CLI runs as a process. A msgpack result is read and the task
re-sent with its own name, args, kwargs and queue; a pickled one is never unpickled (its unpickling would create
a file: none appears) and the refusal says why. The pure decoder is fed kombu's real serializer output.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
import redis

from clustertop.collectors import celery_groups
from clustertop.control.celery import CeleryControl, Result, RetryPlan, UnreadableResult, decode_meta
from tests.cli.test_steer_cli import audit, ct
from tests.collectors.test_celery import CeleryWorker, wait_for
from tests.collectors.test_celery_groups import backend_url, close_client
from tests.collectors.test_celery_keyprefix import BACKEND_P, BROKER_P, client, env
from tests.conftest import RedisServer

PICKLE_NOTE = "result serializer pickle: not read (unsafe"


@pytest.mark.heavy  # two real Celery workers
def test_retry_reads_msgpack_results_and_never_unpickles(redis_server: RedisServer, tmp_path: Path) -> None:
    be = backend_url(redis_server)
    mp = CeleryWorker(redis_server.url, name="mp", backend=be, extra_env=env("msgpack"))
    pk = CeleryWorker(redis_server.url, queues="pkl", name="pk", backend=be, extra_env=env("pickle"))
    app_mp, app_pk = client(redis_server.url, be, "msgpack"), client(redis_server.url, be, "pickle")
    ctl = CeleryControl(redis_server.url, timeout=2.0, backend=be, broker_keyprefix=BROKER_P,
                        backend_keyprefix=BACKEND_P)
    unprefixed = CeleryControl(redis_server.url, timeout=2.0, backend=be, broker_keyprefix=BROKER_P)
    rb = redis.Redis.from_url(be)
    try:
        mp.wait_ready()
        pk.wait_ready()
        first = app_mp.send_task("ct.maybe_fail", args=(3,), kwargs={"fail_every": 3})
        wait_for("the task to fail", lambda: first.state == "FAILURE")
        raw = rb.get(f"{BACKEND_P}_celery-task-meta-{first.id}")
        assert raw is not None and celery_groups.serializer_of(raw[:16]) == "msgpack"  # what the worker wrote

        plan = ctl.retry_plan(first.id)
        assert isinstance(plan, RetryPlan), plan
        assert (plan.name, plan.args, plan.kwargs, plan.queue, plan.state) == (
            "ct.maybe_fail", [3], {"fail_every": 3}, "work", "FAILURE")
        r = ctl.retry(plan)
        assert r.ok and r.data["task_id"] != first.id, r.text
        again = app_mp.AsyncResult(r.data["task_id"])
        wait_for("the retried task to run on the worker", lambda: again.state == "FAILURE")
        assert (again.name, again.args, again.kwargs, again.worker) == ("ct.maybe_fail", [3], {"fail_every": 3}, mp.name)
        # The backend's prefix is needed to find the result at all.
        missed = unprefixed.retry_plan(first.id)
        assert isinstance(missed, Result) and "no result in the backend" in missed.text

        # A pickled result (its unpickling would create ``wire``): refused in words, nothing unpickled.
        wire = tmp_path / "unpickled"
        trap = app_pk.send_task("ct.tripwire", args=(str(wire),), queue="pkl")
        key = f"{BACKEND_P}_celery-task-meta-{trap.id}"
        wait_for("the pickled result", lambda: rb.exists(key))
        assert rb.getrange(key, 0, 0) == b"\x80"
        refused = ctl.retry_plan(trap.id)
        assert isinstance(refused, Result) and not refused.ok and PICKLE_NOTE in refused.text, refused
        assert not wire.exists()

        # The CLI: shown, sent, audited; the pickled one refused (audited too), still nothing unpickled.
        common = ["--broker", redis_server.url, "--broker-keyprefix", BROKER_P, "--backend", be,
                  "--backend-keyprefix", BACKEND_P, "--redis", redis_server.url, "--operator", "bob"]
        out = ct("celery", "retry", first.id, "--yes", *common)
        assert out.returncode == 0, out.stderr + out.stdout
        assert '"fail_every": 3' in out.stdout and "new task id" in out.stdout
        new_id = out.stdout.rsplit("new task id ", 1)[1].split()[0]
        wait_for("the CLI's retry to run", lambda: app_mp.AsyncResult(new_id).state == "FAILURE")
        out = ct("celery", "retry", trap.id, "--yes", *common)
        assert out.returncode == 1 and PICKLE_NOTE in out.stderr, out.stderr + out.stdout
        assert not wire.exists()
        got = [(e.action, e.result.split(":")[0], e.actor) for e in audit(redis_server)]
        assert got == [("celery.retry", "ok", "bob"), ("celery.retry", "refused", "bob")]
    finally:
        rb.close()
        ctl.close()
        unprefixed.close()
        close_client(app_mp)
        close_client(app_pk)
        mp.stop()
        pk.stop()


def test_decode_meta_reads_json_and_msgpack_only(tmp_path: Path) -> None:
    from kombu.serialization import dumps

    meta = {"status": "FAILURE", "result": {"exc_type": "ValueError"}, "name": "t.x", "args": [1, "a"],
            "kwargs": {"k": 2.5}, "queue": "q", "task_id": "t" * 36}
    seen: list[bytes] = []

    def json_decode(raw: bytes) -> object:  # stands for the backend's decode_result: records what it is given
        seen.append(raw)
        return "decoded by the backend"

    _c, _e, as_json = dumps(meta, serializer="json")
    assert decode_meta(as_json.encode(), json_decode) == "decoded by the backend" and seen == [as_json.encode()]
    _c, _e, as_msgpack = dumps(meta, serializer="msgpack")
    assert decode_meta(as_msgpack, json_decode) == meta
    assert decode_meta(None, json_decode) == {"status": "PENDING", "result": None}
    wire = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(wire), "w"))

    _c, _e, as_pickle = dumps({**meta, "result": Trap()}, serializer="pickle")
    with pytest.raises(UnreadableResult, match=r"^result serializer pickle: not read \(unsafe"):
        decode_meta(as_pickle, json_decode)
    assert not wire.exists()
    _c, _e, as_yaml = dumps(meta, serializer="yaml")
    with pytest.raises(UnreadableResult, match=r"^result serializer yaml: not read"):
        decode_meta(as_yaml.encode(), json_decode)
    # Hostile bytes in the backend: said in words, never raised past UnreadableResult.
    ext = msgspec.msgpack.encode({"status": "SUCCESS", "args": [msgspec.msgpack.Ext(7, b"x")]})
    for bad, why in ((as_msgpack[:-3], "not valid msgpack"), (b"\x81\xa6status" + b"\x91" * 1_000_000 + b"\xc0",
                                                              "not valid msgpack"),
                     (ext, "extension type 7"), (b"\x00\xff", "unknown")):
        with pytest.raises(UnreadableResult, match=why):
            decode_meta(bad, json_decode)
    assert os.listdir(tmp_path) == []


def test_retry_plan_of_hostile_backend_content(redis_server: RedisServer) -> None:
    """Whatever someone who can write the backend stored (written here straight into a real redis-server, in
    the key layout Celery's Redis backend uses): a plan with the values as stored, or a refusal in words."""
    from kombu.serialization import dumps

    be = backend_url(redis_server)
    ctl = CeleryControl(redis_server.url, timeout=2.0, backend=be)
    rb = redis.Redis.from_url(be)
    good = {"status": "FAILURE", "result": None, "name": "t.\u202ex", "args": [b"\xff", 2**64 - 1], "kwargs": {"k": None},
            "queue": "q\x1b[2J", "task_id": "a"}
    stored = {
        "ok": dumps(good, serializer="msgpack")[2],
        "int-keys": msgspec.msgpack.encode({**good, "kwargs": {1: 2}}),
        "ext": msgspec.msgpack.encode({**good, "args": [msgspec.msgpack.Ext(1, b"")]}),
        "pickled": dumps(good, serializer="pickle")[2],
        "huge": msgspec.msgpack.encode({**good, "args": ["x" * (4 * 1024 * 1024)]}),
        "no-name": msgspec.msgpack.encode({"status": "SUCCESS", "result": 1}),
    }
    try:
        for tid, raw in stored.items():
            rb.set(f"celery-task-meta-{tid}", raw)
        plan = ctl.retry_plan("ok")
        assert isinstance(plan, RetryPlan), plan
        assert (plan.name, plan.args, plan.kwargs, plan.queue) == ("t.\u202ex", [b"\xff", 2**64 - 1], {"k": None}, "q\x1b[2J")
        for tid, why in (("int-keys", "not a list and a mapping of names"), ("ext", "extension type 1"),
                         ("pickled", PICKLE_NOTE), ("huge", "over 4194304 bytes"), ("no-name", "result_extended"),
                         ("absent", "no result in the backend")):
            got = ctl.retry_plan(tid)
            assert isinstance(got, Result) and not got.ok and why in got.text, (tid, got)
    finally:
        rb.close()
        ctl.close()
