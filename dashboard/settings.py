"""Provides the dashboard's settings: everything the CLI and the tests can turn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    theme: str | None = None  # None: the default theme ("dark")
    read_only: bool = False  # hide and refuse every action (job control comes later)
    wall: bool = False  # wall display: implies read_only
    wall_page_s: float = 20.0  # wall: seconds per page before the next one (0: no rotation)
    ascii: bool = False  # plain ASCII bars and sparklines (old terminals, serial consoles)
    refresh_s: float = 1.0
    source_label: str = ""  # shown in the header: "redis://host:6379", "demo", "local"
    frozen_time: float | None = None  # tests and snapshots freeze the clock here
    themes_dir: str | None = None  # extra user theme files (*.toml)
    # Job control (dashboard/actions.py): the operator's signing key and the operator's own credentials.
    operator_key: str | None = None  # private key file (--key / CLUSTERTOP_KEY); None: process keys explain
    operator: str | None = None  # name in the audit trail (default: user@host)
    kubeconfig: str | None = None  # the operator's kubeconfig (None: the client's default)
    k8s_context: str | None = None
    k8s_templates: str | None = None  # directory of Job templates (*.yaml) offered by the launcher
    celery_broker: str | None = None  # broker URL for revoke/terminate and pool grow/shrink
    dask_scheduler: str | None = None  # scheduler dashboard URL for retire
    action_timeout_s: float = 15.0  # how long to wait for an agent's answer

    @property
    def effective_read_only(self) -> bool:
        return self.read_only or self.wall
