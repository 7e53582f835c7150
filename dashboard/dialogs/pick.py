"""Provides PickDialog: choose one item from a list (e.g. a process of a node before signalling it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from clustertop.dashboard.dialogs.confirm import DIALOG_CSS


class PickDialog(ModalScreen[str | None]):
    """The chosen option's id, or None. Choosing only selects: the action asks again to confirm."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="PickDialog") + """
    PickDialog > #dialog { border: thick $primary 60%; width: 110; }
    PickDialog #title { background: $primary 30%; }
    PickDialog OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, title: str, options: list[tuple[str, Content]]) -> None:
        super().__init__()
        self.title_text = title
        self.options = options

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(self.title_text), id="title")
            yield OptionList(*[Option(label, id=oid) for oid, label in self.options])

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
