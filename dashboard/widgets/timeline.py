"""Provides the alert timeline: when alerts came and went over the last hour, for the wall.

The app keeps only the alerts that are live now; a wall also has to say "an OSD flapped ten
minutes ago". ``AlertLog`` remembers openings and clearings in a bounded deque (the wall runs for
weeks), and ``Timeline`` draws them: a one-hour strip with a mark per alert (the mark's shape
says the severity, not only its colour) and the newest events in words.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from textual.content import Content
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.read.cluster import Alert

MAX_EVENTS = 200
SEV_STYLE = {"critical": "$ct-crit bold", "warning": "$ct-warn", "info": "$ct-info"}
SEV_MARK = {"critical": "X", "warning": "!", "info": "i"}
SEV_WORD = {"critical": "CRIT", "warning": "WARN", "info": "INFO"}
SEV_RANK = {"critical": 0, "warning": 1, "info": 2}
_KEY = attrgetter("key")


@dataclass
class Event:
    ts: float
    alert: Alert
    cleared_ts: float | None = None


class AlertLog:
    """Openings (and when they cleared) of alerts, newest last, at most ``maxlen``.

    ``seed``: what the evaluating agent's timeline in Redis says fired before this log started (alerts as a
    service, clustertop.alerting), so a wall started now still shows the OSD that flapped an hour ago; an
    alert still open there and live here stays one entry."""

    def __init__(self, maxlen: int = MAX_EVENTS) -> None:
        self.events: deque[Event] = deque(maxlen=maxlen)
        self._open: dict[str, Event | None] = {}  # live alert key -> its event (None: pushed out of the deque)
        self.version = 0
        self.started: float | None = None
        self.history: list[Event] = []  # from Redis: openings before ``started``
        self._history_open: dict[tuple[str, str | None, str], Event] = {}
        self._seeded_seq: int | None = None

    def seed(self, events: list[Any], seq: int) -> None:
        """The evaluator's events (``wire.alerts.AlertEvent``, oldest first) from its state number ``seq``."""
        if seq == self._seeded_seq or self.started is None:
            return
        first = self._seeded_seq is None
        self._seeded_seq = seq
        changed = False
        # alerts this log opened itself before the state arrived, by identity
        live = {(ev.alert.rule, ev.alert.node, ev.alert.subject): (key, ev) for key, ev in self._open.items()
                if ev is not None and ev.alert.rule} if first else {}
        for e in events:
            ident = (e.rule, e.node, e.subject)
            if e.kind == "fired" and first and e.ts < self.started:
                ev = Event(e.ts, Alert(e.severity if e.severity in SEV_RANK else "warning", e.source, e.node,
                                       e.subject, e.message, e.rule))
                self.history.append(ev)
                self._history_open[ident] = ev
                changed = True
            elif e.kind == "resolved" and ident in self._history_open:
                self._history_open.pop(ident).cleared_ts = e.ts
                changed = True
        self.history = self.history[-(self.events.maxlen or MAX_EVENTS):]
        for ident, ev in list(self._history_open.items()):
            if ident in live:  # open there since before we started, and open here: one entry, the older
                key, mine = live[ident]
                self.events.remove(mine)
                self._open[key] = self._history_open.pop(ident)
                ev.cleared_ts = None
        if changed:
            self.version += 1

    def all_events(self) -> list[Event]:
        return [*self.history, *self.events] if self.history else list(self.events)

    def update(self, alerts: list[Alert], now: float) -> None:
        if self.started is None:
            self.started = now
        live = dict(zip(map(_KEY, alerts), alerts, strict=True))
        is_open = self._open
        changed = False
        # Set operations (in C): at 10,000 nodes ~4,500 alerts are live, nearly all of them open since before.
        for key in is_open.keys() - live.keys():
            ev = is_open.pop(key)
            if ev is not None:
                ev.cleared_ts = now
                changed = True
        opened = live.keys() - is_open.keys()
        for key, a in live.items() if opened else ():  # in the alerts' order: the log's order
            if key not in opened:
                continue
            seeded = self._history_open.pop((a.rule, a.node, a.subject), None) if a.rule else None
            if seeded is not None:  # open since before we started: the same entry, not a second one
                is_open[key] = seeded
                continue
            if len(self.events) == self.events.maxlen:
                # The oldest event leaves the deque: if still open, its alert stays known as open (None: no
                # entry to mark cleared), so it is not logged again as opening now on every update. Only the
                # live alerts are remembered: the log stays bounded by the alerts live at once.
                gone = self.events[0]
                if gone.cleared_ts is None and is_open.get(gone.alert.key) is gone:
                    is_open[gone.alert.key] = None
            ev = Event(now, a)
            self.events.append(ev)
            is_open[key] = ev
            changed = True
        if changed:
            self.version += 1


def strip(events: list[Event], now: float, window_s: float, width: int) -> Content:
    """One line: a slot per column over the last ``window_s``, the worst severity opened in it."""
    width = max(10, width)
    slots: list[str | None] = [None] * width
    for e in events:
        age = now - e.ts
        if age < 0 or age > window_s:
            continue
        i = min(width - 1, int((1 - age / window_s) * width))
        cur = slots[i]
        if cur is None or SEV_RANK[e.alert.severity] < SEV_RANK[cur]:
            slots[i] = e.alert.severity
    parts: list[str | tuple[str, str]] = []
    for sev in slots:
        parts.append(("·", "dim") if sev is None else (SEV_MARK[sev], SEV_STYLE[sev]))
    return Content.assemble(*parts)


class Timeline(Static):
    DEFAULT_CSS = """
    Timeline { height: 1fr; width: 1fr; padding: 0 1; }
    """

    def __init__(self, window_s: float = 3600.0, id: str | None = None,
                 empty: str = "no alerts since the wall started") -> None:
        super().__init__("", id=id)
        self.window_s = window_s
        self.empty = empty  # what the list says with no events (the wall, the overview)
        self._key: object = None
        self._last: tuple[AlertLog, float] | None = None

    def on_resize(self) -> None:
        # Drawn for the size it had; a layout that settles later (a big screen's first frames) or a resize
        # gets as many events as now fit, not the rows of the first size with blank lines below.
        if self._last is not None:
            self.show(*self._last)

    def show(self, log: AlertLog, now: float) -> None:
        self._last = (log, now)
        w, h = self.size.width - 2, self.size.height
        # The strip moves one column every window/width seconds: redraw on that, not every tick.
        step = int(now // max(1.0, self.window_s / max(10, w)))
        key = (log.version, step, w, h)
        if key == self._key or w <= 0 or h <= 0:
            return
        self._key = key
        events = log.all_events()
        mins = int(self.window_s // 60)
        lines = [
            Content.assemble(("Alert timeline", "bold"), (f"  last {mins} min   X critical  ! warning  i info",
                                                           "dim")),
            strip(events, now, self.window_s, w),
            Content.assemble((f"-{mins} min", "dim"), (" " * max(1, w - len(f"-{mins} min") - 3)), ("now", "dim")),
        ]
        room = max(0, h - len(lines))
        for e in reversed(events[len(events) - room:] if room else []):
            a = e.alert
            where = fmt.node_text(a.node) if a.node else "cluster"
            end = (("  open", "bold") if e.cleared_ts is None
                   else (f"  cleared {fmt.clock(e.cleared_ts)}", "dim"))
            lines.append(Content.assemble(
                (f"{fmt.clock(e.ts)} ", "dim"), (f"{SEV_WORD[a.severity]:<5}", SEV_STYLE[a.severity]),
                (where, "bold"), " ", fmt.node_text(a.message, max(10, w - len(where) - 40)), end))
        if len(lines) == 3:
            lines.append(Content.assemble((self.empty, "$ct-ok")))
        self.update(Content("\n").join(lines[:h]), layout=False)
