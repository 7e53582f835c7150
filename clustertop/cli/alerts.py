"""`clustertop alerts`: what fires, what is pending, what resolved, and the timeline, for people and scripts;
`clustertop alerts silence` / `silences` / `unsilence`: Alertmanager silences from the shell.

The list is the signed state the evaluating agent keeps in Redis (``ct:v1:alerts``), checked against
known_nodes: a state no enrolled node signed is refused (``--unverified`` shows it anyway, marked).
Exit status: 0 listed, 2 usage or store error, 3 no state to believe (nothing evaluates, or refused).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any

from clustertop import wire
from clustertop.wire.text import inert

STATES = ("firing", "pending", "resolved")


def add_parsers(sub: Any, add_store: Any) -> None:
    a = sub.add_parser("alerts", help="alerts evaluated by the agents (firing, pending, resolved); silences")
    add_store(a)
    a.add_argument("action", nargs="?", default="list", choices=["list", "silence", "silences", "unsilence"])
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--state", action="append", choices=STATES, help="only these states (repeat; default all)")
    a.add_argument("--events", type=int, default=0, metavar="N", help="also the last N timeline events")
    a.add_argument("--known-nodes", metavar="FILE", default=None, help="default: ~/.config/clustertop/known_nodes")
    a.add_argument("--unverified", action="store_true",
                   help="show a state no enrolled node signed (marked NOT verified)")
    a.add_argument("--alertmanager", action="append", default=[], metavar="URL",
                   help="for silence/silences/unsilence (repeat; env CLUSTERTOP_ALERTMANAGER, comma-separated)")
    a.add_argument("--rule", help="silence: the alert's rule (alertname)")
    a.add_argument("--node", help="silence: the alert's node (omit for a cluster-wide alert)")
    a.add_argument("--subject", help="silence: the alert's subject (gpu0, bond0, osd.3, ...)")
    a.add_argument("--duration", default="2h", help="silence: how long (30m, 2h, 1d; default 2h)")
    a.add_argument("--comment", default="", help="silence: why")
    a.add_argument("--by", default="", help="silence: createdBy (default: your login name)")
    a.add_argument("--id", help="unsilence: the silence id")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            return _list(args)
        return _silences(args)
    except (ValueError, OSError) as e:
        print(f"clustertop alerts: {e}", file=sys.stderr)
        return 2


def _list(args: argparse.Namespace) -> int:
    from clustertop.alerting import store
    from clustertop.control.trust import KnownNodes
    from clustertop.store import connect

    if not args.redis:
        raise ValueError("no store: pass --redis URL or set CLUSTERTOP_REDIS")
    client = connect(args.redis, args.redis_password_file, args.redis_ca_file, timeout_s=5.0)
    got = store.read(client, KnownNodes.load(args.known_nodes), time.time(), trust_unverified=args.unverified)
    wanted = set(args.state or STATES)
    if got.state is None:
        if args.json:
            print(json.dumps({"ok": False, "why": got.text}))
        else:
            print(f"clustertop alerts: {got.text}", file=sys.stderr)
        return 3
    st = got.state
    alerts = [r for r in st.alerts if r.state in wanted]
    events = st.events[-args.events:] if args.events > 0 else []
    if args.json:
        out = {"ok": True, "verified": got.verified, "evaluated_by": st.host, "ts": st.ts, "stale": got.stale,
               "about": got.text, "left_out": st.left_out, "alerts": wire.to_builtins(alerts), "events": wire.to_builtins(events),
               "delivery": wire.to_builtins(st.delivery)}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    print(got.text + ("  (STALE: the evaluator stopped writing)" if got.stale else ""))
    for d in st.delivery:
        how = "ok" if d.ok else ("not tried yet" if d.ok is None else f"FAILING ({d.failures}x): {inert(d.error, limit=200)}")
        print(f"alertmanager {inert(d.url, limit=120)}: {how}")
    if not alerts:
        print("no alerts" if wanted == set(STATES) else f"no {'/'.join(sorted(wanted))} alerts")
    for r in alerts:
        since = r.fired_ts if r.state == "firing" else r.resolved_ts if r.state == "resolved" else r.since_ts
        print(f"{r.state.upper():<9}{r.severity.upper():<9}{r.rule:<24}{inert(r.node or 'cluster', limit=40):<16}"
              f"{inert(r.subject, limit=40):<20}{_clock(since)}  {inert(r.message, limit=300)}")
    if st.left_out:
        print(f"... and {st.left_out} more alerts the evaluator could not fit in its state (the least important)")
    for e in events:
        print(f"{_clock(e.ts)}  {e.kind:<9}{e.severity.upper():<9}{e.rule:<24}{inert(e.node or 'cluster', limit=40)} "
              f"{inert(e.subject, limit=40)}  {inert(e.message, limit=300)}")
    return 0


def _clock(ts: float | None) -> str:
    if ts is None or not 0 < ts < 1e11:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _urls(args: argparse.Namespace) -> list[str]:
    from clustertop.alerting.config import url_problem

    urls = list(args.alertmanager) or [u.strip() for u in os.environ.get("CLUSTERTOP_ALERTMANAGER", "").split(",")
                                       if u.strip()]
    if not urls:
        raise ValueError("no Alertmanager: pass --alertmanager URL or set CLUSTERTOP_ALERTMANAGER")
    for u in urls:
        why = url_problem(u)
        if why:
            raise ValueError(f"--alertmanager {why}")
    return urls


def _silences(args: argparse.Namespace) -> int:
    from clustertop.alerting import alertmanager as am
    from clustertop.alerting.config import seconds

    urls = _urls(args)
    failed = 0
    if args.action == "silence":
        if not args.rule or args.subject is None:
            raise ValueError("silence needs --rule and --subject (and --node unless the alert is cluster-wide)")
        duration = seconds(args.duration)
        by = args.by or getpass.getuser()
        for u in urls:  # every Alertmanager of the cluster: they do not share silences unless clustered
            try:
                sid = am.create_silence(u, am.silence_matchers(args.rule, args.node, args.subject), duration, by,
                                        args.comment)
                print(f"{am.shown(u)}: silence {sid} until {_clock(time.time() + duration)}")
            except am.AlertmanagerError as e:
                print(f"clustertop alerts: {e}", file=sys.stderr)
                failed += 1
    elif args.action == "unsilence":
        if not args.id:
            raise ValueError("unsilence needs --id")
        for u in urls:
            try:
                am.expire_silence(u, args.id)
                print(f"{am.shown(u)}: silence {args.id} expired")
            except am.AlertmanagerError as e:
                print(f"clustertop alerts: {e}", file=sys.stderr)
                failed += 1
    else:
        rows: list[dict[str, Any]] = []
        for u in urls:
            try:
                for s in am.active_silences(u):
                    rows.append({"alertmanager": am.shown(u), "id": s.id, "matchers": s.matchers,
                                 "created_by": s.created_by, "comment": s.comment, "ends_ts": s.ends_ts})
            except am.AlertmanagerError as e:
                print(f"clustertop alerts: {e}", file=sys.stderr)
                failed += 1
        if args.json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        else:
            for r in rows:
                what = " ".join(f"{k}={inert(v, limit=60)}" for k, v in sorted(r["matchers"].items()))
                print(f"{r['id']}  until {_clock(r['ends_ts'])}  {what}  by {inert(r['created_by'], limit=40)}: "
                      f"{inert(r['comment'], limit=200)}")
            if not rows and not failed:
                print("no active silences")
    return 2 if failed else 0
