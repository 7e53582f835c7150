"""The signed bucket summary (clustertop.control.summary): what ``open_summary`` believes and what it refuses,
each refusal with its reason in words; the body signed as its exact bytes (domain "summary"); hostile sizes."""

from __future__ import annotations

import math

import msgspec
import pytest

from clustertop import wire
from clustertop.control import signing
from clustertop.control.summary import BODY_LIMIT, SummaryTooLarge, body, open_summary, seal
from clustertop.read.model import NodeView
from clustertop.read.summary import fold
from clustertop.wire import schema
from clustertop.wire.digest import digest
from clustertop.wire.summary import (
    BUCKETS,
    BucketCheckMemo,
    BucketSummary,
    GpuColumns,
    SignedSummary,
    SummaryAlert,
    TopGpu,
    bucket_of,
)
from tests.support import builders

NOW = builders.NOW
BUCKET = 3


def hosts_of(bucket: int, n: int, prefix: str = "gpu") -> list[str]:
    out = []
    i = 0
    while len(out) < n:
        h = f"{prefix}{i:04d}"
        if bucket_of(h) == bucket:
            out.append(h)
        i += 1
    return out


def summary(bucket: int = BUCKET, folder: str = "sum01") -> BucketSummary:
    hs = hosts_of(bucket, 4)
    snaps = [builders.tower(h, (90, 20)) for h in hs]
    vs = [NodeView(h, "up" if i < 3 else "down", snap=s, digest=digest(s), age_s=900.0)
          for i, (h, s) in enumerate(zip(hs, snaps, strict=True))]
    return fold(vs, bucket, folder, NOW, seq=1, interval_s=1.0)


def resign(s: BucketSummary, key: signing.PrivateKey) -> bytes:
    """A summary signed and packed as it stands, past ``seal``'s own shaping (what a hostile writer can do)."""
    data = wire.encode(s)
    kid, sig = signing.sign_bytes("summary", data, key)
    return wire.pack(wire.encode(SignedSummary(body=data, key_id=kid, sig=sig)), "summary")


KNOWN = builders.known_nodes("sum01", "sum02")
KEY = builders.node_key("sum01")


def test_a_sealed_summary_opens_as_folded() -> None:
    s = summary()
    raw = seal(s, KEY)
    got, why = open_summary(raw, KNOWN, BUCKET)
    assert why is None and got == s
    assert got.states == "uuud" and got.totals.nodes_up == 3 and got.gpus is not None
    assert raw[0] == 0xC1  # packed (wire.pack)


def test_the_signature_covers_the_domain_and_the_exact_bytes() -> None:
    data = wire.encode(summary())
    kid, sig = signing.sign_bytes("summary", data, KEY)
    pub = KEY.public()
    assert signing.check_bytes("summary", data, kid, sig, pub) is None
    assert signing.check_bytes("alerts", data, kid, sig, pub) == "bad signature"  # another kind: never valid
    assert signing.check_bytes("summary", data + b"\x00", kid, sig, pub) == "bad signature"
    assert signing.check_bytes("summary", data, kid, "", pub) == "unsigned"
    assert signing.check_bytes("summary", data, kid, "%%%", pub) == "bad signature (not base64)"
    assert signing.check_bytes("summary", data, kid, "AAAA", pub) == "bad signature (wrong length)"
    other = builders.node_key("sum02").public()
    assert "not the enrolled" in (signing.check_bytes("summary", data, kid, sig, other) or "")


def _refused(raw: bytes | None, words: str, bucket: int = BUCKET, known: object = KNOWN) -> None:
    got, why = open_summary(raw, known, bucket)  # type: ignore[arg-type]
    assert got is None and why is not None and words in why, why


def test_refusals_say_why() -> None:
    _refused(None, "no summary")
    _refused(b"\x00garbage", "unreadable summary")
    _refused(b"\xc1\x00" + b"x" * 50, "unreadable summary")
    _refused(b"x" * (wire.MAX_PAYLOAD_BYTES + 1), "too large")
    s = summary()
    # Unsigned.
    _refused(wire.encode(SignedSummary(body=wire.encode(s))), "unsigned")
    # Signed by a node nobody enrolled; or by an enrolled node, under another's name.
    _refused(seal(summary(folder="rogue"), builders.node_key("rogue")), "rogue, which is not enrolled")
    _refused(seal(summary(folder="sum02"), KEY), "not the enrolled")
    # A body changed after signing.
    signed = wire.decode(seal(summary(), KEY), SignedSummary)
    tampered = wire.decode(signed.body, BucketSummary)
    tampered.totals.gpus_busy = 999
    signed.body = wire.encode(tampered)
    _refused(wire.encode(signed), "bad signature")
    # Asked for another bucket, or folded for another bucket count.
    _refused(seal(summary(), KEY), "not 4 of 64", bucket=4)
    s = summary()
    s.buckets = 32
    _refused(resign(s, KEY), "of 32, not 3 of 64")


@pytest.mark.parametrize(("change", "words"), [
    (lambda s: s.hosts.append(hosts_of(BUCKET + 1, 1, "zz")[0]), "0 hosts but"),
    (lambda s: setattr(s, "states", s.states[:-1]), "4 hosts but 3 states"),
    (lambda s: s.seqs.append(1), "4 hosts but 4 states and 5 seqs"),
    (lambda s: s.hosts.reverse(), "not sorted"),
    (lambda s: setattr(s, "states", "uuuz"), "unknown state letters z"),
    (lambda s: setattr(s.totals, "nodes_up", 4), "do not match the states"),
    (lambda s: setattr(s, "ts", math.nan), "absurd ts nan"),
    (lambda s: setattr(s, "ts", 0.0), "absurd ts"),
    (lambda s: setattr(s, "read_ts", math.inf), "absurd read_ts inf"),
    (lambda s: setattr(s, "interval_s", -1.0), "absurd interval"),
    (lambda s: s.alerts.append(SummaryAlert("critical", "node", "elsewhere", "x", "y")), "not in the summary"),
    (lambda s: s.top_gpus.append(TopGpu("elsewhere", 0, 100)), "not in the summary"),
    (lambda s: setattr(s, "gpus", GpuColumns(node=[0, 9], index=[0, 0], util_pct=[1, 1], mem_used_bytes=[None] * 2,
                                             mem_total_bytes=[None] * 2, temp_c=[None] * 2, power_mw=[None] * 2)),
     "host position outside"),
    (lambda s: setattr(s, "gpus", GpuColumns(node=[0], index=[0, 1])), "different lengths"),
    (lambda s: setattr(s, "gpus", GpuColumns(node=[0], index=[0], util_pct=[None], mem_used_bytes=[None],
                                             mem_total_bytes=[None], temp_c=[None], power_mw=[None], lost=[1])),
     "lost cards are out of range"),
    (lambda s: setattr(s, "gpus", GpuColumns(node=[0, 0], index=[0, 1], util_pct=[None] * 2, mem_used_bytes=[None] * 2,
                                             mem_total_bytes=[None] * 2, temp_c=[None] * 2, power_mw=[None] * 2,
                                             lost=[1, 0])),
     "out of order"),
])
def test_a_well_signed_summary_that_does_not_hold_together_is_refused(change: object, words: str) -> None:
    s = summary()
    change(s)  # type: ignore[operator]
    if words == "0 hosts but":  # a host of another bucket, placed in order, with its letter and seq
        s.hosts.sort()
        s.states, s.seqs = s.states + "u", [*s.seqs, 1]
        s.totals.nodes_up += 1
        words = "is not of bucket 3"
    _refused(resign(s, KEY), words)


def test_hostile_text_is_cut_to_fit_and_counted() -> None:
    """100 KB alert messages from nodes: the least severe alerts go first, counted; the summary still opens."""
    hs = hosts_of(BUCKET, 8)
    vs = []
    for i, h in enumerate(hs):
        d = digest(builders.tower(h, (50,)))
        d.alerts = [schema.DigestAlert(severity="critical" if i < 2 else "warning", source="gpu", subject="gpu0",
                                       message="\u202e\x1b[2J" + "m" * 100_000)]
        vs.append(NodeView(h, "up", digest=d))
    s = fold(vs, BUCKET, "sum01", NOW, seq=1, interval_s=1.0)
    assert len(s.alerts) == 8
    got, why = open_summary(seal(s, KEY), KNOWN, BUCKET)
    assert why is None and got is not None
    assert 0 < len(got.alerts) < 8 and got.alerts_left_out == 8 - len(got.alerts)
    assert all(a.severity == "critical" for a in got.alerts[:2])
    assert got.alerts[0].message.startswith("\u202e\x1b")  # data, kept as sent: made inert where it is drawn
    assert len(body(s)) <= BODY_LIMIT


def test_sums_past_what_msgpack_carries_leave_the_bucket_unsummarised() -> None:
    hs = hosts_of(BUCKET, 2)
    vs = []
    for h in hs:
        d = digest(builders.tower(h, (50,)))
        d.mem_total_bytes = 2**64 - 1  # a broken counter, twice: the sum is 2**65
        vs.append(NodeView(h, "up", digest=d))
    s = fold(vs, BUCKET, "sum01", NOW, seq=1, interval_s=1.0)
    assert s.totals.mem_total_bytes == 2 * (2**64 - 1)
    with pytest.raises(SummaryTooLarge, match="cannot be encoded"):
        seal(s, KEY)


def test_a_megabyte_host_name_cannot_be_summarised() -> None:
    h = next(x for x in ("\u202e" + "h" * (1 << 20) + str(i) for i in range(200)) if bucket_of(x) == BUCKET)
    s = fold([NodeView(h, "down")], BUCKET, "sum01", NOW, seq=1, interval_s=1.0)
    with pytest.raises(SummaryTooLarge, match="host names are too long"):
        seal(s, KEY)


def test_a_summary_from_a_newer_folder_with_more_fields_still_opens() -> None:
    class Newer(BucketSummary):
        extra: list[int] = msgspec.field(default_factory=lambda: [1, 2, 3])

    s = summary()
    n = Newer(**{f: getattr(s, f) for f in s.__struct_fields__})
    got, why = open_summary(resign(n, KEY), KNOWN, BUCKET)  # type: ignore[arg-type]
    assert why is None and got is not None and got.hosts == s.hosts


def test_without_columns_it_opens_the_same_summary_less_its_gpu_columns() -> None:
    """``columns=False`` (the overview): the GPU columns are skipped, everything else as folded and checked."""
    s = summary()
    raw = seal(s, KEY)
    got, why = open_summary(raw, KNOWN, BUCKET, columns=False)
    assert why is None and got is not None and s.gpus is not None
    assert got.gpus is None and isinstance(got, BucketSummary)
    assert got == msgspec.structs.replace(s, gpus=None)
    # The signature still covers the exact bytes, columns included: a changed column is refused.
    signed = wire.decode(raw, SignedSummary)
    tampered = wire.decode(signed.body, BucketSummary)
    assert tampered.gpus is not None
    tampered.gpus.util_pct[0] = 1
    signed.body = wire.encode(tampered)
    got, why = open_summary(wire.encode(signed), KNOWN, BUCKET, columns=False)
    assert got is None and why is not None and "bad signature" in why


@pytest.mark.parametrize(("change", "words"), [
    (lambda s: setattr(s, "states", s.states[:-1]), "4 hosts but 3 states"),
    (lambda s: s.hosts.reverse(), "not sorted"),
    (lambda s: setattr(s.totals, "nodes_up", 4), "do not match the states"),
    (lambda s: setattr(s, "interval_s", -1.0), "absurd interval"),
    (lambda s: s.alerts.append(SummaryAlert("critical", "node", "elsewhere", "x", "y")), "not in the summary"),
])
def test_without_columns_every_other_check_still_runs(change: object, words: str) -> None:
    s = summary()
    change(s)  # type: ignore[operator]
    got, why = open_summary(resign(s, KEY), KNOWN, BUCKET, columns=False)
    assert got is None and why is not None and words in why, why


def test_a_host_of_another_bucket_is_refused_after_the_same_bucket_was_believed() -> None:
    """The per-bucket host check is skipped only for hosts already found of the bucket (a reader's own
    ``BucketCheckMemo``): a summary that swaps one host for a foreign-bucket one, after an accepted summary, is
    still refused (and so is every later one); the memo holds only hosts that were checked and passed."""
    s = summary()
    for columns in (True, False):
        memo = BucketCheckMemo()
        assert open_summary(seal(s, KEY), KNOWN, BUCKET, columns=columns, memo=memo)[1] is None
        assert memo.checked == {(BUCKET, BUCKETS): frozenset(s.hosts)}
        bad = summary()
        foreign = hosts_of(BUCKET + 1, 1, "aa")[0]  # sorts first: the order check passes
        bad.hosts[0] = foreign
        assert bad.hosts == sorted(bad.hosts) and bucket_of(foreign) != BUCKET
        _refused_cols = open_summary(resign(bad, KEY), KNOWN, BUCKET, columns=columns, memo=memo)
        assert _refused_cols[0] is None and f"host {foreign} is not of bucket 3" in (_refused_cols[1] or "")
        assert memo.checked == {(BUCKET, BUCKETS): frozenset(s.hosts)}  # the refused hosts not recorded
        # The refusal forgot nothing it should not: the good one opens again, the bad one is refused again.
        assert open_summary(seal(s, KEY), KNOWN, BUCKET, columns=columns, memo=memo)[1] is None
        assert open_summary(resign(bad, KEY), KNOWN, BUCKET, columns=columns, memo=memo)[0] is None
        # Added rather than swapped: the foreign host beside every believed one.
        more = summary()
        more.hosts.insert(0, foreign)
        more.states, more.seqs = "u" + more.states, [1, *more.seqs]
        more.totals.nodes_up += 1
        why = open_summary(resign(more, KEY), KNOWN, BUCKET, columns=columns, memo=memo)[1] or ""
        assert f"host {foreign} is not of bucket 3" in why
        assert foreign not in memo.checked[(BUCKET, BUCKETS)]


def test_a_memo_of_checked_hosts_skips_no_check_of_another_bucket_or_count() -> None:
    """Hosts found of bucket 3 are found of it only: the same hosts offered as another bucket's, or as bucket 3
    of another bucket count, are checked again and refused; without a memo nothing is kept (CLI, exporter)."""
    s = summary()
    memo = BucketCheckMemo()
    assert open_summary(seal(s, KEY), KNOWN, BUCKET, memo=memo)[1] is None
    other = summary()
    other.bucket = BUCKET + 1
    why = open_summary(resign(other, KEY), KNOWN, BUCKET + 1, memo=memo)[1] or ""
    assert f"is not of bucket {BUCKET + 1}" in why
    other.bucket, other.buckets = BUCKET, 128
    why = open_summary(resign(other, KEY), KNOWN, BUCKET, buckets=128, memo=memo)[1] or ""
    assert any(bucket_of(h, 128) != BUCKET for h in s.hosts) and "is not of bucket 3" in why
    assert memo.checked == {(BUCKET, BUCKETS): frozenset(s.hosts)}
