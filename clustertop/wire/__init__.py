"""Provides the Redis key layout and the one encoder/decoder for every payload (the schema is ``wire.schema``).

May import: stdlib and msgspec only: both sides and every script decode with it (zlib for ``pack``).

Payloads are msgpack (msgspec): about 40 % smaller than JSON and decoded with no intermediate
dicts. The agent stores its per-tick payloads packed (``pack``: deflate with a preset dictionary per kind,
``clustertop.wire.compress``); ``decode`` reads packed and plain alike. Decoding never raises anything but
``WireError``: a node sending garbage must become a visible "bad data from node X", never an exception in
the dashboard's refresh.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from clustertop.wire import compress as _pack
from clustertop.wire import schema

PREFIX = f"ct:v{schema.SCHEMA_VERSION}"

#: Snapshots above this are refused by both sides (an 8-GPU node is a few KiB).
MAX_PAYLOAD_BYTES = 256 * 1024

#: History kept per node: an hour at the default history interval of 5 s, with slack.
HIST_MAXLEN = 800
#: Results and audit streams are capped too; the dashboard only ever reads the tail.
RESULTS_MAXLEN = 5000
AUDIT_MAXLEN = 10000
CMD_MAXLEN = 1000

#: Cluster-scope payloads, one key each. "celery" and "dask" both fill ClusterPayload.queues.
CLUSTER_NAMES = ("ceph", "celery", "dask", "kubernetes")


# Redis Cluster: every per-node key carries the host as its hash tag (``ct:v1:node:{gpu01}``), so all of one
# node's keys share a slot: the agent's MULTIs (payloads + seal; audit + result + replay marker + ack) and
# the reader's per-node MGET (payload + seal) stay within one slot. Cluster payloads share the tag
# ``{cluster}`` (one MGET reads them all). A new per-node key must be tagged the same way.


def node_key(host: str) -> str:
    """Latest snapshot of one node (expires after about 3 intervals: that is how a node goes stale)."""
    return f"{PREFIX}:node:{{{host}}}"


def brief_key(host: str) -> str:
    """The node's latest snapshot cut down to what cluster-wide views read (``clustertop.wire.brief``), same TTL."""
    return f"{PREFIX}:brief:{{{host}}}"


def digest_key(host: str) -> str:
    """The node folded into the numbers cluster-wide views read (``clustertop.wire.digest``), same TTL."""
    return f"{PREFIX}:digest:{{{host}}}"


def hist_key(host: str) -> str:
    """Capped stream of compact HistPoints for one node."""
    return f"{PREFIX}:hist:{{{host}}}"


def tier_block_key(host: str, tier: str, start: int) -> str:
    """One block of a node's downsampled history (``clustertop.wire.tiers``: tier "1m" in blocks of an hour,
    "10m" in blocks of a day; ``start`` = the block's first bucket, epoch seconds), expiring by itself."""
    return f"{PREFIX}:hist:{{{host}}}:{tier}:{start}"


def tier_pattern(host: str) -> str:
    """The ACL key pattern of every tier block of ``host`` (its names hold no glob characters)."""
    return f"{PREFIX}:hist:{{{host}}}:*"


def energy_key(host: str) -> str:
    """The node's energy ledger (``schema.EnergyLedger``): kWh and GPU-hours per GPU, user, pod, job over
    1 h and 24 h, written by the node's agent every few seconds and read back when it restarts."""
    return f"{PREFIX}:energy:{{{host}}}"


def cluster_key(name: str) -> str:
    return f"{PREFIX}:cluster:{{cluster}}:{name}"


def lease_key(name: str) -> str:
    return f"{PREFIX}:lease:{name}"


def cmd_key(host: str) -> str:
    return f"{PREFIX}:cmd:{{{host}}}"


def seal_key(host: str) -> str:
    """The node's signature over its latest node, brief and digest payloads (``schema.NodeSeal``)."""
    return f"{PREFIX}:seal:{{{host}}}"


def want_key(host: str) -> str:
    """A reader wants ``host``'s full snapshot every tick (``WANT_*`` below): SET with a short PX by dashboards,
    exporter and CLI; the node's agent reads only its PTTL, in its tick's MULTI (same hash tag, same slot)."""
    return f"{PREFIX}:want:{{{host}}}"


#: How long one want lasts (PX): a few default intervals, so a reader refreshing every second or two keeps the
#: node in full while it looks and lets go within seconds of looking away.
WANT_PX_MS = 5000
#: The agent honours a want only with 0 < PTTL <= this: a want written without expiry, or with a huge PX, is
#: ignored (it would pin the node to a full snapshot every tick long after anybody looked).
WANT_MAX_MS = 60_000


def nodekey_key(host: str) -> str:
    """The node's public key as it announces it: a claim for ``clustertop enrol --from-redis``, never trusted."""
    return f"{PREFIX}:nodekey:{{{host}}}"


def results_key(host: str) -> str:
    """Results of commands executed by ``host``, signed by it: only that node may append here."""
    return f"{PREFIX}:results:{{{host}}}"


def node_audit_key(host: str) -> str:
    """What ``host``'s agent did (signed, hash-chained): only that node appends."""
    return f"{PREFIX}:audit:node:{{{host}}}"


def operator_audit_key(name: str) -> str:
    """What operator ``name`` sent (signed with the operator's key, hash-chained): only that operator appends."""
    return f"{PREFIX}:audit:op:{{{name}}}"


def seen_key(host: str, command_id: str) -> str:
    """A command id ``host`` has executed (replay guard, with expiry; the agent's state dir keeps its own)."""
    return f"{PREFIX}:seen:{{{host}}}:{command_id}"


def name_in(key: str, key_fn: Any) -> str | None:
    """The host (or name) ``key`` was made from by ``key_fn`` (``name_in(k, node_audit_key)``), or None: the one
    inverse of the tagged layout above, for code that finds keys by SCAN."""
    prefix, _, suffix = key_fn("\0").partition("\0")
    if len(key) < len(prefix) + len(suffix) or not key.startswith(prefix) or not key.endswith(suffix):
        return None
    return key[len(prefix):len(key) - len(suffix)]


NODES_KEY = f"{PREFIX}:nodes"  # zset host -> last seen ts: a discovery hint, writable by every node

T = TypeVar("T")


class WireError(ValueError):
    """A payload that cannot be used; the message says why, in words."""


_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}


def encode(obj: msgspec.Struct) -> bytes:
    return _encoder.encode(obj)


def pack(data: bytes, kind: str | None) -> bytes:
    """``data`` (``encode``'s bytes) compressed with the preset dictionary of ``kind`` ("node", "brief",
    "digest", "hist"; ``clustertop.wire.compress``); ``decode`` reads it as it reads the plain form."""
    return _pack.deflate(data, kind)


def decode(data: bytes | bytearray | memoryview | str | None, kind: type[T]) -> T:
    """Decode one payload of ``kind``, tolerant of added fields and missing ones.

    Raises WireError for anything unusable: empty, oversized, not msgpack, wrong types,
    or a schema version we cannot read.
    """
    return decode_plain(plain(data), kind)


def decode_plain(data: bytes | bytearray | memoryview, kind: type[T]) -> T:
    """``decode`` of bytes ``plain`` returned (decoded as msgpack whatever they start with: never inflated twice)."""
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        obj = dec.decode(data)
    except msgspec.ValidationError as e:
        raise WireError(f"invalid payload: {e}") from None
    except msgspec.DecodeError as e:
        raise WireError(f"not a clustertop payload: {e}") from None
    except (RecursionError, MemoryError) as e:  # deeply nested or absurd payloads
        raise WireError(f"unreadable payload: {type(e).__name__}") from None
    v = getattr(obj, "v", schema.SCHEMA_VERSION)
    if not isinstance(v, int) or v < 1:
        raise WireError(f"bad schema version {v!r}")
    return obj


def plain(data: bytes | bytearray | memoryview | str | None) -> bytes | bytearray | memoryview:
    """A payload's plain msgpack bytes as ``decode`` reads them (inflated where packed), checked for size: a reader
    that decodes one payload twice (its time stamp, then the whole of it) inflates it once. WireError as ``decode``."""
    if data is None:
        raise WireError("no data")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if len(data) == 0:
        raise WireError("empty payload")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload too large ({len(data)} bytes > {MAX_PAYLOAD_BYTES})")
    if data[0] == _pack.MARK:  # packed (msgpack never starts with 0xC1); an older agent's plain payload is not
        try:
            data = _pack.inflate(data, MAX_PAYLOAD_BYTES)
        except _pack.PackError as e:
            raise WireError(str(e)) from None
    return data


def is_newer(obj: Any) -> bool:
    """A payload from a newer agent: decoded as far as v1 goes, shown with a note."""
    return getattr(obj, "v", schema.SCHEMA_VERSION) > schema.SCHEMA_VERSION


def to_builtins(obj: Any) -> Any:
    """Plain dicts/lists for JSON output (``snapshot --json``, ``agent --dry-run``).

    Unlike the wire (which omits defaults to stay small), every field is written: a person or a script
    reading JSON must see ``"fan_pct": null`` (unknown), not wonder whether the field exists.
    """
    if isinstance(obj, msgspec.Struct):
        out = {}
        for f in msgspec.structs.fields(obj):
            out[f.encode_name] = to_builtins(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {k: to_builtins(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_builtins(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int = 2) -> bytes:
    raw = msgspec.json.encode(to_builtins(obj))
    return msgspec.json.format(raw, indent=indent) if indent else raw
