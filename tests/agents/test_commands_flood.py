"""A hostile Redis writer floods a node's command stream with huge entries: the agent stays small.

Found in review: ten 40 MB entries, read 10 per XREADGROUP and unbounded, took an agent to 548 MB RSS;
inside the unit's MemoryMax=256M it was OOM-killed, and again on every restart (it re-reads its pending
entries). Here a real ``clustertop agent`` process on a real redis-server meets the same ten entries,
half of them already pending from an "earlier life" that read them and died: its peak RSS (VmHWM) must
stay far below the unit's limit, every entry is refused and acknowledged, and a restart reads none again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustertop import wire
from clustertop.agents.commands import CMD_MAX_BYTES, GROUP, CommandExecutor
from clustertop.control import commands as cc
from clustertop.control import signing
from clustertop.store import resp
from clustertop.wire import schema
from tests.agents.test_commands import start_ticks
from tests.conftest import ROOT

PY = sys.executable
NODE = "flooded"
ENTRY_BYTES = 40 * 1024 * 1024
ENTRIES = 10
#: The unit's MemoryMax is 256 MB; an idle agent here is ~40 MB. 120 MB leaves room for the collectors,
#: and none for even three of the entries.
RSS_LIMIT = 120 * 1024 * 1024
REFUSED = "over the 64 KiB limit"


def _env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    e["PYTHONPATH"] = str(ROOT)
    return e


def _wait(pred, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _group(client) -> dict:  # type: ignore[no-untyped-def]
    [g] = [g for g in client.xinfo_groups(wire.cmd_key(NODE)) if g["name"] == GROUP.encode() or g["name"] == GROUP]
    return g


@pytest.mark.heavy
def test_agent_under_a_flood_of_40mb_entries_stays_small(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
[agent]
node = "{NODE}"
interval = 0.5
state_dir = "{tmp_path / 'state'}"

[collectors.nfs]
enabled = false

[security]
operator_keys = ["{pub}"]
""")
    client = redis_server.client()
    key = wire.cmd_key(NODE)
    junk = b"\x00" * ENTRY_BYTES
    ids = [client.xadd(key, {"c": junk}) for _ in range(ENTRIES)]
    del junk
    # An earlier life of the agent read the first half and died before acknowledging them.
    earlier = resp.Client.from_url(redis_server.url, max_bulk=1024)
    earlier.xgroup_create(key, GROUP, id="0")
    assert len(earlier.xreadgroup(GROUP, NODE, {key: ">"}, count=ENTRIES // 2)[0][1]) == ENTRIES // 2
    assert client.xpending(key, GROUP)["pending"] == ENTRIES // 2

    def run_agent(log: Path) -> subprocess.Popen:
        return subprocess.Popen([PY, "-m", "clustertop", "agent", "--config", str(cfg), "--redis", redis_server.url],
                                env=_env(), stdout=subprocess.DEVNULL, stderr=log.open("wb"))

    log1 = tmp_path / "agent1.log"
    agent = run_agent(log1)
    try:
        def all_acknowledged() -> bool:
            g = _group(client)
            return g["pending"] == 0 and g["last-delivered-id"] == ids[-1]
        assert _wait(all_acknowledged), log1.read_text()[-3000:]
        peak = _hwm(agent.pid)
        print(f"\nagent peak RSS (VmHWM) under {ENTRIES} x {ENTRY_BYTES >> 20} MB entries: {peak / 2**20:.1f} MiB")
        assert peak < RSS_LIMIT, f"peak RSS {peak / 2**20:.1f} MiB"
    finally:
        agent.terminate()
        agent.wait(20)
    text = log1.read_text()
    # the size of the whole entry: the value and the field name "c"
    judged = re.findall(rf"command entry (\S+) refused: command entry of {ENTRY_BYTES + 1} bytes {REFUSED}", text)
    assert sorted(judged) == sorted(i.decode() for i in ids), text[-3000:]  # each once, none twice
    answers = [wire.decode(f[b"r"], schema.CommandResult) for _, f in client.xrange(wire.results_key(NODE))]
    refused = [r for r in answers if r.status == "refused" and REFUSED in (r.reason or "")]
    assert refused and {r.id for r in refused} <= {f"entry:{i.decode()}" for i in ids}

    # Restarted, the agent finds nothing pending and nothing new: none of the entries is read again.
    log2 = tmp_path / "agent2.log"
    client.delete(wire.node_key(NODE))
    agent = run_agent(log2)
    try:
        assert _wait(lambda: client.exists(wire.node_key(NODE))), log2.read_text()[-3000:]  # up and publishing
        time.sleep(2.0)  # the executor's pending pass and a few reads
        assert agent.poll() is None and _group(client)["pending"] == 0
        peak2 = _hwm(agent.pid)
    finally:
        agent.terminate()
        agent.wait(20)
    assert REFUSED not in log2.read_text()
    assert len(client.xrange(wire.results_key(NODE))) == len(answers)
    assert peak2 < RSS_LIMIT


def test_executor_on_the_agents_client_refuses_then_serves_the_next_command(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In process, on store.resp (the agent's client): an oversized entry and one with thousands of fields
    are refused and acknowledged, and a genuine signed command right after them still runs."""
    kp, pp, _ = signing.generate(str(tmp_path / "keys"), "ops")
    key = signing.load_private(kp)
    cfg = {"security": {"operator_keys": [pp], "allow_root": True}}
    ex = CommandExecutor(lambda: resp.Client.from_url(redis_server.url), NODE, cfg, state_dir=str(tmp_path / "s"),
                         block_ms=50)
    ex.client = ex.client_factory()
    ex.ensure_group()
    client = redis_server.client()
    big = client.xadd(wire.cmd_key(NODE), {"c": b"\x00" * (CMD_MAX_BYTES + 1)})
    wide = client.xadd(wire.cmd_key(NODE), {f"f{i}": b"1" for i in range(1000)})
    p = subprocess.Popen(["sleep", "300"])
    try:
        _wait(lambda: Path(f"/proc/{p.pid}/cmdline").read_bytes().startswith(b"sleep"), 10)
        cmd = cc.build(NODE, "signal", cc.signal_args(p.pid, start_ticks(p.pid), "KILL"), operator="tester")
        signing.sign(cmd, key)
        cc.send(client, cmd)
        n = 0
        while n < 3:
            got = ex.poll_once()
            assert got, "entries left unread"
            n += got
        assert p.wait(10) == -9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ex.task_mgr.close()
    answers = {r.id: r for r in (wire.decode(f[b"r"], schema.CommandResult)
                                 for _, f in client.xrange(wire.results_key(NODE)))}
    # the size of the whole entry: the value and the field name "c"
    assert f"command entry of {CMD_MAX_BYTES + 2} bytes {REFUSED}" in answers[f"entry:{big.decode()}"].reason
    assert "command entry of more than 8 fields" in answers[f"entry:{wide.decode()}"].reason
    assert answers[cmd.id].ok
    assert client.xpending(wire.cmd_key(NODE), GROUP)["pending"] == 0
