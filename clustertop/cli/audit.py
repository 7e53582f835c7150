"""`clustertop enrol` pins a node's key; `clustertop audit verify` checks every audit stream's chain.

Both work on the local trust anchors (known_nodes, operator public keys), never on what Redis claims:
Redis is where an attacker writes, so it can suggest a key (``enrol --from-redis`` shows its fingerprint
and asks) but never decide one.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from clustertop import wire
from clustertop.control import signing, trust
from clustertop.wire.text import inert


def add_parsers(sub: Any, add_store: Any) -> None:
    e = sub.add_parser("enrol", help="pin a node's public key (known_nodes), as ssh pins a host's")
    add_store(e)
    e.add_argument("node", help="the node's name, as its agent publishes it")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--key", metavar="FILE", help="the node's public key file (node.pub, or its node.key's .pub)")
    src.add_argument("--from-redis", action="store_true",
                     help="take the key the node announces in Redis: compare the fingerprint before you say yes")
    e.add_argument("--known-nodes", metavar="FILE", default=None, help="default: ~/.config/clustertop/known_nodes")
    e.add_argument("--yes", action="store_true", help="do not ask (scripts that checked the fingerprint otherwise)")

    a = sub.add_parser("audit", help="the audit trail: `audit verify` checks every stream's signatures and chain")
    add_store(a)
    a.add_argument("action", choices=["verify"])
    a.add_argument("--known-nodes", metavar="FILE", default=None, help="default: ~/.config/clustertop/known_nodes")
    a.add_argument("--operator-key", action="append", default=[], metavar="PUB",
                   help="an operator's public key (NAME.pub: its entries are in audit:op:NAME); repeat")


def _connect(args: argparse.Namespace) -> Any:
    if not args.redis:
        raise ValueError("no store: pass --redis URL or set CLUSTERTOP_REDIS (the agents' Redis)")
    from clustertop.store import connect

    return connect(args.redis, args.redis_password_file, args.redis_ca_file, timeout_s=5.0)


def enrol(args: argparse.Namespace) -> int:
    known = trust.KnownNodes.load(args.known_nodes)
    if args.key:
        key = signing.load_public(args.key)
        how = f"from {args.key}"
    else:
        client = _connect(args)
        raw = client.get(wire.nodekey_key(args.node))
        if raw is None:
            raise ValueError(f"{args.node} announces no key in Redis (is its agent running, and signing?)")
        key = trust.public_from_b64(raw.decode("ascii", "replace").strip(), f"Redis {wire.nodekey_key(args.node)}")
        how = "as announced in Redis"
    print(f"{args.node}: Ed25519 key {signing.fingerprint(key)} ({how})")
    if args.from_redis and not args.yes:
        # Redis is writable by every node: the announcement is a claim. On the node itself,
        # `clustertop agent --show-key` prints the fingerprint to compare with.
        if not sys.stdin.isatty():
            raise ValueError("not a terminal: compare the fingerprint on the node, then run again with --yes")
        if input("Is this the fingerprint the node itself shows? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not enrolled")
            return 1
    known.add(args.node, key, comment=f"enrolled-by={os.environ.get('USER', '?')}")
    print(f"enrolled {args.node} in {known.path}")
    return 0


def verify(args: argparse.Namespace) -> int:
    known = trust.KnownNodes.load(args.known_nodes)
    operators: dict[str, signing.PublicKey] = {}
    for path in args.operator_key:
        name = os.path.basename(path).removesuffix(".pub")
        operators[name] = signing.load_public(path)
    client = _connect(args)
    streams = sorted(_audit_streams(client))
    bad = 0
    for stream in streams:
        text = stream.decode() if isinstance(stream, bytes) else stream
        host, name = wire.name_in(text, wire.node_audit_key), wire.name_in(text, wire.operator_audit_key)
        if host is not None:
            key = known.get(host)
            writer = f"node {host}" + ("" if key else " (not enrolled: nothing can be checked)")
        elif name is not None:
            key = operators.get(name)
            writer = f"operator {name}" + ("" if key else " (no --operator-key for it)")
        else:
            key, writer = None, "nobody (not an audit stream clustertop writes)"
        rep = trust.verify_stream(text, client.xrange(text),
                                  lambda e, k=key: k if k is not None and e.key_id == k.key_id else None)
        trimmed = f", from seq {rep.first_seq}" if rep.first_seq and rep.first_seq > 1 else ""
        status = "ok" if not rep.problems else f"{len(rep.problems)} problem(s)"
        print(f"{inert(text, limit=200)}: {rep.entries} entries by {inert(writer, limit=200)}{trimmed}: {status}")
        if rep.problems:
            bad += 1
            print(f"  first: {inert(rep.problems[0], limit=400)}")
    if not streams:
        print("no audit streams yet")
    return 1 if bad else 0


def _audit_streams(client: Any) -> set[Any]:
    out = set()
    for key in client.scan_iter(match=f"{wire.PREFIX}:audit:*", count=1000, _type="stream"):
        out.add(key)
    return out


def run(args: argparse.Namespace) -> int:
    try:
        return enrol(args) if args.command == "enrol" else verify(args)
    except (ValueError, signing.KeyFileError) as e:  # KeyFileError is a ValueError; named for the reader
        print(f"clustertop {args.command}: {inert(e, limit=400)}", file=sys.stderr)  # may quote a key from Redis
        return 2

