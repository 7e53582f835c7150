"""Builds realistic, deterministic test data and writes it to Redis through the real Publisher.

``node(...)`` makes a NodeSnapshot shaped like a real GPU tower or ARM board (every number is a
function of the arguments, so tests can compute the expected totals); ``publish(...)`` writes
through ``agents.publisher.Publisher`` (the agent's own write path) including history points.
"""

from __future__ import annotations

from typing import Any

from clustertop import wire
from clustertop.agents.publisher import Publisher, hist_point
from clustertop.wire import schema

GIB = 1024**3
NOW = 1_750_000_000.0  # a fixed clock for tests: 2025-06-15


def gpu(index: int, util: int | None = 50, mem_used_gib: float | None = 4.0, *, mem_total_gib: float = 11.0,
        temp: int | None = 60, power_w: float | None = 150.0, name: str = "NVIDIA GeForce GTX 1080 Ti",
        procs: list[schema.GpuProc] | None = None, **kw: Any) -> schema.Gpu:
    return schema.Gpu(
        index=index, uuid=f"GPU-{index:08d}", name=name, bus_id=f"00000000:{index + 1:02X}:00.0",
        util_pct=util, mem_util_pct=None if util is None else util // 2,
        mem_total_bytes=int(mem_total_gib * GIB), mem_used_bytes=None if mem_used_gib is None else int(mem_used_gib * GIB),
        temp_c=temp, temp_slowdown_c=96, power_mw=None if power_w is None else int(power_w * 1000),
        power_limit_mw=250_000, fan_pct=None if temp is None else 40, sm_clock_mhz=1600, mem_clock_mhz=5500,
        pstate=2 if util else 8, ecc_corrected=None, ecc_uncorrected=None, throttle_reasons=[],
        cuda_cores=3584, arch="Pascal", driver="550.54.14", procs=procs if procs is not None else [], **kw)


def gpu_proc(pid: int, name: str = "python", user: str = "alice", mem_gib: float = 3.5,
             cmdline: str | None = None, pod: str | None = None) -> schema.GpuProc:
    owner = schema.Owner(kind="pod", name=pod, namespace="ml") if pod else schema.Owner(kind="user", name=user)
    return schema.GpuProc(pid=pid, used_mem_bytes=int(mem_gib * GIB), user=user, name=name,
                          cmdline=cmdline or f"{name} train.py --epochs 90", start_ts=NOW - 3600, owner=owner)


def node(host: str, *, ts: float = NOW, seq: int = 1, cpu: float | None = 40.0, cores: int = 32,
         mem_total_gib: float = 128.0, mem_used_gib: float | None = 64.0, gpus: list[schema.Gpu] | None = None,
         procs: list[schema.Proc] | None = None, role: str = "gpu", rx: float = 10e6, tx: float = 5e6,
         collectors: dict[str, schema.CollectorStatus] | None = None) -> schema.NodeSnapshot:
    """A node snapshot. ``gpus=None`` means "GPU collector did not report" (N/A), [] means no GPUs."""
    per_cpu = None if cpu is None else [float((cpu + 7 * i) % 100) for i in range(cores)]
    system = schema.System(
        hostname=host, os="Debian GNU/Linux 12", kernel="6.1.0-18-amd64", arch="x86_64",
        cpu_model="AMD Ryzen 9 5950X", cpu_count=cores, cpu_physical=cores // 2, cpu_mhz=3400.0,
        boot_ts=ts - 86400 * 3, uptime_s=86400 * 3 + 3600, load1=None if cpu is None else cores * cpu / 100,
        load5=4.0, load15=3.5,
        cpu=schema.CpuTimes(util_pct=cpu, per_cpu_pct=per_cpu, user_pct=None if cpu is None else cpu * 0.8,
                            system_pct=None if cpu is None else cpu * 0.2, iowait_pct=0.5, steal_pct=0.0),
        mem=schema.Memory(total_bytes=int(mem_total_gib * GIB),
                          used_bytes=None if mem_used_gib is None else int(mem_used_gib * GIB),
                          available_bytes=None if mem_used_gib is None else int((mem_total_gib - mem_used_gib) * GIB),
                          cached_bytes=8 * GIB, swap_total_bytes=8 * GIB, swap_used_bytes=0),
        disks=[schema.DiskIO(name="nvme0n1", read_bytes_s=2e6, write_bytes_s=1e6, util_pct=3.0, await_ms=0.4)],
        filesystems=[schema.Filesystem(mountpoint="/", device="/dev/nvme0n1p2", fstype="ext4",
                                       total_bytes=900 * GIB, used_bytes=300 * GIB, avail_bytes=600 * GIB)],
        nics=[schema.Nic(name="bond0", kind="bond", rx_bytes_s=rx, tx_bytes_s=tx, speed_mbps=3000, up=True),
              schema.Nic(name="eno1", kind="bond-slave", rx_bytes_s=rx / 3, tx_bytes_s=tx / 3, speed_mbps=1000,
                         up=True),
              schema.Nic(name="lo", kind="loopback", rx_bytes_s=1e3, tx_bytes_s=1e3, up=True)],
        procs=procs if procs is not None else [
            schema.Proc(pid=1000 + i, user="alice", name="python", cmdline="python train.py", cpu_pct=90.0 - i,
                        rss_bytes=2 * GIB, state="R", threads=8) for i in range(3)],
        procs_total=412,
    )
    cols = collectors if collectors is not None else {
        "host": schema.CollectorStatus(ok=True, duration_ms=3.2, last_ok_ts=ts, interval_s=1.0),
        "gpu": schema.CollectorStatus(ok=True, duration_ms=6.5, last_ok_ts=ts, interval_s=1.0),
    }
    return schema.NodeSnapshot(
        host=host, ts=ts, seq=seq, interval_s=1.0, role=role, labels={"rack": "r1"}, collectors=cols,
        agent=schema.AgentStats(version="0.1.0", pid=4242, cpu_pct=1.5, rss_bytes=48 * 1024 * 1024, tick_ms=12.0,
                                started_ts=ts - 3600),
        system=system, gpus=gpus)


def tower(host: str, utils: tuple[int | None, ...] = (80, 5), **kw: Any) -> schema.NodeSnapshot:
    """A GPU tower: one GTX 1080 Ti class card per entry of ``utils``."""
    return node(host, gpus=[gpu(i, u, power_w=None if u is None else 50 + 2 * u) for i, u in enumerate(utils)], **kw)


def publish(client: Any, snaps: list[schema.NodeSnapshot], *, hist: int = 0, interval_s: float = 600.0,
            cluster: list[schema.ClusterPayload] | None = None, keys: dict[str, Any] | None = None) -> None:
    """Write snapshots through the real Publisher; ``hist`` back-dated history points per node.

    ``interval_s`` sets the key TTL (3 intervals of Redis's own clock): long by default, so a slow
    test machine never sees a node expire by accident; tests about expiry delete keys themselves.
    ``keys``: host -> the node's private key; those nodes seal what they publish, as agents do.
    """
    for i, snap in enumerate(snaps):
        pub = Publisher(client, snap.host, interval_s, key=(keys or {}).get(snap.host))
        for k in range(hist, 0, -1):
            hp = hist_point(snap)
            hp.ts = snap.ts - 5 * k
            hp.cpu = None if hp.cpu is None else (hp.cpu + 3 * k) % 100
            hp.gu = [None if u is None else (u + 7 * k) % 100 for u in hp.gu] if hp.gu else hp.gu
            pub.publish(snap, hp)
        pub.publish(snap, hist_point(snap) if hist else None, cluster=cluster if i == 0 else None)


def ceph(status: str = "HEALTH_OK") -> schema.ClusterPayload:
    return schema.ClusterPayload(name="ceph", source_host="node-01", ts=NOW, seq=1, ok=True, last_ok_ts=NOW,
                                 ceph=schema.Ceph(status=status, osds_total=30, osds_up=30, osds_in=30))


def queues(depth: int = 41) -> schema.ClusterPayload:
    return schema.ClusterPayload(name="celery", source_host="node-01", ts=NOW, seq=1, ok=True, last_ok_ts=NOW,
                                 queues=schema.Queues(queues=[schema.Queue(broker="redis://broker:6379/0",
                                                                           name="celery", depth=depth)]))


def node_key(host: str) -> Any:
    """A fixed key per host (its seed derived from the name): seals, signatures and fingerprints come out
    the same on every run, so SVG snapshots that show them stay stable. Tests only, never a real node."""
    import hashlib

    from clustertop.control import signing

    raw = hashlib.sha256(b"clustertop-test-node-key:" + host.encode()).digest()
    return signing.PrivateKey(key_id=signing.PrivateKey(key_id="", raw=raw).public().key_id, raw=raw)


def known_nodes(*hosts: str) -> Any:
    """In-memory trust anchors enrolling ``hosts`` with their ``node_key``."""
    from clustertop.control import trust

    return trust.KnownNodes(keys={h: node_key(h).public() for h in hosts})


def silence(client: Any, *hosts: str) -> None:
    """``hosts`` stop reporting: their per-tick keys gone, as their TTL would make them (the digest's is what says
    a node is up; a full snapshot's key may outlive it: docs/architecture.md "Byte budget")."""
    for h in hosts:
        client.delete(wire.node_key(h), wire.brief_key(h), wire.digest_key(h), wire.seal_key(h))


def write_raw(client: Any, host: str, data: bytes, ts: float = NOW) -> None:
    """A node key holding exactly ``data`` (garbage, a newer schema...), listed in the index."""
    client.set(wire.node_key(host), data)
    client.zadd(wire.NODES_KEY, {host: ts})


def newer_schema_payload(host: str, ts: float = NOW) -> bytes:
    """A v=2 snapshot with fields this dashboard does not know (as msgpack, like a newer agent)."""
    import msgspec

    d = wire.to_builtins(tower(host, ts=ts))
    d["v"] = 2
    d["quantum"] = {"qubits": 7}
    d["system"]["thermal_zones"] = [{"name": "x86_pkg_temp", "temp_c": 55}]
    return msgspec.msgpack.encode(d)


def demo_cluster(ts: float = NOW) -> list[schema.NodeSnapshot]:
    """5 GPU towers with 2 cards each plus 3 ARM boards: the shape clustertop was born for."""
    snaps = [tower(f"gpu-{i:02d}", (90 - 10 * i, 5 * i), ts=ts, seq=10 + i, cpu=20.0 + 10 * i) for i in range(1, 6)]
    snaps += [node(f"arm-{i:02d}", ts=ts, seq=5, cpu=15.0 * i, cores=4, mem_total_gib=4, mem_used_gib=1.5 + 0.5 * i,
                   gpus=[], role="arm-worker") for i in range(1, 4)]
    return snaps


async def wait_until(pilot: Any, cond: Any, what: str = "condition", tries: int = 400) -> None:
    """Let the app run until ``cond()`` holds (reads happen in a worker thread). Not a timing
    assertion: the bound only turns a hang into a readable failure."""
    for _ in range(tries):
        if cond():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_reads(pilot: Any, total: int = 1) -> None:
    """Until the app has finished ``total`` reads since it started (the first read: total=1)."""
    app = pilot.app
    await wait_until(pilot, lambda: app.finished_reads >= total, f"{total} read(s)")


async def work_tab(pilot: Any, pane: str, rows: Any = None, what: str = "the rows", tries: int = 400) -> Any:
    """The Work screen (key 6) on its ``pane`` tab after the first read; with ``rows`` (a predicate on the tab's
    row count), once the tab's table has them. Returns the screen."""
    from clustertop.dashboard.screens.work import WorkScreen

    await wait_reads(pilot)
    await pilot.press("6")
    screen = pilot.app.screen
    assert isinstance(screen, WorkScreen)
    screen.query_one("#work-tabs").active = pane  # type: ignore[attr-defined]
    if rows is not None:
        await wait_until(pilot, lambda: rows(screen.table(pane).row_count), what, tries)
    return screen


async def wait_fresh(pilot: Any, n: int = 1) -> None:
    """Until ``n`` more reads than now have finished (to see a change made in the store)."""
    app = pilot.app
    target = app.finished_reads + n
    await wait_until(pilot, lambda: app.finished_reads >= target, f"{n} more read(s)")


def trouble_gpu(g: schema.Gpu, r: float) -> None:
    """Give one GPU, by ``r`` in [0, 1), the trouble the cluster folds look at: lost (< 0.02), hot
    (< 0.05), uncorrected ECC (< 0.07), hardware-throttled (< 0.09), software-throttled (< 0.11),
    silent: util, VRAM and power unknown (< 0.13); at 0.13 and above, none."""
    if r < 0.02:
        g.lost, g.error = True, "fell off the bus"
    elif r < 0.05:
        g.temp_c = 97
    elif r < 0.07:
        g.ecc_uncorrected = 2
    elif r < 0.09:
        g.throttle_reasons = ["sw_power_cap", "hw_thermal_slowdown"]
    elif r < 0.11:
        g.throttle_reasons = ["sw_power_cap"]
    elif r < 0.13:
        g.util_pct = g.mem_used_bytes = g.power_mw = None
