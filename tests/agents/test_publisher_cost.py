"""What the publisher spends on ticks that do not write the full snapshot (issue 18, the agent's CPU per tick):
the full snapshot is encoded only when it is written, its size guard still refuses an oversized one, and
``publish()`` returns the bytes it wrote. Real redis-server, the real Publisher; encodes are counted, not timed.
"""

from __future__ import annotations

from typing import Any

import pytest

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.control import signing
from clustertop.wire import schema
from tests.conftest import RedisServer
from tests.support import builders as b

HOST = "gpu01"
EVERY = 5.0


def counting_encodes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every object wire.encode is asked to encode, in order (the publisher calls it through the module)."""
    seen: list[Any] = []
    real = wire.encode

    def encode(obj: Any) -> bytes:
        seen.append(obj)
        return real(obj)

    monkeypatch.setattr(wire, "encode", encode)
    return seen


def test_full_snapshot_encoded_only_on_ticks_that_write_it(redis_server: RedisServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pub = Publisher(redis_server.client(), HOST, 1.0, full_every_s=EVERY, tiers=False, key=signing.new_key())
    encoded = counting_encodes(monkeypatch)
    full_encodes = []
    for k in range(12):
        snap = b.tower(HOST, utils=(k % 100, 5), ts=b.NOW + k, seq=k + 1)
        before = len(encoded)
        pub.publish(snap)
        # The snapshot object itself is the full one (the brief is a new NodeSnapshot cut from it).
        full_encodes.append(sum(1 for o in encoded[before:] if o is snap))
    assert full_encodes == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert pub.fulls == 3
    # and the encodes of a non-due tick are the brief, the digest and the seal: nothing else
    kinds = [type(o).__name__ for o in encoded[-3:]]
    assert kinds == ["NodeSnapshot", "NodeDigest", "NodeSeal"]


def test_publish_returns_the_bytes_it_wrote(redis_server: RedisServer) -> None:
    raw = redis_server.client()
    pub = Publisher(raw, HOST, 1.0, full_every_s=EVERY, hist_every_s=1000.0, tiers=False, key=signing.new_key())

    def stored(*keys: str) -> int:
        return sum(len(raw.get(k) or b"") for k in keys)

    each_tick = (wire.brief_key(HOST), wire.digest_key(HOST), wire.seal_key(HOST))
    hist = schema.HistPoint(ts=b.NOW, cpu=12.5)
    n = pub.publish(b.tower(HOST, ts=b.NOW, seq=1), hist)  # full, and the first history point
    entry = raw.xrange(wire.hist_key(HOST))[-1][1][b"d"]
    assert n == stored(wire.node_key(HOST), *each_tick) + len(entry)
    n = pub.publish(b.tower(HOST, ts=b.NOW + 1, seq=2))  # not due: brief, digest, seal
    assert pub.fulls == 1
    assert n == stored(*each_tick) > 0


def test_size_guard_on_what_is_written(redis_server: RedisServer) -> None:
    """An oversized snapshot is refused on every tick that would write it; the brief (small here: it keeps no
    process list) goes on until the full one is due, then the tick is refused as a whole, every tick, until it fits."""
    raw = redis_server.client()
    pub = Publisher(raw, HOST, 1.0, full_every_s=EVERY, tiers=False)
    pub.publish(b.tower(HOST, ts=b.NOW, seq=1))
    first = raw.get(wire.node_key(HOST))

    def huge(k: int) -> schema.NodeSnapshot:
        snap = b.tower(HOST, ts=b.NOW + k, seq=k + 1)
        snap.system = schema.System(procs=[schema.Proc(pid=i, cmdline="x" * 500) for i in range(1000)])
        return snap

    for k in range(1, 5):  # not due: what is written fits
        pub.publish(huge(k))
        assert wire.decode(raw.get(wire.digest_key(HOST)), schema.NodeDigest).seq == k + 1
    for k in range(5, 8):  # due from now on, and never written: refused every tick
        with pytest.raises(ValueError, match="snapshot of .* bytes exceeds"):
            pub.publish(huge(k))
    assert raw.get(wire.node_key(HOST)) == first
    assert wire.decode(raw.get(wire.digest_key(HOST)), schema.NodeDigest).seq == 5
    pub.publish(b.tower(HOST, ts=b.NOW + 8, seq=9))  # fits again: written in full at once
    assert wire.decode(raw.get(wire.node_key(HOST)), schema.NodeSnapshot).seq == 9


def test_oversized_brief_is_refused_too(redis_server: RedisServer) -> None:
    pub = Publisher(redis_server.client(), HOST, 1.0, full_every_s=EVERY, tiers=False)
    pub.publish(b.tower(HOST, ts=b.NOW, seq=1))
    snap = b.tower(HOST, ts=b.NOW + 1, seq=2)
    snap.labels = {f"k{i}": "v" * 300 for i in range(1000)}  # labels are in the brief (search)
    with pytest.raises(ValueError, match="brief of .* bytes exceeds"):
        pub.publish(snap)
