"""`clustertop acl`: a Redis ACL file that gives every node, operator and viewer its own user.

Redis is shared by every node, so a node's credentials must reach only that node's keys: a compromised
node can then write its own snapshot and results, never another's, and can read or acknowledge no
other node's commands. The file is generated, not hand-written, because the key layout
(``clustertop.wire``) is long and one missed pattern is a hole.

What each user gets (Redis 7 ACL: ``%R~``/``%W~`` key permissions, and selectors in parentheses that
grant a command only on the keys listed inside them):
- ``node-HOST``: its own node/brief/digest/hist (and its 1m/10m tiers)/seal/nodekey/energy keys, its command stream (read, ack), its
  results and audit streams (append), its replay markers; ZADD on the shared node index (a hint the
  dashboard never trusts) and nothing else there; WATCH/MULTI for leases, no EVAL (a Lua loop stalls
  Redis for everyone), no DEL but of its own markers and leases, no XDEL/XTRIM.
  ``--cluster-node HOST`` also lets it hold leases and publish cluster payloads (Ceph, queues, Kubernetes).
  ``--alert-node HOST`` lets it evaluate alerts for the cluster: read every node's digest, brief and full
  snapshot and the cluster payloads (MGET, ZRANGE of the index), hold the "alerts" lease, and write the
  alert state (``ct:v1:alerts``, which it signs; readers check the signature against known_nodes).
  ``--summary-node HOST`` lets it fold bucket summaries (issue 18): read every node's digest, brief and full
  snapshot and the index, hold the ``summary:*`` leases, and write (SET, DEL) the ``ct:v1:summary:*`` keys,
  which it signs; nothing else of others'. No other user may write a summary key.
- ``operator-NAME``: reads everything under ct:v1:, sends commands (XADD on command streams), reads
  results (XREAD), appends to its own audit stream only, forgets a node (ZREM on the index).
- ``viewer-NAME``: reads only, and asks nodes for full snapshots (SET on ``ct:v1:want:*``, as operators may).
- every node also reads the PTTL of its own want key (and may write no want key at all).
- ``admin-NAME`` (optional): everything, the only user that may delete or trim audit streams.
- ``default``: off. A server whose default user stays on would let anyone past every rule above.

Passwords: one file per user in ``--password-dir`` (created with mode 0600 and 32 random bytes if
missing); the ACL file holds only their SHA-256 (``#hash``), so it can be shown and versioned.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from typing import Any

from clustertop import wire
from clustertop.control import trust
from clustertop.wire.alerts import ALERTS_KEY, ALERTS_LEASE
from clustertop.wire.summary import SUMMARY_KEYS, SUMMARY_LEASES

#: Names end up inside ACL key patterns, where * ? [ ] \ are glob syntax: a node called "*" would be
#: granted every node's keys. So a name must be what known_nodes accepts (``trust.HOST``): letters,
#: digits, dot, dash, underscore.
NAME = trust.HOST

#: What every user may do on connect. redis-py also sends CLIENT SETINFO and ignores its refusal; Redis
#: 7.0 does not know that subcommand, and an ACL file naming it would not load there.
#: Both clients ask CLUSTER INFO at first use (cluster mode is detected, not configured); on a Redis
#: Cluster they read the slot map (CLUSTER SLOTS / SHARDS), send ASKING on an ASK redirect, and redis-py
#: reads the command table (COMMAND) to find keys; ROLE checks that a Sentinel-named master is one.
CONNECT = ("+ping +hello +auth +select +client|setname +quit +reset "
           "+cluster|info +cluster|slots +cluster|shards +cluster|nodes +asking +readonly +role +command")
READ = "+get +mget +exists +ttl +pttl +type +zrange +zcard +zscore +xrange +xrevrange +xlen +xread +xinfo|stream"


#: A reader asks nodes for their full snapshots (``read.want``): SET on want keys, the one write a viewer has.
#: Writing one costs the node at most a full snapshot every tick (today's cost before the byte budget), and
#: agents ignore a want that does not expire within ``wire.WANT_MAX_MS``.
WANT = f"(%W~{wire.want_key('*')} +set)"


def check_name(kind: str, name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r}: use letters, digits, '.', '-', '_' (at most 63); "
                         "anything else would be a glob inside the ACL's key patterns")
    return name


def node_rules(host: str, cluster: bool, alerts: bool = False, summaries: bool = False) -> str:
    own = [wire.node_key(host), wire.brief_key(host), wire.digest_key(host), wire.hist_key(host),
           wire.seal_key(host), wire.nodekey_key(host), wire.cmd_key(host), wire.results_key(host),
           wire.node_audit_key(host), wire.energy_key(host)]
    parts = [
        "resetkeys resetchannels -@all", CONNECT,
        # its own keys: write its payloads, read and acknowledge its own command stream, append results/audit
        "+get +set +pexpire +xadd +xack +xreadgroup +xgroup|create +xrange +xrevrange +xlen "
        "+watch +unwatch +multi +exec +discard",
        " ".join(f"~{k}" for k in own),
        # its history tier blocks (wire/tiers.py): read back on start, written whole, expiring by themselves
        f"(~{wire.tier_pattern(host)} +get +mget +set)",
        # replay markers: set, read, expire, and nothing of any other node
        f"(~{wire.seen_key(host, '')}* +get +set +pexpire +del)",
        # the shared node index: ZADD only (SET would turn it into a string and blind every dashboard)
        f"(%W~{wire.NODES_KEY} +zadd)",
        # whether a reader wants its full snapshot: the PTTL of its own want key, read only (readers write it)
        f"(%R~{wire.want_key(host)} +pttl)",
    ]
    if cluster:
        parts.append(f"(~{wire.PREFIX}:lease:* +get +set +pexpire +del +watch)")
        parts.append(f"(~{wire.PREFIX}:cluster:* +get +set)")
    if alerts:
        # the evaluator reads the cluster as a dashboard does (read.Reader), and nothing else of others'
        reads = " ".join(f"%R~{wire.PREFIX}:{kind}:*" for kind in ("node", "brief", "digest", "cluster"))
        parts.append(f"({reads} +mget +get)")
        parts.append(f"(%R~{wire.NODES_KEY} +zrange)")
        parts.append(f"(~{wire.lease_key(ALERTS_LEASE)} +get +set +pexpire +del +watch)")
        parts.append(f"(~{ALERTS_KEY} +get +set)")
    if summaries:
        # the folder reads its buckets' nodes as the evaluator reads them (read.Reader; a bucket's hosts are any
        # hosts: CRC-32 of the name), holds the summary leases, and writes the summaries, nothing else of others'
        reads = " ".join(f"%R~{wire.PREFIX}:{kind}:*" for kind in ("node", "brief", "digest", "cluster"))
        parts.append(f"({reads} +mget +get)")
        parts.append(f"(%R~{wire.NODES_KEY} +zrange)")
        parts.append(f"(~{wire.lease_key(SUMMARY_LEASES)} +get +set +pexpire +del +watch)")
        parts.append(f"(~{SUMMARY_KEYS} +get +set +del)")
    return " ".join(parts)


def operator_rules(name: str) -> str:
    return " ".join([
        "resetkeys resetchannels -@all", CONNECT, READ, "+scan +watch +unwatch +multi +exec +discard",
        f"%R~{wire.PREFIX}:*",
        f"(~{wire.PREFIX}:cmd:* +xadd)",
        f"(~{wire.operator_audit_key(name)} +xadd +watch)",
        f"(%W~{wire.NODES_KEY} +zrem)",
        WANT,
    ])


def viewer_rules() -> str:
    return " ".join(["resetkeys resetchannels -@all", CONNECT, READ, "+scan", f"%R~{wire.PREFIX}:*", WANT])


def admin_rules() -> str:
    return "~* &* +@all"


def render(users: list[tuple[str, str]], hashes: dict[str, str]) -> str:
    """The ACL file: one ``user`` line per (user, rules), passwords as SHA-256."""
    # No comment line: redis-server refuses an ACL file with anything but `user` lines.
    lines = ["user default off resetkeys -@all"]
    for user, rules in users:
        lines.append(f"user {user} on #{hashes[user]} {rules}")
    return "\n".join(lines) + "\n"


def users_for(nodes: list[str], cluster_nodes: list[str], operators: list[str], viewers: list[str],
              admins: list[str], alert_nodes: list[str] | None = None,
              summary_nodes: list[str] | None = None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    alert_nodes = alert_nodes or []
    summary_nodes = summary_nodes or []
    for host in dict.fromkeys([*nodes, *cluster_nodes, *alert_nodes, *summary_nodes]):
        out.append((f"node-{check_name('node', host)}", node_rules(host, host in cluster_nodes, host in alert_nodes,
                                                                  host in summary_nodes)))
    out += [(f"operator-{check_name('operator', n)}", operator_rules(n)) for n in operators]
    out += [(f"viewer-{check_name('viewer', n)}", viewer_rules()) for n in viewers]
    out += [(f"admin-{check_name('admin', n)}", admin_rules()) for n in admins]
    return out


def password_for(directory: str, user: str) -> str:
    """The user's password from DIR/<user>, created (0600, random) if missing; a readable-by-others file is refused."""
    path = os.path.join(directory, user)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            raise ValueError(f"{path}: mode {mode:04o} lets others read a Redis password; chmod 600 {path}") from None
        with open(path, encoding="utf-8") as f:
            pw = f.read().strip()
        if not pw:
            raise ValueError(f"{path}: empty password file") from None
        return pw
    pw = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(pw + "\n")
    return pw


def add_parsers(sub: Any) -> None:
    a = sub.add_parser("acl", help="print a Redis ACL file: a user per node, operator and viewer")
    a.add_argument("--node", action="append", default=[], metavar="HOST", help="a node's user (repeat)")
    a.add_argument("--cluster-node", action="append", default=[], metavar="HOST",
                   help="a node that may also hold leases and publish cluster payloads (repeat)")
    a.add_argument("--alert-node", action="append", default=[], metavar="HOST",
                   help="a node that may also evaluate alerts for the cluster (reads every node; repeat)")
    a.add_argument("--summary-node", action="append", default=[], metavar="HOST",
                   help="a node that may also fold bucket summaries ([summaries]; reads every node; repeat)")
    a.add_argument("--operator", action="append", default=[], metavar="NAME", help="an operator's user (repeat)")
    a.add_argument("--viewer", action="append", default=[], metavar="NAME", help="a read-only user (repeat)")
    a.add_argument("--admin", action="append", default=[], metavar="NAME",
                   help="a user with every right, the only one that may delete or trim audit streams")
    a.add_argument("--password-dir", required=True, metavar="DIR",
                   help="one password file per user (created 0600 if missing)")


def run(args: argparse.Namespace) -> int:
    try:
        users = users_for(args.node, args.cluster_node, args.operator, args.viewer, args.admin, args.alert_node,
                          args.summary_node)
        if not users:
            raise ValueError("no users: give at least one --node, --operator, --viewer or --admin")
        os.makedirs(args.password_dir, mode=0o700, exist_ok=True)
        hashes = {u: hashlib.sha256(password_for(args.password_dir, u).encode()).hexdigest() for u, _ in users}
    except (ValueError, OSError) as e:
        print(f"clustertop acl: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(render(users, hashes))
    return 0
