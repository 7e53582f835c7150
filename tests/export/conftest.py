"""Fixtures of the exporter's tests: `clustertop exporter` processes, stopped (SIGTERM) after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.exporter_process import ExporterProcess


@pytest.fixture
def start_exporter() -> Iterator[Callable[..., ExporterProcess]]:
    started: list[ExporterProcess] = []

    def start(*args: str) -> ExporterProcess:
        p = ExporterProcess(*args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
