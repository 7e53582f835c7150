"""Provides the audit screen: the tail of the audit stream (who did what to what, and how it went).

Agents write an entry for every signed command they act on (or refuse); the dashboard writes one
for what it does itself (Kubernetes, Celery, Dask). Read in a worker thread with one bounded
XREVRANGE (newest first), on arrival, every AUDIT_EVERY_S while shown, and after each action.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.actions import AUDIT_TAIL, actions_of
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.table import LiveTable, SortCell, text_cell
from clustertop.errors import describe
from clustertop.read.plan import Level
from clustertop.wire import schema

AUDIT_EVERY_S = 5.0
COLUMNS = [("when", "when"), ("actor", "who"), ("action", "action"), ("target", "target"), ("result", "result"),
           ("where", "where")]


@dataclass
class AuditRead(Message):
    entries: list[schema.AuditEntry]
    error: str | None = None


def audit_rows(entries: list[schema.AuditEntry], ok: str, crit: str) -> dict[str, list[Text]]:
    rows: dict[str, list[Text]] = {}
    for i, e in enumerate(entries):
        good = e.result == "ok"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts))
        # Newest first: sorting by "when" keeps that order; the key holds the position for duplicates.
        rows[f"{e.ts!r}\x1f{e.command_id or ''}\x1f{i}"] = [
            SortCell(when, "", -e.ts), text_cell(e.actor, "", 40), text_cell(e.action, "bold", 24),
            text_cell(e.target, "", 60), text_cell(e.result, ok if good else crit, 120), text_cell(e.where, "dim", 30)]
    return rows


class AuditScreen(DataScreen):
    screen_name = "audit"
    plan_level = Level.DIGESTS  # the audit stream and the header: no node detail
    BINDINGS = [Binding("r", "reload", "Reload")]
    DEFAULT_CSS = """
    AuditScreen #audit-status { height: 1; padding: 0 1; background: $panel; }
    AuditScreen LiveTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[schema.AuditEntry] = []
        self.error: str | None = None
        self.loads = 0
        self._seen_done = 0

    def compose_body(self) -> Iterable[Widget]:
        yield Static("reading the audit trail…", id="audit-status")
        yield LiveTable(COLUMNS, id="audit-table", fold=("where",))

    def on_mount(self) -> None:
        table = self.query_one(LiveTable)
        table.sort_column = "when"
        table.focus()
        self.load()
        self.set_interval(AUDIT_EVERY_S, self._tick)

    def _tick(self) -> None:
        if self.is_current:
            self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="audit")
    def load(self) -> None:
        try:
            self.post_message(AuditRead(actions_of(self.app).audit_tail(AUDIT_TAIL)))
        except Exception as e:  # a Redis error must not take the screen down
            self.post_message(AuditRead([], describe(e)))

    def on_audit_read(self, msg: AuditRead) -> None:
        self.loads += 1
        if msg.error is None or not self.entries:
            self.entries = msg.entries
        self.error = msg.error
        p = self.app.palette  # type: ignore[attr-defined]
        self.query_one(LiveTable).sync(audit_rows(self.entries, p.text_style("ok"), p.text_style("crit")))
        n = len(self.entries)
        status = (f"audit trail: read failed ({msg.error}); showing the last read" if msg.error else
                  "audit trail: no entries yet (every job-control action is recorded here)" if not n else
                  f"audit trail: the {n} newest entr{'y' if n == 1 else 'ies'} (at most {AUDIT_TAIL} are read), "
                  "newest first")
        self.query_one("#audit-status", Static).update(Content(fmt.node_text(status, 300)), layout=False)

    def draw(self, view: View) -> None:
        done = len(actions_of(self.app).done)
        if done != self._seen_done:  # an action finished: its entry is in the stream now
            self._seen_done = done
            self.load()
