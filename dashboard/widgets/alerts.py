"""Provides the alerts strip: most severe first, then newest first, with node and cause."""

from __future__ import annotations

import heapq
from itertools import count, repeat
from operator import attrgetter, neg

from textual.content import Content
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.read.cluster import Alert

SEV_STYLE = {"critical": "$ct-crit bold", "warning": "$ct-warn", "info": "$ct-info"}
SEV_LABEL = {"critical": "CRIT", "warning": "WARN", "info": "INFO"}
SEV_ORDER = {"critical": 0, "warning": 1, "info": 2}


def order_alerts(alerts: list[Alert], first_seen: dict[str, float]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (SEV_ORDER.get(a.severity, 3), -first_seen.get(a.key, 0.0),
                                         a.node or "", a.subject))


def first_alerts(alerts: list[Alert], first_seen: dict[str, float], n: int) -> list[Alert]:
    """``order_alerts(alerts, first_seen)[:n]`` without sorting them all: each alert's key made in C (its
    ``order`` holds node and subject, its position keeps the sort stable), then the ``n`` smallest. ~4,500
    alerts at 10,000 nodes, of which the strip shows 6."""
    if n <= 0:
        return []
    keys = zip(map(SEV_ORDER.get, map(_SEVERITY, alerts), repeat(3)),
               map(neg, map(first_seen.get, map(_KEY, alerts), repeat(0.0))),
               map(_ORDER, alerts), count())
    return [alerts[k[-1]] for k in heapq.nsmallest(n, keys)]


_SEVERITY, _KEY, _ORDER = attrgetter("severity"), attrgetter("key"), attrgetter("order")


def alert_line(a: Alert, width: int, note: str | None = None) -> Content:
    """``note``: "silenced by alice until 14:05" (an Alertmanager silence covers it), shown after the message."""
    where = fmt.node_text(a.node) if a.node else "cluster"
    tail = f"  [{note}]" if note else ""
    return Content.assemble(
        (f"{SEV_LABEL.get(a.severity, '?'):<5}", SEV_STYLE.get(a.severity, "") if not note else "dim"),
        (where, "bold"),
        " ",
        fmt.node_text(a.message, max(10, width - len(where) - 6 - len(tail))),
        (tail, "dim italic"),
    )


class AlertsStrip(Static):
    """As many alerts as its height allows; the rest counted in the last line."""

    DEFAULT_CSS = """
    AlertsStrip { height: auto; max-height: 8; border-top: solid $panel; padding: 0 1; }
    """

    def __init__(self, max_lines: int = 6, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.max_lines = max_lines
        self._key: tuple[str, ...] = ()
        self._lines = 0

    def show(self, alerts: list[Alert], first_seen: dict[str, float], notes: dict[str, str] | None = None,
             status: Content | None = None) -> None:
        """``notes``: alert key -> a note (its silence); ``status``: a line about alerting as a service
        (who evaluates, delivery, Alertmanager), first, when there is one (dashboard/alertfeed.py)."""
        width = max(20, self.size.width or 80)
        notes = notes or {}
        head = [status] if status is not None else []
        room = self.max_lines - len(head)
        # Only the alerts shown are put in order (``first_alerts``); the rest are counted.
        shown = first_alerts(alerts, first_seen, len(alerts) if len(alerts) <= room else room - 1)
        key = (str(width), str(status.plain if status is not None else ""), str(len(alerts)),
               *(a.key + notes.get(a.key, "") for a in shown))
        if key == self._key:
            return
        self._key = key
        if not alerts:
            lines = [*head, Content.assemble(("no alerts", "$ct-ok"))]
        else:
            lines = [*head, *(alert_line(a, width, notes.get(a.key)) for a in shown)]
            if len(shown) < len(alerts):
                lines.append(Content.assemble((f"… and {len(alerts) - len(shown)} more alerts", "dim")))
        # A relayout only when the height changes: at 1,000 nodes the alerts change every tick,
        # and each relayout of the overview also repaints the tile grid's scrollbars a frame later.
        self.update(Content("\n").join(lines), layout=len(lines) != self._lines)
        self._lines = len(lines)
