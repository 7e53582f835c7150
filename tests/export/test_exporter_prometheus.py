"""A real Prometheus scrapes `clustertop exporter` over simulated agents: PromQL agrees with `clustertop snapshot
--json`, a node that stops reporting leaves the scrape within its TTL, a hostile node breaks nothing.

Heavy (``./tests/run --fast`` leaves it out): it starts Prometheus, and waits ~6 s for its first scrape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clustertop.agents.publisher import Publisher
from clustertop.read.reader import Reader
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from tests.conftest import ROOT, RedisServer
from tests.support import builders as b
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.heavy

MIB = 1 << 20
#: A node name a hostile agent could pick: a quote, a backslash, a newline and a bidi override.
ODD = 'odd"\\\n\u202enode'
ODD_LABEL = 'odd"\\\\x0a\\u202enode'  # as the exporter labels it: newline and bidi shown escaped (wire.text.inert)


def snapshot_json(url: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    out = subprocess.run([sys.executable, "-m", "clustertop", "snapshot", "--json", "--redis", url],
                         capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def stack(redis_server: RedisServer, start_exporter: Callable[..., ExporterProcess]) -> Iterator[
        tuple[Any, ExporterProcess, Prometheus]]:
    client = redis_server.client()
    # Simulated agents, published once with a long TTL: the data holds still while Prometheus and
    # `snapshot --json` read it, so their answers can be compared exactly.
    sim = SimCluster(seed=11, nodes=12, gpus_per_node=4)
    publish(client, sim, time.time(), make_publishers(sim, client, 600.0))
    b.publish(client, [b.node(ODD, ts=time.time(), gpus=[b.gpu(0, 40, name='Tesla "T4"\n')])])
    exporter = start_exporter("--redis", redis_server.url)
    prom = Prometheus({"clustertop": exporter.address})
    try:
        # The first scrape lands ~5.5 s after start (static targets are applied on a 5 s tick).
        prom.wait_for(lambda: prom.value("count(clustertop_node_up)") == 13, "the first scrape of 13 nodes")
        yield client, exporter, prom
    finally:
        prom.stop()


def test_promql_answers_what_snapshot_json_says(stack: tuple[Any, ExporterProcess, Prometheus],
                                                redis_server: RedisServer) -> None:
    client, _, prom = stack
    doc = snapshot_json(redis_server.url)
    t = doc["totals"]
    assert prom.value('up{job="clustertop"}') == 1  # every scrape accepted, the odd node's labels too
    # Totals: nodes up, GPUs, memory, as the exporter's totals and as sums over its per-node series.
    assert prom.value("sum(clustertop_node_up)") == t["nodes_up"] == 13
    assert prom.value('clustertop_cluster_nodes{state="up"}') == t["nodes_up"]
    assert prom.value("clustertop_cluster_gpus") == t["gpus_total"] == 4 * 4 + 1
    assert prom.value("count(clustertop_gpu_lost == 0)") == t["gpus_total"] - t["gpus_lost"]
    assert prom.value("clustertop_cluster_gpus_busy") == t["gpus_busy"]
    assert prom.value("count(DCGM_FI_DEV_GPU_UTIL >= 10)") == t["gpus_busy"]
    assert prom.value("clustertop_cluster_memory_total_bytes") == t["mem_total_bytes"]
    assert prom.value("sum(node_memory_MemTotal_bytes)") == t["mem_total_bytes"]
    assert prom.value("clustertop_cluster_memory_used_bytes") == t["mem_used_bytes"]
    assert prom.value("clustertop_cluster_gpu_memory_used_bytes") == t["vram_used_bytes"]
    assert prom.value("sum(DCGM_FI_DEV_FB_USED)") * MIB == pytest.approx(t["vram_used_bytes"], rel=1e-12)
    assert prom.value("sum(DCGM_FI_DEV_POWER_USAGE)") * 1000 == pytest.approx(t["power_mw"], rel=1e-12)
    assert prom.value("clustertop_cluster_cpu_cores") == t["cpu_cores"]
    # A sample of nodes and GPUs, figure by figure.
    nodes = {n["host"]: n for n in doc["nodes"]}
    for host in ("gpu01", "gpu04", "arm02"):
        s = nodes[host]["snapshot"]["system"]
        assert prom.value(f'node_memory_MemAvailable_bytes{{node="{host}"}}') == s["mem"]["available_bytes"]
        assert prom.value(f'node_load1{{node="{host}"}}') == pytest.approx(s["load1"], rel=1e-12)
        assert prom.value(f'clustertop_node_cpus{{node="{host}"}}') == s["cpu_count"]
        for fs in s["filesystems"]:
            assert prom.value(f'node_filesystem_avail_bytes{{node="{host}",mountpoint="{fs["mountpoint"]}"}}') == \
                fs["avail_bytes"]
    for host, index in (("gpu01", 0), ("gpu02", 3), ("gpu04", 1)):
        g = nodes[host]["snapshot"]["gpus"][index]
        sel = f'{{node="{host}",gpu="{index}"}}'
        assert prom.value(f"DCGM_FI_DEV_GPU_UTIL{sel}") == g["util_pct"]
        assert prom.value(f"DCGM_FI_DEV_GPU_TEMP{sel}") == g["temp_c"]
        assert prom.value(f"DCGM_FI_DEV_FB_USED{sel}") * MIB == g["mem_used_bytes"]
        assert prom.value(f"DCGM_FI_DEV_POWER_USAGE{sel}") * 1000 == pytest.approx(g["power_mw"], rel=1e-12)
        ((labels, _),) = prom.query(f"DCGM_FI_DEV_GPU_UTIL{sel}")
        assert (labels["UUID"], labels["modelName"], labels["Hostname"]) == (g["uuid"], g["name"], host)
    # The hostile node: ingested, its name and its GPU's model kept as (escaped) data.
    ((labels, util),) = prom.query(f'DCGM_FI_DEV_GPU_UTIL{{node="{json.dumps(ODD_LABEL)[1:-1]}"}}')
    assert util == 40 and labels["modelName"] == 'Tesla "T4"\\x0a'
    # One read per scrape at most: Prometheus scrapes once a second, the cache is a second.
    assert prom.value("clustertop_exporter_reads_total") <= prom.value("clustertop_exporter_scrapes_total")
    assert prom.value("clustertop_store_up") == 1
    assert client is not None


def test_a_node_that_stops_reporting_leaves_the_scrape_within_its_ttl(
        stack: tuple[Any, ExporterProcess, Prometheus]) -> None:
    client, _, prom = stack
    # gpu02 becomes a live agent: every second, a key that lives 3 s (TTL_INTERVALS x 1 s) ...
    view = Reader(client).read().node("gpu02")
    assert view is not None and view.snap is not None
    snap = view.snap
    pub = Publisher(client, "gpu02", 1.0)
    assert pub.ttl_ms == 3000
    for _ in range(3):
        snap.ts, snap.seq = time.time(), snap.seq + 1
        pub.publish(snap)
        time.sleep(1.0)
    assert prom.value('count(DCGM_FI_DEV_GPU_UTIL{node="gpu02"})') == 4
    # ... and then it stops.
    stopped = time.monotonic()
    snap.ts, snap.seq = time.time(), snap.seq + 1
    pub.publish(snap)
    prom.wait_for(lambda: prom.value('count(DCGM_FI_DEV_GPU_UTIL{node="gpu02"})') is None,
                  "gpu02's GPU series to leave the scrape", timeout=30)
    gone = time.monotonic() - stopped
    print(f"\ngpu02's GPU series left Prometheus's answers {gone:.1f} s after its last report (key TTL 3 s)")
    # Its key's TTL (3 s), then at most the exporter's cache (1 s) and one scrape interval (1 s), and slack
    # for a loaded machine (5.0 s measured here). Stale series are dropped, never repeated: kept, they would
    # last the 60 s a node stays "stale" before it is called down.
    assert gone <= 3 + 1 + 1 + 3, f"gpu02's series were still scraped {gone:.1f} s after it stopped"
    assert prom.value('clustertop_node_up{node="gpu02"}') == 0
    assert prom.value('clustertop_node_state{node="gpu02",state="stale"}') == 1
    # Of what its agent said, only its state is left (clustertop_node_up, the 4 states, the age); Kubernetes'
    # view of the node comes from a source that is still fresh, and stays.
    agent = '{node="gpu02",__name__!~"clustertop_kubernetes_.*|clustertop_gpu_ledger_.*"}'
    assert prom.value(f"count({agent})") == 1 + 4 + 1
    assert prom.value('clustertop_kubernetes_node_ready{node="gpu02"}') == 1
    assert prom.value("sum(clustertop_node_up)") == 12
    assert prom.value("clustertop_cluster_gpus") == 3 * 4 + 1
