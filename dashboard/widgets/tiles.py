"""Provides the node tile grid: every node as a small fixed-size tile, drawn with the Line API.

One widget for all tiles (not one widget per node): only the visible lines are drawn, and a tile
is re-rendered only when its signature (state, digest seq, shown age, error) changes, so a
refresh costs O(changed) and 1,000 nodes stay cheap.

Tiles are 4 lines (name, CPU, MEM, GPUs) while the grid needs scrolling; when every node fits
with room to spare (a small cluster on a big terminal) they grow to 8 lines: load and uptime,
network (and the bond's state), disks, and the hottest GPU with the node's GPU power.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets.palette import Palette, node_state_severity
from clustertop.read.model import view_digest
from clustertop.read.reader import NodeView
from clustertop.wire.digest import GPU_BUSY_PCT
from clustertop.wire.schema import NodeDigest

TILE_W = 24
TILE_H = 4
TILE_H_ROOMY = 8
GAP_X = 2
GAP_Y = 1
STRIDE_X = TILE_W + GAP_X
BAR_W = 12

Line = list[Segment]
_HOST = attrgetter("host")


def _width(segs: Line) -> int:
    # One (cached) measurement of the joined text instead of one per segment.
    return cell_len("".join([s.text for s in segs]))


def _pad(segs: Line, width: int, used: int | None = None) -> Line:
    if used is None:
        used = _width(segs)
    if used < width:
        segs.append(Segment(" " * (width - used)))
    return Segment.adjust_line_length(segs, width) if used > width else segs


def _two_sided(left: Line, right: Line, width: int) -> Line:
    lw = _width(left)
    rw = _width(right)
    if lw + rw + 1 > width:  # the left side (a long host name) gives way to the status
        left = Segment.adjust_line_length(left, max(0, width - rw - 1))
        lw = max(0, width - rw - 1)
    return _pad([*left, Segment(" " * (width - lw - rw)), *right], width, width)


def _bar_line(label: str, frac: float | None, shown: str, sev: str, p: Palette, grey: bool,
              ascii: bool) -> Line:
    filled, empty = fmt.bar(frac, BAR_W, ascii)
    value_style = p["na"] if shown == fmt.NA else (p["stale"] if grey else p.plain)
    room = TILE_W - len(label) - BAR_W
    # Labels, bar cells and formatted numbers are all one cell per character: no measuring.
    return _pad([
        Segment(label, p.dim),
        Segment(filled, (p["stale"] if grey else p[sev]) + p.bar_empty),
        Segment(empty, p.bar_empty if frac is not None else p.dim),
        Segment(f"{shown:>{room}}", value_style),
    ], TILE_W, len(label) + BAR_W + max(room, len(shown)))


def _gpu_line(d: NodeDigest | None, p: Palette, grey: bool, ascii: bool) -> Line:
    if d is None or d.gpus is None:
        return _pad([Segment("GPU ", p.dim), Segment(fmt.NA, p["na"])], TILE_W)
    if not d.gpus:
        return _pad([Segment("GPU ", p.dim), Segment("none", p.dim)], TILE_W)
    chars = fmt.ASCII_SPARKS if ascii else fmt.SPARKS
    top = len(chars) - 1
    lost_ch, lost_style = ("x" if ascii else "✗"), p["stale" if grey else "crit"]
    na, stale, warn, info, ok = p["na"], p["stale"], p["warn"], p["info"], p["ok"]
    utils = d.gpu_util_pct or []
    marks = d.gpu_marks or ""
    # One segment per run of cards in the same colour (not one per card): fewer segments to
    # style, crop and compose on every repaint of a 1,000-tile grid.
    runs: list[list[Any]] = []
    for i in range(min(d.gpus, 10)):  # a mini-bar per card; more than 10 cards fold into "+N"
        mark = marks[i] if i < len(marks) else "?"
        u = utils[i] if i < len(utils) else None
        if mark == "x":
            ch, style = lost_ch, lost_style
        elif u is None:
            ch, style = "?", na
        else:
            ch = chars[min(top, max(0, round(u / 100 * top)))]
            if grey:
                style = stale
            elif mark == "e":  # uncorrected ECC errors: trouble (the wall's tile says ECC)
                style = lost_style
            elif mark == "h":
                style = warn
            else:
                style = info if u >= GPU_BUSY_PCT else ok
        if runs and runs[-1][1] is style:
            runs[-1][0] += ch
        else:
            runs.append([ch, style])
    segs: Line = [Segment("GPU ", p.dim), *(Segment(text, style) for text, style in runs)]
    if d.gpus > 10:
        segs.append(Segment(f"+{fmt.num(d.gpus - 10)}", p.dim))
    used, total = d.vram_used_bytes, d.vram_total_bytes
    vram = fmt.pct(100 * used / total) if used is not None and total and not d.vram_partial else fmt.NA
    right = [Segment("vram ", p.dim), Segment(vram, p["na"] if vram == fmt.NA else (p["stale"] if grey else p.plain))]
    return _two_sided(segs, right, TILE_W)


def _pair(a: float | None, b: float | None, marks: tuple[str, str], p: Palette, grey: bool) -> Line:
    style = p["stale"] if grey else p.plain
    if a is None and b is None:
        return [Segment(fmt.NA, p["na"])]
    return [Segment(marks[0], p.dim), Segment(fmt.brief_rate(a), style), Segment(" " + marks[1], p.dim),
            Segment(fmt.brief_rate(b), style)]


def _roomy_lines(d: NodeDigest | None, p: Palette, grey: bool, ascii: bool) -> list[Line]:
    """The four extra lines of a tall tile: load/uptime, network (+ bonds), disks, GPU heat/power."""
    load = fmt.num(d.load1, 2) if d is not None else fmt.NA
    up = fmt.duration(d.uptime_s) if d is not None else fmt.NA
    value = p["stale"] if grey else p.plain
    lines = [_two_sided([Segment("load ", p.dim), Segment(load, p["na"] if load == fmt.NA else value)],
                        [Segment("up ", p.dim), Segment(up, p["na"] if up == fmt.NA else value)], TILE_W)]
    net_label = [Segment("net", p.dim)]
    if d is not None and d.bonds:
        if d.bond_slaves is None or d.bond_slaves_ok is None:  # slaves unreadable: unknown, not "0/0"
            count, style = fmt.NA, p["na"]
        else:
            count = f"{fmt.num(d.bond_slaves_ok)}/{fmt.num(d.bond_slaves)}"
            style = p["stale"] if grey else p["warn" if d.bonds_degraded else "ok"]
        net_label = [Segment("bond ", p.dim), Segment(count, style)]
    arrows = ("v", "^") if ascii else ("↓", "↑")
    rx, tx = (d.net_rx_bytes_s, d.net_tx_bytes_s) if d is not None else (None, None)
    dr, dw = (d.disk_read_bytes_s, d.disk_write_bytes_s) if d is not None else (None, None)
    lines.append(_two_sided(net_label, _pair(rx, tx, arrows, p, grey), TILE_W))
    lines.append(_two_sided([Segment("disk", p.dim)], _pair(dr, dw, ("r ", "w "), p, grey), TILE_W))
    if d is not None and d.gpus and d.gpus > d.gpus_lost:
        hot = d.gpu_temp_max_c
        hot_style = p["na"] if hot is None else (p["stale"] if grey else (p["warn"] if d.gpus_hot else p.plain))
        lines.append(_two_sided([Segment("hot ", p.dim), Segment(fmt.temp(hot), hot_style)],
                                [Segment(fmt.watts(d.power_mw), value if d.power_mw is not None else p["na"])],
                                TILE_W))
    else:
        lines.append(_pad([], TILE_W))
    return lines


def render_tile(view: NodeView, p: Palette, *, selected: bool = False, unreachable: bool = False,
                ascii: bool = False, roomy: bool = False) -> list[Line]:
    """The lines of one node's tile (TILE_H, or TILE_H_ROOMY when ``roomy``), each TILE_W cells."""
    state = view.state
    grey = state != "up" or unreachable
    name_style = p.cursor if selected else (p["stale"] if grey else p.bold)
    host = fmt.node_text(view.host)
    if state == "up":
        status = "up" + (" v+" if view.newer_schema else "")
    elif state == "stale":
        status = f"stale {fmt.age(view.age_s)}"
    elif state == "down":
        status = "DOWN"
    else:
        status = "BAD DATA"
    head = _two_sided([Segment(host, name_style)], [Segment(status, p[node_state_severity(state)])], TILE_W)
    if state == "down":
        seen = fmt.age(view.age_s)
        return [head,
                _pad([Segment(f"last seen {seen} ago", p["crit"])], TILE_W),
                _pad([Segment(f"at {fmt.clock(view.last_seen_ts)}", p["stale"])], TILE_W),
                *[_pad([], TILE_W) for _ in range((TILE_H_ROOMY if roomy else TILE_H) - 3)]]
    d = view_digest(view)
    cpu = d.cpu_util_pct if d is not None else None
    mem_frac = (d.mem_used_bytes / d.mem_total_bytes
                if d is not None and d.mem_used_bytes is not None and d.mem_total_bytes else None)
    cpu_line = _bar_line("CPU ", None if cpu is None else cpu / 100, fmt.pct(cpu), fmt.severity_of_pct(cpu),
                         p, grey, ascii)
    mem_line = _bar_line("MEM ", mem_frac, fmt.pct(None if mem_frac is None else 100 * mem_frac),
                         fmt.severity_of_pct(None if mem_frac is None else 100 * mem_frac, 85, 95), p, grey, ascii)
    third = _gpu_line(d, p, grey, ascii)
    if state == "bad":
        # The error replaces the CPU line; the rest are the last good values, greyed.
        cpu_line = _pad([Segment(fmt.node_text(view.error or "bad data", TILE_W), p["crit"])], TILE_W)
    if roomy:
        return [head, cpu_line, mem_line, third, *_roomy_lines(d, p, grey, ascii)]
    return [head, cpu_line, mem_line, third]


def tile_signature(view: NodeView) -> tuple[Any, ...]:
    """What a tile's pixels depend on: unchanged signature, no re-render."""
    d = view_digest(view)
    shown_age = None if view.state == "up" else fmt.age(view.age_s)
    return (view.state, id(d), d.seq if d else None, shown_age, view.error, view.newer_schema)


@dataclass
class _Tile:
    host: str
    sig: tuple[Any, ...]
    lines: list[Line]
    styled: list[Line] | None = None  # ``lines`` on the widget's own style, as drawn


class NodeTiles(ScrollView, can_focus=True):
    """The grid of node tiles. Arrow keys move the cursor, Enter (or a click) opens the node."""

    BINDINGS = [
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("enter", "open", "Open node"),
    ]

    cursor: reactive[int] = reactive(0, repaint=False)

    class Opened(Message):
        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    class Scrolled(Message):
        """Other tiles came into view: a read of bucket summaries holds no figures for them until the next
        read asks for their digests (``visible_hosts``)."""

    def __init__(self, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ascii = ascii
        self.tiles: list[_Tile] = []
        self.views: list[NodeView] = []
        # Indices of the tiles that may hold a signature or lines while the layout stands (the ones drawn or
        # compared since): a read lets go of those out of view without a pass over every tile. None: any may.
        self._held: set[int] | None = None
        self._hosts: list[str] = []  # the tiles' hosts, in order (``set_nodes``: is the layout the same?)
        self.unreachable = False
        self.tile_h = TILE_H  # TILE_H_ROOMY while every tile fits without scrolling
        self._palette: Palette | None = None
        self._base = Style()

    # -- data ---------------------------------------------------------------------------------

    @property
    def palette(self) -> Palette:
        app_palette: Palette = self.app.palette  # type: ignore[attr-defined]
        if self._palette is not app_palette:
            self._palette = app_palette
            for t in self.tiles:
                t.sig = ()  # theme changed: every tile re-renders once
        return app_palette

    def set_nodes(self, views: list[NodeView], unreachable: bool = False) -> int:
        """Apply a read. Returns how many tiles changed (new data, or new look): of those in view, where the
        nodes are the same as last time (the others are drawn afresh when scrolled to)."""
        _ = self.palette
        if unreachable != self.unreachable:
            self.unreachable = unreachable
            for t in self.tiles:
                t.sig = ()
        changed = 0
        cursor_host = self.views[self.cursor].host if 0 <= self.cursor < len(self.views) else None
        # The hosts in order, made and compared in C (a generator over 10,000 views cost ~5 ms a read).
        hosts = list(map(_HOST, views))
        layout_changed = hosts != self._hosts
        first, last = self._visible_tiles()
        dirty: list[int] = []  # virtual y of the lines whose cells changed
        whole = layout_changed
        if not layout_changed:
            # The same nodes in the same places: only the tiles in view are compared (their signatures, their
            # lines); the others are let go of what they drew, and drawn from their view when scrolled to
            # (render_line). At 10,000 nodes that is ~200 signatures a read instead of 10,000 (~15 ms).
            first, last = max(0, first), min(last, len(views))
            held = self._held
            for k in (range(len(self.tiles)) if held is None else held):
                if not first <= k < last:
                    t = self.tiles[k]
                    if t.lines or t.sig:
                        t.sig, t.lines, t.styled = (), [], None
            self._held = set(range(first, last))
            self.views = views
            new_tiles = self.tiles
            for i in range(first, last):
                v = views[i]
                selected = v.host == cursor_host
                sig = (*tile_signature(v), selected)
                t = new_tiles[i]
                if t.sig == sig:
                    continue
                changed += 1
                if not t.lines:
                    new_tiles[i] = _Tile(v.host, sig, [])
                    whole = True
                    continue
                new_tiles[i], redraw = self._redraw(i, v, selected, sig, t, dirty)
                whole = whole or redraw
            self._repaint(whole, dirty)
            return changed
        old = {t.host: t for t in self.tiles}
        new_tiles: list[_Tile] = []
        for i, v in enumerate(views):
            selected = v.host == cursor_host
            sig = (*tile_signature(v), selected)
            t = old.get(v.host)
            if t is not None and t.sig == sig:
                new_tiles.append(t)
                continue
            changed += 1
            if whole or not first <= i < last or t is None or not t.lines:
                # Off screen, or nothing to compare with: drawn lazily in render_line, so 1,000
                # changing nodes cost what the visible ones cost.
                new_tiles.append(_Tile(v.host, sig, []))
                whole = whole or (first <= i < last)
                continue
            # On screen: draw it now and repaint only the lines whose cells differ. Between two
            # reads most tiles change in a line or two (CPU, GPU bars) or not at all, and a line
            # left alone costs Textual nothing.
            tile, redraw = self._redraw(i, v, selected, sig, t, dirty)
            new_tiles.append(tile)
            whole = whole or redraw
        self.tiles, self.views, self._hosts = new_tiles, views, hosts
        self._held = None  # every tile has a signature now: the next read lets go of those out of view
        if cursor_host is not None and layout_changed:
            self.cursor = hosts.index(cursor_host) if cursor_host in hosts else min(self.cursor, len(hosts) - 1)
        if layout_changed:
            self._update_virtual_size()
        self._repaint(whole, dirty)
        return changed

    def _redraw(self, i: int, v: NodeView, selected: bool, sig: tuple[Any, ...], t: _Tile,
                dirty: list[int]) -> tuple[_Tile, bool]:
        """Tile ``i`` (on screen, ``t`` what it drew) drawn now for ``v``: the new tile, and whether the whole
        widget must repaint (drawn at the other tile height: a resize not yet painted). Otherwise the virtual
        y of each line whose cells differ goes to ``dirty``."""
        lines = self._draw(v, selected)
        if len(lines) != len(t.lines):
            return _Tile(v.host, sig, lines), True
        top = (i // self.columns) * self.stride_y
        dirty.extend(top + k for k, (a, b) in enumerate(zip(lines, t.lines, strict=True)) if a != b)
        return _Tile(v.host, sig, lines), False

    def _repaint(self, whole: bool, dirty: list[int]) -> None:
        if whole:
            self.refresh()
        else:
            for y in sorted(set(dirty)):
                self.refresh_lines(y)

    def visible_hosts(self, margin_rows: int = 1) -> frozenset[str]:
        """The hosts of the tiles in view, and of ``margin_rows`` rows above and below (a step of the cursor
        or the wheel then lands on tiles that have their figures)."""
        first, last = self._visible_tiles()
        cols = self.columns
        first, last = max(0, first - margin_rows * cols), min(len(self.views), last + margin_rows * cols)
        return frozenset(v.host for v in self.views[first:last])

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if old_value // self.stride_y != new_value // self.stride_y:  # another row of tiles at the top
            self.post_message(self.Scrolled())

    def _visible_tiles(self) -> tuple[int, int]:
        """Indices [first, last) of the tiles in the visible part of the grid."""
        height = self.scrollable_content_region.height or self.size.height
        top = self.scroll_offset.y
        cols = self.columns
        return (top // self.stride_y) * cols, (-(-(top + height) // self.stride_y)) * cols

    def _rerender(self, index: int) -> None:
        if 0 <= index < len(self.tiles):
            v = self.views[index]
            t = self.tiles[index]
            if self._held is not None:
                self._held.add(index)
            t.sig = (*tile_signature(v), index == self.cursor)
            t.lines = self._draw(v, index == self.cursor)
            t.styled = None

    def _draw(self, v: NodeView, selected: bool) -> list[Line]:
        return render_tile(v, self.palette, selected=selected, unreachable=self.unreachable, ascii=self.ascii,
                           roomy=self.tile_h == TILE_H_ROOMY)

    # -- geometry -----------------------------------------------------------------------------

    @property
    def columns(self) -> int:
        width = self.scrollable_content_region.width or self.size.width
        return max(1, (width + GAP_X) // STRIDE_X)

    @property
    def stride_y(self) -> int:
        return self.tile_h + GAP_Y

    def _update_virtual_size(self) -> None:
        rows = -(-len(self.tiles) // self.columns) if self.tiles else 0
        height = self.scrollable_content_region.height or self.size.height
        # Tall tiles only when all of them fit: the grid never scrolls because it grew.
        tile_h = TILE_H_ROOMY if rows and rows * (TILE_H_ROOMY + GAP_Y) - GAP_Y <= height else TILE_H
        if tile_h != self.tile_h:
            self.tile_h = tile_h
            for t in self.tiles:
                t.sig = ()  # re-rendered at the new height
        self.virtual_size = Size(self.columns * STRIDE_X - GAP_X, max(0, rows * self.stride_y - GAP_Y))

    def on_resize(self, event: events.Resize) -> None:
        self._update_virtual_size()
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        base = self.rich_style
        if base != self._base:  # focus, theme or opacity changed the widget's own style
            self._base = base
            for t in self.tiles:
                t.styled = None
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        _ = self.palette  # a theme change invalidates every tile (see the property)
        scroll_x, scroll_y = self.scroll_offset
        y += scroll_y
        row, line = divmod(y, self.stride_y)
        width = self.size.width
        base = self._base
        if line >= self.tile_h:
            return Strip.blank(width, base)
        cols = self.columns
        segs: list[Segment] = []
        start = row * cols
        end = min(start + cols, len(self.tiles))
        gap = Segment(" " * GAP_X, base)
        apply = Segment.apply_style
        for i in range(start, end):
            if i > start:
                segs.append(gap)
            t = self.tiles[i]
            if not t.sig or not t.lines:  # new data, or invalidated by a theme/reachability change
                self._rerender(i)
            if t.styled is None:
                # The widget's own colours underneath, so dim text and blank cells sit on the theme
                # background; applied once per tile render, not once per repaint of every line.
                t.styled = [list(apply(segs_, base)) for segs_ in t.lines]
            segs.extend(t.styled[line])
        length = max(0, (end - start) * STRIDE_X - GAP_X)
        strip = Strip(segs, length)
        if scroll_x or length != width:
            strip = strip.crop_extend(scroll_x, scroll_x + width, base)
        return strip

    # -- cursor ---------------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._rerender(old)
        self._rerender(new)
        cols = self.columns
        row, col = divmod(new, cols)
        self.scroll_to_region(Region(col * STRIDE_X, row * self.stride_y, TILE_W, self.tile_h), animate=False)
        self.refresh()

    def action_move(self, dx: int, dy: int) -> None:
        if not self.tiles:
            return
        target = self.cursor + dx + dy * self.columns
        self.cursor = min(len(self.tiles) - 1, max(0, target))

    def action_open(self) -> None:
        if 0 <= self.cursor < len(self.views):
            self.post_message(self.Opened(self.views[self.cursor].host))

    def on_click(self, event: events.Click) -> None:
        x = event.x + self.scroll_offset.x
        y = event.y + self.scroll_offset.y
        col, xin = divmod(x, STRIDE_X)
        row, yin = divmod(y, self.stride_y)
        if xin >= TILE_W or yin >= self.tile_h or col >= self.columns:
            return
        index = row * self.columns + col
        if 0 <= index < len(self.tiles):
            self.cursor = index
            self.action_open()

