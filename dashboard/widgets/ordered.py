"""Provides OrderedTable: a LiveTable whose row order is the caller's (problems first), not a sort column.

The caller hands over records in display order and a function that builds one record's cells.
Clicking a header does nothing: the grouping (a bond, then its slaves) would not survive a sort.

LiveTable is being reworked (a Line-API table that builds cells only for the rows in view, with
``show_rows``); this works with both that and the DataTable-based one: with ``show_rows`` only the
visible rows' cells are built, otherwise every row is built and synced, and rows are re-ordered
in place with ``DataTable.sort`` on a rank when the wanted order changes (a bond became degraded
and moves to the top), which is cheap next to ``clear()`` + re-adding every row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from dashboard.widgets.table import LiveTable


class OrderedTable(LiveTable):
    def show(self, keys: list[str], items: list[Any], cells: Callable[[Any], list[Text]]) -> None:
        """Show ``items`` (one per key) in exactly this order; ``cells(item)`` builds a row."""
        if hasattr(self, "show_rows"):
            self.show_rows(keys, items, cells, lambda item, column: None)
            return
        self.sync(dict(zip(keys, (cells(i) for i in items), strict=True)))  # type: ignore[arg-type]
        shown = self.shown_keys
        if shown != keys:
            first = self.column_defs[0][0]
            # The rank is looked up by the identity of each row's stored first cell: the sort key
            # function only sees cell values, never row keys.
            rank = {id(self.get_cell(key, first)): i for i, key in enumerate(keys)}  # type: ignore[attr-defined]
            cursor = self.cursor_key
            self.sort(first, key=lambda cell: rank.get(id(cell), len(rank)))  # type: ignore[attr-defined]
            if cursor is not None and cursor in self.rows:  # type: ignore[attr-defined]
                self.move_cursor(row=self.get_row_index(cursor), animate=False)

    def sort_by(self, column: str) -> None:  # the caller's order only
        return

    def on_data_table_header_selected(self, event: Any) -> None:
        event.stop()

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order (tests: what a person reads top to bottom)."""
        keys = getattr(self, "keys", None)
        if isinstance(keys, list):
            return list(keys)
        return [r.key.value for r in self.ordered_rows]  # type: ignore[attr-defined]
