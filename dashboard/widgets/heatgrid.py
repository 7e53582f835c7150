"""Provides the GPU heat grid: every GPU of the cluster as one tile, sized to the room it gets.

Colour comes from the theme's severity scale, but colour is never the only signal: every tile
says its state in a word (IDLE, LOW, BUSY, FULL, HOT, LOST, STALE) and carries a bar whose length
is the utilisation, so the grid reads the same to a colour-blind viewer and on a 16-colour or
monochrome screen. Red is kept for trouble (lost, hot, ECC): a fully loaded GPU is the goal of an
ML cluster, so it shows as FULL (warn), not as an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets import bigtext
from clustertop.dashboard.widgets.palette import Palette
from clustertop.read.reader import NodeView
from clustertop.wire.digest import GPU_BUSY_PCT, hot_c

#: tile presets (width, height), largest first; the first one that fits every GPU is used
PRESETS = ((26, 6), (20, 5), (16, 4), (12, 3), (9, 2), (6, 1), (4, 1))
MAX_TILE_W = 80
MAX_TILE_H = 24


@dataclass(frozen=True)
class GpuCell:
    host: str
    index: int
    util_pct: int | None
    mem_frac: float | None
    temp_c: int | None
    power_mw: int | None
    state: str  # the node's: up | stale | down | bad
    problem: str | None  # "LOST", "HOT", "ECC" (crit) or None


def cells_of(nodes: list[NodeView]) -> list[GpuCell]:
    out: list[GpuCell] = []
    for n in nodes:
        if n.snap is None or not n.snap.gpus:
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


def choose_preset(n: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(tile w, tile h, columns, rows): the biggest tiles that show all ``n`` GPUs, or the smallest
    preset (and "+N more") when even those do not fit.

    Few GPUs on a big wall get big tiles (with the utilisation in the block font); thousands get
    small fixed presets. Tiles are kept about twice as wide as high (square on screen).
    """
    n = max(1, n)
    best: tuple[int, int, int, int] | None = None
    best_score = -1.0
    for cols in range(1, n + 1):
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
    for tw, th in PRESETS:
        gap_y = 1 if th >= 3 else 0
        cols = max(1, (width + 1) // (tw + 1))
        rows = max(1, (height + gap_y) // (th + gap_y))
        last = (tw, th, cols, rows)
        if cols * rows >= n and tw <= width and th <= height:
            return last
    return last


class HeatGrid(Static):
    DEFAULT_CSS = """
    HeatGrid { height: 1fr; width: 1fr; }
    """

    def __init__(self, ascii: bool = False, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.ascii = ascii
        self.cells: list[GpuCell] = []
        self.palette = Palette({})
        self.ink: str | None = None  # the theme's background: text on a coloured tile
        self.preset: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._sig: object = None

    def show(self, cells: list[GpuCell], palette: Palette, ink: str | None = None) -> None:
        self.cells = cells
        self.palette = palette
        self.ink = ink
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        w, h = self.size.width, self.size.height
        sig = (tuple(self.cells), self.palette.version, self.ink, w, h)
        if sig == self._sig or not w or not h:
            return
        self._sig = sig
        self.update(self.render_grid(w, h), layout=False)

    def render_grid(self, width: int, height: int) -> Text:
        cells = self.cells
        if not cells:
            return Text("no GPUs reported", style=self.palette["na"])
        tw, th, cols, rows = self.preset = choose_preset(len(cells), width, height)
        room = cols * rows
        shown = cells if len(cells) <= room else cells[: room - 1]
        more = len(cells) - len(shown)
        gap_y = 1 if th >= 3 else 0
        out = Text(no_wrap=True, overflow="crop")
        grid_rows = -(-(len(shown) + (1 if more else 0)) // cols)
        for r in range(grid_rows):
            lines = [Text() for _ in range(th)]
            for c in range(cols):
                i = r * cols + c
                if c:
                    for ln in lines:
                        ln.append(" ")
                if i < len(shown):
                    tile = self._tile(shown[i], tw, th)
                elif i == len(shown) and more:
                    tile = [Text(f"+{more} more"[:tw].ljust(tw), style=self.palette.bold)] + [
                        Text(" " * tw) for _ in range(th - 1)]
                else:
                    break
                for ln, part in zip(lines, tile, strict=True):
                    ln.append_text(part)
            for j, ln in enumerate(lines):
                out.append_text(ln)
                if r < grid_rows - 1 or j < th - 1:
                    out.append("\n")
            if gap_y and r < grid_rows - 1:
                out.append("\n")
        return out

    def _tile(self, c: GpuCell, tw: int, th: int) -> list[Text]:
        word, sev = level(c)
        colour = self.palette[sev].color
        # The theme's background as ink on the severity colour: the tile is the colour, the text its
        # meaning; dark on light tiles in dark themes and the reverse in light ones.
        bg = Style(bgcolor=colour, color=self.ink, bold=True) if colour is not None else Style(reverse=True)
        plain = bg + Style(bold=False)
        u = fmt.known(c.util_pct, 0, fmt.MAX_PCT)  # as ``level`` judges it: absurd is N/A
        util = fmt.NA if u is None else f"{u:.0f}%"
        name = f"{fmt.node_text(c.host)}/{fmt.num(c.index)}"
        frac = None if u is None else u / 100
        if th == 1:
            text = f"{util}"[:tw] if tw < 9 else f"{util} {word}"[:tw]
            return [Text(text.center(tw), style=bg)]
        if th == 2:
            return [Text(_fit(name, tw), style=bg), Text(_fit(f"{util} {word}", tw), style=bg)]
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
        return [Text(t, style=st) for t, st in lines]


def _fit(s: str, w: int) -> str:
    s = " " + s
    return s[:w].ljust(w)
