"""Provides LogsViewer: a pod's log (or any text) shown as plain text, never markup; it can follow.

Fixed text (a describe, a traceback) comes through ``show_text``. A pod's log follows: ``follow(f)``
attaches a ``control.k8s_logs.LogFollower`` (its own thread reads the stream) and the viewer takes its
new lines five times a second, like ``less +F`` / k9s: ``f`` toggles following, scrolling up pauses it
(new lines still arrive, below), End resumes; ``p`` opens the container's previous instance's log over it. The viewer keeps the newest ``RING`` lines (the count of
older ones dropped is shown). Closing the viewer closes the stream.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from clustertop.wire.text import inert

#: A log line longer than this is cut (with "…"): one 1 MB line must not stall the viewer.
LINE_MAX = 4000
#: Lines a following viewer keeps (older ones are dropped from the top, and counted).
RING = 5000


class FollowLog(Log):
    """A Log that tells its viewer when the operator scrolls up (pause) or goes to the end (resume)."""

    def _pause(self) -> None:
        viewer = self.screen
        if isinstance(viewer, LogsViewer):
            viewer.set_following(False)

    def action_scroll_up(self) -> None:
        self._pause()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._pause()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._pause()
        super().action_scroll_home()

    def _on_mouse_scroll_up(self, event: object) -> None:
        self._pause()
        super()._on_mouse_scroll_up(event)  # type: ignore[arg-type]

    def action_scroll_end(self) -> None:
        super().action_scroll_end()
        viewer = self.screen
        if isinstance(viewer, LogsViewer) and viewer.follower is not None:
            viewer.set_following(True)


class LogsViewer(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,l", "close", "Close"), Binding("f", "toggle_follow", "Follow on/off", show=False),
                # The container's previous instance (a crash loop's last words), over this viewer: k8s_ops.
                Binding("p", "previous", "Previous", show=False)]
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
        self.follower: Any = None  # a control.k8s_logs.LogFollower once following
        self.following = False  # scrolled to the end with each new line
        self.received = 0  # lines written while following
        self.unseen = 0  # lines that arrived while paused
        self.state = ""
        self.ended = False
        self.dropped = 0  # lines never shown: fell out of the follower's ring or this viewer's RING
        self._timer: Any = None
        #: Opens the previous instance's log (set for a pod's container; None: p does nothing here).
        self.previous: Any = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(self.title_text), id="title")
            yield Static("fetching logs…", id="status")
            yield FollowLog(id="log", highlight=False, max_lines=RING)

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

    # -- following ----------------------------------------------------------------------------------

    def set_title(self, title: str) -> None:
        self.title_text = title
        self.query_one("#title", Static).update(Content(title))

    def follow(self, follower: Any) -> None:
        """Take lines from ``follower`` (started) from now on; it is closed when the viewer closes."""
        self.follower = follower
        self.following = True
        self._status()
        self._timer = self.set_interval(0.2, self.poll)

    def poll(self) -> None:
        f = self.follower
        if f is None:
            return
        t = f.take()
        self.state, self.ended = t.state, t.ended
        if t.lines:
            self.received += len(t.lines)
            if not self.following:
                self.unseen += len(t.lines)
            self.query_one(Log).write_lines([inert(line, limit=LINE_MAX) for line in t.lines],
                                            scroll_end=self.following)
        self.dropped = t.dropped + max(0, self.received - RING)
        if t.ended and self._timer is not None:
            self._timer.stop()  # nothing more will come
        if t.ended and not self.received and not t.state.startswith(("stream ended", "pod gone", "closed")):
            self.show_error(t.state)  # refused or unavailable before any line: said as an error
            return
        self._status()

    def _status(self) -> None:
        if self.error is not None:
            return
        parts = [self.state or "connecting…", f"{self.received} line(s)"]
        if self.dropped:
            parts.append(f"{self.dropped} older dropped (keeps {RING})")
        if not self.ended:
            parts.append("following: scroll up or f to pause" if self.following else
                         f"PAUSED, {self.unseen} new below: End or f to follow")
        self.query_one("#status", Static).update(Content(" · ".join(parts)))

    def set_following(self, on: bool) -> None:
        if self.follower is None or on == self.following:
            return
        self.following = on
        if on:
            self.unseen = 0
            self.query_one(Log).scroll_end(animate=False)
        self._status()

    def action_toggle_follow(self) -> None:
        self.set_following(not self.following)

    def on_unmount(self) -> None:
        if self.follower is not None:
            self.follower.close()  # the stream ends with the viewer: no thread or connection left

    def action_previous(self) -> None:
        if self.previous is not None:
            self.previous()

    def action_close(self) -> None:
        self.dismiss(None)
