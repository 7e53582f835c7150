"""Measures the agent's own Redis client against redis-py on one Redis, a 3-shard Redis Cluster and Sentinel.

For each deployment (started here: tests/support/redis_ha.py, the recipe's logic) and each client, a fresh
Python process imports the client, connects by the same URL through ``clustertop.store`` (``connect_light``
vs ``connect``), publishes 200 ticks of 3 nodes with the real ``Publisher`` (MULTI per slot on the
cluster) and reads one back; it prints its RSS (VmRSS, /proc/self/status) and CPU time for the ticks. The
table shows both clients and the ratio, from the same run. Informational: no assertions, exits 0.

    python bench/redis_ha_client.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RedisServer  # noqa: E402
from tests.support.redis_ha import RedisCluster, RedisSentinel  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[3])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss()
from clustertop import store
from clustertop.agents.publisher import Publisher
from tests.support import builders as b
client = (store.connect_light if sys.argv[1] == "light" else store.connect)(sys.argv[2])
pubs = [Publisher(client, f"bench{i}", 1.0) for i in range(3)]
snaps = [b.node(f"bench{i}") for i in range(3)]
pubs[0].publish(snaps[0])
t0 = time.process_time()
for _ in range(200):
    for p, s in zip(pubs, snaps):
        p.publish(s)
cpu = time.process_time() - t0
from clustertop import wire
assert client.get(wire.node_key("bench2")) is not None
print(json.dumps({"rss_mb": rss(), "base_mb": base, "cpu_ms_per_tick": cpu / 600 * 1000,
                  "redis_py_loaded": "redis" in sys.modules}))
"""


def run(kind: str, url: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, url, str(ROOT)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "STATE_DIRECTORY": tempfile.mkdtemp()})
    if out.returncode:
        raise SystemExit(f"{kind} on {url}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores shared)")
    single = RedisServer()
    cluster = RedisCluster().start()
    sentinel = RedisSentinel().start()
    try:
        rows = [("one Redis", single.url), ("Redis Cluster (3 masters, 3 replicas)", cluster.url),
                ("Sentinel (master, replica, 3 sentinels)", sentinel.url)]
        print(f"{'deployment':42} {'client':8} {'RSS MB':>7} {'CPU ms/publish':>15} {'redis-py loaded':>16}")
        for name, url in rows:
            got = {kind: run(kind, url) for kind in ("light", "redis-py")}
            for kind, r in got.items():
                print(f"{name:42} {kind:8} {r['rss_mb']:7.1f} {r['cpu_ms_per_tick']:15.3f} {str(r['redis_py_loaded']):>16}")
            lr, pr = got["light"], got["redis-py"]
            print(f"{'':42} {'ratio':8} {lr['rss_mb'] / pr['rss_mb']:7.2f} "
                  f"{lr['cpu_ms_per_tick'] / pr['cpu_ms_per_tick']:15.2f}   (agent's client / redis-py)")
    finally:
        sentinel.stop()
        cluster.stop()
        single.stop()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
