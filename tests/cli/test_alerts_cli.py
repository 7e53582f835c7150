"""`clustertop alerts` as scripts use it: a real redis-server holding a signed alert state, the command run
as a process. A state no enrolled node signed is refused (exit 3) unless --unverified, and then marked."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

from clustertop.alerting import store
from clustertop.alerting.config import AlertsSection, RuleConfig
from clustertop.alerting.rules import Evaluator, Settings
from clustertop.read.cluster import Alert
from clustertop.wire.alerts import AlertState, Delivery
from tests.conftest import ROOT, RedisServer, free_port
from tests.support import builders as b


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clustertop", "alerts", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def state(now: float) -> AlertState:
    e = Evaluator(Settings.of(AlertsSection(rules={"GpuHot": RuleConfig(for_="10m")})))
    e.step([Alert("critical", "gpu", "n2", "gpu0", "GPU 0 lost: fell off the bus", "GpuLost"),
            Alert("warning", "gpu", "n1", "gpu3", "GPU 3 hot: 91 °C", "GpuHot"),
            Alert("warning", "bond", "n1", "bond0", "bond bond0 degraded: eth1 down\x1b[2J", "BondDegraded")], now - 60)
    e.step([Alert("critical", "gpu", "n2", "gpu0", "GPU 0 lost: fell off the bus", "GpuLost"),
            Alert("warning", "gpu", "n1", "gpu3", "GPU 3 hot: 91 °C", "GpuHot")], now - 30)
    return AlertState(host="eval1", ts=now, seq=7, alerts=e.sorted_records(), events=list(e.events),
                      delivery=[Delivery(url="http://am:9093", ok=False, failures=3, error="connection refused")])


def known(tmp_path: Path, host: str = "eval1") -> str:
    f = tmp_path / "known_nodes"
    f.write_text(f"{host} ed25519 {base64.b64encode(b.node_key(host).public().raw).decode()}\n")
    return str(f)


def test_lists_verified_state_as_json_and_text(redis_server: RedisServer, tmp_path: Path) -> None:
    store.write(redis_server.client(), state(time.time()), b.node_key("eval1"))
    kn = known(tmp_path)
    p = run("--redis", redis_server.url, "--known-nodes", kn, "--json", "--events", "5")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["verified"] is True and doc["evaluated_by"] == "eval1" and doc["stale"] is False
    got = {(a["rule"], a["state"]) for a in doc["alerts"]}
    assert got == {("GpuLost", "firing"), ("GpuHot", "pending"), ("BondDegraded", "resolved")}
    assert [e["kind"] for e in doc["events"]] == ["fired", "fired", "resolved"]
    assert doc["delivery"][0]["ok"] is False
    p = run("--redis", redis_server.url, "--known-nodes", kn, "--state", "firing")
    assert p.returncode == 0 and "GpuLost" in p.stdout and "GpuHot" not in p.stdout and "BondDegraded" not in p.stdout
    assert "FAILING (3x): connection refused" in p.stdout and "verified" in p.stdout
    p = run("--redis", redis_server.url, "--known-nodes", kn, "--state", "resolved")
    assert "\x1b" not in p.stdout and "\\x1b[2J" in p.stdout  # node text reaches the terminal inert


def test_refuses_what_no_enrolled_node_signed(redis_server: RedisServer, tmp_path: Path) -> None:
    c = redis_server.client()
    store.write(c, state(time.time()), b.node_key("intruder"))  # signed, by a key nobody enrolled for eval1
    p = run("--redis", redis_server.url, "--known-nodes", known(tmp_path))
    assert p.returncode == 3 and "refused" in p.stderr and "GpuLost" not in p.stdout
    p = run("--redis", redis_server.url, "--known-nodes", known(tmp_path), "--unverified")
    assert p.returncode == 0 and "NOT verified" in p.stdout and "GpuLost" in p.stdout
    c.delete("ct:v1:alerts")
    p = run("--redis", redis_server.url, "--known-nodes", known(tmp_path))
    assert p.returncode == 3 and "no agent evaluates alerts" in p.stderr


def test_stale_state_says_so(redis_server: RedisServer, tmp_path: Path) -> None:
    store.write(redis_server.client(), state(time.time() - 600), b.node_key("eval1"))
    p = run("--redis", redis_server.url, "--known-nodes", known(tmp_path))
    assert p.returncode == 0 and "STALE" in p.stdout


def test_silences_with_alertmanager_unreachable_say_which_and_why() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    p = run("silences", "--alertmanager", url)
    assert p.returncode == 2 and url in p.stderr and "refused" in p.stderr.lower()
    p = run("silence", "--alertmanager", url, "--rule", "GpuLost", "--node", "n2", "--subject", "gpu0")
    assert p.returncode == 2 and url in p.stderr
    p = run("silences")
    assert p.returncode == 2 and "no Alertmanager" in p.stderr


def test_state_is_written_packed_and_still_verifies(redis_server: RedisServer, tmp_path: Path) -> None:
    """The state is stored packed (wire.pack) and read back verified: the signature covers the state, not the
    packing. A troubled cluster's state (1,000 nodes, a few alerts each) packs to a fraction of its size."""
    from clustertop import wire
    from clustertop.control.trust import KnownNodes

    now = time.time()
    e = Evaluator(Settings.of(AlertsSection()))
    many = [Alert("warning", "gpu", f"gpu{i:04d}", f"gpu{k}", f"GPU {k} hot: {85 + k} °C", "GpuHot")
            for i in range(1000) for k in range(3)]
    e.step(many, now)
    big = AlertState(host="eval1", ts=now, seq=1, alerts=e.sorted_records(), events=list(e.events))
    c = redis_server.client()
    written = store.write(c, big, b.node_key("eval1"))
    raw = c.get("ct:v1:alerts")
    assert raw is not None and len(raw) == written and raw[:1] == b"\xc1"
    assert written * 5 < len(wire.encode(big))  # measured 1/40 here
    got = store.read(c, KnownNodes.load(known(tmp_path)), now)
    # the limit is on the state as decoded (wire.MAX_PAYLOAD_BYTES), so the least important are still left out
    assert got.verified and got.state is not None and len(got.state.alerts) + got.state.left_out == 3000
