"""Provides the palette: the theme's severity variables as Rich styles, for Line-API widgets and tables.

Widgets never hold colours of their own: they ask the palette, which is rebuilt from the running
theme's variables (``$ct-ok`` ... ``$ct-crit``) whenever the theme changes.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.style import Style

SEVERITIES = ("ok", "info", "warn", "crit", "stale")


class Palette:
    def __init__(self, variables: Mapping[str, str], version: int = 0) -> None:
        self.version = version
        self.styles: dict[str, Style] = {}
        for sev in SEVERITIES:
            colour = variables.get(f"ct-{sev}")
            self.styles[sev] = Style(color=colour) if colour else Style(dim=True)
        self.styles["na"] = Style(dim=True)
        empty = variables.get("ct-bar-empty")
        # Bars are drawn on a background of this colour, so the empty part is visible as a track.
        self.bar_empty = Style(bgcolor=empty) if empty else Style(reverse=False)
        self.plain = Style()
        self.bold = Style(bold=True)
        self.dim = Style(dim=True)
        self.cursor = Style(reverse=True, bold=True)

    def __getitem__(self, sev: str) -> Style:
        return self.styles.get(sev, self.plain)

    def text_style(self, sev: str) -> str:
        """The same colour as a Rich style string (for ``Text`` cells in tables)."""
        style = self.styles.get(sev)
        return str(style) if style is not None else ""


def node_state_severity(state: str) -> str:
    return {"up": "ok", "stale": "stale", "down": "crit", "bad": "crit"}.get(state, "na")
