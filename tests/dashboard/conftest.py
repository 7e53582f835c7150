"""Fixtures shared by the dashboard's tests: ``demo`` (the simulated cluster of `clustertop demo`,
tests/support/demo.py)."""

from tests.support.demo import demo  # noqa: F401 - the fixture
