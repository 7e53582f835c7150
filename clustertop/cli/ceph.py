"""Provides Ceph operator actions from the shell: ``clustertop ceph snap | clone | flatten | flag | osd``.

Thin: argument handling, confirmation and printing; the actions are clustertop.control.ceph's, with the
operator's own dashboard credentials (--ceph-url, --ceph-user, --ceph-password-file; env
CLUSTERTOP_CEPH_URL, _USER, _PASSWORD_FILE, _CA_FILE), never the agent's. Every action asks y/N first
(--yes skips it) and is written to the operator's audit stream as the other steering commands are
(clustertop.cli.steer: same refusals, exit codes and ``where="cli"`` audit entry).

    clustertop ceph snap create|protect|unprotect|rm POOL/IMAGE@SNAP
    clustertop ceph clone POOL/IMAGE@SNAP POOL/NEW
    clustertop ceph flatten POOL/IMAGE
    clustertop ceph flag set|unset noout|norebalance
    clustertop ceph osd out|in ID
    clustertop ceph host NODE                 (a read: its OSDs and data, whether noout is set)
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from clustertop.cli.steer import Usage, _confirm, _finish, _say, operator_flags, plain


def add_parsers(sub: Any, add_store: Any) -> None:
    env = os.environ.get

    def common(p: argparse.ArgumentParser) -> None:
        add_store(p)
        operator_flags(p)
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        # The variable names are clustertop.control.ceph.ENV's (the dashboard's [ceph] reads the same ones).
        urls = [u for u in (env("CLUSTERTOP_CEPH_URL") or "").split(",") if u]
        p.add_argument("--ceph-url", action="append", metavar="URL", default=None,
                       help="a ceph-mgr dashboard URL; repeat for every mgr (env CLUSTERTOP_CEPH_URL, "
                            "comma-separated)")
        p.set_defaults(ceph_env_urls=urls)
        p.add_argument("--ceph-user", default=env("CLUSTERTOP_CEPH_USER"), metavar="NAME",
                       help="your dashboard user (env CLUSTERTOP_CEPH_USER)")
        p.add_argument("--ceph-password-file", default=env("CLUSTERTOP_CEPH_PASSWORD_FILE"), metavar="FILE",
                       help="file holding your dashboard password (env CLUSTERTOP_CEPH_PASSWORD_FILE)")
        p.add_argument("--ceph-ca-file", default=env("CLUSTERTOP_CEPH_CA_FILE"), metavar="FILE",
                       help="CA certificate of the dashboard's TLS (env CLUSTERTOP_CEPH_CA_FILE)")
        p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                       help="wait this long for an RBD task (a flatten copies every object)")

    ceph = sub.add_parser("ceph", help="Ceph: RBD snapshots, clone, flatten, noout/norebalance, OSD out/in")
    cs = ceph.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = cs.add_parser("snap", help="create, protect, unprotect or delete (rm) an RBD snapshot")
    common(p)
    p.add_argument("op", choices=["create", "protect", "unprotect", "rm"])
    p.add_argument("target", metavar="POOL/IMAGE@SNAP")
    p = cs.add_parser("clone", help="clone a protected snapshot into a new image")
    common(p)
    p.add_argument("target", metavar="POOL/IMAGE@SNAP")
    p.add_argument("child", metavar="POOL/NEW")
    p = cs.add_parser("flatten", help="copy a clone's parent data into it, so it has no parent")
    common(p)
    p.add_argument("target", metavar="POOL/IMAGE")
    p = cs.add_parser("flag", help="set or unset a cluster flag for maintenance")
    common(p)
    p.add_argument("op", choices=["set", "unset"])
    p.add_argument("flag", choices=["noout", "norebalance"])
    p = cs.add_parser("osd", help="mark an OSD out (its data moves away) or in")
    common(p)
    p.add_argument("op", choices=["out", "in"])
    p.add_argument("osd_id", metavar="ID", help="the OSD's number (3 or osd.3)")
    p = cs.add_parser("host", help="before a node's maintenance: its OSDs, the data they hold, the flags")
    common(p)
    p.add_argument("node", metavar="NODE", help="the host name Ceph knows the node by")


def _osd_id(text: str) -> int:
    t = text.removeprefix("osd.")
    if not t.isascii() or not t.isdigit() or len(t) > 9:
        raise Usage(f"expected an OSD number (3 or osd.3), got {text!r}")
    return int(t)


def run(args: argparse.Namespace) -> int:
    if args.read_only and args.action != "host":  # "host" only reads
        _say(args, "refused: read-only mode (--read-only or CLUSTERTOP_READ_ONLY) refuses every action")
        return 1
    try:
        return _run(args)
    except Usage as e:
        _say(args, plain(e))
        return 2


def _run(args: argparse.Namespace) -> int:
    from clustertop.config import ConfigError
    from clustertop.control import ceph as cc

    # Everything the command line says is checked before any credential is read or any mgr is asked.
    try:
        spec, snap = cc.parse_spec(args.target, snap=args.action in ("snap", "clone")) \
            if args.action in ("snap", "clone", "flatten") else ("", None)
        if args.action == "clone":
            cc.parse_spec(args.child, snap=False)
    except cc.SpecError as e:
        raise Usage(str(e)) from None
    osd = _osd_id(args.osd_id) if args.action == "osd" else None
    if args.action == "host" and not args.node.strip():
        raise Usage("expected a host name")
    urls = args.ceph_url or args.ceph_env_urls
    if not urls:
        raise Usage("no Ceph dashboard: pass --ceph-url URL (every mgr) or set CLUSTERTOP_CEPH_URL")
    try:
        settings = cc.settings_from(urls, args.ceph_user, args.ceph_password_file, args.ceph_ca_file,
                                    timeout_s=min(30.0, args.timeout))
    except ConfigError as e:
        # The checks are the collector's ([collectors.ceph] keys): name this command's flag instead.
        key = (e.key or "").rpartition(" ")[2].split("[")[0]
        flag = {"urls": "--ceph-url", "username": "--ceph-user", "password_file": "--ceph-password-file",
                "ca_file": "--ceph-ca-file", "token_file": "--ceph-password-file"}.get(key, key or "Ceph access")
        raise Usage(f"{flag}: {plain(e.problem)}") from None

    if args.action == "host":
        return _host(args, cc.CephControl(settings, task_wait_s=args.timeout))
    if args.action == "snap":
        what, target = f"snap {args.op}", f"{spec}@{snap}"
        question = f"{'delete' if args.op == 'rm' else args.op} snapshot {plain(target)}?"
    elif args.action == "clone":
        what, target = "clone", f"{spec}@{snap} -> {args.child}"
        question = f"clone {plain(spec)}@{plain(snap)} into new image {plain(args.child)}?"
    elif args.action == "flatten":
        what, target = "flatten", spec
        question = f"flatten {plain(spec)}?"
    elif args.action == "flag":
        what, target = f"flag {args.op} {args.flag}", args.flag
        question = f"{args.op} the cluster flag {args.flag}?"
    else:
        what, target = f"osd {args.op}", f"osd.{osd}"
        question = f"mark osd.{osd} {args.op}?"
    warning = cc.WARNINGS.get(what)
    if warning:
        print(f"note: {warning}")
    if not _confirm(args, question):
        return 1

    ctl = cc.CephControl(settings, task_wait_s=args.timeout)
    try:
        if args.action == "snap":
            assert snap is not None
            if args.op == "create":
                r = ctl.snap_create(spec, snap)
            elif args.op in ("protect", "unprotect"):
                r = ctl.snap_protect(spec, snap, args.op == "protect")
            else:
                r = ctl.snap_remove(spec, snap)
        elif args.action == "clone":
            assert snap is not None
            r = ctl.clone(spec, snap, args.child)
        elif args.action == "flatten":
            r = ctl.flatten(spec)
        elif args.action == "flag":
            r = ctl.set_flag(args.flag, args.op == "set")
        else:
            assert osd is not None
            r = ctl.osd_mark(osd, args.op)
    finally:
        ctl.close()
    return _finish(args, "ceph." + what.replace(" ", "_"), target, r.ok, r.text)


def _host(args: argparse.Namespace, ctl: Any) -> int:
    """A read: which OSDs the node carries and how much data, and whether noout is set. Not audited."""
    from clustertop.collectors.ceph import CephError
    from clustertop.dashboard.fmt import bytes_

    try:
        osds, flags = ctl.host_osds(args.node)
    except CephError as e:
        _say(args, plain(e))
        return 1
    finally:
        ctl.close()
    node = plain(args.node)
    if not osds:
        print(f"{node}: no OSDs (Ceph places none on a host of this name)")
        return 0
    used = [o.used_bytes for o in osds]
    total = "N/A" if any(u is None for u in used) else bytes_(sum(u for u in used if u is not None))
    print(f"{node}: {len(osds)} OSD{'s' if len(osds) != 1 else ''}, {total} of data")
    for o in osds:
        state = f"{'up' if o.up else 'down' if o.up is False else 'N/A'}/" \
                f"{'in' if o.in_ else 'out' if o.in_ is False else 'N/A'}"
        pgs = "N/A" if o.pgs is None else o.pgs
        print(f"  osd.{o.id}  {state:<8} used {bytes_(o.used_bytes)} of {bytes_(o.total_bytes)}, {pgs} PGs")
    if "noout" in flags:
        print("noout is set: its OSDs stay in while the node is down; unset it afterwards "
              "(clustertop ceph flag unset noout)")
    else:
        print("noout is not set: if the node is down longer than mon_osd_down_out_interval its OSDs are marked "
              "out and their data moves; before a drain or reboot: clustertop ceph flag set noout")
    return 0

