"""Provides the signed bucket summary in Redis: ``seal`` (the value a summary node SETs at
``wire.summary.summary_key``) and ``open_summary`` (what a reader believes of it, or why not).

The folder signs its summary's msgpack body as those exact bytes (``signing.sign_bytes``, domain "summary":
a canonical re-encoding would cost ~1 ms a summary), so a reader checks the signature over the bytes it got
and decodes them once. A summary is believed only when an enrolled node signed it as the ``folder`` it names,
when it is of the bucket asked for and every host it names falls into that bucket, and when its parts agree
with each other (a state and a seq per host, counts that match the states, cards of its own hosts). Anything
else is refused with the reason in words, and the reader reads that bucket's digests instead:
docs/security.md "Bucket summaries".
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from clustertop import wire
from clustertop.control import signing
from clustertop.wire.summary import (
    BUCKETS,
    LETTER_STATES,
    BucketCheckMemo,
    BucketSummary,
    SignedSummary,
    bucket_of,
)
from clustertop.wire.text import MAX_FIGURE, inert

#: What the body may take of a value a reader decodes (``wire.MAX_PAYLOAD_BYTES``): room for the wrapper.
BODY_LIMIT = wire.MAX_PAYLOAD_BYTES - 1024
#: A summary that says it is rewritten less often than this is not one anybody keeps fresh.
MAX_INTERVAL_S = 3600.0


class KnownKeys(Protocol):
    """host -> its enrolled public key (``control.trust.KnownNodes``, or a plain dict)."""

    def get(self, host: str) -> signing.PublicKey | None: ...


class SummaryTooLarge(ValueError):
    """A summary that cannot be written in a form readers decode; the message says why. The bucket is then
    left unsummarised (its digests are read instead)."""


def body(summary: BucketSummary, limit: int = BODY_LIMIT) -> bytes:
    """``summary`` encoded within ``limit`` bytes: past it (hostile node text: 100 KB alert messages) the least
    severe alerts go first (counted in ``alerts_left_out``), then the GPU columns (None: a reader reads that
    bucket's cards from the briefs). SummaryTooLarge where even that does not fit, or where a sum is past
    what msgpack carries (2**64: summed from absurd figures nodes sent)."""
    try:
        data = wire.encode(summary)
        while len(data) > limit and summary.alerts:
            keep = len(summary.alerts) * 3 // 4
            summary.alerts_left_out += len(summary.alerts) - keep
            summary.alerts = summary.alerts[:keep]
            data = wire.encode(summary)
        if len(data) > limit and summary.gpus is not None:
            summary.gpus = None
            data = wire.encode(summary)
    except (OverflowError, msgspec.EncodeError) as e:
        raise SummaryTooLarge(f"bucket {summary.bucket}: a figure cannot be encoded ({e})") from None
    if len(data) > limit:
        raise SummaryTooLarge(f"bucket {summary.bucket}: {len(data)} bytes even without alerts and GPU columns "
                              f"(> {limit}): its host names are too long")
    return data


def seal(summary: BucketSummary, key: signing.PrivateKey) -> bytes:
    """The value to SET at ``summary_key(summary.bucket)``: the body signed and packed (``wire.pack``)."""
    data = body(summary)
    key_id, sig = signing.sign_bytes("summary", data, key)
    return wire.pack(wire.encode(SignedSummary(body=data, key_id=key_id, sig=sig)), "summary")


def _without(kind: type[Any], name: str) -> type[Any]:
    """``kind`` less its field ``name``: decoding into it, msgspec skips that field's bytes (it is unknown)
    without building what they hold."""
    fields = [(f.name, f.type, msgspec.field(default=f.default) if f.default_factory is msgspec.NODEFAULT
               else msgspec.field(default_factory=f.default_factory))
              for f in msgspec.structs.fields(kind) if f.name != name]
    return msgspec.defstruct(f"{kind.__name__}Head", fields, kw_only=True, gc=False)


#: A summary less its GPU columns (~80,000 cards at 10,000 nodes: ~5.5 ms a read to decode, which the
#: overview never draws): ``open_summary(columns=False)``.
_SummaryHead = _without(BucketSummary, "gpus")


def open_summary(raw: bytes | None, known: KnownKeys, bucket: int, buckets: int | None = None,
                 columns: bool = True, memo: BucketCheckMemo | None = None) -> tuple[BucketSummary | None, str | None]:
    """(the summary, None) where ``raw`` (a ``summary_key`` value) is to be believed for ``bucket``, else
    (None, why not, in words; node text in it made inert). ``buckets``: the count this reader folds by
    (default ``wire.summary.BUCKETS``). ``columns=False``: its GPU columns are not decoded (``gpus`` is None
    whatever was folded), nor checked; the signature is still checked over the exact bytes, and every other
    check still runs. ``memo``: the hosts this reader already found of their bucket (``BucketCheckMemo``: a
    reader's own, read after read); None: every host is checked."""
    if raw is None:
        return None, "no summary"
    try:
        signed = wire.decode(raw, SignedSummary)
        if columns:
            s = wire.decode(signed.body, BucketSummary)
        else:  # the same fields, built into the summary type the reader merges (~0.5 us: no field is copied)
            s = BucketSummary(**msgspec.structs.asdict(wire.decode(signed.body, _SummaryHead)))
    except wire.WireError as e:
        return None, f"unreadable summary: {e}"
    if not signed.sig:
        return None, "unsigned summary"
    folder = inert(s.folder, limit=64)
    pub = known.get(s.folder)
    if pub is None:
        return None, f"summary folded by {folder}, which is not enrolled"
    why = signing.check_bytes("summary", signed.body, signed.key_id, signed.sig, pub)
    if why is not None:
        return None, f"summary from {folder} refused: {why}"
    why = _inconsistent(s, bucket, buckets, memo)
    if why is not None:
        return None, f"summary from {folder} refused: {why}"
    return s, None


def _inconsistent(s: BucketSummary, bucket: int, buckets: int | None, memo: BucketCheckMemo | None) -> str | None:
    """Why a correctly signed summary is still not to be believed (None: it holds together)."""
    want = BUCKETS if buckets is None else buckets
    if s.buckets != want or s.bucket != bucket:
        return f"it is bucket {s.bucket} of {s.buckets}, not {bucket} of {want}"
    for name, when in (("ts", s.ts), ("read_ts", s.read_ts)):
        if when is not None and not 0 < when < MAX_FIGURE:  # NaN fails too
            return f"absurd {name} {when!r}"
    if not 0 < s.interval_s <= MAX_INTERVAL_S:
        return f"absurd interval {s.interval_s!r}"
    hosts = s.hosts
    n = len(hosts)
    if len(s.states) != n or len(s.seqs) != n:
        return f"{n} hosts but {len(s.states)} states and {len(s.seqs)} seqs"
    if any(a >= b for a, b in zip(hosts, hosts[1:], strict=False)):
        return "hosts not sorted, or listed twice"
    checked = memo.checked.get((bucket, want)) if memo is not None else None
    if checked is None or not checked.issuperset(hosts):  # in C: the hosts a summary names rarely change
        for h in hosts:
            if bucket_of(h, want) != bucket:
                return f"host {inert(h, limit=64)} is not of bucket {bucket}"
        if memo is not None:  # every one of them found of the bucket, just now
            memo.checked[(bucket, want)] = frozenset(hosts)  # replaced, not grown: hosts that left are forgotten
    if not set(s.states) <= LETTER_STATES.keys():
        return f"unknown state letters {inert(''.join(sorted(set(s.states) - LETTER_STATES.keys())), limit=16)}"
    tot = s.totals
    counts = (tot.nodes_up, tot.nodes_stale, tot.nodes_down, tot.nodes_bad)
    if counts != tuple(s.states.count(c) for c in "usdb"):
        return f"node counts {counts} do not match the states"
    named = set(hosts)
    if any(a.node is not None and a.node not in named for a in s.alerts) or \
            any(g.host not in named for g in s.top_gpus):
        return "alerts or busiest cards name hosts not in the summary"
    if s.alerts_left_out < 0:
        return "negative alerts left out"
    if s.gpus is not None:
        why = _bad_columns(s.gpus, n)
        if why is not None:
            return why
    return None


def _bad_columns(c: Any, hosts: int) -> str | None:
    lengths = {len(c.node), len(c.index), len(c.util_pct), len(c.mem_used_bytes), len(c.mem_total_bytes),
               len(c.temp_c), len(c.power_mw)}
    if len(lengths) != 1:
        return f"GPU columns of different lengths {sorted(lengths)}"
    if c.node and not (0 <= min(c.node) and max(c.node) < hosts):
        return "GPU columns name a host position outside the summary"
    lost = c.lost
    if lost and (lost[0] < 0 or lost[-1] >= len(c.node) or any(a >= b for a, b in zip(lost, lost[1:], strict=False))):
        return "GPU columns' lost cards are out of range or out of order"
    return None
