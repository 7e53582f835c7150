"""Provides FakeNvmlLib: a stand-in for libnvidia-ml.so.1, for tests on machines without an NVIDIA driver.

What it stands in for, and why at this seam
-------------------------------------------
The real ``pynvml`` (package nvidia-ml-py) loads ``libnvidia-ml.so.1`` with ctypes into the module global
``pynvml.nvmlLib``; every wrapper then looks its C symbol up with ``_nvmlGetFunctionPointer(name)`` (a
``getattr`` on that CDLL), calls it with ctypes arguments (``byref(c_uint)``, string buffers, structs, arrays
of process structs) and turns the returned ``nvmlReturn_t`` into an exception with ``_nvmlCheckReturn``.

We replace only the shared library: ``install()`` sets ``pynvml.nvmlLib`` to a ``FakeNvmlLib`` whose attributes
are Python functions with the C signatures. So the REAL pynvml code runs on every call:

- error codes become the real exception classes (``NVML_ERROR_NOT_SUPPORTED`` -> ``NVMLError_NotSupported``);
- a symbol the "driver" lacks raises ``AttributeError`` on the library, which pynvml turns into
  ``NVMLError_FunctionNotFound``, exactly what an old driver does (1080 Ti on 470.x: no ``_v3`` process
  queries, no ``nvmlDeviceGetNumGpuCores``);
- the two-call size protocol of the process queries (``INSUFFICIENT_SIZE`` first) and the
  ``NVML_VALUE_NOT_AVAILABLE`` sentinel for ``usedGpuMemory`` go through pynvml's own decoding;
- strings come back as bytes from the buffers and pynvml decodes them, as with the real library.

Patching pynvml's Python wrappers instead would skip all of that, and an injected look-alike module would
have to re-implement the error classes: both let a fake drift from the real API. The cost is that this fake
follows pynvml's calling convention for the symbols the collector uses (listed in ``FakeNvmlLib``); a symbol
not implemented here simply does not exist, like on an old driver.

NVML semantics reproduced: calls before ``nvmlInitWithFlags`` (or after the last ``nvmlShutdown``) return
``UNINITIALIZED``; a lost GPU answers ``GPU_IS_LOST`` to every call on its handle from then on; init can fail
with ``DRIVER_NOT_LOADED`` (library present, kernel module not). Every C call is counted in ``calls``.

Events (nvml.h, "Event Handling Methods"): ``nvmlEventSetCreate`` gives a set; ``nvmlDeviceRegisterEvents``
adds a device for a mask of event types (NOT_SUPPORTED when the card cannot deliver one of them, e.g.
``xid_supported=False``); an event that happens on a device is queued on every set it is registered with
from then on (nothing is replayed from before the registration); ``nvmlEventSetWait_v2`` hands out one event
per call, oldest first, and answers ``TIMEOUT`` when none is pending (the fake never blocks: a timeout of
0 is what the collector uses); ``nvmlEventSetFree`` drops the set. ``xid(index, code)`` is the driver
reporting an XID on a device.

Retirement: ``nvmlDeviceGetRetiredPages`` (per cause, the size-then-array protocol) and
``nvmlDeviceGetRemappedRows`` answer from ``reading["retired_pages"]`` / ``reading["remapped_rows"]``; a
model lists the one its generation lacks under ``not_supported`` (pages up to Turing, rows from Ampere).
"""

from __future__ import annotations

import ctypes
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gpu"

#: What NVML writes into usedGpuMemory when it cannot say (WDDM, some vGPU and MIG setups).
NOT_AVAILABLE_ULL = ctypes.c_ulonglong(-1).value


def load_model(model: str) -> dict[str, Any]:
    """One model's readings from tests/fixtures/gpu/<model>.json."""
    with open(FIXTURES / f"{model}.json") as f:
        return json.load(f)  # type: ignore[no-any-return]


@dataclass
class FakeProc:
    pid: int
    used_bytes: int | None  # None -> NVML_VALUE_NOT_AVAILABLE on the wire


@dataclass
class FakeDevice:
    """One GPU: static facts and current readings, both editable by a test."""

    index: int
    uuid: str
    bus_id: str
    static: dict[str, Any]
    reading: dict[str, Any]
    not_supported: set[str] = field(default_factory=set)  # C symbols answering NOT_SUPPORTED
    fail: dict[str, int] = field(default_factory=dict)  # C symbol -> nvmlReturn_t it answers instead
    compute: list[FakeProc] = field(default_factory=list)
    graphics: list[FakeProc] = field(default_factory=list)
    lost: bool = False
    lose_after_calls: int | None = None  # falls off the bus after this many more calls on its handle
    xid_supported: bool = True  # nvmlDeviceRegisterEvents for XID answers NOT_SUPPORTED when False
    handle_struct: pynvml.struct_c_nvmlDevice_t = field(default_factory=pynvml.struct_c_nvmlDevice_t)


def _out(ref: Any) -> Any:
    """The ctypes object behind a byref() argument (what the C code would write through)."""
    return ref._obj


class FakeNvmlLib:
    """The C surface of libnvidia-ml.so.1 that pynvml calls, for a list of FakeDevices."""

    def __init__(self, devices: list[FakeDevice], driver_version: str, missing: set[str] | None = None,
                 init_error: int | None = None) -> None:
        self.devices = devices
        self.driver_version = driver_version
        self.missing = set(missing or ())
        self.init_error = init_error  # e.g. NVML_ERROR_DRIVER_NOT_LOADED
        self.refcount = 0
        self.calls: Counter[str] = Counter()
        self.device_calls: Counter[tuple[str, int]] = Counter()
        self.missing_lookups: Counter[str] = Counter()  # lookups of symbols this "driver" lacks
        self.cuda_version = 12040  # nvmlSystemGetCudaDriverVersion: 1000 x major + 10 x minor
        # event sets: id -> (registrations {device index: mask}, pending [(index, type, data)])
        self._sets: dict[int, tuple[dict[int, int], list[tuple[int, int, int]]]] = {}
        self._set_structs: list[Any] = []  # keeps the structs alive: their addresses are the sets' ids

    # -- plumbing ------------------------------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        # A symbol the "driver" lacks is an AttributeError, as on a real CDLL: pynvml maps it to
        # NVMLError_FunctionNotFound.
        if name.startswith("nvml"):
            if name in object.__getattribute__(self, "missing"):
                object.__getattribute__(self, "missing_lookups")[name] += 1
                raise AttributeError(name)
            fn = object.__getattribute__(self, "_" + name) if hasattr(type(self), "_" + name) else None
            if fn is None:
                raise AttributeError(name)
            calls = object.__getattribute__(self, "calls")

            def counted(*args: Any) -> int:
                calls[name] += 1
                return fn(*args)  # type: ignore[no-any-return]

            return counted
        return object.__getattribute__(self, name)

    def _dev(self, handle: Any, name: str) -> FakeDevice | int:
        """The device behind a handle, or the error code NVML would return instead."""
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        addr = ctypes.addressof(handle.contents)
        for d in self.devices:
            if ctypes.addressof(d.handle_struct) == addr:
                self.device_calls[(name, d.index)] += 1
                if d.lose_after_calls is not None:
                    if d.lose_after_calls <= 0:
                        d.lost = True
                    d.lose_after_calls -= 1
                if d.lost:
                    return pynvml.NVML_ERROR_GPU_IS_LOST
                return d.fail.get(name, d)
        return pynvml.NVML_ERROR_INVALID_ARGUMENT

    def _read(self, handle: Any, name: str, value: Any, ref: Any) -> int:
        """Common shape of most getters: check the device, NOT_SUPPORTED, then write one value."""
        d = self._dev(handle, name)
        if isinstance(d, int):
            return d
        if name in d.not_supported or value is None:
            return pynvml.NVML_ERROR_NOT_SUPPORTED
        _out(ref).value = value(d) if callable(value) else value
        return pynvml.NVML_SUCCESS

    # -- library ---------------------------------------------------------------------------------------

    def _nvmlInitWithFlags(self, flags: int) -> int:
        if self.init_error is not None:
            return self.init_error
        self.refcount += 1
        return pynvml.NVML_SUCCESS

    def _nvmlShutdown(self) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        self.refcount -= 1
        return pynvml.NVML_SUCCESS

    def _nvmlErrorString(self, code: int) -> bytes:
        return b"Unknown Error"

    def _nvmlSystemGetDriverVersion(self, buf: Any, size: Any) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        buf.value = self.driver_version.encode()
        return pynvml.NVML_SUCCESS

    def _nvmlSystemGetCudaDriverVersion(self, ref: Any) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        _out(ref).value = self.cuda_version
        return pynvml.NVML_SUCCESS

    def _nvmlSystemGetCudaDriverVersion_v2(self, ref: Any) -> int:
        return self._nvmlSystemGetCudaDriverVersion(ref)

    def _nvmlDeviceGetCount_v2(self, ref: Any) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        _out(ref).value = len(self.devices)
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetHandleByIndex_v2(self, index: Any, ref: Any) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        i = index.value
        if not 0 <= i < len(self.devices):
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        d = self.devices[i]
        self.device_calls[("nvmlDeviceGetHandleByIndex_v2", i)] += 1
        if d.lost:
            return pynvml.NVML_ERROR_GPU_IS_LOST
        _out(ref).contents = d.handle_struct
        return pynvml.NVML_SUCCESS

    # -- static facts ----------------------------------------------------------------------------------

    def _string(self, handle: Any, name: str, buf: Any, text: str) -> int:
        d = self._dev(handle, name)
        if isinstance(d, int):
            return d
        buf.value = text.encode()
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetName(self, handle: Any, buf: Any, size: Any) -> int:
        d = self._dev_peek(handle)
        return self._string(handle, "nvmlDeviceGetName", buf, d.static["name"] if d else "")

    def _nvmlDeviceGetUUID(self, handle: Any, buf: Any, size: Any) -> int:
        d = self._dev_peek(handle)
        return self._string(handle, "nvmlDeviceGetUUID", buf, d.uuid if d else "")

    def _dev_peek(self, handle: Any) -> FakeDevice | None:
        addr = ctypes.addressof(handle.contents)
        return next((d for d in self.devices if ctypes.addressof(d.handle_struct) == addr), None)

    def _nvmlDeviceGetPciInfo_v3(self, handle: Any, ref: Any) -> int:
        d = self._dev(handle, "nvmlDeviceGetPciInfo_v3")
        if isinstance(d, int):
            return d
        info = _out(ref)
        info.busId = d.bus_id.encode()
        info.busIdLegacy = d.bus_id[4:].encode()  # the old 13-char form "0000:01:00.0"
        domain, bus, rest = d.bus_id.split(":")
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
        info.pciDeviceId = d.static["pci_device_id"]
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetEnforcedPowerLimit(self, handle: Any, ref: Any) -> int:
        return self._read(handle, "nvmlDeviceGetEnforcedPowerLimit", lambda d: d.static["power_limit_mw"], ref)

    def _nvmlDeviceGetTemperatureThreshold(self, handle: Any, kind: Any, ref: Any) -> int:
        if kind.value != pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            return pynvml.NVML_ERROR_NOT_SUPPORTED
        return self._read(handle, "nvmlDeviceGetTemperatureThreshold", lambda d: d.static["temp_slowdown_c"], ref)

    def _nvmlDeviceGetMaxClockInfo(self, handle: Any, kind: Any, ref: Any) -> int:
        key = {pynvml.NVML_CLOCK_SM: "sm", pynvml.NVML_CLOCK_MEM: "mem"}.get(kind.value)
        return self._read(handle, "nvmlDeviceGetMaxClockInfo",
                          (lambda d: d.static["max_clocks_mhz"][key]) if key else None, ref)

    def _nvmlDeviceGetArchitecture(self, handle: Any, ref: Any) -> int:
        return self._read(handle, "nvmlDeviceGetArchitecture", lambda d: d.static["architecture"], ref)

    def _nvmlDeviceGetNumGpuCores(self, handle: Any, ref: Any) -> int:
        d = self._dev_peek(handle)
        value = d.static.get("num_gpu_cores") if d else None
        return self._read(handle, "nvmlDeviceGetNumGpuCores", value, ref)

    def _nvmlDeviceGetCudaComputeCapability(self, handle: Any, major: Any, minor: Any) -> int:
        d = self._dev(handle, "nvmlDeviceGetCudaComputeCapability")
        if isinstance(d, int):
            return d
        _out(major).value, _out(minor).value = d.static["cuda_compute_capability"]
        return pynvml.NVML_SUCCESS

    # -- readings --------------------------------------------------------------------------------------

    def _nvmlDeviceGetUtilizationRates(self, handle: Any, ref: Any) -> int:
        d = self._dev(handle, "nvmlDeviceGetUtilizationRates")
        if isinstance(d, int):
            return d
        util = _out(ref)
        util.gpu, util.memory = d.reading["util_gpu"], d.reading["util_mem"]
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetMemoryInfo(self, handle: Any, ref: Any) -> int:
        d = self._dev(handle, "nvmlDeviceGetMemoryInfo")
        if isinstance(d, int):
            return d
        mem = _out(ref)
        mem.total = d.static["memory_total_bytes"]
        mem.used = d.reading["memory_used_bytes"]
        mem.free = mem.total - mem.used
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetTemperature(self, handle: Any, sensor: Any, ref: Any) -> int:
        value = (lambda d: d.reading["temp_c"]) if sensor.value == pynvml.NVML_TEMPERATURE_GPU else None
        return self._read(handle, "nvmlDeviceGetTemperature", value, ref)

    def _reading(self, handle: Any, name: str, key: str, ref: Any) -> int:
        d = self._dev_peek(handle)
        value = d.reading.get(key) if d else 0
        return self._read(handle, name, value, ref)

    def _nvmlDeviceGetPowerUsage(self, handle: Any, ref: Any) -> int:
        return self._reading(handle, "nvmlDeviceGetPowerUsage", "power_mw", ref)

    def _nvmlDeviceGetTotalEnergyConsumption(self, handle: Any, ref: Any) -> int:
        return self._reading(handle, "nvmlDeviceGetTotalEnergyConsumption", "energy_mj", ref)

    def _nvmlDeviceGetFanSpeed(self, handle: Any, ref: Any) -> int:
        return self._reading(handle, "nvmlDeviceGetFanSpeed", "fan_pct", ref)

    def _nvmlDeviceGetPerformanceState(self, handle: Any, ref: Any) -> int:
        return self._reading(handle, "nvmlDeviceGetPerformanceState", "pstate", ref)

    def _nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any, ref: Any) -> int:
        return self._reading(handle, "nvmlDeviceGetCurrentClocksEventReasons", "clocks_event_reasons", ref)

    def _nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any, ref: Any) -> int:
        return self._reading(handle, "nvmlDeviceGetCurrentClocksThrottleReasons", "clocks_event_reasons", ref)

    def _nvmlDeviceGetClockInfo(self, handle: Any, kind: Any, ref: Any) -> int:
        key = {pynvml.NVML_CLOCK_SM: "sm", pynvml.NVML_CLOCK_MEM: "mem"}.get(kind.value)
        return self._read(handle, "nvmlDeviceGetClockInfo",
                          (lambda d: d.reading["clocks_mhz"][key]) if key else None, ref)

    def _nvmlDeviceGetTotalEccErrors(self, handle: Any, kind: Any, counter: Any, ref: Any) -> int:
        key = {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "corrected",
               pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "uncorrected"}[kind.value]
        d = self._dev_peek(handle)
        value = d.reading["ecc"][key] if d else 0
        return self._read(handle, "nvmlDeviceGetTotalEccErrors", value, ref)

    def _nvmlDeviceGetPcieThroughput(self, handle: Any, counter: Any, ref: Any) -> int:
        key = {pynvml.NVML_PCIE_UTIL_TX_BYTES: "tx", pynvml.NVML_PCIE_UTIL_RX_BYTES: "rx"}[counter.value]
        d = self._dev_peek(handle)
        value = d.reading["pcie_kb_s"][key] if d else 0  # NVML's unit: KB/s
        return self._read(handle, "nvmlDeviceGetPcieThroughput", value, ref)

    def _nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any, ref: Any) -> int:
        return self._pcie(handle, "nvmlDeviceGetCurrPcieLinkGeneration", "gen", ref)

    def _nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any, ref: Any) -> int:
        return self._pcie(handle, "nvmlDeviceGetCurrPcieLinkWidth", "width", ref)

    def _nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any, ref: Any) -> int:
        return self._read(handle, "nvmlDeviceGetMaxPcieLinkGeneration", lambda d: d.static["pcie_max"]["gen"], ref)

    def _nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any, ref: Any) -> int:
        return self._read(handle, "nvmlDeviceGetMaxPcieLinkWidth", lambda d: d.static["pcie_max"]["width"], ref)

    def _pcie(self, handle: Any, name: str, key: str, ref: Any) -> int:
        d = self._dev_peek(handle)
        value = d.reading.get("pcie_link", {}).get(key) if d else 0
        return self._read(handle, name, value, ref)

    # -- page retirement (Pascal..Turing) and row remapping (Ampere on) -----------------------------

    def _nvmlDeviceGetRetiredPages(self, handle: Any, cause: Any, count_ref: Any, array: Any) -> int:
        d = self._dev(handle, "nvmlDeviceGetRetiredPages")
        if isinstance(d, int):
            return d
        if "nvmlDeviceGetRetiredPages" in d.not_supported:
            return pynvml.NVML_ERROR_NOT_SUPPORTED
        key = {pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: "sbe",
               pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: "dbe"}.get(cause.value)
        if key is None:
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        pages = d.reading.get("retired_pages", {}).get(key, [])
        count = _out(count_ref)
        if array is None or count.value < len(pages):
            needed = len(pages)
            count.value = needed
            return pynvml.NVML_SUCCESS if needed == 0 else pynvml.NVML_ERROR_INSUFFICIENT_SIZE
        for i, addr in enumerate(pages):
            array[i] = addr
        count.value = len(pages)
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetRetiredPagesPendingStatus(self, handle: Any, ref: Any) -> int:
        d = self._dev_peek(handle)
        value = int(bool(d.reading.get("retired_pages", {}).get("pending"))) if d else 0
        return self._read(handle, "nvmlDeviceGetRetiredPagesPendingStatus", value, ref)

    def _nvmlDeviceGetRemappedRows(self, handle: Any, corr: Any, unc: Any, pending: Any, failure: Any) -> int:
        d = self._dev(handle, "nvmlDeviceGetRemappedRows")
        if isinstance(d, int):
            return d
        if "nvmlDeviceGetRemappedRows" in d.not_supported:
            return pynvml.NVML_ERROR_NOT_SUPPORTED
        rows = d.reading.get("remapped_rows", {})
        _out(corr).value, _out(unc).value = rows.get("correctable", 0), rows.get("uncorrectable", 0)
        _out(pending).value, _out(failure).value = int(rows.get("pending", False)), int(rows.get("failure", False))
        return pynvml.NVML_SUCCESS

    # -- events ----------------------------------------------------------------------------------------

    def _nvmlEventSetCreate(self, ref: Any) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        struct = pynvml.struct_c_nvmlEventSet_t()
        self._set_structs.append(struct)
        _out(ref).contents = struct
        self._sets[ctypes.addressof(struct)] = ({}, [])
        return pynvml.NVML_SUCCESS

    def _event_set(self, event_set: Any) -> tuple[dict[int, int], list[tuple[int, int, int]]] | None:
        try:
            return self._sets.get(ctypes.addressof(event_set.contents))
        except ValueError:  # a NULL set
            return None

    def _nvmlDeviceRegisterEvents(self, handle: Any, types: Any, event_set: Any) -> int:
        d = self._dev(handle, "nvmlDeviceRegisterEvents")
        if isinstance(d, int):
            return d
        es = self._event_set(event_set)
        if es is None:
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        mask = types.value
        if mask & pynvml.nvmlEventTypeXidCriticalError and not d.xid_supported:
            return pynvml.NVML_ERROR_NOT_SUPPORTED
        es[0][d.index] = es[0].get(d.index, 0) | mask
        return pynvml.NVML_SUCCESS

    def _nvmlEventSetWait_v2(self, event_set: Any, data_ref: Any, timeout_ms: Any) -> int:
        if self.refcount <= 0:
            return pynvml.NVML_ERROR_UNINITIALIZED
        es = self._event_set(event_set)
        if es is None:
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        if not es[1]:
            return pynvml.NVML_ERROR_TIMEOUT  # nothing within timeout_ms (the fake does not wait)
        index, etype, edata = es[1].pop(0)
        data = _out(data_ref)
        data.device = ctypes.pointer(self.devices[index].handle_struct)
        data.eventType, data.eventData = etype, edata
        data.gpuInstanceId = data.computeInstanceId = 0xFFFFFFFF
        return pynvml.NVML_SUCCESS

    def _nvmlEventSetFree(self, event_set: Any) -> int:
        es = self._event_set(event_set)
        if es is None:
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        del self._sets[ctypes.addressof(event_set.contents)]
        return pynvml.NVML_SUCCESS

    # -- processes: the two-call protocol (size first, then the array) ------------------------------

    def _procs(self, handle: Any, name: str, kind: str, count_ref: Any, array: Any) -> int:
        d = self._dev(handle, name)
        if isinstance(d, int):
            return d
        procs = d.compute if kind == "compute" else d.graphics
        count = _out(count_ref)
        if array is None or count.value < len(procs):
            # NVML: SUCCESS with count 0 when there is nothing, else INSUFFICIENT_SIZE with the count.
            needed = len(procs)
            count.value = needed
            return pynvml.NVML_SUCCESS if needed == 0 else pynvml.NVML_ERROR_INSUFFICIENT_SIZE
        for i, p in enumerate(procs):
            array[i].pid = p.pid
            array[i].usedGpuMemory = NOT_AVAILABLE_ULL if p.used_bytes is None else p.used_bytes
            array[i].gpuInstanceId = 0xFFFFFFFF  # not a MIG instance
            array[i].computeInstanceId = 0xFFFFFFFF
        count.value = len(procs)
        return pynvml.NVML_SUCCESS

    def _nvmlDeviceGetComputeRunningProcesses_v3(self, handle: Any, count: Any, array: Any) -> int:
        return self._procs(handle, "nvmlDeviceGetComputeRunningProcesses_v3", "compute", count, array)

    def _nvmlDeviceGetComputeRunningProcesses_v2(self, handle: Any, count: Any, array: Any) -> int:
        return self._procs(handle, "nvmlDeviceGetComputeRunningProcesses_v2", "compute", count, array)

    def _nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: Any, count: Any, array: Any) -> int:
        return self._procs(handle, "nvmlDeviceGetGraphicsRunningProcesses_v3", "graphics", count, array)

    def _nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: Any, count: Any, array: Any) -> int:
        return self._procs(handle, "nvmlDeviceGetGraphicsRunningProcesses_v2", "graphics", count, array)

    # -- test helpers ----------------------------------------------------------------------------------

    def xid(self, index: int, code: int) -> None:
        """The driver reports XID ``code`` on GPU ``index``: queued on every set registered for it."""
        for regs, pending in self._sets.values():
            if regs.get(index, 0) & pynvml.nvmlEventTypeXidCriticalError:
                pending.append((index, pynvml.nvmlEventTypeXidCriticalError, code))

    def lose(self, index: int, after_calls: int = 0) -> None:
        """GPU ``index`` falls off the bus after ``after_calls`` more calls on its handle."""
        self.devices[index].lose_after_calls = after_calls

    def static_calls(self) -> int:
        """Calls to queries whose answers do not change while the driver is loaded."""
        names = ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo_v3",
                 "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetTemperatureThreshold",
                 "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetArchitecture", "nvmlDeviceGetNumGpuCores",
                 "nvmlDeviceGetCudaComputeCapability", "nvmlSystemGetDriverVersion",
                 "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth",
                 "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")
        return sum(self.calls[n] for n in names)


def make_devices(model: str, count: int) -> tuple[list[FakeDevice], dict[str, Any]]:
    """``count`` GPUs of one model; readings cycle through the fixture's list (busy, idle, ...)."""
    spec = load_model(model)
    devices = []
    for i in range(count):
        reading = json.loads(json.dumps(spec["readings"][i % len(spec["readings"])]))  # deep copy
        uuid = f"GPU-{model[:8].encode().hex()[:8]}-{i:04x}-4{i:03x}-8000-{i:012x}"
        bus_id = f"00000000:{spec['bus_numbers'][i % len(spec['bus_numbers'])]}:00.0"
        devices.append(FakeDevice(index=i, uuid=uuid, bus_id=bus_id, static=dict(spec["static"]),
                                  reading=reading, not_supported=set(spec["not_supported"])))
    return devices, spec


def install(monkeypatch: pytest.MonkeyPatch, model: str | None = None, count: int = 0,
            devices: list[FakeDevice] | None = None, driver_version: str | None = None,
            missing: set[str] | None = None, init_error: int | None = None) -> FakeNvmlLib:
    """Put a FakeNvmlLib where pynvml keeps its loaded library; monkeypatch restores the real state."""
    spec: dict[str, Any] = {}
    if devices is None:
        devices, spec = make_devices(model, count) if model else ([], {})
    lib = FakeNvmlLib(
        devices,
        driver_version or spec.get("driver_version", "550.54.15"),
        missing=set(spec.get("missing_functions", ())) | set(missing or ()),
        init_error=init_error,
    )
    monkeypatch.setattr(pynvml, "nvmlLib", lib)
    # pynvml caches symbol lookups per name; a fresh cache per fake keeps "missing" symbols honest.
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
    return lib
