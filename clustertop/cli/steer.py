"""Provides job control of Kubernetes, Celery and Dask from the shell: ``clustertop k8s | celery | dask``.

Thin: argument handling, confirmation and printing only. The actions themselves are the ones the
dashboard's keys use (collectors/k8s_control.py, celery_control.py, dask_control.py), with the same
checks (Kubernetes ``can_i`` first, an impact text before a delete, a server dry run before a Job is
created) and the same audit entry (``where="cli"``).

Exit codes: 0 done; 1 refused (read-only, Kubernetes said no, operator declined, no terminal to ask
on) or failed; 2 usage or setup problem (no kubeconfig/broker/scheduler, bad template, bad NS/NAME).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from clustertop.config import parse_bool
from clustertop.wire.text import inert

#: A one-line message from the cluster (an error, a task id, a worker's reply) is cut here ("…").
PLAIN_LIMIT = 2000


class Usage(Exception):
    """A usage or setup problem: exit 2."""


def env_flag(value: str | None) -> bool:
    """An on/off environment variable; unset, empty or not a boolean is off (it is only the default of a
    flag, read while the parser is built, even for --help: no place to refuse it)."""
    try:
        return parse_bool(value or "")
    except ValueError:
        return False


def plain(text: Any, lines: bool = False) -> str:
    """Text from the cluster made inert for a terminal by ``wire.text.inert``, the one escaper: controls,
    bidi overrides and zero-width characters shown escaped ("\\x1b", "\\u202e"), never obeyed and
    never silently dropped. ``lines`` (a pod's log) keeps newlines and tabs and is not cut (``--tail``
    bounds it); one line is cut at PLAIN_LIMIT."""
    return inert(text, lines=lines, limit=None if lines else PLAIN_LIMIT)


# ---------------------------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------------------------


def operator_flags(p: argparse.ArgumentParser) -> None:
    """--operator, --key and --read-only: who acts and signs, on every command that steers (k8s, celery,
    dask, ceph), with the same environment variables the dashboard reads."""
    env = os.environ.get
    p.add_argument("--operator", default=env("CLUSTERTOP_OPERATOR"),
                   help="name in the audit trail when no --key signs it (default: your user name)")
    p.add_argument("--key", metavar="FILE", default=env("CLUSTERTOP_KEY"),
                   help="operator private key (env CLUSTERTOP_KEY): signs the audit entry, in audit:op:NAME")
    p.add_argument("--read-only", action="store_true", default=env_flag(env("CLUSTERTOP_READ_ONLY")),
                   help="refuse every action (env CLUSTERTOP_READ_ONLY=1)")


def add_parsers(sub: Any, add_store: Any) -> None:
    """``k8s``, ``celery`` and ``dask``, added to clustertop's parser (clustertop/cli.py)."""
    env = os.environ.get

    def common(p: argparse.ArgumentParser) -> None:
        add_store(p)
        operator_flags(p)

    def yes(p: argparse.ArgumentParser) -> None:
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    k8s = sub.add_parser("k8s", help="Kubernetes: delete, scale, create a Job, logs, rollout, cordon/drain, describe")
    ks = k8s.add_subparsers(dest="action", metavar="ACTION", required=True)

    def kube(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--kubeconfig", metavar="FILE", default=env("KUBECONFIG"),
                       help="the operator's kubeconfig (env KUBECONFIG)")
        p.add_argument("--context", metavar="NAME", default=env("CLUSTERTOP_K8S_CONTEXT"), help="kubeconfig context")
        p.add_argument("--namespace", "-n", default=None, metavar="NS",
                       help="namespace of a NAME given without NS/ (job: default the template's, else default)")

    p = ks.add_parser("delete", help="delete a pod or a job (its pods go with it), after showing the impact")
    kube(p)
    yes(p)
    p.add_argument("kind", choices=["pod", "job"])
    p.add_argument("target", metavar="NS/NAME")
    p = ks.add_parser("scale", help="set a deployment's replicas")
    kube(p)
    p.add_argument("target", metavar="NS/DEPLOY")
    p.add_argument("replicas", type=int, metavar="N")
    p = ks.add_parser("job", help="create a Job from a YAML template (server dry run shown first)")
    kube(p)
    p.add_argument("template", metavar="TEMPLATE.yaml")
    p.add_argument("params", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--dry-run", action="store_true", help="stop after the server dry run: create nothing")
    p = ks.add_parser("logs", help="print the end of a pod's log")
    kube(p)
    p.add_argument("target", metavar="NS/POD")
    p.add_argument("--tail", type=int, default=200, metavar="N", help="last N lines (default 200)")
    p.add_argument("--container", "-c", default=None, help="container name (pods with several)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing lines as the pod prints them (reconnects on a dropped stream; "
                        "ends when the container or the pod does, or on Ctrl-C)")
    p.add_argument("--previous", "-p", action="store_true",
                   help="the log of the container's previous instance, before its last restart (a crash loop)")
    from clustertop.cli import k8s_ops  # rollout history/status/restart/undo, cordon/uncordon/drain

    k8s_ops.add_parsers(ks, kube, yes)

    cel = sub.add_parser("celery", help="Celery: revoke/terminate a task, resize a pool, shut down, send")
    cs = cel.add_subparsers(dest="action", metavar="ACTION", required=True)

    def broker(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--broker", metavar="URL", default=env("CLUSTERTOP_CELERY_BROKER"),
                       help="the Celery broker (env CLUSTERTOP_CELERY_BROKER)")
        p.add_argument("--broker-keyprefix", metavar="PREFIX", default=env("CLUSTERTOP_CELERY_BROKER_KEYPREFIX"),
                       help="the broker's global_keyprefix, as in the app's broker_transport_options (Redis "
                            "only; env CLUSTERTOP_CELERY_BROKER_KEYPREFIX)")
        p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="wait for workers' replies")

    p = cs.add_parser("revoke", help="revoke a task; --terminate also kills it where it runs")
    broker(p)
    p.add_argument("task_id", metavar="TASK_ID")
    p.add_argument("--terminate", action="store_true", help="signal the pool process running it now")
    p.add_argument("--signal", default="TERM", type=str.upper, choices=["TERM", "KILL"])
    p = cs.add_parser("pool", help="grow (+N) or shrink (-N) a worker's pool")
    broker(p)
    p.add_argument("worker", metavar="WORKER")
    p.add_argument("delta", metavar="+N|-N")
    p = cs.add_parser("shutdown", help="warm shutdown of a worker")
    broker(p)
    yes(p)
    p.add_argument("worker", metavar="WORKER")
    p = cs.add_parser("retry", help="send an ended task again (a new id): name, args, kwargs and queue from the "
                                    "result backend (workers with result_extended), shown before it is sent")
    broker(p)
    yes(p)
    p.add_argument("--backend", metavar="URL", default=env("CLUSTERTOP_CELERY_BACKEND"),
                   help="the Celery result backend (env CLUSTERTOP_CELERY_BACKEND)")
    p.add_argument("--backend-keyprefix", metavar="PREFIX", default=env("CLUSTERTOP_CELERY_BACKEND_KEYPREFIX"),
                   help="the result backend's global_keyprefix, as in the app's result_backend_transport_options "
                        "(Redis only; env CLUSTERTOP_CELERY_BACKEND_KEYPREFIX)")
    p.add_argument("task_id", metavar="TASK_ID")
    p = cs.add_parser("send", help="send a task from a template (TOML or YAML)")
    broker(p)
    p.add_argument("template", metavar="TEMPLATE")
    p.add_argument("params", nargs="*", metavar="KEY=VALUE")

    dask = sub.add_parser("dask", help="Dask: retire a worker")
    ds = dask.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = ds.add_parser("retire", help="retire a worker (its data moves to the others first)")
    common(p)
    p.add_argument("address", metavar="ADDRESS", help="the worker's address (tcp://host:port)")
    p.add_argument("--scheduler", metavar="URL", default=env("CLUSTERTOP_DASK_SCHEDULER"),
                   help="the scheduler's dashboard URL (env CLUSTERTOP_DASK_SCHEDULER)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")


# ---------------------------------------------------------------------------------------------
# Shared: refusals, confirmation, audit
# ---------------------------------------------------------------------------------------------


def _say(args: argparse.Namespace, text: str) -> None:
    print(f"clustertop {args.command} {args.action}: {text}", file=sys.stderr)


def _split_target(text: str, what: str) -> tuple[str, str]:
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise Usage(f"expected {what} as NAMESPACE/NAME, got {text!r}")
    return ns, name


def _params(words: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise Usage(f"parameter {w!r}: expected KEY=VALUE")
        out[k] = v
    return out


def _confirm(args: argparse.Namespace, question: str) -> bool:
    """y/N on the terminal; never a guess when nobody is there to answer."""
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        _say(args, "refused: stdin is not a terminal, so nobody can confirm; pass --yes to act anyway")
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        print("cancelled: nothing done")
        return False
    return True


def _audit(args: argparse.Namespace, action: str, target: str, ok: bool, text: str) -> None:
    """One entry in the operator's own audit stream (audit:op:NAME), as the dashboard writes it but
    ``where="cli"``: chained and signed with --key, whose file name is NAME. Without a key the entry is
    still written, unsigned, under the --operator / user name, and every reader marks it UNVERIFIED."""
    if not args.redis:
        print("note: no store configured (--redis / CLUSTERTOP_REDIS): this action is not audited", file=sys.stderr)
        return
    import re

    from clustertop import wire
    from clustertop.control import commands as cc
    from clustertop.control import signing, trust
    from clustertop.store import connect
    from clustertop.wire import schema

    result = "ok" if ok else (text if text.startswith(("refused", "failed")) else f"failed: {text}")
    try:
        key = signing.load_private(args.key) if args.key else None
        name = cc.operator_name(key) if key else re.sub(r"[^A-Za-z0-9._-]", "_", (args.operator or
                                                                                 cc.default_operator().split("@")[0]))[:63]
        entry = schema.AuditEntry(ts=time.time(), actor=name, action=action[:40], target=target[:300],
                                  result=result[:500], where="cli")
        client = connect(args.redis, args.redis_password_file, args.redis_ca_file, timeout_s=5.0)
        try:
            stream = wire.operator_audit_key(name or "unknown")
            if key is not None:
                trust.append_audit(client, stream, entry, key)
            else:
                print("note: no operator key (--key / CLUSTERTOP_KEY): the audit entry is unsigned and will "
                      "read as UNVERIFIED", file=sys.stderr)
                client.xadd(stream, {"a": wire.encode(entry)}, maxlen=wire.AUDIT_MAXLEN, approximate=True)
        finally:
            client.close()
    except Exception as e:  # noqa: BLE001 - the action happened: say the trail did not, without a traceback
        print(f"warning: audit entry not written to the store: {type(e).__name__}: {plain(e)}", file=sys.stderr)


def _finish(args: argparse.Namespace, action: str, target: str, ok: bool, text: str) -> int:
    """Print the outcome, audit it, and return the exit code."""
    print(plain(text), file=sys.stdout if ok else sys.stderr)
    _audit(args, action, target, ok, text)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.read_only:
        _say(args, "refused: read-only mode (--read-only or CLUSTERTOP_READ_ONLY) refuses every action")
        return 1
    try:
        if args.command == "k8s":
            return run_k8s(args)
        if args.command == "celery":
            return run_celery(args)
        return run_dask(args)
    except Usage as e:
        _say(args, plain(e))
        return 2


# -- Kubernetes ---------------------------------------------------------------------------------

#: action -> (verb, resource) asked of the API server before anything is done.
K8S_CHECKS = {"delete pod": ("delete", "pods"), "delete job": ("delete", "jobs"),
              "scale": ("patch", "deployments/scale"), "job": ("create", "jobs"), "logs": ("get", "pods/log")}


def run_k8s(args: argparse.Namespace) -> int:
    from clustertop.control.kubernetes import K8sControl, K8sControlError, TemplateError

    try:
        ctl = K8sControl(args.kubeconfig, args.context)
    except K8sControlError as e:
        raise Usage(f"cannot use the kubeconfig: {plain(e)}") from None
    # -n NS with a bare NAME: NS/NAME, as kubectl -n (a node has no namespace; NS/NAME given wins).
    target = getattr(args, "target", None)
    if args.namespace and isinstance(target, str) and "/" not in target and getattr(args, "kind", None) != "node":
        args.target = f"{args.namespace}/{target}"
    try:
        if args.action == "job":
            return _k8s_job(args, ctl)
        from clustertop.cli import k8s_ops

        if args.action in k8s_ops.ACTIONS:
            return k8s_ops.run(args, ctl)
        ns, name = _split_target(args.target, "the target")
        key = f"delete {args.kind}" if args.action == "delete" else args.action
        if not _k8s_may(args, ctl, key, ns):
            return 1
        if args.action == "delete":
            return _k8s_delete(args, ctl, ns, name)
        if args.action == "scale":
            if args.replicas < 0:
                raise Usage(f"replicas must be >= 0, got {args.replicas}")
            target = f"{ns}/{name} to {args.replicas}"
            try:
                before, after = ctl.scale_deployment(ns, name, args.replicas)
            except K8sControlError as e:
                return _finish(args, "k8s.scale", target, False, str(e))
            was = "N/A" if before is None else before
            return _finish(args, "k8s.scale", target, True, f"scaled deployment {ns}/{name}: {was} -> {after} replicas")
        if args.follow and args.previous:
            raise Usage("--follow and --previous: a previous instance prints nothing more; give one of them")
        if args.follow:  # logs: a read, nothing to audit
            return k8s_ops.follow_logs(args, ctl, ns, name)
        try:  # logs: a read, nothing to audit
            text = ctl.pod_logs(ns, name, container=args.container, tail_lines=args.tail, previous=args.previous)
        except K8sControlError as e:
            _say(args, plain(e))
            return 1
        sys.stdout.write(plain(text, lines=True))
        if text and not text.endswith("\n"):
            sys.stdout.write("\n")
        return 0
    except TemplateError as e:
        raise Usage(plain(e)) from None
    except K8sControlError as e:  # a preview or permission check that could not be made
        _say(args, plain(e))
        return 1
    finally:
        ctl.close()


def _k8s_may(args: argparse.Namespace, ctl: Any, key: str, namespace: str) -> bool:
    verb, resource = K8S_CHECKS[key]
    return _k8s_may_check(args, ctl, verb, resource, namespace)


def _k8s_may_check(args: argparse.Namespace, ctl: Any, verb: str, resource: str, namespace: str | None) -> bool:
    """can_i first; a refusal is said with the verb, resource and namespace (None: cluster-wide)."""
    if ctl.can_i(verb, resource, namespace):
        return True
    where = f"in namespace {plain(namespace)}" if namespace else "cluster-wide"
    _say(args, f"refused: Kubernetes says you may not {verb} {resource} {where} (RBAC of the kubeconfig's user)")
    return False


def _k8s_delete(args: argparse.Namespace, ctl: Any, ns: str, name: str) -> int:
    from clustertop.control.kubernetes import K8sControlError

    preview, delete = ((ctl.preview_delete_pod, ctl.delete_pod) if args.kind == "pod"
                       else (ctl.preview_delete_job, ctl.delete_job))
    impact = preview(ns, name)
    print(f"impact: {plain(impact.text())}")
    if not _confirm(args, f"delete {args.kind} {plain(ns)}/{plain(name)}?"):
        return 1
    action, target = f"k8s.delete_{args.kind}", f"{ns}/{name}"
    try:
        # uid from the preview: the server refuses if the name now means another object.
        delete(ns, name, uid=impact.uid)
    except K8sControlError as e:
        return _finish(args, action, target, False, str(e))
    return _finish(args, action, target, True, f"deleted {args.kind} {ns}/{name}")


def _k8s_job(args: argparse.Namespace, ctl: Any) -> int:
    from clustertop.control.kubernetes import K8sControlError, fill_template, load_template, parse_param_text

    params = {k: parse_param_text(v) for k, v in _params(args.params).items()}
    # Fill locally first (nothing sent) to learn the namespace the permission check is about.
    body = fill_template(load_template(args.template), params)
    ns = args.namespace or (body.get("metadata") or {}).get("namespace") or "default"
    if not _k8s_may(args, ctl, "job", ns):
        return 1
    plan = ctl.prepare_job(args.template, params, namespace=args.namespace)
    print(f"server dry run: ok, job {plain(plan.namespace)}/{plain(plan.name)} would be created")
    for line in _job_summary(plan.preview):
        print(f"  {plain(line)}")
    if args.dry_run:
        print("--dry-run: nothing created")
        return 0
    target = f"{plan.namespace}/{plan.name}"
    try:
        made = ctl.create_job(plan)
    except K8sControlError as e:
        return _finish(args, "k8s.create_job", target, False, str(e))
    return _finish(args, "k8s.create_job", f"{made.namespace}/{made.name}", True,
                   f"created job {made.namespace}/{made.name} (uid {made.uid or 'N/A'})")


def _job_summary(job: dict[str, Any]) -> list[str]:
    """What the server would create, in a few lines: counts and each container's image and limits."""
    spec = job.get("spec") or {}
    lines = [f"parallelism {spec.get('parallelism', 'N/A')}, completions {spec.get('completions', 'N/A')}, "
             f"backoffLimit {spec.get('backoffLimit', 'N/A')}"]
    pod = ((spec.get("template") or {}).get("spec") or {})
    for c in pod.get("containers") or []:
        argv = " ".join(str(a) for a in (c.get("command") or []) + (c.get("args") or []))
        limits = ", ".join(f"{k}={v}" for k, v in ((c.get("resources") or {}).get("limits") or {}).items())
        lines.append(f"container {c.get('name')}: {c.get('image')}" + (f" {argv}" if argv else "")
                     + (f" [limits {limits}]" if limits else ""))
    return lines


# -- Celery ---------------------------------------------------------------------------------------


def run_celery(args: argparse.Namespace) -> int:
    if not args.broker:
        raise Usage("no broker: pass --broker URL or set CLUSTERTOP_CELERY_BROKER")
    from clustertop.control import celery as cc

    # An empty one (EnvironmentFile= writes unset variables so) is no prefix.
    prefixes = {"broker": args.broker_keyprefix or None, "backend": getattr(args, "backend_keyprefix", None) or None}
    for which, prefix in prefixes.items():
        # Before any broker talk: the celery collector's rule (empty, too long, control characters, not Redis).
        why = cc.keyprefix_problem(prefix, getattr(args, which, None) or "")
        if why:
            raise Usage(f"--{which}-keyprefix (or CLUSTERTOP_CELERY_{which.upper()}_KEYPREFIX): {plain(why)}")

    if args.action == "pool":
        m = re.fullmatch(r"([+-])([1-9][0-9]*)", args.delta)
        if not m:
            raise Usage(f"pool change must be +N or -N (N >= 1), got {args.delta!r}")
    tpl = None
    if args.action == "send":
        try:
            tpl = cc.load_template(args.template)
            values = _params(args.params)
            cc.resolve_params(tpl, values)  # a wrong parameter is a usage problem, before any broker talk
        except cc.TemplateError as e:
            raise Usage(str(e)) from None
    if args.action == "shutdown" and not _confirm(args, f"shut down worker {plain(args.worker)} "
                                                        "(it exits once its running tasks finish)?"):
        return 1
    ctl = cc.CeleryControl(args.broker, timeout=args.timeout, backend=getattr(args, "backend", None),
                           broker_keyprefix=prefixes["broker"] or "", backend_keyprefix=prefixes["backend"] or "")
    try:
        if args.action == "retry":
            return _retry(args, ctl)
        if args.action == "revoke":
            action = "celery.terminate" if args.terminate else "celery.revoke"
            r = ctl.revoke(args.task_id, terminate=args.terminate, signal=f"SIG{args.signal}")
            return _finish(args, action, args.task_id, r.ok, r.text)
        if args.action == "pool":
            n = int(args.delta[1:])
            grow = args.delta.startswith("+")
            r = ctl.pool_grow(args.worker, n) if grow else ctl.pool_shrink(args.worker, n)
            return _finish(args, "celery.pool_grow" if grow else "celery.pool_shrink", f"{args.worker} by {n}",
                           r.ok, r.text)
        if args.action == "shutdown":
            r = ctl.shutdown(args.worker)
            return _finish(args, "celery.shutdown", args.worker, r.ok, r.text)
        assert tpl is not None
        r = ctl.send(tpl, values)
        return _finish(args, "celery.send", f"{tpl.name} ({tpl.task})", r.ok, r.text)
    finally:
        ctl.close()


def _retry(args: argparse.Namespace, ctl: Any) -> int:
    """Read what the retry would send, show it all (escaped: the backend's content is anyone's who can write
    it), ask, send, audit. A refusal (no backend, no extended result) is audited too."""
    import json

    from clustertop.control import celery as cc

    plan = ctl.retry_plan(args.task_id)
    if not isinstance(plan, cc.RetryPlan):
        return _finish(args, "celery.retry", args.task_id, False, f"refused: {plan.text}")
    for k, v in (("task", plan.task_id), ("name", plan.name), ("queue", plan.queue or "(default routing)"),
                 ("state", plan.state or "N/A"), ("args", json.dumps(plan.args, ensure_ascii=False, default=repr)),
                 ("kwargs", json.dumps(plan.kwargs, ensure_ascii=False, default=repr))):
        print(f"{k:>6}  {plain(v)}")
    if not _confirm(args, f"send {plain(plan.name)} again with these arguments (a new task)?"):
        return 1
    r = ctl.retry(plan)
    return _finish(args, "celery.retry", f"{plan.name} {plan.task_id}", r.ok, r.text)


# -- Dask -----------------------------------------------------------------------------------------


def run_dask(args: argparse.Namespace) -> int:
    if not args.scheduler:
        raise Usage("no scheduler: pass --scheduler URL or set CLUSTERTOP_DASK_SCHEDULER")
    from clustertop.control.dask import retire_worker

    r = retire_worker(args.scheduler, args.address, timeout=args.timeout)
    return _finish(args, "dask.retire", args.address, r.ok, r.text)
