"""Provides the dashboard's history plots (the wall's trends, the node screen's history): plotext
charts rendered to text, one wrapper and one time axis, which labels itself ("60 min ago ... now").

plotext costs tens of milliseconds per chart, so a panel redraws only when its key (data version,
size, theme) changes, and the wall downsamples an hour to about one point per column first: the
chart costs the same whether the hour held 60 or 3,600 samples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from textual.content import Content
from textual.widgets import Static

from clustertop.dashboard.fmt import MAX_SERIES, known

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Point = tuple[float, float | None]

#: One marker per series, told apart without colour (the "clear" theme has none). Quadrant blocks
#: ("hd") rather than braille first: common terminal and browser fonts (Fira Code among them) lack
#: braille, which then shows as boxes.
MARKERS = ("hd", "dot", "x", "+", "o", "*", "#", "@")
ASCII_MARKERS = "*+ox#@%&"
#: Time windows, in minutes, whose quarters are whole minutes: the axis labels itself at each quarter.
WINDOWS_MIN = (4, 8, 12, 20, 40, 60)
WALL_EMPTY = "no data yet: this chart fills while the wall runs"


def fit_window(oldest_ts: float, now: float) -> float:
    """The shortest of WINDOWS_MIN, in seconds, that reaches back to ``oldest_ts`` (the longest if none
    does): a node with ten minutes of history gets a chart of twelve, not ten minutes in an hour's width."""
    for minutes in WINDOWS_MIN:
        if now - oldest_ts <= minutes * 60:
            return minutes * 60.0
    return WINDOWS_MIN[-1] * 60.0


def downsample(points: Iterable[Point], t0: float, t1: float, buckets: int) -> list[tuple[float, float]]:
    """Mean value per time bucket between ``t0`` and ``t1``; empty buckets (gaps) are left out, and so
    are samples a node sent as NaN, inf or an absurd figure (``fmt.known``): unknown, not a level."""
    buckets = max(1, buckets)
    span = max(1e-9, t1 - t0)
    sums = [0.0] * buckets
    counts = [0] * buckets
    for ts, raw in points:
        v = known(raw, -MAX_SERIES, MAX_SERIES)
        if v is None or not t0 <= ts <= t1:  # a NaN timestamp fails the comparison: left out
            continue
        i = min(buckets - 1, int((ts - t0) / span * buckets))
        sums[i] += v
        counts[i] += 1
    return [(t0 + (i + 0.5) * span / buckets, sums[i] / counts[i]) for i in range(buckets) if counts[i]]


def fit_title(titles: str | tuple[str, ...], width: int) -> str:
    """The first of ``titles`` (longest first) that fits ``width``, else the last one cut with "…".

    plotext drops a title wider than its chart without a word, so at 80 columns half the wall's
    charts had none: the short forms keep the figure ("GPU util % - now 58 %")."""
    options = (titles,) if isinstance(titles, str) else titles
    for t in options:
        if len(t) <= width:
            return t
    return options[-1][: max(1, width - 1)] + "…"


def render(title: str | tuple[str, ...], series: dict[str, list[tuple[float, float]]], now: float, window_s: float,
           width: int, height: int, ylim: tuple[float, float] | None = None, ascii: bool = False,
           empty: str = WALL_EMPTY, gap_s: float | None = None) -> str:
    """A chart of ``series`` (x = timestamps) over the last ``window_s``, x axis in minutes ago (hours
    past 2 h, days past 2 days: ``axis_unit``). ``title``: one, or several from the longest to the
    shortest (``fit_title``); ``empty``: what is said instead of a chart when no series has a point;
    ``gap_s``: points further apart than this are not joined (a gap in the data stays a gap)."""
    import plotext as plt  # type: ignore[import-untyped]  # imported only when a chart is drawn

    width, height = max(20, width), max(5, height)
    title = fit_title(title, width - 5)  # what plotext keeps: the chart's width less 4 or 5 (measured)
    drawable = {label: _drawable(pts, now, window_s) for label, pts in series.items()}
    if not any(drawable.values()):
        return f"{title}\n\n  {empty}"
    plt.clf()
    plt.limitsize(False, False)  # plotext clips to *its* idea of the terminal (80x24 in a worker, a pipe)
    plt.plotsize(width, height)
    plt.theme("clear")
    for i, (label, pts) in enumerate(drawable.items()):
        if not pts:
            continue
        marker = ASCII_MARKERS[i % len(ASCII_MARKERS)] if ascii else MARKERS[i % len(MARKERS)]
        for j, run in enumerate(_runs(pts, gap_s / 60 if gap_s else None)):
            plt.plot([x for x, _ in run], [v for _, v in run], marker=marker,
                     label=label if len(series) > 1 and j == 0 else None)
    plt.xlim(-window_s / 60, 0)
    if ylim is not None and all(known(y, -MAX_SERIES, MAX_SERIES) is not None for y in ylim) and ylim[0] < ylim[1]:
        plt.ylim(*ylim)
    plt.title(title)
    # The time axis says its unit in its own labels ("60 min ago ... now") instead of an x label
    # line: that line is a data row more, which at 80x24 is the difference between one and two.
    span = window_s / 60
    ticks = [-span * (4 - i) / 4 for i in range(5)]
    unit, per = axis_unit(window_s)
    plt.xticks(ticks, [f"{span / per:g} {unit} ago", *(f"{-t / per:g}" for t in ticks[1:-1]), "now"])
    return _ANSI.sub("", plt.build())


def axis_unit(window_s: float) -> tuple[str, float]:
    """The time axis's unit and minutes per unit: minutes up to 2 h, hours up to 2 days, then days."""
    if window_s > 2 * 86400:
        return "d", 1440.0
    if window_s > 2 * 3600:
        return "h", 60.0
    return "min", 1.0


def _runs(pts: list[tuple[float, float]], gap: float | None) -> list[list[tuple[float, float]]]:
    """``pts`` cut where two neighbours are more than ``gap`` apart (None: never)."""
    if gap is None or not pts:
        return [pts]
    runs = [[pts[0]]]
    for prev, p in zip(pts, pts[1:], strict=False):
        if p[0] - prev[0] > gap:
            runs.append([])
        runs[-1].append(p)
    return runs


def _drawable(pts: list[tuple[float, float]], now: float, window_s: float) -> list[tuple[float, float]]:
    """(minutes from now, value) of the points plotext can draw: a value a node sent as NaN, inf or an
    absurd figure is left out (unknown), and so is a time far outside the window: plotext draws a line
    to it point by point, and a timestamp a million minutes off took 35 s (and NaN, or 1e308, raised)."""
    span = window_s / 60
    out = []
    for ts, raw in pts:
        v = known(raw, -MAX_SERIES, MAX_SERIES)
        x = known((ts - now) / 60, -2 * span, span) if known(ts, -1e15, 1e15) is not None else None
        if v is not None and x is not None:
            out.append((x, v))
    return out


class PlotPanel(Static):
    """One chart; ``show`` redraws only when ``key`` differs from the last drawn one."""

    DEFAULT_CSS = """
    PlotPanel { width: 1fr; height: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._key: object = None
        self._text_of: object = None
        self._ready: tuple[object, object, str] | None = None  # ``prepare``'s chart, not shown yet
        self.draws = 0  # charts actually rendered (tests check that unchanged data costs nothing)

    def on_resize(self) -> None:
        if self._text_of is not None and self._key is not None:
            self.show(self._key[0], self._text_of)  # type: ignore[index]

    def show(self, key: object, text_of: object) -> bool:
        """``text_of(width, height) -> str`` is called only when ``key`` (plus size) changed."""
        w, h = self.size.width, self.size.height
        full = (key, w, h)
        self._text_of = text_of
        if full == self._key or not w or not h:
            return False
        self._key = full
        self.draws += 1
        # The colour as a Content style (resolved when drawn), not CSS: the wall's CSS is parsed
        # before the clustertop themes (and their $ct-* variables) are registered.
        self.update(Content.styled(text_of(w, h), "$ct-info"), layout=False)  # type: ignore[operator]
        return True

    def prepare(self, key: object, text_of: object) -> None:
        """``show``'s chart made now (in idle time) and kept for ``show_prepared``: the chart's cost (plotext,
        ~14 ms at 384x108) out of the refresh that shows it, and no repaint of its own between refreshes."""
        w, h = self.size.width, self.size.height
        full = (key, w, h)
        if full == self._key or not w or not h:
            return
        self._ready = (full, text_of, text_of(w, h))  # type: ignore[operator]

    def show_prepared(self) -> bool:
        """Show what ``prepare`` made, if anything (made again where the size changed since)."""
        ready, self._ready = self._ready, None
        if ready is None:
            return False
        full, text_of, text = ready
        if full[1:] != (self.size.width, self.size.height):  # type: ignore[index]
            return self.show(full[0], text_of)  # type: ignore[index]
        self._key, self._text_of = full, text_of
        self.draws += 1
        self.update(Content.styled(text, "$ct-info"), layout=False)
        return True
