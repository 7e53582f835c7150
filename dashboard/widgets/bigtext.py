"""Provides big block figures for the wall: a 5-pixel-high font drawn with block characters.

Drawn by us rather than with Textual's ``Digits`` because the wall needs one scale for every
figure (chosen from the grid it actually gets), units in the figure ("1.6 kW") and an ASCII
fallback. A pixel is ``k`` cells wide and ``k`` half-rows tall (a terminal cell is about twice as
high as wide, so that is square); two half-rows share one cell through the half blocks ▀ ▄ █.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

GLYPH_H = 5

_FONT_ROWS: dict[str, tuple[str, ...]] = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": ("##.", ".#.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    "/": ("..#", "..#", ".#.", "#..", "#.."),
    ".": (".", ".", ".", ".", "#"),
    ":": (".", "#", ".", "#", "."),
    "-": ("...", "...", "###", "...", "..."),
    "%": ("#.#", "..#", ".#.", "#..", "#.#"),
    " ": ("..", "..", "..", "..", ".."),
    "k": ("#..", "#.#", "##.", "#.#", "#.#"),
    "W": ("#...#", "#...#", "#.#.#", "#.#.#", ".#.#."),
    "M": ("#...#", "##.##", "#.#.#", "#...#", "#...#"),
    "G": ("###", "#..", "#.#", "#.#", "###"),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "P": ("##.", "#.#", "##.", "#..", "#.."),
    "i": ("#", ".", "#", "#", "#"),
    "B": ("##.", "#.#", "##.", "#.#", "##."),
    "N": ("#..#", "##.#", "#.##", "#..#", "#..#"),
    "A": (".#.", "#.#", "###", "#.#", "#.#"),
    "!": ("#", "#", "#", ".", "#"),
    "?": ("###", "..#", ".##", "...", ".#."),
    "C": ("###", "#..", "#..", "#..", "###"),
    "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"),
    "L": ("#..", "#..", "#..", "#..", "###"),
    "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "O": ("###", "#.#", "#.#", "#.#", "###"),
    "S": ("###", "#..", "###", "..#", "###"),
    "E": ("###", "#..", "##.", "#..", "###"),
    "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"),
    "F": ("###", "#..", "##.", "#..", "#.."),
    "J": ("..#", "..#", "..#", "#.#", "###"),
    "Q": ("###", "#.#", "#.#", "###", "..#"),
    "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."),
    "Z": ("###", "..#", ".#.", "#..", "###"),
    "(": (".#", "#.", "#.", "#.", ".#"),
    ")": ("#.", ".#", ".#", ".#", "#."),
    ",": ("..", "..", "..", ".#", "#."),
    "_": ("...", "...", "...", "...", "###"),
    "+": ("...", ".#.", "###", ".#.", "..."),
    "=": ("...", "###", "...", "###", "..."),
    "'": ("#", "#", ".", ".", "."),
    "#": ("#.#", "###", "#.#", "###", "#.#"),
    "°": ("###", "#.#", "###", "...", "..."),
}
FONT: dict[str, tuple[tuple[bool, ...], ...]] = {
    ch: tuple(tuple(c == "#" for c in row) for row in rows) for ch, rows in _FONT_ROWS.items()
}

#: half-row pairs (top, bottom) -> character
_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
# ASCII: a half-filled cell still needs ink, or small scales lose strokes.
_ASCII = {(False, False): " ", (True, False): "\"", (False, True): "_", (True, True): "#"}


def _glyph(ch: str) -> tuple[tuple[bool, ...], ...]:
    return FONT.get(ch) or FONT.get(ch.upper()) or FONT["?"]


def pixel_width(text: str) -> int:
    """Width in font pixels: glyphs plus one blank pixel between neighbours."""
    if not text:
        return 0
    return sum(len(_glyph(c)[0]) for c in text) + len(text) - 1


def size(text: str, k: int) -> tuple[int, int]:
    """(cells wide, rows high) of ``text`` at scale ``k``."""
    return pixel_width(text) * k, -(-GLYPH_H * k // 2)


def fit_scale(texts: list[str], width: int, height: int, max_k: int = 12) -> int:
    """The largest scale at which every text fits ``width`` x ``height``; 0 when none does."""
    best = 0
    for k in range(1, max_k + 1):
        if all(size(t, k)[0] <= width for t in texts) and size("0", k)[1] <= height:
            best = k
        else:
            break
    return best


def wrap(text: str, k: int, width: int) -> list[str]:
    """``text`` split at spaces into lines that fit ``width`` cells at scale ``k`` (long words cut)."""
    lines: list[str] = []
    cur = ""
    for word in text.split():
        cand = f"{cur} {word}" if cur else word
        if size(cand, k)[0] <= width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        while size(word, k)[0] > width and len(word) > 1:
            cut = max(1, len(word) - 1)
            while cut > 1 and size(word[:cut], k)[0] > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        cur = word
    if cur:
        lines.append(cur)
    return lines


def render(text: str, k: int, ascii: bool = False) -> list[str]:
    """``text`` as block lines at scale ``k`` (all lines the same width)."""
    if not text or k <= 0:
        return []
    pixels: list[list[bool]] = [[] for _ in range(GLYPH_H)]
    for i, ch in enumerate(text):
        g = _glyph(ch)
        for r in range(GLYPH_H):
            if i:
                pixels[r].append(False)
            pixels[r].extend(g[r])
    # Scale: each pixel row becomes k half-rows, each pixel column k cells.
    half_rows = [[p for p in row for _ in range(k)] for row in pixels for _ in range(k)]
    if len(half_rows) % 2:
        half_rows.append([False] * len(half_rows[0]))
    table = _ASCII if ascii else _BLOCKS
    return ["".join(table[(top, bottom)] for top, bottom in zip(half_rows[r], half_rows[r + 1], strict=True))
            for r in range(0, len(half_rows), 2)]


@dataclass(frozen=True)
class Figure:
    big: str  # drawn in the block font ("7/10", "1.6 kW", "N/A")
    label: str  # one line under it, normal text ("GPUs busy / total")
    style: str = ""  # a Content style: "$ct-ok", "$ct-crit bold", "dim"
    short: str = ""  # the label where a column is too narrow for it ("GPUs busy"), rather than a cut word


def grid_options(n: int) -> list[int]:
    """Column counts worth trying for ``n`` figures (one row, then fewer columns)."""
    return sorted({c for c in (n, -(-n // 2), -(-n // 3), 2, 1) if 1 <= c <= n}, reverse=True)


def best_layout(texts: list[str], n: int, width: int, height: int) -> tuple[int, int]:
    """(columns, scale) giving the biggest figures in ``width`` x ``height`` (scale 0: none fits)."""
    best = (max(1, n), 0)
    for cols in grid_options(n):
        rows = -(-n // cols)
        cell_w = width // cols - 2
        cell_h = height // rows - 2  # a label line and a blank line per row
        k = fit_scale(texts, cell_w, cell_h)
        if k > best[1]:
            best = (cols, k)
    return best


def figures_height(n: int, cols: int, k: int) -> int:
    rows = -(-n // cols)
    return rows * (size("0", max(1, k))[1] + 2)


class BigFigures(Static):
    """A grid of big figures with a label under each; one scale for all, from the size it gets."""

    def __init__(self, ascii: bool = False, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.ascii = ascii
        self.figures: list[Figure] = []
        self.cols = 1
        self.k = 0
        self._layout_for: tuple[int, int] = (0, 0)
        self._sig: object = None

    def plan(self, width: int, height: int) -> int:
        """Choose columns and scale for a ``width`` x at most ``height`` area; returns the rows needed."""
        texts = [f.big for f in self.figures] or ["888/888"]
        n = max(1, len(self.figures))
        self.cols, self.k = best_layout(texts, n, width, height)
        self._layout_for = (width, height)
        rows = figures_height(n, self.cols, self.k) if self.k else -(-n // self.cols) * 2
        self.styles.height = rows
        return rows

    def show(self, figures: list[Figure]) -> None:
        grew = len(figures) != len(self.figures)
        self.figures = figures
        w = self.size.width
        outgrown = self.k and any(size(f.big, self.k)[0] > w // self.cols - 2 for f in figures)
        if (grew or outgrown) and self._layout_for != (0, 0):
            # A figure outgrew its cell (a new digit): shrink now rather than overflow.
            self.plan(*self._layout_for)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        w = self.size.width
        sig = (tuple(self.figures), w, self.cols, self.k, self.ascii)
        if sig == self._sig or not w:
            return
        self._sig = sig
        self.update(self.render_figures(w), layout=False)

    def render_figures(self, width: int) -> Content:
        cols = max(1, self.cols)
        cell_w = width // cols
        lines: list[Content] = []
        for r in range(0, len(self.figures), cols):
            row = self.figures[r:r + cols]
            blocks = [render(f.big, self.k, self.ascii) if self.k else [f.big] for f in row]
            tall = max(len(b) for b in blocks)
            for i in range(tall):
                parts: list[Content] = []
                for f, b in zip(row, blocks, strict=True):
                    text = b[i] if i < len(b) else ""
                    parts.append(Content.styled(text.center(cell_w - 1)[: cell_w - 1] + " ", f.style))
                lines.append(Content("").join(parts))
            parts = []
            for f in row:
                label = f.label if len(f.label) <= cell_w - 2 or not f.short else f.short
                label = label[: cell_w - 2]
                parts.append(Content.styled(label.center(cell_w - 1) + " ", "dim" if f.style == "dim" else ""))
            lines.append(Content("").join(parts))
            lines.append(Content(""))
        return Content("\n").join(lines[:-1] if lines else lines)
