"""Provides the GPU heat grid: every GPU of the cluster as one tile, sized to the room it gets.

Colour comes from the theme's severity scale, but colour is never the only signal: every tile
says its state in a word (IDLE, LOW, BUSY, FULL, HOT, LOST, STALE) and carries a bar whose length
is the utilisation, so the grid reads the same to a colour-blind viewer and on a 16-colour or
monochrome screen. Red is kept for trouble (lost, hot, ECC): a fully loaded GPU is the goal of an
ML cluster, so it shows as FULL (warn), not as an alarm.

Drawn with the Line API: each refresh builds the grid's lines as segments (a tile's lines are reused
while its GPU shows the same), and only the screen lines that differ from the last draw are repainted.
As a ``Static`` fed one ``Text`` of 8,000 tiles, the wall spent ~70 ms per refresh building and ~80 ms
converting that text at 1,000 nodes x 8 GPUs (bench/dashboard_refresh.py).
"""

from __future__ import annotations

from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets import bigtext
from clustertop.dashboard.widgets.palette import Palette
from clustertop.read.model import view_digest
from clustertop.read.reader import NodeView
from clustertop.wire.digest import GPU_BUSY_PCT, hot_c

#: tile presets (width, height), largest first; the first one that fits every GPU is used
PRESETS = ((26, 6), (20, 5), (16, 4), (12, 3), (9, 2), (6, 1), (4, 1))
MAX_TILE_W = 80
MAX_TILE_H = 24


class GpuCell(NamedTuple):
    """One GPU as its tile shows it (a tuple: built, compared and hashed in C, 8,000 per refresh)."""

    host: str
    index: int
    util_pct: int | None
    mem_frac: float | None
    temp_c: int | None
    power_mw: int | None
    state: str  # the node's: up | stale | down | bad
    problem: str | None  # "LOST", "HOT", "ECC" (crit) or None


#: A digest's per-card marks (``wire.digest``) as the tile's problem word: lost, uncorrected ECC errors, hot.
MARK_PROBLEM = {"x": "LOST", "e": "ECC", "h": "HOT"}


def cells_of(nodes: list[NodeView]) -> list[GpuCell]:
    """Every GPU of ``nodes`` as its tile shows it, in node order.

    From the node's snapshot where the read took it (a brief: every figure a tile shows), else from its digest:
    each card's utilisation and its agent's mark (lost, ECC, hot), with VRAM, temperature and power unknown
    (None: N/A). That is everything a one-line tile draws (``one_line``), so a wall of thousands of GPUs reads
    digests only (``WallScreen.read_plan``); the index is the card's place in its node's list, as the GPU
    summaries' columns and the busiest cards take it from a digest."""
    out: list[GpuCell] = []
    for n in nodes:
        if n.snap is None:
            d = view_digest(n)
            utils = d.gpu_util_pct if d is not None else None
            if utils:
                marks = d.gpu_marks or ""  # type: ignore[union-attr]
                host, state, get = n.host, n.state, MARK_PROBLEM.get
                for i, u in enumerate(utils):
                    problem = get(marks[i:i + 1])
                    out.append(GpuCell(host, i, u, None, None, None, state, problem))  # a lost card's u: None
            continue
        if not n.snap.gpus:
            continue
        for g in n.snap.gpus:
            problem = None
            hot = hot_c(g)
            if g.lost:
                problem = "LOST"
            elif g.ecc_uncorrected:
                problem = "ECC"
            elif g.temp_c is not None and g.temp_c >= hot:
                problem = "HOT"
            frac = (g.mem_used_bytes / g.mem_total_bytes
                    if g.mem_used_bytes is not None and g.mem_total_bytes else None)
            out.append(GpuCell(n.host, g.index, None if g.lost else g.util_pct, frac, g.temp_c, g.power_mw,
                               n.state, problem))
    return out


def one_line(n: int, width: int, height: int) -> bool:
    """Whether ``n`` GPUs in a grid of ``width`` x ``height`` get one-line tiles (utilisation and colour only:
    no name, VRAM, temperature or power), all of which a digest holds (``cells_of``)."""
    return width > 0 and height > 0 and choose_preset(n, width, height)[1] == 1


def level(c: GpuCell) -> tuple[str, str]:
    """(word, severity) of one GPU: the text cue and the colour, from one scale."""
    if c.state != "up":
        return ("DOWN" if c.state == "down" else "STALE"), "stale"
    if c.problem:
        return c.problem, "crit"
    u = c.util_pct
    if fmt.known(u, 0, fmt.MAX_PCT) is None:  # unknown, or a figure no card reports (-1, 2**64 - 1)
        return fmt.NA, "na"
    assert u is not None
    if u < GPU_BUSY_PCT:
        return "IDLE", "stale"
    if u < 50:
        return "LOW", "info"
    if u < 90:
        return "BUSY", "ok"
    return "FULL", "warn"


def choose_preset(n: int, width: int, height: int, one_line: bool = False) -> tuple[int, int, int, int]:
    """(tile w, tile h, columns, rows): the biggest tiles that show all ``n`` GPUs, or the smallest
    preset (and "+N more") when even those do not fit. ``one_line``: one-line tiles only.

    Few GPUs on a big wall get big tiles (with the utilisation in the block font); thousands get
    small fixed presets. Tiles are kept about twice as wide as high (square on screen).
    """
    n = max(1, n)
    best: tuple[int, int, int, int] | None = None
    best_score = -1.0
    for cols in range(1, 0 if one_line else n + 1):
        rows = -(-n // cols)
        tw = min(MAX_TILE_W, (width + 1) // cols - 1)
        gap_y = 1
        th = min(MAX_TILE_H, (height + gap_y) // rows - gap_y)
        if tw < PRESETS[0][0] or th < PRESETS[0][1]:
            continue
        tw = min(tw, th * 4)  # not absurdly wide
        # Biggest tiles first; among equals, the grid with the fewest empty slots (5x2, not 3x4).
        score = min(tw / 2.0, float(th)) * 1000 - (cols * rows - n)
        if score > best_score:
            best, best_score = (tw, th, cols, rows), score
    if best is not None:
        return best
    last = (4, 1, 1, 1)
    for tw, th in PRESETS if not one_line else [p for p in PRESETS if p[1] == 1]:
        gap_y = 1 if th >= 3 else 0
        cols = max(1, (width + 1) // (tw + 1))
        rows = max(1, (height + gap_y) // (th + gap_y))
        last = (tw, th, cols, rows)
        if cols * rows >= n and tw <= width and th <= height:
            return last
    return last


#: One screen line of the grid: (text, style) runs, the style None for the widget's own.
Line = list[tuple[str, Style | None]]


class HeatGrid(Widget):
    DEFAULT_CSS = """
    HeatGrid { height: 1fr; width: 1fr; }
    """

    def __init__(self, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ascii = ascii
        self.cells: list[GpuCell] = []
        self.palette = Palette({})
        self.ink: str | None = None  # the theme's background: text on a coloured tile
        self.preset: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.room = (0, 0)  # its last size on screen (the wall's plan judges tiles by it while another page shows)
        self.one_line = False  # the cells are from digests: one-line tiles only (``show``)
        self._sig: object = None
        self.lines: list[Line] = []  # what is drawn, line by line (render() joins them for tests)
        self._strips: dict[int, Strip] = {}
        self._base: Style | None = None
        # Tile lines by (GPU, tile size), kept while they are shown; and the two styles per severity.
        self._tiles: dict[tuple[GpuCell, int, int], list[tuple[str, Style]]] = {}
        self._styles: dict[str, tuple[Style, Style]] = {}

    def show(self, cells: list[GpuCell], palette: Palette, ink: str | None = None, one_line: bool = False) -> None:
        """``one_line``: the cells are from digests (``cells_of``), so they are drawn in one-line tiles whatever the
        room: a bigger tile would show their VRAM, temperature and power as N/A, which the briefs know."""
        if palette.version != self.palette.version or ink != self.ink:
            self._tiles.clear()
            self._styles.clear()
        self.one_line = one_line
        self.cells = cells
        self.palette = palette
        self.ink = ink
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        w, h = self.size.width, self.size.height
        if w and h:
            self.room = (w, h)
        sig = (self.cells, self.palette.version, self.ink, w, h, self.one_line)
        if sig == self._sig or not w or not h:
            return
        resized = self._sig is None or self._sig[3:5] != (w, h)  # type: ignore[index]
        self._sig = sig
        old = self.lines
        self.lines = self.render_grid(w, h)
        if resized or len(old) != len(self.lines):  # strips are cut to the width: all anew
            self._strips.clear()
            self.refresh()
            return
        for y, (a, b) in enumerate(zip(old, self.lines, strict=True)):
            if a != b:  # only the screen lines whose tiles changed are repainted
                self._strips.pop(y, None)
                self.refresh(Region(0, y, w, 1))

    def render(self) -> Text:
        """The grid as one Text (what is on screen, for tests and screen readers of the DOM)."""
        out = Text(no_wrap=True, overflow="crop")
        for j, line in enumerate(self.lines):
            if j:
                out.append("\n")
            for text, style in line:
                out.append(text, style)
        return out

    def render_lines(self, crop: Region) -> list[Strip]:
        base = self.rich_style  # once per paint, not per line (it walks the DOM's styles)
        if base != self._base:
            self._base = base
            self._strips.clear()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        base = self._base or Style()
        strip = self._strips.get(y)
        if strip is None:
            width = self.size.width
            if y < len(self.lines):
                segs = [Segment(text, base + style if style is not None else base) for text, style in self.lines[y]]
                strip = Strip(segs).crop_extend(0, width, base)
            else:
                strip = Strip.blank(width, base)
            self._strips[y] = strip
        return strip

    def render_grid(self, width: int, height: int) -> list[Line]:
        cells = self.cells
        if not cells:
            self._tiles.clear()
            return [[("no GPUs reported", self.palette["na"])]]
        tw, th, cols, rows = self.preset = choose_preset(len(cells), width, height, self.one_line)
        room = cols * rows
        shown = cells if len(cells) <= room else cells[: room - 1]
        more = len(cells) - len(shown)
        gap_y = 1 if th >= 3 else 0
        old, tiles = self._tiles, {}
        self._tiles = tiles
        out: list[Line] = []
        grid_rows = -(-(len(shown) + (1 if more else 0)) // cols)
        for r in range(grid_rows):
            lines: list[Line] = [[] for _ in range(th)]
            for c in range(cols):
                i = r * cols + c
                if c:
                    for ln in lines:
                        ln.append((" ", None))
                if i < len(shown):
                    key = (shown[i], tw, th)
                    tile = old.get(key) or self._tile(shown[i], tw, th)
                    tiles[key] = tile
                elif i == len(shown) and more:
                    tile = [(f"+{more} more"[:tw].ljust(tw), self.palette.bold)] + [
                        (" " * tw, None) for _ in range(th - 1)]  # type: ignore[misc]
                else:
                    break
                for ln, part in zip(lines, tile, strict=True):
                    ln.append(part)
            out += lines
            if gap_y and r < grid_rows - 1:
                out.append([])
        return out

    def _tile_styles(self, sev: str) -> tuple[Style, Style]:
        got = self._styles.get(sev)
        if got is None:
            colour = self.palette[sev].color
            # The theme's background as ink on the severity colour: the tile is the colour, the text its
            # meaning; dark on light tiles in dark themes and the reverse in light ones.
            bg = Style(bgcolor=colour, color=self.ink, bold=True) if colour is not None else Style(reverse=True)
            got = self._styles[sev] = (bg, bg + Style(bold=False))
        return got

    def _tile(self, c: GpuCell, tw: int, th: int) -> list[tuple[str, Style]]:
        word, sev = level(c)
        bg, plain = self._tile_styles(sev)
        u = fmt.known(c.util_pct, 0, fmt.MAX_PCT)  # as ``level`` judges it: absurd is N/A
        util = fmt.NA if u is None else f"{u:.0f}%"
        if th == 1:
            text = f"{util}"[:tw] if tw < 9 else f"{util} {word}"[:tw]
            return [(text.center(tw), bg)]
        name = f"{fmt.node_text(c.host)}/{fmt.num(c.index)}"
        if th == 2:
            return [(_fit(name, tw), bg), (_fit(f"{util} {word}", tw), bg)]
        frac = None if u is None else u / 100
        head = [(_fit(name, tw), bg)]
        detail = f"{fmt.temp(c.temp_c)}  {fmt.watts(c.power_mw)}"
        mem_pct = fmt.known(None if c.mem_frac is None else 100 * c.mem_frac, 0, fmt.MAX_PCT)
        vram = fmt.NA if mem_pct is None else f"{mem_pct:.0f}%"
        # Room for the utilisation in the block font: name, big figure, word, details, bar.
        k = bigtext.fit_scale([util], tw - 2, th - 5, max_k=4) if th >= 8 else 0
        body: list[tuple[str, Style]] = []
        if k:
            body += [(ln.center(tw), bg) for ln in bigtext.render(util, k, self.ascii)]
            body.append((word.center(tw), bg))
            body.append((f"{detail}  vram {vram}".center(tw)[:tw], plain))
        else:
            body.append((_fit(f"{util:>4} {word}", tw), bg))
            if th >= 4:
                body.append((_fit(detail, tw), plain))
            if th >= 5:
                body.append((_fit(f"vram {vram}", tw), plain))
        lines = head + body[: th - 2]
        while len(lines) < th - 1:
            lines.append((" " * tw, plain))
        filled, empty = fmt.bar(frac, tw - 2, self.ascii)
        # The bar's length is the utilisation: a shape, for when colour is not seen.
        lines.append((f" {filled}{'·' * len(empty) if not self.ascii else empty} ", plain))
        return lines


def _fit(s: str, w: int) -> str:
    s = " " + s
    return s[:w].ljust(w)
