"""The overview past ``plan.SUMMARY_FROM_NODES`` (lowered here, as tests/read/test_plan.py does): totals and
alerts from the bucket summaries equal the digest path's, every host is in the grid and the tiles in view get
their figures from their digests (a scroll asks for the next ones), the screen says what it drew from, a
forged summary is refused and said, and hostile text in a summary never reaches the terminal raw. Real
redis-server, the real app under ``run_test``, summaries folded and sealed as a summary node does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.widgets import Static

from clustertop.control import signing, trust
from clustertop.control.summary import seal
from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.overview import OverviewScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.tiles import NodeTiles
from clustertop.read import plan as plans
from clustertop.read.cluster import alerts, by_bucket
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.summary import fold
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key
from tests.support import builders as b

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("summaries_from_here")]  # tests/dashboard/conftest.py
NODES = 240
HEAD = "head01"
EVIL = "evil\x1b[2J\u202eheads"


def write(client: Any, key: signing.PrivateKey, folder: str = HEAD, buckets: Any = range(BUCKETS)) -> Any:
    """Every bucket in ``buckets`` folded from a digest read and sealed; returns that digest read."""
    reader = Reader(client)
    reader.read()
    st = reader.read(ReadPlan(Level.DIGESTS))
    groups = by_bucket(st.nodes)
    for bucket in buckets:
        client.set(summary_key(bucket), seal(fold(groups[bucket], bucket, folder, time.time(), seq=1,
                                                 interval_s=600.0), key))
    return st


def tile_text(tiles: NodeTiles, i: int) -> str:
    tiles._rerender(i)
    return "".join(seg.text for line in tiles.tiles[i].lines for seg in line)


async def test_overview_from_summaries_equals_the_digest_path(redis_server: Any) -> None:
    client = redis_server.client()
    b.publish(client, [b.tower(f"gpu-{i:03d}", (i % 101, 40), ts=time.time(), cpu=float(i % 97))
                       for i in range(NODES)])
    head, forger = b.node_key(HEAD), signing.new_key()
    digest_read = write(client, head)
    known = trust.KnownNodes(keys={HEAD: head.public()})
    app = make_app(Settings(refresh_s=600.0, source_label="test", known=known), redis_server.client)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot, 1)  # the first read is in full (nothing known yet: plan.ReadPlan.sized)
        app.refresh_now()
        await b.wait_fresh(pilot, 1)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        st = app.view.state
        assert st.plan.level is Level.SUMMARIES and st.summaries is not None
        assert st.totals == digest_read.totals
        own = [a for a in app.view.alerts if a.source != "ledger"]
        assert own == alerts(digest_read.nodes, digest_read.cluster, st.ts)
        line = screen.query_one("#summaries", Static)
        assert line.display and f"totals from {BUCKETS}/{BUCKETS} bucket summaries, folded by head01" in str(line.render())
        # Every host in the grid; the tiles in view with their figures (the first read asked for the next).
        tiles = screen.query_one(NodeTiles)
        assert len(tiles.views) == NODES
        await b.wait_until(pilot, lambda: tiles.visible_hosts() <= app.view.state.plan.digest_hosts, "tiles' digests")
        first, last = tiles._visible_tiles()
        assert all(tiles.views[i].digest is not None for i in range(first, min(last, NODES)))
        assert "N/A" not in tile_text(tiles, 0) and "CPU" in tile_text(tiles, 0)
        assert tiles.views[NODES - 1].digest is None  # off screen: its state only, no figures read
        # A scroll brings the next tiles' digests within one read.
        reads = app.finished_reads
        tiles.scroll_end(animate=False)
        await b.wait_until(pilot, lambda: app.finished_reads > reads and tiles.views[NODES - 1].digest is not None,
                           "the scrolled-to tiles' digests")
        assert "N/A" not in tile_text(tiles, NODES - 1)

        # A forged summary (another key in head01's name, its figures made up): refused, said, its hosts read.
        victim = bucket_of("gpu-007")
        lie = fold(by_bucket(digest_read.nodes)[victim], victim, HEAD, time.time(), seq=2, interval_s=600.0)
        lie.totals.gpus_total = 1_000_000
        client.set(summary_key(victim), seal(lie, forger))
        # And one signed by a node nobody enrolled, whose name is hostile: refused, its name escaped.
        hostile = bucket_of("gpu-011")
        write(client, forger, EVIL, [hostile])
        app.refresh_now()
        await b.wait_fresh(pilot, 1)
        st = app.view.state
        assert st.summaries is not None and set(st.summaries.refused) == {victim, hostile}
        assert st.totals == digest_read.totals  # the lie is not in it
        text = str(line.render())
        assert f"2 buckets refused: b{min(victim, hostile)} summary " in text, text
        assert "signed by key" in text and "which is not enro" in text
        assert line.has_class("-refused")
        assert "\x1b" not in text and "\u202e" not in text and "\\x1b" in text
        assert st.node("gpu-007").digest is not None  # type: ignore[union-attr]


async def test_below_the_threshold_nothing_changes(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plans, "SUMMARY_FROM_NODES", 2000)
    client = redis_server.client()
    b.publish(client, [b.tower(f"gpu-{i:03d}", ts=time.time()) for i in range(NODES)])
    write(client, b.node_key(HEAD))
    app = make_app(Settings(refresh_s=600.0, source_label="test", known=b.known_nodes(HEAD)), redis_server.client)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot, 1)
        app.refresh_now()
        await b.wait_fresh(pilot, 1)
        st = app.view.state
        assert st.plan.level is Level.DIGESTS and st.summaries is None
        assert not app.screen.query_one("#summaries", Static).display
        assert all(n.digest is not None for n in st.nodes)


def test_the_summary_line_escapes_node_text() -> None:
    from clustertop.dashboard.screens.overview import summary_note
    from clustertop.read.model import SummaryRead
    from clustertop.wire.summary import BucketSummary

    now = time.time()
    s = SummaryRead(buckets=BUCKETS, believed=[BucketSummary(bucket=i, folder=EVIL, ts=now - 2.0) for i in range(3)],
                    refused={5: "missing", 9: "x" * 100_000 + "\x1b]52;c;Zm9v\x07", 11: "stale: written 9s ago"},
                    from_digests=1)
    text = summary_note(s, now)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text and len(text) < 400
    assert text.startswith("totals from 3/64 bucket summaries, folded by evil\\x1b[2J\\u202eheads, 2.0 s old")
    assert "1 bucket without a summary" in text and "2 buckets refused: b9 xxx" in text and "b11 stale" in text
    assert "1 host read from their digests" in text
