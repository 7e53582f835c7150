"""Fixtures shared by the simulator's tests: ``demo``, the demo's simulated cluster at 0.1 s a tick (its agents'
answers and Kubernetes/Celery/Dask control come within a few reads)."""

from collections.abc import Iterator

import pytest

from clustertop.cli import modes
from tests.support.demo import running


@pytest.fixture
def demo() -> Iterator[modes.Backend]:
    yield from running(0.1)
