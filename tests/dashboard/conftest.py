"""Fixtures shared by the dashboard's tests: ``demo`` (the simulated cluster of `clustertop demo`,
tests/support/demo.py), ``anyio_backend`` (the app runs on asyncio) and ``summaries_from_here`` (the screens
read bucket summaries from a cluster of a few hundred nodes: ``pytest.mark.usefixtures`` it)."""

import pytest

from clustertop.read import plan as plans
from tests.support.demo import demo  # noqa: F401 - the fixture


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def summaries_from_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """``plan.SUMMARY_FROM_NODES`` lowered to 100, so a test's 240 nodes are read from bucket summaries."""
    monkeypatch.setattr(plans, "SUMMARY_FROM_NODES", 100)
