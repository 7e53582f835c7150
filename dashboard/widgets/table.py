"""Provides LiveTable: a DataTable fed whole rows each refresh that touches only what changed.

New rows are added, vanished rows removed, and changed cells updated with ``update_cell``: no
``clear()`` + rebuild per tick. Cells are ``SortCell`` (a Text that carries the value to sort by),
so sorting by a column sorts numbers as numbers and puts N/A last.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from dashboard import fmt


class SortCell(Text):
    """A table cell: shown as ``Text`` (never parsed as markup), sorted by ``sort_value``."""

    def __init__(self, text: str, style: str = "", sort_value: Any = None, justify: str | None = None) -> None:
        super().__init__(text, style=style, justify=justify)  # type: ignore[arg-type]
        self.sort_value = sort_value


def num_cell(shown: str, value: float | None, style: str = "") -> SortCell:
    if shown == fmt.NA:
        return SortCell(fmt.NA, "dim", None, "right")
    return SortCell(shown, style, value, "right")


def text_cell(value: str | None, style: str = "", limit: int | None = None) -> SortCell:
    if value is None:
        return SortCell(fmt.NA, "dim", None)
    return SortCell(fmt.node_text(value, limit), style, value)


def _sort_key(reverse: bool) -> Any:
    # Unknowns go last whichever way the numbers run, so N/A never poses as a smallest value.
    def key(cell: Any) -> tuple[int, Any]:
        v = getattr(cell, "sort_value", None)
        if v is None:
            return (0, 0) if reverse else (1, 0)
        return (1, v) if reverse else (0, v)

    return key


class LiveTable(DataTable[Any]):
    def __init__(self, columns: list[tuple[str, str]], id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.column_defs = columns  # (key, label)
        self._shown: dict[str, tuple[tuple[str, str], ...]] = {}
        self.sort_column: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in self.column_defs:
            self.add_column(label, key=key)

    def sync(self, rows: dict[str, list[SortCell]]) -> int:
        """Make the table show exactly ``rows`` (key -> cells). Returns the number of cells written."""
        written = 0
        sort_dirty = False
        col_keys = [k for k, _ in self.column_defs]
        sort_index = col_keys.index(self.sort_column) if self.sort_column in col_keys else None
        with self.app.batch_update():
            for key in [k for k in self._shown if k not in rows]:
                self.remove_row(key)
                del self._shown[key]
            for key, cells in rows.items():
                sig = tuple((c.plain, str(c.style)) for c in cells)
                old = self._shown.get(key)
                if old is None:
                    self.add_row(*cells, key=key)
                    written += len(cells)
                    sort_dirty = True
                elif old != sig:
                    for i, (c, s_old, s_new) in enumerate(zip(cells, old, sig, strict=True)):
                        if s_old != s_new:
                            self.update_cell(key, col_keys[i], c)
                            written += 1
                            if i == sort_index:
                                sort_dirty = True
                self._shown[key] = sig
            if sort_dirty and self.sort_column is not None:
                self._apply_sort()
        return written

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; the same column again flips the direction."""
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._apply_sort()

    def _apply_sort(self) -> None:
        if self.sort_column is None:
            return
        cursor_key = self.cursor_key
        self.sort(ColumnKey(self.sort_column), key=_sort_key(self.sort_reverse), reverse=self.sort_reverse)
        if cursor_key is not None and cursor_key in self.rows:
            self.move_cursor(row=self.get_row_index(cursor_key), animate=False)

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count or not self.is_valid_row_index(self.cursor_row):
            return None
        key: RowKey = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_key.value or "")
