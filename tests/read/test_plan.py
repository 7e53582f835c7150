"""The read plan: what a read takes of each node, what one read holds for another, and the size rule."""

from __future__ import annotations

import pytest

from clustertop.read import plan as plans
from clustertop.read.plan import ALL_FULL, BRIEF_FROM_NODES, Level, ReadPlan


def test_levels_are_ordered_and_each_covers_those_below() -> None:
    assert Level.DIGESTS < Level.GPUS < Level.BRIEFS < Level.FULL
    gpus = ReadPlan(Level.GPUS)
    assert gpus.covers(Level.DIGESTS) and gpus.covers(Level.GPUS)
    assert not gpus.covers(Level.BRIEFS) and not gpus.covers(Level.FULL)
    assert all(ALL_FULL.covers(level) for level in Level)


def test_hosts_in_full() -> None:
    node = ReadPlan(Level.DIGESTS, frozenset({"gpu-01"}))
    assert node.in_full("gpu-01") and not node.in_full("gpu-02")
    assert ALL_FULL.in_full("anything")
    # One spelling per plan: any collection of hosts becomes a frozenset, and a read of everything in
    # full names no hosts, so plans that read the same compare equal.
    assert ReadPlan(Level.DIGESTS, {"gpu-01"}) == node  # type: ignore[arg-type]
    assert ReadPlan(Level.FULL, frozenset({"gpu-01"})) == ALL_FULL == ReadPlan()


@pytest.mark.parametrize(("have", "want", "held"), [
    (ALL_FULL, ReadPlan(Level.DIGESTS, frozenset({"a"})), True),  # everything in full holds any plan
    (ReadPlan(Level.BRIEFS), ReadPlan(Level.GPUS), True),  # whole briefs hold their GPUs
    (ReadPlan(Level.GPUS), ReadPlan(Level.BRIEFS), False),  # a GPU cut is not a brief
    (ReadPlan(Level.DIGESTS), ReadPlan(Level.GPUS), False),
    (ReadPlan(Level.BRIEFS), ALL_FULL, False),  # briefs are not detail
    (ReadPlan(Level.DIGESTS, frozenset({"a", "b"})), ReadPlan(Level.DIGESTS, frozenset({"a"})), True),
    (ReadPlan(Level.DIGESTS, frozenset({"a"})), ReadPlan(Level.DIGESTS, frozenset({"b"})), False),
    (ReadPlan(Level.BRIEFS, frozenset({"a"})), ReadPlan(Level.GPUS, frozenset({"a"})), True),
    (ReadPlan(Level.DIGESTS, frozenset({"a"})), ReadPlan(Level.GPUS, frozenset({"a"})), False),
])
def test_what_one_read_holds_for_another(have: ReadPlan, want: ReadPlan, held: bool) -> None:
    assert have.holds(want) is held


def test_below_brief_from_nodes_everything_is_read_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    digests = ReadPlan(Level.DIGESTS, frozenset({"a"}))
    assert digests.sized(BRIEF_FROM_NODES - 1) == ALL_FULL
    assert digests.sized(BRIEF_FROM_NODES) == digests
    assert digests.sized(5, brief_from=5) == digests and digests.sized(4, brief_from=5) == ALL_FULL
    assert ALL_FULL.sized(10_000) == ALL_FULL
    # The rule reads the module's figure when it runs (tests and the bench lower it to see briefs).
    monkeypatch.setattr(plans, "BRIEF_FROM_NODES", 0)
    assert digests.sized(0) == digests


def test_summaries_sit_below_digests_and_name_the_digests_they_read(monkeypatch: pytest.MonkeyPatch) -> None:
    tiles = ReadPlan(Level.SUMMARIES, frozenset({"a"}), frozenset({"t1", "t2"}))
    assert Level.SUMMARIES < Level.DIGESTS and tiles.covers(Level.SUMMARIES) and not tiles.covers(Level.DIGESTS)
    # Every other level reads every digest: it names none, and holds a summary read's every tile.
    assert ReadPlan(Level.DIGESTS, digest_hosts=frozenset({"t1"})) == ReadPlan(Level.DIGESTS)
    assert ReadPlan(Level.DIGESTS, frozenset({"a"})).holds(tiles) and ALL_FULL.holds(tiles)
    assert not tiles.holds(ReadPlan(Level.DIGESTS))  # the nodes table needs every digest
    assert tiles.holds(ReadPlan(Level.SUMMARIES, digest_hosts=frozenset({"t1"})))
    assert not tiles.holds(ReadPlan(Level.SUMMARIES, digest_hosts=frozenset({"t3"})))  # scrolled: other tiles
    # The size rule: every digest below SUMMARY_FROM_NODES (the hosts in full kept), all in full below briefs.
    assert tiles.sized(plans.SUMMARY_FROM_NODES) == tiles
    assert tiles.sized(plans.SUMMARY_FROM_NODES - 1) == ReadPlan(Level.DIGESTS, frozenset({"a"}))
    assert tiles.sized(BRIEF_FROM_NODES - 1) == ALL_FULL
    assert tiles.sized(50, brief_from=0, summary_from=50) == tiles
    monkeypatch.setattr(plans, "SUMMARY_FROM_NODES", 0)
    assert tiles.sized(BRIEF_FROM_NODES) == tiles
