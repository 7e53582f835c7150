"""End to end: a real `clustertop agent` process with [security] obeys a signed `clustertop kill` /
`launch` from the CLI (real subprocesses, real redis-server), and reports launched tasks in its snapshot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from clustertop import wire
from clustertop.control import signing
from clustertop.read.reader import Reader
from clustertop.wire import schema
from tests.conftest import ROOT

PY = sys.executable


def _env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    e["PYTHONPATH"] = str(ROOT)
    return e


def _wait(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_agent_process_executes_signed_kill_and_launch(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    keyfile = str(tmp_path / "keys" / "ops.key")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
[agent]
node = "e2e"
interval = 0.5
state_dir = "{tmp_path / 'state'}"

[collectors.nfs]
enabled = false

[security]
operator_keys = ["{pub}"]
allow_root = true

[templates.nap]
argv = ["sleep", "{{seconds}}"]
params = {{ seconds = "int" }}
""")
    victim = subprocess.Popen(["sleep", "300"])
    agent = subprocess.Popen([PY, "-m", "clustertop", "agent", "--config", str(cfg), "--redis", redis_server.url],
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        reader = Reader(redis_server.client())
        assert _wait(lambda: (n := reader.read().node("e2e")) is not None and n.state == "up"), "agent never published"
        # The operator pins the node's key (the .pub the agent wrote beside its node.key at first start).
        known = str(tmp_path / "known_nodes")
        r = subprocess.run([PY, "-m", "clustertop", "enrol", "e2e", "--key", str(tmp_path / "state" / "node.pub"),
                            "--known-nodes", known], env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        # The victim is a sleep: rarely among the snapshot's top processes, so the script names it
        # exactly (start ticks, /proc/PID/stat field 22); the snapshot it is checked against is signed.
        ticks = Path(f"/proc/{victim.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        r = subprocess.run([PY, "-m", "clustertop", "kill", "e2e", str(victim.pid), "--start-ticks", ticks,
                            "--known-nodes", known, "--key", keyfile, "--redis", redis_server.url],
                           env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"e2e: sent TERM to pid {victim.pid}" in r.stdout  # the node's own, verified answer
        assert victim.wait(10) == -15  # SIGTERM, delivered by the agent

        r = subprocess.run([PY, "-m", "clustertop", "launch", "nap", "--node", "e2e", "seconds=120",
                            "--known-nodes", known, "--key", keyfile, "--redis", redis_server.url],
                           env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "e2e: launched nap as task" in r.stdout

        def task_listed() -> bool:
            n = reader.read().node("e2e")
            return bool(n and n.snap and n.snap.tasks and n.snap.tasks[0].template == "nap"
                        and n.snap.tasks[0].state == "running")
        assert _wait(task_listed), "launched task not in the snapshot"
        # every command is in the audit stream with its outcome
        audit = [wire.decode(f[b"a"], schema.AuditEntry)
                 for _, f in redis_server.client().xrange(wire.node_audit_key("e2e"))]
        assert [a.action for a in audit] == ["signal", "launch"] and all(a.result == "ok" for a in audit)
        # ... and in the operator's own stream (ops.key: operator "ops"), as sent.
        sent = [wire.decode(f[b"a"], schema.AuditEntry)
                for _, f in redis_server.client().xrange(wire.operator_audit_key("ops"))]
        assert [(a.action, a.actor, a.result) for a in sent] == [("signal", "ops", "sent"), ("launch", "ops", "sent")]
    finally:
        children = psutil.Process(agent.pid).children(recursive=True) if agent.poll() is None else []
        agent.terminate()
        agent.wait(10)
        for p in [*children]:
            if p.is_running():
                p.kill()
        if victim.poll() is None:
            victim.kill()
