"""Celery job control (clustertop/control/celery.py) on a broker whose apps set Celery's
``broker_transport_options={"global_keyprefix": ...}``: kombu prefixes the queue lists and the pub/sub channels
remote control travels on, so a command reaches the workers only with the same prefix.

A real Celery worker (tests/fixtures/queues/ct_celery_app.py, ``CT_BROKER_KEYPREFIX``) on a real redis-server;
the dashboard's settings come from a real config file through its real loader, the CLI runs as a process.
Nothing is faked (``Actions`` gets a plain holder of the settings in place of the Textual app: ``celery()``
reads nothing else of it).
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from clustertop.collectors import queues_parse
from clustertop.config import ConfigError
from clustertop.control.celery import CeleryControl, Result, keyprefix_problem, load_template
from clustertop.dashboard.settings import load_config
from tests.cli.test_steer_cli import ct
from tests.collectors.test_celery import APP_DIR, CeleryWorker, wait_for
from tests.conftest import RedisServer

PREFIX = "proj:"


def pool_size(w: CeleryWorker) -> int | None:
    stats = w.control.app.control.inspect(timeout=1, destination=[w.name]).stats() or {}
    return queues_parse.pool_size(stats.get(w.name, {}))


def gone(pid: int) -> bool:
    """The process ended (a zombie pool child counts: it can no longer write anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.heavy  # a real Celery worker
def test_revoke_pool_and_send_reach_a_worker_on_a_prefixed_broker(redis_server: RedisServer, tmp_path: Path) -> None:
    from clustertop.dashboard.actions import Actions

    w = CeleryWorker(redis_server.url, name="pfxctl", extra_env={"CT_BROKER_KEYPREFIX": PREFIX})
    unprefixed = CeleryControl(redis_server.url, timeout=1.0)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[dashboard]\ncelery_broker = "{redis_server.url}"\ncelery_broker_keyprefix = "{PREFIX}"\n')
    settings = load_config(str(cfg), env={}).settings("test")
    acts = Actions(types.SimpleNamespace(settings=settings))
    try:
        w.wait_ready()
        assert pool_size(w) == 2
        # Without the prefix the broadcast goes to channels nobody listens on: what this setting fixes.
        missed = unprefixed.pool_grow(w.name, 1)
        assert not missed.ok and missed.text.endswith("no worker replied"), missed.text
        assert pool_size(w) == 2

        # The dashboard's Celery client, made from its config file: grow and shrink really change the pool.
        ctl = acts.celery()
        assert (ctl.broker_keyprefix, ctl.backend_keyprefix) == (PREFIX, "")
        r = ctl.pool_grow(w.name, 2)
        assert r.ok and "pool will grow" in r.text, r.text
        wait_for("the pool to have 4 processes", lambda: pool_size(w) == 4)
        r = ctl.pool_shrink(w.name, 1)
        assert r.ok and "pool will shrink" in r.text, r.text
        wait_for("the pool to have 3 processes", lambda: pool_size(w) == 3)

        # Send from a template: published to the prefixed queue list, where the worker takes it.
        out = tmp_path / "written"
        r = ctl.send(load_template(APP_DIR / "send_task.toml"), {"path": str(out), "text": "ab", "times": "3"})
        assert r.ok, r.text
        wait_for("the sent task's file", lambda: out.exists() and out.read_text() == "ababab")

        # Revoke with terminate: the pool process running the task is killed, the task never ends.
        marker = tmp_path / "victim"
        res = ctl.app.send_task("ct.touch_after", args=(str(marker), 60), queue="work")
        started = Path(str(marker) + ".started")
        pid = int(wait_for("the task to start", lambda: started.exists() and started.read_text()))
        r = ctl.revoke(res.id, terminate=True, signal="SIGTERM")
        assert r.ok and res.id in r.text and w.name in r.data, r.text
        wait_for("the pool process running the task to be terminated", lambda: gone(pid))
        assert not marker.exists()

        # The CLI, as a process: the prefix from the environment, then from the flag; without it: no reply.
        env = {"CLUSTERTOP_CELERY_BROKER_KEYPREFIX": PREFIX}
        out_env = ct("celery", "pool", w.name, "+1", "--broker", redis_server.url, env=env)
        assert out_env.returncode == 0 and "pool will grow" in out_env.stdout, out_env.stderr + out_env.stdout
        wait_for("the pool to have 4 processes", lambda: pool_size(w) == 4)
        out_flag = ct("celery", "pool", w.name, "-1", "--broker", redis_server.url, "--broker-keyprefix", PREFIX)
        assert out_flag.returncode == 0, out_flag.stderr + out_flag.stdout
        wait_for("the pool to have 3 processes", lambda: pool_size(w) == 3)
        out_none = ct("celery", "pool", w.name, "+1", "--broker", redis_server.url, "--timeout", "1")
        assert out_none.returncode == 1 and "no worker replied" in out_none.stderr + out_none.stdout
        assert pool_size(w) == 3
    finally:
        acts.close()
        unprefixed.close()
        w.stop()


def test_bad_prefix_is_named_where_it_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One rule (the celery collector's keyprefix_problem) for the dashboard's file, environment and flags,
    the CLI's flags and environment, and the control object itself."""
    from clustertop.cli import modes
    from clustertop.cli.main import build_parser

    for k in [k for k in os.environ if k.startswith("CLUSTERTOP_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no config file of the developer's
    args = build_parser().parse_args(["dashboard", "--celery-broker-keyprefix", "p:", "--celery-backend-keyprefix", "r"])
    flagged = modes.config_for(args).settings("t")
    assert (flagged.celery_broker_keyprefix, flagged.celery_backend_keyprefix) == ("p:", "r")
    cfg = tmp_path / "dash.toml"
    for value, why in (('""', "empty"), ('"a\\u001b[2J"', "control characters"), ('"' + "x" * 200 + '"', "200")):
        cfg.write_text(f'[dashboard]\ncelery_broker_keyprefix = {value}\n')
        with pytest.raises(ConfigError, match=rf"dash\.toml: \[dashboard\] celery_broker_keyprefix: .*{why}"):
            load_config(str(cfg), env={})
    cfg.write_text('[dashboard]\ncelery_backend_keyprefix = 7\n')
    with pytest.raises(ConfigError, match=r"dash\.toml: \[dashboard\] celery_backend_keyprefix"):
        load_config(str(cfg), env={})
    with pytest.raises(ConfigError, match=r"CLUSTERTOP_CELERY_BACKEND_KEYPREFIX: .*control characters"):
        load_config(None, env={"CLUSTERTOP_CELERY_BACKEND_KEYPREFIX": "r\x07"})
    with pytest.raises(ConfigError, match=r"--celery-broker-keyprefix: .*characters"):
        load_config(None, env={}, flags={"celery_broker_keyprefix": "y" * 129})
    ok = load_config(None, env={"CLUSTERTOP_CELERY_BROKER_KEYPREFIX": "p:"}).settings("t")
    assert (ok.celery_broker_keyprefix, ok.celery_backend_keyprefix) == ("p:", "")

    assert keyprefix_problem("p:", "redis://h/0") is None and keyprefix_problem(None, "amqp://h//") is None
    assert "Redis only" in (keyprefix_problem("p:", "amqp://u:secret@h//") or "")
    assert "secret" not in (keyprefix_problem("p:", "amqp://u:secret@h//") or "")
    # A prefix on a RabbitMQ broker is refused when used, in words; nothing is sent, nothing raised.
    amqp = CeleryControl("amqp://u:secret@127.0.0.1:1//", timeout=0.5, broker_keyprefix="p:")
    r = amqp.revoke("t1")
    assert not r.ok and "broker_keyprefix: applies to Redis only" in r.text and "secret" not in r.text
    no_backend = CeleryControl("redis://127.0.0.1:1/0", timeout=0.5, backend="redis://127.0.0.1:1/1",
                               backend_keyprefix="\x1b[2J").retry_plan("t1")
    assert isinstance(no_backend, Result) and "backend_keyprefix: " in no_backend.text and not no_backend.ok

    # The CLI: refused before any broker talk, exit 2, the flag and the variable named, the value escaped.
    bad = ct("celery", "revoke", "t1", "--broker", "redis://127.0.0.1:1/0", "--broker-keyprefix", "a\x1b[2J")
    assert bad.returncode == 2 and "--broker-keyprefix" in bad.stderr and "\x1b" not in bad.stderr, bad.stderr
    bad = ct("celery", "pool", "w@h", "+1", "--broker", "amqp://h//", env={"CLUSTERTOP_CELERY_BROKER_KEYPREFIX": "p"})
    assert bad.returncode == 2 and "CLUSTERTOP_CELERY_BROKER_KEYPREFIX" in bad.stderr and "Redis only" in bad.stderr
    bad = ct("celery", "retry", "t1", "--broker", "redis://127.0.0.1:1/0", "--backend-keyprefix", "r", "--yes")
    assert bad.returncode == 2 and "--backend-keyprefix" in bad.stderr and "without the Redis URL" in bad.stderr
