"""Provides the pure half of the containers collector: Docker Engine API JSON -> wire structs.

Input is whatever the engine's socket answered (Docker or Podman's compatible API), decoded from JSON and
nothing more: hostile by assumption. A field of the wrong type, a NaN or an integer past 64 bits becomes
None (unknown), never 0 and never an exception that would lose the other containers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clustertop.wire.schema import WIRE_INTS, Container

#: The label clustertop puts on a container it launched from a template (value: the template's name).
TEMPLATE_LABEL = "org.clustertop.template"
#: The label kubelet's runtimes (dockershim, cri-dockerd) put on a pod's containers.
POD_UID_LABEL = "io.kubernetes.pod.uid"
#: Longest name, image or status string kept (node text: a 1 MB name must not reach the wire whole).
TEXT_MAX = 256


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or v not in WIRE_INTS:
        return None
    return v


def _str(v: Any, limit: int = TEXT_MAX) -> str | None:
    return v[:limit] if isinstance(v, str) and v else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def parse_time(v: Any) -> float | None:
    """An engine timestamp ("2026-12-07T03:28:47.212290473Z", nanoseconds) -> Unix seconds; the zero time
    ("0001-01-01T00:00:00Z": never started) and anything unreadable -> None."""
    if not isinstance(v, str) or not v or v.startswith("0001-"):
        return None
    text = v[:80].replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python parses at most 6 digits of fraction: keep microseconds, and the zone after the digits
        digits = "".join(c for c in rest[:20] if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6] or '0'}{zone}"
    try:
        ts = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        return None
    return ts if ts > 0 else None


def parse_list(raw: Any) -> list[Container]:
    """GET /containers/json?all=1 -> Containers (name, image, state, status, created, labels); entries
    without a usable id are left out (nothing could name them in a command)."""
    out: list[Container] = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        cid = item.get("Id")
        if not isinstance(cid, str) or not is_container_id(cid):
            continue
        names = item.get("Names")
        name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
        labels = _dict(item.get("Labels"))
        pod_uid = labels.get(POD_UID_LABEL)
        out.append(Container(
            id=cid, name=_str(name.removeprefix("/") if name else None), image=_str(item.get("Image")),
            state=_str(item.get("State"), 20), status=_str(item.get("Status"), 80), created_ts=_int(item.get("Created")),
            template=_str(labels.get(TEMPLATE_LABEL), 80),
            pod_uid=_str(pod_uid, 40)))
    return out


def is_container_id(text: str) -> bool:
    """A full container id: 64 lower-case hex digits (what Docker and Podman both use)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def apply_inspect(c: Container, raw: Any) -> None:
    """GET /containers/{id}/json -> pid, start time, exit code and restarts (the list has none of them)."""
    state = _dict(_dict(raw).get("State"))
    pid = _int(state.get("Pid"))
    c.pid = pid if pid else None  # 0: not running
    c.started_ts = parse_time(state.get("StartedAt"))
    c.exit_code = _int(state.get("ExitCode")) if c.state != "running" else None
    c.restarts = _int(_dict(raw).get("RestartCount"))


def memory_used(stats: Any) -> int | None:
    """Memory in use as `docker stats` shows it: usage less the inactive page cache (cgroup v1's
    total_inactive_file, v2's inactive_file), which the kernel reclaims first."""
    mem = _dict(_dict(stats).get("memory_stats"))
    usage = _int(mem.get("usage"))
    if usage is None:
        return None
    inner = _dict(mem.get("stats"))
    for key in ("total_inactive_file", "inactive_file"):
        cache = _int(inner.get(key))
        if cache is not None and 0 <= cache < usage:
            return usage - cache
    return usage


def cpu_sample(stats: Any) -> tuple[int, int, int] | None:
    """(container CPU ns, host CPU ns summed over CPUs, online CPUs) of one stats answer, or None
    (a stopped container, or an engine that does not say)."""
    cpu = _dict(_dict(stats).get("cpu_stats"))
    total = _int(_dict(cpu.get("cpu_usage")).get("total_usage"))
    system = _int(cpu.get("system_cpu_usage"))
    online = _int(cpu.get("online_cpus"))
    if online is None or online <= 0:
        percpu = _dict(cpu.get("cpu_usage")).get("percpu_usage")
        online = len(percpu) if isinstance(percpu, list) and percpu else None
    if total is None or system is None or online is None or system <= 0:
        return None
    return total, system, online


def cpu_pct(prev: tuple[int, int, int] | None, cur: tuple[int, int, int] | None) -> float | None:
    """% of one core between two samples, by the formula `docker stats` uses (container ns / host ns × CPUs);
    None without two samples or when a counter went backwards (the container restarted)."""
    if prev is None or cur is None:
        return None
    d_cpu, d_sys = cur[0] - prev[0], cur[1] - prev[1]
    if d_cpu < 0 or d_sys <= 0:
        return None
    pct = d_cpu / d_sys * cur[2] * 100.0
    return pct if pct <= cur[2] * 100.0 * 1.05 else None  # more than every CPU busy: counters not to be trusted


def apply_stats(c: Container, stats: Any, prev: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """GET /containers/{id}/stats?stream=false&one-shot=true -> memory, limit, pids and CPU against ``prev``;
    returns this sample's CPU counters for the next poll."""
    s = _dict(stats)
    c.mem_bytes = memory_used(s)
    limit = _int(_dict(s.get("memory_stats")).get("limit"))
    c.mem_limit_bytes = limit if limit else None
    c.pids = _int(_dict(s.get("pids_stats")).get("current"))
    cur = cpu_sample(s)
    c.cpu_pct = cpu_pct(prev, cur)
    return cur


def engine_name(version: Any) -> str | None:
    """GET /version -> "Docker Engine 20.10.24" / "Podman Engine 4.3.1" (Docker calls its component
    "Engine", Podman "Podman Engine")."""
    v = _dict(version)
    comps = v.get("Components")
    name = "Docker Engine"
    if isinstance(comps, list) and comps and isinstance(comps[0], dict) and isinstance(comps[0].get("Name"), str):
        first = comps[0]["Name"][:40]
        name = name if first == "Engine" else first
    ver = _str(v.get("Version"), 40)
    return _str(f"{name} {ver}" if ver else name, 80)
