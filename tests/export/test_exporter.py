"""The exporter against a real redis-server: what it says of each node and GPU, what it leaves out, its cache.

Data is written through the agent's own Publisher (``tests/support/builders.py``) or the simulator, read
by ``Exporter`` (the dashboard's reader underneath) and checked three ways: the strict parser
(``tests/support/promtext.py``), prometheus_client's parser (same series, same values) and
``promtool check metrics`` (nothing, but for the names that keep node_exporter's and dcgm-exporter's
spelling on purpose).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from clustertop import wire
from clustertop.export import metrics
from clustertop.export.exporter import Exporter
from clustertop.export.exposition import LABEL_MAX
from clustertop.read.reader import Reader
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support import builders as b
from tests.support import hostile, promtext
from tests.test_layers import loaded_after

GIB = 1 << 30
MIB = 1 << 20

#: What promtool may say, and only of a family that keeps another exporter's spelling: node_exporter's
#: /proc/meminfo field names (MemTotal) and dcgm-exporter's labels (modelName) and counters (no _total).
BORROWED_FINDINGS = {
    "node_exporter": {"metric names should be written in 'snake_case' not 'camelCase'"},
    "dcgm-exporter": {"label names should be written in 'snake_case' not 'camelCase'",
                      'counter metrics should have "_total" suffix'},
}


def scrape(exporter: Exporter, compress: bool = False) -> bytes:
    body = exporter.scrape(compress)
    return gzip.decompress(body) if compress else body


class Families(dict[str, promtext.Family]):
    """Families by name; a family with no sample at all reads as an empty one (``in`` still tells)."""

    def __missing__(self, name: str) -> promtext.Family:
        return promtext.Family(name, "absent", "")


def check(body: bytes) -> Families:
    """The body read strictly, read the same by prometheus_client, and linted by promtool."""
    fams = Families(promtext.parse(body))
    theirs = promtext.client_python(body)
    ours = {name: dict(f.samples) for name, f in fams.items()}
    assert {k: v for k, v in theirs.items() if v} == ours
    borrowed = metrics.families_borrowed()
    for line in promtext.promtool(body):
        name, _, finding = line.partition(" ")
        assert finding in BORROWED_FINDINGS.get(borrowed.get(name, ""), ()), line
    return fams


def node_series(fams: dict[str, promtext.Family], host: str) -> dict[str, int]:
    """Family -> how many series it has with ``node=host``."""
    out = {}
    for name, f in fams.items():
        n = len(f.where(node=host))
        if n:
            out[name] = n
    return out


@pytest.fixture
def client(redis_server: RedisServer) -> Any:
    return redis_server.client()


def test_builders_nodes_under_node_exporter_and_dcgm_names(client: Any) -> None:
    now = time.time()
    b.publish(client, b.demo_cluster(ts=now))
    fams = check(scrape(Exporter(client)))
    g = fams["DCGM_FI_DEV_FB_USED"]
    # gpu-01: cards at 80 % and 5 %, 4 GiB of 11 used, power 50 + 2 * util W (builders.tower).
    one = dict(node="gpu-01", gpu="0", Hostname="gpu-01", UUID="GPU-00000000", modelName="NVIDIA GeForce GTX 1080 Ti")
    assert g.get(**one) == 4096
    assert fams["DCGM_FI_DEV_FB_FREE"].get(**one) == 11 * 1024 - 4096
    assert fams["DCGM_FI_DEV_FB_TOTAL"].get(**one) == 11 * 1024
    assert fams["DCGM_FI_DEV_GPU_UTIL"].get(**one) == 80
    assert fams["DCGM_FI_DEV_GPU_UTIL"].get(node="gpu-01", gpu="1") == 5
    assert fams["DCGM_FI_DEV_POWER_USAGE"].get(**one) == 210.0
    assert fams["DCGM_FI_DEV_POWER_MGMT_LIMIT"].get(**one) == 250.0
    assert fams["DCGM_FI_DEV_GPU_TEMP"].get(**one) == 60
    assert fams["clustertop_gpu_processes"].get(node="gpu-01", gpu="0", uuid="GPU-00000000") == 0
    # GeForce cards have no ECC counters: no series, not a 0.
    assert "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" not in fams
    # Host figures, node_exporter's names and units.
    assert fams["node_memory_MemTotal_bytes"].get(node="gpu-01") == 128 * GIB
    assert fams["node_memory_MemAvailable_bytes"].get(node="gpu-01") == 64 * GIB
    assert fams["node_memory_SwapFree_bytes"].get(node="gpu-01") == 8 * GIB
    assert fams["node_load1"].get(node="gpu-02") == 32 * 40.0 / 100
    assert fams["clustertop_node_cpu_utilization_ratio"].get(node="gpu-02") == 0.4
    assert fams["node_filesystem_size_bytes"].get(node="arm-01", mountpoint="/", fstype="ext4",
                                                  device="/dev/nvme0n1p2") == 900 * GIB
    assert fams["node_filesystem_avail_bytes"].get(node="arm-01", mountpoint="/") == 600 * GIB
    assert fams["clustertop_network_receive_bytes_per_second"].get(node="gpu-03", device="bond0") == 10e6
    assert fams["node_network_up"].get(node="gpu-03", device="eno1") == 1
    # Rates are gauges per second; no counter is made up from them.
    assert not [n for n in fams if n.startswith("node_network_") and n.endswith("bytes_total")]
    assert fams["clustertop_node_labels"].get(node="gpu-03", label_rack="r1") == 1
    assert fams["clustertop_node_info"].get(node="gpu-03", role="gpu", agent_version="0.1.0") == 1
    # ARM boards: checked, no GPUs — so no GPU series, and they count as nodes with GPU data.
    assert not fams["DCGM_FI_DEV_GPU_UTIL"].where(node="arm-01")
    assert fams["clustertop_cluster_reporting_nodes"].get(figure="gpu") == 8
    assert fams["clustertop_cluster_gpus"].get() == 10
    assert fams["clustertop_cluster_nodes"].get(state="up") == 8
    assert fams["clustertop_cluster_memory_total_bytes"].get() == (5 * 128 + 3 * 4) * GIB
    assert fams["clustertop_node_up"].samples == {(("node", h),): 1 for h in
                                                  [f"gpu-{i:02d}" for i in range(1, 6)] + ["arm-01", "arm-02", "arm-03"]}
    assert fams["clustertop_store_up"].get() == 1


def test_unknown_values_are_absent_never_zero(client: Any) -> None:
    now = time.time()
    silent = b.gpu(0, None, None, temp=None, power_w=None)  # NVML answered nothing for these
    b.publish(client, [b.node("quiet", ts=now, cpu=None, mem_used_gib=None, gpus=[silent, b.gpu(1, 30)]),
                       b.node("nogpu-data", ts=now, gpus=None)])  # the GPU collector never reported
    fams = check(scrape(Exporter(client)))
    card = dict(node="quiet", gpu="0")
    for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
                 "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_MEM_COPY_UTIL"):
        assert fams[name].get(**card) is None, name
        assert fams[name].get(node="quiet", gpu="1") is not None, name  # its neighbour reports
    assert fams["DCGM_FI_DEV_FB_TOTAL"].get(**card) == 11 * 1024  # what it did say is there
    assert fams["clustertop_node_cpu_utilization_ratio"].get(node="quiet") is None
    assert fams["node_load1"].get(node="quiet") is None
    assert fams["clustertop_node_memory_used_bytes"].get(node="quiet") is None
    assert fams["node_memory_MemTotal_bytes"].get(node="quiet") == 128 * GIB
    assert not fams["clustertop_gpu_lost"].where(node="nogpu-data")
    assert fams["clustertop_cluster_reporting_nodes"].get(figure="gpu") == 1
    assert fams["clustertop_cluster_gpus"].get() == 2


def test_stale_down_and_bad_nodes_keep_their_state_and_lose_their_figures(client: Any) -> None:
    now = time.time()
    # t2's last report is 10 minutes old (its clock; its key is fresh, so it is up until the key goes).
    b.publish(client, [b.tower(f"t{i}", ts=now - 600 if i == 2 else now) for i in range(4)])
    exporter = Exporter(client, cache_s=0)
    first = check(scrape(exporter))
    assert node_series(first, "t1")["DCGM_FI_DEV_GPU_UTIL"] == 2  # the exporter has seen t1's figures
    # t1 stops reporting: its keys expire (Redis's clock decides), its index entry stays -> stale.
    client.delete(wire.node_key("t1"), wire.brief_key("t1"), wire.digest_key("t1"))
    # t2's keys go too, and its last report is older than a minute -> down. t3 writes garbage -> bad.
    client.delete(wire.node_key("t2"), wire.brief_key("t2"), wire.digest_key("t2"))
    client.set(wire.node_key("t3"), b"\xc1 not msgpack")
    client.delete(wire.digest_key("t3"))
    fams = check(scrape(exporter))
    for host, state in (("t0", "up"), ("t1", "stale"), ("t2", "down"), ("t3", "bad")):
        assert fams["clustertop_node_up"].get(node=host) == (1 if state == "up" else 0)
        assert {dict(k)["state"]: v for k, v in fams["clustertop_node_state"].where(node=host).items()} == {
            s: (1 if s == state else 0) for s in ("up", "stale", "down", "bad")}
        if state != "up":
            # Only its state: the reader still holds t1's and t3's last snapshots, the exporter drops them.
            assert set(node_series(fams, host)) == {"clustertop_node_up", "clustertop_node_state",
                                                    "clustertop_node_report_age_seconds"}, host
    assert fams["clustertop_node_report_age_seconds"].get(node="t2") >= 600
    assert {dict(k)["state"]: v for k, v in fams["clustertop_cluster_nodes"].samples.items()} == {
        "up": 1, "stale": 1, "down": 1, "bad": 1}
    assert fams["clustertop_cluster_gpus"].get() == 2  # up nodes only, as the dashboard counts


def test_a_lost_gpu_says_lost_and_nothing_else(client: Any) -> None:
    lost = b.gpu(0, 95, temp=99)
    lost.lost, lost.error = True, "fell off the bus"
    b.publish(client, [b.node("t", ts=time.time(), gpus=[lost, b.gpu(1, 20)])])
    fams = check(scrape(Exporter(client)))
    assert fams["clustertop_gpu_lost"].get(node="t", gpu="0") == 1
    assert fams["clustertop_gpu_lost"].get(node="t", gpu="1") == 0
    assert all(f.get(node="t", gpu="0") is None for n, f in fams.items() if n.startswith("DCGM"))
    assert fams["clustertop_cluster_gpus_lost"].get() == 1


def test_the_simulated_cluster_parses_lints_and_adds_up(client: Any) -> None:
    sim = SimCluster(seed=3, nodes=20, gpus_per_node=4)
    publish(client, sim, time.time(), make_publishers(sim, client, 600.0))
    fams = check(scrape(Exporter(client)))
    totals = Reader(client).read().totals  # the dashboard's own read of the same data
    assert fams["clustertop_cluster_gpus"].get() == totals.gpus_total == 7 * 4
    assert fams["clustertop_cluster_gpus_busy"].get() == totals.gpus_busy
    assert fams["clustertop_cluster_memory_used_bytes"].get() == totals.mem_used_bytes
    assert fams["clustertop_cluster_gpu_power_watts"].get() == pytest.approx(totals.power_mw / 1000)
    # Per card and per node figures add up to the totals.
    assert sum(fams["DCGM_FI_DEV_FB_USED"].samples.values()) * MIB == pytest.approx(totals.vram_used_bytes)
    assert sum(fams["node_memory_MemTotal_bytes"].samples.values()) == totals.mem_total_bytes
    assert sum(fams["clustertop_node_up"].samples.values()) == totals.nodes_up == 20
    # Bonds as node_exporter counts them, the slaves on their own.
    gpu01 = Reader(client).read().node("gpu01").snap  # type: ignore[union-attr]
    bond = gpu01.bonds[0]  # type: ignore[index]
    assert fams["node_bonding_slaves"].get(node="gpu01", master=bond.name) == len(bond.slaves or [])
    assert fams["node_bonding_active"].get(node="gpu01", master=bond.name) == sum(
        s.mii_status == "up" for s in bond.slaves or [])
    assert len(fams["clustertop_bond_slave_ok"].where(node="gpu01")) == len(bond.slaves or [])
    # The cluster sources the simulator publishes, fresh.
    assert {dict(k)["source"]: v for k, v in fams["clustertop_source_up"].samples.items()} == {
        "ceph": 1, "celery": 1, "dask": 1, "kubernetes": 1}
    assert fams["clustertop_ceph_health_status"].get() in (0, 1, 2)
    assert fams["clustertop_ceph_osds"].get(state="all") > 0
    assert fams["clustertop_queue_depth"].samples and fams["clustertop_kubernetes_node_ready"].samples
    assert fams["clustertop_cluster_pods_running"].get() == totals.pods_running
    assert fams["clustertop_exporter_duplicate_series"].get() == 0


def test_hostile_values_never_break_the_exposition(client: Any) -> None:
    """NaN, ±inf, 1e308, a 1 MB hostname, quotes, newlines, backslashes and bidi in node text, a GPU
    index twice: the page still parses (strictly, by prometheus_client, by promtool), names stay data."""
    now = time.time()
    # Card 0 twice (same index, same UUID: the same series); card 1 with a model name of quotes and bidi.
    odd = b.node('gpu"\\\n\u202e01', ts=now, gpus=[b.gpu(0, 10), b.gpu(0, 20),
                                                     b.gpu(1, 30, name='Tesla "V100"\n\u202eevil')])
    assert odd.system is not None and odd.system.cpu is not None and odd.system.nics
    odd.system.cpu.util_pct = float("nan")
    odd.system.load1, odd.system.load5 = float("inf"), float("-inf")
    odd.system.nics[0].rx_bytes_s = 1e308
    odd.system.nics[0].name = 'eth"0\n'
    b.publish(client, [odd])
    big = "\u202e" + "h" * (1 << 20)  # only in the index: a payload that big is past the wire limit
    b.write_raw(client, big, b"\x92\x01\x02", ts=now)
    fams = check(scrape(Exporter(client)))
    host = 'gpu"\\\\x0a\\u202e01'  # inert: newline and bidi shown escaped, the quote and backslash kept
    assert fams["clustertop_node_up"].get(node=host) == 1
    assert fams["clustertop_node_cpu_utilization_ratio"].get(node=host) is None  # NaN: no sample
    assert fams["node_load1"].get(node=host) is None and fams["node_load5"].get(node=host) is None
    assert fams["clustertop_network_receive_bytes_per_second"].get(node=host, device='eth"0\\x0a') == 1e308
    assert fams["DCGM_FI_DEV_GPU_UTIL"].get(node=host, gpu="0") == 10  # the first card 0 wins ...
    assert fams["DCGM_FI_DEV_GPU_UTIL"].get(node=host, modelName='Tesla "V100"\\x0a\\u202eevil') == 30
    assert fams["clustertop_exporter_duplicate_series"].get() > 0  # ... and the repeat is counted
    (big_label,) = [dict(k)["node"] for k in fams["clustertop_node_up"].samples if dict(k)["node"] != host]
    assert len(big_label) == LABEL_MAX and big_label.startswith("\\u202ehhh")
    assert fams["clustertop_node_up"].get(node=big_label) == 0  # bad data (or down): listed, no figures
    assert fams["clustertop_cluster_cpu_utilization_ratio"].get() is None  # NaN in, no total out


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    srv = RedisServer()
    try:
        yield srv
    finally:
        srv.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.large_base_example])
@given(cluster=hostile.hostile_clusters())
def test_whatever_a_redis_writer_sends_the_page_parses(shared_redis: RedisServer,
                                                       cluster: hostile.HostileCluster) -> None:
    client = shared_redis.client()
    client.flushall()
    hostile.write_cluster(client, cluster, b.NOW)
    fams = check(scrape(Exporter(client, clock=lambda: b.NOW)))
    # Every host in the index is listed with its state, each under its own (bounded) label.
    assert len(fams["clustertop_node_up"].samples) == len(cluster.nodes) + cluster.phantoms
    assert all(len(dict(k)["node"]) <= LABEL_MAX for k in fams["clustertop_node_up"].samples)


def test_scrapes_within_the_cache_time_share_one_read(client: Any) -> None:
    b.publish(client, [b.tower("t", ts=time.time())])
    clock = [100.0]
    exporter = Exporter(client, monotonic=lambda: clock[0])

    def zranges() -> int:  # every read is one pipeline that starts with ZRANGE of the node index
        return int(client.info("commandstats").get("cmdstat_zrange", {}).get("calls", 0))

    def own(body: bytes, name: str) -> float | None:
        return promtext.parse(body)[name].get()

    a = scrape(exporter)
    clock[0] += 0.5
    c = scrape(exporter, compress=True)
    assert zranges() == 1
    assert (own(a, "clustertop_exporter_reads_total"), own(c, "clustertop_exporter_reads_total")) == (1, 1)
    assert own(c, "clustertop_exporter_scrapes_total") == 2
    assert own(c, "clustertop_exporter_data_age_seconds") == 0.5
    # The shared data is the same bytes, whatever the encoding; only the exporter's own tail differs.
    strip = [ln for ln in a.decode().splitlines() if "exporter_" not in ln and "process_" not in ln]
    assert strip == [ln for ln in c.decode().splitlines() if "exporter_" not in ln and "process_" not in ln]
    clock[0] += 0.5  # the cache time has passed: the next scrape reads again
    d = scrape(exporter)
    assert zranges() == 2 and own(d, "clustertop_exporter_reads_total") == 2
    assert own(d, "process_cpu_seconds_total") > 0 and own(d, "process_resident_memory_bytes") > 1 << 20


def test_scrapers_arriving_together_wait_for_one_read(client: Any) -> None:
    b.publish(client, [b.tower(f"t{i}", ts=time.time()) for i in range(50)])
    exporter = Exporter(client, cache_s=30)  # generous: a slow machine must not make this a second read
    start = threading.Barrier(6)
    bodies: list[bytes] = []

    def one() -> None:
        start.wait()
        bodies.append(exporter.scrape())

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(bodies) == 6 and exporter.reads == 1
    assert {promtext.parse(x)["clustertop_exporter_reads_total"].get() for x in bodies} == {1}


def test_a_dead_store_is_store_up_0_and_no_node_then_back(redis_server: RedisServer) -> None:
    b.publish(redis_server.client(), [b.tower("t", ts=time.time())])
    exporter = Exporter(redis_server.client(), cache_s=0)
    assert check(scrape(exporter))["clustertop_node_up"].get(node="t") == 1
    port = redis_server.port
    redis_server.stop()
    fams = check(scrape(exporter))
    assert fams["clustertop_store_up"].get() == 0
    assert fams["clustertop_exporter_read_errors_total"].get() == 1
    assert not [n for n in fams if not n.startswith(("clustertop_exporter_", "clustertop_store_", "process_"))]
    back = RedisServer(port=port)
    try:
        b.publish(back.client(), [b.tower("t", ts=time.time())])
        fams = check(scrape(exporter))
        assert fams["clustertop_store_up"].get() == 1 and fams["clustertop_node_up"].get(node="t") == 1
    finally:
        back.stop()


def test_gpu_ledger_flags_are_exported(client: Any) -> None:
    """A pod that holds a GPU it leaves idle for 15 min, a busy GPU no pod owns for a minute: both flagged."""
    clock = [b.NOW]
    pod_proc = b.gpu_proc(4242, pod="train")
    assert pod_proc.owner is not None
    pod_proc.owner.pod_uid = "uid-1"
    stray = b.gpu_proc(777, user="mallory")

    def write() -> None:
        k8s = schema.ClusterPayload(
            name="kubernetes", source_host="k1", ts=clock[0], seq=1, interval_s=5.0, ok=True, last_ok_ts=clock[0],
            kubernetes=schema.Kubernetes(
                nodes=[schema.K8sNode(name="k1", ready=True, gpu_capacity=2, gpu_allocatable=2, gpu_allocated=1)],
                pods=[schema.K8sPod(namespace="ml", name="train", node="k1", phase="Running", gpus=1, uid="uid-1")]))
        b.publish(client, [b.node("k1", ts=clock[0], gpus=[b.gpu(0, 0, procs=[pod_proc]), b.gpu(1, 90, procs=[stray])])],
                  cluster=[k8s])

    exporter = Exporter(client, cache_s=0, clock=lambda: clock[0])
    write()
    assert "clustertop_gpu_ledger_flag_seconds" not in check(scrape(exporter))  # nothing has lasted yet
    clock[0] += 16 * 60
    write()
    fams = check(scrape(exporter))
    flags = fams["clustertop_gpu_ledger_flag_seconds"]
    assert flags.get(kind="idle-allocated", node="k1", pod="ml/train") == 16 * 60
    assert flags.get(kind="unowned-busy", node="k1", gpus="1") == 16 * 60
    assert fams["clustertop_gpu_ledger_idle_allocated_gpus"].get(node="k1") == 1
    assert fams["clustertop_gpu_ledger_unowned_busy_gpus"].get(node="k1") == 1
    assert fams["clustertop_kubernetes_pod_gpus_requested"].get(namespace="ml", pod="train") == 1
    assert fams["clustertop_gpu_owner"].get(node="k1", gpu="0", kind="pod", name="train") == 1
    # The Kubernetes payload goes stale (its publisher stopped): its series and the ledger go with it.
    clock[0] += 60
    fams = check(scrape(exporter))
    assert fams["clustertop_source_up"].get(source="kubernetes") == 0
    assert not [n for n in fams if n.startswith(("clustertop_kubernetes_", "clustertop_gpu_ledger_"))]
    assert "clustertop_cluster_pods_running" not in fams


def test_the_exporter_loads_no_ui_no_collector_library() -> None:
    mods = loaded_after("import clustertop.export.exporter, clustertop.export.metrics")
    tops = {m.split(".")[0] for m in mods}
    assert not tops & {"textual", "rich", "psutil", "pynvml", "redis", "httpx", "kubernetes", "cryptography"}


def test_the_exporter_shows_current_figures_over_older_detail_and_wants_nothing(client: Any) -> None:
    """Agents on the full-snapshot cadence (docs/architecture.md "Byte budget"): by default the exporter asks
    for nothing (no want key: the agents keep writing their full snapshots every full_every), draws each node's
    brief over its older full snapshot (the GPU's utilisation and power are this tick's, its clocks and the
    GPU info the full snapshot's) and says how old that detail is."""
    from clustertop.agents.publisher import Publisher

    now = time.time()
    pubs = {h: Publisher(client, h, 1.0, full_every_s=15.0, tiers=False) for h in ("t0", "t1")}
    for k in range(3):
        for h, pub in pubs.items():
            snap = b.tower(h, utils=(10 + 30 * k, 5), ts=now - 2 + k, seq=k + 1)
            assert snap.gpus is not None
            snap.gpus[0].sm_clock_mhz = 1000 + k
            pub.publish(snap)
    exporter = Exporter(client, cache_s=0)
    for _ in range(2):
        fams = check(scrape(exporter))
        for h in pubs:
            assert fams["clustertop_node_up"].get(node=h) == 1
            assert fams["clustertop_node_detail_age_seconds"].get(node=h) >= 2
            assert fams["DCGM_FI_DEV_GPU_UTIL"].get(Hostname=h, gpu="0") == 70  # tick 3's, the brief's
            assert fams["DCGM_FI_DEV_POWER_USAGE"].get(Hostname=h, gpu="0") == 50 + 2 * 70
            assert fams["DCGM_FI_DEV_SM_CLOCK"].get(Hostname=h, gpu="0") == 1000  # tick 1's: detail
            assert not client.exists(wire.want_key(h))
    assert [p.fulls for p in pubs.values()] == [1, 1]


def test_the_exporter_with_fresh_detail_asks_for_full_snapshots(client: Any) -> None:
    """``--fresh-detail``: every node is asked for its full snapshot every tick (a want for as long as agents
    allow, so scrapes 15-30 s apart keep it); until a node answers, its detail says how old it is."""
    from clustertop.agents.publisher import Publisher

    now = time.time()
    pubs = {h: Publisher(client, h, 1.0, full_every_s=15.0, tiers=False) for h in ("t0", "t1")}
    for k in range(3):
        for h, pub in pubs.items():
            pub.publish(b.tower(h, ts=now - 2 + k, seq=k + 1))
    exporter = Exporter(client, cache_s=0, fresh_detail=True)
    fams = check(scrape(exporter))
    for h in pubs:
        assert fams["clustertop_node_up"].get(node=h) == 1
        assert fams["clustertop_node_detail_age_seconds"].get(node=h) >= 2
        assert 5_000 < client.pttl(wire.want_key(h)) <= wire.WANT_MAX_MS
    for k in (3, 4):  # the agents see the want, then write in full
        for h, pub in pubs.items():
            pub.publish(b.tower(h, ts=now - 2 + k, seq=k + 1))
    fams = check(scrape(exporter))
    assert [fams["clustertop_node_detail_age_seconds"].get(node=h) for h in pubs] == [0, 0]
