"""Per-node trust on the nodes table and a node's screen (dashboard/nodetrust.py), against a real
redis-server and the real Publisher: "verified" only where the enrolled key sealed exactly what was read;
"not enrolled", "UNSIGNED" and "BAD SIGNATURE" (a payload changed after its seal) otherwise. Within the
refresh budget: the node on screen every read, a few more round robin, each seal verified once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from clustertop import wire
from clustertop.control import signing, trust
from clustertop.dashboard.app import make_app
from clustertop.dashboard.nodetrust import TRUST_PER_READ, NodeTrust
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.read.reader import Reader
from clustertop.wire import schema
from tests.support import builders as b

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def relabel(client: Any, host: str) -> None:
    """A Redis writer changes ``host``'s snapshot after its node sealed it."""
    snap = wire.decode(client.get(wire.node_key(host)), schema.NodeSnapshot)
    snap.role = "miner"
    client.set(wire.node_key(host), wire.encode(snap), keepttl=True)


async def test_the_nodes_table_and_node_screen_say_whose_key_vouches(redis_server: Any) -> None:
    client = redis_server.client()
    now = time.time()
    enrolled = ("gpu-01", "gpu-03", "gpu-04")
    b.publish(client, [b.tower(h, ts=now) for h in ("gpu-01", "gpu-02", "gpu-03")],
              keys={h: b.node_key(h) for h in ("gpu-01", "gpu-02", "gpu-03")})
    b.publish(client, [b.tower("gpu-04", ts=now)])  # an agent that seals nothing
    relabel(client, "gpu-03")
    app = make_app(Settings(refresh_s=0.2, source_label="test", known=b.known_nodes(*enrolled)), redis_server.client)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot, 3)
        await pilot.press("2")
        table = app.screen.query_one(LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == 4, "node rows")
        await b.wait_reads(pilot, app.finished_reads + 2)  # the round robin's verdicts are drawn a read later
        await pilot.pause()
        col = table.column_keys.index("trust")
        words = {table.get_row_at(i)[0].plain: table.get_row_at(i)[col].plain for i in range(4)}
        assert words == {"gpu-01": "verified", "gpu-02": "not enrolled", "gpu-03": "BAD SIGNATURE",
                         "gpu-04": "UNSIGNED"}, words
        # A node's screen: its trust line, checked on every read against its full snapshot.
        app.open_node("gpu-01")
        await b.wait_reads(pilot, app.finished_reads + 1)
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        info = str(app.screen.query_one("#info").render())
        fp = signing.fingerprint(b.node_key("gpu-01").public())
        assert f"trust verified: signed by gpu-01's enrolled key {fp}" in info, info
        relabel(client, "gpu-01")  # changed while on screen: the next read says so
        await b.wait_reads(pilot, app.finished_reads + 2)
        await pilot.pause()
        info = str(app.screen.query_one("#info").render())
        assert "trust BAD SIGNATURE: gpu-01's node payload does not match its seal" in info, info


def test_seals_are_asked_for_round_robin_and_verified_once(redis_server: Any) -> None:
    """Many enrolled nodes: each read takes the focus and TRUST_PER_READ more seals, in turn, and a seal
    already checked costs no second Ed25519 verification."""
    client = redis_server.client()
    hosts = [f"n{i:02d}" for i in range(40)]
    b.publish(client, [b.tower(h, ts=time.time()) for h in hosts], keys={h: b.node_key(h) for h in hosts})
    nt = NodeTrust(b.known_nodes(*hosts[:30]))  # ten nodes nobody enrolled: never asked for
    reader = Reader(client)
    reader.read()
    seen: list[str] = []
    for _ in range(3):
        want = nt.seals_wanted(reader.known, ["n05"])
        assert want[0] == "n05" and len(want) == 1 + TRUST_PER_READ and set(want) <= set(hosts[:30])
        st = reader.read(seals=want)
        nt.check_state(st, want)
        seen += want[1:]
    assert set(seen) | {"n05"} == set(hosts[:30])  # every enrolled node in turn (48 asks wrap around)
    assert all(nt.of(h).word == "verified" for h in hosts[:30]) and nt.of("n35").word == "not enrolled"
    before = nt.verifications
    st = reader.read(seals=hosts[:30])
    nt.check_state(st, hosts[:30])
    assert nt.verifications == before  # the same seals again: remembered, only the hashes compared
    relabel(client, "n07")  # the seal is the same, the payload is not: caught without a verification
    st = reader.read(seals=["n07"])
    nt.check_state(st, ["n07"])
    assert nt.of("n07").word == "BAD SIGNATURE" and nt.verifications == before


def test_a_known_nodes_file_that_cannot_be_read_leaves_nothing_verified(tmp_path: Any) -> None:
    bad = tmp_path / "known_nodes"
    bad.write_text("gpu-01 rsa AAAA\n")
    nt = NodeTrust.from_settings(Settings(known_nodes=str(bad)))
    assert nt.error is not None and "expected 'HOST ed25519" in nt.error and not nt.known.keys
    good = tmp_path / "kn2"
    trust.KnownNodes.load(str(good)).add("gpu-01", b.node_key("gpu-01").public())
    assert NodeTrust.from_settings(Settings(known_nodes=str(good))).enrolled("gpu-01")
