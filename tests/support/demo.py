"""Provides the demo (``clustertop demo``'s simulated cluster, cli/modes.py) for dashboard tests: the ``demo``
fixture and ``demo_app``, the dashboard on it as `clustertop demo` builds it (its operator key, the simulated
nodes' keys, its stand-in Kubernetes/Celery/Dask/Ceph control)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.cli import modes
from clustertop.dashboard.app import make_app
from clustertop.dashboard.settings import Settings


def running(interval_s: float) -> Iterator[modes.Backend]:
    """The demo (seed 4, an hour of history prefilled) for the time of a fixture; closed after it."""
    backend = modes.start_demo(seed=4, nodes=None, interval_s=interval_s, prefill_s=60)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def demo() -> Iterator[modes.Backend]:
    """At 0.5 s a tick: a dashboard on it reads every 0.5 s."""
    yield from running(0.5)


def demo_app(backend: modes.Backend) -> Any:
    settings = Settings(refresh_s=0.5, source_label=backend.label, known=backend.known,
                        operator_key=backend.operator_key, operator="demo-user",
                        external_control_refused=backend.external_refused, demo_control=backend.demo_control)
    return make_app(settings, backend.client_factory)
