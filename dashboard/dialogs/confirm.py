"""Provides ConfirmDialog: a yes/no question that defaults to Cancel.

Cancel has the focus when the dialog opens, so Enter (or a key pressed by habit) on a fresh dialog
never kills anything; confirming takes a deliberate Tab or click. Escape cancels too. The body is
a Content built by the caller from node text, so names with markup show literally.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > #dialog {{ width: 90; max-width: 95%; height: auto; max-height: 95%; border: thick $error 60%;
                    background: $surface; padding: 0 1; }}
{name} #title {{ text-style: bold; color: $text; background: $error 30%; padding: 0 1; margin-bottom: 1; }}
{name} #body {{ height: auto; max-height: 20; }}
{name} #buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} Button {{ margin-left: 2; min-width: 12; }}
"""


class ConfirmDialog(ModalScreen[bool]):
    """``True`` only when the confirm button was pressed."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("left,right", "app.focus_next", "Switch", show=False)]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")

    def __init__(self, title: str, body: Content, confirm: str = "Confirm") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(self.title_text), id="title")
            with VerticalScroll(id="body"):
                yield Static(self.body, id="body-text")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)
