"""Provides the cluster sparklines: a few trends drawn as block characters in one Static (cheap)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.history import TotalsHistory

LABEL_W = 10
VALUE_W = 9
#: (label, series, top of scale, formatter)
SERIES = (
    ("GPU util", "gpu_util_pct", 100.0, lambda v: fmt.pct(v)),
    ("GPU power", "power_mw", None, lambda v: fmt.watts(v)),
    ("CPU util", "cpu_util_pct", 100.0, lambda v: fmt.pct(v)),
)


class ClusterSparks(Static):
    DEFAULT_CSS = """
    ClusterSparks { height: 4; padding: 0 1; }
    """

    def __init__(self, ascii: bool = False, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.ascii = ascii
        self._last = ""

    def show(self, hist: TotalsHistory) -> None:
        width = max(10, (self.size.width or 80) - 2 - LABEL_W - VALUE_W - 2)
        lines = []
        for label, name, top, f in SERIES:
            values = hist.series(name)
            current = values[-1] if values else None
            line = fmt.sparkline(values, width, top=top, ascii=self.ascii)
            lines.append(Content.assemble((f"{label:<{LABEL_W}}", "dim"), (line, "$ct-info"),
                                          f" {f(current):>{VALUE_W}}"))
        content = Content("\n").join(lines)
        if content.markup != self._last:
            self._last = content.markup
            self.update(content, layout=False)
