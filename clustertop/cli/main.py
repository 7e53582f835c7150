"""Provides the command line: one parser, subcommands dispatched lazily.

Each subcommand imports only what it needs: `clustertop agent` never loads Textual, the
dashboard never loads psutil or NVML (a test checks both in a subprocess).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from clustertop import __version__
from clustertop.config import ConfigError

SUBCOMMANDS = ("dashboard", "demo", "agent", "snapshot", "simulate", "keygen", "kill", "launch", "tasks", "serve",
               "k8s", "celery", "dask", "container", "ceph")


def _add_store(p: argparse.ArgumentParser, env: bool = True) -> None:
    """``env=False``: the command applies the environment itself (clustertop.config.environment, between
    its file and its flags), so an unset flag must stay None here."""
    get = os.environ.get if env else (lambda _name: None)
    p.add_argument(
        "--redis",
        metavar="URL",
        default=get("CLUSTERTOP_REDIS"),
        help="Redis URL (redis://, rediss://, unix://, redis+sentinel://HOST[,HOST...]/MASTER; any node of a "
             "Redis Cluster); env CLUSTERTOP_REDIS",
    )
    p.add_argument(
        "--redis-password-file",
        metavar="FILE",
        default=get("CLUSTERTOP_REDIS_PASSWORD_FILE"),
        help="read the Redis password from FILE (never from the command line)",
    )
    p.add_argument(
        "--redis-ca-file", metavar="FILE", default=get("CLUSTERTOP_REDIS_CA_FILE"),
        help="CA bundle for rediss://",
    )


# Dashboard and demo flags: no defaults here. Defaults live in dashboard.settings.DashboardConfig,
# under the config file and CLUSTERTOP_<KEY>; a flag that is not given is None (False for on/off).
def _add_view(p: argparse.ArgumentParser) -> None:
    p.add_argument("--theme", help="theme name (env CLUSTERTOP_THEME)")
    p.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    p.add_argument("--wall", action="store_true", help="wall display mode (implies --read-only)")
    p.add_argument("--ascii", action="store_true", help="plain ASCII drawing characters")
    p.add_argument("--refresh", type=float, metavar="SECONDS", help="refresh interval (default 1)")
    p.add_argument("--page-seconds", type=float, metavar="SECONDS",
                   help="wall: seconds per page before the next (0: no rotation; default 20)")


def _add_control(p: argparse.ArgumentParser) -> None:
    """Job control from the dashboard's keys: the operator's key and credentials (never the agents')."""
    p.add_argument("--key", metavar="FILE",
                   help="operator private key for signed commands to agents (env CLUSTERTOP_KEY)")
    p.add_argument("--operator", help="name in the audit trail (default: user@host)")
    p.add_argument("--kubeconfig", metavar="FILE", help="the operator's kubeconfig (default: $KUBECONFIG)")
    p.add_argument("--k8s-context", metavar="NAME", help="kubeconfig context")
    p.add_argument("--k8s-templates", metavar="DIR",
                   help="directory of Kubernetes Job templates (*.yaml) for the launcher")
    p.add_argument("--celery-broker", metavar="URL", help="Celery broker for revoke/terminate and pool grow/shrink")
    p.add_argument("--celery-backend", metavar="URL", help="Celery result backend: retry re-sends a task's arguments "
                                                           "from there (workers with result_extended)")
    p.add_argument("--celery-broker-keyprefix", metavar="PREFIX",
                   help="the broker's global_keyprefix (Celery's broker_transport_options), Redis only")
    p.add_argument("--celery-backend-keyprefix", metavar="PREFIX",
                   help="the result backend's global_keyprefix (result_backend_transport_options), Redis only")
    p.add_argument("--dask-scheduler", metavar="URL", help="Dask scheduler dashboard URL for retiring workers")
    p.add_argument("--known-nodes", metavar="FILE",
                   help="enrolled node keys (default: ~/.config/clustertop/known_nodes; `clustertop enrol` writes it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clustertop",
        description="The whole GPU/ML cluster as one machine. Without a subcommand: the dashboard "
        "(of --redis URL, or of this machine alone when no store is configured).",
    )
    parser.add_argument("--version", action="version", version=f"clustertop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("dashboard", help="the dashboard (the default)")
    _add_store(d, env=False)
    _add_view(d)
    d.add_argument("--config", metavar="FILE",
                   help="dashboard TOML config (default: $XDG_CONFIG_HOME/clustertop/config.toml if it exists)")
    _add_control(d)

    demo = sub.add_parser("demo", help="a simulated cluster on an embedded store (no Redis needed)")
    _add_view(demo)
    demo.add_argument("--seed", type=int, default=1, help="random seed (same seed, same cluster)")
    demo.add_argument("--nodes", type=int, default=None, help="scale the cluster to N nodes")

    a = sub.add_parser("agent", help="the node agent (run by systemd)")
    _add_store(a, env=False)
    a.add_argument("--config", metavar="FILE", help="agent TOML config (env CLUSTERTOP_CONFIG)")
    a.add_argument("--once", action="store_true", help="one tick, then exit")
    a.add_argument("--dry-run", action="store_true", help="print the snapshot as JSON; no store")
    a.add_argument("--show-key", action="store_true",
                   help="print this node's name, key fingerprint and public key (for `clustertop enrol`), then exit")
    a.add_argument("--proc-root", metavar="DIR", help="read /proc from DIR")
    a.add_argument("--sys-root", metavar="DIR", help="read /sys from DIR")
    a.add_argument("--node", metavar="NAME", help="node name (default: hostname)")
    a.add_argument("--interval", type=float, metavar="SECONDS", help="tick interval")
    a.add_argument("--read-only", action="store_true", default=None, help="refuse every command")
    a.add_argument("--log-level", default=os.environ.get("CLUSTERTOP_LOG_LEVEL", "info"))
    a.add_argument("--task-exec", action="store_true",
                   help="run by clustertop-task@.service only: start one task sent by the agent (agents/taskexec.py)")

    s = sub.add_parser("snapshot", help="print the cluster once (text, or --json)")
    _add_store(s)
    s.add_argument("--json", action="store_true", help="JSON: every node and the cluster totals")
    s.add_argument("--demo", action="store_true", help="of the demo cluster (embedded store)")
    s.add_argument("--seed", type=int, default=1)
    from clustertop.cli.snapshot import FRESH_DETAIL_HELP  # (who's parser imports it anyway)

    s.add_argument("--fresh-detail", action="store_true", help=FRESH_DETAIL_HELP)

    srv = sub.add_parser("serve", help="the dashboard in a browser (textual-serve), e.g. for a wall kiosk")
    _add_store(srv)
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                     help="address to listen on (default: loopback only; anything else is public)")
    srv.add_argument("--font-size", type=int, default=None, metavar="PX",
                     help="terminal font size in the page (default: picked from the browser's viewport, "
                          "about 180 columns on a 4K screen, never below 16 px)")
    srv.add_argument("--demo", action="store_true", help="serve the demo cluster instead of --redis")
    srv.add_argument("--wall", action="store_true", help="serve the wall display (read-only)")
    srv.add_argument("--read-only", action="store_true", help="hide and refuse every action (forced off loopback)")
    srv.add_argument("--theme", default=os.environ.get("CLUSTERTOP_THEME"), help="theme name")
    srv.add_argument("--page-seconds", type=float, default=20.0, metavar="SECONDS", help="wall: seconds per page")
    srv.add_argument("--public-url", metavar="URL", help="the URL browsers reach the server at (behind a proxy)")

    sim = sub.add_parser("simulate", help="simulated agents against a real Redis")
    _add_store(sim)
    sim.add_argument("--nodes", type=int, default=15)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--interval", type=float, default=1.0)
    sim.add_argument("--gpus-per-node", type=int, default=None, help="override GPUs per GPU node")
    sim.add_argument("--full-every", type=float, default=None, metavar="SECONDS",
                     help="seconds between full snapshots nobody wants, as agents' [agent] full_every "
                          "(default 15; 0: every tick)")
    sim.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after")
    sim.add_argument("--ticks", type=int, default=None,
                     help="stop after N ticks; exit 1 if the store stays unreachable for --give-up seconds")
    sim.add_argument("--give-up", type=float, default=None, metavar="SECONDS",
                     help="with --ticks: how long the store may stay unreachable (default 30); without "
                          "--ticks simulate retries for ever")
    sim.add_argument("--procs", type=int, default=1, metavar="P",
                     help="split the nodes over P processes (same seed-derived cluster, a slice each)")
    sim.add_argument("--summary-key", metavar="FILE",
                     help="write bucket summaries signed with this private key (clustertop keygen NAME: the "
                          "folder is NAME; enrol its .pub as NAME in the dashboards' known_nodes)")
    sim.add_argument("--no-summaries", action="store_true", help="write no bucket summaries (to compare)")

    # Job control (keygen, kill, launch, tasks): parsers live with their code, imported only here.
    from clustertop.cli.jobs import add_parsers as add_control_parsers

    add_control_parsers(sub, _add_store)
    # Kubernetes, Celery and Dask steering from the shell (k8s, celery, dask): clustertop/steer.py.
    from clustertop.cli.steer import add_parsers as add_steer_parsers

    add_steer_parsers(sub, _add_store)
    # Ceph operator actions (RBD snapshots/clones, noout, OSD out/in): clustertop/cli/ceph.py.
    from clustertop.cli.ceph import add_parsers as add_ceph_parsers

    add_ceph_parsers(sub, _add_store)
    from clustertop.cli.acl import add_parsers as add_acl_parsers

    add_acl_parsers(sub)
    from clustertop.cli.audit import add_parsers as add_audit_parsers

    add_audit_parsers(sub, _add_store)
    # The systemd units and sample configs shipped in the wheel: clustertop/cli/unitfiles.py.
    from clustertop.cli.unitfiles import add_parser as add_systemd_parser

    add_systemd_parser(sub)
    # The whole cluster as Prometheus metrics: clustertop/cli/exporter.py.
    from clustertop.cli.exporter import add_parser as add_exporter_parser

    add_exporter_parser(sub, _add_store)
    # One user's work across the cluster (issue 19): clustertop/cli/who.py.
    from clustertop.cli.who import add_parser as add_who_parser

    add_who_parser(sub, _add_store)
    # Alerts evaluated by the agents, and Alertmanager silences: clustertop/cli/alerts.py.
    from clustertop.cli.alerts import add_parsers as add_alerts_parsers

    add_alerts_parsers(sub, _add_store)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `clustertop --redis URL` means the dashboard: insert the default subcommand.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["dashboard", *argv]
    args = parser.parse_args(argv)
    # Installed without the command's extra: say which one, exit 2 (clustertop/cli/extras.py).
    from clustertop.cli import extras

    missing = extras.check(args.command)
    if missing:
        print(missing, file=sys.stderr)
        return extras.EXIT_MISSING
    try:
        if args.command == "agent":
            from clustertop.agents.main import run as run_agent

            return run_agent(args)
        if args.command == "simulate":
            from clustertop.sim.simulate import run as run_simulate

            return run_simulate(args)
        if args.command == "snapshot":
            from clustertop.cli.snapshot import run as run_snapshot

            return run_snapshot(args)
        if args.command in ("keygen", "kill", "launch", "tasks", "container"):
            from clustertop.cli.jobs import run as run_control

            return run_control(args)
        if args.command in ("k8s", "celery", "dask"):
            from clustertop.cli.steer import run as run_steer

            return run_steer(args)
        if args.command == "ceph":
            from clustertop.cli.ceph import run as run_ceph

            return run_ceph(args)
        if args.command in ("enrol", "audit"):
            from clustertop.cli.audit import run as run_audit

            return run_audit(args)
        if args.command == "acl":
            from clustertop.cli.acl import run as run_acl

            return run_acl(args)
        if args.command == "systemd":
            from clustertop.cli.unitfiles import run as run_unitfiles

            return run_unitfiles(args)
        if args.command == "exporter":
            from clustertop.cli.exporter import run as run_exporter

            return run_exporter(args)
        if args.command == "who":
            from clustertop.cli.who import run as run_who

            return run_who(args)
        if args.command == "alerts":
            from clustertop.cli.alerts import run as run_alerts

            return run_alerts(args)
        if args.command == "serve":
            from clustertop.cli.serve import run as run_serve

            return run_serve(args)
        if args.command == "demo":
            from clustertop.cli.modes import run_demo

            return run_demo(args)
        from clustertop.cli.modes import run_dashboard

        return run_dashboard(args)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as e:
        module = extras.known_missing(e)
        if module is None:
            raise  # not a library an extra brings: a bug, keep the traceback
        print(extras.hint(args.command, [module]), file=sys.stderr)
        return extras.EXIT_MISSING
    except ConfigError as e:
        print(f"clustertop: {e}", file=sys.stderr)
        return 2


