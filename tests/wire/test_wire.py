"""The wire schema and codec: round trips, tolerance of old/new payloads, and refusal of garbage."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustertop import wire
from clustertop.wire import schema


def _node() -> schema.NodeSnapshot:
    return schema.NodeSnapshot(
        host="gpu01", ts=1700000000.5, seq=7,
        system=schema.System(cpu_count=16, cpu=schema.CpuTimes(util_pct=12.5),
                             mem=schema.Memory(total_bytes=64 << 30, used_bytes=10 << 30)),
        gpus=[schema.Gpu(index=0, name="NVIDIA GeForce GTX 1080 Ti", util_pct=97, ecc_corrected=None,
                         fan_pct=None, power_mw=245_000)],
    )


def test_round_trip_keeps_every_value_and_none_stays_none() -> None:
    snap = _node()
    back = wire.decode(wire.encode(snap), schema.NodeSnapshot)
    assert back == snap
    assert back.gpus is not None and back.gpus[0].ecc_corrected is None and back.gpus[0].fan_pct is None
    # JSON shows unknown as null, never 0
    js = msgspec.json.decode(wire.to_json(snap))
    assert js["v"] == 1 and js["host"] == "gpu01" and js["seq"] == 7
    assert js["gpus"][0]["ecc_corrected"] is None and js["gpus"][0]["fan_pct"] is None  # null, not 0
    # on the wire, unknown nested fields are simply absent (small payloads) and decode to None
    assert "ecc_corrected" not in msgspec.msgpack.decode(wire.encode(snap))["gpus"][0]


def test_version_is_always_on_the_wire() -> None:
    raw = msgspec.msgpack.decode(wire.encode(schema.NodeSnapshot(host="a")))
    assert raw["v"] == schema.SCHEMA_VERSION


def test_newer_payload_with_unknown_fields_decodes_and_is_flagged() -> None:
    raw = msgspec.to_builtins(_node())
    raw["v"] = 2
    raw["quantum_flux"] = {"a": [1, 2, 3]}
    raw["gpus"][0]["nvlink_bw"] = 12345
    snap = wire.decode(msgspec.msgpack.encode(raw), schema.NodeSnapshot)
    assert snap.v == 2 and wire.is_newer(snap)
    assert snap.gpus is not None and snap.gpus[0].util_pct == 97


def test_older_payload_missing_fields_decodes_with_none() -> None:
    snap = wire.decode(msgspec.msgpack.encode({"v": 1, "host": "arm01", "ts": 1.0}), schema.NodeSnapshot)
    assert snap.system is None and snap.gpus is None and snap.collectors == {}


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (b"\xff\x00garbage", "invalid payload"),
    (b"\x81\xa1", "not a clustertop payload"),  # a map of one, cut short
    (b"\xc1", "truncated compressed payload"),  # msgpack never uses 0xC1: it marks a packed payload (wire.compress)
    (msgspec.msgpack.encode({"v": 1, "host": "x", "gpus": "lots"}), "invalid payload"),
    (msgspec.msgpack.encode({"v": 0, "host": "x"}), "bad schema version"),
    (b"x" * (wire.MAX_PAYLOAD_BYTES + 1), "too large"),
])
def test_garbage_is_a_wire_error_saying_why(data: bytes, why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.decode(data, schema.NodeSnapshot)


def test_deeply_nested_payload_is_refused_not_a_crash() -> None:
    # Built by hand: msgpack fixarray-of-one (0x91) nested 100k deep under "labels".
    head = msgspec.msgpack.encode({"v": 1, "host": "x"})
    data = bytes([head[0] + 1]) + head[1:] + msgspec.msgpack.encode("labels") + b"\x91" * 100_000 + b"\x01"
    with pytest.raises(wire.WireError):
        wire.decode(data, schema.NodeSnapshot)


# Property-based: whatever bytes or structures a node sends, decode returns a snapshot or a WireError.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(allow_nan=True) | st.text(max_size=50)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=40,
)
_fields = st.sampled_from(sorted(schema.NodeSnapshot.__struct_fields__) + ["gpus", "system", "bonds"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        wire.decode(data, schema.NodeSnapshot)
    except wire.WireError:
        pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(_fields, _json, max_size=8), st.integers(min_value=-3, max_value=99))
def test_fuzz_wrong_types_and_versions(fields: dict, v: int) -> None:
    payload = {**fields, "v": v}
    try:
        snap = wire.decode(msgspec.msgpack.encode(payload), schema.NodeSnapshot)
    except wire.WireError:
        return
    assert snap.v >= 1


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=200))
def test_fuzz_truncated_real_payload(cut: int) -> None:
    data = wire.encode(_node())
    try:
        wire.decode(data[: max(0, len(data) - cut)], schema.NodeSnapshot)
    except wire.WireError:
        pass


def test_keys_are_versioned_and_per_host() -> None:
    assert wire.node_key("gpu01") == "ct:v1:node:{gpu01}"
    assert wire.hist_key("gpu01") == "ct:v1:hist:{gpu01}"
    assert wire.cluster_key("ceph") == "ct:v1:cluster:{cluster}:ceph"
    assert wire.NODES_KEY == "ct:v1:nodes"
