"""Provides OrderedTable: a LiveTable whose row order is the caller's (problems first), not a sort column.

The caller hands over records in display order and a function that builds one record's cells;
LiveTable builds cells only for the rows in view. Clicking a header does nothing: the grouping
(a bond, then its slaves) would not survive a sort.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from clustertop.dashboard.widgets.table import LiveTable


def _unsorted(item: Any, column: str) -> None:
    return None


class OrderedTable(LiveTable):
    def show(self, keys: list[str], items: list[Any], cells: Callable[[Any], list[Text]]) -> None:
        """Show ``items`` (one per key) in exactly this order; ``cells(item)`` builds a row."""
        self.show_rows(keys, items, cells, _unsorted)

    def sort_by(self, column: str) -> None:  # the caller's order only
        return

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order (tests: what a person reads top to bottom)."""
        return list(self.keys)
