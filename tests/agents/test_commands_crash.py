"""An agent SIGKILLed in the middle of a command: on restart nothing runs twice, and the command
gets exactly one result saying it was interrupted. Real executor process, real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.control import commands as cc
from clustertop.control import signing
from tests.agents.test_commands import audits, pending, results
from tests.conftest import FIXTURES, ROOT

NODE = "node-crash"


def wait_for(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("mode", ["hang-before", "hang-after"])
def test_agent_killed_mid_command_does_not_run_it_twice(redis_server, tmp_path, mode):
    kp, pub, _ = signing.generate(str(tmp_path / "k"), "ops")
    key = signing.load_private(kp)
    ready, out, state = tmp_path / "ready", tmp_path / "ran.txt", str(tmp_path / "state")
    agent = subprocess.Popen([sys.executable, str(FIXTURES / "commands" / "run_executor.py"), redis_server.url,
                              NODE, pub, state, mode, str(ready)],
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    client = redis_server.client()
    try:
        cmd = signing.sign(cc.build(NODE, "launch", {"template": "append"}, {"path": str(out)}, operator="t"), key)
        cc.send(client, cmd)
        wait_for(ready.exists, what="the agent to reach the crash point")
        assert client.get(wire.seen_key(NODE, cmd.id)) == b"running"  # marker first ...
        assert results(client, NODE) == []  # ... result not yet
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    if mode == "hang-after":  # the task itself ran once (own session: it outlives the agent)
        wait_for(lambda: out.exists() and out.read_text() == "ran\n", what="the task's output")
    assert pending(client, NODE) == 1

    # The restarted agent (a fresh executor: no memory of the command) looks at its pending list.
    ex = CommandExecutor(redis_server.client, NODE, {"security": {"operator_keys": [pub]}, "templates": {
        "append": {"argv": [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('ran\\n')", "{path}"],
                   "params": {"path": "str"}}}}, state_dir=state, block_ms=50)
    ex.client = redis_server.client()
    ex.ensure_group()
    assert ex.process_pending() == 1
    [res] = results(client, NODE)
    assert (res.id, res.ok, res.status) == (cmd.id, False, "failed")
    assert res.reason == "interrupted (the agent stopped mid-command), not re-run"
    assert pending(client, NODE) == 0
    assert client.get(wire.seen_key(NODE, cmd.id)) == b"done"
    [a] = audits(client, NODE)
    assert a.command_id == cmd.id and a.result.startswith("failed: interrupted")

    # Sending it yet again changes nothing: refused as a replay, still one result.
    cc.send(client, cmd)
    assert ex.poll_once() == 1
    assert [r.id for r in results(client, NODE)] == [cmd.id]
    assert "replayed" in audits(client, NODE)[-1].result
    # No task launched by the restarted executor: only the one the earlier life ran (adopted from its record). It
    # wrote its line before it exited: on a loaded machine it may still be running for a moment, so wait for its end.
    if mode == "hang-after":
        wait_for(lambda: [(t.template, t.state == "running") for t in ex.tasks()] == [("append", False)],
                 what="the adopted task to be seen ended")
    else:
        assert ex.tasks() == []
    expected = "ran\n" if mode == "hang-after" else None
    assert (out.read_text() if out.exists() else None) == expected
