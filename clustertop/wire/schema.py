"""Provides the wire schema v1: every payload that crosses Redis, as msgspec structs.

Rules (see docs/architecture.md):
- Depends on nothing but the standard library and msgspec, so the dashboard can import it
  without pulling in psutil, NVML or the kubernetes client.
- Every field has a default, so a payload from an older agent (missing fields) still decodes,
  and unknown fields from a newer agent are ignored (msgspec's default).
- ``None`` means "unknown / not supported / not collected": readers show N/A, never 0.
- Units are in field names (``_bytes``, ``_mw``, ``_pct``, ``_c``, ``_mhz``, ``_s``, ``_mj``).
- Timestamps are Unix seconds (float), wall clock of the sender.
"""

from __future__ import annotations

import msgspec

SCHEMA_VERSION = 1

#: The integers the wire carries (msgpack int64 and uint64): a parser keeps a bigger one out of its
#: struct (as unknown), because it would fail the agent's whole publish, not just that field.
WIRE_INTS = range(-(2**63), 2**64)


class Base(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Common base: keyword-only construction, defaults omitted on the wire to keep payloads small."""


class Payload(msgspec.Struct, kw_only=True, gc=False):
    """Top-level payloads: every field is written, so ``v``, ``host``, ``ts`` and ``seq`` are always
    on the wire (with omit_defaults a v1 ``v`` would vanish and a reader could not tell versions)."""


# ---------------------------------------------------------------------------------------------
# Per-collector bookkeeping and the agent's own cost
# ---------------------------------------------------------------------------------------------


class CollectorStatus(Base):
    """How one collector fared on its latest run."""

    ok: bool = False
    duration_ms: float | None = None
    error: str | None = None  # short, human readable ("TimeoutError: exceeded 2.0 s")
    last_ok_ts: float | None = None  # when it last succeeded (data may be older than the snapshot)
    interval_s: float | None = None
    skipped: int = 0  # runs skipped because the previous one had not finished (hung collector)


class AgentStats(Base):
    """What the agent itself costs on the node."""

    version: str | None = None
    pid: int | None = None
    cpu_pct: float | None = None  # of one core, since the previous tick
    cpu_ms_per_tick: float | None = None
    rss_bytes: int | None = None
    tick_ms: float | None = None  # wall time spent building and publishing the last snapshot
    started_ts: float | None = None
    read_only: bool = False
    publish_errors: int = 0  # pipelines that failed since start (Redis down)


# ---------------------------------------------------------------------------------------------
# Host (psutil) - collector "host" fills NodeSnapshot.system
# ---------------------------------------------------------------------------------------------


class CpuTimes(Base):
    util_pct: float | None = None  # all cores, 0..100
    per_cpu_pct: list[float] | None = None
    user_pct: float | None = None
    system_pct: float | None = None
    iowait_pct: float | None = None
    steal_pct: float | None = None


class Memory(Base):
    total_bytes: int | None = None
    used_bytes: int | None = None  # total - available
    available_bytes: int | None = None
    cached_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_used_bytes: int | None = None


class DiskIO(Base):
    """One block device, from /proc/diskstats (rates over the last interval)."""

    name: str
    read_bytes_s: float | None = None
    write_bytes_s: float | None = None
    read_iops: float | None = None
    write_iops: float | None = None
    util_pct: float | None = None  # time the device had I/O in flight
    await_ms: float | None = None  # average time per completed request
    queue_depth: float | None = None  # average requests in flight (weighted time / interval)
    in_flight: int | None = None


class Filesystem(Base):
    mountpoint: str
    device: str | None = None
    fstype: str | None = None
    total_bytes: int | None = None
    used_bytes: int | None = None
    avail_bytes: int | None = None
    inodes_total: int | None = None
    inodes_used: int | None = None


class Nic(Base):
    name: str
    rx_bytes_s: float | None = None
    tx_bytes_s: float | None = None
    rx_packets_s: float | None = None
    tx_packets_s: float | None = None
    rx_errors: int | None = None  # cumulative counters
    tx_errors: int | None = None
    rx_dropped: int | None = None
    tx_dropped: int | None = None
    speed_mbps: int | None = None  # None when the driver does not say (virtual NICs, link down)
    up: bool | None = None
    mtu: int | None = None
    kind: str | None = None  # "physical" | "bond" | "bond-slave" | "virtual" | "loopback"


class Owner(Base):
    """Whose work a process is (issue: attribution through /proc/<pid>/cgroup)."""

    kind: str = "user"  # "pod" | "container" | "celery" | "user" | "system"
    name: str | None = None  # pod name, container id, worker name
    namespace: str | None = None
    container_id: str | None = None
    pod_uid: str | None = None


class Proc(Base):
    pid: int
    user: str | None = None
    name: str | None = None
    cmdline: str | None = None  # truncated; node text, always escaped before display
    start_ts: float | None = None  # process start time (boot time + ticks, for display)
    # The identity a kill is bound to, exactly as the kernel keeps it: /proc/<pid>/stat field 22 (clock
    # ticks since boot) and the real uid. A float start time with a tolerance let a kill hit a process
    # that took the pid 0.05 s later.
    start_ticks: int | None = None
    uid: int | None = None
    cpu_pct: float | None = None  # of one core
    rss_bytes: int | None = None
    state: str | None = None
    threads: int | None = None
    owner: Owner | None = None


class System(Base):
    """Collector ``host``: the node's CPU, memory, disks, filesystems, NICs and top processes."""

    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    arch: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None  # logical
    cpu_physical: int | None = None
    cpu_mhz: float | None = None
    boot_ts: float | None = None
    uptime_s: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    cpu: CpuTimes | None = None
    mem: Memory | None = None
    disks: list[DiskIO] | None = None
    filesystems: list[Filesystem] | None = None
    nics: list[Nic] | None = None
    procs: list[Proc] | None = None  # top by CPU and by memory, union, bounded
    procs_total: int | None = None


# ---------------------------------------------------------------------------------------------
# GPUs (NVML) - collector "gpu" fills NodeSnapshot.gpus; [] = no GPUs, None = unknown
# ---------------------------------------------------------------------------------------------


class GpuProc(Base):
    pid: int
    used_mem_bytes: int | None = None  # None where NVML cannot say (WDDM, some vGPU)
    kind: str = "compute"  # "compute" | "graphics"
    user: str | None = None
    name: str | None = None
    cmdline: str | None = None
    start_ts: float | None = None
    start_ticks: int | None = None  # as Proc: the exact identity a kill is bound to
    uid: int | None = None
    owner: Owner | None = None


class Gpu(Base):
    index: int
    uuid: str | None = None
    name: str | None = None
    bus_id: str | None = None
    lost: bool = False  # fell off the bus / NVML returns GPU_IS_LOST: show it, keep the node
    error: str | None = None
    util_pct: int | None = None
    mem_util_pct: int | None = None
    mem_total_bytes: int | None = None
    mem_used_bytes: int | None = None
    temp_c: int | None = None
    temp_slowdown_c: int | None = None
    power_mw: int | None = None  # in milliwatts (NVML's unit)
    power_limit_mw: int | None = None
    energy_mj: int | None = None  # total energy since driver load, in millijoules
    fan_pct: int | None = None  # None on passively cooled data-centre cards
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    pstate: int | None = None  # 0 (max performance) .. 15
    ecc_corrected: int | None = None  # volatile aggregate; None on consumer cards (NotSupported)
    ecc_uncorrected: int | None = None
    throttle_reasons: list[str] | None = None  # names, e.g. ["sw_power_cap", "hw_slowdown"]
    pcie_rx_bytes_s: int | None = None
    pcie_tx_bytes_s: int | None = None
    cuda_cores: int | None = None  # derived from architecture and SM count where known
    arch: str | None = None
    driver: str | None = None
    procs: list[GpuProc] | None = None
    # Health (issue 16). None = the card or driver cannot say (NotSupported), never 0.
    cuda_version: str | None = None  # the CUDA version the driver supports, "12.4"
    pcie_gen: int | None = None  # current PCIe link generation and width (lanes) ...
    pcie_width: int | None = None
    pcie_gen_max: int | None = None  # ... and what the card and slot could do (a x16 card at x4 shows it)
    pcie_width_max: int | None = None
    xid_errors: int | None = None  # XID critical events seen since the agent started; None: not watchable
    xid_last: int | None = None  # the latest XID code (79 = fell off the bus, 48 = double-bit ECC, ...)
    xid_last_ts: float | None = None
    retired_pages: int | None = None  # dynamic page retirement (Pascal..Turing data-centre cards)
    retired_pending: bool | None = None  # a retirement waits for the next driver reload
    remapped_rows: int | None = None  # row remapping (Ampere and newer): correctable + uncorrectable
    remap_pending: bool | None = None  # a remap waits for a GPU reset
    remap_failed: bool | None = None  # a remap failed: the card needs service


# ---------------------------------------------------------------------------------------------
# Network bonds (collector "bonds"), NFS and other network mounts (collector "nfs")
# ---------------------------------------------------------------------------------------------


class BondSlave(Base):
    name: str
    mii_status: str | None = None  # "up" | "down" | "going back" ...
    speed_mbps: int | None = None
    duplex: str | None = None
    link_failures: int | None = None
    perm_hwaddr: str | None = None
    state: str | None = None  # sysfs bonding_slave/state: "active" | "backup"
    aggregator_id: int | None = None
    actor_port_state: int | None = None  # LACP state bits (0x08 sync, 0x10 collecting, 0x20 distributing)
    partner_port_state: int | None = None
    actor_churn: str | None = None
    partner_churn: str | None = None
    actor_churned: int | None = None
    partner_churned: int | None = None
    rx_bytes_s: float | None = None
    tx_bytes_s: float | None = None
    ok: bool | None = None  # carrying traffic
    problem: str | None = None  # why not, in words


class Bond(Base):
    name: str
    mode: str | None = None  # "balance-alb", "802.3ad", "active-backup", ...
    mii_status: str | None = None
    active_slave: str | None = None
    primary_slave: str | None = None
    speed_mbps: int | None = None  # sum of working slaves' speeds
    xmit_hash_policy: str | None = None
    lacp_rate: str | None = None
    active_aggregator_id: int | None = None
    partner_mac: str | None = None
    slaves: list[BondSlave] | None = None
    degraded: bool | None = None
    problems: list[str] | None = None  # "eth1: not distributing (LACP state 15)"
    source: str | None = None  # "procfs" | "sysfs" | "procfs+sysfs"


class NetMount(Base):
    mountpoint: str
    fstype: str | None = None  # nfs, nfs4, cephfs, fuse.sshfs
    source: str | None = None  # server:/export
    state: str = "unknown"  # "ok" | "slow" | "hung" | "unknown"
    latency_ms: float | None = None
    hung_since_ts: float | None = None
    total_bytes: int | None = None
    used_bytes: int | None = None
    error: str | None = None  # the probe's error when the mount answered badly ("Stale file handle")


# ---------------------------------------------------------------------------------------------
# Kubernetes view from a node (launched tasks live in Command results)
# ---------------------------------------------------------------------------------------------


class Task(Base):
    """A task this agent launched from a template (job control)."""

    id: str
    template: str
    pid: int | None = None
    pgid: int | None = None
    started_ts: float | None = None
    ended_ts: float | None = None
    exit_code: int | None = None
    state: str = "running"  # "running" | "exited" | "killed" | "failed"
    job: str | None = None  # multi-node job id shared by ranks
    rank: int | None = None
    argv: list[str] | None = None
    unit: str | None = None  # systemd scope that enforces the limits; None = a plain process group
    note: str | None = None  # e.g. "memory_max/cpu_quota not enforced: no systemd", "stopped: timeout_s"
    log_path: str | None = None  # on the node: the task's bounded output log
    log_bytes: int | None = None


class TemplateInfo(Base):
    """A task template this agent may launch (name and parameter types only; argv stays on the node)."""

    name: str
    description: str | None = None
    params: dict[str, str] = {}  # param name -> type ("str" | "int" | "float" | "bool")


class Container(Base):
    """One container of the node's engine (collector "containers": the Docker Engine API, which Docker and
    Podman both serve). Every string is node text (names come from whoever ran the container)."""

    id: str  # full 64-hex id: what a command names, never the (reusable) name
    name: str | None = None  # without the engine's leading "/"
    image: str | None = None
    state: str | None = None  # the engine's word: "running" | "exited" | "paused" | "restarting" | "created" | "dead"
    status: str | None = None  # the engine's phrase: "Up 2 hours", "Exited (137) 3 minutes ago"
    created_ts: int | None = None  # the engine's "Created" (Unix seconds): with the id, a command's identity
    started_ts: float | None = None
    pid: int | None = None  # main process on the host (0 / None when not running)
    exit_code: int | None = None
    restarts: int | None = None  # the engine's RestartCount (restart policy restarts)
    cpu_pct: float | None = None  # of one core, between this poll and the previous (None on the first)
    mem_bytes: int | None = None  # usage less inactive page cache, as `docker stats` counts it
    mem_limit_bytes: int | None = None  # the container's limit, else the host's memory
    pids: int | None = None
    template: str | None = None  # launched by clustertop from this container template (its label)
    pod_uid: str | None = None  # a kubelet-managed container's pod (label io.kubernetes.pod.uid)


class Containers(Base):
    """Collector "containers": the engine's containers, and the container templates this agent may launch."""

    engine: str | None = None  # "Docker Engine 20.10.24" / "Podman Engine 4.3.1"
    containers: list[Container] | None = None
    total: int | None = None  # containers the engine has; more than len(containers) when the list was cut
    templates: list[TemplateInfo] | None = None
    control: str | None = None  # which containers commands may touch: "launched" | "all"


# ---------------------------------------------------------------------------------------------
# CPU/SoC sensors (collector "sensors": /sys/class/thermal, /sys/class/hwmon, cpufreq)
# ---------------------------------------------------------------------------------------------


class TempSensor(Base):
    """One temperature reading: a thermal zone or an hwmon channel."""

    source: str  # "thermal" | "hwmon"
    chip: str | None = None  # thermal zone type ("cpu-thermal", "x86_pkg_temp") or hwmon name ("coretemp")
    label: str | None = None  # hwmon tempN_label ("Package id 0", "Core 3")
    temp_c: float | None = None
    high_c: float | None = None  # where the hardware starts to slow down: passive trip, hwmon tempN_max
    crit_c: float | None = None  # critical trip / tempN_crit: shutdown follows
    cpu: bool = False  # counts as the CPU/SoC (coretemp, k10temp, cpu-thermal, soc-thermal, x86_pkg_temp...)
    device: str | None = None  # the sysfs entry it came from: "thermal_zone3", "hwmon1"


class Sensors(Base):
    """Collector ``sensors``: CPU/SoC temperature and thermal throttling. None = not exposed here."""

    cpu_temp_c: float | None = None  # hottest CPU/SoC sensor
    cpu_high_c: float | None = None  # the lowest slowdown point among the CPU sensors
    cpu_crit_c: float | None = None
    temps: list[TempSensor] | None = None  # bounded
    freq_mhz: float | None = None  # mean scaling_cur_freq over the CPUs that report it
    freq_max_mhz: float | None = None  # highest cpuinfo_max_freq
    throttle_count: int | None = None  # x86 thermal_throttle core+package counters, summed, since boot
    throttle_new: int | None = None  # of which since the previous read
    cooling: int | None = None  # CPU-frequency cooling devices at a state above 0 (ARM thermal throttling)
    throttled: bool | None = None  # throttle_new > 0 or cooling > 0; None when neither can be read


# ---------------------------------------------------------------------------------------------
# Energy accounting (ct:v1:energy:{host}, written by the agent's energy ledger)
# ---------------------------------------------------------------------------------------------


class EnergyUse(Base):
    """Energy and GPU time of one subject within one bucket."""

    kind: str  # "gpu" | "node" | "idle" | "user" | "pod" | "namespace" | "job"
    name: str  # GPU uuid (or "gpu<index>"), host, user, "namespace/pod", namespace, job id
    joules: float = 0.0
    gpu_s: float = 0.0  # GPU-seconds held (split like the energy: see EnergyLedger.split)
    method: str | None = None  # GPUs only: "counter" | "power" | "mixed" (both within the bucket)


class EnergyGpuState(Base):
    """Where the ledger left a GPU: what its next reading is measured from (also across a restart)."""

    key: str
    ts: float
    energy_mj: int | None = None
    power_mw: int | None = None


class EnergyLedger(Payload):
    """A node's energy and GPU time per subject, ct:v1:energy:{host}, written by the node's own agent.

    ``recent``: 5-minute buckets (start, Unix s) for the last hour; ``hours``: hour buckets for the last 24 h.
    Every joule is added to both. The windows are sums over the buckets that overlap them (so "1 h"
    covers 60-65 minutes, "24 h" 24-25 hours). ``last`` is where each GPU was left, so an agent that restarts
    measures from there (``clustertop.agents.energy``).
    """

    v: int = SCHEMA_VERSION
    host: str = ""
    ts: float = 0.0
    since_ts: float | None = None  # when this ledger started counting: the windows cover no more than that
    price_per_kwh: float | None = None  # [energy] price_per_kwh on the node; None: no cost shown
    currency: str | None = None
    split: str | None = None  # how a GPU's energy and time are split among its processes: "memory" | "equal"
    recent: dict[int, list[EnergyUse]] = {}
    hours: dict[int, list[EnergyUse]] = {}
    last: list[EnergyGpuState] = []


# ---------------------------------------------------------------------------------------------
# The node snapshot: ct:v1:node:{host}
# ---------------------------------------------------------------------------------------------


class NodeSnapshot(Payload):
    v: int = SCHEMA_VERSION
    host: str = ""
    ts: float = 0.0
    seq: int = 0
    interval_s: float = 1.0
    role: str | None = None  # free-form label from config ("gpu", "arm-worker", ...)
    labels: dict[str, str] | None = None
    collectors: dict[str, CollectorStatus] = {}
    agent: AgentStats | None = None
    system: System | None = None  # collector "host"
    gpus: list[Gpu] | None = None  # collector "gpu"
    bonds: list[Bond] | None = None  # collector "bonds"
    netmounts: list[NetMount] | None = None  # collector "nfs"
    tasks: list[Task] | None = None  # launched by this agent
    templates: list[TemplateInfo] | None = None  # what this agent may launch (None: no executor)
    containers: Containers | None = None  # collector "containers" (None: no engine socket, or not collected)
    sensors: Sensors | None = None  # collector "sensors"
    # Set on the full snapshot by an agent that rewrites it only every this many seconds (and every tick while
    # a reader wants it; docs/architecture.md "Byte budget"): its key outlives the node, so such a snapshot
    # is never the evidence that the node is up: its digest (or brief) key is. None: every tick.
    full_every_s: float | None = None


class DigestAlert(Base):
    """One problem a node's own snapshot shows (``clustertop.wire.digest.node_alerts``); the node is the digest's."""

    severity: str  # "info" | "warning" | "critical"
    source: str  # "collector" | "gpu" | "bond" | "mount" | "disk" | "cpu"
    subject: str
    message: str  # node text: escaped before markup


class NodeDigest(Base):
    """A node in one line, ct:v1:digest:{host}: what the cluster-wide figures, the node tiles and
    the nodes table read of it, as numbers already folded on the node (``clustertop.wire.digest``).

    Published beside the snapshot and its brief with the same TTL. ``v``, ``host``, ``ts`` and
    ``seq`` are required, so they are always on the wire; everything else is omitted at its default
    (None = unknown, as everywhere). Sums are over the node's live GPUs and count known values only,
    exactly as the cluster totals do, so merging digests gives the totals of the snapshots.
    ``rules`` is the version of the folding and alert rules that made it: a dashboard with newer
    rules reads that node's brief and folds it itself rather than show an old agent's verdicts.
    """

    v: int
    host: str
    ts: float
    seq: int
    rules: int = 0
    role: str | None = None
    labels: dict[str, str] | None = None
    agent_cpu_pct: float | None = None
    agent_rss_bytes: int | None = None
    # system (None throughout when the host collector has not reported)
    cpu_count: int | None = None
    cpu_util_pct: float | None = None
    load1: float | None = None
    uptime_s: float | None = None
    mem_total_bytes: int | None = None
    mem_used_bytes: int | None = None
    net_rx_bytes_s: float | None = None  # the NICs the totals count (clustertop.wire.digest.TOTAL_NIC_KINDS)
    net_tx_bytes_s: float | None = None
    disk_read_bytes_s: float | None = None
    disk_write_bytes_s: float | None = None
    # GPUs: ``gpus`` None = no GPU data from this node; 0 = it has none
    gpus: int | None = None  # cards, lost ones included
    gpus_lost: int = 0
    gpus_busy: int = 0  # live cards at or above GPU_BUSY_PCT
    gpus_hot: int = 0
    gpu_util_sum: int = 0  # over the live cards that report utilisation ...
    gpu_util_n: int = 0  # ... and how many they are (exact cluster mean: Σ sum / Σ n)
    gpu_util_pct: list[int | None] | None = None  # per card, index order (None: lost or not reported)
    # per card: "x" lost, "e" uncorrected ECC errors, "h" hot, "." otherwise (the tiles' colours and words)
    gpu_marks: str | None = None
    gpu_temp_max_c: int | None = None
    vram_total_bytes: int | None = None
    vram_used_bytes: int | None = None
    vram_partial: bool = False  # a live card reports no VRAM used or total: a node's VRAM % is N/A
    power_mw: int | None = None
    power_limit_mw: int | None = None
    cuda_cores: int | None = None
    gpu_procs: int | None = None
    models: dict[str, int] | None = None  # GPU model -> live cards
    # bonds: None = no bond data
    bonds: int | None = None
    bonds_degraded: int | None = None
    bond_slaves: int | None = None  # None when a bond's slaves could not be read
    bond_slaves_ok: int | None = None
    alerts: list[DigestAlert] | None = None
    # The snapshot time (``ts``) of the full snapshot the node's key holds: written this tick or up to
    # ``full_every_s`` before ("Byte budget" in docs/architecture.md). A reader that keeps full snapshots
    # decoded fetches one again only when this changed (``read.reader.FullCache``). None: an agent from before
    # this field: its full snapshot is fetched on every read that takes it, as before.
    full_ts: float | None = None


class HistPoint(Base):
    """One compact history sample, ct:v1:hist:{host} (field "d" of each stream entry).

    Short names on purpose: an hour of these per node must stay cheap.
    """

    ts: float
    cpu: float | None = None  # util %
    mem: int | None = None  # used bytes
    gu: list[int | None] | None = None  # per-GPU util %
    gm: list[int | None] | None = None  # per-GPU memory used bytes
    gp: list[int | None] | None = None  # per-GPU power mW
    gt: list[int | None] | None = None  # per-GPU temperature C
    rx: float | None = None  # Σ NIC rx bytes/s (physical NICs)
    tx: float | None = None
    dr: float | None = None  # Σ disk read bytes/s
    dw: float | None = None


class TierBlock(Base):
    """A block of one node's downsampled history, ct:v1:hist:{host}:{tier}:{start} (``clustertop.wire.tiers``):
    a fixed run of buckets (an hour of 1-minute ones, a day of 10-minute ones), one row per bucket.

    ``cols`` names what each row holds after its sample count: a figure's mean ("cpu"), or its maximum
    ("cpu^"); each value is an int of the figure's unit, a list where the figure is per GPU. A row of
    ``None``, a short row, or a ``None`` value: no sample (a gap, never 0). Names are listed once per
    block, so a figure a newer agent adds is a column an older dashboard skips.
    """

    start: int  # the first bucket's start, epoch seconds
    step: int  # bucket width, seconds
    cols: list[str] = []
    rows: list[list[int | list[int | None] | None] | None] = []


# ---------------------------------------------------------------------------------------------
# Cluster-scope payloads: ct:v1:cluster:{name}, published by the lease holder
# ---------------------------------------------------------------------------------------------


class HealthCheck(Base):
    code: str  # e.g. OSD_DOWN
    severity: str | None = None  # HEALTH_WARN | HEALTH_ERR
    message: str | None = None
    count: int | None = None
    detail: list[str] | None = None
    muted: bool = False


class CephOsd(Base):
    id: int
    host: str | None = None
    up: bool | None = None
    in_: bool | None = msgspec.field(default=None, name="in")
    state: list[str] | None = None
    device_class: str | None = None
    total_bytes: int | None = None
    used_bytes: int | None = None
    pgs: int | None = None
    commit_latency_ms: float | None = None
    apply_latency_ms: float | None = None
    read_ops_s: float | None = None
    write_ops_s: float | None = None


class CephPool(Base):
    id: int
    name: str
    type: str | None = None
    size: int | None = None
    min_size: int | None = None
    pg_num: int | None = None
    stored_bytes: int | None = None
    used_bytes: int | None = None
    avail_bytes: int | None = None
    percent_used: float | None = None
    objects: int | None = None
    read_bytes_s: float | None = None
    write_bytes_s: float | None = None
    read_ops_s: float | None = None
    write_ops_s: float | None = None
    applications: list[str] | None = None


class RbdSnap(Base):
    name: str
    id: int | None = None
    size_bytes: int | None = None
    protected: bool | None = None
    ts: str | None = None
    children: list[str] | None = None  # "pool/image"


class RbdImage(Base):
    pool: str
    name: str
    size_bytes: int | None = None
    used_bytes: int | None = None
    parent: str | None = None  # "pool/image@snap" for a clone
    snapshots: list[RbdSnap] | None = None
    features: list[str] | None = None


class Ceph(Base):
    fsid: str | None = None
    status: str | None = None  # HEALTH_OK | HEALTH_WARN | HEALTH_ERR; None = unknown
    checks: list[HealthCheck] | None = None
    mons: int | None = None
    mons_quorum: int | None = None
    mgr_active: str | None = None
    mgr_standbys: int | None = None
    osds_total: int | None = None
    osds_up: int | None = None
    osds_in: int | None = None
    pgs_total: int | None = None
    pg_states: dict[str, int] | None = None
    objects: int | None = None
    objects_degraded: int | None = None
    objects_misplaced: int | None = None
    objects_unfound: int | None = None
    total_bytes: int | None = None
    used_bytes: int | None = None
    avail_bytes: int | None = None
    read_bytes_s: float | None = None
    write_bytes_s: float | None = None
    read_ops_s: float | None = None
    write_ops_s: float | None = None
    recovering_bytes_s: float | None = None
    osds: list[CephOsd] | None = None  # polled less often; detail_ts says when
    pools: list[CephPool] | None = None
    images: list[RbdImage] | None = None
    detail_ts: float | None = None
    url: str | None = None  # the mgr that answered
    errors: list[str] | None = None  # partial failures (a detail endpoint refused); the rest still flows


class Queue(Base):
    broker: str  # redacted URL (no password)
    name: str
    kind: str = "celery"  # "celery-redis" | "rabbitmq"
    depth: int | None = None  # RabbitMQ: ready + unacked; Redis: the lists (= ready)
    ready: int | None = None
    unacked: int | None = None  # delivered to a consumer, not yet acknowledged (Redis: kombu's unacked hash)
    consumers: int | None = None
    # messages/s. RabbitMQ: its own counters. Redis: balanced between two worker inspections from the lists,
    # the unacked hash and the consuming workers' task counters (collectors/celery.py); None where not exact.
    publish_rate: float | None = None
    deliver_rate: float | None = None
    growing_unconsumed: bool = False


class WorkerTask(Base):
    id: str
    name: str | None = None
    started_ts: float | None = None
    runtime_s: float | None = None
    args: str | None = None


class Worker(Base):
    name: str  # celery@host or tcp://addr
    kind: str = "celery"  # "celery" | "dask"
    host: str | None = None
    online: bool | None = None
    last_seen_ts: float | None = None
    pool_size: int | None = None
    active: list[WorkerTask] | None = None
    processing: int | None = None  # Dask
    mem_bytes: int | None = None
    mem_limit_bytes: int | None = None
    nthreads: int | None = None


class CeleryTaskStat(Base):
    """Per task name, from Celery's event stream since the collector started listening."""

    name: str
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    revoked: int = 0
    runtime_p50_s: float | None = None  # over the succeeded runs of the last window_s; None: none
    runtime_p95_s: float | None = None


class CeleryTask(Base):
    """One recent task as the events told it; text fields are truncated by the collector, never inert."""

    id: str
    name: str | None = None
    state: str | None = None  # RECEIVED / STARTED / SUCCESS / FAILURE / RETRY / REVOKED
    worker: str | None = None
    ts: float | None = None  # wall clock of the latest event
    runtime_s: float | None = None
    args: str | None = None  # the worker's repr, truncated
    kwargs: str | None = None
    exception: str | None = None
    traceback: str | None = None


class CeleryHistory(Base):
    """Task history of one broker from its event stream (``collectors/celery_events.py``)."""

    broker: str  # redacted URL
    events: bool | None = None  # None: not known yet; False: no worker sends events (see note)
    note: str | None = None  # why events are off / the stream failed
    window_s: float | None = None  # runtime percentiles cover this many seconds
    stats: list[CeleryTaskStat] | None = None
    recent: list[CeleryTask] | None = None  # newest first
    dropped: int | None = None  # events lost to the bounded capture since start


class CeleryGroup(Base):
    """One group or chord header as the Redis result backend holds it (``collectors/celery_groups.py``)."""

    id: str  # the group id, as the backend's key names it (truncated, never inert)
    kind: str | None = None  # "group" (saved: GroupResult.save()) or "chord" (a chord's header)
    name: str | None = None  # the members' task name, where the event stream named them
    total: int | None = None  # M; None: not known
    done: int | None = None  # N: members ended (success, failure or revoked)
    failed: int | None = None  # K; None: not known (see note)
    revoked: int | None = None
    ended: bool | None = None  # chord: the callback was sent (or failed with the header's error)
    first_ts: float | None = None  # wall clock when the collector first saw it
    note: str | None = None  # why a count is None


class CeleryGroups(Base):
    """Groups and chords of one Redis result backend, newest first."""

    backend: str  # redacted URL
    groups: list[CeleryGroup] | None = None  # None: not read (see note)
    note: str | None = None  # not configured / unreachable / bounded: the reason


class DaskComputation(Base):
    """One computation the Dask scheduler knows (``Scheduler.computations``): its task groups' states."""

    id: str
    start_ts: float | None = None
    groups: list[str] | None = None  # task group names, the first few
    states: dict[str, int] | None = None  # task state -> tasks (memory, erred, processing, waiting, ...)


class DaskStreamTask(Base):
    """One recent entry of the scheduler's task stream (``TaskStreamPlugin``)."""

    key: str
    worker: str | None = None
    status: str | None = None  # "OK" or "error"
    start_ts: float | None = None
    stop_ts: float | None = None


class DaskStreamBucket(Base):
    """The task stream folded: the tasks of one prefix (Dask's ``key_split``) on one worker in one time bucket
    (``Queues.dask_stream_bucket_s`` wide, from ``t``), so a timeline covers the whole poll window however busy."""

    prefix: str
    t: float  # the bucket's start (epoch seconds)
    worker: str | None = None  # None: the workers past the collector's cap, together (``dask_stream_other_workers``)
    tasks: int | None = None  # tasks that ended in the bucket
    busy_s: float | None = None  # compute seconds spent in the bucket (a long task's time spread over its buckets)
    errors: int | None = None  # of ``tasks``, those that erred


class Queues(Base):
    queues: list[Queue] | None = None
    workers: list[Worker] | None = None
    dask_tasks_processing: int | None = None
    dask_tasks_waiting: int | None = None
    errors: list[str] | None = None  # per broker / scheduler failures; the rest still flows
    task_history: list[CeleryHistory] | None = None  # per broker; None: not collected
    dask_computations: list[DaskComputation] | None = None  # newest last; None: not collected
    dask_task_stream: list[DaskStreamTask] | None = None  # newest last
    celery_groups: CeleryGroups | None = None  # None: no result backend configured
    # The Dask task stream folded over a window (collectors/dask_progress.fold_stream); None: not collected.
    dask_stream: list[DaskStreamBucket] | None = None
    dask_stream_bucket_s: float | None = None  # each bucket's width
    dask_stream_from_ts: float | None = None  # the window the buckets cover: every task that ended in it
    dask_stream_to_ts: float | None = None
    dask_stream_other_workers: int | None = None  # workers folded into ``worker=None`` buckets


class K8sNode(Base):
    name: str
    ready: bool | None = None
    unschedulable: bool = False
    conditions: dict[str, str] | None = None  # type -> status, only the abnormal ones
    gpu_capacity: int | None = None
    gpu_allocatable: int | None = None
    gpu_allocated: int | None = None
    cpu_allocatable_m: int | None = None
    mem_allocatable_bytes: int | None = None


class K8sPod(Base):
    namespace: str
    name: str
    node: str | None = None
    phase: str | None = None
    reason: str | None = None
    restarts: int | None = None
    gpus: int = 0  # nvidia.com/gpu requested
    created_ts: float | None = None
    owner_kind: str | None = None
    owner: str | None = None
    uid: str | None = None

    def holds_resources(self) -> bool:
        """Bound and not terminated: the scheduler counts its requests against the node."""
        return bool(self.node) and self.phase not in K8S_TERMINATED_PHASES


#: Pod phases whose requests no longer count against their node.
K8S_TERMINATED_PHASES = ("Succeeded", "Failed")


class K8sWorkload(Base):
    kind: str  # "Job" | "Deployment"
    namespace: str
    name: str
    replicas: int | None = None
    ready: int | None = None
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None


class Kubernetes(Base):
    server: str | None = None
    version: str | None = None
    nodes: list[K8sNode] | None = None
    pods: list[K8sPod] | None = None
    workloads: list[K8sWorkload] | None = None
    pods_total: int | None = None  # pods seen; more than len(pods) when the list was cut to fit the wire
    errors: list[str] | None = None  # partial failures (a list the credentials may not read); the rest flows


class ClusterPayload(Payload):
    """ct:v1:cluster:{name}: a cluster-scope collector's result, from whichever agent holds the lease."""

    v: int = SCHEMA_VERSION
    name: str = ""  # "ceph" | "queues" | "kubernetes"
    source_host: str = ""
    ts: float = 0.0
    seq: int = 0
    interval_s: float = 10.0
    ok: bool = False
    error: str | None = None  # e.g. "Ceph unreachable: ConnectError ..." (data below is the last good)
    last_ok_ts: float | None = None
    ceph: Ceph | None = None
    queues: Queues | None = None
    kubernetes: Kubernetes | None = None


# ---------------------------------------------------------------------------------------------
# Commands, results and audit (job control)
# ---------------------------------------------------------------------------------------------


class Command(Payload):
    """A signed order to one agent: ct:v1:cmd:{host} (field "c"). See agents/commands.py."""

    id: str
    node: str
    verb: str  # "signal" | "launch" | "stop" | "list" | "tail"
    args: dict[str, str | int | bool | None] = {}
    issued_ts: float = 0.0
    expires_ts: float = 0.0
    key_id: str = ""
    operator: str | None = None  # who, for the audit trail
    # launch: template params (values as typed, or text the agent converts to the param's type)
    params: dict[str, str | int | float | bool] = {}
    sig: str = ""  # base64 Ed25519 over signing_bytes(command without sig)


class CommandResult(Payload):
    id: str
    node: str
    verb: str | None = None
    ok: bool = False
    status: str = ""  # "done" | "refused" | "failed" | "expired"
    reason: str | None = None
    ts: float = 0.0
    data: dict[str, str | int | float | bool | None] | None = None
    output: str | None = None  # tail of a task's output
    tasks: list[Task] | None = None  # verb "list" (and the task a launch/stop acted on)
    # Signed by the node that executed it (its enrolled key): a result anyone else wrote is shown as
    # unverified, never as "done". See control/signing.py (domain "result").
    key_id: str = ""
    sig: str = ""


class AuditEntry(Payload):
    ts: float
    actor: str  # operator name or key id
    action: str  # "signal", "launch", "k8s.delete", "celery.revoke", ...
    target: str  # "node-a pid 123", "ns/pod"
    result: str  # "ok" | "refused: ..." | "failed: ..."
    where: str | None = None  # "agent:node-a" | "dashboard" | "cli"
    command_id: str | None = None
    # Tamper evidence: entries of one stream are numbered and chained (``prev`` = hex SHA-256 of the
    # previous entry's signed bytes, "" for the first), and signed by their writer, whose key is the
    # actor that counts (``actor`` is the name it goes by). ``clustertop audit verify`` checks both.
    seq: int = 0
    prev: str = ""
    key_id: str = ""
    sig: str = ""


class NodeSeal(Payload):
    """A node's signature over what it published this tick (ct:v1:seal:{host}, same MULTI, same TTL).

    One signature covers the full snapshot, the brief and the digest by their SHA-256, so checking a
    node costs one verification whichever form a screen read; the dashboard checks it against the key
    the operator enrolled before anything is built on that data (a kill's target above all).
    """

    v: int = SCHEMA_VERSION
    host: str = ""
    seq: int = 0
    ts: float = 0.0
    node: str = ""  # hex SHA-256 of the node payload's bytes
    brief: str = ""
    digest: str = ""
    key_id: str = ""
    sig: str = ""


__all__ = [name for name in dir() if name[:1].isupper()] + ["SCHEMA_VERSION"]
