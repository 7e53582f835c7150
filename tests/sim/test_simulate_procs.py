"""`clustertop simulate` at scale and on a dead store (issue 18): the nodes split over processes, each its own
slice of one seed-derived cluster; a finite run (--ticks) that loses its store exits 1 after a bounded retry,
a daemon (no --ticks) keeps retrying. Real redis-server processes, real `clustertop simulate` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from clustertop import wire
from clustertop.control import signing
from clustertop.control.summary import open_summary
from clustertop.read.reader import Reader
from clustertop.sim.simulate import SimCluster
from clustertop.wire.summary import bucket_of, summary_key
from tests.conftest import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
T0 = 1767225600.0


def simulate(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    return subprocess.Popen([sys.executable, "-m", "clustertop", "simulate", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_parts_hold_whole_buckets_and_share_one_model() -> None:
    """Parts own disjoint sets of whole buckets covering every host (so each can fold its buckets' summaries);
    stepped at the same instants, their shared models (jobs, pending pods) stay identical; only the part holding
    the first tower returns the cluster payloads."""
    parts = [SimCluster(seed=4, nodes=20, part=(i, 3)) for i in range(3)]
    assert sorted(h for p in parts for h in p.own_hosts) == sorted(parts[0].hosts)
    assert all(p.own_hosts for p in parts)
    buckets = [{bucket_of(h) for h in p.own_hosts} for p in parts]
    assert not (buckets[0] & buckets[1] or buckets[0] & buckets[2] or buckets[1] & buckets[2])
    holder = next(i for i, p in enumerate(parts) if parts[0].tower_hosts[0] in p.own_hosts)
    for t in (T0, T0 + 1, T0 + 2, T0 + 90, T0 + 400, T0 + 1200):
        steps = [p.step(t) for p in parts]
        for p, (ticks, _) in zip(parts, steps, strict=True):
            assert [s.host for s, _ in ticks] == p.own_hosts
        jobs = [sorted((j.name, j.host, tuple(j.gpus), j.end) for j in p.running) for p in parts]
        assert jobs[0] and jobs[0] == jobs[1] == jobs[2]
        assert [j.name for j in parts[0].pending] == [j.name for j in parts[2].pending]
        assert {c.name for c in steps[holder][1]} == {"ceph", "celery", "dask", "kubernetes"}
        assert all(steps[i][1] == [] for i in range(3) if i != holder)
    # The model comes from the seed: another seed, other jobs.
    a, b = SimCluster(seed=4, nodes=20, part=(0, 3)), SimCluster(seed=5, nodes=20, part=(0, 3))
    a.step(T0)
    b.step(T0)
    assert sorted(j.name for j in a.running) != sorted(j.name for j in b.running)


def test_procs_on_one_redis_publish_every_node(redis_server: RedisServer) -> None:
    proc = simulate("--redis", redis_server.url, "--nodes", "60", "--ticks", "2", "--procs", "3", "--seed", "2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    done = [ln for ln in err.splitlines() if "published 2 ticks of" in ln]
    assert sorted(ln.split(":")[0] for ln in done) == ["part 1/3", "part 2/3", "part 3/3"]
    assert sum(int(ln.split(" of ")[1].split()[0]) for ln in done) == 60
    st = Reader(redis_server.client()).read()
    hosts = [v.host for v in st.nodes]
    assert len(hosts) == 60 and len(set(hosts)) == 60
    assert set(hosts) == set(SimCluster(seed=2, nodes=60).hosts)
    assert {v.state for v in st.nodes} == {"up"}
    assert {"ceph", "kubernetes"} <= set(st.cluster)
    # Every part ticks on one time grid (t0 + n * interval; a part that started late skips a point).
    stamps = {v.snap.ts for v in st.nodes if v.snap is not None}
    assert len(stamps) <= 2 and all(abs(t - min(stamps) - round(t - min(stamps))) < 1e-6 for t in stamps)


def test_ticks_run_gives_up_on_a_killed_store() -> None:
    """--ticks N: the server is killed mid-run; simulate says so, retries for --give-up seconds, exits 1."""
    srv = RedisServer()
    proc = simulate("--redis", srv.url, "--nodes", "10", "--ticks", "100000", "--interval", "0.05",
                    "--give-up", "3")
    try:
        r = redis.Redis.from_url(srv.url)
        deadline = time.monotonic() + 60
        while r.zcard(wire.NODES_KEY) < 10:  # publishing: every node in the index
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        srv.proc.kill()
        srv.proc.wait(5)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert err.count("unreachable (") == 1  # one message per outage, not one per retry
    (last,) = [ln for ln in err.splitlines() if "giving up" in ln]
    assert "unreachable for" in last and "ConnectionError" in last and " of 100000 ticks" in last
    published = int(last.rsplit("published ", 1)[1].split()[0])
    assert 0 < published < 100000
    assert 3 <= took < 60


def test_ticks_run_against_a_refused_store_with_procs_exits_1() -> None:
    port = free_port()
    proc = simulate("--redis", f"redis://127.0.0.1:{port}/0", "--nodes", "6", "--ticks", "3", "--procs", "2",
                    "--give-up", "1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert sorted(ln.split(":")[0] for ln in err.splitlines() if "giving up" in ln) == ["part 1/2", "part 2/2"]
    assert "2 of 2 parts failed" in err


def test_daemon_keeps_retrying() -> None:
    """No --ticks: a daemon; a dead store is retried with backoff past any --give-up, never given up on."""
    port = free_port()
    proc = simulate("--redis", f"redis://127.0.0.1:{port}/0", "--nodes", "4", "--give-up", "0.5")
    try:
        time.sleep(4)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert alive, err
    assert err.count("unreachable (") == 1 and "giving up" not in err


def test_procs_write_every_buckets_summary(redis_server: RedisServer, tmp_path: Path) -> None:
    """--procs with --summary-key: each part folds and seals its own whole buckets, so every bucket holding a
    node has one summary, believed by a reader that enrols the key, and together they list every host once."""
    path, _, _ = signing.generate(str(tmp_path), "sum1")
    key = signing.load_private(path)
    proc = simulate("--redis", redis_server.url, "--nodes", "60", "--ticks", "2", "--procs", "3", "--seed", "2",
                    "--summary-key", path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.count("bucket summaries: signed as sum1") == 3, err
    hosts = SimCluster(seed=2, nodes=60).hosts
    client = redis_server.client()
    listed: list[str] = []
    for b in sorted({bucket_of(h) for h in hosts}):
        s, why = open_summary(client.get(summary_key(b)), {"sum1": key.public()}, b)
        assert s is not None, why
        assert s.states == "u" * len(s.hosts)
        listed += s.hosts
    assert sorted(listed) == sorted(hosts)
