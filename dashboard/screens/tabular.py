"""Provides TableScreen: a data screen around one big LiveTable, with a filter and sort keys.

``/`` opens the filter (every keystroke re-filters all rows), Esc clears it before it means
"back", ``s`` sorts by the next column and ``S`` reverses. Shared by the nodes and GPUs screens.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.binding import Binding, BindingType
from textual.widgets import Input

from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.widgets.table import LiveTable


class TableScreen(DataScreen):
    table_id = "table"  # the id of the main LiveTable
    filter_placeholder = "filter (Esc clears)"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("escape", "clear_or_back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.needle = ""

    def filter_input(self) -> Input:
        return Input(placeholder=self.filter_placeholder, id="filter")

    @property
    def table(self) -> LiveTable:
        return self.query_one(f"#{self.table_id}", LiveTable)

    def on_mount(self) -> None:
        self.table.focus()

    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip().lower()
        self._redraw()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.table.focus()

    def clear_filter(self) -> bool:
        """Escape: clear an open filter first. Returns True when there was one."""
        if not self.has_class("-filtering"):
            return False
        self.query_one("#filter", Input).value = ""
        self.needle = ""
        self.remove_class("-filtering")
        self.table.focus()
        self._redraw()
        return True

    def action_clear_or_back(self) -> None:
        if not self.clear_filter():
            self.app.action_back()  # type: ignore[attr-defined]

    def _redraw(self) -> None:
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.draw(view)

    def action_sort_next(self) -> None:
        table = self.table
        keys = table.shown_columns  # a folded column would sort by something not on screen
        i = keys.index(table.sort_column) + 1 if table.sort_column in keys else 0
        table.sort_column, table.sort_reverse = None, False
        table.sort_by(keys[i % len(keys)])

    def action_sort_reverse(self) -> None:
        table = self.table
        if table.sort_column is not None:
            table.sort_by(table.sort_column)
