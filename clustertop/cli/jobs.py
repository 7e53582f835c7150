"""Provides job control from the shell: ``clustertop keygen | kill | launch | tasks``.

Thin: argument handling and printing only. Building, signing, sending and awaiting a command
live in clustertop/control/commands.py, which the dashboard's action keys use too.

Trust: a kill is built on the node's snapshot only when its seal verifies against the key pinned in
``--known-nodes`` (``clustertop enrol``); results count as done only when that key signed them. Every
field printed came from a node or a Redis writer and goes through ``wire.text.inert``.

Exit codes: 0 every command done, answered by the node itself; 1 at least one refused, failed or
answered unverifiably, a kill refused here (unverifiable snapshot, identity disagreeing), or results
that could not be read after sending; 2 usage or setup problem (no key, no store, bad key file);
3 at least one node did not answer in time.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.errors import describe
from clustertop.wire import schema
from clustertop.wire.text import inert


def add_parsers(sub: Any, add_store: Any) -> None:
    """The four subcommands, added to clustertop's parser (clustertop/cli.py)."""
    k = sub.add_parser("keygen", help="create an operator signing key pair (Ed25519)")
    k.add_argument("--out", required=True, metavar="DIR", help="directory for NAME.key (0600) and NAME.pub")
    k.add_argument("--name", default="operator", help="file name stem (default: operator)")

    def common(p: argparse.ArgumentParser) -> None:
        add_store(p)
        p.add_argument("--key", metavar="FILE", default=os.environ.get("CLUSTERTOP_KEY"),
                       help="operator private key (env CLUSTERTOP_KEY)")
        p.add_argument("--operator", default=None,
                       help="name the command carries, quoted in the node's audit entry (default: user@host); "
                            "your own audit stream is named by the key file (alice.key: audit:op:alice)")
        p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="wait this long for results")
        p.add_argument("--json", action="store_true", help="print results as JSON")
        p.add_argument("--known-nodes", metavar="FILE", default=None,
                       help="enrolled node keys that results (and kill targets) must be signed with "
                            "(default: ~/.config/clustertop/known_nodes; `clustertop enrol` writes it)")

    kill = sub.add_parser("kill", help="signal a process on a node (re-checked by the node's agent)")
    common(kill)
    kill.add_argument("node")
    kill.add_argument("pid", type=int)
    kill.add_argument("--signal", default="TERM", type=str.upper, choices=["TERM", "KILL", "INT", "HUP"])
    kill.add_argument("--group", action="store_true", help="signal the process's whole process group")
    kill.add_argument("--start-ticks", type=int, default=None, metavar="N",
                      help="for scripts: the process's start in clock ticks, /proc/PID/stat field 22; refused if "
                           "it disagrees with the node's signed snapshot (the identity always comes from there)")
    kill.add_argument("--cmdline", default=None, metavar="PREFIX",
                      help="require this command-line prefix (default: the first word of the signed command line)")
    kill.add_argument("--no-cmdline", action="store_true", help="do not require any command-line prefix")
    kill.add_argument("--unverified", action="store_true",
                      help="act even when the node's snapshot cannot be verified (not enrolled, unsigned, "
                           "altered): the process is then named by data anyone who can write to Redis could forge")

    launch = sub.add_parser("launch", help="launch a task from a template on one or more nodes")
    common(launch)
    _launch_args(launch)
    # argparse cannot take positionals on both sides of an option ("T --node N k=v"), so the rest
    # is re-read with parse_intermixed_args in launch().
    launch.add_argument("words", nargs=argparse.REMAINDER, metavar="TEMPLATE [KEY=VALUE ...]",
                        help="template name and its parameters")

    tasks = sub.add_parser("tasks", help="list, tail or stop launched tasks on a node")
    common(tasks)
    tasks.add_argument("--node", required=True)
    g = tasks.add_mutually_exclusive_group()
    g.add_argument("--tail", metavar="TASK", help="print the end of a task's output")
    g.add_argument("--stop", metavar="TASK", help="stop a task (TERM to its process group, KILL after a grace)")
    tasks.add_argument("--lines", type=int, default=50, help="with --tail: how many lines")

    ctr = sub.add_parser("container", help="list, stop, kill, restart or launch containers on a node "
                                           "(Docker Engine API, executed and re-checked by the node's agent)")
    common(ctr)
    ctr.add_argument("node")
    ctr.add_argument("action", choices=["ls", "launch", *cc.CONTAINER_ACTIONS])
    ctr.add_argument("words", nargs="*", metavar="CONTAINER | TEMPLATE [KEY=VALUE ...]",
                     help="stop/kill/restart: the container's name or id (as the node's signed snapshot lists it); "
                          "launch: a container template of the node and its parameters")
    ctr.add_argument("--signal", default="KILL", type=str.upper, choices=["TERM", "KILL", "INT", "HUP"],
                     help="kill: the signal (default KILL)")
    ctr.add_argument("--grace", type=int, default=10, metavar="SECONDS",
                     help="stop/restart: seconds between TERM and KILL (default 10)")
    ctr.add_argument("--unverified", action="store_true",
                     help="act even when the node's snapshot cannot be verified (the container is then named by "
                          "data anyone who can write to Redis could forge)")


def _launch_args(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument("--node", action="append", metavar="NODE", **kw,
                   help="node to launch on (required); repeat for a multi-node job (ranks in the order given)")
    p.add_argument("--master-addr", dest="master_addr", metavar="HOST", **kw,
                   help="multi-node job: MASTER_ADDR given to every rank (default: the first --node)")
    p.add_argument("--master-port", dest="master_port", type=int, metavar="PORT", **kw,
                   help=f"multi-node job: MASTER_PORT given to every rank (default {cc.DEFAULT_MASTER_PORT})")


def _launch_words(args: argparse.Namespace) -> tuple[str, list[str]] | None:
    """TEMPLATE and KEY=VALUE words, with any options that came after them applied to ``args``."""
    p = argparse.ArgumentParser(prog="clustertop launch", add_help=False)
    p.add_argument("template")
    p.add_argument("params", nargs="*")
    _launch_args(p, suppress=True)
    for flag, kw in (("--key", {}), ("--operator", {}), ("--timeout", {"type": float}), ("--known-nodes", {}),
                     ("--redis", {}), ("--redis-password-file", {}), ("--redis-ca-file", {})):
        p.add_argument(flag, default=argparse.SUPPRESS, **kw)  # type: ignore[arg-type]
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    try:
        more = p.parse_intermixed_args(args.words)
    except SystemExit:
        return None
    nodes = getattr(args, "node", None) or []
    for k, v in vars(more).items():
        if k == "node":
            nodes = nodes + v
        elif k not in ("template", "params"):
            setattr(args, k, v)
    args.node = nodes
    return more.template, more.params


def run(args: argparse.Namespace) -> int:
    if args.command == "keygen":
        return keygen(args)
    if args.command == "launch":
        words = _launch_words(args)
        if words is None:
            return 2
        args.template, args.params = words
        if not args.node:
            print("clustertop launch: --node NODE required", file=sys.stderr)
            return 2
    key = _key(args)
    if key is None:
        return 2
    client = _client(args)
    if client is None:
        return 2
    try:
        args.known = trust.KnownNodes.load(args.known_nodes)
        args.operator_name = cc.operator_name(key)  # names the operator's audit stream: checked before sending
    except ValueError as e:  # KeyFileError is a ValueError
        print(f"clustertop {args.command}: {inert(e, limit=400)}", file=sys.stderr)
        return 2
    try:
        if args.command == "kill":
            return kill(args, client, key)
        if args.command == "launch":
            return launch(args, client, key)
        if args.command == "container":
            return container(args, client, key)
        return tasks(args, client, key)
    except cc.NotAwaited as e:
        # After the fact: the command is on its way (and in the operator's audit stream), so never a
        # traceback that reads as "failed" and invites a second try.
        print(f"clustertop {args.command}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        import redis

        if not isinstance(e, redis.RedisError):
            raise
        print(f"clustertop {args.command}: nothing sent: {inert(describe(e), limit=400)}{_perm_hint(e, args)}",
              file=sys.stderr)
        return 2


def _perm_hint(e: BaseException, args: argparse.Namespace) -> str:
    if not cc.is_noperm(e):
        return ""
    return (f" (the Redis user must be operator-{args.operator_name}: it may read ct:v1:*, send commands and "
            f"append to its own audit stream only; `clustertop acl --operator {args.operator_name}` makes it)")


def keygen(args: argparse.Namespace) -> int:
    try:
        key_path, pub_path, kid = signing.generate(args.out, args.name)
    except signing.KeyFileError as e:
        print(f"clustertop keygen: {e}", file=sys.stderr)
        return 2
    print(f"private key: {key_path} (keep it here, mode 0600)")
    print(f"public key:  {pub_path} (copy to agents: [security] operator_keys)")
    print(f"key id:      {kid}")
    return 0


def _key(args: argparse.Namespace) -> signing.PrivateKey | None:
    if not args.key:
        print(f"clustertop {args.command}: no signing key: commands to agents must be signed. Pass --key FILE or "
              "set CLUSTERTOP_KEY (create one with `clustertop keygen --out DIR`).", file=sys.stderr)
        return None
    try:
        return signing.load_private(args.key)
    except signing.KeyFileError as e:
        print(f"clustertop {args.command}: {e}", file=sys.stderr)
        return None


def _client(args: argparse.Namespace) -> Any:
    if not args.redis:
        print(f"clustertop {args.command}: no store: pass --redis URL or set CLUSTERTOP_REDIS (the agents' Redis)",
              file=sys.stderr)
        return None
    from clustertop.store import connect

    return connect(args.redis, args.redis_password_file, args.redis_ca_file, timeout_s=5.0)


def kill(args: argparse.Namespace, client: Any, key: signing.PrivateKey) -> int:
    # The operator acts on the process the node itself named: pid, exact start ticks, uid and command
    # line from its snapshot, read with its seal and checked against the enrolled key. Redis alone is
    # no witness: anyone who can write there can relabel a process (or name another one).
    ident = cc.process_identity(client, args.node, args.pid, args.known)
    node = inert(args.node, limit=64)
    if not ident.verdict.ok:
        why = inert(ident.verdict.text, limit=300)
        if not args.unverified:
            print(f"clustertop kill: refused: {node}'s snapshot cannot be verified: {why}. The process would be "
                  "named by data anyone who can write to Redis could have forged. Enrol the node (clustertop enrol "
                  f"{node}) or, knowing this, pass --unverified.", file=sys.stderr)
            return 1
        print(f"clustertop kill: WARNING: acting on UNVERIFIED data ({why}): {ident.words()} is what Redis "
              "says, and nothing proves the node said it (--unverified)", file=sys.stderr)
    proc = ident.proc
    ticks = args.start_ticks
    if proc is not None and proc.start_ticks is not None:
        if ticks is not None and ticks != proc.start_ticks:
            print(f"clustertop kill: refused: --start-ticks {ticks} disagrees with {node}'s snapshot, where pid "
                  f"{args.pid} started at tick {proc.start_ticks}: not the process you mean", file=sys.stderr)
            return 1
        if args.cmdline is not None and not (proc.cmdline or "").startswith(args.cmdline):
            print(f"clustertop kill: refused: pid {args.pid}'s command line in {node}'s snapshot does not start "
                  f"with {inert(args.cmdline, limit=80)!r}: {inert(proc.cmdline, limit=120)!r}", file=sys.stderr)
            return 1
        sig_args = ident.signal_args(args.signal, args.group, args.cmdline, check_cmdline=not args.no_cmdline)
    elif ticks is not None:
        # A script that knows the exact identity (the agent compares it with ==); the snapshot lists
        # the top processes only. Nothing read from Redis names the process here.
        print(f"clustertop kill: pid {args.pid} is not in {node}'s snapshot with its start ticks; acting on the "
              f"start ticks given ({ticks})", file=sys.stderr)
        sig_args = cc.signal_args(args.pid, ticks, args.signal, args.group, args.cmdline)
    else:
        print(f"clustertop kill: {inert(ident.problem(), limit=400)}; refusing to guess which process that is "
              "(a script that knows it can pass --start-ticks)", file=sys.stderr)
        return 1
    if not args.json and proc is not None:
        print(f"signalling {ident.words()}" + (f" — {inert(ident.verdict.text, limit=200)}" if ident.verdict.ok
                                               else " — UNVERIFIED"))
    cmd = cc.build(args.node, "signal", sig_args, operator=args.operator)
    return _report(args, _submit(args, client, key, [cmd]), [cmd])


def container(args: argparse.Namespace, client: Any, key: signing.PrivateKey) -> int:
    """``clustertop container NODE ls|stop|kill|restart|launch ...``: like kill, the target comes from the
    node's own signed snapshot (full id and creation time), never from what was typed alone."""
    node = inert(args.node, limit=64)
    if args.action == "launch":
        if not args.words:
            print("clustertop container: launch needs a TEMPLATE", file=sys.stderr)
            return 2
        params: dict[str, Any] = {}
        for item in args.words[1:]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                print(f"clustertop container: parameter {inert(item, limit=80)!r} is not KEY=VALUE", file=sys.stderr)
                return 2
            params[name] = value  # text: the agent converts it to the param's declared type
        cmd = cc.build(args.node, "container.launch", {"template": args.words[0]}, params, operator=args.operator)
        return _report(args, _submit(args, client, key, [cmd]), [cmd])
    snap, verdict = trust.verified_snapshot(client, args.node, args.known)
    if not verdict.ok:
        why = inert(verdict.text, limit=300)
        if not args.unverified:
            print(f"clustertop container: refused: {node}'s snapshot cannot be verified: {why}. Enrol the node "
                  f"(clustertop enrol {node}) or, knowing this, pass --unverified.", file=sys.stderr)
            return 1
        print(f"clustertop container: WARNING: UNVERIFIED data ({why}) (--unverified)", file=sys.stderr)
    if snap is None or snap.containers is None:
        print(f"clustertop container: {node} reports no container engine", file=sys.stderr)
        return 1
    if args.action == "ls":
        print(_container_table(snap.containers))
        return 0
    if len(args.words) != 1:
        print(f"clustertop container: {args.action} needs one container (name or id)", file=sys.stderr)
        return 2
    found = cc.find_container(snap, args.words[0])
    if len(found) != 1:
        what = "no container" if not found else f"{len(found)} containers"
        print(f"clustertop container: {what} named {inert(args.words[0], limit=80)!r} in {node}'s snapshot",
              file=sys.stderr)
        return 1
    c = found[0]
    if c.created_ts is None:
        print(f"clustertop container: {node}'s snapshot has no creation time for {inert(c.id[:12])}: it can't be told "
              "apart from a container that reuses its id", file=sys.stderr)
        return 1
    cmd = cc.build(args.node, f"container.{args.action}",
                   cc.container_args(c, signal=args.signal if args.action == "kill" else None,
                                     grace=args.grace if args.action != "kill" else None), operator=args.operator)
    if not args.json:
        print(f"{args.action} container {inert(c.name, limit=60)} ({inert(c.id[:12])}, image {inert(c.image, limit=60)}) "
              f"on {node}" + ("" if verdict.ok else " — UNVERIFIED"))
    return _report(args, _submit(args, client, key, [cmd]), [cmd])


def _container_table(cs: schema.Containers) -> str:
    rows = [("ID", "NAME", "IMAGE", "STATE", "CPU%", "MEM", "RESTARTS", "STATUS")]
    for c in cs.containers or []:
        cpu = "N/A" if c.cpu_pct is None else f"{c.cpu_pct:.1f}"
        mem = "N/A" if c.mem_bytes is None else f"{c.mem_bytes / 2**20:.1f}M"
        rows.append((inert(c.id[:12]), inert(c.name, limit=40), inert(c.image, limit=40), inert(c.state, limit=12), cpu, mem,
                     _na(c.restarts), inert(c.status, limit=40)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if cs.total is not None and cs.total > len(cs.containers or []):
        lines.append(f"({cs.total - len(cs.containers or [])} more not listed)")
    return "\n".join(lines)


def _submit(args: argparse.Namespace, client: Any, key: signing.PrivateKey,
            cmds: list[schema.Command]) -> dict[str, cc.Answer | None]:
    return cc.submit(client, key, cmds, args.timeout, known=args.known, name=args.operator_name, where="cli")


def launch(args: argparse.Namespace, client: Any, key: signing.PrivateKey) -> int:
    params: dict[str, Any] = {}
    for item in args.params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"clustertop launch: parameter {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        params[name] = value  # text: the agent converts it to the param's declared type
    cmds = cc.launch_commands(args.template, args.node, params, operator=args.operator,
                              master_addr=getattr(args, "master_addr", None),
                              master_port=getattr(args, "master_port", None) or cc.DEFAULT_MASTER_PORT)
    return _report(args, _submit(args, client, key, cmds), cmds)


def tasks(args: argparse.Namespace, client: Any, key: signing.PrivateKey) -> int:
    if args.tail:
        cmd = cc.build(args.node, "tail", {"task": args.tail, "lines": args.lines}, operator=args.operator)
    elif args.stop:
        cmd = cc.build(args.node, "stop", {"task": args.stop}, operator=args.operator)
    else:
        cmd = cc.build(args.node, "list", {}, operator=args.operator)
    return _report(args, _submit(args, client, key, [cmd]), [cmd])


def _report(args: argparse.Namespace, got: dict[str, cc.Answer | None], cmds: list[schema.Command]) -> int:
    code = 0
    if args.json:
        from clustertop import wire

        out: list[dict[str, Any]] = []
        for c in cmds:
            ans = got[c.id]
            if ans is None:
                out.append({"id": c.id, "node": c.node, "status": "no answer"})
                continue
            # JSON escapes every control character itself; the verdict rides along, so a script that
            # reads "status": "done" reads "verified": false beside a forged one.
            out.append({**wire.to_builtins(ans.result), "verified": ans.verdict.ok, "verdict": ans.verdict.text})
        sys.stdout.write(wire.to_json(out).decode() + "\n")
    for c in cmds:
        ans = got[c.id]
        if ans is None:
            code = max(code, 3)
            if not args.json:
                print(f"{inert(c.node, limit=64)}: no answer within {args.timeout:g} s (agent down, or not reading "
                      "commands)")
            continue
        if not ans.ok:
            code = max(code, 1)
        if args.json:
            continue
        print(cc.answer_line(ans, c.node))
        res = ans.result
        if not ans.verdict.ok and (res.verb == "list" or res.output is not None):
            # Shown (escaped), but never as if the node had said it.
            print(f"--- below: NOT verified as {inert(c.node, limit=64)}'s own ---")
        if res.verb == "list":
            print(_task_table(res.tasks or []))
        if res.output is not None:
            print(inert(res.output, lines=True, limit=1_000_000))
    return code


def _task_table(ts: list[schema.Task]) -> str:
    rows = [("TASK", "TEMPLATE", "STATE", "PID", "EXIT", "JOB/RANK", "ARGV")]
    for t in ts:
        job = f"{t.job}/{t.rank}" if t.job else "-"
        rows.append((inert(t.id, limit=40), inert(t.template, limit=40), inert(t.state, limit=20), _na(t.pid),
                     _na(t.exit_code), inert(job, limit=40), inert(" ".join(t.argv or []), limit=60)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows)


def _na(v: Any) -> str:
    return "N/A" if v is None else inert(v, limit=20)
