"""Provides `clustertop who USER [--ns NAME] [--json] [--redis URL | --demo --seed S]`: one search for a user's
work across the cluster (issue 19), from one full read (``read.reader.Reader``, the dashboard's read path) plus
the nodes' energy ledgers; what is matched and how is ``clustertop.read.people``.

``--ns NAME`` is the people screen's ``:ns NAME``: only the user's processes in that namespace's pods and what is
joined through them (``people.find(..., namespace=)``); how many of theirs that hides, and why, is said (text:
a "ns" line; JSON: ``namespace`` and ``hidden``). ``--ns all`` is every namespace, as ``:ns all``. Energy stays
the user's in every namespace (the ledgers keep no namespace), and the output says so.

Output as `clustertop snapshot`'s: every string is node text, so the text form escapes it
(``wire.text.inert`` through ``snapshot.clean``) and cuts it, and ``--json`` is ``snapshot.as_json`` (NaN as
null, strings cut, bidi and zero-width characters escaped). Exit 0 with or without matches (a user with no
work is an answer), 1 when the store cannot be read, 2 without a store.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from clustertop import wire
from clustertop.cli.snapshot import (
    FRESH_DETAIL_HELP,
    HOST_LIMIT,
    _demo_store,
    as_json,
    clean,
    gib,
    host,
    num,
    pct,
    read_detail,
)
from clustertop.read.energy import Use, decode_ledgers, windows
from clustertop.read.people import Item, Work, find
from clustertop.wire.text import known

#: Text output: a command line is cut here.
CMD_LIMIT = 120
HEADINGS = {"gpu-process": "GPU processes", "process": "processes", "pod": "pods", "container": "containers",
            "task": "launched tasks", "celery-task": "Celery tasks"}


def add_parser(sub: Any, add_store: Any) -> None:
    w = sub.add_parser("who", help="one user's work across the cluster: processes, GPUs, pods, containers, tasks")
    add_store(w)
    w.add_argument("user", metavar="USER", help="a user name as the nodes' passwd gives it, or a numeric uid")
    w.add_argument("--ns", metavar="NAME", help="only processes in that Kubernetes namespace's pods (and what is "
                                              "joined through them), as the people screen's :ns; all: every one")
    w.add_argument("--json", action="store_true", help="JSON: every item and the totals")
    w.add_argument("--demo", action="store_true", help="of the demo cluster (embedded store)")
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--fresh-detail", action="store_true", help=FRESH_DETAIL_HELP)


def namespace_arg(text: str | None) -> str | None:
    """``--ns``'s namespace (None: every one); ValueError in words for what cannot be a namespace's name."""
    from clustertop.control.k8s_names import is_namespace

    if text is None or text == "all":
        return None
    if not is_namespace(text):
        raise ValueError(f"--ns {clean(text, 70)}: not a namespace name (an RFC 1123 label: a-z, 0-9, '-', "
                         "at most 63 characters)")
    return text


def run(args: Any) -> int:
    try:
        namespace = namespace_arg(getattr(args, "ns", None))
    except ValueError as e:
        print(f"clustertop who: {e}", file=sys.stderr)
        return 2
    if args.demo:
        client, source, clock = _demo_store(args.seed)
    elif args.redis:
        from clustertop.store import connect, redact

        client = connect(args.redis, args.redis_password_file, args.redis_ca_file)
        source, clock = redact(args.redis), time.time
    else:
        print("clustertop who: no store: give --redis URL (or set CLUSTERTOP_REDIS), or --demo", file=sys.stderr)
        return 2
    from redis.exceptions import RedisError

    try:
        # Every node's processes from its last full snapshot (GPU processes from this tick's brief), its age in
        # detail_age_s; with --fresh-detail from a full snapshot of its latest tick: asked for, waited for a little.
        state = read_detail(client, clock, args.fresh_detail)
        hosts = [v.host for v in state.nodes if v.snap is not None]
        p = client.pipeline(transaction=False)
        for h in hosts:
            p.get(wire.energy_key(h))  # one GET per host: each key has its host's hash tag
        ledgers, energy_errors = decode_ledgers(zip(hosts, p.execute(), strict=True))
    except (RedisError, OSError) as e:
        print(f"clustertop who: store {source} unreachable: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    # No ledger read at all: energy unknown (None), not "none recorded".
    work = find(args.user, state.nodes, state.cluster, windows(ledgers, state.ts) if ledgers else None,
                namespace=namespace)
    out = sys.stdout
    if args.json:
        out.buffer.write(as_json(as_document(work, source, energy_errors)) + b"\n")
    else:
        out.write(as_text(work, energy_errors))
    out.flush()
    return 0


def _use(u: Use | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"kwh": known(u.kwh, 0, 1e12), "gpu_hours": known(u.gpu_hours, 0, 1e12), "hosts": sorted(u.hosts)}


def as_document(w: Work, source: str, energy_errors: dict[str, str]) -> dict[str, Any]:
    return {
        "source": source, "user": w.user, "nodes_searched": w.nodes, "nodes_without_processes": w.no_procs,
        "gpus": [{"host": h, "index": i} for h, i in w.gpus], "vram_bytes": w.vram_bytes,
        "vram_unknown": w.vram_unknown,
        "energy": {"hour": _use(w.energy_hour), "day": _use(w.energy_day)} if w.energy_read else None,
        "energy_errors": energy_errors, "items": [dataclasses.asdict(i) for i in w.items], "items_omitted": w.omitted,
        # --ns: the namespace searched (null: every one) and the user's processes left out, by why; energy is
        # the user's in every namespace whatever it is.
        "namespace": w.namespace, "hidden": dict(w.hidden),
    }


def _energy_line(w: Work, energy_errors: dict[str, str]) -> str:
    def one(label: str, u: Use | None) -> str:
        if u is None:
            return f"{label} none recorded"
        kwh, gh = known(u.kwh, 0, 1e12), known(u.gpu_hours, 0, 1e12)
        return (f"{label} {'N/A' if kwh is None else format(kwh, '.2f')} kWh, "
                f"{'N/A' if gh is None else format(gh, '.2f')} GPU-hours")

    line = (f"energy: {one('last hour', w.energy_hour)}; {one('last 24 h', w.energy_day)}" if w.energy_read
            else "energy: N/A (no energy ledger read)")
    if w.namespace is not None and w.energy_read:
        line += " (in every namespace: the ledgers keep none)"
    if energy_errors:
        line += f" (ledgers unreadable on {len(energy_errors)} nodes: {', '.join(host(h) for h in sorted(energy_errors)[:5])})"
    return line


def item_line(i: Item) -> str:
    where = host(i.host) if i.host else "(no node)"
    parts = [f"{where:<{min(HOST_LIMIT, 16)}}"]
    if i.kind == "gpu-process":
        parts += [f"GPU {num(i.gpu)}", f"pid {num(i.pid)}", f"{gib(i.vram_bytes)} GiB VRAM", clean(i.name, CMD_LIMIT)]
    elif i.kind == "process":
        parts += [f"pid {num(i.pid)}", f"cpu {pct(i.cpu_pct)}", f"rss {gib(i.rss_bytes)} GiB", clean(i.name, CMD_LIMIT)]
    elif i.kind == "pod":
        parts += [clean(i.name, 200), clean(i.state, 30), f"{num(i.gpus)} GPUs requested"]
    elif i.kind == "task":
        parts += [f"task {clean(i.ident, 40)}", f"template {clean(i.name, 80)}", f"pid {num(i.pid)}"]
    else:
        parts += [clean(i.name, 200)]
        if i.state:
            parts.append(clean(i.state, 30))
    tail = [clean(x, 200) for x in (i.owner,) if x]
    if i.via:
        tail.append(f"via {clean(i.via, 100)}")
    if i.node_state != "up":
        tail.append(f"node {clean(i.node_state, 10)}")
    return "  " + "  ".join(parts) + (f"  ({'; '.join(tail)})" if tail else "")


def scope_line(w: Work) -> str:
    """"ns ml: only processes in its pods; hidden: 3 processes outside pods (without --ns: shown)"."""
    hidden = w.hidden_text()
    tail = f"; hidden: {', '.join(hidden)} (without --ns: shown)" if hidden else "; none of theirs hidden"
    return f"ns {clean(w.namespace or '', 63)}: only processes in its pods{tail}"


def as_text(w: Work, energy_errors: dict[str, str]) -> str:
    user = clean(w.user, 100)
    counts = ", ".join(f"{w.count(k)} {HEADINGS[k]}" for k in HEADINGS)
    lines = [f"{user}: {counts}"]
    vram = f"{gib(w.vram_bytes)} GiB VRAM" + (f" (+{w.vram_unknown} processes of unknown VRAM)" if w.vram_unknown else "")
    lines.append(f"GPUs held now: {len(w.gpus)} on {len({h for h, _ in w.gpus})} nodes, {vram}")
    lines.append(_energy_line(w, energy_errors))
    if w.namespace is not None:
        lines.append(scope_line(w))
    for kind, heading in HEADINGS.items():
        rows = [i for i in w.items if i.kind == kind]
        if rows:
            lines.append(f"{heading}:")
            lines += [item_line(i) for i in rows]
    if w.omitted:
        lines.append(f"… and {w.omitted} more items, not listed")
    note = f"searched {w.nodes} nodes"
    if w.no_procs:
        shown = ", ".join(host(h) for h in w.no_procs[:10])
        note += f"; no process list from {len(w.no_procs)} ({shown}{', …' if len(w.no_procs) > 10 else ''}): unknown there"
    lines.append(note)
    return "\n".join(lines) + "\n"
