"""Provides LogsViewer: a pod's log tail, fetched in a worker, shown as plain text (never markup)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from clustertop.wire.text import inert

#: A log line longer than this is cut (with "…"): one 1 MB line must not stall the viewer.
LINE_MAX = 4000


class LogsViewer(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,l", "close", "Close")]
    DEFAULT_CSS = """
    LogsViewer { align: center middle; }
    LogsViewer > #dialog { width: 95%; height: 90%; border: thick $primary 60%; background: $surface; }
    LogsViewer #title { text-style: bold; background: $primary 30%; padding: 0 1; }
    LogsViewer #status { height: auto; padding: 0 1; }
    LogsViewer #status.-error { color: $error; }
    LogsViewer Log { height: 1fr; }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title
        self.text: str | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(self.title_text), id="title")
            yield Static("fetching logs…", id="status")
            yield Log(id="log", highlight=False)

    def on_mount(self) -> None:
        self.query_one(Log).focus()

    def show_text(self, text: str) -> None:
        self.text = text
        # A pod's output is anyone's bytes: escape sequences and bidi controls are shown escaped, never
        # sent to the terminal (wire.text.inert), as every other value from outside.
        lines = [inert(line, limit=LINE_MAX) for line in text.splitlines()]
        self.query_one("#status", Static).update(Content(f"{len(lines)} line(s), newest last"))
        log = self.query_one(Log)
        log.clear()
        log.write_lines(lines)

    def show_error(self, error: str) -> None:
        self.error = error
        status = self.query_one("#status", Static)
        status.add_class("-error")
        status.update(Content(error))

    def action_close(self) -> None:
        self.dismiss(None)
