"""Provides the one-line prompts: ``Prompt`` and its two uses, ``ScalePrompt`` (a deployment's replicas)
and ``TextPrompt`` (a snapshot's name, a clone's POOL/NAME).

Shared rules: the input starts empty, so Enter on a fresh prompt is a cancel, never "whatever was there"
or a name chosen by accident; what is typed is checked by ``parse`` before anything is returned (a problem
is shown under the input and the prompt stays open); it is shown back only through Textual's Input,
never parsed as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from clustertop.dashboard.dialogs.confirm import DIALOG_CSS

T = TypeVar("T")


class Prompt(ModalScreen[T | None], Generic[T]):
    """``parse(text)`` gives (the value, None) or (None, what is wrong with the text)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="Prompt") + """
    Prompt > #dialog { border: thick $warning 60%; width: 80; }
    Prompt #title { background: $warning 30%; }
    Prompt #error { color: $error; height: auto; }
    """

    def __init__(self, title: str, body: Content, placeholder: str, label: str,
                 parse: Callable[[str], tuple[T | None, str | None]], input_id: str = "text",
                 input_type: str = "text") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.placeholder = placeholder
        self.label = label
        self.parse = parse
        self.input_id = input_id
        self.input_type = input_type

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(self.title_text), id="title")
            yield Static(self.body, id="body")
            yield Input(placeholder=self.placeholder, id=self.input_id, max_length=300,
                        type=self.input_type)  # type: ignore[arg-type]
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.label, id="confirm", variant="warning")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.dismiss(None)  # Enter on the fresh prompt: nothing typed, nothing done
            return
        self._submit()

    def _submit(self) -> None:
        value, problem = self.parse(self.query_one(Input).value.strip())
        if value is None:
            self.query_one("#error", Static).update(Content(problem or "not accepted"))
            return
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ScalePrompt(Prompt[int]):
    """A number for a deployment's replicas: only a whole number >= 0 that differs from the current count
    (the placeholder) is returned."""

    DEFAULT_CSS = "ScalePrompt > #dialog { width: 70; }"

    def __init__(self, title: str, body: Content, current: int | None) -> None:
        now = "unknown" if current is None else str(current)
        super().__init__(title, body, f"replicas (now {now})", "Scale", self._replicas, input_id="replicas",
                         input_type="integer")
        self.current = current

    def _replicas(self, text: str) -> tuple[int | None, str | None]:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n >= 0 and n != self.current:
            return n, None
        return None, f"enter a whole number >= 0 other than the current {self.current}"


class TextPrompt(Prompt[str]):
    """One line of text; ``check(text)`` says what is wrong with it, or None."""

    def __init__(self, title: str, body: Content, placeholder: str, label: str,
                 check: Callable[[str], str | None]) -> None:
        super().__init__(title, body, placeholder, label, lambda text: _checked(text, check))


def _checked(text: str, check: Callable[[str], str | None]) -> tuple[str | None, str | None]:
    problem = check(text)
    return (None, problem) if problem is not None else (text, None)
