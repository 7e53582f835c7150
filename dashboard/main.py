"""Provides ``run``: start the dashboard in this terminal and return an exit code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clustertop.dashboard import gcpolicy
from clustertop.dashboard.settings import Settings


def run(settings: Settings, client_factory: Callable[[], Any]) -> int:
    from clustertop.dashboard.app import make_app

    app = make_app(settings, client_factory)
    gcpolicy.tune()  # after the imports and the app are built: they live as long as the process
    result = app.run()
    return int(result or 0) if app.return_code in (None, 0) else int(app.return_code or 1)
