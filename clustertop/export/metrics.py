"""Provides the metric families and ``render``: one read of the cluster (``read.model.ClusterState``) as Prometheus samples.

Names follow what dashboards already use where the meaning is the same: node_exporter's for host
figures (``node_memory_MemAvailable_bytes``, ``node_load1``, ``node_filesystem_avail_bytes``,
``node_bonding_active`` …) and dcgm-exporter's for GPUs (``DCGM_FI_DEV_GPU_UTIL`` in %,
``DCGM_FI_DEV_FB_USED`` in MiB, ``DCGM_FI_DEV_POWER_USAGE`` in W, labels ``gpu``, ``UUID``,
``modelName``, ``Hostname``); everything else is ``clustertop_…`` in base units (bytes, seconds, ratios
0–1, ``_per_second`` for rates) with snake_case labels (a GPU: ``gpu``, ``uuid``, ``model``), so
``promtool check metrics`` has nothing to say but about the borrowed spellings. Every series carries
``node`` (the agent's host; in the Kubernetes families, the Kubernetes node name), so host and GPU
series join on it (``on(node, gpu)`` between DCGM and clustertop GPU families).

Honesty rules, the dashboard's own:
- Only nodes that are **up** have figures. ``clustertop_node_up`` is 1 for an up node and 0 for a stale,
  down or bad one, and ``clustertop_node_state{state}`` says which (one series per state, the current one
  1): a stale node's last values are not repeated as if current, they are absent, so Prometheus marks
  them stale at once and a panel shows a gap, not a flat line.
- A lost GPU has ``clustertop_gpu_lost 1`` and no other figures (its last readings are cached ones).
- Unknown (None) is no sample, never 0; a rate stays a ``…_per_second`` gauge (the agents send rates,
  not counters, and a counter made up from rates would lie about resets). Counters are exported only
  where the node sends a real cumulative count (NIC errors, ECC errors, GPU energy, link failures).
- Cluster sources (Ceph, Celery, Dask, Kubernetes) count only while their payload is fresh: ok, decodable
  and younger than ``STALE_INTERVALS`` of its interval (the storage screen's rule); otherwise
  ``clustertop_source_up{source} 0`` and their series, and the totals made from them, are absent.

The cluster totals are ``read.cluster.summarize``'s, exactly what ``clustertop snapshot --json`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable

from clustertop.export.exposition import Exposition, Family, label_value, labels
from clustertop.read.cluster import alerts
from clustertop.read.energy import Windows
from clustertop.read.ledger import Ledger
from clustertop.read.model import ClusterState, NodeView, view_digest
from clustertop.wire import schema

MIB = 1024 * 1024
#: A cluster payload older than this many of its intervals counts as stale (dashboard/screens/storage.py).
STALE_INTERVALS = 3
NODE_STATES = ("up", "stale", "down", "bad")
MOUNT_STATES = ("ok", "slow", "hung", "unknown")
CEPH_HEALTH = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}
SEVERITIES = ("info", "warning", "critical")
TASK_STATES = ("running", "exited", "killed", "failed")
#: Per node, at most this many of its free-form labels become ``label_*`` labels; per GPU, owners.
MAX_NODE_LABELS = 32
MAX_GPU_OWNERS = 16

NE, DCGM = "node_exporter", "dcgm-exporter"


def _g(name: str, help: str, borrowed: str | None = None) -> Family:
    return Family(name, "gauge", help, borrowed)


def _c(name: str, help: str, borrowed: str | None = None) -> Family:
    return Family(name, "counter", help, borrowed)


NODE_FAMILIES = [
    _g("clustertop_node_up", "1 if the node's data is fresh (its key has not expired); 0 if stale, down or bad."),
    _g("clustertop_node_state", "The node's state as the dashboard shows it: 1 for the current state "
       "(up: fresh; stale: no report for up to 60 s; down: longer; bad: unusable data), 0 for the others."),
    _g("clustertop_node_report_age_seconds", "Seconds since the node's last report, as the dashboard shows it."),
    _g("clustertop_node_detail_age_seconds", "Age of the full snapshot the node's detail series come from (GPU "
       "clocks, PCIe, energy, driver; per-process VRAM; containers; sensor list): 0 when it is of the node's "
       "latest report; up to the agents' full_every (15 s) otherwise, unless the exporter runs with "
       "--fresh-detail. Every other figure is the latest report's."),
    _g("clustertop_node_info", "The node's role, agent version and system (value 1)."),
    _g("clustertop_node_labels", "The node's labels from its agent config, as label_<name> (value 1)."),
    _g("node_time_seconds", "The node's clock at its last report, seconds since the epoch.", NE),
    _g("node_boot_time_seconds", "Node boot time, seconds since the epoch.", NE),
    _g("clustertop_node_cpus", "Logical CPUs."),
    _g("clustertop_node_cpu_utilization_ratio", "CPU busy, all cores, 0-1, over the agent's last interval."),
    _g("clustertop_node_cpu_mode_ratio", "CPU time by mode (user, system, iowait, steal), 0-1, all cores."),
    _g("node_load1", "1m load average.", NE),
    _g("node_load5", "5m load average.", NE),
    _g("node_load15", "15m load average.", NE),
    _g("node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes.", NE),
    _g("node_memory_MemAvailable_bytes", "Memory information field MemAvailable_bytes.", NE),
    _g("node_memory_Cached_bytes", "Memory information field Cached_bytes.", NE),
    _g("node_memory_SwapTotal_bytes", "Memory information field SwapTotal_bytes.", NE),
    _g("node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes (SwapTotal less swap used).", NE),
    _g("clustertop_node_memory_used_bytes", "Memory in use: total less available (the dashboard's figure)."),
    _g("clustertop_disk_read_bytes_per_second", "Bytes read per second over the agent's last interval."),
    _g("clustertop_disk_written_bytes_per_second", "Bytes written per second over the agent's last interval."),
    _g("clustertop_disk_reads_completed_per_second", "Reads completed per second."),
    _g("clustertop_disk_writes_completed_per_second", "Writes completed per second."),
    _g("clustertop_disk_io_utilization_ratio", "Share of time the device had I/O in flight, 0-1."),
    _g("clustertop_disk_await_seconds", "Average time per completed request."),
    _g("clustertop_disk_queue_depth", "Average requests in flight over the interval."),
    _g("node_disk_io_now", "The number of I/Os currently in progress.", NE),
    _g("node_filesystem_size_bytes", "Filesystem size in bytes.", NE),
    _g("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", NE),
    _g("clustertop_filesystem_used_bytes", "Filesystem space used in bytes."),
    _g("node_filesystem_files", "Filesystem total file nodes.", NE),
    _g("node_filesystem_files_free", "Filesystem total free file nodes.", NE),
    _g("clustertop_network_receive_bytes_per_second", "Bytes received per second over the agent's last interval."),
    _g("clustertop_network_transmit_bytes_per_second", "Bytes sent per second over the agent's last interval."),
    _g("clustertop_network_receive_packets_per_second", "Packets received per second."),
    _g("clustertop_network_transmit_packets_per_second", "Packets sent per second."),
    _c("node_network_receive_errs_total", "Network device statistic receive_errs.", NE),
    _c("node_network_transmit_errs_total", "Network device statistic transmit_errs.", NE),
    _c("node_network_receive_drop_total", "Network device statistic receive_drop.", NE),
    _c("node_network_transmit_drop_total", "Network device statistic transmit_drop.", NE),
    _g("node_network_speed_bytes", "Link speed in bytes per second.", NE),
    _g("node_network_up", "1 if the link's operstate is up, 0 otherwise.", NE),
    _g("node_network_mtu_bytes", "MTU in bytes.", NE),
    _g("clustertop_network_info", "The NIC's kind: physical, bond, bond-slave, virtual, loopback (value 1)."),
    _g("node_bonding_slaves", "Number of configured slaves per bonding interface.", NE),
    _g("node_bonding_active", "Number of active slaves (MII status up) per bonding interface.", NE),
    _g("clustertop_bond_degraded", "1 if the bond is degraded (a slave not carrying traffic), else 0."),
    _g("clustertop_bond_info", "The bond's mode (value 1)."),
    _g("clustertop_bond_slave_up", "1 if the slave's MII status is up, else 0."),
    _g("clustertop_bond_slave_ok", "1 if the slave carries traffic (LACP collecting and distributing where it applies)."),
    _c("clustertop_bond_slave_link_failures_total", "Link failures of the slave since the bond came up."),
    _g("clustertop_bond_slave_receive_bytes_per_second", "Bytes received per second on the slave."),
    _g("clustertop_bond_slave_transmit_bytes_per_second", "Bytes sent per second on the slave."),
    _g("clustertop_mount_state", "The network mount's probe: 1 for the current state (ok, slow, hung, unknown)."),
    _g("clustertop_mount_latency_seconds", "The network mount's last probe time."),
    _g("clustertop_mount_size_bytes", "The network mount's size in bytes."),
    _g("clustertop_mount_used_bytes", "The network mount's space used in bytes."),
    _g("clustertop_collector_up", "1 if the collector's last run succeeded, else 0."),
    _g("clustertop_collector_duration_seconds", "The collector's last run time."),
    _g("clustertop_collector_last_success_timestamp_seconds", "When the collector last succeeded (node clock)."),
    _c("clustertop_collector_skipped_total", "Runs skipped because the previous one had not finished."),
    _g("clustertop_agent_cpu_ratio", "The agent's CPU use over its last tick, as a share of one core."),
    _g("clustertop_agent_resident_memory_bytes", "The agent's resident memory."),
    _g("clustertop_agent_tick_seconds", "Wall time the agent spent building and publishing its last snapshot."),
    _g("clustertop_agent_start_time_seconds", "When the agent started, seconds since the epoch (node clock)."),
    _c("clustertop_agent_publish_errors_total", "Publishes that failed since the agent started."),
    _g("clustertop_node_tasks", "Tasks this node's agent launched, by state."),
    _g("clustertop_node_alerts", "The node's own alerts (its digest's), by severity."),
    _g("node_hwmon_temp_celsius", "Hardware monitor for temperature (input).", NE),
    _g("node_thermal_zone_temp", "Zone temperature in Celsius.", NE),
    _g("clustertop_node_cpu_temperature_celsius", "The hottest CPU/SoC sensor."),
    _g("clustertop_node_cpu_thermal_throttled", "1 if the CPU/SoC is thermally throttled now (x86 counters rose, or a "
       "CPU-frequency cooling device is active), else 0."),
    _c("clustertop_node_cpu_thermal_throttles_total", "x86 thermal throttle events since boot, once per core and package."),
]

GPU_FAMILIES = [
    _g("clustertop_gpu_lost", "1 if the GPU fell off the bus (its other figures are then absent), else 0."),
    _g("clustertop_gpu_info", "The GPU's driver, architecture and PCI bus id (value 1)."),
    _g("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", DCGM),
    _g("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", DCGM),
    _g("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", DCGM),
    _g("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB): total less used.", DCGM),
    _g("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", DCGM),
    _g("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", DCGM),
    _g("DCGM_FI_DEV_SLOWDOWN_TEMP", "Temperature at which the GPU slows down (in C).", DCGM),
    _g("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", DCGM),
    _g("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", DCGM),
    _c("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since the driver loaded (in mJ).", DCGM),
    _g("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", DCGM),
    _g("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", DCGM),
    _g("DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %).", DCGM),
    _c("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", DCGM),
    _c("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", DCGM),
    _g("clustertop_gpu_performance_state", "The GPU's P-state (0: maximum performance .. 15)."),
    _g("clustertop_gpu_pcie_receive_bytes_per_second", "PCIe bytes received per second."),
    _g("clustertop_gpu_pcie_transmit_bytes_per_second", "PCIe bytes sent per second."),
    _g("clustertop_gpu_throttle_reasons", "Active clock throttle reasons (0: none)."),
    _g("clustertop_gpu_throttle_reason", "An active clock throttle reason (value 1)."),
    _g("clustertop_gpu_processes", "Processes on the GPU."),
    _g("clustertop_gpu_owner", "Whose work runs on the GPU: a pod, container, Celery worker or user (value 1)."),
    _g("clustertop_gpu_cuda_cores", "CUDA cores."),
    _g("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered (since the agent started).", DCGM),
    _c("clustertop_gpu_xid_errors_total", "XID errors the agent has seen on the GPU since it started."),
    _g("DCGM_FI_DEV_PCIE_LINK_GEN", "PCIe current link generation.", DCGM),
    _g("DCGM_FI_DEV_PCIE_LINK_WIDTH", "PCIe current link width.", DCGM),
    _g("clustertop_gpu_retired_pages", "Retired framebuffer pages, both causes (up to Turing)."),
    _g("clustertop_gpu_remapped_rows", "Remapped memory rows, correctable and uncorrectable (Ampere on)."),
    _g("DCGM_FI_DEV_ROW_REMAP_PENDING", "Whether a row remap waits for a GPU reset (1) or not (0).", DCGM),
    _g("DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether a row remap failed (1) or not (0).", DCGM),
]

CLUSTER_FAMILIES = [
    _g("clustertop_cluster_nodes", "Nodes by state (up, stale, down, bad)."),
    _g("clustertop_cluster_reporting_nodes", "Up nodes a cluster figure is made of (cpu, memory, gpu)."),
    _g("clustertop_cluster_cpu_cores", "Logical CPUs of the up nodes."),
    _g("clustertop_cluster_cpu_utilization_ratio", "CPU busy over the up nodes, core-weighted, 0-1."),
    _g("clustertop_cluster_load1", "Sum of the up nodes' 1m load averages."),
    _g("clustertop_cluster_memory_total_bytes", "Memory of the up nodes."),
    _g("clustertop_cluster_memory_used_bytes", "Memory in use on the up nodes."),
    _g("clustertop_cluster_gpus", "GPUs of the up nodes, lost ones included."),
    _g("clustertop_cluster_gpus_busy", "Live GPUs at or above the busy threshold (10 % utilization)."),
    _g("clustertop_cluster_gpus_lost", "GPUs that fell off the bus."),
    _g("clustertop_cluster_gpu_utilization_ratio", "Mean utilization of the live GPUs that report it, 0-1."),
    _g("clustertop_cluster_gpu_memory_total_bytes", "VRAM of the live GPUs."),
    _g("clustertop_cluster_gpu_memory_used_bytes", "VRAM in use on the live GPUs."),
    _g("clustertop_cluster_gpu_power_watts", "Board power of the live GPUs."),
    _g("clustertop_cluster_gpu_power_limit_watts", "Power limits of the live GPUs."),
    _g("clustertop_cluster_gpu_cuda_cores", "CUDA cores of the live GPUs."),
    _g("clustertop_cluster_gpu_processes", "Processes on the live GPUs."),
    _g("clustertop_cluster_gpu_models", "Live GPUs by model."),
    _g("clustertop_cluster_network_receive_bytes_per_second", "Bytes received per second by the up nodes' own NICs."),
    _g("clustertop_cluster_network_transmit_bytes_per_second", "Bytes sent per second by the up nodes' own NICs."),
    _g("clustertop_cluster_bonds", "Bonds on the up nodes."),
    _g("clustertop_cluster_bonds_degraded", "Degraded bonds on the up nodes."),
    _g("clustertop_cluster_tasks_queued", "Tasks waiting in the Celery and Dask queues."),
    _g("clustertop_cluster_workers_online", "Celery and Dask workers online."),
    _g("clustertop_cluster_pods_running", "Kubernetes pods running."),
    _g("clustertop_cluster_gpus_allocated", "GPUs requested by bound Running and Pending pods."),
    _g("clustertop_cluster_alerts", "The dashboard's alerts, by severity."),
]

SOURCE_FAMILIES = [
    _g("clustertop_source_up", "1 if the cluster source's payload is ok and fresh, else 0 (its series are then absent)."),
    _g("clustertop_source_age_seconds", "Age of the cluster source's payload (its publisher's clock)."),
    _g("clustertop_ceph_health_status", "Ceph health: 0 HEALTH_OK, 1 HEALTH_WARN, 2 HEALTH_ERR."),
    _g("clustertop_ceph_health_check", "An active, unmuted Ceph health check (value 1)."),
    _g("clustertop_ceph_monitors", "Ceph monitors."),
    _g("clustertop_ceph_monitors_quorum", "Ceph monitors in quorum."),
    _g("clustertop_ceph_osds", "Ceph OSDs: all, up, in."),
    _g("clustertop_ceph_pgs", "Ceph placement groups."),
    _g("clustertop_ceph_pg_states", "Ceph placement groups by state."),
    _g("clustertop_ceph_objects", "Ceph objects: all, degraded, misplaced, unfound."),
    _g("clustertop_ceph_size_bytes", "Ceph raw capacity."),
    _g("clustertop_ceph_used_bytes", "Ceph raw capacity used."),
    _g("clustertop_ceph_avail_bytes", "Ceph raw capacity available."),
    _g("clustertop_ceph_read_bytes_per_second", "Ceph client reads, bytes per second."),
    _g("clustertop_ceph_write_bytes_per_second", "Ceph client writes, bytes per second."),
    _g("clustertop_ceph_read_ops_per_second", "Ceph client read operations per second."),
    _g("clustertop_ceph_write_ops_per_second", "Ceph client write operations per second."),
    _g("clustertop_ceph_recovering_bytes_per_second", "Ceph recovery, bytes per second."),
    _g("clustertop_ceph_osd_up", "1 if the OSD is up, else 0."),
    _g("clustertop_ceph_osd_in", "1 if the OSD is in, else 0."),
    _g("clustertop_ceph_osd_size_bytes", "The OSD's capacity."),
    _g("clustertop_ceph_osd_used_bytes", "The OSD's capacity used."),
    _g("clustertop_ceph_osd_pgs", "Placement groups on the OSD."),
    _g("clustertop_ceph_osd_commit_latency_seconds", "The OSD's commit latency."),
    _g("clustertop_ceph_osd_apply_latency_seconds", "The OSD's apply latency."),
    _g("clustertop_ceph_pool_stored_bytes", "Data stored in the pool (before replication)."),
    _g("clustertop_ceph_pool_used_bytes", "Raw space the pool uses."),
    _g("clustertop_ceph_pool_avail_bytes", "Space the pool can still take."),
    _g("clustertop_ceph_pool_objects", "Objects in the pool."),
    _g("clustertop_ceph_pool_read_bytes_per_second", "Pool reads, bytes per second."),
    _g("clustertop_ceph_pool_write_bytes_per_second", "Pool writes, bytes per second."),
    _g("clustertop_queue_depth", "Messages in the queue."),
    _g("clustertop_queue_ready", "Messages ready for delivery."),
    _g("clustertop_queue_unacked", "Messages delivered, not acknowledged."),
    _g("clustertop_queue_consumers", "Consumers of the queue."),
    _g("clustertop_queue_publish_per_second", "Messages published per second."),
    _g("clustertop_queue_deliver_per_second", "Messages delivered per second."),
    _g("clustertop_queue_growing_unconsumed", "1 if the queue grows with no consumer, else 0."),
    _g("clustertop_worker_online", "1 if the Celery or Dask worker answers, else 0."),
    _g("clustertop_worker_pool_size", "The worker's pool size."),
    _g("clustertop_worker_active_tasks", "Tasks the worker runs."),
    _g("clustertop_worker_processing_tasks", "Tasks the Dask worker processes."),
    _g("clustertop_worker_threads", "The worker's threads."),
    _g("clustertop_worker_memory_bytes", "The worker's memory."),
    _g("clustertop_worker_memory_limit_bytes", "The worker's memory limit."),
    _g("clustertop_dask_tasks", "Dask tasks by state (processing, waiting)."),
    _g("clustertop_kubernetes_node_ready", "1 if the Kubernetes node is Ready, else 0."),
    _g("clustertop_kubernetes_node_unschedulable", "1 if the Kubernetes node is cordoned, else 0."),
    _g("clustertop_kubernetes_node_gpu_capacity", "The node's nvidia.com/gpu capacity."),
    _g("clustertop_kubernetes_node_gpu_allocatable", "The node's nvidia.com/gpu allocatable."),
    _g("clustertop_kubernetes_node_gpu_allocated", "nvidia.com/gpu requested by pods bound to the node."),
    _g("clustertop_kubernetes_node_cpu_allocatable_cores", "The node's allocatable CPU, in cores."),
    _g("clustertop_kubernetes_node_memory_allocatable_bytes", "The node's allocatable memory."),
    _g("clustertop_kubernetes_pods", "Pods by phase (of those listed)."),
    _g("clustertop_kubernetes_pods_seen", "Pods the collector saw (more than listed when the list was cut)."),
    _g("clustertop_kubernetes_pod_gpus_requested", "nvidia.com/gpu requested by a bound, not terminated pod."),
    _g("clustertop_gpu_ledger_flag_seconds", "How long a GPU ledger flag has held: idle-allocated (a pod holds "
       "GPUs it leaves idle) or unowned-busy (a busy GPU no pod owns)."),
    _g("clustertop_gpu_ledger_idle_allocated_gpus", "GPUs held by pods flagged idle-allocated, per Kubernetes node."),
    _g("clustertop_gpu_ledger_unowned_busy_gpus", "GPUs flagged unowned-busy, per Kubernetes node."),
]

#: The exporter's own figures, written per response after the data (not cached with it).
EXPORTER_FAMILIES = [
    _g("clustertop_store_up", "1 if the exporter's last read of Redis succeeded, else 0 (no node series then)."),
    _g("clustertop_exporter_read_seconds", "Wall time of the Redis read these figures come from (one round trip "
       "and the decode)."),
    _g("clustertop_exporter_render_seconds", "Wall time spent turning that read into this exposition."),
    _g("clustertop_exporter_scrape_seconds", "Wall time this scrape waited for its data: read and render when it "
       "made the read, about 0 when it shared one made less than the cache time before."),
    _g("clustertop_exporter_data_age_seconds", "Age of the read these figures come from."),
    _g("clustertop_exporter_series", "Samples in the exposition (without the exporter's own)."),
    _g("clustertop_exporter_duplicate_series", "Samples left out because an earlier one had the same name and "
       "labels (node data that repeats a GPU index or a NIC name)."),
    _c("clustertop_exporter_scrapes_total", "Scrapes served."),
    _c("clustertop_exporter_reads_total", "Reads of Redis made (scrapes within the cache time share one)."),
    _c("clustertop_exporter_read_errors_total", "Reads of Redis that failed."),
    _c("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "client_python"),
    _g("process_resident_memory_bytes", "Resident memory size in bytes.", "client_python"),
    _g("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "client_python"),
]

ENERGY_FAMILIES = [
    _g("clustertop_energy_joules", "Energy over the window (1h, 24h) per subject (gpu, node, idle, user, pod, "
       "namespace, job), from the agents' ledgers."),
    _g("clustertop_energy_gpu_seconds", "GPU time held over the window per subject (a shared GPU split like its energy)."),
]

DATA_FAMILIES = NODE_FAMILIES + GPU_FAMILIES + CLUSTER_FAMILIES + SOURCE_FAMILIES + ENERGY_FAMILIES
FAMILIES = DATA_FAMILIES + EXPORTER_FAMILIES


def _ratio(pct: float | None) -> float | None:
    return None if pct is None else pct / 100


def _per(v: float | None, unit: float) -> float | None:
    return None if v is None else v / unit


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def render(state: ClusterState, ledger: Ledger | None = None, energy: Windows | None = None) -> Exposition:
    """The samples of one read: every node's state, the figures of the up ones, the totals, the fresh
    cluster sources and the GPU ledger's flags; and the energy windows where they were read."""
    x = Exposition(DATA_FAMILIES)
    for view in state.nodes:
        _node(x, view)
    fresh = _sources(x, state)
    _totals(x, state, fresh)
    if ledger is not None:
        _ledger(x, ledger)
    if energy is not None:
        for window, uses in (("1h", energy.hour), ("24h", energy.day)):
            for (kind, name), u in uses.items():
                el = labels((("kind", kind), ("name", name), ("window", window)))
                x.add("clustertop_energy_joules", el, u.joules)
                x.add("clustertop_energy_gpu_seconds", el, u.gpu_s)
    return x


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------


def _node(x: Exposition, v: NodeView) -> None:
    add = x.add
    host = label_value(v.host)
    nl = f'node="{host}"'
    up = v.state == "up"
    add("clustertop_node_up", nl, 1 if up else 0)
    for s in NODE_STATES:
        add("clustertop_node_state", f'{nl},state="{s}"', 1 if v.state == s else 0)
    add("clustertop_node_report_age_seconds", nl, v.age_s)
    if up and v.snap is not None:
        add("clustertop_node_detail_age_seconds", nl, v.detail_age_s or 0.0)
    snap = v.snap
    if not up or snap is None:
        return  # stale, down, bad: its last values are not today's
    add("node_time_seconds", nl, snap.ts)
    _identity(x, nl, snap)
    if snap.system is not None:
        _system(x, nl, snap.system)
    for b in snap.bonds or ():
        _bond(x, nl, b)
    for m in snap.netmounts or ():
        ml = f'{nl},{labels((("mountpoint", m.mountpoint), ("fstype", m.fstype), ("source", m.source)))}'
        state = m.state if m.state in MOUNT_STATES else "unknown"
        for s in MOUNT_STATES:
            add("clustertop_mount_state", f'{ml},state="{s}"', 1 if s == state else 0)
        add("clustertop_mount_latency_seconds", ml, _per(m.latency_ms, 1000))
        add("clustertop_mount_size_bytes", ml, m.total_bytes)
        add("clustertop_mount_used_bytes", ml, m.used_bytes)
    for name, st in snap.collectors.items():
        cl = f'{nl},collector="{label_value(name)}"'
        add("clustertop_collector_up", cl, st.ok)
        add("clustertop_collector_duration_seconds", cl, _per(st.duration_ms, 1000))
        add("clustertop_collector_last_success_timestamp_seconds", cl, st.last_ok_ts)
        add("clustertop_collector_skipped_total", cl, st.skipped)
    a = snap.agent
    if a is not None:
        add("clustertop_agent_cpu_ratio", nl, _ratio(a.cpu_pct))
        add("clustertop_agent_resident_memory_bytes", nl, a.rss_bytes)
        add("clustertop_agent_tick_seconds", nl, _per(a.tick_ms, 1000))
        add("clustertop_agent_start_time_seconds", nl, a.started_ts)
        add("clustertop_agent_publish_errors_total", nl, a.publish_errors)
    if snap.tasks is not None:
        counts = dict.fromkeys(TASK_STATES, 0)
        for t in snap.tasks:
            counts[t.state] = counts.get(t.state, 0) + 1
        for state, n in counts.items():
            add("clustertop_node_tasks", f'{nl},state="{label_value(state)}"', n)
    d = view_digest(v)
    if d is not None:
        by = dict.fromkeys(SEVERITIES, 0)
        for al in d.alerts or ():
            sev = al.severity if al.severity in by else "warning"  # as read.cluster.alerts takes them
            by[sev] += 1
        for sev, n in by.items():
            add("clustertop_node_alerts", f'{nl},severity="{sev}"', n)
    if snap.gpus is not None:
        for g in snap.gpus:
            _gpu(x, nl, host, g)
    if snap.sensors is not None:
        _sensors(x, nl, snap.sensors)


def _sensors(x: Exposition, nl: str, s: schema.Sensors) -> None:
    add = x.add
    add("clustertop_node_cpu_temperature_celsius", nl, s.cpu_temp_c)
    add("clustertop_node_cpu_thermal_throttled", nl, s.throttled)
    add("clustertop_node_cpu_thermal_throttles_total", nl, s.throttle_count)
    for i, t in enumerate(s.temps or ()):
        # The sysfs entry keeps two packages' "Core 0" apart (node_exporter's chip label is its device path).
        dev = t.device or f"#{i}"
        if t.source == "thermal":
            zone = dev.removeprefix("thermal_zone")
            add("node_thermal_zone_temp", f'{nl},{labels((("type", t.chip), ("zone", zone)))}', t.temp_c)
        else:
            chip = f"{dev}_{t.chip or 'unknown'}"
            add("node_hwmon_temp_celsius", f'{nl},{labels((("chip", chip), ("sensor", t.label or f"temp{i}")))}',
                t.temp_c)


def _identity(x: Exposition, nl: str, snap: schema.NodeSnapshot) -> None:
    s = snap.system
    info = labels((("role", snap.role), ("agent_version", snap.agent.version if snap.agent else None),
                   ("os", s.os if s else None), ("kernel", s.kernel if s else None), ("arch", s.arch if s else None),
                   ("cpu_model", s.cpu_model if s else None)))
    x.add("clustertop_node_info", f"{nl},{info}" if info else nl, 1)
    if snap.labels:
        pairs: dict[str, str] = {}
        for k, val in list(snap.labels.items())[:MAX_NODE_LABELS]:
            # Sanitised to a label name, lower case (promtool wants snake_case; "Rack" and "rack" then
            # read the same, and the first one wins).
            name = "label_" + "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                                      for c in k[:64].lower())
            pairs.setdefault(name, val)  # two keys that read the same as label names: the first wins
        x.add("clustertop_node_labels", f"{nl},{labels(pairs.items())}", 1)


def _system(x: Exposition, nl: str, s: schema.System) -> None:
    add = x.add
    add("node_boot_time_seconds", nl, s.boot_ts)
    add("clustertop_node_cpus", nl, s.cpu_count)
    add("node_load1", nl, s.load1)
    add("node_load5", nl, s.load5)
    add("node_load15", nl, s.load15)
    c = s.cpu
    if c is not None:
        add("clustertop_node_cpu_utilization_ratio", nl, _ratio(c.util_pct))
        for mode, pct in (("user", c.user_pct), ("system", c.system_pct), ("iowait", c.iowait_pct),
                          ("steal", c.steal_pct)):
            add("clustertop_node_cpu_mode_ratio", f'{nl},mode="{mode}"', _ratio(pct))
    m = s.mem
    if m is not None:
        add("node_memory_MemTotal_bytes", nl, m.total_bytes)
        add("node_memory_MemAvailable_bytes", nl, m.available_bytes)
        add("node_memory_Cached_bytes", nl, m.cached_bytes)
        add("node_memory_SwapTotal_bytes", nl, m.swap_total_bytes)
        add("node_memory_SwapFree_bytes", nl, _diff(m.swap_total_bytes, m.swap_used_bytes))
        add("clustertop_node_memory_used_bytes", nl, m.used_bytes)
    for d in s.disks or ():
        dl = f'{nl},device="{label_value(d.name)}"'
        add("clustertop_disk_read_bytes_per_second", dl, d.read_bytes_s)
        add("clustertop_disk_written_bytes_per_second", dl, d.write_bytes_s)
        add("clustertop_disk_reads_completed_per_second", dl, d.read_iops)
        add("clustertop_disk_writes_completed_per_second", dl, d.write_iops)
        add("clustertop_disk_io_utilization_ratio", dl, _ratio(d.util_pct))
        add("clustertop_disk_await_seconds", dl, _per(d.await_ms, 1000))
        add("clustertop_disk_queue_depth", dl, d.queue_depth)
        add("node_disk_io_now", dl, d.in_flight)
    for f in s.filesystems or ():
        fl = f'{nl},{labels((("device", f.device), ("fstype", f.fstype), ("mountpoint", f.mountpoint)))}'
        add("node_filesystem_size_bytes", fl, f.total_bytes)
        add("node_filesystem_avail_bytes", fl, f.avail_bytes)
        add("clustertop_filesystem_used_bytes", fl, f.used_bytes)
        add("node_filesystem_files", fl, f.inodes_total)
        add("node_filesystem_files_free", fl, _diff(f.inodes_total, f.inodes_used))
    for n in s.nics or ():
        il = f'{nl},device="{label_value(n.name)}"'
        add("clustertop_network_receive_bytes_per_second", il, n.rx_bytes_s)
        add("clustertop_network_transmit_bytes_per_second", il, n.tx_bytes_s)
        add("clustertop_network_receive_packets_per_second", il, n.rx_packets_s)
        add("clustertop_network_transmit_packets_per_second", il, n.tx_packets_s)
        add("node_network_receive_errs_total", il, n.rx_errors)
        add("node_network_transmit_errs_total", il, n.tx_errors)
        add("node_network_receive_drop_total", il, n.rx_dropped)
        add("node_network_transmit_drop_total", il, n.tx_dropped)
        add("node_network_speed_bytes", il, None if n.speed_mbps is None else n.speed_mbps * 125_000)
        add("node_network_up", il, n.up)
        add("node_network_mtu_bytes", il, n.mtu)
        if n.kind is not None:
            add("clustertop_network_info", f'{il},kind="{label_value(n.kind)}"', 1)


def _bond(x: Exposition, nl: str, b: schema.Bond) -> None:
    add = x.add
    bl = f'{nl},master="{label_value(b.name)}"'
    add("clustertop_bond_degraded", bl, b.degraded)
    if b.mode is not None:
        add("clustertop_bond_info", f'{bl},mode="{label_value(b.mode)}"', 1)
    if b.slaves is None:
        return
    add("node_bonding_slaves", bl, len(b.slaves))
    mii = [sl.mii_status for sl in b.slaves]
    if None not in mii:  # node_exporter counts MII "up"; one slave unknown makes the count unknown
        add("node_bonding_active", bl, sum(1 for m in mii if m == "up"))
    for sl in b.slaves:
        ll = f'{bl},slave="{label_value(sl.name)}"'
        add("clustertop_bond_slave_up", ll, None if sl.mii_status is None else sl.mii_status == "up")
        add("clustertop_bond_slave_ok", ll, sl.ok)
        add("clustertop_bond_slave_link_failures_total", ll, sl.link_failures)
        add("clustertop_bond_slave_receive_bytes_per_second", ll, sl.rx_bytes_s)
        add("clustertop_bond_slave_transmit_bytes_per_second", ll, sl.tx_bytes_s)


def _gpu(x: Exposition, nl: str, host: str, g: schema.Gpu) -> None:
    add = x.add
    # Label texts built once per card and shared by every family below: dcgm-exporter's label set on its
    # names (Hostname, gpu, UUID, modelName), snake_case ones on clustertop's (gpu, uuid, model), so
    # camelCase stays where dashboards expect it and nowhere else. Both carry node; join on (node, gpu).
    index = label_value(g.index)
    gl = f'{nl},gpu="{index}"'
    dl = f'{nl},Hostname="{host}",gpu="{index}"'
    if g.uuid is not None:
        uuid = label_value(g.uuid)
        gl += f',uuid="{uuid}"'
        dl += f',UUID="{uuid}"'
    if g.name is not None:
        model = label_value(g.name)
        gl += f',model="{model}"'
        dl += f',modelName="{model}"'
    add("clustertop_gpu_lost", gl, g.lost)
    info = labels((("driver", g.driver), ("arch", g.arch), ("pci_bus_id", g.bus_id)))
    if info:
        add("clustertop_gpu_info", f"{gl},{info}", 1)
    if g.lost:
        return  # what a lost card still shows is cached from before it fell off
    add("DCGM_FI_DEV_GPU_UTIL", dl, g.util_pct)
    add("DCGM_FI_DEV_MEM_COPY_UTIL", dl, g.mem_util_pct)
    add("DCGM_FI_DEV_FB_USED", dl, _per(g.mem_used_bytes, MIB))
    add("DCGM_FI_DEV_FB_FREE", dl, _per(_diff(g.mem_total_bytes, g.mem_used_bytes), MIB))
    add("DCGM_FI_DEV_FB_TOTAL", dl, _per(g.mem_total_bytes, MIB))
    add("DCGM_FI_DEV_GPU_TEMP", dl, g.temp_c)
    add("DCGM_FI_DEV_SLOWDOWN_TEMP", dl, g.temp_slowdown_c)
    add("DCGM_FI_DEV_POWER_USAGE", dl, _per(g.power_mw, 1000))
    add("DCGM_FI_DEV_POWER_MGMT_LIMIT", dl, _per(g.power_limit_mw, 1000))
    add("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", dl, g.energy_mj)
    add("DCGM_FI_DEV_SM_CLOCK", dl, g.sm_clock_mhz)
    add("DCGM_FI_DEV_MEM_CLOCK", dl, g.mem_clock_mhz)
    add("DCGM_FI_DEV_FAN_SPEED", dl, g.fan_pct)
    add("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", dl, g.ecc_corrected)
    add("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", dl, g.ecc_uncorrected)
    add("clustertop_gpu_performance_state", gl, g.pstate)
    add("clustertop_gpu_pcie_receive_bytes_per_second", gl, g.pcie_rx_bytes_s)
    add("clustertop_gpu_pcie_transmit_bytes_per_second", gl, g.pcie_tx_bytes_s)
    add("clustertop_gpu_cuda_cores", gl, g.cuda_cores)
    add("DCGM_FI_DEV_XID_ERRORS", dl, g.xid_last)
    add("clustertop_gpu_xid_errors_total", gl, g.xid_errors)
    add("DCGM_FI_DEV_PCIE_LINK_GEN", dl, g.pcie_gen)
    add("DCGM_FI_DEV_PCIE_LINK_WIDTH", dl, g.pcie_width)
    add("clustertop_gpu_retired_pages", gl, g.retired_pages)
    add("clustertop_gpu_remapped_rows", gl, g.remapped_rows)
    add("DCGM_FI_DEV_ROW_REMAP_PENDING", dl, g.remap_pending)
    add("DCGM_FI_DEV_ROW_REMAP_FAILURE", dl, g.remap_failed)
    if g.throttle_reasons is not None:
        reasons = dict.fromkeys(g.throttle_reasons)
        add("clustertop_gpu_throttle_reasons", gl, len(reasons))
        for r in reasons:
            add("clustertop_gpu_throttle_reason", f'{gl},reason="{label_value(r)}"', 1)
    if g.procs is not None:
        add("clustertop_gpu_processes", gl, len(g.procs))
        owners = {(p.owner.kind, p.owner.name, p.owner.namespace) for p in g.procs if p.owner is not None}
        for kind, name, namespace in sorted(owners, key=str)[:MAX_GPU_OWNERS]:
            ol = labels((("kind", kind), ("name", name), ("namespace", namespace)))
            add("clustertop_gpu_owner", f"{gl},{ol}", 1)


# ---------------------------------------------------------------------------------------------
# Totals, cluster sources, the GPU ledger
# ---------------------------------------------------------------------------------------------


def _totals(x: Exposition, state: ClusterState, fresh: set[str]) -> None:
    add = x.add
    t = state.totals
    for s, n in (("up", t.nodes_up), ("stale", t.nodes_stale), ("down", t.nodes_down), ("bad", t.nodes_bad)):
        add("clustertop_cluster_nodes", f'state="{s}"', n)
    for fig, n in (("cpu", t.cpu_nodes), ("memory", t.mem_nodes), ("gpu", t.gpu_nodes)):
        add("clustertop_cluster_reporting_nodes", f'figure="{fig}"', n)
    add("clustertop_cluster_cpu_cores", "", t.cpu_cores)
    add("clustertop_cluster_cpu_utilization_ratio", "", _ratio(t.cpu_util_pct))
    add("clustertop_cluster_load1", "", t.load1)
    add("clustertop_cluster_memory_total_bytes", "", t.mem_total_bytes)
    add("clustertop_cluster_memory_used_bytes", "", t.mem_used_bytes)
    add("clustertop_cluster_gpus", "", t.gpus_total)
    add("clustertop_cluster_gpus_busy", "", t.gpus_busy)
    if t.gpus_total is not None:
        add("clustertop_cluster_gpus_lost", "", t.gpus_lost)
    add("clustertop_cluster_gpu_utilization_ratio", "", _ratio(t.gpu_util_pct))
    add("clustertop_cluster_gpu_memory_total_bytes", "", t.vram_total_bytes)
    add("clustertop_cluster_gpu_memory_used_bytes", "", t.vram_used_bytes)
    add("clustertop_cluster_gpu_power_watts", "", _per(t.power_mw, 1000))
    add("clustertop_cluster_gpu_power_limit_watts", "", _per(t.power_limit_mw, 1000))
    add("clustertop_cluster_gpu_cuda_cores", "", t.cuda_cores)
    add("clustertop_cluster_gpu_processes", "", t.gpu_procs)
    for model, n in sorted(t.models.items()):
        add("clustertop_cluster_gpu_models", f'model="{label_value(model)}"', n)
    add("clustertop_cluster_network_receive_bytes_per_second", "", t.net_rx_bytes_s)
    add("clustertop_cluster_network_transmit_bytes_per_second", "", t.net_tx_bytes_s)
    add("clustertop_cluster_bonds", "", t.bonds_total)
    add("clustertop_cluster_bonds_degraded", "", t.bonds_degraded)
    # Totals made from cluster payloads only while every payload they come from is fresh.
    queues = [n for n, p in state.cluster.items() if p.queues is not None]
    if queues and all(n in fresh for n in queues):
        add("clustertop_cluster_tasks_queued", "", t.tasks_queued)
        add("clustertop_cluster_workers_online", "", t.workers_online)
    if "kubernetes" in fresh:
        add("clustertop_cluster_pods_running", "", t.pods_running)
        add("clustertop_cluster_gpus_allocated", "", t.gpus_allocated)
    by = dict.fromkeys(SEVERITIES, 0)
    for al in alerts(state.nodes, state.cluster, state.ts):  # the dashboard's list: node states, digests, sources
        by[al.severity] += 1
    for sev, n in by.items():
        add("clustertop_cluster_alerts", f'severity="{sev}"', n)


def fresh_sources(state: ClusterState) -> set[str]:
    """The cluster sources whose payload is ok, decodable and younger than STALE_INTERVALS intervals."""
    out = set()
    for name, p in state.cluster.items():
        if p.ok and name not in state.cluster_errors and \
                state.ts - p.ts <= STALE_INTERVALS * max(1.0, p.interval_s):
            out.add(name)
    return out


def _sources(x: Exposition, state: ClusterState) -> set[str]:
    fresh = fresh_sources(state)
    for name, p in sorted(state.cluster.items()):
        sl = f'source="{label_value(name)}"'
        x.add("clustertop_source_up", sl, name in fresh)
        x.add("clustertop_source_age_seconds", sl, state.ts - p.ts)
        if name not in fresh:
            continue
        if p.ceph is not None:
            _ceph(x, p.ceph)
        if p.queues is not None:
            _queues(x, sl, p.queues)
        if p.kubernetes is not None:
            _kubernetes(x, p.kubernetes)
    return fresh


def _ceph(x: Exposition, c: schema.Ceph) -> None:
    add = x.add
    add("clustertop_ceph_health_status", "", CEPH_HEALTH.get(c.status or ""))
    for chk in c.checks or ():
        if not chk.muted:
            add("clustertop_ceph_health_check", labels((("code", chk.code), ("severity", chk.severity))), 1)
    add("clustertop_ceph_monitors", "", c.mons)
    add("clustertop_ceph_monitors_quorum", "", c.mons_quorum)
    for s, n in (("all", c.osds_total), ("up", c.osds_up), ("in", c.osds_in)):
        add("clustertop_ceph_osds", f'state="{s}"', n)
    add("clustertop_ceph_pgs", "", c.pgs_total)
    for s, n in sorted((c.pg_states or {}).items()):
        add("clustertop_ceph_pg_states", f'state="{label_value(s)}"', n)
    for s, n in (("all", c.objects), ("degraded", c.objects_degraded), ("misplaced", c.objects_misplaced),
                 ("unfound", c.objects_unfound)):
        add("clustertop_ceph_objects", f'state="{s}"', n)
    add("clustertop_ceph_size_bytes", "", c.total_bytes)
    add("clustertop_ceph_used_bytes", "", c.used_bytes)
    add("clustertop_ceph_avail_bytes", "", c.avail_bytes)
    add("clustertop_ceph_read_bytes_per_second", "", c.read_bytes_s)
    add("clustertop_ceph_write_bytes_per_second", "", c.write_bytes_s)
    add("clustertop_ceph_read_ops_per_second", "", c.read_ops_s)
    add("clustertop_ceph_write_ops_per_second", "", c.write_ops_s)
    add("clustertop_ceph_recovering_bytes_per_second", "", c.recovering_bytes_s)
    for o in c.osds or ():
        ol = labels((("osd", f"osd.{o.id}"), ("host", o.host), ("device_class", o.device_class)))
        add("clustertop_ceph_osd_up", ol, o.up)
        add("clustertop_ceph_osd_in", ol, o.in_)
        add("clustertop_ceph_osd_size_bytes", ol, o.total_bytes)
        add("clustertop_ceph_osd_used_bytes", ol, o.used_bytes)
        add("clustertop_ceph_osd_pgs", ol, o.pgs)
        add("clustertop_ceph_osd_commit_latency_seconds", ol, _per(o.commit_latency_ms, 1000))
        add("clustertop_ceph_osd_apply_latency_seconds", ol, _per(o.apply_latency_ms, 1000))
    for pool in c.pools or ():
        pl = f'pool="{label_value(pool.name)}"'
        add("clustertop_ceph_pool_stored_bytes", pl, pool.stored_bytes)
        add("clustertop_ceph_pool_used_bytes", pl, pool.used_bytes)
        add("clustertop_ceph_pool_avail_bytes", pl, pool.avail_bytes)
        add("clustertop_ceph_pool_objects", pl, pool.objects)
        add("clustertop_ceph_pool_read_bytes_per_second", pl, pool.read_bytes_s)
        add("clustertop_ceph_pool_write_bytes_per_second", pl, pool.write_bytes_s)


def _queues(x: Exposition, sl: str, q: schema.Queues) -> None:
    add = x.add
    for qu in q.queues or ():
        ql = f'{sl},{labels((("broker", qu.broker), ("queue", qu.name), ("kind", qu.kind)))}'
        add("clustertop_queue_depth", ql, qu.depth)
        add("clustertop_queue_ready", ql, qu.ready)
        add("clustertop_queue_unacked", ql, qu.unacked)
        add("clustertop_queue_consumers", ql, qu.consumers)
        add("clustertop_queue_publish_per_second", ql, qu.publish_rate)
        add("clustertop_queue_deliver_per_second", ql, qu.deliver_rate)
        add("clustertop_queue_growing_unconsumed", ql, qu.growing_unconsumed)
    for w in q.workers or ():
        wl = f'{sl},{labels((("worker", w.name), ("kind", w.kind), ("host", w.host)))}'
        add("clustertop_worker_online", wl, w.online)
        add("clustertop_worker_pool_size", wl, w.pool_size)
        add("clustertop_worker_active_tasks", wl, None if w.active is None else len(w.active))
        add("clustertop_worker_processing_tasks", wl, w.processing)
        add("clustertop_worker_threads", wl, w.nthreads)
        add("clustertop_worker_memory_bytes", wl, w.mem_bytes)
        add("clustertop_worker_memory_limit_bytes", wl, w.mem_limit_bytes)
    add("clustertop_dask_tasks", f'{sl},state="processing"', q.dask_tasks_processing)
    add("clustertop_dask_tasks", f'{sl},state="waiting"', q.dask_tasks_waiting)


def _kubernetes(x: Exposition, k: schema.Kubernetes) -> None:
    add = x.add
    for n in k.nodes or ():
        kl = f'node="{label_value(n.name)}"'
        add("clustertop_kubernetes_node_ready", kl, n.ready)
        add("clustertop_kubernetes_node_unschedulable", kl, n.unschedulable)
        add("clustertop_kubernetes_node_gpu_capacity", kl, n.gpu_capacity)
        add("clustertop_kubernetes_node_gpu_allocatable", kl, n.gpu_allocatable)
        add("clustertop_kubernetes_node_gpu_allocated", kl, n.gpu_allocated)
        add("clustertop_kubernetes_node_cpu_allocatable_cores", kl, _per(n.cpu_allocatable_m, 1000))
        add("clustertop_kubernetes_node_memory_allocatable_bytes", kl, n.mem_allocatable_bytes)
    if k.pods is not None:
        phases: dict[str, int] = {}
        for p in k.pods:
            phases[p.phase or "Unknown"] = phases.get(p.phase or "Unknown", 0) + 1
            if p.gpus and p.holds_resources():
                pl = labels((("namespace", p.namespace), ("pod", p.name), ("node", p.node), ("phase", p.phase)))
                add("clustertop_kubernetes_pod_gpus_requested", pl, p.gpus)
        for phase, count in sorted(phases.items()):
            add("clustertop_kubernetes_pods", f'phase="{label_value(phase)}"', count)
    add("clustertop_kubernetes_pods_seen", "", k.pods_total)


def _ledger(x: Exposition, ledger: Ledger) -> None:
    for f in ledger.flags:
        fl = labels((("kind", f.kind), ("node", f.node), ("pod", f.pod),
                     ("gpus", ",".join(str(i) for i in f.gpu_indices) or None)))
        x.add("clustertop_gpu_ledger_flag_seconds", fl, f.duration_s)
    for r in ledger.nodes:
        if r.in_kubernetes:
            nl = f'node="{label_value(r.node)}"'
            x.add("clustertop_gpu_ledger_idle_allocated_gpus", nl, r.idle_allocated)
            x.add("clustertop_gpu_ledger_unowned_busy_gpus", nl, r.unowned_busy)


def families_borrowed() -> dict[str, str]:
    """Family name -> the exporter whose naming it keeps (tests check promtool's findings against this)."""
    return {f.name: f.borrowed for f in FAMILIES if f.borrowed}


def names(families: Iterable[Family]) -> list[str]:
    return [f.name for f in families]
