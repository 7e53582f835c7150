"""Builds what a hostile Redis writer can send: hypothesis strategies over the wire schema's own structs.

Every node can write to Redis, so every payload a screen or the CLI reads may hold anything msgpack can
carry into its struct: NaN, ±inf, 1e308, 2**64 - 1, negative counts and sizes, empty and huge strings,
terminal controls (C0, C1, ESC sequences), bidi overrides and zero-width characters, Rich/Textual markup.

The strategies are derived from the structs with ``msgspec.inspect`` (one rule per *type*, never a list
of fields), so a field added to ``clustertop.wire.schema`` is fuzzed the day it is added.

``write_cluster`` puts a drawn cluster into a store the way a hostile writer could: raw SET of the node,
brief and digest keys (no Publisher: it refuses what a real agent would never send; every other node packed,
as agents store them now, the rest plain msgpack, as older agents did), the node index
(phantom hosts included), history points, cluster payloads and the audit streams (a node's and an operator's).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import strategies as st

from clustertop import wire
from clustertop.wire import schema
from clustertop.wire.brief import brief

MiB = 1024 * 1024

#: Floats a writer may send: the non-finite ones, the extremes and ordinary values.
ABSURD_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1.7976931348623157e308, 5e-324, -1.0, 1e18,
                 float(2**64 - 1)]
#: Integers the wire carries (int64 and uint64): the extremes, negatives and ordinary values.
ABSURD_INTS = [2**64 - 1, 2**63 - 1, -(2**63), -1, 2**32, 10**15]

#: Characters that drive or fool a terminal: C0 and C1 controls, DEL, bidi overrides and isolates,
#: zero-width characters, line separators, the BOM.
CONTROLS = ("\x00\x07\x08\t\n\r\x0b\x0c\x1b\x7f\x80\x85\x9b\x9c\u061c\u200b\u200c\u200d\u200e\u200f"
            "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff")
#: The same, as the regular expression a drawn screen or a printed line must not match (newline excluded:
#: it ends a line of output).
RAW_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")

#: Whole strings that were trouble somewhere: markup of Rich and Textual, terminal escape sequences,
#: a right-to-left override that makes "gpu-01" read differently, a carriage return that overwrites.
NASTY = [
    "", " ", "[bold]", "[/]", "[@click=quit]", "[@click=app.quit]q", "[$ct-crit]boom", "[link=http://evil]l[/link]",
    "[b]x[/b]", "\\[escaped]", "\x1b[31mred\x1b[0m", "\x1b]0;pwned\x07", "\x1b[2J\x1b[H", "\x9b31m", "\r\rover",
    "gpu-\u202e10-upg", "a\u200bb\u200dc", "\u2066iso\u2069", "line\u2028sep", "\ufeffbom", "tab\there",
    "x\x00y", "界界界界", "🙂🙂", "\x7f\x85\x9c", "[", "]", "[[", "$ct-ok",
]
#: Letters for drawn text: a few of each kind, and never a digit or the letters of "nan"/"inf"/"e+",
#: so a huge or non-finite number on screen can be recognised by its digits and words alone.
TEXT_ALPHABET = "xyzXYZ-_./:@=$ []\\" + CONTROLS + "界🙂"


@dataclass
class Budget:
    """How big strings may grow in one drawn struct tree (a node payload must stay under the wire's
    256 KiB limit to be read at all; one over it is "bad data", a case of its own)."""

    big_left: int = 1


def text(big: int = 64 * 1024) -> st.SearchStrategy[str]:
    """Node text: nasty fixed strings, random mixes of controls, markup and wide characters, and now
    and then a huge one (``big`` characters)."""
    small = st.one_of(st.sampled_from(NASTY), st.text(TEXT_ALPHABET, max_size=24),
                      st.lists(st.sampled_from(NASTY), min_size=1, max_size=4).map("".join))
    huge = st.builds(lambda piece, n: (piece or "x") * (n // max(1, len(piece or "x"))),
                     st.sampled_from(NASTY[1:]), st.integers(big // 2, big))
    return st.one_of(small, small, small, huge)


def floats() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(ABSURD_FLOATS), st.floats(allow_nan=True, allow_infinity=True),
                     st.floats(0, 100))


def ints() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(ABSURD_INTS), st.integers(schema.WIRE_INTS.start, schema.WIRE_INTS.stop - 1),
                     st.integers(0, 100))


def for_type(t: msgspec.inspect.Type, depth: int = 0) -> st.SearchStrategy[Any]:
    """A strategy for one msgspec type: the rule per type, applied recursively."""
    mi = msgspec.inspect
    if isinstance(t, mi.UnionType):
        return st.one_of(*[for_type(x, depth) for x in t.types])
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        return ints()
    if isinstance(t, mi.FloatType):
        return floats()
    if isinstance(t, mi.StrType):
        return text()
    if isinstance(t, mi.ListType):
        return st.lists(for_type(t.item_type, depth + 1), max_size=3 if depth < 2 else 1)
    if isinstance(t, mi.DictType):
        return st.dictionaries(for_type(t.key_type, depth + 1), for_type(t.value_type, depth + 1), max_size=3)
    if isinstance(t, mi.StructType):
        return structs(t.cls, depth + 1)
    raise TypeError(f"no hostile strategy for {t!r}: add one here")


def structs(cls: type[msgspec.Struct], depth: int = 0, **fixed: Any) -> st.SearchStrategy[Any]:
    """Any instance of ``cls`` msgpack can carry: each field drawn by its type, optional ones left at
    their default half the time (so a drawn payload is sometimes sparse, sometimes full); ``fixed``
    pins fields (a payload's ``host`` must match its key to be read as that node's)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in info.fields:
        if f.name in fixed:
            parts[f.name] = st.just(fixed[f.name])
            continue
        s = for_type(f.type, depth)
        parts[f.name] = s if f.required else st.one_of(st.just(msgspec.NODEFAULT), s)
    return st.fixed_dictionaries(parts).map(
        lambda kw: cls(**{k: v for k, v in kw.items() if v is not msgspec.NODEFAULT}))


def versions() -> st.SearchStrategy[int]:
    """Mostly this schema's version (a payload the screens draw), sometimes a newer one or an absurd one."""
    return st.sampled_from([1, 1, 1, 2, 2**64 - 1])


#: A host name of a megabyte, right-to-left: the review's case (its node key holds a valid payload).
MB_HOST = "\u202e" + "h" * MiB


def hostnames() -> st.SearchStrategy[str]:
    """The index's host names: nasty ones, and now and then one of a megabyte."""
    return st.one_of(st.sampled_from(["gpu-01", "gpu-\u202e10", "[bold]n[/]", "[@click=quit]", "\x1b[2Jnode",
                                      "a\u200bb", "界-node", "x" * 300, MB_HOST]),
                     st.text(TEXT_ALPHABET, min_size=1, max_size=16))


def _short(obj: object, limit: int = 600) -> str:
    """A repr for hypothesis' report of a failing example: escaped, and cut (a megabyte name would make it
    a megabyte; the example itself is replayed from the seed, not from this text)."""
    r = repr(obj)
    return r if len(r) <= limit else f"{r[:limit]}… ({len(r)} characters)"


@dataclass
class HostileNode:
    host: str
    snap: schema.NodeSnapshot
    digest: schema.NodeDigest | None  # None: the node writes no digest (the reader folds its snapshot)
    hist: list[schema.HistPoint] = field(default_factory=list)
    seen: float | None = None  # its score in the node index (None: the time the cluster is written at)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis prints dataclasses field by field
        p.text(repr(self))

    def __repr__(self) -> str:
        return (f"HostileNode(host={_short(self.host, 80)}, seen={self.seen!r}, snap={_short(self.snap, 3000)}, "
                f"digest={_short(self.digest, 1500)}, hist={_short(self.hist, 600)})")


@st.composite
def hostile_nodes(draw: st.DrawFn, host: str | None = None) -> HostileNode:
    h = host if host is not None else draw(hostnames())
    key_host = draw(st.sampled_from(["", h]))  # "" and the key's own name are both read as this node
    snap = draw(structs(schema.NodeSnapshot, v=draw(versions()), host=key_host))
    dig = draw(st.one_of(st.none(), structs(schema.NodeDigest, v=draw(versions()), host=h, rules=draw(
        st.sampled_from([0, 1, 2**64 - 1])))))
    hist = draw(st.lists(structs(schema.HistPoint), max_size=4))
    # Index scores are the node's to write too: Redis takes ±inf (never NaN) as a sorted-set score.
    seen = draw(st.sampled_from([None, None, None, math.inf, -math.inf, 0.0, 1e300, -1e300]))
    return HostileNode(h, snap, dig, hist, seen)


@dataclass
class HostileCluster:
    nodes: list[HostileNode]
    phantoms: int  # index entries with no payload behind them
    cluster: dict[str, schema.ClusterPayload]  # wire.CLUSTER_NAMES -> payload
    audit: list[schema.AuditEntry]

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def __repr__(self) -> str:
        return (f"HostileCluster(phantoms={self.phantoms}, nodes={self.nodes!r}, cluster={_short(self.cluster, 2000)}, "
                f"audit={_short(self.audit, 600)})")


@st.composite
def hostile_clusters(draw: st.DrawFn, max_nodes: int = 5, phantoms: st.SearchStrategy[int] | None = None,
                     ) -> HostileCluster:
    n = draw(st.integers(1, max_nodes))
    hosts = draw(st.lists(hostnames(), min_size=n, max_size=n, unique=True))
    if sum(len(h) for h in hosts) > 2 * MiB:  # one megabyte name per cluster is the case; two add nothing
        hosts = [h[:300] if len(h) > MiB else h for h in hosts[:1]] + [h[:300] for h in hosts[1:]]
        hosts = list(dict.fromkeys(hosts))
    nodes = [draw(hostile_nodes(h)) for h in hosts]
    ph = draw(phantoms if phantoms is not None else st.sampled_from([0, 0, 3, 2500]))
    cluster = {}
    for name in draw(st.lists(st.sampled_from(wire.CLUSTER_NAMES), max_size=len(wire.CLUSTER_NAMES), unique=True)):
        cluster[name] = draw(structs(schema.ClusterPayload, v=draw(versions()), name=name))
    audit = draw(st.lists(structs(schema.AuditEntry), max_size=3))
    return HostileCluster(nodes, ph, cluster, audit)


def encode_or_none(obj: msgspec.Struct) -> bytes | None:
    """The payload's bytes; None where msgpack itself refuses it (an int sum past uint64 in a folded digest)."""
    try:
        return wire.encode(obj)
    except (OverflowError, msgspec.EncodeError):
        return None


def write_cluster(client: Any, c: HostileCluster, ts: float) -> Counter[str]:
    """Write ``c`` as a hostile writer could; returns what went in, by kind: "node payloads" (snapshots,
    briefs and digests msgpack could encode), "history points", "cluster payloads", "audit entries",
    "phantom index entries". No TTLs: the test decides when a node goes away."""
    from clustertop.wire.digest import digest

    written: Counter[str] = Counter()
    p = client.pipeline(transaction=False)
    for i, n in enumerate(c.nodes):
        dig = n.digest if n.digest is not None else _folded(digest, n.snap)
        # Every other node stores its payloads packed, as agents do now (wire.compress); the rest plain, as
        # agents from before packing did: readers meet both.
        packed = i % 2 == 1
        for key, obj, kind in ((wire.node_key(n.host), n.snap, "node"), (wire.brief_key(n.host), brief(n.snap), "brief"),
                               (wire.digest_key(n.host), dig, "digest")):
            data = encode_or_none(obj) if obj is not None else None
            if data is not None:
                p.set(key, wire.pack(data, kind) if packed else data)
                written["node payloads"] += 1
        p.zadd(wire.NODES_KEY, {n.host: ts if n.seen is None else n.seen})
        for hp in n.hist:
            data = encode_or_none(hp)
            if data is not None:
                p.xadd(wire.hist_key(n.host), {"d": wire.pack(data, "hist") if packed else data})
                written["history points"] += 1
    for i in range(c.phantoms):
        p.zadd(wire.NODES_KEY, {f"phantom-{i:05d}": ts})
    written["phantom index entries"] += c.phantoms
    for name, payload in c.cluster.items():
        data = encode_or_none(payload)
        if data is not None:
            p.set(wire.cluster_key(name), data)
            written["cluster payloads"] += 1
    # Into the streams the audit screen reads: a drawn node's own (audit:node:{host}) and an operator's
    # (audit:op:*, found by SCAN), every other entry each, as a hostile writer of either could.
    hosts = [n.host for n in c.nodes] or ["hostile"]
    for i, e in enumerate(c.audit):
        data = encode_or_none(e)
        if data is not None:
            stream = wire.node_audit_key(hosts[i % len(hosts)]) if i % 2 == 0 else wire.operator_audit_key("mallory")
            p.xadd(stream, {"a": data})
            written["audit entries"] += 1
    p.execute()
    return written


def _folded(digest: Any, snap: schema.NodeSnapshot) -> schema.NodeDigest | None:
    try:
        return digest(snap)
    except Exception:  # noqa: BLE001 - the agent's fold of absurd values: the node then writes no digest
        return None


def review_clusters() -> list[HostileCluster]:
    """The review's findings, pinned (``@example``) so every run has them whatever hypothesis draws: an
    ordinary node whose CPU utilisation is NaN (then inf, 1e308) in its snapshot and its history (a
    NaN in ``fmt.sparkline`` ended the dashboard), named with a right-to-left override; and a megabyte
    host name with 5,000 phantom index entries."""
    from tests.support import builders as b

    out = []
    for bad in (math.nan, math.inf, 1e308):
        snap = b.tower("gpu-\u202e01", cpu=50.0)
        assert snap.system is not None and snap.system.cpu is not None
        snap.system.cpu.util_pct = bad
        snap.system.cpu.per_cpu_pct = [bad, 50.0]
        snap.gpus[0].util_pct = 2**64 - 1  # type: ignore[index]
        hist = [schema.HistPoint(ts=b.NOW - 5 * k, cpu=bad, gu=[2**64 - 1, 5]) for k in range(4, 0, -1)]
        out.append(HostileCluster([HostileNode(snap.host, snap, None, hist)], 0, {}, []))
    big = b.tower("gpu-02")
    big.host = ""  # the key's own name: a megabyte that lives in the key and the index only
    out.append(HostileCluster([HostileNode(MB_HOST, big, None)], 5000, {}, []))
    return out
