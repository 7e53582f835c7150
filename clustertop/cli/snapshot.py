"""Provides `clustertop snapshot [--json] [--redis URL | --demo --seed S]`: the cluster once, for
scripts and pipes.

One read with `clustertop.read.reader.Reader` (the dashboard's own read path). `--demo` reads an embedded
store filled by one step of the simulated cluster at a fixed simulated time, so its output is the
same for a seed on every machine and every day (tests compare it).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import UTC, datetime
from typing import Any

from clustertop import wire
from clustertop.read import cluster
from clustertop.read.model import view_digest
from clustertop.read.plan import ALL_FULL
from clustertop.read.reader import ClusterState, Reader

#: The simulated time of `snapshot --demo`: 2026-01-01T00:00:00Z.
DEMO_TS = 1767225600.0


def run(args: Any) -> int:
    if args.demo:
        client, source, clock = _demo_store(args.seed)
    elif args.redis:
        from clustertop.store import connect, redact

        client = connect(args.redis, args.redis_password_file, args.redis_ca_file)
        source, clock = redact(args.redis), time.time
    else:
        print("clustertop snapshot: no store: give --redis URL (or set CLUSTERTOP_REDIS), or --demo",
              file=sys.stderr)
        return 2
    from redis.exceptions import RedisError

    try:
        # Every node in full at any cluster size: --json writes each node's whole snapshot.
        state = Reader(client, clock=clock).read(ALL_FULL)
    except (RedisError, OSError) as e:
        print(f"clustertop snapshot: store {source} unreachable: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    alerts = cluster.alerts(state.nodes, state.cluster, state.ts)
    out = sys.stdout
    if args.json:
        out.buffer.write(wire.to_json(as_document(state, source, alerts)) + b"\n")
    else:
        out.write(as_text(state, source, alerts))
    out.flush()
    return 0


def _demo_store(seed: int) -> tuple[Any, str, Any]:
    """An embedded store holding one tick of the demo cluster at DEMO_TS."""
    from clustertop.sim.simulate import SimCluster, make_publishers, publish
    from clustertop.store import embedded

    _, factory = embedded()
    client = factory()
    sim = SimCluster(seed=seed, start_ts=DEMO_TS)
    publish(client, sim, DEMO_TS, make_publishers(sim, client, sim.interval_s))
    return client, f"demo (simulated, seed {seed})", lambda: DEMO_TS


def as_document(state: ClusterState, source: str, alerts: list[cluster.Alert]) -> dict[str, Any]:
    """The JSON shape: every field written, None as null (``wire.to_json`` writes the structs whole)."""
    return {
        "ts": state.ts,
        "source": source,
        "totals": dataclasses.asdict(state.totals),
        # "digest": the node folded as the dashboard folds it (busy/lost/hot GPUs, sums, the node's
        # alerts): what a script would otherwise recompute from the snapshot, and might get wrong.
        "nodes": [{"host": n.host, "state": n.state, "age_s": n.age_s, "error": n.error, "snapshot": n.snap,
                   "digest": view_digest(n) if n.state != "down" else None}
                  for n in state.nodes],
        "cluster": dict(sorted(state.cluster.items())),
        "cluster_errors": state.cluster_errors,
        "alerts": [dataclasses.asdict(a) for a in alerts],
    }


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

NA = "N/A"


def as_text(state: ClusterState, source: str, alerts: list[cluster.Alert]) -> str:
    t = state.totals
    when = datetime.fromtimestamp(state.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"clustertop snapshot of {clean(source)} at {when}", summary(t)]
    lines.append("")
    width = max([len(clean(n.host)) for n in state.nodes] + [4])
    for n in state.nodes:
        lines.append(node_line(n, width))
    if not state.nodes:
        lines.append("no nodes have reported")
    lines.append("")
    if alerts:
        lines.append(f"alerts ({len(alerts)}):")
        for a in alerts:
            where = clean(a.node) + " " if a.node else ""
            lines.append(f"  {a.severity:<8} {where}{clean(a.message)}")
    else:
        lines.append("alerts: none")
    for name, err in sorted(state.cluster_errors.items()):
        lines.append(f"  {name}: {clean(err)}")
    return "\n".join(lines) + "\n"


def summary(t: cluster.Totals) -> str:
    parts = [f"{t.nodes_up}/{t.nodes_total} nodes up"]
    if t.nodes_stale or t.nodes_down or t.nodes_bad:
        parts[0] += f" ({t.nodes_stale} stale, {t.nodes_down} down, {t.nodes_bad} bad)"
    if t.gpus_total is not None:
        gpus = f"{t.gpus_total} GPUs ({t.gpus_busy if t.gpus_busy is not None else NA} busy)"
        if t.gpu_util_pct is not None:
            gpus += f", {t.gpu_util_pct:.0f} % GPU util"
        parts.append(gpus)
        if t.vram_total_bytes:
            parts.append(f"{gib(t.vram_used_bytes)}/{gib(t.vram_total_bytes)} GiB VRAM")
        if t.power_mw is not None:
            parts.append(f"{t.power_mw / 1e6:.1f} kW GPU power")
    else:
        parts.append(f"GPUs {NA}")
    if t.mem_total_bytes is not None:
        pct = f" ({100 * t.mem_used_bytes / t.mem_total_bytes:.0f} % used)" if t.mem_used_bytes and t.mem_total_bytes \
            else ""
        parts.append(f"{t.mem_total_bytes / (1 << 30):.0f} GiB RAM{pct}")
    if t.cpu_cores is not None:
        util = f" {t.cpu_util_pct:.0f} %" if t.cpu_util_pct is not None else ""
        parts.append(f"{t.cpu_cores} cores{util}")
    if t.ceph_status is not None:
        parts.append(f"Ceph {t.ceph_status}")
    if t.tasks_queued is not None:
        parts.append(f"{t.tasks_queued} queued")
    if t.pods_running is not None:
        parts.append(f"{t.pods_running} pods running")
    return ", ".join(parts)


def node_line(n: Any, width: int) -> str:
    age = f"{n.age_s:.0f}s" if n.age_s is not None else NA
    head = f"  {clean(n.host):<{width}}  {n.state:<5} {age:>6}"
    if n.state == "bad":
        return f"{head}  {clean(n.error or 'bad data')}"
    s = n.snap
    if s is None or n.state == "down":
        return head
    cols = []
    sysinfo = s.system
    if sysinfo is not None:
        util = sysinfo.cpu.util_pct if sysinfo.cpu is not None else None
        cols.append(f"cpu {pct(util)} of {sysinfo.cpu_count if sysinfo.cpu_count is not None else NA}")
        m = sysinfo.mem
        if m is not None and m.total_bytes:
            cols.append(f"mem {gib(m.used_bytes)}/{gib(m.total_bytes)} GiB")
    d = view_digest(n)  # the dashboard's own figures: lost cards are neither busy nor hottest
    if d is not None and d.gpus is not None:
        if d.gpus:
            busy = f"gpus {d.gpus_busy}/{d.gpus} busy" if d.gpu_util_n else f"gpus {d.gpus}, busy {NA}"
            lost = f", {d.gpus_lost} lost" if d.gpus_lost else ""
            temp = f", max {d.gpu_temp_max_c} °C" if d.gpu_temp_max_c is not None else ""
            cols.append(f"{busy}{lost}{temp}")
        else:
            cols.append("no gpus")
    for b in s.bonds or ():
        cols.append(f"{clean(b.name)} {'degraded' if b.degraded else 'ok'}")
    return f"{head}  " + ", ".join(cols) if cols else head


def pct(v: float | None) -> str:
    return f"{v:.0f}%" if v is not None else NA


def gib(v: int | None) -> str:
    return f"{v / (1 << 30):.1f}" if v is not None else NA


def clean(text: str | None) -> str:
    """Node text is data: control characters (terminal escapes) are shown, never obeyed."""
    if text is None:
        return NA
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
