"""Provides ConfirmDialog: a yes/no question that defaults to Cancel.

Cancel has the focus when the dialog opens, so Enter (or a key pressed by habit) on a fresh dialog
never kills anything; confirming takes a deliberate Tab or click. Escape cancels too. The body is
a Content built by the caller from node text, so names with markup show literally.

``require``: a second, explicit confirmation for acting on data nothing vouches for (a kill whose
snapshot's seal does not verify): the confirm button stays disabled until exactly that text (the pid)
is typed, and the dialog is framed in the warning colour.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > #dialog {{ width: 90; max-width: 95%; height: auto; max-height: 95%; border: thick $error 60%;
                    background: $surface; padding: 0 1; }}
{name} #title {{ text-style: bold; color: $text; background: $error 30%; padding: 0 1; margin-bottom: 1; }}
{name} #body {{ height: auto; max-height: 20; }}
{name} #buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} Button {{ margin-left: 2; min-width: 12; }}
{name} > #dialog.-unverified {{ border: thick $warning; }}
{name} > #dialog.-unverified #title {{ background: $warning 40%; }}
{name} #require {{ margin-top: 1; }}
"""


class ConfirmDialog(ModalScreen[bool]):
    """``True`` only when the confirm button was pressed."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("left,right", "app.focus_next", "Switch", show=False)]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")

    def __init__(self, title: str, body: Content, confirm: str = "Confirm", require: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm
        self.require = require

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-unverified" if self.require is not None else ""):
            yield Static(Content(self.title_text), id="title")
            with VerticalScroll(id="body"):
                yield Static(self.body, id="body-text")
            if self.require is not None:
                yield Input(placeholder=f"type {self.require} to confirm", id="require")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error", disabled=self.require is not None)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self._fit(self.app.size.height)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.height)

    def _fit(self, height: int) -> None:
        # The buttons (and the pid to type) must always show: on a short terminal the body scrolls
        # instead of pushing them out of the dialog. Around the body: border 2, title 2, buttons 4,
        # the typed pid 4; the dialog may take 95 % of the screen.
        around = 8 + (4 if self.require is not None else 0)
        self.query_one("#body").styles.max_height = max(3, min(20, int(height * 0.95) - around))

    def _typed(self) -> bool:
        return self.require is None or self.query_one("#require", Input).value.strip() == self.require

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#confirm", Button).disabled = not self._typed()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._typed():  # typing the pid and Enter is the second confirmation
            self.dismiss(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm" and self._typed())

    def action_cancel(self) -> None:
        self.dismiss(False)
