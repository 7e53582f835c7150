"""Provides ``clustertop k8s rollout history|status|restart|undo`` and ``k8s cordon|uncordon|drain``.

Thin, as the rest of clustertop/cli/steer.py: the actions are clustertop/control/k8s_rollout.py and
k8s_nodes.py. Each changing action asks Kubernetes ``can_i`` first, shows what it will do (the undo's
target template and change-cause; the drain's evict / ignore / refuse list with the PodDisruptionBudgets),
asks y/N (or --yes), and writes the same audit entry as the other ``k8s`` actions.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from clustertop.cli.steer import _confirm, _finish, _k8s_may_check, _say, _split_target, plain

ACTIONS = ("rollout", "cordon", "uncordon", "drain", "events", "describe")


def add_parsers(ks: Any, kube: Any, yes: Any) -> None:
    for name, text in (("events", "the events of a pod, deployment, job or node"),
                       ("describe", "a pod, deployment, job or node: key fields, conditions, events")):
        p = ks.add_parser(name, help=text)
        kube(p)
        p.add_argument("kind", type=str.lower, choices=["pod", "deployment", "job", "node"])
        p.add_argument("target", metavar="NS/NAME|NODE")
    p = ks.add_parser("rollout", help="a deployment's rollout: history, status, restart, undo")
    kube(p)
    p.add_argument("step", choices=["history", "status", "restart", "undo"])
    p.add_argument("target", metavar="NS/DEPLOY")
    p.add_argument("--to-revision", type=int, default=None, metavar="N", help="undo: this revision (default: previous)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="status: wait up to SECONDS for the rollout to finish")
    yes(p)
    for name, text in (("cordon", "mark a node unschedulable"), ("uncordon", "mark a node schedulable again")):
        p = ks.add_parser(name, help=text)
        kube(p)
        p.add_argument("node", metavar="NODE")
        yes(p)
    p = ks.add_parser("drain", help="cordon a node and evict its pods (PodDisruptionBudgets respected), "
                                    "after showing what would be evicted")
    kube(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("--force", action="store_true", help="also evict pods no controller manages (gone for good)")
    p.add_argument("--delete-local-data", action="store_true", help="also evict pods with emptyDir data")
    p.add_argument("--dry-run", action="store_true", help="show the plan only: change nothing")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="wait up to SECONDS for the evicted pods to leave the node (default 300; 0: do not wait)")
    yes(p)


def run(args: argparse.Namespace, ctl: Any) -> int:
    if args.action in ("events", "describe"):
        return _describe(args, ctl)
    if args.action == "rollout":
        return _rollout(args, ctl)
    return _node(args, ctl)


def _describe(args: argparse.Namespace, ctl: Any) -> int:
    from clustertop.control import k8s_describe as kd

    kind = {"pod": "Pod", "deployment": "Deployment", "job": "Job", "node": "Node"}[args.kind]
    if kind == "Node":
        ns, name = None, args.target
    else:
        ns, name = _split_target(args.target, f"the {args.kind}")
    if args.action == "events":
        if not _k8s_may_check(args, ctl, "list", "events", ns):
            return 1
        events = kd.object_events(ctl, kind, ns, name)
        lines = [e.text() for e in events] or ["no events (the API server keeps them about an hour)"]
    else:
        resource = {"Pod": "pods", "Deployment": "deployments", "Job": "jobs", "Node": "nodes"}[kind]
        if not _k8s_may_check(args, ctl, "get", resource, ns):
            return 1
        lines = kd.describe(ctl, kind, ns, name, with_events=ctl.can_i("list", "events", ns))
    for line in lines:
        print(plain(line))
    return 0


def _rollout(args: argparse.Namespace, ctl: Any) -> int:
    from clustertop.control import k8s_rollout as ro
    from clustertop.control.kubernetes import K8sControlError

    ns, name = _split_target(args.target, "the deployment")
    if args.step in ("history", "status"):
        if not _k8s_may_check(args, ctl, "get", "deployments", ns):
            return 1
        if args.step == "history":
            if not _k8s_may_check(args, ctl, "list", "replicasets", ns):
                return 1
            revs = ro.rollout_history(ctl, ns, name)
            print(f"deployment {plain(ns)}/{plain(name)}: {len(revs)} revision(s)")
            for r in revs:
                print(f"  {plain(r.text())}")
            return 0
        end = time.monotonic() + max(0.0, args.wait)
        while True:
            st = ro.rollout_status(ctl, ns, name)
            if st.done or st.failed or time.monotonic() >= end:
                break
            time.sleep(1.0)
        print(plain(st.text), file=sys.stdout if st.done else sys.stderr)
        return 0 if st.done else 1
    if not _k8s_may_check(args, ctl, "patch", "deployments", ns):
        return 1
    target = f"{ns}/{name}"
    if args.step == "restart":
        print(f"restart: every pod of deployment {plain(ns)}/{plain(name)} is replaced in a rolling update")
        if not _confirm(args, f"restart deployment {plain(ns)}/{plain(name)}?"):
            return 1
        try:
            stamp = ro.restart(ctl, ns, name)
        except K8sControlError as e:
            return _finish(args, "k8s.rollout_restart", target, False, str(e))
        return _finish(args, "k8s.rollout_restart", target, True, f"restarted deployment {ns}/{name} at {stamp}")
    plan = ro.plan_undo(ctl, ns, name, args.to_revision)
    print(f"undo: {plain(plan.text())}")
    if not _confirm(args, f"undo deployment {plain(ns)}/{plain(name)} to revision {plan.target.number}?"):
        return 1
    target = f"{ns}/{name} to revision {plan.target.number}"
    try:
        ro.undo(ctl, plan)
    except K8sControlError as e:
        return _finish(args, "k8s.rollout_undo", target, False, str(e))
    return _finish(args, "k8s.rollout_undo", target, True,
                   f"rolled back deployment {ns}/{name} to the template of revision {plan.target.number}")


def _node(args: argparse.Namespace, ctl: Any) -> int:
    from clustertop.control import k8s_nodes as kn
    from clustertop.control.kubernetes import K8sControlError

    node = args.node
    if not _k8s_may_check(args, ctl, "patch", "nodes", None):
        return 1
    if args.action in ("cordon", "uncordon"):
        want = args.action == "cordon"
        if not _confirm(args, f"{args.action} node {plain(node)}?"):
            return 1
        try:
            before = kn.set_unschedulable(ctl, node, want)
        except K8sControlError as e:
            return _finish(args, f"k8s.{args.action}", node, False, str(e))
        return _finish(args, f"k8s.{args.action}", node, True, f"{args.action}ed node {node} "
                       f"({'was' if before else 'was not'} cordoned before)")
    if not _k8s_may_check(args, ctl, "create", "pods/eviction", None):
        return 1
    plan = kn.plan_drain(ctl, node, force=args.force, delete_local_data=args.delete_local_data)
    for line in plan.lines():
        print(plain(line))
    if args.dry_run:
        print("--dry-run: nothing changed")
        return 0
    if not _confirm(args, f"cordon node {plain(node)} and evict {len(plan.evict)} pod(s)?"):
        return 1
    try:
        results = kn.drain(ctl, plan)
    except K8sControlError as e:
        return _finish(args, "k8s.drain", node, False, str(e))
    for r in results:
        print(plain(f"{'evicted' if r.ok else 'NOT evicted'} {r.namespace}/{r.name}: {r.text}"))
    bad = [r for r in results if not r.ok]
    summary = (f"drained node {node}: {len(results) - len(bad)} evicted, {len(bad)} not evicted, "
               f"{len(plan.refused)} refused, {len(plan.ignored)} ignored")
    waited, unsure = None, False  # unsure: whether the pods went is not known
    evicted = kn.evicted_pods(plan, results)
    if evicted and args.timeout > 0:
        try:
            waited = kn.wait_gone(ctl, node, evicted, args.timeout,
                                  progress=lambda gone, total: print(f"{gone} of {total} pod(s) gone", flush=True))
        except K8sControlError as e:
            summary += f"; could not watch the pods go: {e}"
            unsure = True
        except KeyboardInterrupt:  # the evictions happened: the audit entry is still written
            summary += "; the wait for the pods to go was interrupted"
            unsure = True
        if waited is not None:
            summary += f"; {waited.text()}"
            for p in waited.left:
                print(plain(f"STILL THERE {p.namespace}/{p.name} after {waited.waited_s:.0f} s"))
    left = bool(waited and waited.left)
    if bad or plan.refused or left:
        _say(args, "the node still has pods: see the NOT evicted / REFUSED / STILL THERE lines")
    return _finish(args, "k8s.drain", node, not bad and not plan.refused and not left and not unsure, summary)


def follow_logs(args: argparse.Namespace, ctl: Any, ns: str, name: str) -> int:
    """``k8s logs -f``: the last --tail lines, then each line as the pod prints it (control/k8s_logs.py),
    every line through ``plain``. Ends with the stream's own end ("stream ended ...", "pod gone"): exit 0;
    a refusal: exit 1; Ctrl-C: the stream is closed, exit 0. The state changes go to stderr."""
    from clustertop.control.k8s_logs import LogFollower

    f = LogFollower(ctl, ns, name, container=args.container, tail_lines=args.tail).start()
    said, dropped = "", 0
    try:
        while True:
            t = f.take()
            for line in t.lines:
                sys.stdout.write(plain(line) + "\n")
            sys.stdout.flush()
            if t.dropped > dropped:  # the pod printed faster than this terminal took lines
                _say(args, f"{t.dropped - dropped} line(s) dropped (more than {len(t.lines)} between two reads)")
                dropped = t.dropped
            if t.state != said:  # reconnects and the end, on stderr (not the first "following")
                if said or t.state not in ("following", "connecting…"):
                    _say(args, plain(t.state))
                said = t.state if t.state != "connecting…" else said
            if t.ended:
                return 0 if t.state.startswith(("stream ended", "pod gone")) else 1
            time.sleep(0.2)
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or the reader of a pipe (| head) went away
        return 0
    finally:
        f.close()
