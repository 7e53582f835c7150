"""Provides the simulated nodes: GPU towers and ARM boards whose snapshots follow their jobs.

Everything static (names, models, limits, daemons, disks) is built once per node; each step computes
only the dynamic numbers and copies the static structs with ``msgspec.structs.replace`` (done in C,
a fraction of a microsecond per struct). That is what keeps a 1,000-node x 8-GPU step in tens of
milliseconds. Structs handed out may be shared between steps: callers treat them as read-only.

Randomness comes only from the ``random.Random`` passed in, so a seed and a sequence of ``now``
values give the same snapshots, byte for byte.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from msgspec.structs import replace

from clustertop.wire import schema

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

GPU_NAME = "NVIDIA GeForce GTX 1080 Ti"
GPU_MEM_BYTES = 11264 * MIB
GPU_LIMIT_MW = 250_000
GPU_IDLE_MEM = 2 * MIB  # a headless card with the driver loaded shows a couple of MiB in use
DRIVER = "535.183.01"
BOND_SLAVES = ("eth0", "eth1", "eth2")
SLAVE_MBPS = 1000
SLAVE_MAX_BYTES_S = 117e6  # what a 1 GbE port actually carries
MAX_PROCS = 10  # the host collector ships a bounded top list, not the process table
OSD_DISKS = ("sdb", "sdc", "sdd", "sde", "sdf", "sdg")

USERS = ("alice", "bob", "chen", "dana", "emre", "farah")
#: uids as a real node has them: root, system accounts below 1000, people from 1001 (job control binds
#: a kill to pid + start ticks + uid, so simulated processes carry all three).
SIM_UIDS = {"root": 0, "ceph": 167, "redis": 105, "celery": 996, "dask": 997, "clustertop": 998,
            **{u: 1001 + i for i, u in enumerate(USERS)}}
SIM_CLK_TCK = 100  # USER_HZ on every mainstream Linux


def sim_uid(user: str | None) -> int | None:
    return SIM_UIDS.get(user) if user is not None else None


def sim_ticks(start_ts: float, boot_ts: float) -> int:
    """/proc/<pid>/stat field 22 for a process started at ``start_ts`` on a node booted at ``boot_ts``."""
    return max(0, round((start_ts - boot_ts) * SIM_CLK_TCK))
MODELS = ("resnet50", "vit-b16", "bert-base", "llama2-7b-lora", "unet3d", "yolov8m", "whisper-small")

TOWER_CPUS = (
    ("AMD Ryzen 7 2700X Eight-Core Processor", 16, 8),
    ("Intel(R) Core(TM) i9-9900K CPU @ 3.60GHz", 16, 8),
    ("AMD Ryzen 9 3900X 12-Core Processor", 24, 12),
    ("Intel(R) Core(TM) i9-7940X CPU @ 3.10GHz", 28, 14),
    ("AMD Ryzen Threadripper 1950X 16-Core Processor", 32, 16),
)
ARM_BOARDS = (  # (cpu model as /proc/cpuinfo shows it on that board, cores, RAM GiB, kernel)
    ("Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)", 4, 4, "6.1.0-rpi7-rpi-v8"),
    ("Cortex-A72 (Raspberry Pi 4 Model B Rev 1.5)", 4, 8, "6.1.0-rpi7-rpi-v8"),
    ("Cortex-A76 (Radxa ROCK 5B)", 8, 8, "5.10.160-rockchip-rk3588"),
    ("Cortex-A73 (Hardkernel ODROID-N2Plus)", 6, 4, "6.1.77-meson64"),
)


@dataclass(slots=True, eq=False)
class Job:
    """A training run on one or more GPUs of a tower: a Kubernetes pod or a user's own process."""

    name: str  # pod name, or "<user>/<model>" for a job started from a shell
    user: str
    model: str
    cmdline: str
    pid: int
    start: float
    load_s: float  # reading the dataset and filling VRAM before the first step
    end: float
    vram_frac: float  # share of each card's memory once training
    cpu_cores: float  # data-loader cores it keeps busy while training
    rss_bytes: int
    owner: schema.Owner
    gpus: list[int]
    host: str
    namespace: str | None = None  # Kubernetes pods only
    job_name: str | None = None
    uid: str | None = None
    gpus_wanted: int = 1
    created: float = 0.0
    fails: bool = False
    gpu_owner: schema.Owner | None = None  # the owner without ids, repeated on every GPU it uses
    vram_bytes: int = 0
    boot_ts: float = 0.0  # its node's boot time: what its start ticks count from
    _gpu_proc: schema.GpuProc | None = None

    def __post_init__(self) -> None:
        # One job shows up on each of its GPUs and in the process list: the ids (container, pod uid)
        # ride only on the process entry, which keeps an 8-GPU node's snapshot smaller.
        o = self.owner
        self.gpu_owner = schema.Owner(kind=o.kind, name=o.name, namespace=o.namespace)
        self.vram_bytes = int(self.vram_frac * (GPU_MEM_BYTES - GPU_IDLE_MEM))

    def gpu_proc(self, mem: int) -> schema.GpuProc:
        """The job's entry on one of its GPUs; reused while its memory stays the same."""
        p = self._gpu_proc
        used = mem - GPU_IDLE_MEM
        if p is None or p.used_mem_bytes != used:
            p = self._gpu_proc = schema.GpuProc(pid=self.pid, used_mem_bytes=used, user=self.user, name="python",
                                                cmdline=self.cmdline, start_ts=self.start,
                                                start_ticks=sim_ticks(self.start, self.boot_ts),
                                                uid=sim_uid(self.user), owner=self.gpu_owner)
        return p


class GpuState:
    __slots__ = ("static", "util", "mem", "temp", "power", "fan", "energy_mj", "job", "free_at", "ambient", "idle", "busy")

    def __init__(self, static: schema.Gpu, ambient: float, energy_mj: float) -> None:
        self.static = static
        self.util = 0.0
        self.mem = float(GPU_IDLE_MEM)
        self.ambient = ambient  # airflow differs per slot: the card above the other runs hotter
        self.temp = ambient + 2.0
        self.power = 11.0  # W
        self.fan = 23.0
        self.energy_mj = energy_mj
        self.job: Job | None = None
        self.free_at = 0.0  # idle until then (the scheduler looks again)
        self.idle: schema.Gpu | None = None  # the settled idle reading, reused until a job starts
        # what stays put under load (P2 for CUDA); the link trains to gen 3 under load, drops to gen 1 idle
        self.busy = replace(static, mem_clock_mhz=5505, pstate=2, pcie_gen=3, pcie_width=16)


@dataclass(slots=True)
class SlaveLink:
    name: str
    hwaddr: str
    down_until: float = 0.0
    failures: int = 0


@dataclass
class SimNode:
    host: str
    tower: bool
    index: int
    cores: int
    mem_total: int
    ip: str
    boot_ts: float
    gpus: list[GpuState] = field(default_factory=list)
    links: list[SlaveLink] = field(default_factory=list)
    osds: list[int] = field(default_factory=list)  # OSD ids whose disks live here
    system: schema.System = field(default_factory=schema.System)  # the static part
    daemons: list[schema.Proc] = field(default_factory=list)
    osd_procs: list[schema.Proc] = field(default_factory=list)
    pool_procs: list[schema.Proc] = field(default_factory=list)  # celery pool children (ARM)
    disks: list[schema.DiskIO] = field(default_factory=list)
    nics: list[schema.Nic] = field(default_factory=list)
    slaves: list[schema.BondSlave] = field(default_factory=list)
    bond: schema.Bond = field(default_factory=lambda: schema.Bond(name="bond0"))
    netmounts: list[schema.NetMount] | None = None
    agent: schema.AgentStats = field(default_factory=schema.AgentStats)
    collectors: dict[str, schema.CollectorStatus] = field(default_factory=dict)
    extra_collectors: tuple[str, ...] = ()  # cluster-scope collectors whose lease this node holds
    cpu: float = 3.0
    load1: float = 0.5
    load5: float = 0.5
    load15: float = 0.5
    mem_used: float = 0.0
    mem_base: int = 0
    rx: float = 0.0
    tx: float = 0.0
    seq: int = 0
    next_pid: int = 20000
    busy_slots: int = 0  # ARM: celery pool processes running a task
    pool_size: int = 4
    procs_total: int = 300
    role: str = "gpu"
    labels: dict[str, str] = field(default_factory=dict)
    swap_total: int = 8 * GIB
    swap_used: int = 64 * MIB
    links_up: int = 3
    link_change_at: float = 0.0  # when a downed bond slave comes back
    dr: float = 0.0  # disk read / write bytes/s, summed
    dw: float = 0.0
    # The parts of the last snapshot that are refreshed on full steps only.
    c_disks: list[schema.DiskIO] | None = None
    c_nics: list[schema.Nic] | None = None
    c_bonds: list[schema.Bond] | None = None
    c_procs: list[schema.Proc] | None = None
    c_collectors: dict[str, schema.CollectorStatus] | None = None
    c_agent: schema.AgentStats | None = None
    c_mounts: list[schema.NetMount] | None = None


def _uuid(rng: random.Random, prefix: str = "") -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{prefix}{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _mac(rng: random.Random) -> str:
    return "00:1b:21:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def build_tower(host: str, index: int, ngpus: int, osds: list[int], rng: random.Random,
                start: float) -> SimNode:
    model, cores, physical = rng.choice(TOWER_CPUS)
    mem_total = rng.choice((64, 96, 128)) * GIB
    node = SimNode(host=host, tower=True, index=index, cores=cores, mem_total=mem_total,
                   ip=f"10.10.{index // 250}.{10 + index % 250}",
                   boot_ts=start - rng.uniform(3, 60) * 86400, osds=osds)
    node.labels = {"rack": f"r{index // 10 + 1}", "site": "lab"}
    node.mem_base = int(rng.uniform(5, 9) * GIB) + len(osds) * int(3.3 * GIB)  # OSDs cache ~osd_memory_target
    node.mem_used = float(node.mem_base)
    node.procs_total = rng.randrange(340, 460)
    node.system = schema.System(
        hostname=host, os="Ubuntu 22.04.4 LTS", kernel="5.15.0-105-generic", arch="x86_64",
        cpu_model=model, cpu_count=cores, cpu_physical=physical, cpu_mhz=float(rng.choice((3600, 3700, 3400))),
        boot_ts=node.boot_ts,
        filesystems=[
            schema.Filesystem(mountpoint="/", device="/dev/nvme0n1p2", fstype="ext4", total_bytes=915 * GIB,
                              used_bytes=int(rng.uniform(180, 520) * GIB), avail_bytes=None,
                              inodes_total=61_054_976, inodes_used=rng.randrange(900_000, 2_400_000)),
            schema.Filesystem(mountpoint="/boot/efi", device="/dev/nvme0n1p1", fstype="vfat",
                              total_bytes=511 * MIB, used_bytes=6 * MIB),
        ],
    )
    for fs in node.system.filesystems or ():
        if fs.total_bytes is not None and fs.used_bytes is not None and fs.mountpoint == "/":
            fs.avail_bytes = int((fs.total_bytes - fs.used_bytes) * 0.95)  # ext4 keeps 5 % for root
    bus = ("00000000:01:00.0", "00000000:02:00.0", "00000000:41:00.0", "00000000:42:00.0",
           "00000000:81:00.0", "00000000:82:00.0", "00000000:C1:00.0", "00000000:C2:00.0")
    for i in range(ngpus):
        static = schema.Gpu(
            index=i, uuid=_uuid(rng, "GPU-"), name=GPU_NAME, bus_id=bus[i % len(bus)],
            mem_total_bytes=GPU_MEM_BYTES, temp_slowdown_c=93, power_limit_mw=GPU_LIMIT_MW,
            sm_clock_max_mhz=1911, ecc_corrected=None, ecc_uncorrected=None,  # GeForce: NotSupported
            cuda_cores=3584, arch="Pascal", driver=DRIVER, cuda_version="12.2",
            # GeForce: XIDs are watched (0 = none seen); retired pages and remapped rows NotSupported (None)
            pcie_gen_max=3, pcie_width_max=16, xid_errors=0,
        )
        ambient = rng.uniform(28, 31) + (3.5 if i % 2 else 0.0)
        if i % 2 and index % 5 == 2:
            ambient += 7.5  # one tower with poor airflow: its upper card runs near its slowdown point
        node.gpus.append(GpuState(static, ambient, rng.uniform(2e9, 9e10)))
    node.links = [SlaveLink(name, _mac(rng)) for name in BOND_SLAVES]
    node.slaves = [schema.BondSlave(name=link.name, mii_status="up", speed_mbps=SLAVE_MBPS, duplex="full",
                                    link_failures=0, perm_hwaddr=link.hwaddr, ok=True) for link in node.links]
    node.bond = schema.Bond(name="bond0", mode="balance-alb", mii_status="up", active_slave="eth0",
                            primary_slave=None, speed_mbps=SLAVE_MBPS * len(node.links), degraded=False,
                            problems=[], source="procfs+sysfs")
    node.nics = [schema.Nic(name=link.name, speed_mbps=SLAVE_MBPS, up=True, mtu=9000, kind="bond-slave",
                            rx_errors=0, tx_errors=0, rx_dropped=rng.randrange(0, 40), tx_dropped=0)
                 for link in node.links]
    node.nics.append(schema.Nic(name="bond0", speed_mbps=SLAVE_MBPS * len(node.links), up=True, mtu=9000,
                                kind="bond", rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0))
    node.disks = [schema.DiskIO(name="nvme0n1")] + [schema.DiskIO(name=d) for d in OSD_DISKS[:len(osds)]]
    node.netmounts = [
        schema.NetMount(mountpoint="/mnt/cephfs", fstype="ceph", source="10.10.0.10:6789,10.10.0.11:6789:/",
                        state="ok"),
        schema.NetMount(mountpoint="/home", fstype="nfs4", source="nas01:/export/home", state="ok",
                        total_bytes=16 * 1024 * GIB, used_bytes=int(rng.uniform(7, 11) * 1024 * GIB)),
    ]
    pid = rng.randrange(900, 1400)
    node.daemons = [
        _daemon(pid, "root", "kubelet", "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml",
                start, node.boot_ts, 3.5, 180 * MIB, 38, "kubelet.service"),
        _daemon(pid - 120, "root", "containerd", "/usr/bin/containerd", start, node.boot_ts, 1.2, 95 * MIB, 52,
                "containerd.service"),
        _daemon(pid + 4000 + index, "clustertop", "clustertop", "/usr/bin/python3 /usr/local/bin/clustertop agent", start, node.boot_ts, 0.8, 46 * MIB, 9,
                "clustertop-agent.service"),
        _daemon(pid + 3000, "dask", "dask", f"/opt/dask/bin/python -m distributed.cli.dask_worker tcp://{_first_host(host)}:8786", start, node.boot_ts, 2.0, int(1.8 * GIB), 12,
                "dask-worker.service"),
    ]
    node.osd_procs = [
        _daemon(pid + 200 + k, "ceph", "ceph-osd", f"/usr/bin/ceph-osd -f --cluster ceph --id {osd}", start, node.boot_ts, 3.0, int(rng.uniform(2.9, 3.7) * GIB), 61,
                f"ceph-osd@{osd}.service")
        for k, osd in enumerate(osds)
    ]
    node.next_pid = rng.randrange(100_000, 400_000)
    _finish(node, rng, start, ("host", "gpu", "bonds", "nfs", "sensors"))
    return node


def build_arm(host: str, index: int, broker_host: str, rng: random.Random, start: float) -> SimNode:
    model, cores, mem_gib, kernel = rng.choice(ARM_BOARDS)
    node = SimNode(host=host, tower=False, index=index, cores=cores, mem_total=mem_gib * GIB,
                   ip=f"10.10.{100 + index // 250}.{10 + index % 250}",
                   boot_ts=start - rng.uniform(1, 90) * 86400)
    node.pool_size = cores
    node.role, node.swap_total = "arm-worker", 1 * GIB
    node.labels = {"rack": f"r{index // 10 + 1}", "site": "lab"}
    node.mem_base = int(rng.uniform(0.7, 1.1) * GIB)
    node.mem_used = float(node.mem_base)
    node.procs_total = rng.randrange(150, 210)
    sd_gib = rng.choice((32, 64))
    node.system = schema.System(
        hostname=host, os="Debian GNU/Linux 12 (bookworm)", kernel=kernel, arch="aarch64", cpu_model=model,
        cpu_count=cores, cpu_physical=cores, cpu_mhz=float(rng.choice((1800, 2400, 2208))), boot_ts=node.boot_ts,
        filesystems=[
            schema.Filesystem(mountpoint="/", device="/dev/mmcblk0p2", fstype="ext4", total_bytes=(sd_gib - 1) * GIB,
                              used_bytes=int(rng.uniform(6, 14) * GIB), inodes_total=1_900_000,
                              inodes_used=rng.randrange(150_000, 260_000)),
            schema.Filesystem(mountpoint="/boot/firmware", device="/dev/mmcblk0p1", fstype="vfat",
                              total_bytes=510 * MIB, used_bytes=rng.randrange(60, 90) * MIB),
        ],
    )
    for fs in node.system.filesystems or ():
        if fs.mountpoint == "/" and fs.total_bytes and fs.used_bytes:
            fs.avail_bytes = int((fs.total_bytes - fs.used_bytes) * 0.95)
    node.nics = [schema.Nic(name="eth0", speed_mbps=1000, up=True, mtu=1500, kind="physical", rx_errors=0,
                            tx_errors=0, rx_dropped=rng.randrange(0, 12), tx_dropped=0)]
    node.disks = [schema.DiskIO(name="mmcblk0")]
    node.netmounts = [schema.NetMount(mountpoint="/home", fstype="nfs4", source="nas01:/export/home", state="ok",
                                      total_bytes=16 * 1024 * GIB, used_bytes=int(9.1 * 1024 * GIB))]
    worker = f"celery@{host}"
    owner = schema.Owner(kind="celery", name=worker)
    pid = rng.randrange(700, 1100)
    main_cmd = (f"/opt/pipeline/venv/bin/python /opt/pipeline/venv/bin/celery -A pipeline worker "
                f"-Q default,gridsearch,reports -c {cores} -n {worker}")
    node.daemons = [
        schema.Proc(pid=pid, user="celery", name="celery", cmdline=main_cmd, start_ts=node.boot_ts + 40,
                    start_ticks=sim_ticks(node.boot_ts + 40, node.boot_ts), uid=sim_uid("celery"),
                    cpu_pct=1.0, rss_bytes=int(rng.uniform(95, 130) * MIB), state="S", threads=7, owner=owner),
        _daemon(pid + 2000 + index, "clustertop", "clustertop", "/usr/bin/python3 /usr/local/bin/clustertop agent", start, node.boot_ts, 1.5, 41 * MIB, 9,
                "clustertop-agent.service"),
    ]
    if host == broker_host:
        node.daemons.append(_daemon(pid - 80, "redis", "redis-server", "/usr/bin/redis-server 0.0.0.0:6379",
                                    start, node.boot_ts, 2.5, 310 * MIB, 6, "redis-server.service"))
    node.pool_procs = [
        schema.Proc(pid=pid + 1 + k, user="celery", name="celery", cmdline=f"{main_cmd} [ForkPoolWorker-{k + 1}]",
                    start_ts=node.boot_ts + 41, start_ticks=sim_ticks(node.boot_ts + 41, node.boot_ts),
                    uid=sim_uid("celery"), cpu_pct=0.0, rss_bytes=int(rng.uniform(140, 260) * MIB),
                    state="S", threads=3, owner=owner)
        for k in range(cores)
    ]
    _finish(node, rng, start, ("host", "gpu", "bonds", "nfs", "sensors"))
    return node


def _first_host(host: str) -> str:
    digits = len(host) - len(host.rstrip("0123456789"))
    return "gpu" + "1".zfill(max(2, digits))


def _daemon(pid: int, user: str, name: str, cmdline: str, start: float, boot: float, cpu: float, rss: int,
            threads: int, unit: str) -> schema.Proc:
    return schema.Proc(pid=pid, user=user, name=name, cmdline=cmdline, start_ts=boot + 30 + pid % 50,
                       start_ticks=sim_ticks(boot + 30 + pid % 50, boot), uid=sim_uid(user),
                       cpu_pct=cpu, rss_bytes=rss, state="S", threads=threads,
                       owner=schema.Owner(kind="system", name=unit))


def _finish(node: SimNode, rng: random.Random, start: float, names: tuple[str, ...]) -> None:
    from clustertop import __version__

    pid = next(d.pid for d in node.daemons if d.name == "clustertop")
    node.agent = schema.AgentStats(version=__version__, pid=pid, started_ts=start - rng.uniform(600, 86400 * 3),
                                   read_only=False, publish_errors=0)
    node.collectors = {n: schema.CollectorStatus(ok=True) for n in names}


# ---------------------------------------------------------------------------------------------
# One step of one node
# ---------------------------------------------------------------------------------------------


NOISE = 97  # precomputed per-core jitter rows: slices in C instead of a random() per core
_hi = random.Random(0)
HI_ROWS: list[list[float]] = [[round(90 + 10 * _hi.random()) for _ in range(256)] for _ in range(NOISE)]
LO_ROWS: list[list[float]] = [[round(0.5 + 3.5 * _hi.random()) for _ in range(256)] for _ in range(NOISE)]
SW_POWER_CAP = ["sw_power_cap"]  # shared, read-only
GPU_IDLE = ["gpu_idle"]
NO_THROTTLE: list[str] = []  # shared, read-only


def step_node(node: SimNode, rng: random.Random, now: float, dt: float, k_temp: float, k_fast: float,
              k_load: tuple[float, float, float], interval_s: float, osd_rates: dict[int, tuple[float, float]],
              cluster_status: dict[str, schema.CollectorStatus],
              full: bool = True) -> tuple[schema.NodeSnapshot, schema.HistPoint]:
    """Advance ``node`` to ``now`` and build its snapshot and history point.

    ``k_*`` are the smoothing factors for this dt (1 - exp(-dt/tau)), computed once per step for all
    nodes; ``osd_rates`` maps OSD id to (read, write) bytes/s, from the Ceph model. With ``full``
    False the slow-moving parts (disks, NICs, bonds, processes, statuses) are reused from the last
    full step: big clusters refresh them every few ticks, GPUs, CPU and memory every tick.
    """
    rnd = rng.random
    node.seq += 1
    if node.link_change_at and now >= node.link_change_at:
        full = True  # a link came back: show it now, not at the next refresh
    gpus_out: list[schema.Gpu] = []
    job_cores = 0.0
    loading_rx = 0.0
    gu: list[int | None] | None = None
    gm: list[int | None] | None = None
    gp: list[int | None] | None = None
    gt: list[int | None] | None = None
    jobs: list[Job] = []
    if node.tower:
        gu, gm, gp, gt = [], [], [], []
        for g in node.gpus:
            job = g.job
            if job is None and g.idle is not None:
                # Settled idle card: nothing moves (keeps big clusters cheap).
                gpus_out.append(g.idle)  # GTX 1080 Ti: no energy counter (NotSupported): the agent integrates power
                gu.append(0)
                gm.append(GPU_IDLE_MEM)
                gp.append(g.idle.power_mw)
                gt.append(g.idle.temp_c)
                continue
            r = rnd()
            # Utilisation is a sampled counter: it jumps. Temperature and fan lag behind the load.
            if job is None:
                util_t = 0.0
                mem = GPU_IDLE_MEM
                power_t = 10.5 + 3 * r
            else:
                age = now - job.start
                if age < job.load_s:  # reading data, building the model: VRAM fills, SMs mostly wait
                    util_t = 8 + 30 * r
                    mem = GPU_IDLE_MEM + int(job.vram_bytes * age / job.load_s)
                    loading_rx += 6e7 + 8e7 * r
                elif age % 97.0 < 6.0:  # periodic eval / checkpoint: the GPU waits on I/O a moment
                    util_t = 30 + 25 * r
                    mem = GPU_IDLE_MEM + job.vram_bytes
                    loading_rx += 2e7 * r
                else:
                    util_t = 95 + 5 * r
                    mem = GPU_IDLE_MEM + job.vram_bytes
                    loading_rx += 1.5e7 + 3e7 * r
                power_t = 11.0 + 2.3 * util_t + 6 * ((r * 7.31) % 1.0)
                if power_t > 250.0:
                    power_t = 249.0 + r
                if job not in jobs:
                    jobs.append(job)
            g.power += (power_t - g.power) * k_fast
            g.temp += (g.ambient + 0.5 * util_t - g.temp) * k_temp
            temp = g.temp
            fan_t = 23.0 if temp < 45 else 23.0 + (temp - 45) * 1.45
            g.fan += (fan_t - g.fan) * k_fast
            power_mw = int(g.power * 1000)
            g.energy_mj += power_mw * dt
            temp_c = int(temp)
            util = int(util_t)
            if job is not None:
                # GPU Boost 3.0 sheds clock bins as the core warms.
                sm = 1911 - (temp_c - 80) * 13 if temp_c >= 84 else 1911 - (temp_c >> 3) * 13
                pcie = int(3e8 + 2.5e9 * ((r * 3.7) % 1.0)) if util < 40 else int(3e8 + 6e8 * r)
                gpus_out.append(replace(
                    g.busy, util_pct=util, mem_util_pct=util * 55 // 100, mem_used_bytes=mem, temp_c=temp_c,
                    power_mw=power_mw, fan_pct=int(g.fan), sm_clock_mhz=sm,
                    # A busy card below its cap reports no reasons ([]), as NVML does: not unknown.
                    throttle_reasons=SW_POWER_CAP if power_mw > 244000 else NO_THROTTLE,
                    pcie_rx_bytes_s=pcie, pcie_tx_bytes_s=pcie >> 4, procs=[job.gpu_proc(mem)]))
            else:
                out = replace(
                    g.static, util_pct=0, mem_util_pct=0, mem_used_bytes=mem, temp_c=temp_c, power_mw=power_mw,
                    fan_pct=int(g.fan), sm_clock_mhz=139, mem_clock_mhz=405, pcie_gen=1, pcie_width=16,
                    pstate=8, throttle_reasons=GPU_IDLE, pcie_rx_bytes_s=0, pcie_tx_bytes_s=0, procs=[])
                gpus_out.append(out)
                if temp - g.ambient < 0.5 and g.fan - 23.0 < 0.3 and g.power < 14.0:
                    g.idle = out
            gu.append(util)
            gm.append(mem)
            gp.append(power_mw)
            gt.append(temp_c)
        for job in jobs:
            job_cores += job.cpu_cores * (0.4 if now - job.start < job.load_s else 1.0)
    else:
        job_cores = node.busy_slots * 0.95

    # CPU, load and memory follow the jobs.
    cores = node.cores
    r = rnd()
    cpu_t = min(100.0, 2.0 + 3.0 * r + len(node.osds) * 0.6 + 100.0 * job_cores / cores)
    node.cpu += (cpu_t - node.cpu) * k_fast
    cpu_util = int(node.cpu * 10) / 10
    running = node.cpu * cores / 100.0 + r * 0.6
    node.load1 += (running - node.load1) * k_load[0]
    node.load5 += (running - node.load5) * k_load[1]
    node.load15 += (running - node.load15) * k_load[2]
    busy = int(cpu_util * cores / 100.0)
    row = node.seq % NOISE
    if busy >= cores:
        per_cpu = HI_ROWS[row][:cores]
    else:
        per_cpu = HI_ROWS[row][:busy] + [round((cpu_util * cores / 100.0 - busy) * 100)] + LO_ROWS[row][busy + 1:cores]
    mem_t = node.mem_base + sum(j.rss_bytes for j in jobs) + node.busy_slots * 180 * MIB
    node.mem_used += (mem_t - node.mem_used) * k_fast
    used = int(node.mem_used)
    total = node.mem_total
    memory = schema.Memory(total_bytes=total, used_bytes=used, available_bytes=total - used,
                        cached_bytes=int((total - used) * 0.55), swap_total_bytes=node.swap_total,
                        swap_used_bytes=node.swap_used)
    cpu = schema.CpuTimes(util_pct=cpu_util, per_cpu_pct=per_cpu, user_pct=int(cpu_util * 8.6) / 10,
                          system_pct=int(cpu_util * 1.1) / 10, iowait_pct=int(3 + 15 * r) / 10, steal_pct=0.0)

    # Network follows the jobs every tick (smoothed); the structs that show it only on full steps.
    if node.tower:
        cap = SLAVE_MAX_BYTES_S * max(1, node.links_up)
        rx_t = min(cap * 0.95, loading_rx + node.dw * 0.7 + 2e5 + 1e6 * r)
        tx_t = min(cap * 0.95, node.dr * 0.9 + node.dw * 0.5 + 1e5 + 5e5 * r)
    else:
        rx_t = 2e4 + node.busy_slots * (4e5 + 1.5e6 * r)
        tx_t = 1e4 + node.busy_slots * (1e5 + 4e5 * r)
    node.rx += (rx_t - node.rx) * k_fast
    node.tx += (tx_t - node.tx) * k_fast
    if full or node.c_procs is None:
        _refresh(node, rng, now, jobs, osd_rates, interval_s, cluster_status)
    system = replace(node.system, uptime_s=int(now - node.boot_ts), load1=int(node.load1 * 100) / 100,
                     load5=int(node.load5 * 100) / 100, load15=int(node.load15 * 100) / 100, cpu=cpu, mem=memory, disks=node.c_disks,
                     nics=node.c_nics, procs=node.c_procs, procs_total=node.procs_total + len(jobs) * 9)
    snap = schema.NodeSnapshot(host=node.host, ts=now, seq=node.seq, interval_s=interval_s, role=node.role,
                               labels=node.labels, collectors=node.c_collectors or {}, agent=node.c_agent, system=system,
                               gpus=gpus_out, bonds=node.c_bonds, netmounts=node.c_mounts, tasks=None,
                               sensors=sim_sensors(node, cpu_util, r))
    hist = schema.HistPoint(ts=now, cpu=cpu_util, mem=used, gu=gu, gm=gm, gp=gp, gt=gt, rx=int(node.rx),
                            tx=int(node.tx), dr=int(node.dr), dw=int(node.dw))
    return snap, hist


def _refresh(node: SimNode, rng: random.Random, now: float, jobs: list[Job],
             osd_rates: dict[int, tuple[float, float]], interval_s: float,
             cluster_status: dict[str, schema.CollectorStatus]) -> None:
    """Rebuild the slower-moving parts of a node's snapshot: disks, NICs, bonds, processes, statuses."""
    rnd = rng.random
    disks: list[schema.DiskIO] = []
    if node.tower:
        sysr = 2e5 + 4e6 * rnd()
        sysw = 1e6 + 6e6 * rnd()
        disks.append(_disk(node.disks[0], sysr, sysw, rnd))
        dr, dw = sysr, sysw
        for d_static, osd in zip(node.disks[1:], node.osds, strict=False):
            r, w = osd_rates.get(osd, (0.0, 0.0))
            disks.append(_disk(d_static, r, w, rnd))
            dr += r
            dw += w
        working = [link for link in node.links if link.down_until <= now]
        node.links_up = len(working)
        downs = [link.down_until for link in node.links if link.down_until > now]
        node.link_change_at = min(downs) if downs else 0.0
        node.c_nics, node.c_bonds = _bond_step(node, now, working)
    else:
        dr = 5e3 + 2e5 * rnd() * (1 + node.busy_slots)
        dw = 2e4 + 6e5 * rnd() * (1 + node.busy_slots)
        disks.append(_disk(node.disks[0], dr, dw, rnd))
        node.c_nics = [replace(node.nics[0], rx_bytes_s=round(node.rx), tx_bytes_s=round(node.tx),
                               rx_packets_s=round(node.rx / 1200), tx_packets_s=round(node.tx / 900))]
        node.c_bonds = []
    node.dr, node.dw = dr, dw
    node.c_disks = disks
    job_procs = [schema.Proc(
        pid=job.pid, user=job.user, name="python", cmdline=job.cmdline, start_ts=job.start,
        start_ticks=sim_ticks(job.start, node.boot_ts), uid=sim_uid(job.user),
        cpu_pct=round(job.cpu_cores * (40 if now - job.start < job.load_s else 100) * (0.85 + 0.3 * rnd()), 1),
        rss_bytes=job.rss_bytes, state="R", threads=24 + len(job.gpus) * 16, owner=job.owner) for job in jobs]
    node.c_procs = _procs(node, job_procs, osd_rates, rnd)
    node.c_collectors = _statuses(node, now, interval_s, rnd, cluster_status)
    node.c_agent = replace(node.agent, cpu_pct=round(0.4 + 0.9 * rnd(), 2), cpu_ms_per_tick=round(4 + 9 * rnd(), 2),
                           rss_bytes=44 * MIB + node.seq % 97 * 4096, tick_ms=round(6 + 14 * rnd(), 2))
    node.c_mounts = _mounts(node, rnd)


def _disk(static: schema.DiskIO, r: float, w: float, rnd) -> schema.DiskIO:  # type: ignore[no-untyped-def]
    # SSD at ~64 KiB average request: IOPS from bytes; utilisation saturates near 450 MB/s.
    riops = r / 65536.0
    wiops = w / 65536.0
    util = min(100.0, (r + w) / 4.5e6)
    return replace(static, read_bytes_s=round(r), write_bytes_s=round(w), read_iops=round(riops),
                   write_iops=round(wiops), util_pct=round(util, 1), await_ms=round(0.25 + 1.8 * rnd(), 2),
                   queue_depth=round(util / 40.0, 2), in_flight=int(util / 30.0))


def _bond_step(node: SimNode, now: float, working: list[SlaveLink]) -> tuple[list[schema.Nic], list[schema.Bond]]:
    """balance-alb spreads both directions over the working slaves (ARP negotiation for rx)."""
    n = len(working)
    rx = node.rx / n if n else 0.0
    tx = node.tx / n if n else 0.0
    nics: list[schema.Nic] = []
    slaves: list[schema.BondSlave] = []
    problems: list[str] = []
    active = None
    for link, nic_static, slave_static in zip(node.links, node.nics, node.slaves, strict=False):
        up = link.down_until <= now
        if up:
            active = active or link.name
            slaves.append(replace(slave_static, link_failures=link.failures, rx_bytes_s=round(rx),
                                  tx_bytes_s=round(tx)))
            nics.append(replace(nic_static, rx_bytes_s=round(rx), tx_bytes_s=round(tx),
                                rx_packets_s=round(rx / 8000), tx_packets_s=round(tx / 8000)))
        else:
            # A lost link reads "Speed: Unknown" / "Duplex: Unknown" in /proc/net/bonding.
            slaves.append(replace(slave_static, mii_status="down", speed_mbps=None, duplex=None,
                                  link_failures=link.failures, rx_bytes_s=0.0, tx_bytes_s=0.0, ok=False,
                                  problem="MII down"))
            nics.append(replace(nic_static, up=False, speed_mbps=None, rx_bytes_s=0.0, tx_bytes_s=0.0,
                                rx_packets_s=0.0, tx_packets_s=0.0))
            problems.append(f"{link.name}: MII down")
    bond = replace(node.bond, mii_status="up" if n else "down", active_slave=active, speed_mbps=SLAVE_MBPS * n,
                   slaves=slaves, degraded=bool(problems), problems=problems)
    nics.append(replace(node.nics[-1], up=bool(n), speed_mbps=SLAVE_MBPS * n if n else None,
                        rx_bytes_s=round(node.rx), tx_bytes_s=round(node.tx),
                        rx_packets_s=round(node.rx / 8000), tx_packets_s=round(node.tx / 8000)))
    return nics, [bond]


def _procs(node: SimNode, job_procs: list[schema.Proc], osd_rates: dict[int, tuple[float, float]],
           rnd) -> list[schema.Proc]:  # type: ignore[no-untyped-def]
    """The node's top processes, bounded like the host collector's list (busiest first)."""
    out = list(job_procs)
    for p, osd in zip(node.osd_procs, node.osds, strict=False):
        rates = osd_rates.get(osd)
        if rates is None:  # a down OSD: its daemon crashed and systemd is restarting it
            continue
        # BlueStore spends roughly a core per 250 MB/s of writes on these SSDs.
        out.append(replace(p, cpu_pct=round(1.0 + rates[1] / 2.5e6 + rates[0] / 8e6 + 2 * rnd(), 1)))
    if node.tower:
        out.extend(node.daemons)
    else:
        out.append(replace(node.daemons[0], cpu_pct=round(0.5 + 1.5 * rnd(), 1)))
        for k, p in enumerate(node.pool_procs):
            if k < node.busy_slots:
                out.append(replace(p, cpu_pct=round(88 + 11 * rnd(), 1), state="R",
                                   rss_bytes=(p.rss_bytes or 0) + 160 * MIB))
        out.extend(node.daemons[1:])
    return out[:MAX_PROCS]


def _mounts(node: SimNode, rnd) -> list[schema.NetMount] | None:  # type: ignore[no-untyped-def]
    if node.netmounts is None:
        return None
    return [replace(m, latency_ms=round(0.4 + (2.5 if m.fstype == "ceph" else 1.2) * rnd(), 2))
            for m in node.netmounts]


def _statuses(node: SimNode, now: float, interval_s: float, rnd,  # type: ignore[no-untyped-def]
              cluster_status: dict[str, schema.CollectorStatus]) -> dict[str, schema.CollectorStatus]:
    arm = not node.tower
    ngpu = len(node.gpus)
    # ARM boards are slower at walking /proc; NVML costs a few ms per device.
    durations = {
        "host": (9.0 if arm else 3.0) + (8.0 if arm else 4.0) * rnd(),
        "gpu": 0.05 + 0.05 * rnd() if ngpu == 0 else 2.0 + ngpu * (1.5 + rnd()),
        "bonds": 0.2 + 0.6 * rnd(),
        "nfs": 0.4 + 2.2 * rnd(),
        "sensors": 1.9 if arm else 0.9,  # no draw of its own: the seeded cluster stays the one the snapshots show
    }
    out = {name: replace(st, duration_ms=round(durations.get(name, 1.0), 2), last_ok_ts=now, interval_s=interval_s)
           for name, st in node.collectors.items()}
    for name in node.extra_collectors:
        st = cluster_status.get(name)
        if st is not None:
            out[name] = st
    return out


def sim_sensors(node: SimNode, cpu_util: float, r: float) -> schema.Sensors:
    """What the sensors collector reads on these machines (shapes: tests/fixtures/sensors): a tower's
    coretemp (Intel) or k10temp (AMD, which states no limits) package sensor; an ARM board's SoC thermal
    zone with its passive trip, and a cpufreq cooling device that steps in past it."""
    s = node.system
    model = s.cpu_model or "" if s is not None else ""
    mhz = s.cpu_mhz if s is not None else None
    if node.tower:
        temp = round(36.0 + 0.42 * cpu_util + 2.0 * r, 1)
        if "Intel" in model:
            t = schema.TempSensor(source="hwmon", chip="coretemp", label="Package id 0", temp_c=temp, high_c=80.0,
                                  crit_c=100.0, cpu=True, device="hwmon1")
            return schema.Sensors(cpu_temp_c=temp, cpu_high_c=80.0, cpu_crit_c=100.0, temps=[t], freq_mhz=mhz,
                                  freq_max_mhz=mhz, throttle_count=0, throttle_new=0, cooling=0, throttled=False)
        t = schema.TempSensor(source="hwmon", chip="k10temp", label="Tctl", temp_c=temp, cpu=True, device="hwmon2")
        return schema.Sensors(cpu_temp_c=temp, temps=[t], freq_mhz=mhz, freq_max_mhz=mhz)
    rk = "ROCK 5B" in model
    # A heatsinked board under a full pool runs warm, short of its passive trip (75 / 80 °C): the demo
    # shows the figures, not a wall of alerts; tests/fixtures/sensors/arm-board is the throttled case.
    temp = round(41.0 + 0.30 * cpu_util + 1.5 * r, 1)
    high, crit = (75.0, 115.0) if rk else (80.0, 110.0)
    held = temp >= high
    zone = schema.TempSensor(source="thermal", chip="bigcore0-thermal" if rk else "cpu-thermal", temp_c=temp,
                             high_c=high, crit_c=crit, cpu=True, device="thermal_zone1" if rk else "thermal_zone0")
    freq = mhz * (0.75 if held else 1.0) if mhz is not None else None
    return schema.Sensors(cpu_temp_c=temp, cpu_high_c=high, cpu_crit_c=crit, temps=[zone], freq_mhz=freq,
                          freq_max_mhz=mhz, cooling=1 if held else 0, throttled=held)


def smoothing(dt: float, tau: float) -> float:
    return 1.0 - math.exp(-dt / tau) if dt > 0 else 0.0
