"""Tests for the gpu collector (collectors/gpu.py).

There is no NVIDIA driver on the test machine. The no-driver case runs the REAL pynvml against the real
(absent) library; every other case puts tests/support/nvml.py in place of libnvidia-ml.so.1 underneath the
real pynvml (see that module's docstring), so pynvml's own wrappers, error classes and decoding run.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pynvml
import pytest

from clustertop import wire
from clustertop.collectors import gpu as gpumod
from clustertop.collectors.base import Context, NoData, Roots
from clustertop.collectors.gpu import GpuCollector
from clustertop.config import ConfigError
from clustertop.wire import schema
from tests.conftest import FIXTURES, ROOT
from tests.support import nvml as fake

NODE_A = FIXTURES / "gpu" / "node-a"


class Clock:
    """A monotonic clock the test moves by hand (TTLs and back-offs without sleeping)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def collector(config: dict | None = None, roots: Roots | None = None) -> tuple[GpuCollector, Clock]:
    clock = Clock()
    ctx = Context(node="gpu-node", roots=roots or Roots(), config=config or {}, config_file="agent.toml")
    return GpuCollector(ctx, clock=clock), clock


def full_dump(gpu: schema.Gpu) -> dict:
    """Every field, None included (the wire omits defaults; this is what a reader ends up with)."""
    return json.loads(msgspec.json.encode(msgspec.structs.asdict(gpu)))


# ---------------------------------------------------------------------------------------------
# No driver
# ---------------------------------------------------------------------------------------------


def test_no_driver_real_pynvml_gives_nodata_and_does_not_retry_every_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has an NVIDIA driver: the no-driver path cannot be shown with the real library")
    assert pynvml.nvmlLib is None  # nothing faked: the real binding, the real (missing) library
    real_init = pynvml.nvmlInit
    inits: list[int] = []

    def counting_init() -> None:
        inits.append(1)
        real_init()

    monkeypatch.setattr(pynvml, "nvmlInit", counting_init)
    c, clock = collector()
    with pytest.raises(NoData, match="NVML Shared Library Not Found"):
        c.collect()
    for _ in range(5):
        clock.t += 1.0
        with pytest.raises(NoData):
            c.collect()
    assert len(inits) == 1  # a GPU-less node stays cheap: no dlopen every second
    clock.t += gpumod.INIT_RETRY_S
    with pytest.raises(NoData):
        c.collect()
    assert len(inits) == 2  # but a driver installed later is noticed
    c.close()


def test_driver_not_loaded_is_nodata_then_a_loaded_driver_is_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 2, init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    c, clock = collector()
    with pytest.raises(NoData, match="Driver Not Loaded"):
        c.collect()
    clock.t += 10
    with pytest.raises(NoData):
        c.collect()
    assert lib.calls["nvmlInitWithFlags"] == 1
    lib.init_error = None  # modprobe nvidia
    clock.t += gpumod.INIT_RETRY_S
    assert [g.index for g in c.collect()] == [0, 1]


def test_other_init_failures_are_errors_not_nodata(monkeypatch: pytest.MonkeyPatch) -> None:
    # A driver/library mismatch after an upgrade is something to fix, not "no GPUs here".
    fake.install(monkeypatch, "h100_sxm", 8, init_error=pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    c, _ = collector()
    with pytest.raises(RuntimeError, match="NVML init failed"):
        c.collect()


# ---------------------------------------------------------------------------------------------
# Whole nodes
# ---------------------------------------------------------------------------------------------


def test_two_gtx_1080_ti_node(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, "gtx1080ti", 2)
    c, _ = collector()
    busy, idle = c.collect()

    assert (busy.index, idle.index) == (0, 1)
    assert busy.name == idle.name == "NVIDIA GeForce GTX 1080 Ti"
    assert busy.uuid != idle.uuid and busy.uuid.startswith("GPU-")
    assert (busy.bus_id, idle.bus_id) == ("00000000:01:00.0", "00000000:02:00.0")
    assert busy.driver == "470.256.02"
    assert busy.arch == "pascal"
    # Driver 470 has no nvmlDeviceGetNumGpuCores: 28 SMs (by name) x 128 cores per SM (compute 6.1).
    assert busy.cuda_cores == 3584
    assert (busy.util_pct, busy.mem_util_pct) == (97, 58)
    assert (busy.mem_used_bytes, busy.mem_total_bytes) == (11053039616, 11720982528)
    assert (busy.temp_c, busy.temp_slowdown_c) == (83, 93)
    assert (busy.power_mw, busy.power_limit_mw) == (243512, 250000)
    assert busy.fan_pct == 78
    assert (busy.sm_clock_mhz, busy.mem_clock_mhz, busy.sm_clock_max_mhz) == (1835, 5005, 1911)
    assert busy.pstate == 2
    assert busy.throttle_reasons == ["sw_power_cap"]
    assert idle.throttle_reasons == ["gpu_idle"]
    assert (idle.util_pct, idle.pstate, idle.fan_pct) == (0, 8, 23)
    # GeForce: no ECC, no energy counter (Volta and newer): unknown, not zero.
    assert busy.ecc_corrected is None and busy.ecc_uncorrected is None
    assert busy.energy_mj is None
    assert busy.pcie_rx_bytes_s is None  # not asked for by default
    assert busy.procs == [] and not busy.lost and busy.error is None


def test_eight_h100_node(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 8)
    c, _ = collector()
    gpus = c.collect()

    assert [g.index for g in gpus] == list(range(8))
    assert len({g.uuid for g in gpus}) == 8
    assert [g.bus_id for g in gpus] == [f"00000000:{b}:00.0" for b in
                                        ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")]
    for g in gpus:
        assert g.name == "NVIDIA H100 80GB HBM3" and g.arch == "hopper"
        assert g.cuda_cores == 16896  # from nvmlDeviceGetNumGpuCores on this driver
        assert g.power_limit_mw == 700000 and g.sm_clock_max_mhz == 1980
        assert g.fan_pct is None  # passively cooled SXM
        assert g.ecc_uncorrected == 0
        assert g.pstate == 0 and g.throttle_reasons == ["sw_power_cap"]
        assert g.energy_mj is not None and g.energy_mj > 10**11
    assert [g.ecc_corrected for g in gpus] == [0, 3] * 4
    assert lib.calls["nvmlDeviceGetNumGpuCores"] == 8
    # Newer driver: the clocks-event query, not the deprecated throttle one.
    assert lib.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 8
    assert lib.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 0

    # "A few KiB for an 8-GPU node", through the real wire encoder.
    snap = schema.NodeSnapshot(host="dgx-01", ts=time.time(), seq=1, gpus=gpus)
    size = len(wire.encode(snap))
    # 5 KiB since issue 16: PCIe link, CUDA version, XID and row-remap fields cost ~70 bytes a card.
    assert size < 5120, size


def test_snapshot_through_real_redis_keeps_unknowns_unknown(monkeypatch: pytest.MonkeyPatch, redis_server) -> None:
    from clustertop.agents.publisher import Publisher
    from clustertop.read.reader import Reader

    fake.install(monkeypatch, "h100_sxm", 8)
    c, _ = collector()
    snap = schema.NodeSnapshot(host="dgx-01", ts=time.time(), seq=1, gpus=c.collect())
    client = redis_server.client()
    Publisher(client, "dgx-01", 1.0).publish(snap)
    node = Reader(client).read().node("dgx-01")
    assert node is not None and node.state == "up"
    got = node.snap.gpus
    assert got == snap.gpus
    assert [g.fan_pct for g in got] == [None] * 8
    assert [g.ecc_corrected for g in got] == [0, 3] * 4  # a real 0 survives as 0


def test_agent_dry_run_prints_the_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`clustertop agent --once --dry-run` in process, on the fake 8x H100 node: the agent's own JSON."""
    from clustertop.agents.config import load_config
    from clustertop.agents.main import dry_run

    fake.install(monkeypatch, "h100_sxm", 8)
    conf = tmp_path / "agent.toml"
    conf.write_text("[collectors.gpu]\npcie = true\n"
                    "[collectors.host]\nenabled = false\n[collectors.bonds]\nenabled = false\n"
                    "[collectors.nfs]\nenabled = false\n")
    assert dry_run(load_config(str(conf), env={})) == 0
    node = json.loads(capsys.readouterr().out)["node"]
    assert node["collectors"]["gpu"]["ok"] is True
    gpus = node["gpus"]
    assert len(gpus) == 8 and gpus[0]["name"] == "NVIDIA H100 80GB HBM3"
    assert gpus[0]["pcie_rx_bytes_s"] == 1048576 * 1024
    # Unknown stays unknown in the printed snapshot: absent (or null), never 0.
    assert all(g.get("fan_pct") is None for g in gpus)
    assert [g["ecc_corrected"] for g in gpus] == [0, 3] * 4


# ---------------------------------------------------------------------------------------------
# NotSupported, unknown functions, other errors
# ---------------------------------------------------------------------------------------------


def test_not_supported_fields_are_null_in_json_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, "h100_sxm", 1)
    (h100,) = collector()[0].collect()
    dumped = full_dump(h100)
    assert dumped["fan_pct"] is None
    assert '"fan_pct":null' in msgspec.json.encode(msgspec.structs.asdict(h100)).decode()
    # On the wire the unknown is simply absent (omit_defaults), so a reader decodes None, not 0.
    wire_json = json.loads(msgspec.json.encode(h100))
    assert "fan_pct" not in wire_json
    assert msgspec.json.decode(msgspec.json.encode(h100), type=schema.Gpu).fan_pct is None


def test_geforce_ecc_and_energy_null_in_json(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, "gtx1080ti", 1)
    (g,) = collector()[0].collect()
    dumped = full_dump(g)
    for key in ("ecc_corrected", "ecc_uncorrected", "energy_mj"):
        assert dumped[key] is None, key
    assert dumped["fan_pct"] == 78


def test_missing_functions_fall_back_and_are_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # An even older driver: no nvmlDeviceGetArchitecture either. Architecture then comes from the
    # compute capability, processes from the _v2 query, throttle reasons from the pre-535 name.
    lib = fake.install(monkeypatch, "gtx1080ti", 2, missing={"nvmlDeviceGetArchitecture"})
    c, _ = collector()
    for _ in range(3):
        gpus = c.collect()
    assert [g.arch for g in gpus] == ["pascal", "pascal"]
    assert gpus[0].throttle_reasons == ["sw_power_cap"]
    assert gpus[0].error is None
    # Each missing symbol was looked up once for the whole node, not per GPU per tick.
    for name in ("nvmlDeviceGetArchitecture", "nvmlDeviceGetNumGpuCores",
                 "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetCurrentClocksEventReasons"):
        assert lib.missing_lookups[name] == 1, name
    assert lib.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 6


def test_unexpected_error_on_one_field_leaves_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 2)
    lib.devices[1].fail["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_UNKNOWN
    g0, g1 = collector()[0].collect()
    assert g1.power_mw is None and g1.error == "power: Unknown Error"
    assert g1.temp_c == 71 and not g1.lost
    assert g0.power_mw == 672431 and g0.error is None


def test_no_permission_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 1)
    lib.devices[0].fail["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVML_ERROR_NO_PERMISSION
    (g,) = collector()[0].collect()
    assert g.energy_mj is None and g.error is None


# ---------------------------------------------------------------------------------------------
# A GPU falls off the bus
# ---------------------------------------------------------------------------------------------


def test_gpu_lost_mid_run_others_keep_reporting(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 2)
    c, clock = collector()
    first = c.collect()
    assert not any(g.lost for g in first)

    lib.lose(1)  # Xid 79: fell off the bus
    clock.t += 1
    g0, g1 = c.collect()
    assert g1.lost and g1.error == "GPU is lost"
    # Identity stays (which card to pull), measurements are unknown.
    assert (g1.uuid, g1.bus_id, g1.name) == (first[1].uuid, "00000000:02:00.0", "NVIDIA GeForce GTX 1080 Ti")
    assert g1.util_pct is None and g1.temp_c is None and g1.procs is None
    assert not g0.lost and g0.util_pct == 97

    # The lost GPU is left alone for a while: calls to it can hang in the driver.
    calls_before = sum(n for (_, i), n in lib.device_calls.items() if i == 1)
    for _ in range(5):
        clock.t += 1
        g0, g1 = c.collect()
        assert g1.lost and g0.temp_c == 83
    assert sum(n for (_, i), n in lib.device_calls.items() if i == 1) == calls_before

    clock.t += gpumod.LOST_RETRY_S
    _, g1 = c.collect()
    assert g1.lost
    assert lib.device_calls[("nvmlDeviceGetHandleByIndex_v2", 1)] == 2  # probed again, still gone

    # Recovery (after a GPU reset) is noticed at the next probe.
    lib.devices[1].lost, lib.devices[1].lose_after_calls = False, None
    clock.t += gpumod.LOST_RETRY_S
    _, g1 = c.collect()
    assert not g1.lost and g1.util_pct == 0 and g1.error is None


def test_gpu_lost_halfway_through_its_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 8)
    c, clock = collector()
    before = c.collect()
    lib.lose(3, after_calls=4)  # answers a few queries of the next tick, then is gone
    clock.t += 1
    gpus = c.collect()
    assert [g.lost for g in gpus] == [False, False, False, True, False, False, False, False]
    assert gpus[3].util_pct is None  # nothing half-read is reported as if the GPU were fine
    assert gpus[3].uuid == before[3].uuid and gpus[3].bus_id == "00000000:5D:00.0"
    assert all(g.util_pct is not None for i, g in enumerate(gpus) if i != 3)


def test_lost_before_first_read_still_reports_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 2)
    lib.devices[0].lost = True  # already off the bus when the agent starts
    g0, g1 = collector()[0].collect()
    assert g0.lost and g0.uuid is None and g0.index == 0
    assert not g1.lost and g1.name == "NVIDIA GeForce GTX 1080 Ti"


# ---------------------------------------------------------------------------------------------
# Caching and lifecycle
# ---------------------------------------------------------------------------------------------


def test_static_queries_are_cached_and_refreshed_after_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 8)
    c, clock = collector()
    c.collect()
    static_once = lib.static_calls()
    assert static_once > 0
    for _ in range(9):
        clock.t += 1
        c.collect()
    assert lib.calls["nvmlInitWithFlags"] == 1
    assert lib.static_calls() == static_once  # name, uuid, limits ... not asked again
    assert lib.calls["nvmlDeviceGetUtilizationRates"] == 80  # one pass per device per tick
    assert lib.calls["nvmlDeviceGetHandleByIndex_v2"] == 8
    assert lib.calls["nvmlDeviceGetFanSpeed"] == 8  # NOT_SUPPORTED is remembered, not re-asked

    lib.devices[0].static["power_limit_mw"] = 500000  # nvidia-smi -pl 500
    clock.t += gpumod.STATIC_TTL_S
    gpus = c.collect()
    assert lib.static_calls() == 2 * static_once
    assert gpus[0].power_limit_mw == 500000
    assert lib.calls["nvmlDeviceGetFanSpeed"] == 16  # re-probed with the static facts


def test_close_shuts_nvml_down_and_collect_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 2)
    c, _ = collector()
    c.collect()
    assert lib.refcount == 1
    c.close()
    assert lib.refcount == 0 and lib.calls["nvmlShutdown"] == 1
    c.close()  # idempotent
    assert lib.calls["nvmlShutdown"] == 1
    assert len(c.collect()) == 2
    assert lib.refcount == 1


def test_nvml_shut_down_under_us_recovers_next_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 1)
    c, clock = collector()
    c.collect()
    pynvml.nvmlShutdown()  # some other library in the process
    clock.t += 1
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        c.collect()
    clock.t += 1
    assert len(c.collect()) == 1
    assert lib.calls["nvmlInitWithFlags"] == 2


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def test_processes_of_a_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    from clustertop.collectors.owner import owner_of

    lib = fake.install(monkeypatch, "gtx1080ti", 2)
    before = time.time()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        after = time.time()
        # Popen returns after fork, maybe before exec: wait until the kernel shows sleep's own argv.
        deadline = time.monotonic() + 5
        while Path(f"/proc/{sleeper.pid}/cmdline").read_bytes() != b"sleep\x0060\x00" and time.monotonic() < deadline:
            time.sleep(0.01)
        lib.devices[0].compute = [fake.FakeProc(sleeper.pid, 2 * 1024**3)]
        # A graphics client whose memory NVML cannot report (the NOT_AVAILABLE sentinel on the wire).
        lib.devices[1].graphics = [fake.FakeProc(sleeper.pid, None)]
        g0, g1 = collector()[0].collect()
        (p,) = g0.procs
        assert p.pid == sleeper.pid and p.kind == "compute"
        assert p.used_mem_bytes == 2 * 1024**3
        assert p.name == "sleep" and p.cmdline == "sleep 60"
        assert p.user == pwd.getpwuid(os.getuid()).pw_name
        # start time from /proc: btime has 1 s resolution, so allow a little either side
        assert p.start_ts is not None and before - 1.5 <= p.start_ts <= after + 1.5
        # the exact identity a kill is bound to: the kernel's start ticks and the real uid
        stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
        assert p.start_ticks == int(stat.rpartition(")")[2].split()[19]) and p.uid == os.getuid()
        assert p.owner == owner_of(sleeper.pid, Roots())
        (q,) = g1.procs
        assert q.kind == "graphics" and q.used_mem_bytes is None and q.name == "sleep"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_processes_from_a_fixture_proc_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 2)
    lib.devices[0].compute = [fake.FakeProc(4242, 74 * 1024**3), fake.FakeProc(9999, 512 * 1024**2)]
    lib.devices[1].compute = [fake.FakeProc(4300, None)]
    roots = Roots(proc=str(NODE_A / "proc"), etc=str(NODE_A / "etc"))
    g0, g1 = collector(roots=roots)[0].collect()

    train, ghost = g0.procs
    assert train.user == "alice" and train.name == "pt_main_thread"
    assert train.cmdline == "python train.py --config configs/llama-7b.yaml --nproc 2"
    assert train.start_ts == pytest.approx(1718000000 + 5123456 / os.sysconf("SC_CLK_TCK"))
    assert train.start_ticks == 5123456 and train.uid == 1001  # real uid, from status
    assert train.owner is not None and train.owner.kind == "pod"
    assert train.owner.pod_uid == "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6"
    # A pid NVML sees but our /proc does not (agent in a container without the host pid namespace).
    assert ghost.pid == 9999 and ghost.user is None and ghost.cmdline is None and ghost.used_mem_bytes == 512 * 1024**2

    (zombie,) = g1.procs
    assert zombie.name == "my job (2)" and zombie.user == "root" and zombie.cmdline is None
    assert zombie.used_mem_bytes is None


def test_process_details_cached_per_pid_and_start_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(NODE_A, tmp_path / "node")
    proc = tmp_path / "node" / "proc"
    lib = fake.install(monkeypatch, "gtx1080ti", 1)
    lib.devices[0].compute = [fake.FakeProc(4242, 1)]
    c, clock = collector(roots=Roots(proc=str(proc), etc=str(tmp_path / "node" / "etc")))
    assert c.collect()[0].procs[0].cmdline.startswith("python train.py")

    # Same pid, same start time: the same process, its details are not re-read.
    (proc / "4242" / "cmdline").write_bytes(b"python\0rewritten-title\0")
    clock.t += 1
    assert c.collect()[0].procs[0].cmdline.startswith("python train.py")

    # Same pid, new start time: the pid was reused by another process, read it afresh.
    stat = (proc / "4242" / "stat").read_text().replace(" 5123456 ", " 7000000 ")
    (proc / "4242" / "stat").write_text(stat)
    clock.t += 1
    p = c.collect()[0].procs[0]
    assert p.cmdline == "python rewritten-title"
    assert p.start_ts == pytest.approx(1718000000 + 7000000 / os.sysconf("SC_CLK_TCK"))
    assert p.start_ticks == 7000000  # the new process's identity, not the cached one's


def test_processes_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 1)
    (g,) = collector({"processes": False})[0].collect()
    assert g.procs is None
    assert lib.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 0


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_pcie_throughput_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, "h100_sxm", 1)
    (g,) = collector({"pcie": True})[0].collect()
    assert (g.pcie_rx_bytes_s, g.pcie_tx_bytes_s) == (1048576 * 1024, 24576 * 1024)


def test_unknown_or_mistyped_option_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"agent.toml: \[collectors.gpu\] pcei: unknown key"):
        collector({"pcei": True})
    with pytest.raises(ConfigError, match=r"\[collectors.gpu\] pcie: expected bool"):
        collector({"pcie": "yes"})
    with pytest.raises(ConfigError, match=r"\[collectors.gpu\] static_ttl_s: must be > 0"):
        collector({"static_ttl_s": 0})


def test_the_fake_follows_nvml_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake is only worth something if the real pynvml sees a library that behaves like NVML."""
    lib = fake.install(monkeypatch, "gtx1080ti", 1)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()  # before nvmlInit, as with the real library
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetNumGpuCores(h)  # symbol absent from a 470 driver
    with pytest.raises(pynvml.NVMLLibraryMismatchError):
        pynvml.nvmlDeviceGetComputeRunningProcesses(h)  # the unversioned wrapper wants _v3
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTotalEccErrors(h, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC)
    assert pynvml.nvmlDeviceGetComputeRunningProcesses_v2(h) == []
    lib.devices[0].compute = [fake.FakeProc(10, None), fake.FakeProc(11, 5)]
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses_v2(h)  # size query, then the array
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(10, None), (11, 5)]  # pynvml maps the sentinel
    assert pynvml.nvmlDeviceGetName(h) == "NVIDIA GeForce GTX 1080 Ti"
    pynvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetUtilizationRates(h)


# ---------------------------------------------------------------------------------------------
# Imports
# ---------------------------------------------------------------------------------------------


def test_importing_the_collector_does_not_load_pynvml() -> None:
    code = "import sys, clustertop.collectors.gpu; assert 'pynvml' not in sys.modules, 'pynvml imported at module top'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_gpu_module_is_the_only_one_importing_pynvml() -> None:
    offenders = []
    for pkg in ("collectors", "agents", "dashboard", "clustertop"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name != "gpu.py" or path.parent.name != "collectors":
                if re.search(r"^\s*(import|from)\s+pynvml\b", path.read_text(errors="replace"), re.M):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def test_decode_throttle_reasons() -> None:
    assert gpumod.decode_throttle_reasons(None) is None
    assert gpumod.decode_throttle_reasons(0) == []
    assert gpumod.decode_throttle_reasons(0x1FF) == [
        "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
        "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting"]
    # The same bit values as the binding's constants (both names of the API).
    assert gpumod.decode_throttle_reasons(pynvml.nvmlClocksThrottleReasonHwThermalSlowdown) == ["hw_thermal_slowdown"]
    assert gpumod.decode_throttle_reasons(pynvml.nvmlClocksEventReasonSwPowerCap) == ["sw_power_cap"]
    assert gpumod.decode_throttle_reasons(0x400 | 0x8) == ["hw_slowdown", "0x400"]  # newer bits stay visible


@pytest.mark.parametrize(("cores", "name", "cc", "arch", "want"), [
    (None, "NVIDIA GeForce GTX 1080 Ti", (6, 1), "pascal", 3584),
    (None, "GeForce GTX 1080 Ti", (6, 1), "pascal", 3584),  # drivers before 470: no "NVIDIA " prefix
    (None, "GeForce GTX 1080", (6, 1), "pascal", 2560),
    (None, "NVIDIA A100-SXM4-80GB", (8, 0), "ampere", 6912),  # GA100: 64 per SM, not 128
    (None, "Tesla V100-SXM2-32GB", None, "volta", 5120),  # no capability: architecture is unambiguous
    (None, "Tesla P100-PCIE-16GB", None, "pascal", None),  # Pascal without capability: 64 or 128?
    (None, "NVIDIA Mystery GPU", (9, 0), "hopper", None),
    (16896, "NVIDIA H100 80GB HBM3", (9, 0), "hopper", 16896),
])
def test_cuda_cores(cores, name, cc, arch, want) -> None:  # type: ignore[no-untyped-def]
    assert gpumod.cuda_cores(cores, name, cc, arch) == want


def test_arch_name() -> None:
    assert gpumod.arch_name(pynvml.NVML_DEVICE_ARCH_HOPPER, None) == "hopper"
    assert gpumod.arch_name(pynvml.NVML_DEVICE_ARCH_UNKNOWN, (8, 6)) == "ampere"
    assert gpumod.arch_name(None, (7, 5)) == "turing"
    assert gpumod.arch_name(None, (8, 9)) == "ada"
    assert gpumod.arch_name(None, None) is None


def test_used_memory_and_text() -> None:
    assert gpumod.used_memory(pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value) is None
    assert gpumod.used_memory(None) is None
    assert gpumod.used_memory(0) == 0
    assert gpumod.text(b"00000000:01:00.0") == "00000000:01:00.0"
    assert gpumod.text("") is None


def test_one_line() -> None:
    assert gpumod.one_line([]) is None
    assert gpumod.one_line([""]) is None
    assert gpumod.one_line(["python", "train.py"]) == "python train.py"
    long = gpumod.one_line(["python", "x" * 1000])
    assert long is not None and len(long) == gpumod.CMDLINE_MAX and long.endswith("…")
