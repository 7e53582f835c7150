"""The overview's UI-thread work at 10,000 nodes (issue 18) made not to scale with the nodes, each cut keeping what is
shown: the summaries' alerts kept per bucket while unchanged (``read.summary.AlertMemo``), the alert strip putting
in order only the alerts it shows (``first_alerts``), the timeline's log with more live alerts than it keeps events,
and the trust round robin over the enrolled hosts when few are enrolled (``NodeTrust.seals_wanted``)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustertop.dashboard.nodetrust import NodeTrust
from clustertop.dashboard.widgets.alerts import first_alerts, order_alerts
from clustertop.dashboard.widgets.timeline import MAX_EVENTS, AlertLog
from clustertop.read.cluster import Alert, by_bucket
from clustertop.read.model import NodeView
from clustertop.read.summary import AlertMemo, fold, merged_alerts
from clustertop.wire import schema
from tests.dashboard.test_tiles_at_scale import TilesApp, text
from tests.dashboard.test_tiles_at_scale import views as tile_views
from tests.support import builders
from tests.support.hostile import NASTY, TEXT_ALPHABET

NOW = builders.NOW
SEVERITIES = ("critical", "warning", "info")


def views_with_alerts(n: int, seed: int) -> list[NodeView]:
    """``n`` nodes, some down or stale, a third with one or two digest alerts (as a read leaves them: host order)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        host = f"gpu{i:05d}"
        state = rng.choice(("up", "up", "up", "up", "stale", "down"))
        alerts = [schema.DigestAlert(rng.choice(SEVERITIES), "gpu", f"gpu{k}", f"GPU {k} hot")
                  for k in range(rng.choice((0, 0, 1, 2)))]
        d = schema.NodeDigest(v=1, host=host, ts=NOW, seq=i, alerts=alerts or None)
        out.append(NodeView(host=host, state=state, last_seen_ts=NOW - 5, age_s=5.0, digest=d))
    return out


def _alert(sev: str, node: str | None, subject: str, message: str) -> Alert:
    return Alert(sev, "gpu", node, subject, message, "R")


@st.composite
def alerts_and_seen(draw: st.DrawFn) -> tuple[list[Alert], dict[str, float]]:
    words = st.one_of(st.text(TEXT_ALPHABET, max_size=8), st.sampled_from([n for n in NASTY if n]))
    out = draw(st.lists(st.builds(_alert, st.sampled_from(SEVERITIES), st.one_of(st.none(), words), words, words),
                        max_size=60))
    seen: dict[str, float] = {}
    for a in out:  # some never seen (0.0 then), many seen at the same stamp, NaN and ±inf too
        t = draw(st.one_of(st.none(), st.sampled_from([10.0, 20.0, 20.0, 30.0]), st.floats()))
        if t is not None and not (isinstance(t, float) and math.isnan(t)):
            seen[a.key] = t
    return out, seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts_and_seen(), st.integers(0, 8))
def test_the_strip_puts_in_order_only_what_it_shows_and_it_is_the_full_sorts_head(
        got: tuple[list[Alert], dict[str, float]], n: int) -> None:
    alerts, seen = got
    assert first_alerts(alerts, seen, n) == order_alerts(alerts, seen)[:n]
    assert [id(a) for a in first_alerts(alerts, seen, n)] == [id(a) for a in order_alerts(alerts, seen)[:n]]


def test_unchanged_buckets_keep_their_alerts_and_a_changed_one_is_made_afresh() -> None:
    vs = views_with_alerts(3000, seed=1)
    summaries = [fold(g, b, "folder", NOW, seq=1, interval_s=1.0, gpu_columns=False)
                 for b, g in enumerate(by_bucket(vs)) if g]
    memo = AlertMemo()
    first = merged_alerts(summaries, memo)
    assert first == merged_alerts(summaries) and len(first) > 500  # the same alerts, in the same order
    # The next read: every summary written again (new seq, new stamp), the same alerts: the same objects.
    again = [fold(g, b, "folder", NOW + 1, seq=2, interval_s=1.0, gpu_columns=False)
             for b, g in enumerate(by_bucket(vs)) if g]
    second = merged_alerts(again, memo)
    assert second is first
    # One node's alert changes: its bucket's alerts are made afresh, the other buckets' kept.
    changed = next(v for v in vs if v.digest is not None and v.digest.alerts)
    assert changed.digest is not None and changed.digest.alerts
    changed.digest.alerts[0].message = "GPU 0 at 99 C \x1b[2J"
    third_in = [fold(g, b, "folder", NOW + 2, seq=3, interval_s=1.0, gpu_columns=False)
                for b, g in enumerate(by_bucket(vs)) if g]
    third = merged_alerts(third_in, memo)
    assert third == merged_alerts(third_in) and third is not first
    before = {a.key: a for a in first}
    fresh = [a for a in third if before.get(a.key) is not a]
    assert [a.message for a in fresh] == ["GPU 0 at 99 C \x1b[2J"]  # the one alert that changed, the rest kept
    assert {s.bucket for s in third_in if any(a.node in s.hosts for a in fresh)} == {
        s.bucket for s in third_in if changed.host in s.hosts}
    # A bucket gone (its summary refused): its alerts go with it.
    fourth = merged_alerts(third_in[1:], memo)
    assert fourth == merged_alerts(third_in[1:]) and len(fourth) < len(third)


def test_a_log_with_more_live_alerts_than_it_keeps_does_not_log_them_again_every_read() -> None:
    live = [_alert("warning", f"n{i:05d}", "gpu0", "hot") for i in range(MAX_EVENTS * 5)]
    log = AlertLog()
    log.update(live, 10.0)
    assert len(log.events) == MAX_EVENTS and log.version == 1
    log.update(list(live), 11.0)  # the same alerts, a new list: nothing opened, nothing cleared
    assert log.version == 1 and all(e.ts == 10.0 for e in log.events)
    kept = list(log.events)
    log.update(live[:-1], 12.0)  # the newest one clears (it is in the log)
    assert log.version == 2 and kept[-1].cleared_ts == 12.0
    log.update(live[1:-1], 13.0)  # the oldest clears, long pushed out of the log: nothing to mark, no change
    assert log.version == 2
    log.update([*live[1:-1], live[0]], 14.0)  # and opens again: logged now
    assert log.version == 3 and log.events[-1].ts == 14.0 and log.events[-1].alert is live[0]
    assert len(log._open) == len(live) - 1  # bounded by the alerts live at once


def test_few_enrolled_hosts_are_taken_round_robin_without_walking_every_host() -> None:
    hosts = [f"n{i:05d}" for i in range(10_000)]
    enrolled = ["n00007", "n04000", "n09999", "not-in-the-index"]
    nt = NodeTrust(builders.known_nodes(*enrolled))
    seen: list[str] = []
    for _ in range(4):
        want = nt.seals_wanted(hosts, [], n=2)
        assert len(want) == 2 and set(want) <= set(enrolled[:3])
        seen += want
    assert seen == ["n00007", "n04000", "n09999", "n00007", "n04000", "n09999", "n00007", "n04000"]
    # The focus first, never twice; a focus nobody enrolled is not asked for.
    assert nt.seals_wanted(hosts, ["n04000", "n00001"], n=5) == ["n04000", "n09999", "n00007"]
    random.shuffle(hosts)  # any order of hosts: name order among the enrolled
    assert sorted(nt.seals_wanted(hosts, [], n=3)) == enrolled[:3]



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_tiles_drawn_on_a_scroll_are_let_go_by_the_next_reads_without_a_pass_over_every_tile() -> None:
    """A read compares only the tiles in view and lets go of the ones drawn since out of view (``_held``): the
    tiles a scroll drew, then left, keep nothing of that read, read after read; the ones in view are exact."""
    app = TilesApp()
    async with app.run_test(size=(100, 24)) as pilot:
        tiles = app.tiles
        tiles.set_nodes(tile_views(300, 40.0, 1))  # a new layout: every tile its signature
        await pilot.pause()
        _, bottom = tiles._visible_tiles()
        for cpu, seq in ((50.0, 2), (60.0, 3), (70.0, 4)):
            tiles.scroll_end(animate=False)
            await pilot.pause()
            assert tiles.tiles[-1].lines
            assert tiles._held is None if seq == 2 else 299 in (tiles._held or ())  # None: any tile may hold
            tiles.scroll_home(animate=False)
            await pilot.pause()
            same_hosts = tile_views(300, cpu, seq)
            assert 0 < tiles.set_nodes(same_hosts) <= bottom
            await pilot.pause()
            assert all(not t.lines and not t.sig for t in tiles.tiles[bottom + tiles.columns * 2:])
            assert tiles._held is not None and len(tiles._held) <= bottom + tiles.columns * 2
            assert f" {cpu:.0f} %" in text(tiles.tiles[0].lines)
        # The very same views again (a read of bucket summaries keeps them): the same hosts, nothing redrawn.
        assert tiles.set_nodes(list(tiles.views)) == 0
        tiles.scroll_end(animate=False)
        await pilot.pause()
        assert " 70 %" in text(tiles.tiles[-1].lines)
