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

    @property
    def effective_read_only(self) -> bool:
        return self.read_only or self.wall
