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
