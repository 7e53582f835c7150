"""Provides the gpu collector: NVIDIA GPUs through NVML. The only module in the project that imports pynvml.

Shape (after nvitop's NVML layer):
- NVML is initialised once and the device handles are kept; a node without a driver raises ``NoData`` and
  is asked again only every few minutes (``nvmlInit`` dlopens the library each time it fails).
- One pass of queries per device per tick. Values that do not change while the driver is loaded (name,
  uuid, bus id, limits, max clock, architecture, core count, driver version) are cached with a TTL.
- Any single query that fails with NOT_SUPPORTED (ECC on GeForce, fan on passive H100 SXM), NO_PERMISSION
  or FUNCTION_NOT_FOUND (a driver older than the binding) gives None for that field, never 0 and never an
  exception out of ``collect()``. NOT_SUPPORTED is remembered per device until the static TTL ends, and a
  missing symbol for good, so the hot path does not repeat calls that cannot answer.
- GPU_IS_LOST (the GPU fell off the bus) marks that one Gpu ``lost`` with its cached identity; the other
  GPUs keep reporting, and the lost one is probed again only every ``LOST_RETRY_S``.

Processes get user, name, command line and start time from ``/proc/<pid>`` under ``ctx.roots`` (read by
``clustertop.collectors.procfs``, cached in ``ProcReader``), and their owner from ``clustertop.collectors.owner``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clustertop.collectors import procfs
from clustertop.collectors.base import Context, NoData, Roots, Section
from clustertop.config import Positive, convert
from clustertop.wire import schema

SECTION = "collectors.gpu"

#: How long static facts (name, limits, max clocks, ...) and NOT_SUPPORTED answers are trusted.
STATIC_TTL_S = 300.0
#: How often a node without a driver tries nvmlInit again (a driver installed later is picked up).
INIT_RETRY_S = 300.0
#: A failed init for another reason (permissions, library/driver version mismatch) is retried sooner.
INIT_ERROR_RETRY_S = 30.0
#: How often a lost GPU is probed again: calls on a lost GPU can block in the driver, so not every tick.
LOST_RETRY_S = 30.0
#: Command lines are node text shown in tables: bounded so an 8-GPU snapshot stays a few KiB.
CMDLINE_MAX = 256
#: The process user cache (/etc/passwd) is re-read this often.
PASSWD_TTL_S = 300.0

# NVML return codes (nvml.h, stable ABI); pynvml attaches them to every NVMLError as ``.value``.
_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND = 3, 4, 6
_DRIVER_NOT_LOADED, _LIBRARY_NOT_FOUND, _FUNCTION_NOT_FOUND, _GPU_IS_LOST = 9, 12, 13, 15
_TIMEOUT = 10
_UNINITIALIZED = 1
#: Answers meaning "this field has no value here", not "something is wrong".
_NO_VALUE = {_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND}
#: What ``usedGpuMemory`` holds when NVML cannot say (NVML_VALUE_NOT_AVAILABLE, an unsigned -1).
NOT_AVAILABLE_ULL = (1 << 64) - 1
#: nvmlPstates_t NVML_PSTATE_UNKNOWN.
_PSTATE_UNKNOWN = 32

# nvmlClocksEventReason* bits (called ClocksThrottleReason* before driver 535; same values).
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

#: nvmlEventTypeXidCriticalError: the driver's XID reports (nvidia-smi's "Xid" lines in dmesg).
EVENT_XID = 0x8
#: Events drained per tick at most: a card stuck in an XID storm must not hold the collector.
XID_DRAIN_MAX = 256

# nvmlDeviceArchitecture_t.
ARCH_NAMES = {2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing", 7: "ampere", 8: "ada",
              9: "hopper", 10: "blackwell"}

# FP32 CUDA cores per SM by compute capability (CUDA C Programming Guide, "Arithmetic Instructions").
# Keyed by capability, not architecture: GP100 (6.0) and GA100 (8.0) have 64 per SM, their consumer
# siblings (6.1, 8.6) 128.
CORES_PER_SM_BY_CC = {
    (3, 0): 192, (3, 5): 192, (3, 7): 192, (5, 0): 128, (5, 2): 128, (5, 3): 128,
    (6, 0): 64, (6, 1): 128, (6, 2): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64,
    (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
    (10, 0): 128, (10, 1): 128, (12, 0): 128,
}
# Only where an architecture has one value; Pascal and Ampere depend on the chip (see above).
CORES_PER_SM_BY_ARCH = {"kepler": 192, "maxwell": 128, "volta": 64, "turing": 64, "ada": 128, "hopper": 128,
                        "blackwell": 128}

# NVML has no SM count outside MIG profiles, so it comes from the product name (NVIDIA spec sheets).
# Names are matched without the "NVIDIA " prefix that drivers since 470 add, lowercased, longest first.
SM_COUNT_BY_NAME = {
    "geforce gtx 1070": 15, "geforce gtx 1080": 20, "geforce gtx 1080 ti": 28, "titan xp": 30,
    "tesla p40": 30, "tesla p100": 56, "tesla v100": 80, "titan v": 80, "tesla t4": 40,
    "geforce rtx 2080 ti": 68, "titan rtx": 72, "quadro rtx 8000": 72,
    "geforce rtx 3090": 82, "geforce rtx 3090 ti": 84, "a10": 72, "a40": 84, "rtx a6000": 84,
    "a100": 108, "geforce rtx 4090": 128, "l4": 58, "l40": 142, "l40s": 142, "rtx 6000 ada generation": 142,
    "h100 80gb hbm3": 132, "h100 sxm5 80gb": 132, "h100 nvl": 132, "h100 pcie": 114, "h200": 132,
}


# ---------------------------------------------------------------------------------------------
# Pure helpers: NVML values -> schema values
# ---------------------------------------------------------------------------------------------


def decode_throttle_reasons(mask: int | None) -> list[str] | None:
    """Bitmask -> names; bits this table does not know show as hex rather than vanish."""
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_BITS if mask & bit]
    known = 0
    for bit, _ in THROTTLE_BITS:
        known |= bit
    rest = mask & ~known
    if rest:
        names.append(f"0x{rest:x}")
    return names


def arch_name(code: int | None, cc: tuple[int, int] | None) -> str | None:
    """Architecture from nvmlDeviceGetArchitecture, else from the compute capability (older drivers)."""
    if code is not None and code in ARCH_NAMES:
        return ARCH_NAMES[code]
    if cc is None:
        return None
    major, minor = cc
    by_major = {3: "kepler", 5: "maxwell", 6: "pascal", 9: "hopper", 10: "blackwell", 12: "blackwell"}
    if major == 7:
        return "turing" if minor >= 5 else "volta"
    if major == 8:
        return "ada" if minor == 9 else "ampere"
    return by_major.get(major)


def sm_count(name: str | None) -> int | None:
    if not name:
        return None
    n = name.strip().lower()
    if n.startswith("nvidia "):
        n = n[len("nvidia "):]
    for key in sorted(SM_COUNT_BY_NAME, key=len, reverse=True):
        if n == key or n.startswith(key + " ") or n.startswith(key + "-"):
            return SM_COUNT_BY_NAME[key]
    return None


def cuda_cores(num_gpu_cores: int | None, name: str | None, cc: tuple[int, int] | None,
               arch: str | None) -> int | None:
    """NVML's own count where the driver has it, else SMs x cores per SM; None when either is unknown."""
    if num_gpu_cores:
        return num_gpu_cores
    sms = sm_count(name)
    per_sm = CORES_PER_SM_BY_CC.get(cc) if cc else None
    if per_sm is None and arch:
        per_sm = CORES_PER_SM_BY_ARCH.get(arch)
    return sms * per_sm if sms and per_sm else None


def cuda_version(value: int | None) -> str | None:
    """nvmlSystemGetCudaDriverVersion's integer (1000 x major + 10 x minor) as "12.4"."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def used_memory(value: Any) -> int | None:
    """usedGpuMemory: pynvml maps NVML_VALUE_NOT_AVAILABLE to None, older bindings pass it through."""
    if value is None:
        return None
    v = int(value)
    return None if v == NOT_AVAILABLE_ULL or v < 0 else v


def text(value: Any) -> str | None:
    """NVML strings: str from current bindings, bytes from older ones and from struct fields."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    s = str(value).strip("\0 ")
    return s or None


def _addr(handle: Any) -> int:
    """A device handle's identity: the address of the driver's struct it points to."""
    try:
        return ctypes.addressof(handle.contents)
    except (AttributeError, TypeError, ValueError):
        return id(handle)


# ---------------------------------------------------------------------------------------------
# GPU processes: /proc/<pid> read by procfs, cached here
# ---------------------------------------------------------------------------------------------


def one_line(argv: list[str], limit: int = CMDLINE_MAX) -> str | None:
    """argv as one line, bounded; kernel threads and zombies have none (None)."""
    line = " ".join(argv).strip()
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class ProcInfo:
    starttime: int  # ticks since boot: with the pid, the process identity
    uid: int | None = None  # real uid: with starttime, what a kill is checked against
    user: str | None = None
    name: str | None = None
    cmdline: str | None = None
    start_ts: float | None = None
    owner: schema.Owner | None = None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _owner_of() -> Callable[[int, Roots], schema.Owner | None] | None:
    # clustertop.collectors.owner is another module of the project; without it, owners are simply unknown.
    try:
        from clustertop.collectors.owner import owner_of
    except ImportError:
        return None
    return owner_of  # type: ignore[no-any-return]


class ProcReader:
    """User, name, command line, start time and owner of GPU processes, cached per (pid, start time).

    Only /proc/<pid>/stat is read for a process already seen: it proves the pid was not reused.
    A pid missing from our /proc (the agent in a container without the host's pid namespace) gives None.
    """

    def __init__(self, roots: Roots, clock: Callable[[], float]) -> None:
        self.roots = roots
        self.clock = clock
        self._btime: int | None = None
        self._users: dict[int, str] = {}
        self._users_at: float | None = None
        self._cache: dict[int, ProcInfo] = {}
        self._owner_fn = _owner_of()

    def info(self, pid: int) -> ProcInfo | None:
        # Whatever keeps us from reading the process (gone, hidden, corrupt) leaves its GPU row without
        # details; it never costs the GPU list.
        try:
            stat = procfs.read_pid_stat(self.roots, pid)
            cached = self._cache.get(pid)
            if stat is not None and cached is not None and cached.starttime == stat.starttime:
                return cached
            proc = procfs.read_pid(self.roots, pid, self._boot_time()) if stat is not None else None
        except (OSError, ValueError):
            proc = None
        if proc is None:
            self._cache.pop(pid, None)
            return None
        info = ProcInfo(starttime=proc.stat.starttime, uid=proc.uid, name=proc.stat.comm or None,
                        cmdline=one_line(proc.argv), start_ts=proc.start_ts)
        info.user = self._user(proc.uid) if proc.uid is not None else None
        if self._owner_fn is not None:
            try:
                info.owner = self._owner_fn(pid, self.roots)
            except Exception:  # noqa: BLE001 - attribution is extra; a bug there must not cost the GPU list
                info.owner = None
        self._cache[pid] = info
        return info

    def forget_except(self, pids: set[int]) -> None:
        """Drop processes no GPU reports any more, so the cache stays as small as the GPU process list."""
        for pid in [p for p in self._cache if p not in pids]:
            del self._cache[pid]

    def _boot_time(self) -> int | None:
        if self._btime is None:
            self._btime = procfs.read_btime(self.roots)
        return self._btime

    def _user(self, uid: int) -> str:
        now = self.clock()
        if self._users_at is None or now - self._users_at > PASSWD_TTL_S:
            data = _read_text(os.path.join(self.roots.etc, "passwd"))
            self._users = procfs.parse_passwd(data) if data else {}
            self._users_at = now
        name = self._users.get(uid)
        if name is None and self.roots.etc == "/etc":
            # Cluster users often live in LDAP/SSSD, not /etc/passwd: ask NSS, but only for this machine's
            # own root (a fixture or --proc-root tree of another machine has other users).
            try:
                import pwd

                name = pwd.getpwuid(uid).pw_name
            except (KeyError, ImportError):
                name = None
            if name is not None:
                self._users[uid] = name
        return name if name is not None else str(uid)


# ---------------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------------


class _Lost(Exception):
    """GPU_IS_LOST from any query on one device."""


@dataclass
class _Static:
    fetched_at: float
    uuid: str | None = None
    name: str | None = None
    bus_id: str | None = None
    power_limit_mw: int | None = None
    temp_slowdown_c: int | None = None
    sm_clock_max_mhz: int | None = None
    arch: str | None = None
    cuda_cores: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None


@dataclass
class _Device:
    index: int
    handle: Any = None
    static: _Static | None = None
    unsupported: set[str] = field(default_factory=set)  # query keys answering NOT_SUPPORTED & co.
    lost_at: float | None = None
    lost_error: str | None = None
    errors: list[str] = field(default_factory=list)  # this tick's unexpected query errors
    # XID events: None while this card cannot be watched (NotSupported, or no event set yet)
    xid_count: int | None = None
    xid_last: int | None = None
    xid_last_ts: float | None = None


class GpuConfig(Section):
    """``[collectors.gpu]``."""

    # PCIe throughput makes NVML sample the link for about 20 ms per counter (NVML docs), which is
    # 320 ms per tick on an 8-GPU node: off unless asked for.
    pcie: bool = False
    processes: bool = True  # the processes on each GPU, with their users and jobs
    static_ttl_s: Positive = STATIC_TTL_S  # how long names, limits and max clocks are trusted


class GpuCollector:
    """NVIDIA GPUs of this node -> list[schema.Gpu]."""

    name = "gpu"
    field = "gpus"
    scope = "node"
    default_interval_s = 1.0
    config_type = GpuConfig

    def __init__(self, ctx: Context, clock: Callable[[], float] | None = None) -> None:
        self.ctx = ctx
        self.clock = clock or time.monotonic
        c = convert(ctx.config, GpuConfig, ctx.config_file, SECTION)
        self.pcie, self.processes, self.static_ttl_s = c.pcie, c.processes, c.static_ttl_s
        self._nv: Any = None
        self._initialized = False
        self._retry_at: float | None = None
        self._init_failure: Exception | None = None
        self._missing: set[str] = set()  # symbols the driver lacks (FUNCTION_NOT_FOUND): never asked again
        self._devices: list[_Device] = []
        self._driver: str | None = None
        self._cuda: str | None = None
        self._events: Any = None  # the NVML event set XID events arrive on (None: none could be made)
        self._events_tried = False
        self._count_at: float | None = None
        self._procs = ProcReader(ctx.roots, self.clock)
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def _init(self) -> None:
        now = self.clock()
        if self._retry_at is not None and now < self._retry_at:
            self._raise_init_failure()
        if self._nv is None:
            # No kernel driver, no NVML: answer "no GPUs" without importing pynvml (its import and
            # ctypes cost ~4 MB and 20 ms on every ARM board). If pynvml is already loaded (tests
            # with a fake library, or a host process that uses it), asking it costs nothing.
            if "pynvml" not in sys.modules and not os.path.exists(self.ctx.roots.procfs("driver", "nvidia")):
                self._retry_at = now + INIT_RETRY_S
                self._init_failure = NoData("no NVIDIA driver (no /proc/driver/nvidia)")
                raise self._init_failure
            try:
                import pynvml  # type: ignore[import-untyped]
            except ImportError:
                self._retry_at = now + INIT_RETRY_S
                self._init_failure = NoData("nvidia-ml-py (pynvml) is not installed")
                raise self._init_failure from None
            self._nv = pynvml
        nv = self._nv
        try:
            nv.nvmlInit()
        except nv.NVMLError as e:
            no_driver = getattr(e, "value", None) in (_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED)
            self._retry_at = now + (INIT_RETRY_S if no_driver else INIT_ERROR_RETRY_S)
            self._init_failure = NoData(f"no NVIDIA driver: {e}") if no_driver else \
                RuntimeError(f"NVML init failed: {e}")
            self._raise_init_failure()
        self._initialized, self._retry_at, self._init_failure = True, None, None
        self._devices, self._count_at = [], None
        self._events, self._events_tried = None, False

    def _raise_init_failure(self) -> None:
        failure = self._init_failure or NoData("no NVIDIA driver")
        if isinstance(failure, NoData):
            raise NoData(str(failure))
        raise RuntimeError(str(failure))

    def close(self) -> None:
        with self._lock:
            if self._initialized and self._nv is not None:
                self._free_events()
                try:
                    self._nv.nvmlShutdown()
                except self._nv.NVMLError:
                    pass  # already shut down (e.g. by the driver being unloaded): nothing to release
            self._initialized = False
            self._devices = []

    # -- one tick ----------------------------------------------------------------------------------

    def collect(self) -> list[schema.Gpu]:
        with self._lock:
            if not self._initialized:
                self._init()
            nv = self._nv
            try:
                self._refresh_devices()
                for dev in self._devices:
                    dev.errors = []
                self._watch_xids()
                self._drain_xids()
                out = [self._read(dev) for dev in self._devices]
            except nv.NVMLError as e:
                if getattr(e, "value", None) == _UNINITIALIZED:
                    # Someone shut NVML down under us (another library in the agent): start over next tick.
                    self._initialized = False
                raise
            if self.processes:
                self._procs.forget_except({p.pid for g in out for p in (g.procs or ())})
            return out

    def _refresh_devices(self) -> None:
        """Device count and driver version are static: re-read them with the static TTL only."""
        now = self.clock()
        if self._count_at is not None and now - self._count_at < self.static_ttl_s:
            return
        nv = self._nv
        count = int(nv.nvmlDeviceGetCount())
        self._driver = text(self._call_global("nvmlSystemGetDriverVersion"))
        self._cuda = cuda_version(self._call_global("nvmlSystemGetCudaDriverVersion_v2")
                                  or self._call_global("nvmlSystemGetCudaDriverVersion"))
        if len(self._devices) != count:
            self._free_events()
            self._devices = [_Device(index=i) for i in range(count)]
            self._events_tried = False
        self._count_at = now

    def _call_global(self, fn_name: str) -> Any:
        if fn_name in self._missing:
            return None
        try:
            return getattr(self._nv, fn_name)()
        except AttributeError:
            self._missing.add(fn_name)
        except self._nv.NVMLError as e:
            if getattr(e, "value", None) == _FUNCTION_NOT_FOUND:
                self._missing.add(fn_name)
        return None

    # -- XID events ---------------------------------------------------------------------------------

    def _watch_xids(self) -> None:
        """One event set for the node, each card registered for XID critical errors once.

        A card that answers NOT_SUPPORTED (or a driver without the event API) keeps ``xid_count`` None:
        "cannot say", not "no errors"."""
        if self._events_tried:
            return
        self._events_tried = True
        nv = self._nv
        try:
            self._events = nv.nvmlEventSetCreate()
        except (AttributeError, nv.NVMLError):
            self._events = None
            return
        for dev in self._devices:
            try:
                if dev.handle is None:
                    dev.handle = self._handle(dev.index)
                nv.nvmlDeviceRegisterEvents(dev.handle, EVENT_XID, self._events)
            except _Lost:
                continue  # a lost card's XID (79) was the last thing it said; its row says lost
            except nv.NVMLError as e:
                if getattr(e, "value", None) == _UNINITIALIZED:
                    raise
                continue  # NOT_SUPPORTED and the like: this card's XIDs stay unknown
            dev.xid_count = 0

    def _drain_xids(self) -> None:
        """Take every pending event without waiting (timeout 0 answers TIMEOUT when there is none)."""
        if self._events is None:
            return
        nv = self._nv
        by_addr = {}
        for dev in self._devices:
            if dev.handle is not None:
                by_addr[_addr(dev.handle)] = dev
        for _ in range(XID_DRAIN_MAX):
            try:
                data = nv.nvmlEventSetWait_v2(self._events, 0)
            except nv.NVMLError as e:
                code = getattr(e, "value", None)
                if code == _UNINITIALIZED:
                    raise
                if code not in (_TIMEOUT, _GPU_IS_LOST):  # a lost card shows as lost in its own row
                    for dev in self._devices:
                        dev.errors.append(f"xid events: {e}")
                return
            if not data.eventType & EVENT_XID:
                continue
            dev = by_addr.get(_addr(data.device))
            if dev is None or dev.xid_count is None:
                continue
            dev.xid_count += 1
            dev.xid_last, dev.xid_last_ts = int(data.eventData), time.time()

    def _free_events(self) -> None:
        if self._events is not None and self._nv is not None:
            try:
                self._nv.nvmlEventSetFree(self._events)
            except (AttributeError, self._nv.NVMLError):
                pass  # the driver went away with it: nothing to release
        self._events = None

    def _read(self, dev: _Device) -> schema.Gpu:
        now = self.clock()
        if dev.lost_at is not None and now - dev.lost_at < LOST_RETRY_S:
            return self._lost_gpu(dev)
        try:
            if dev.handle is None or dev.lost_at is not None:
                dev.handle = self._handle(dev.index)
            if dev.static is None or now - dev.static.fetched_at >= self.static_ttl_s:
                dev.unsupported.clear()  # re-probe: a changed setting (ECC mode) may now answer
                dev.static = self._read_static(dev, now)
            gpu = self._read_dynamic(dev)
        except _Lost as e:
            dev.lost_at, dev.lost_error, dev.handle = now, str(e) or "GPU is lost", None
            return self._lost_gpu(dev)
        dev.lost_at = dev.lost_error = None
        return gpu

    def _handle(self, index: int) -> Any:
        nv = self._nv
        try:
            return nv.nvmlDeviceGetHandleByIndex(index)
        except nv.NVMLError as e:
            # A GPU that fell off the bus may not even give a handle (GPU_IS_LOST, or UNKNOWN on some
            # drivers): report it lost rather than fail the node.
            raise _Lost(str(e)) from None

    def _lost_gpu(self, dev: _Device) -> schema.Gpu:
        s = dev.static
        return schema.Gpu(index=dev.index, lost=True, error=dev.lost_error or "GPU is lost",
                          uuid=s.uuid if s else None, name=s.name if s else None,
                          bus_id=s.bus_id if s else None, arch=s.arch if s else None,
                          driver=self._driver, cuda_version=self._cuda, xid_errors=dev.xid_count,
                          xid_last=dev.xid_last, xid_last_ts=dev.xid_last_ts)

    def _q(self, dev: _Device, key: str, calls: tuple[tuple[str, tuple[Any, ...]], ...]) -> Any:
        """First answer among ``calls`` (newer symbol first); None where NVML has no value for it."""
        if key in dev.unsupported:
            return None
        nv = self._nv
        for fn_name, args in calls:
            if fn_name in self._missing:
                continue
            fn = getattr(nv, fn_name, None)
            if fn is None:  # a binding older than the symbol
                self._missing.add(fn_name)
                continue
            try:
                return fn(dev.handle, *args)
            except nv.NVMLError as e:
                code = getattr(e, "value", None)
                if code == _GPU_IS_LOST:
                    raise _Lost(str(e)) from None
                if code == _UNINITIALIZED:
                    raise  # NVML was shut down under us: collect() starts over, not N/A everywhere forever
                if code == _FUNCTION_NOT_FOUND:
                    self._missing.add(fn_name)
                    continue
                if code in _NO_VALUE:
                    dev.unsupported.add(key)
                    return None
                dev.errors.append(f"{key}: {e}")
                return None
            except UnicodeDecodeError:
                # A garbled name or uuid: unknown, like nvitop treats it.
                dev.errors.append(f"{key}: undecodable string")
                return None
        return None

    def _read_static(self, dev: _Device, now: float) -> _Static:
        nv, q = self._nv, self._q
        name = text(q(dev, "name", (("nvmlDeviceGetName", ()),)))
        pci = q(dev, "pci", (("nvmlDeviceGetPciInfo_v3", ()), ("nvmlDeviceGetPciInfo", ())))
        cc = q(dev, "cc", (("nvmlDeviceGetCudaComputeCapability", ()),))
        cc_t = (int(cc[0]), int(cc[1])) if cc else None
        arch = arch_name(q(dev, "arch", (("nvmlDeviceGetArchitecture", ()),)), cc_t)
        cores = q(dev, "cores", (("nvmlDeviceGetNumGpuCores", ()),))
        gen_max = q(dev, "pcie_gen_max", (("nvmlDeviceGetMaxPcieLinkGeneration", ()),))
        width_max = q(dev, "pcie_width_max", (("nvmlDeviceGetMaxPcieLinkWidth", ()),))
        return _Static(
            fetched_at=now,
            uuid=text(q(dev, "uuid", (("nvmlDeviceGetUUID", ()),))),
            name=name,
            bus_id=text(getattr(pci, "busId", None)) if pci is not None else None,
            power_limit_mw=q(dev, "power_limit", (("nvmlDeviceGetEnforcedPowerLimit", ()),)),
            temp_slowdown_c=q(dev, "temp_slowdown", (("nvmlDeviceGetTemperatureThreshold",
                                                        (nv.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,)),)),
            sm_clock_max_mhz=q(dev, "sm_clock_max", (("nvmlDeviceGetMaxClockInfo", (nv.NVML_CLOCK_SM,)),)),
            arch=arch,
            cuda_cores=cuda_cores(cores, name, cc_t, arch),
            pcie_gen_max=gen_max, pcie_width_max=width_max,
        )

    def _read_dynamic(self, dev: _Device) -> schema.Gpu:
        nv, q = self._nv, self._q
        s = dev.static or _Static(fetched_at=0.0)
        util = q(dev, "util", (("nvmlDeviceGetUtilizationRates", ()),))
        mem = q(dev, "mem", (("nvmlDeviceGetMemoryInfo", ()),))
        pstate = q(dev, "pstate", (("nvmlDeviceGetPerformanceState", ()),))
        ecc = ("nvmlDeviceGetTotalEccErrors",)
        gpu = schema.Gpu(
            index=dev.index, uuid=s.uuid, name=s.name, bus_id=s.bus_id, arch=s.arch, driver=self._driver,
            cuda_cores=s.cuda_cores, power_limit_mw=s.power_limit_mw, temp_slowdown_c=s.temp_slowdown_c,
            sm_clock_max_mhz=s.sm_clock_max_mhz,
            util_pct=int(util.gpu) if util is not None else None,
            mem_util_pct=int(util.memory) if util is not None else None,
            mem_total_bytes=int(mem.total) if mem is not None else None,
            mem_used_bytes=int(mem.used) if mem is not None else None,
            temp_c=q(dev, "temp", (("nvmlDeviceGetTemperature", (nv.NVML_TEMPERATURE_GPU,)),
                                   ("nvmlDeviceGetTemperatureV", (nv.NVML_TEMPERATURE_GPU,)))),
            power_mw=q(dev, "power", (("nvmlDeviceGetPowerUsage", ()),)),
            energy_mj=q(dev, "energy", (("nvmlDeviceGetTotalEnergyConsumption", ()),)),
            fan_pct=q(dev, "fan", (("nvmlDeviceGetFanSpeed", ()),)),
            sm_clock_mhz=q(dev, "sm_clock", (("nvmlDeviceGetClockInfo", (nv.NVML_CLOCK_SM,)),)),
            mem_clock_mhz=q(dev, "mem_clock", (("nvmlDeviceGetClockInfo", (nv.NVML_CLOCK_MEM,)),)),
            pstate=None if pstate is None or pstate == _PSTATE_UNKNOWN else int(pstate),
            ecc_corrected=q(dev, "ecc", ((ecc[0], (nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_VOLATILE_ECC)),)),
            ecc_uncorrected=q(dev, "ecc", ((ecc[0], (nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                                     nv.NVML_VOLATILE_ECC)),)),
            throttle_reasons=decode_throttle_reasons(q(dev, "throttle", (
                ("nvmlDeviceGetCurrentClocksEventReasons", ()),
                ("nvmlDeviceGetCurrentClocksThrottleReasons", ()),
            ))),
            cuda_version=self._cuda,
            pcie_gen=q(dev, "pcie_gen", (("nvmlDeviceGetCurrPcieLinkGeneration", ()),)),
            pcie_width=q(dev, "pcie_width", (("nvmlDeviceGetCurrPcieLinkWidth", ()),)),
            pcie_gen_max=s.pcie_gen_max, pcie_width_max=s.pcie_width_max,
            xid_errors=dev.xid_count, xid_last=dev.xid_last, xid_last_ts=dev.xid_last_ts,
        )
        self._read_retirement(dev, gpu)
        if self.pcie:
            rx = q(dev, "pcie", (("nvmlDeviceGetPcieThroughput", (nv.NVML_PCIE_UTIL_RX_BYTES,)),))
            tx = q(dev, "pcie", (("nvmlDeviceGetPcieThroughput", (nv.NVML_PCIE_UTIL_TX_BYTES,)),))
            gpu.pcie_rx_bytes_s = rx * 1024 if rx is not None else None  # NVML's unit: KB/s
            gpu.pcie_tx_bytes_s = tx * 1024 if tx is not None else None
        if self.processes:
            gpu.procs = self._gpu_procs(dev)
        if dev.errors:
            gpu.error = "; ".join(dev.errors)
        return gpu

    def _read_retirement(self, dev: _Device, gpu: schema.Gpu) -> None:
        """Retired pages (Pascal to Turing data-centre cards) and remapped rows (Ampere on).

        Each card answers one of the two and NOT_SUPPORTED to the other; GeForce cards answer neither."""
        nv, q = self._nv, self._q
        sbe = q(dev, "retired", (("nvmlDeviceGetRetiredPages",
                                  (nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,)),))
        dbe = q(dev, "retired", (("nvmlDeviceGetRetiredPages", (nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,)),))
        if sbe is not None and dbe is not None:
            gpu.retired_pages = len(sbe) + len(dbe)
            pending = q(dev, "retired_pending", (("nvmlDeviceGetRetiredPagesPendingStatus", ()),))
            gpu.retired_pending = bool(pending) if pending is not None else None
        rows = q(dev, "remapped", (("nvmlDeviceGetRemappedRows", ()),))
        if rows is not None:
            corr, unc, pending, failure = rows
            gpu.remapped_rows = int(corr) + int(unc)
            gpu.remap_pending, gpu.remap_failed = bool(pending), bool(failure)

    def _gpu_procs(self, dev: _Device) -> list[schema.GpuProc] | None:
        # The _v3 queries exist from driver 510, _v2 before; the unversioned pynvml wrapper would turn a
        # missing _v3 into NVMLLibraryMismatchError, so the versions are asked for explicitly.
        compute = self._q(dev, "compute_procs", (("nvmlDeviceGetComputeRunningProcesses_v3", ()),
                                                 ("nvmlDeviceGetComputeRunningProcesses_v2", ())))
        graphics = self._q(dev, "graphics_procs", (("nvmlDeviceGetGraphicsRunningProcesses_v3", ()),
                                                   ("nvmlDeviceGetGraphicsRunningProcesses_v2", ())))
        if compute is None and graphics is None:
            return None
        out: list[schema.GpuProc] = []
        for kind, procs in (("compute", compute or ()), ("graphics", graphics or ())):
            for p in procs:
                pid = int(p.pid)
                info = self._procs.info(pid)
                out.append(schema.GpuProc(
                    pid=pid, kind=kind, used_mem_bytes=used_memory(getattr(p, "usedGpuMemory", None)),
                    user=info.user if info else None, name=info.name if info else None,
                    cmdline=info.cmdline if info else None, start_ts=info.start_ts if info else None,
                    start_ticks=info.starttime if info else None, uid=info.uid if info else None,
                    owner=info.owner if info else None,
                ))
        return out
