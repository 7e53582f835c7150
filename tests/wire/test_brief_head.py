"""A brief decoded with its GPU section checked but not built (``wire.brief.decode_head``, issue 18): built, it is
exactly the brief a whole decode gives, and a GPU section a whole decode refuses is refused the same, with the same
words. Real briefs of the simulated cluster (``wire.brief.brief`` of its snapshots, encoded and packed as the
Publisher writes them) and hand-made hostile GPU sections."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from clustertop import wire
from clustertop.sim.simulate import SimCluster
from clustertop.wire import schema
from clustertop.wire.brief import BriefHead, brief, decode_head, gpus_of, whole
from tests.support import builders as b


def sim_briefs(nodes: int = 6) -> list[bytes]:
    sim = SimCluster(seed=3, nodes=nodes, gpus_per_node=4)
    ticks, *_ = sim.step(b.NOW)
    return [wire.pack(wire.encode(brief(snap)), "brief") for snap, _ in ticks]


def test_a_head_built_is_the_whole_brief() -> None:
    datas = sim_briefs()
    cards = 0
    for data in datas:
        plain = wire.plain(data)
        head = decode_head(plain)
        want = wire.decode_plain(plain, schema.NodeSnapshot)
        assert isinstance(head, BriefHead) and isinstance(head.gpus, msgspec.Raw)
        cards += len(want.gpus or ())
        got = whole(head)
        assert type(got) is schema.NodeSnapshot and got == want
        assert gpus_of(head) == want.gpus
    assert cards >= 8  # GPU towers among them, with processes
    # No GPU section, an empty one, None on the wire: as a whole decode has them.
    for gpus in (None, []):
        plain = wire.encode(b.node("n1", gpus=gpus))
        assert whole(decode_head(plain)) == wire.decode_plain(plain, schema.NodeSnapshot)
    no_key = msgspec.msgpack.encode({"v": 1, "host": "n1", "ts": 1.0})
    assert whole(decode_head(no_key)) == wire.decode_plain(no_key, schema.NodeSnapshot)
    # A snapshot already whole is itself.
    s = b.node("n1")
    assert whole(s) is s


def with_gpus(gpus: Any) -> bytes:
    d = msgspec.msgpack.decode(wire.plain(sim_briefs(1)[0]))
    d["gpus"] = gpus
    return msgspec.msgpack.encode(d)


CARD = {"index": 0, "name": "A100", "util_pct": 50}
HOSTILE = [
    "not a list",
    {"index": 0},
    [{"index": "0"}],
    [{}],
    [{**CARD, "util_pct": "hot"}],
    [{**CARD, "util_pct": 0.5}],
    [CARD, {**CARD, "index": 1, "mem_used_bytes": -1.5}],
    [{**CARD, "name": 7}],
    [{**CARD, "lost": "yes"}],
    [{**CARD, "throttle_reasons": [1, 2]}],
    [{**CARD, "procs": "x"}],
    [{**CARD, "procs": [{"pid": "1"}]}],
    [{**CARD, "procs": [{"user": "root"}]}],
    [{**CARD, "procs": [{"pid": 1, "owner": {"kind": 3}}]}],
    [{**CARD, "xid_last_ts": "soon"}],
]


@pytest.mark.parametrize("gpus", HOSTILE, ids=range(len(HOSTILE)))
def test_a_gpu_section_a_whole_decode_refuses_is_refused_with_the_same_words(gpus: Any) -> None:
    plain = with_gpus(gpus)
    with pytest.raises(wire.WireError) as whole_error:
        wire.decode_plain(plain, schema.NodeSnapshot)
    with pytest.raises(wire.WireError) as head_error:
        decode_head(plain)
    assert str(head_error.value) == str(whole_error.value)
    assert "$.gpus" in str(head_error.value)


def test_odd_but_valid_gpu_sections_decode_as_a_whole_decode_has_them() -> None:
    for gpus in ([{**CARD, "util_pct": 2**64 - 1}], [{**CARD, "name": "\u202e\x1b[2J" * 1000}],
                 [{**CARD, "temp_c": -(2**63)}], [{"index": 0, "unknown_field": [1, {"x": None}]}]):
        plain = with_gpus(gpus)
        assert whole(decode_head(plain)) == wire.decode_plain(plain, schema.NodeSnapshot)


def test_garbage_around_the_gpu_section_is_refused_as_before() -> None:
    plain = with_gpus([CARD])
    for bad in (plain[:-3], plain[: len(plain) // 2], b"\xc1" + plain):
        with pytest.raises(wire.WireError):
            wire.decode_plain(bad, schema.NodeSnapshot)
        with pytest.raises(wire.WireError):
            decode_head(bad)
