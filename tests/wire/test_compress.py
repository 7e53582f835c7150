"""Packed payloads (clustertop/wire/compress.py): deflate with a preset dictionary per kind, read by
``wire.decode`` beside the plain msgpack of older agents; a hostile packed payload is a WireError and
costs nothing (bounded inflation). The reader against a real redis-server reads what the real Publisher
writes, packed, and seals verify over the packed bytes as stored."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.sim import simulate
from clustertop.sim.simulate import SimCluster
from clustertop.wire import compress, schema
from clustertop.wire.brief import brief
from clustertop.wire.digest import digest
from tests.support import hostile

#: Every dictionary ever shipped and its SHA-256. Ids are forever: a dictionary changed after it shipped
#: would make every payload packed with it unreadable, so this table only ever grows.
SHIPPED = {
    1: ("node-1.bin", "0d6834e8d659cf19c63b701c903e80487bc1939ea2ad5e82a23d747220fff906"),
    2: ("brief-2.bin", "72f598f111112cae479ee063172273b185000d375c2f153a4a2ec879b16a559e"),
    3: ("digest-3.bin", "2ecc1cbb96829ba0df36022c772a3662e0e6ffd85b612828207087e298157b74"),
    4: ("hist-4.bin", "010b4e6cb46d87ea3f88c51156895e2488de8707dd1119c0a4d1e925f9ef4fdd"),
    5: ("seal-5.bin", "dd45b92df69f9427b5d5d435561ec30d90485d54b983d784d439495ae34ae358"),
}
KINDS = {"node": schema.NodeSnapshot, "brief": schema.NodeSnapshot, "digest": schema.NodeDigest,
         "hist": schema.HistPoint, "seal": schema.NodeSeal}


def _tower() -> tuple[schema.NodeSnapshot, schema.HistPoint]:
    """An 8-GPU simulated tower of a seed no dictionary was built from (clustertop/sim/wire_dicts.py)."""
    sim = SimCluster(seed=7, nodes=3, gpus_per_node=8)
    for i in range(3):
        ticks, _ = sim.step(1_800_000_000.0 + i)
    snap, hp = next((s, h) for s, h in ticks if s.gpus)
    return snap, hp


def _payloads() -> dict[str, tuple[msgspec.Struct, bytes]]:
    from clustertop.agents.publisher import seal
    from clustertop.control import signing

    snap, hp = _tower()
    sealed = seal(snap.host, snap, os.urandom(64), os.urandom(64), os.urandom(64), signing.new_key())
    objs: dict[str, msgspec.Struct] = {"node": snap, "brief": brief(snap), "digest": digest(snap), "hist": hp,
                                       "seal": sealed}
    return {k: (o, wire.encode(o)) for k, o in objs.items()}


def _packed_with(data: bytes, did: int) -> bytes:
    zd = compress.dictionary(did)
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zd) if zd else zlib.compressobj(6, zlib.DEFLATED, -15)
    return bytes((compress.MARK, did)) + c.compress(data) + c.flush()


def test_shipped_dictionaries_are_never_changed_or_dropped() -> None:
    for did, (name, sha) in SHIPPED.items():
        assert compress.DICTS.get(did) == name, f"dictionary {did} dropped or renamed"
        assert hashlib.sha256(compress.dictionary(did)).hexdigest() == sha, \
            f"dictionary {did} changed after it shipped: give the new one a new id"
    assert set(compress.DICTS) == set(SHIPPED), "a new dictionary: pin it in SHIPPED"
    for did in compress.DICTS:
        assert 0 < len(compress.dictionary(did)) <= 32 * 1024
    assert set(compress.CURRENT.values()) <= set(compress.DICTS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_per_kind_is_smaller_and_exact(kind: str) -> None:
    obj, plain = _payloads()[kind]
    packed = wire.pack(plain, kind)
    assert packed[0] == compress.MARK and packed[1] == compress.CURRENT[kind]
    assert wire.decode(packed, KINDS[kind]) == obj == wire.decode(plain, KINDS[kind])
    # Dictionaries pay: the three tick payloads shrink well past plain deflate; a history point and a seal
    # (hashes and a signature: random) less so.
    plain_deflate = len(zlib.compress(plain, 6, -15))
    assert len(packed) < {"hist": 0.75, "seal": 0.9}.get(kind, 0.5) * plain_deflate, (len(plain), plain_deflate, len(packed))


def test_every_dictionary_ever_shipped_still_inflates() -> None:
    _, plain = _payloads()["brief"]
    for did in [0, *compress.DICTS]:
        assert wire.decode(_packed_with(plain, did), schema.NodeSnapshot) == wire.decode(plain, schema.NodeSnapshot)


def test_no_dictionary_kind_packs_with_id_0() -> None:
    _, plain = _payloads()["node"]
    packed = wire.pack(plain, None)
    assert packed[:2] == bytes((compress.MARK, 0))
    assert wire.decode(packed, schema.NodeSnapshot) == wire.decode(plain, schema.NodeSnapshot)
    assert wire.pack(plain, "no such kind")[1] == 0


def test_energy_ledgers_and_cluster_payloads_pack_without_a_dictionary(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Written by the simulator's real path (sim/simulate.py: the Publisher, the agent's energy Ledger), read
    back by the reader and the energy reader as before."""
    from clustertop.read.energy import decode_ledgers

    c = redis_server.client()
    sim = SimCluster(seed=2, nodes=6, gpus_per_node=2)
    pubs: dict[str, Publisher] = {}
    for i in range(20):  # an energy ledger is saved every 15 s
        simulate.publish(c, sim, 1_800_000_000.0 + i, pubs)
    towers = [h for h in sim.hosts if h in sim.tower_hosts]
    raw = [(h, c.get(wire.energy_key(h))) for h in towers]
    assert all(r is not None and r[:2] == bytes((compress.MARK, 0)) for _, r in raw)
    ledgers, errors = decode_ledgers(raw)
    assert errors == {} and {led.host for led in ledgers} == set(towers)
    names = [n for n in wire.CLUSTER_NAMES if c.exists(wire.cluster_key(n))]
    assert names and all(c.get(wire.cluster_key(n))[:2] == bytes((compress.MARK, 0)) for n in names)
    reader = Reader(redis_server.client())
    assert set(reader.read().cluster) >= set(names)


def test_an_older_agents_plain_payload_still_decodes() -> None:
    for kind, (obj, plain) in _payloads().items():
        assert plain[0] != compress.MARK  # msgpack never starts with 0xC1: the two forms cannot be confused
        assert wire.decode(plain, KINDS[kind]) == obj


def test_a_decompression_bomb_is_refused_after_the_limit() -> None:
    # 64 MiB of zeros deflate to ~64 KiB: under the 256 KiB stored limit, 256 times over it inflated.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    body = b"".join(c.compress(chunk) for _ in range(64)) + c.flush()
    bomb = bytes((compress.MARK, 0)) + body
    assert len(bomb) < wire.MAX_PAYLOAD_BYTES
    with pytest.raises(wire.WireError, match=f"inflates past {wire.MAX_PAYLOAD_BYTES} bytes"):
        wire.decode(bomb, schema.NodeSnapshot)
    # The bound is what inflate is given, not checked afterwards: at most limit + 1 bytes come out.
    with pytest.raises(compress.PackError, match="inflates past 1000 bytes"):
        compress.inflate(bomb, 1000)
    # Exactly at the limit is fine; one byte over is not.
    exact = bytes((compress.MARK, 0)) + zlib.compress(bytes(1000), 6, -15)
    assert compress.inflate(exact, 1000) == bytes(1000)
    with pytest.raises(compress.PackError):
        compress.inflate(exact, 999)


def test_unknown_dictionary_names_its_id() -> None:
    _, plain = _payloads()["digest"]
    forged = bytes((compress.MARK, 7)) + zlib.compress(plain, 6, -15)
    with pytest.raises(wire.WireError, match="dictionary 7 unknown: this reader is older"):
        wire.decode(forged, schema.NodeDigest)


def test_a_dictionary_missing_from_the_install_is_a_wire_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _, plain = _payloads_cached()["digest"]
    packed = wire.pack(plain, "digest")
    monkeypatch.setattr(compress, "_dicts", {})  # not loaded yet in this process
    monkeypatch.setitem(compress.DICTS, compress.CURRENT["digest"], "no-such-file.bin")
    with pytest.raises(wire.WireError, match=r"dictionary 3 \(no-such-file.bin\) missing from this install"):
        wire.decode(packed, schema.NodeDigest)


@pytest.mark.parametrize(("data", "why"), [
    (b"\xc1", "truncated"),
    (b"\xc1\x01", "truncated"),
    (b"\xc1\x00\xff\xff\xff", "corrupt"),
    (bytes((compress.MARK, 0)) + zlib.compress(b"\x80", 6, -15) + b"junk", "after the end"),
])
def test_malformed_packed_payloads_say_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.decode(data, schema.NodeSnapshot)


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_fuzz_truncated_packed_payloads(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(KINDS)))
    _, plain = _payloads_cached()[kind]
    packed = wire.pack(plain, kind)
    cut = data.draw(st.integers(0, len(packed) - 1))
    with pytest.raises(wire.WireError):
        wire.decode(packed[:cut] if cut else b"", KINDS[kind])


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_fuzz_corrupted_packed_payloads(data: st.DataObject) -> None:
    """Flipped bytes anywhere: a WireError, or (deflate has no checksum) msgpack that still validates as the
    kind; never another exception."""
    kind = data.draw(st.sampled_from(sorted(KINDS)))
    _, plain = _payloads_cached()[kind]
    buf = bytearray(wire.pack(plain, kind))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(1, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    try:
        out = wire.decode(bytes(buf), KINDS[kind])
    except wire.WireError:
        return
    assert isinstance(out, KINDS[kind])


@given(st.integers(0, 255), st.binary(max_size=4000))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes_behind_the_mark(did: int, body: bytes) -> None:
    try:
        wire.decode(bytes((compress.MARK, did)) + body, schema.NodeSnapshot)
    except wire.WireError:
        pass


@given(hostile.structs(schema.NodeSnapshot), st.sampled_from(sorted(KINDS)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_fuzz_hostile_snapshots_read_the_same_packed_or_plain(snap: schema.NodeSnapshot, kind: str) -> None:
    """NaN, 2**64, megabyte strings, control characters: packing changes nothing about what a reader gets
    (the same struct, or a WireError for both where the payload is over the limit)."""
    plain = hostile.encode_or_none(snap)
    if plain is None:
        return
    packed = wire.pack(plain, kind)
    try:
        want: object = wire.decode(plain, schema.NodeSnapshot)
    except wire.WireError:
        want = wire.WireError
    try:
        got: object = wire.decode(packed, schema.NodeSnapshot)
    except wire.WireError:
        got = wire.WireError
    # Inflated, the packed form is the plain bytes: refused exactly where they are (the plain form's limit is on
    # stored bytes, the packed form's on inflated ones: the same bytes), else the same struct.
    assert (got is wire.WireError) == (want is wire.WireError)
    if want is not wire.WireError:
        assert msgspec.msgpack.encode(got) == msgspec.msgpack.encode(want)


def test_threads_packing_at_once_get_what_one_thread_gets() -> None:
    """One primed compressor per dictionary serves every thread (the simulator publishes many nodes)."""
    payloads = _payloads_cached()
    want = {k: wire.pack(p, k) for k, (_, p) in payloads.items()}
    bad: list[str] = []

    def work() -> None:
        for _ in range(200):
            for k, (_, p) in payloads.items():
                if wire.pack(p, k) != want[k]:
                    bad.append(k)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


_CACHE: dict[str, tuple[msgspec.Struct, bytes]] = {}


def _payloads_cached() -> dict[str, tuple[msgspec.Struct, bytes]]:
    if not _CACHE:
        _CACHE.update(_payloads())
    return _CACHE


# -- against a real redis-server ---------------------------------------------------------------------


def test_reader_reads_packed_and_plain_nodes_side_by_side(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The real Publisher stores packed payloads; an older agent's plain ones beside them read the same;
    every read level (full, briefs, the briefs' GPUs only, digests) works on inflated bytes."""
    c = redis_server.client()
    sim = SimCluster(seed=9, nodes=12, gpus_per_node=8)
    now = time.time()
    ticks, _ = sim.step(now)
    snaps = {s.host: s for s, _ in ticks}
    older = ticks[0][0].host  # an agent from before packing: plain msgpack, same keys
    for s, h in ticks:
        if s.host == older:
            c.set(wire.node_key(s.host), wire.encode(s), px=60_000)
            c.set(wire.brief_key(s.host), wire.encode(brief(s)), px=60_000)
            c.set(wire.digest_key(s.host), wire.encode(digest(s)), px=60_000)
            c.zadd(wire.NODES_KEY, {s.host: s.ts})
        else:
            Publisher(c, s.host, 60.0, tiers=False).publish(s, h)
    for s, _ in ticks:
        for key in (wire.node_key(s.host), wire.brief_key(s.host), wire.digest_key(s.host)):
            assert (c.get(key)[0] == compress.MARK) == (s.host != older), key
    for plan in (ReadPlan(Level.FULL), ReadPlan(Level.BRIEFS), ReadPlan(Level.GPUS), ReadPlan(Level.DIGESTS)):
        reader = Reader(redis_server.client(), brief_from=2)
        reader.read()  # the first read finds the nodes (and is full)
        st = reader.read(plan)
        assert st.plan == plan
        assert {n.host: n.state for n in st.nodes} == {h: "up" for h in snaps}, plan
        for n in st.nodes:
            # (the publisher adds which full snapshot its key holds: ``full_ts``, not a fold of the snapshot)
            assert msgspec.structs.replace(n.digest, full_ts=None) == digest(snaps[n.host]), (plan, n.host)
            if plan.level == Level.DIGESTS:
                assert n.snap is None
            elif plan.level == Level.FULL:
                assert n.snap == snaps[n.host]
            elif plan.level == Level.BRIEFS:
                assert n.snap == brief(snaps[n.host])
            else:
                assert n.snap is not None and n.snap.gpus == brief(snaps[n.host]).gpus
    # The history point went into the stream packed, and reads back.
    _, hp = ticks[1]
    (_, fields), = c.xrange(wire.hist_key(ticks[1][0].host))
    assert fields[b"d"][0] == compress.MARK
    assert wire.decode(fields[b"d"], schema.HistPoint) == hp


def test_a_bad_packed_payload_spoils_only_its_node(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = redis_server.client()
    now = time.time()
    sim = SimCluster(seed=4, nodes=3, gpus_per_node=2)
    ticks, _ = sim.step(now)
    for s, h in ticks:
        Publisher(c, s.host, 60.0, tiers=False).publish(s, h)
    victim = ticks[0][0].host
    c.set(wire.node_key(victim), bytes((compress.MARK, 200)) + b"\x00" * 40)
    st = Reader(redis_server.client()).read()
    states = {n.host: n.state for n in st.nodes}
    assert states.pop(victim) == "bad" and set(states.values()) == {"up"}
    bad = st.node(victim)
    assert bad is not None and bad.error is not None and "dictionary 200 unknown" in bad.error


def test_seals_cover_the_packed_bytes_as_stored(redis_server) -> None:  # type: ignore[no-untyped-def]
    from clustertop.control import signing, trust

    c = redis_server.client()
    key = signing.new_key()
    snap, hp = _tower()
    Publisher(c, snap.host, 60.0, key=key, tiers=False).publish(snap, hp)
    known = trust.KnownNodes(keys={snap.host: key.public()})
    for kind in ("node", "brief", "digest"):
        payload, seal = trust.read_sealed(c, snap.host, kind)
        assert payload is not None and payload[0] == compress.MARK
        assert trust.seal_verdict(snap.host, payload, seal, known, kind).ok, kind
    got, verdict = trust.verified_snapshot(c, snap.host, known)
    assert verdict.ok and got == snap
    # The same snapshot stored plain (or packed otherwise) is other bytes: the seal no longer vouches for it.
    c.set(wire.node_key(snap.host), wire.encode(snap), px=60_000)
    got, verdict = trust.verified_snapshot(c, snap.host, known)
    assert not verdict.ok and "does not match its seal" in verdict.text


def test_the_dictionaries_are_package_data() -> None:
    """pyproject ships clustertop/wire/dicts/*.bin (the wheel test in tests/cli builds the wheel for real)."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["clustertop.wire"]
    shipped = {p.name for g in globs for p in (root / "clustertop" / "wire").glob(g)}
    assert set(compress.DICTS.values()) <= shipped


def test_the_real_agent_stores_packed_payloads_that_verify(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`clustertop agent --once` (its own RESP client, this machine's collectors): every per-tick payload is
    stored packed, reads back, and its seal, over the packed bytes, verifies against the node's key."""
    import subprocess
    import sys

    from clustertop.control import signing, trust
    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "NOTIFY_", "WATCHDOG_"))}
    env["STATE_DIRECTORY"] = str(tmp_path)  # its node key is made here
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--once", "--redis", redis_server.url,
                        "--node", "packed-node"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    c = redis_server.client()
    host = "packed-node"
    for key, kind in ((wire.node_key(host), "node"), (wire.brief_key(host), "brief"),
                      (wire.digest_key(host), "digest"), (wire.seal_key(host), "seal")):
        data = c.get(key)
        assert data is not None and data[:2] == bytes((compress.MARK, compress.CURRENT[kind])), key
        assert wire.decode(data, KINDS[kind]).host == host
    (_, fields), = c.xrange(wire.hist_key(host))
    assert fields[b"d"][:2] == bytes((compress.MARK, compress.CURRENT["hist"]))
    known = trust.KnownNodes(keys={host: signing.node_key(str(tmp_path)).public()})
    for kind in ("node", "brief", "digest"):
        payload, seal = trust.read_sealed(c, host, kind)
        assert trust.seal_verdict(host, payload, seal, known, kind).ok, kind
    view = Reader(redis_server.client()).read().node(host)
    assert view is not None and view.state == "up" and view.snap is not None and view.snap.host == host
