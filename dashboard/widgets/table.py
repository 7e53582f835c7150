"""Provides LiveTable: a sortable row table that draws only the rows on screen (Line API).

A screen hands over the whole list each refresh as cheap records (a NodeView, a (node, GPU) pair)
with two functions: one builds a record's cells, one gives a column's raw value to sort by.
Sorting and the cursor work over every record, but cells are built only for the rows in view
(and for rows scrolled to later), and only lines whose cells or cursor changed are repainted.
At 8,000 GPUs that is ~50 rows of cells per tick instead of 8,000 (a DataTable with every row
cost 1.6-2.5 s per refresh here). Cells are ``SortCell`` (a Text, never parsed as markup).

The look follows Textual's DataTable (same component styles and CSS), so it sits with the rest
of the app; ``sync`` keeps DataTable-like "give me all rows" use for small tables.

Narrow terminals: a table given ``fold`` (column keys, least wanted first) hides those columns,
in that order, while its columns are wider than the widget, so an 80-column ssh session shows
whole columns instead of a table cut at the edge; the header says how many are folded away.
Columns never listed are never hidden (the table scrolls sideways as the last resort).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from clustertop.dashboard import fmt


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


def sorted_order(values: Sequence[Any], reverse: bool) -> list[int]:
    """Positions of ``values`` in sorted order; unknowns (None) last whichever way the numbers run,
    so N/A never poses as a smallest value. Stable: ties keep the caller's order."""
    n = len(values)
    known_at = list(map(operator.is_not, values, repeat(None, n)))  # in C: 80,000 GPUs ~2 ms less a sort
    known = list(compress(range(n), known_at))
    unknown = list(compress(range(n), map(operator.not_, known_at)))
    try:
        known.sort(key=values.__getitem__, reverse=reverse)
    except TypeError:  # a column mixing kinds (text and numbers) still sorts, kinds grouped
        known.sort(key=lambda i: (type(values[i]).__name__, values[i]), reverse=reverse)
    return known + unknown


#: Up to this many rows, rows given again in another order are told from another set of rows (a set compare,
#: ~0.1 ms at 2,000 keys); a bigger table given new keys refits as for another set.
SAME_ROWS_CHECK = 5000

#: One rendered cell: its segments (the cell's own styles), its width, its justification.
_Cell = tuple[list[Segment], int, str | None]


class LiveTable(ScrollView, can_focus=True):
    """Rows of cells with a row cursor; enter (or a click on the cursor row) selects the row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "cursor_top", "Top", show=False),
        Binding("end,ctrl+end", "cursor_bottom", "Bottom", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"livetable--header", "livetable--cursor"}

    # The DataTable's own rules, so both kinds of table look alike in every theme.
    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .livetable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .livetable--header {
                background-tint: $foreground 5%;
            }
        }
        & > .livetable--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .livetable--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .livetable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor is on another row, or its row moved (a sort, rows added or gone above it)."""

        def __init__(self, table: LiveTable, key: str | None, index: int) -> None:
            super().__init__()
            self.table = table
            self.key = key
            self.index = index

        @property
        def control(self) -> LiveTable:
            return self.table

    class Changed(Message):
        """Something about the table changed that a screen may read again for (the subclasses say what)."""

        def __init__(self, table: LiveTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> LiveTable:
            return self.table

    class Sorted(Changed):
        """The rows were sorted by another column or the other way (``sort_by``)."""

    class Scrolled(Changed):
        """Other rows came into view by a scroll (a screen that reads only the rows in view reads them)."""

    class RowSelected(Message):
        """Enter on the cursor row, or a click on it."""

        def __init__(self, table: LiveTable, key: str, index: int) -> None:
            super().__init__()
            self.table = table
            self.key = key
            self.index = index

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(self, columns: list[tuple[str, str]], id: str | None = None, fold: Sequence[str] = ()) -> None:
        super().__init__(id=id)
        self.column_defs = columns  # (key, label)
        self.column_keys = [k for k, _ in columns]
        self._fold = [self.column_keys.index(k) for k in fold]
        self._shown = list(range(len(columns)))  # indices of the columns drawn, in order
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.cursor_row = 0
        # The screen's records in its own order, and the same in display order.
        self._given_keys: list[str] = []
        self._given_items: list[Any] = []
        self._keys: list[str] = []
        self._items: list[Any] = []
        self._cells: Callable[[Any], list[Text]] = lambda item: item
        self._value: Callable[[Any, str], Any] = self._cell_value
        self._values: Callable[[list[Any], str], list[Any]] | None = None
        self._cursor_key: str | None = None
        # Rendered rows by key (built for rows in view only), column content widths, and what each
        # screen line last showed, to repaint only the lines that changed.
        self._content: dict[str, list[_Cell]] = {}
        self._widths = [len(label) for _, label in columns]
        self._refit = False  # the rows changed: columns fit the rows in view anew at the next build
        self._painted: dict[int, tuple[str, bool]] = {}
        self._strips: dict[tuple[str, bool], Strip] = {}
        self._strip_sig: tuple[Any, ...] = ()
        self._styles: tuple[Style, Style, Style, Style] = (Style(), Style(), Style(), Style())
        self.cells_built = 0  # rows whose cells were built (tests and the bench read it)

    # -- data -----------------------------------------------------------------------------------

    def show_rows(self, keys: list[str], items: list[Any], cells: Callable[[Any], list[Text]],
                  value: Callable[[Any, str], Any],
                  values: Callable[[list[Any], str], list[Any]] | None = None) -> None:
        """Show ``items`` (one per key, in the screen's order). ``cells(item)`` builds a row's cells,
        called only for rows in view; ``value(item, column)`` is the raw value sorted by (None = N/A);
        ``values(items, column)``, where given, is the same for every item in one call (a big table's sort)."""
        given = self._given_keys
        if keys != given and not (len(keys) == len(given) <= SAME_ROWS_CHECK and set(keys) == set(given)):
            # Another set of rows (a filter, another GPU's processes): columns fit the rows in view anew
            # (``_settle``). The same rows again, or the same rows in another order (the network screen's
            # problem-first order, where a bond moves up), keep their widths, only growing: a narrower fit would lay
            # the whole screen out again (~40 ms at 1,000 nodes) for columns that jitter tick to tick.
            self._refit = True
        self._given_keys, self._given_items = keys, items
        self._cells, self._value, self._values = cells, value, values
        self._order()
        self._settle(rebuild=True)

    def sync(self, rows: dict[str, list[Text]]) -> None:
        """Show exactly ``rows`` (key -> cells, all built): for small tables (a GPU's processes)."""
        self.show_rows(list(rows), list(rows.values()), _same, self._cell_value)

    def _cell_value(self, cells: list[Text], column: str) -> Any:
        return getattr(cells[self.column_keys.index(column)], "sort_value", None)

    def _order(self) -> None:
        keys, items = self._given_keys, self._given_items
        if self.sort_column is None or self.sort_column not in self.column_keys:
            self._keys, self._items = keys, items
            return
        col, value = self.sort_column, self._value
        vals = self._values(items, col) if self._values is not None else [value(item, col) for item in items]
        order = sorted_order(vals, self.sort_reverse)
        # In C (80,000 GPUs: ~1 ms each, where a comprehension took ~4).
        self._keys = list(itemgetter(*order)(keys)) if len(order) > 1 else [keys[i] for i in order]
        self._items = list(itemgetter(*order)(items)) if len(order) > 1 else [items[i] for i in order]

    def _settle(self, rebuild: bool) -> None:
        """After the rows or their order changed: keep the cursor on its row's key, build the rows
        in view, and repaint what changed (``rebuild``: cells may differ for the same key)."""
        n = len(self._keys)
        old_key, old_row = self._cursor_key, self.cursor_row
        if old_key is not None and 0 <= self.cursor_row < n and self._keys[self.cursor_row] == old_key:
            row = self.cursor_row
        else:
            try:
                row = self._keys.index(old_key) if old_key is not None else -1
            except ValueError:
                row = -1
            if row < 0:  # its row went away: stay at the same place
                row = min(self.cursor_row, n - 1)
        self.cursor_row = max(0, row)
        self._cursor_key = self._keys[self.cursor_row] if n else None
        size = Size(self._table_width(), n + 1)
        if size != self.virtual_size:
            self.virtual_size = size
        self._scroll_cursor_into_view()
        if rebuild:
            old = self._content
            self._content = {}
            widths = list(self._widths)
            if self._refit:
                # Fitted from the labels up, but compared with the widths drawn before: where the rows come out as
                # wide as before (a bond that moved up the network screen's table), nothing is laid out again. A
                # new virtual size lays the whole screen out and repaints every widget on it (~40 ms at 1,000
                # nodes, on most refreshes of the network screen, whose problem-first order changes often).
                self._refit = False
                self._widths = [len(label) for _, label in self.column_defs]
            top, bottom = self._visible_rows()
            for i in range(top, bottom):
                key = self._keys[i]
                cells = self._render(self._items[i])
                if old.get(key) != cells:
                    self._strips.pop((key, False), None)
                    self._strips.pop((key, True), None)
                self._content[key] = cells
            # Strips of rows out of view are stale now; they are rebuilt when scrolled to.
            live = set(self._content)
            for k in [k for k in self._strips if k[0] not in live]:
                del self._strips[k]
            if widths != self._widths:
                self._full_refresh()
        self._refresh_changed()
        if self._cursor_key != old_key or self.cursor_row != old_row:
            self.post_message(self.RowHighlighted(self, self._cursor_key, self.cursor_row))

    def _render(self, item: Any) -> list[_Cell]:
        console = self.app.console
        get_style = console.get_style
        widths = self._widths
        out: list[_Cell] = []
        for i, cell in enumerate(self._cells(item)):
            w = cell.cell_len
            if w > widths[i]:
                widths[i] = w
            if cell.spans:
                segs = list(cell.render(console))
            else:  # Text.render leaves the cell's own style to its caller when it has no spans
                segs = [Segment(cell.plain, get_style(cell.style) if cell.style else None)]
            out.append((segs, w, cell.justify))
        self.cells_built += 1
        return out

    # -- reading back (tests, screens) ----------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return self._keys

    @property
    def cursor_key(self) -> str | None:
        return self._cursor_key

    @property
    def cursor_item(self) -> Any:
        return self._items[self.cursor_row] if self._keys else None

    def item_at(self, index: int) -> Any:
        """The screen's record shown at ``index`` (display order)."""
        return self._items[index]

    def get_row_at(self, index: int) -> list[Text]:
        return self._cells(self._items[index])

    def get_row(self, key: str) -> list[Text]:
        return self.get_row_at(self._keys.index(key))

    def get_row_index(self, key: str) -> int:
        return self._keys.index(key)

    # -- sorting --------------------------------------------------------------------------------

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; the same column again flips the direction."""
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._order()
        self._settle(rebuild=True)
        self._full_refresh()
        self.post_message(self.Sorted(self))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if int(old_value) != int(new_value):
            self.post_message(self.Scrolled(self))

    def visible_rows(self) -> tuple[int, int]:
        """The display rows in view: [top, bottom)."""
        return self._visible_rows()

    # -- cursor ---------------------------------------------------------------------------------

    def move_cursor(self, row: int, animate: bool = False, scroll: bool = True) -> None:
        if not self._keys:
            return
        row = min(len(self._keys) - 1, max(0, row))
        old = self.cursor_row
        self.cursor_row = row
        self._cursor_key = self._keys[row]
        if scroll:
            self._scroll_cursor_into_view()
        self._refresh_changed()
        if row != old:
            self.post_message(self.RowHighlighted(self, self._cursor_key, row))

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _visible_rows(self) -> tuple[int, int]:
        top = int(self.scroll_offset.y)
        height = self.scrollable_content_region.height or self.size.height
        return top, min(len(self._keys), top + max(0, height - 1))

    def _scroll_cursor_into_view(self) -> None:
        if not self._keys:
            return
        top, _ = self._visible_rows()
        page = self._page()
        y = None
        if self.cursor_row < top:
            y = self.cursor_row
        elif self.cursor_row >= top + page:
            y = self.cursor_row - page + 1
        if y is not None:
            # At once (not animated, not deferred): the rows now in view are built right after.
            self.scroll_to(y=y, animate=False, immediate=True, force=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + self._page())

    def action_cursor_top(self) -> None:
        self.move_cursor(0)

    def action_cursor_bottom(self) -> None:
        self.move_cursor(len(self._keys) - 1)

    def action_select_cursor(self) -> None:
        if self._cursor_key is not None:
            self.post_message(self.RowSelected(self, self._cursor_key, self.cursor_row))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:  # the header: sort by the column clicked
            x = event.x + int(self.scroll_offset.x)
            for i in self._shown:
                w = self._widths[i]
                if x < w + 2:
                    self.sort_by(self.column_keys[i])
                    return
                x -= w + 2
            return
        row = int(self.scroll_offset.y) + event.y - 1
        if 0 <= row < len(self._keys):
            if row == self.cursor_row:
                self.action_select_cursor()
            else:
                self.move_cursor(row)
            event.stop()

    def on_resize(self, event: events.Resize) -> None:
        # Build the rows now in view before they are painted, so the columns are as wide as
        # their cells from the first frame on (not one frame later); _full_refresh refits the columns.
        if self._keys:
            self._settle(rebuild=True)
        self._full_refresh()

    # -- painting -------------------------------------------------------------------------------

    def _table_width(self) -> int:
        widths = self._widths
        return sum(widths[i] for i in self._shown) + 2 * len(self._shown)

    def _fit(self) -> None:
        """Fold columns (in ``fold`` order) until the rest fit the widget's width."""
        width = self.scrollable_content_region.width or self.size.width
        shown = list(range(len(self.column_defs)))
        if width > 0 and self._fold:
            widths = self._widths
            total = sum(w + 2 for w in widths)
            for i in self._fold:
                if total <= width:
                    break
                shown.remove(i)
                total -= widths[i] + 2
        self._shown = shown

    @property
    def shown_columns(self) -> list[str]:
        """Keys of the columns drawn now (the others are folded away for want of width)."""
        return [self.column_keys[i] for i in self._shown]

    def _full_refresh(self) -> None:
        self._fit()
        self._strips.clear()
        self._painted.clear()
        self.virtual_size = Size(self._table_width(), len(self._keys) + 1)
        self.refresh()

    def _refresh_changed(self) -> None:
        """Repaint the screen lines whose row, cursor or cells changed since they were drawn."""
        top, bottom = self._visible_rows()
        painted = self._painted
        strips = self._strips
        for i in range(top, bottom):
            key = self._keys[i]
            cursor = i == self.cursor_row
            y = i - top + 1
            if painted.get(y) != (key, cursor) or (key, cursor) not in strips:
                self.refresh(Region(0, y, self.size.width, 1))
        for y in [y for y in painted if y > bottom - top]:
            del painted[y]
            self.refresh(Region(0, y, self.size.width, 1))

    def render_lines(self, crop: Region) -> list[Strip]:
        base = self.rich_style
        header = self.get_component_styles("livetable--header").rich_style
        cursor = self.get_component_rich_style("livetable--cursor")
        # Like DataTable: the cursor's text colour wins over the cell's, its background does not.
        post = Style.from_color(color=cursor.color)
        self._styles = (base, header, base + cursor, post)
        sig = (self._styles, self.size.width, tuple(self._widths), tuple(self._shown))
        if sig != self._strip_sig:
            self._strip_sig = sig
            self._strips.clear()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        base, header, cursor_style, post = self._styles
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            strip = self._header_strip(header)
        else:
            row = int(scroll_y) + y - 1
            if row >= len(self._keys):
                self._painted.pop(y, None)
                return Strip.blank(width, base)
            key = self._keys[row]
            cursor = row == self.cursor_row
            strip = self._strips.get((key, cursor))  # type: ignore[assignment]
            if strip is None:
                cells = self._content.get(key)
                if cells is None:  # scrolled into view since the last refresh: build it now
                    before = list(self._widths)
                    cells = self._content[key] = self._render(self._items[row])
                    if before != self._widths:
                        self.call_after_refresh(self._full_refresh)
                strip = self._row_strip(cells, cursor_style if cursor else base, post if cursor else None)
                self._strips[(key, cursor)] = strip
            self._painted[y] = (key, cursor)
        return strip.crop_extend(int(scroll_x), int(scroll_x) + width, base)

    def _header_strip(self, style: Style) -> Strip:
        segs: list[Segment] = []
        defs, widths = self.column_defs, self._widths
        for i in self._shown:
            # One segment per column (the meta keeps them apart), like DataTable's header cells.
            segs.append(Segment(f" {defs[i][1]:<{widths[i]}} ", style + Style.from_meta({"column": i})))
        folded = len(defs) - len(self._shown)
        # Inside the scrollbar, so the note is never cut by it.
        rest = (self.scrollable_content_region.width or self.size.width) - self._table_width()
        note = f"+{folded} more "
        if folded and rest >= len(note):
            segs.append(Segment(note.rjust(rest), style + Style(dim=True)))
            return Strip(segs).extend_cell_length(self.size.width, style)
        return self._fill(segs, style)

    def _row_strip(self, cells: list[_Cell], style: Style, post: Style | None) -> Strip:
        segs: list[Segment] = []
        apply = Segment.apply_style
        widths = self._widths
        for i in self._shown:
            content, w, justify = cells[i]
            pad = widths[i] - w
            if justify == "right":
                segs.append(Segment(" " * (pad + 1), style))
                segs.extend(apply(content, style, post))
                segs.append(Segment(" ", style))
            else:
                segs.append(Segment(" ", style))
                segs.extend(apply(content, style, post))
                segs.append(Segment(" " * (pad + 1), style))
        return self._fill(segs, style)

    def _fill(self, segs: list[Segment], style: Style) -> Strip:
        # The row's style runs on to the widget's right edge (the cursor bar spans the width).
        rest = self.size.width - self._table_width()
        if rest > 0:
            segs.append(Segment(" " * rest, style))
        return Strip(segs)


def _same(item: Any) -> Any:
    return item
