"""The real agent process (`python -m clustertop agent`) against a real redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

from clustertop.read.reader import Reader
from tests.conftest import ROOT, free_port


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "NOTIFY_", "WATCHDOG_"))}
    env.update(extra)
    return env


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "clustertop", "agent", *args]


def wait_for(pred, timeout: float = 30.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return None


def test_once_publishes_a_snapshot_reader_can_use(redis_server) -> None:  # type: ignore[no-untyped-def]
    r = subprocess.run(agent_cmd("--once", "--redis", redis_server.url, "--node", "once-node"),
                       capture_output=True, text=True, env=agent_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    state = Reader(redis_server.client()).read()
    view = state.node("once-node")
    assert view is not None and view.state == "up"
    snap = view.snap
    assert snap is not None and snap.host == "once-node" and snap.seq == 1
    # Every default collector reports a status, whatever it found on this machine.
    assert {"host", "gpu", "bonds", "nfs"} <= set(snap.collectors)
    assert snap.agent is not None and snap.agent.pid and snap.agent.version
    # The keys expire (the digest's is how a node goes stale; the full snapshot's outlives its 15 s cadence)
    # and history got its first point.
    client = redis_server.client()
    assert 0 < client.pttl("ct:v1:digest:{once-node}") <= 3000
    assert 15_000 < client.pttl("ct:v1:node:{once-node}") <= 18_000 and snap.full_every_s == 15.0
    assert client.xlen("ct:v1:hist:{once-node}") == 1


def test_once_without_redis_fails_cleanly() -> None:
    port = free_port()  # nothing listens here
    r = subprocess.run(agent_cmd("--once", "--redis", f"redis://:pw@127.0.0.1:{port}/0", "--node", "n"),
                       capture_output=True, text=True, env=agent_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 1
    assert "cannot publish" in r.stderr and "Traceback" not in r.stderr
    assert ":pw@" not in r.stderr  # the password never reaches the log


@pytest.fixture
def late_redis() -> Iterator[dict[str, object]]:
    """A port where redis-server is NOT running yet; the test starts it via info['start']()."""
    port = free_port()
    datadir = tempfile.mkdtemp(prefix="ct-redis-late-")
    info: dict[str, object] = {"port": port, "url": f"redis://127.0.0.1:{port}/0", "proc": None}

    def start() -> None:
        info["proc"] = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", datadir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        assert wait_for(lambda: _ping(client), 10), "redis-server did not start"

    info["start"] = start
    yield info
    proc = info["proc"]
    if isinstance(proc, subprocess.Popen):
        proc.terminate()
        proc.wait(10)
    shutil.rmtree(datadir, ignore_errors=True)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_agent_survives_redis_down_and_publishes_after_it_starts(late_redis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log_path = tmp_path / "agent.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(agent_cmd("--redis", str(late_redis["url"]), "--node", "phoenix",
                                          "--interval", "0.2"),
                                stdout=subprocess.DEVNULL, stderr=log, env=agent_env(), cwd=ROOT)
    try:
        # Down: the agent notices, says so once, and keeps running.
        assert wait_for(lambda: "cannot publish" in log_path.read_text(), 60), log_path.read_text()
        time.sleep(1.5)  # several ticks of outage (and back-off rounds), not an assertion on speed
        assert proc.poll() is None, log_path.read_text()
        late_redis["start"]()  # type: ignore[operator]
        reader = Reader(redis.Redis(port=int(late_redis["port"])))  # type: ignore[arg-type]

        def published():  # type: ignore[no-untyped-def]
            view = reader.read().node("phoenix")
            return view.snap if view is not None and view.state == "up" else None

        snap = wait_for(published, 60)
        assert snap is not None, log_path.read_text()
        assert snap.agent is not None and snap.agent.publish_errors >= 2
        # It keeps publishing: a later snapshot follows.
        later = wait_for(lambda: (s := published()) is not None and s.seq > snap.seq and s, 30)
        assert later
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert text.count("cannot publish") == 1, text  # once per outage, not once per tick
    assert "publishing to redis://127.0.0.1" in text and "again" in text
    assert "Traceback" not in text
