"""`clustertop simulate` and `clustertop snapshot` as real processes against a real redis-server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tests.conftest import ROOT, RedisServer, free_port

GIB = 1 << 30


def clustertop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    return subprocess.run([sys.executable, "-m", "clustertop", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def expected_totals(nodes: list[dict]) -> dict:
    """Totals recomputed from the decoded snapshots, independently of clustertop.read.cluster."""
    snaps = [n["snapshot"] for n in nodes if n["state"] == "up"]
    gpus = [g for s in snaps for g in s["gpus"] or []]
    return {
        "nodes_up": len(snaps),
        "cpu_cores": sum(s["system"]["cpu_count"] for s in snaps),
        "mem_total_bytes": sum(s["system"]["mem"]["total_bytes"] for s in snaps),
        "mem_used_bytes": sum(s["system"]["mem"]["used_bytes"] for s in snaps),
        "gpus_total": len(gpus),
        "gpus_busy": sum(1 for g in gpus if g["util_pct"] >= 10),
        "vram_total_bytes": sum(g["mem_total_bytes"] for g in gpus),
        "vram_used_bytes": sum(g["mem_used_bytes"] for g in gpus),
        "power_mw": sum(g["power_mw"] for g in gpus),
        "cuda_cores": sum(g["cuda_cores"] for g in gpus),
        "bonds_total": sum(len(s["bonds"]) for s in snaps if s["bonds"] is not None),
    }


def test_simulate_then_snapshot_json(redis_server: RedisServer) -> None:
    # Full snapshots every tick (as agents before the byte budget): the totals below are recomputed from them.
    sim = clustertop("simulate", "--redis", redis_server.url, "--nodes", "20", "--ticks", "2", "--seed", "5",
                     "--full-every", "0")
    assert sim.returncode == 0, sim.stderr
    assert "20 nodes" in sim.stderr
    snap = clustertop("snapshot", "--json", "--redis", redis_server.url)
    assert snap.returncode == 0, snap.stderr
    doc = json.loads(snap.stdout)
    assert doc["source"] == redis_server.url
    nodes = doc["nodes"]
    assert len(nodes) == 20
    assert [n["state"] for n in nodes] == ["up"] * 20
    assert all(n["snapshot"]["seq"] == 2 for n in nodes)
    hosts = [n["host"] for n in nodes]
    assert hosts == sorted(hosts) and sum(h.startswith("gpu") for h in hosts) == 7
    want = expected_totals(nodes)
    assert want["gpus_total"] == 14 and want["bonds_total"] == 7
    for key, value in want.items():
        assert doc["totals"][key] == value, key
    assert sorted(doc["cluster"]) == ["celery", "ceph", "dask", "kubernetes"]
    # None is written as null, not left out (GeForce cards have no ECC counters).
    gpu = next(n for n in nodes if n["host"] == "gpu01")["snapshot"]["gpus"][0]
    assert "ecc_corrected" in gpu and gpu["ecc_corrected"] is None
    assert isinstance(doc["alerts"], list)
    # Each node's digest, as the dashboard folds it: its figures add up to the totals.
    digests = [n["digest"] for n in nodes]
    assert all(d is not None and d["host"] == n["host"] for d, n in zip(digests, nodes, strict=True))
    assert sum(d["gpus"] for d in digests) == doc["totals"]["gpus_total"]
    assert sum(d["gpus_busy"] for d in digests) == doc["totals"]["gpus_busy"]
    assert sum(d["cpu_count"] for d in digests) == doc["totals"]["cpu_cores"]


def test_snapshot_waits_for_the_full_snapshots_it_asks_for(redis_server: RedisServer) -> None:
    """Agents on the default cadence (a full snapshot every 15 s unless wanted): by default snapshot asks no node
    for anything and says how old each one's detail is; with --fresh-detail it asks every node for one and prints
    each of its latest tick, in a second or two."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    sim = subprocess.Popen([sys.executable, "-m", "clustertop", "simulate", "--redis", redis_server.url, "--nodes",
                            "6", "--interval", "0.5", "--duration", "60"], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis_server.client()
        deadline = time.monotonic() + 30
        while client.zcard("ct:v1:nodes") < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # a few ticks past the first (which writes every full snapshot)
        stored = clustertop("snapshot", "--json", "--redis", redis_server.url)
        assert client.keys("ct:v1:want:*") == []  # asked nothing
        out = clustertop("snapshot", "--json", "--redis", redis_server.url, "--fresh-detail")
    finally:
        sim.terminate()
        sim.wait(10)
    assert stored.returncode == 0, stored.stderr
    nodes = json.loads(stored.stdout)["nodes"]
    assert len(nodes) == 6 and all(n["state"] == "up" for n in nodes)
    # Each node's full snapshot as stored (from the first tick), this tick's figures over it, its age said.
    assert all(n["detail_age_s"] is not None and n["detail_age_s"] > 0 for n in nodes), nodes
    assert out.returncode == 0, out.stderr
    nodes = json.loads(out.stdout)["nodes"]
    assert len(nodes) == 6 and all(n["state"] == "up" for n in nodes)
    assert all(n["detail_age_s"] is None for n in nodes), [n["detail_age_s"] for n in nodes]
    # Each full snapshot is of its node's latest tick, or of the one before (the read straddled a tick).
    assert all(n["digest"]["seq"] - n["snapshot"]["seq"] in (0, 1) for n in nodes)


def test_snapshot_says_how_old_a_full_snapshot_nobody_refreshed_is(redis_server: RedisServer) -> None:
    """Agents that do not answer the request (stopped, or an ACL that hides it from them): after its bounded
    wait, snapshot prints the full snapshots there are, each with its age, beside this tick's digests. In
    process (``snapshot.fresh`` with a clock that runs the wait out at once), so the keys are still live."""
    from clustertop.agents.publisher import Publisher
    from clustertop.cli import snapshot
    from clustertop.read.reader import Reader
    from clustertop.read.want import Wants
    from tests.support import builders as b

    client = redis_server.client()
    for h in ("gpu01", "gpu02"):
        pub = Publisher(client, h, 1.0, full_every_s=15.0, tiers=False)
        for k in range(3):
            pub.publish(b.tower(h, ts=b.NOW + k, seq=k + 1))
    ticks = iter(range(100))
    slept: list[float] = []
    state = snapshot.fresh(Reader(client, clock=lambda: b.NOW + 2.5, wants=Wants()), sleep=slept.append,
                           monotonic=lambda: float(next(ticks)))
    assert slept and sum(slept) <= snapshot.FRESH_WAIT_MIN_S  # waited, and not for ever
    assert all(client.exists(f"ct:v1:want:{{{h}}}") for h in ("gpu01", "gpu02"))  # and asked
    doc = snapshot.as_document(state, "test", [])
    for n in doc["nodes"]:
        # The full snapshot of tick 1 with tick 3's brief drawn over it: tick 3's seq, the detail 2.5 s old.
        assert (n["state"], n["snapshot"].seq, n["digest"].seq, n["detail_age_s"]) == ("up", 3, 3, 2.5)
    text = snapshot.as_text(state, "test", [])
    assert text.count(", detail 2s old") == 2, text


def test_snapshot_text_summary(redis_server: RedisServer) -> None:
    assert clustertop("simulate", "--redis", redis_server.url, "--ticks", "1").returncode == 0
    out = clustertop("snapshot", "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].startswith("15/15 nodes up, 10 GPUs (")
    assert " GiB RAM" in lines[1] and "Ceph HEALTH_" in lines[1]
    node_lines = [ln for ln in lines if ln.startswith("  gpu0") or ln.startswith("  arm")]
    assert len(node_lines) == 15
    assert all(" up " in ln for ln in node_lines)
    assert any(ln.startswith("alerts") for ln in lines)


def test_snapshot_text_counts_live_cards_only(redis_server: RedisServer) -> None:
    """A lost card keeps its last readings (cached identity and values), but it is neither busy
    nor the hottest: the node line says so, as the dashboard's digest does. A node whose cards
    report no utilisation says busy N/A, not 0."""
    import time

    from tests.support import builders

    lost = builders.gpu(0, 95, temp=99)
    lost.lost, lost.error = True, "fell off the bus"
    towers = [builders.node("t-lost", gpus=[lost, builders.gpu(1, 20, temp=61)]),
              builders.node("t-silent", gpus=[builders.gpu(0, None), builders.gpu(1, None)])]
    now = time.time()
    for t in towers:
        t.ts = now
    builders.publish(redis_server.client(), towers)
    out = clustertop("snapshot", "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    line = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.startswith("  t-")}
    assert "gpus 1/2 busy, 1 lost, max 61 °C" in line["t-lost"]
    assert "gpus 2, busy N/A, max 60 °C" in line["t-silent"]


def test_snapshot_dead_store_exits_1_with_message() -> None:
    port = free_port()  # nothing listens there
    out = clustertop("snapshot", "--json", "--redis", f"redis://127.0.0.1:{port}/0")
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"redis://127.0.0.1:{port}/0 unreachable" in out.stderr
    assert "Traceback" not in out.stderr


def test_snapshot_without_store_says_what_to_do() -> None:
    out = clustertop("snapshot")
    assert out.returncode == 2
    assert "--redis" in out.stderr and "--demo" in out.stderr


def test_snapshot_demo_json_without_redis_is_deterministic() -> None:
    a = clustertop("snapshot", "--demo", "--json", "--seed", "3")
    b = clustertop("snapshot", "--demo", "--json", "--seed", "3")
    c = clustertop("snapshot", "--demo", "--json", "--seed", "4")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    assert a.stdout != c.stdout
    doc = json.loads(a.stdout)
    assert doc["source"] == "demo (simulated, seed 3)"
    assert doc["ts"] == 1767225600.0
    assert doc["totals"]["nodes_up"] == 15 and doc["totals"]["gpus_total"] == 10
    assert all(n["age_s"] == 0 for n in doc["nodes"])
    arm = next(n for n in doc["nodes"] if n["host"] == "arm01")
    assert arm["snapshot"]["gpus"] == []


def test_snapshot_demo_text() -> None:
    out = clustertop("snapshot", "--demo")
    assert out.returncode == 0, out.stderr
    assert "demo (simulated, seed 1) at 2026-01-01 00:00:00 UTC" in out.stdout
    assert out.stdout.splitlines()[1].startswith("15/15 nodes up, 10 GPUs")


def test_simulate_needs_a_store() -> None:
    out = clustertop("simulate", "--ticks", "1")
    assert out.returncode == 2
    assert "--redis" in out.stderr and "Traceback" not in out.stderr


def test_simulate_waits_for_redis_then_publishes() -> None:
    """Redis down at start: simulate retries with backoff (one message per outage) and publishes once
    the server is up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    url = f"redis://127.0.0.1:{port}/0"
    proc = subprocess.Popen([sys.executable, "-m", "clustertop", "simulate", "--redis", url, "--nodes", "4",
                             "--ticks", "2", "--full-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    data_dir = tempfile.mkdtemp(prefix="ct-redis-")
    server = None
    try:
        # Wait until it has noticed the outage (its own message), then start the server.
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "unreachable" in line:
                break
        assert proc.poll() is None, "simulate exited while Redis was down: " + "".join(seen)
        server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", data_dir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, rest = proc.communicate(timeout=60)
        err = "".join(seen) + rest
        assert proc.returncode == 0, err
        assert err.count("unreachable") == 1
        assert "reachable again" in err
        snap = clustertop("snapshot", "--json", "--redis", url)
        assert [n["state"] for n in json.loads(snap.stdout)["nodes"]] == ["up"] * 4
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None:
            server.terminate()
            server.wait(5)
        shutil.rmtree(data_dir, ignore_errors=True)



# -- what a Redis writer can send (issue 15) ------------------------------------------------------------

#: Raw terminal-driving characters: C0 (newline aside), DEL, C1, bidi, zero-width, separators, the BOM.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
EVIL_HOST = "\u202e" + "\x1b]0;pwned\x07" + "h" * (1 << 20)  # a megabyte, right-to-left, retitling
PHANTOMS = 5000
#: The bounds this output promises (clustertop/cli/snapshot.py): O(nodes that sent data), whatever
#: the index lists. The old code wrote every node line padded to the widest host: 5 GB here.
TEXT_BOUND = 64 * 1024
JSON_BOUND = 2 * 1024 * 1024


def bounded(*args: str, limit: int, timeout: float = 120) -> tuple[int | None, bytes]:
    """``clustertop *args``, reading at most ``limit + 1`` bytes of its output: a run that writes more is
    stopped there (returncode None), so a regression costs a failed test, not gigabytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    proc = subprocess.Popen([sys.executable, "-m", "clustertop", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    assert proc.stdout is not None
    out = b""
    while len(out) <= limit:
        chunk = proc.stdout.read(min(1 << 20, limit + 1 - len(out)))
        if not chunk:
            break
        out += chunk
    if len(out) > limit:
        proc.kill()
        proc.wait(timeout)
        return None, out
    return proc.wait(timeout), out


def hostile_store(redis_server: RedisServer) -> float:
    """A real redis-server holding one node with a megabyte host name and absurd figures, one ordinary
    node, and PHANTOMS index entries with nothing behind them (all written as any node could)."""
    import math
    import time

    from clustertop import wire
    from tests.support import builders

    now = time.time()
    client = redis_server.client()
    evil = builders.tower("x", ts=now)
    evil.host = ""  # "" is read as the key's own host: the name lives only in the key and the index
    assert evil.system is not None and evil.system.cpu is not None and evil.system.mem is not None
    evil.system.cpu.util_pct = math.nan
    evil.system.cpu_count = 2**64 - 1
    evil.system.mem.used_bytes = 2**64 - 1
    evil.collectors["gpu"].error, evil.collectors["gpu"].ok = "\x1b[2J\u202egpu collector says \x9b31m", False
    client.set(wire.node_key(EVIL_HOST), wire.encode(evil))
    client.zadd(wire.NODES_KEY, {EVIL_HOST: now})
    builders.publish(client, [builders.tower("gpu-01", ts=now)])
    p = client.pipeline(transaction=False)
    for i in range(PHANTOMS):
        p.zadd(wire.NODES_KEY, {f"phantom-{i:05d}": now})
    p.execute()
    return now


def test_snapshot_text_of_a_hostile_store_is_bounded_and_inert(redis_server: RedisServer) -> None:
    hostile_store(redis_server)
    rc, raw = bounded("snapshot", "--redis", redis_server.url, limit=TEXT_BOUND)
    assert rc == 0, f"stopped after {len(raw)} bytes (bound {TEXT_BOUND}): {raw[:300]!r}"
    text = raw.decode("utf-8")
    assert not RAW.search(text), RAW.search(text)
    lines = text.splitlines()
    assert f"/{PHANTOMS + 2} nodes up" in lines[1]
    evil = [ln for ln in lines if ln.startswith("  \\u202e\\x1b]0;pwned\\x07hhh")]
    assert len(evil) == 1 and "…" in evil[0], lines[:6]
    assert "cpu N/A of N/A" in evil[0]  # NaN util and a 2**64 - 1 core count: unknown, not a figure
    assert any(ln.startswith("  gpu-01 ") and " up " in ln for ln in lines)
    phantoms = [ln for ln in lines if ln.startswith("  phantom-")]
    assert len(phantoms) == 20  # snapshot.MAX_SILENT by name, then counted:
    assert f"  … and {PHANTOMS - 20} more listed nodes that sent no data" in text
    assert "\\x1b[2J\\u202egpu collector says \\x9b31m" in text  # the node's error, shown escaped


def test_snapshot_json_of_a_hostile_store_is_bounded_valid_and_inert(redis_server: RedisServer) -> None:
    hostile_store(redis_server)
    rc, raw = bounded("snapshot", "--json", "--redis", redis_server.url, limit=JSON_BOUND)
    assert rc == 0, f"stopped after {len(raw)} bytes (bound {JSON_BOUND})"
    text = raw.decode("utf-8")
    assert not RAW.search(text), RAW.search(text)
    doc = json.loads(text)  # valid JSON: NaN is null, controls are \uXXXX escapes
    hosts = [n["host"] for n in doc["nodes"]]
    evil = next(n for n in doc["nodes"] if n["host"].startswith("\u202e\x1b]0;pwned\x07hhh"))
    assert len(evil["host"]) == 4096 and evil["host"].endswith("…")  # snapshot.JSON_TEXT_LIMIT
    assert evil["snapshot"]["system"]["cpu"]["util_pct"] is None  # NaN: null
    assert "gpu-01" in hosts
    assert len(hosts) == 2 + 1000 and doc["nodes_omitted"] == PHANTOMS - 1000  # snapshot.MAX_SILENT_JSON
    assert doc["totals"]["nodes_total"] == PHANTOMS + 2  # the totals still count every listed node
