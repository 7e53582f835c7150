"""GPU health reads of the gpu collector (issue 16): XID events, retired pages, remapped rows, PCIe link,
CUDA version.

No NVIDIA driver here: tests/support/nvml.py stands in for libnvidia-ml.so.1 under the REAL pynvml, so
pynvml's own wrappers (event data struct, the size-then-array protocol of the retired-pages query, the
error classes) run on every call. Every read that a card cannot answer must come out None, never 0.
"""

from __future__ import annotations

import json

import msgspec
import pynvml
import pytest

from clustertop.collectors.base import Context
from clustertop.collectors.gpu import GpuCollector, cuda_version
from clustertop.wire import schema
from tests.support import nvml as fake


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def collector() -> tuple[GpuCollector, Clock]:
    clock = Clock()
    return GpuCollector(Context(node="n", config={"processes": False}), clock=clock), clock


def test_pcie_link_and_cuda_version(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "gtx1080ti", 2)
    lib.cuda_version = 11040  # what driver 470 reports
    busy, idle = collector()[0].collect()
    assert busy.cuda_version == idle.cuda_version == "11.4"
    assert (busy.pcie_gen, busy.pcie_width, busy.pcie_gen_max, busy.pcie_width_max) == (3, 16, 3, 16)
    # An idle Pascal card drops its link to gen 1 to save power: the current and the possible differ.
    assert (idle.pcie_gen, idle.pcie_width) == (1, 16)


def test_pcie_link_not_supported_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    devices, _ = fake.make_devices("h100_sxm", 1)
    devices[0].not_supported |= {"nvmlDeviceGetCurrPcieLinkGeneration", "nvmlDeviceGetCurrPcieLinkWidth",
                                 "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth"}
    fake.install(monkeypatch, devices=devices)
    (g,) = collector()[0].collect()
    assert (g.pcie_gen, g.pcie_width, g.pcie_gen_max, g.pcie_width_max) == (None, None, None, None)
    assert g.error is None


def test_xid_events_counted_per_card_with_last_code(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 4)
    c, _ = collector()
    gpus = c.collect()
    assert [g.xid_errors for g in gpus] == [0, 0, 0, 0]  # watched, none seen: a real 0
    assert all(g.xid_last is None for g in gpus)
    lib.xid(2, 48)  # double-bit ECC
    lib.xid(2, 63)  # row remap event
    lib.xid(0, 31)  # MMU fault (a user's kernel)
    gpus = c.collect()
    assert [g.xid_errors for g in gpus] == [1, 0, 2, 0]
    assert (gpus[2].xid_last, gpus[0].xid_last) == (63, 31)
    assert gpus[2].xid_last_ts is not None
    gpus = c.collect()  # drained: nothing new, the counts stay
    assert [g.xid_errors for g in gpus] == [1, 0, 2, 0]
    assert lib.calls["nvmlEventSetCreate"] == 1  # one set for the node, made once
    assert lib.calls["nvmlDeviceRegisterEvents"] == 4


def test_xid_not_supported_is_none_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    devices, _ = fake.make_devices("gtx1080ti", 2)
    devices[1].xid_supported = False
    lib = fake.install(monkeypatch, devices=devices)
    c, _ = collector()
    a, b = c.collect()
    assert (a.xid_errors, b.xid_errors) == (0, None)
    lib.xid(1, 79)  # never delivered: the card is not registered
    a, b = c.collect()
    assert (a.xid_errors, b.xid_errors) == (0, None)
    assert json.loads(msgspec.json.encode(msgspec.structs.asdict(b)))["xid_errors"] is None


def test_driver_without_event_api_leaves_xids_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, "gtx1080ti", 1, missing={"nvmlEventSetCreate"})
    c, _ = collector()
    (g,) = c.collect()
    assert g.xid_errors is None and g.error is None
    (g,) = c.collect()
    assert g.xid_errors is None


def test_xid_storm_drained_in_bounded_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    from clustertop.collectors import gpu as gpumod

    lib = fake.install(monkeypatch, "h100_sxm", 1)
    c, _ = collector()
    c.collect()
    for _ in range(gpumod.XID_DRAIN_MAX + 10):
        lib.xid(0, 13)
    (g,) = c.collect()
    assert g.xid_errors == gpumod.XID_DRAIN_MAX
    (g,) = c.collect()
    assert g.xid_errors == gpumod.XID_DRAIN_MAX + 10


def test_lost_gpu_keeps_its_xid_count(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 2)
    c, _ = collector()
    c.collect()
    lib.xid(1, 79)  # fell off the bus ...
    lib.lose(1)  # ... and answers GPU_IS_LOST from now on
    a, b = c.collect()
    assert b.lost and b.xid_errors == 1 and b.xid_last == 79
    assert a.xid_errors == 0 and not a.lost


def test_close_frees_the_event_set_and_a_new_init_makes_another(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = fake.install(monkeypatch, "h100_sxm", 1)
    c, _ = collector()
    c.collect()
    c.close()
    assert lib.calls["nvmlEventSetFree"] == 1 and not lib._sets
    (g,) = c.collect()
    assert g.xid_errors == 0 and lib.calls["nvmlEventSetCreate"] == 2


def test_remapped_rows_on_hopper_retired_pages_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    devices, _ = fake.make_devices("h100_sxm", 2)
    devices[1].reading["remapped_rows"] = {"correctable": 2, "uncorrectable": 1, "pending": True, "failure": False}
    fake.install(monkeypatch, devices=devices)
    a, b = collector()[0].collect()
    assert (a.remapped_rows, a.remap_pending, a.remap_failed) == (0, False, False)
    assert (b.remapped_rows, b.remap_pending, b.remap_failed) == (3, True, False)
    # Hopper has row remapping instead of page retirement: unknown, not "0 pages".
    assert a.retired_pages is None and a.retired_pending is None


def test_retired_pages_on_a_volta_like_card(monkeypatch: pytest.MonkeyPatch) -> None:
    devices, _ = fake.make_devices("h100_sxm", 1)
    d = devices[0]
    # A V100 answers the other way round: pages yes, rows NOT_SUPPORTED.
    d.not_supported = (d.not_supported - {"nvmlDeviceGetRetiredPages"}) | {"nvmlDeviceGetRemappedRows"}
    d.reading["retired_pages"] = {"sbe": [0x1F000, 0x2A000], "dbe": [0x3B000], "pending": True}
    lib = fake.install(monkeypatch, devices=devices)
    c, _ = collector()
    (g,) = c.collect()
    assert (g.retired_pages, g.retired_pending) == (3, True)
    assert g.remapped_rows is None and g.remap_pending is None and g.remap_failed is None
    calls = lib.calls["nvmlDeviceGetRemappedRows"]
    c.collect()
    assert lib.calls["nvmlDeviceGetRemappedRows"] == calls  # NOT_SUPPORTED is remembered


def test_geforce_answers_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, "gtx1080ti", 1)
    (g,) = collector()[0].collect()
    assert g.retired_pages is None and g.remapped_rows is None and g.retired_pending is None
    assert g.energy_mj is None  # Pascal: no energy counter (the agent integrates power instead)


def test_fake_event_api_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the collector relies on, through the real pynvml: TIMEOUT when empty, one event per wait,
    nothing delivered from before a registration, NOT_SUPPORTED on a card that cannot."""
    lib = fake.install(monkeypatch, "h100_sxm", 2)
    lib.devices[1].xid_supported = False
    pynvml.nvmlInit()
    try:
        es = pynvml.nvmlEventSetCreate()
        h0, h1 = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlDeviceGetHandleByIndex(1)
        lib.xid(0, 13)  # before registration: lost, as with the driver
        pynvml.nvmlDeviceRegisterEvents(h0, pynvml.nvmlEventTypeXidCriticalError, es)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceRegisterEvents(h1, pynvml.nvmlEventTypeXidCriticalError, es)
        with pytest.raises(pynvml.NVMLError_Timeout):
            pynvml.nvmlEventSetWait(es, 0)
        lib.xid(0, 43)
        data = pynvml.nvmlEventSetWait(es, 0)
        assert data.eventType == pynvml.nvmlEventTypeXidCriticalError and data.eventData == 43
        with pytest.raises(pynvml.NVMLError_Timeout):
            pynvml.nvmlEventSetWait(es, 0)
        pynvml.nvmlEventSetFree(es)
    finally:
        pynvml.nvmlShutdown()


def test_cuda_version() -> None:
    assert cuda_version(12040) == "12.4"
    assert cuda_version(11080) == "11.8"
    assert cuda_version(None) is None and cuda_version(0) is None


def test_new_fields_decode_from_an_older_payload() -> None:
    from clustertop import wire

    old = wire.encode(schema.NodeSnapshot(host="n", gpus=[schema.Gpu(index=0, util_pct=5)]))
    g = wire.decode(old, schema.NodeSnapshot).gpus[0]
    assert g.xid_errors is None and g.pcie_gen is None and g.remapped_rows is None and g.cuda_version is None
