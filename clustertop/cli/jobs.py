"""Provides job control from the shell: ``clustertop keygen | kill | launch | tasks``.

Thin: argument handling and printing only. Building, signing, sending and awaiting a command
live in collectors/commands_client.py, which the dashboard's action keys use too.

Exit codes: 0 every command done; 1 at least one refused or failed; 2 usage or setup problem
(no key, no store, bad key file); 3 at least one node did not answer in time.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from clustertop.control import commands as cc
from clustertop.control import signing
from clustertop.wire import schema


def add_parsers(sub: Any, add_store: Any) -> None:
    """The four subcommands, added to clustertop's parser (clustertop/cli.py)."""
    k = sub.add_parser("keygen", help="create an operator signing key pair (Ed25519)")
    k.add_argument("--out", required=True, metavar="DIR", help="directory for NAME.key (0600) and NAME.pub")
    k.add_argument("--name", default="operator", help="file name stem (default: operator)")

    def common(p: argparse.ArgumentParser) -> None:
        add_store(p)
        p.add_argument("--key", metavar="FILE", default=os.environ.get("CLUSTERTOP_KEY"),
                       help="operator private key (env CLUSTERTOP_KEY)")
        p.add_argument("--operator", default=None, help="name for the audit trail (default: user@host)")
        p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="wait this long for results")
        p.add_argument("--json", action="store_true", help="print results as JSON")

    kill = sub.add_parser("kill", help="signal a process on a node (re-checked by the node's agent)")
    common(kill)
    kill.add_argument("node")
    kill.add_argument("pid", type=int)
    kill.add_argument("--signal", default="TERM", type=str.upper, choices=["TERM", "KILL", "INT", "HUP"])
    kill.add_argument("--group", action="store_true", help="signal the process's whole process group")
    kill.add_argument("--start-ts", type=float, default=None, metavar="T",
                      help="the process's start time (default: from the node's latest snapshot)")
    kill.add_argument("--cmdline", default=None, metavar="PREFIX", help="also require this command-line prefix")

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


def _launch_args(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument("--node", action="append", metavar="NODE", **kw,
                   help="node to launch on (required); repeat for a multi-node job (ranks in the order given)")


def _launch_words(args: argparse.Namespace) -> tuple[str, list[str]] | None:
    """TEMPLATE and KEY=VALUE words, with any options that came after them applied to ``args``."""
    p = argparse.ArgumentParser(prog="clustertop launch", add_help=False)
    p.add_argument("template")
    p.add_argument("params", nargs="*")
    _launch_args(p, suppress=True)
    for flag, kw in (("--key", {}), ("--operator", {}), ("--timeout", {"type": float}),
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
    if args.command == "kill":
        return kill(args, client, key)
    if args.command == "launch":
        return launch(args, client, key)
    return tasks(args, client, key)


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
    start_ts = args.start_ts
    cmdline = args.cmdline
    if start_ts is None:
        # The operator acts on what they saw: the pid AND its start time from the node's snapshot.
        proc = cc.find_process(client, args.node, args.pid)
        if proc is None:
            print(f"clustertop kill: pid {args.pid} is not in {args.node}'s latest snapshot (or has no start "
                  "time there); refusing to guess which process that is. Pass --start-ts to insist.",
                  file=sys.stderr)
            return 1
        start_ts = proc.start_ts
    cmd = cc.build(args.node, "signal", cc.signal_args(args.pid, start_ts, args.signal, args.group, cmdline),
                   operator=args.operator)
    return _report(args, cc.submit(client, key, [cmd], args.timeout), [cmd])


def launch(args: argparse.Namespace, client: Any, key: signing.PrivateKey) -> int:
    params: dict[str, Any] = {}
    for item in args.params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"clustertop launch: parameter {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        params[name] = value  # text: the agent converts it to the param's declared type
    cmds = cc.launch_commands(args.template, args.node, params, operator=args.operator)
    return _report(args, cc.submit(client, key, cmds, args.timeout), cmds)


def tasks(args: argparse.Namespace, client: Any, key: signing.PrivateKey) -> int:
    if args.tail:
        cmd = cc.build(args.node, "tail", {"task": args.tail, "lines": args.lines}, operator=args.operator)
    elif args.stop:
        cmd = cc.build(args.node, "stop", {"task": args.stop}, operator=args.operator)
    else:
        cmd = cc.build(args.node, "list", {}, operator=args.operator)
    return _report(args, cc.submit(client, key, [cmd], args.timeout), [cmd])


def _report(args: argparse.Namespace, got: dict[str, schema.CommandResult | None],
            cmds: list[schema.Command]) -> int:
    code = 0
    if args.json:
        from clustertop import wire

        out = [wire.to_builtins(got[c.id]) if got[c.id] else {"id": c.id, "node": c.node, "status": "no answer"}
               for c in cmds]
        sys.stdout.write(wire.to_json(out).decode() + "\n")
    for c in cmds:
        res = got[c.id]
        if res is None:
            code = max(code, 3)
            if not args.json:
                print(f"{c.node}: no answer within {args.timeout:g} s (agent down, or not reading commands)")
            continue
        if not res.ok:
            code = max(code, 1)
        if not args.json:
            print(cc.result_line(res))
            if res.verb == "list":
                print(_task_table(res.tasks or []))
            if res.output is not None:
                print(res.output)
    return code


def _task_table(ts: list[schema.Task]) -> str:
    rows = [("TASK", "TEMPLATE", "STATE", "PID", "EXIT", "JOB/RANK", "ARGV")]
    for t in ts:
        job = f"{t.job}/{t.rank}" if t.job else "-"
        rows.append((t.id, t.template, t.state, _na(t.pid), _na(t.exit_code), job, " ".join(t.argv or [])[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows)


def _na(v: Any) -> str:
    return "N/A" if v is None else str(v)
