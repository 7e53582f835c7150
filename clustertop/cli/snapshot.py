"""Provides `clustertop snapshot [--json] [--redis URL | --demo --seed S]`: the cluster once, for
scripts and pipes.

One read with `clustertop.read.reader.Reader` (the dashboard's own read path). `--demo` reads an embedded
store filled by one step of the simulated cluster at a fixed simulated time, so its output is the
same for a seed on every machine and every day (tests compare it).

Everything printed came from the cluster, and every node can write anything to Redis, so the output is
bounded by what nodes *sent*, not by what the index lists, and never drives the terminal:
- text: node text goes through ``wire.text.inert`` (controls, bidi and zero-width characters shown
  escaped, "\\x1b", "\\u202e"), host names cut at HOST_LIMIT and other text at TEXT_LIMIT (with "…");
  nodes listed in the index that sent nothing (``silent``) are named up to MAX_SILENT and then counted,
  and so are the alerts about them; at most MAX_ALERT_LINES alerts; absurd figures (NaN, 2**64 - 1)
  print as N/A. A megabyte host name and 5,000 phantom index entries make a few kilobytes, not 2 GB.
- ``--json``: valid JSON whatever the payloads hold (NaN and ±inf are null), every string cut to
  JSON_TEXT_LIMIT characters (with "…"), controls escaped by the JSON encoder and the bidi, C1 and
  zero-width characters it leaves raw escaped as ``\\uXXXX`` (the same string to a JSON reader); silent
  nodes listed up to MAX_SILENT_JSON, the rest counted in ``nodes_omitted`` (and their alerts in
  ``alerts_omitted``).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from clustertop import wire
from clustertop.read import cluster
from clustertop.read.model import NodeView, view_digest
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import ClusterState, Reader
from clustertop.read.want import Wants
from clustertop.wire.text import inert, known

#: The simulated time of `snapshot --demo`: 2026-01-01T00:00:00Z.
DEMO_TS = 1767225600.0

#: Text output: host names are cut here (DNS names end at 253; the column is as wide as the widest).
HOST_LIMIT = 64
#: Text output: any other node text (an error, an alert's message, the source) is cut here.
TEXT_LIMIT = 300
#: Nodes listed in the index that sent nothing, named before the rest are only counted.
MAX_SILENT = 20
MAX_ALERT_LINES = 200
#: ``--json``: every string is cut to this many characters.
JSON_TEXT_LIMIT = 4096
MAX_SILENT_JSON = 1000


#: ``--fresh-detail`` of ``snapshot`` and ``who``.
FRESH_DETAIL_HELP = ("ask every node for a full snapshot of its latest tick and wait for them (up to 2.5 intervals, "
                     "3-30 s): detail (processes, per-CPU use, clocks, PCIe, containers) current, not up to the "
                     "agents' full_every (15 s) old; makes every node write in full every tick for ~5 s. Without "
                     "it: each node's last full snapshot with this tick's figures over it, its age said "
                     "(detail_age_s), no node asked for anything")


def read_detail(client: Any, clock: Any, fresh_detail: bool) -> ClusterState:
    """Every node in full for ``snapshot`` and ``who``: as stored, brought up to date by the briefs, wanting no
    node (``Level.DETAIL``; the byte budget holds while scripts poll); with ``fresh_detail``, asked for and waited
    for (``fresh``)."""
    if fresh_detail:
        return fresh(Reader(client, clock=clock, wants=Wants()))
    return Reader(client, clock=clock).read(ReadPlan(Level.DETAIL))


#: How long ``snapshot`` waits for the full snapshots it asked for: this many of the slowest such node's
#: intervals (one to see the request, one to answer), within FRESH_WAIT_MAX_S.
FRESH_WAIT_INTERVALS = 2.5
FRESH_WAIT_MIN_S = 3.0
FRESH_WAIT_MAX_S = 30.0


def fresh(reader: Reader, sleep: Any = time.sleep, monotonic: Any = time.monotonic) -> ClusterState:
    """Every node in full, each full snapshot of the node's latest tick where its agent answers in time.

    Agents rewrite their full snapshot every few seconds unless a reader wants it (``read.want``): the first
    read asks every node whose stored one is from an earlier tick, and reads again until none is or the wait
    is over. Whatever is still older then (an agent that can't see the request, a reader that may not write
    it) is printed as it is, with its ``detail_age_s``: never passed off as current."""
    state = reader.read(ALL_FULL)
    behind = [v for v in state.nodes if v.detail_age_s is not None]
    if not behind:
        return state
    wait = min(FRESH_WAIT_MAX_S, max(FRESH_WAIT_MIN_S, FRESH_WAIT_INTERVALS * max(
        (v.snap.interval_s for v in behind if v.snap is not None and known(v.snap.interval_s)), default=1.0)))
    deadline = monotonic() + wait
    while behind and monotonic() < deadline and (reader.wants is None or reader.wants.error is None):
        sleep(0.25)
        state = reader.read(ALL_FULL)
        behind = [v for v in state.nodes if v.detail_age_s is not None]
    return state


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
        # Every node in full at any cluster size: --json writes each node's whole snapshot. With --fresh-detail
        # asks for full snapshots of the latest tick too (read.want), and waits a little for them (``fresh``).
        state = read_detail(client, clock, getattr(args, "fresh_detail", False))
    except (RedisError, OSError) as e:
        print(f"clustertop snapshot: store {source} unreachable: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    alerts = cluster.alerts(state.nodes, state.cluster, state.ts)
    out = sys.stdout
    if args.json:
        out.buffer.write(as_json(as_document(state, source, alerts)) + b"\n")
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


def silent(n: NodeView) -> bool:
    """Listed in the node index, nothing read of it: no snapshot, no digest, no bad payload. A node gone
    down looks so too, and so does a name any Redis writer added: only the count of them is trusted."""
    return n.snap is None and n.digest is None and n.error is None


def listed(nodes: list[NodeView], max_silent: int) -> tuple[list[NodeView], set[str]]:
    """The nodes to print, in index order: every node that sent something, and the first ``max_silent``
    silent ones; and the hosts of the silent ones left out."""
    shown, omitted, n_silent = [], set(), 0
    for n in nodes:
        if silent(n):
            n_silent += 1
            if n_silent > max_silent:
                omitted.add(n.host)
                continue
        shown.append(n)
    return shown, omitted


def as_document(state: ClusterState, source: str, alerts: list[cluster.Alert]) -> dict[str, Any]:
    """The JSON shape: every field written, None as null (``wire.to_json`` writes the structs whole)."""
    nodes, omitted = listed(state.nodes, MAX_SILENT_JSON)
    return {
        "ts": state.ts,
        "source": source,
        "totals": dataclasses.asdict(state.totals),
        # "digest": the node folded as the dashboard folds it (busy/lost/hot GPUs, sums, the node's
        # alerts): what a script would otherwise recompute from the snapshot, and might get wrong.
        # "detail_age_s": the snapshot is the node's last full one, from an earlier tick than its digest
        # (agents rewrite it every few seconds unless someone looks), with this tick's brief drawn over it
        # (wire.brief.fresh): what a brief leaves out is this many seconds old; null: it is all current.
        "nodes": [{"host": n.host, "state": n.state, "age_s": n.age_s, "detail_age_s": n.detail_age_s,
                   "error": n.error, "snapshot": n.snap,
                   "digest": view_digest(n) if n.state != "down" else None}
                  for n in nodes],
        "nodes_omitted": len(omitted),  # silent nodes past MAX_SILENT_JSON (totals count them all)
        "cluster": dict(sorted(state.cluster.items())),
        "cluster_errors": state.cluster_errors,
        "alerts": [dataclasses.asdict(a) for a in alerts if a.node not in omitted],
        "alerts_omitted": sum(1 for a in alerts if a.node in omitted),
    }


def as_json(doc: dict[str, Any]) -> bytes:
    """``doc`` as indented JSON: strings cut to JSON_TEXT_LIMIT, and what the encoder leaves raw of the
    characters ``inert`` escapes (DEL, C1 controls, bidi and zero-width characters) written as \\uXXXX,
    which a JSON reader decodes to the same string. Such characters occur only inside strings, so
    replacing them in the encoded text cannot touch the document's structure."""
    text = wire.to_json(cut_strings(wire.to_builtins(doc), JSON_TEXT_LIMIT)).decode("utf-8")
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


_RAW_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def cut_strings(obj: Any, limit: int) -> Any:
    """``obj`` (plain dicts, lists and scalars) with every string, keys too, cut to ``limit`` ("…")."""
    if isinstance(obj, str):
        return obj if len(obj) <= limit else obj[: limit - 1] + "…"
    if isinstance(obj, dict):
        return {cut_strings(k, limit): cut_strings(v, limit) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cut_strings(v, limit) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

NA = "N/A"


def as_text(state: ClusterState, source: str, alerts: list[cluster.Alert]) -> str:
    t = state.totals
    when = datetime.fromtimestamp(state.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"clustertop snapshot of {clean(source)} at {when}", summary(t)]
    lines.append("")
    nodes, omitted = listed(state.nodes, MAX_SILENT)
    width = max([len(host(n.host)) for n in nodes] + [4])
    for n in nodes:
        lines.append(node_line(n, width))
    if omitted:
        lines.append(f"  … and {len(omitted)} more listed nodes that sent no data (stale or down; only their "
                     "names are in the index)")
    if not state.nodes:
        lines.append("no nodes have reported")
    lines.append("")
    shown = [a for a in alerts if a.node not in omitted]
    if alerts:
        lines.append(f"alerts ({len(alerts)}):")
        for a in shown[:MAX_ALERT_LINES]:
            where = host(a.node) + " " if a.node else ""
            lines.append(f"  {a.severity:<8} {where}{clean(a.message)}")
        if len(shown) > MAX_ALERT_LINES:
            lines.append(f"  … and {len(shown) - MAX_ALERT_LINES} more alerts (snapshot --json lists them)")
        if len(shown) < len(alerts):
            lines.append(f"  … and {len(alerts) - len(shown)} alerts about the nodes that sent no data")
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
        gpus = f"{num(t.gpus_total)} GPUs ({num(t.gpus_busy)} busy)"
        if t.gpu_util_pct is not None:
            gpus += f", {num(t.gpu_util_pct)} % GPU util"
        parts.append(gpus)
        if t.vram_total_bytes:
            parts.append(f"{gib(t.vram_used_bytes)}/{gib(t.vram_total_bytes)} GiB VRAM")
        if t.power_mw is not None:
            kw = known(t.power_mw, 0, 1e12)
            parts.append(f"{NA if kw is None else format(kw / 1e6, '.1f')} kW GPU power")
    else:
        parts.append(f"GPUs {NA}")
    if t.mem_total_bytes is not None:
        used = known(100 * t.mem_used_bytes / t.mem_total_bytes, 0, 100) if t.mem_used_bytes and t.mem_total_bytes \
            else None  # more used than there is: a node's lie, not a figure
        pct = f" ({used:.0f} % used)" if used is not None else f" ({NA} used)" if t.mem_used_bytes else ""
        total = known(t.mem_total_bytes, 0, MAX_BYTES)
        parts.append(f"{NA if total is None else format(total / (1 << 30), '.0f')} GiB RAM{pct}")
    if t.cpu_cores is not None:
        util = f" {num(t.cpu_util_pct)} %" if t.cpu_util_pct is not None else ""
        parts.append(f"{num(t.cpu_cores)} cores{util}")
    if t.ceph_status is not None:
        parts.append(f"Ceph {clean(t.ceph_status, 40)}")
    if t.tasks_queued is not None:
        parts.append(f"{num(t.tasks_queued)} queued")
    if t.pods_running is not None:
        parts.append(f"{t.pods_running} pods running")
    return ", ".join(parts)


def node_line(n: Any, width: int) -> str:
    age = f"{num(n.age_s)}s" if known(n.age_s) is not None else NA
    head = f"  {host(n.host):<{width}}  {n.state:<5} {age:>6}"
    if n.state == "bad":
        return f"{head}  {clean(n.error or 'bad data')}"
    s = n.snap
    if s is None or n.state == "down":
        return head
    cols = []
    sysinfo = s.system
    if sysinfo is not None:
        util = sysinfo.cpu.util_pct if sysinfo.cpu is not None else None
        cols.append(f"cpu {pct(util)} of {num(sysinfo.cpu_count)}")
        m = sysinfo.mem
        if m is not None and m.total_bytes:
            cols.append(f"mem {gib(m.used_bytes)}/{gib(m.total_bytes)} GiB")
    d = view_digest(n)  # the dashboard's own figures: lost cards are neither busy nor hottest
    if d is not None and d.gpus is not None:
        if d.gpus:
            busy = f"gpus {num(d.gpus_busy)}/{num(d.gpus)} busy" if d.gpu_util_n else f"gpus {num(d.gpus)}, busy {NA}"
            lost = f", {num(d.gpus_lost)} lost" if d.gpus_lost else ""
            temp = f", max {num(d.gpu_temp_max_c)} °C" if d.gpu_temp_max_c is not None else ""
            cols.append(f"{busy}{lost}{temp}")
        else:
            cols.append("no gpus")
    for b in (s.bonds or ())[:MAX_SILENT]:
        cols.append(f"{clean(b.name, HOST_LIMIT)} {'degraded' if b.degraded else 'ok'}")
    if n.detail_age_s is not None:  # cpu, mem and bonds above are current (the brief's); the rest is older
        cols.append(f"detail {num(n.detail_age_s)}s old")
    return f"{head}  " + ", ".join(cols) if cols else head


#: Past this a byte count is a broken counter or a lie (2**64 - 1), not memory: 1 EiB.
MAX_BYTES = 2**60


def num(v: float | None) -> str:
    """A figure from a node, whole: NaN, ±inf and absurd ones (``wire.text.known``) are N/A."""
    f = known(v)
    return NA if f is None else f"{f:.0f}"


def pct(v: float | None) -> str:
    f = known(v, 0, 100_000)
    return f"{f:.0f}%" if f is not None else NA


def gib(v: int | None) -> str:
    f = known(v, 0, MAX_BYTES)
    return f"{f / (1 << 30):.1f}" if f is not None else NA


def host(name: str | None) -> str:
    """A host name for a line of text: ``clean`` and cut at HOST_LIMIT."""
    return clean(name, HOST_LIMIT)


def clean(text: str | None, limit: int = TEXT_LIMIT) -> str:
    """Node text is data: controls, bidi and zero-width characters are shown escaped, never obeyed
    (``wire.text.inert``, the one escaper), and it is cut at ``limit`` characters ("…")."""
    if text is None:
        return NA
    return inert(text, limit=limit)
