"""Provides ScalePrompt: a number for a deployment's replicas.

The input starts empty (the current count is the placeholder), so Enter on a fresh prompt is a
cancel, never "scale to whatever was there"; only a whole number >= 0 that differs from the
current count is returned.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from clustertop.dashboard.dialogs.confirm import DIALOG_CSS


class ScalePrompt(ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="ScalePrompt") + """
    ScalePrompt > #dialog { border: thick $warning 60%; width: 70; }
    ScalePrompt #title { background: $warning 30%; }
    ScalePrompt #error { color: $error; height: auto; }
    """

    def __init__(self, title: str, body: Content, current: int | None) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.current = current

    def compose(self) -> ComposeResult:
        now = "unknown" if self.current is None else str(self.current)
        with Vertical(id="dialog"):
            yield Static(Content(self.title_text), id="title")
            yield Static(self.body, id="body")
            yield Input(placeholder=f"replicas (now {now})", type="integer", id="replicas")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Scale", id="confirm", variant="warning")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _value(self) -> int | None:
        text = self.query_one(Input).value.strip()
        if not text:
            return None
        try:
            n = int(text)
        except ValueError:
            return None
        return n if n >= 0 and n != self.current else None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.dismiss(None)  # Enter on the fresh prompt: nothing typed, nothing scaled
            return
        self._submit()

    def _submit(self) -> None:
        n = self._value()
        if n is None:
            self.query_one("#error", Static).update(Content(
                f"enter a whole number >= 0 other than the current {self.current}"))
            return
        self.dismiss(n)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
