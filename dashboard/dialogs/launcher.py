"""Provides LauncherDialog: pick a template, fill in its parameters, choose target nodes.

Node templates come from the agents' snapshots (``NodeSnapshot.templates``: names and parameter
types, never argv); Kubernetes Job templates from the operator's template directory. The dialog
only builds a ``LaunchRequest``: the action then confirms (a Kubernetes Job after the server's dry
run) before anything starts. Cancel has the focus on the buttons row; Enter in a field does not
launch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

from clustertop.dashboard import fmt
from clustertop.dashboard.dialogs.confirm import DIALOG_CSS


@dataclass
class Choice:
    kind: str  # "node" | "ctr" (a container template) | "k8s"
    name: str
    description: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # name -> type ("str", "int", ...; k8s: "text")
    nodes: list[str] = field(default_factory=list)  # node templates: the nodes that offer it
    path: str | None = None  # k8s: the YAML file

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass
class LaunchRequest:
    choice: Choice
    params: dict[str, str]  # as typed; the agent (or k8s_control.parse_param_text) types them
    nodes: list[str]


class LauncherDialog(ModalScreen[LaunchRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="LauncherDialog") + """
    LauncherDialog > #dialog { border: thick $primary 60%; width: 120; height: 90%; }
    LauncherDialog #title { background: $primary 30%; }
    LauncherDialog #panes { height: 1fr; }
    LauncherDialog #templates { width: 40; height: 1fr; }
    LauncherDialog #form { width: 1fr; height: 1fr; padding: 0 1; }
    LauncherDialog .label { height: 1; margin-top: 1; }
    LauncherDialog SelectionList { height: auto; max-height: 10; }
    LauncherDialog #error { color: $error; height: auto; }
    """

    def __init__(self, choices: list[Choice], notes: list[str] | None = None) -> None:
        super().__init__()
        self.choices = {c.key: c for c in choices}
        self.notes = notes or []
        self.current: Choice | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content("Launch a task"), id="title")
            with Horizontal(id="panes"):
                yield OptionList(*[Option(Content.assemble((f"{c.kind:<5}", "dim"), fmt.node_text(c.name, 32)),
                                          id=k) for k, c in self.choices.items()], id="templates")
                yield VerticalScroll(id="form")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Launch…", id="confirm", variant="warning")

    def on_mount(self) -> None:
        form = self.query_one("#form", VerticalScroll)
        if not self.choices:
            form.mount(Static(Content("no templates: agents publish theirs in the snapshot ([templates.NAME] in "
                                      "their config, and an operator key in [security]); Kubernetes Job "
                                      "templates come from --k8s-templates DIR")))
        for note in self.notes:
            form.mount(Static(Content(note), classes="label"))
        self.query_one("#templates", OptionList).focus()
        if self.choices:
            self.query_one("#templates", OptionList).highlighted = 0

    @on(OptionList.OptionHighlighted, "#templates")
    def _picked(self, event: OptionList.OptionHighlighted) -> None:
        choice = self.choices.get(event.option.id or "")
        if choice is None or choice is self.current:
            return
        self.current = choice
        form = self.query_one("#form", VerticalScroll)
        form.remove_children()
        widgets: list[Static | Input | SelectionList[str]] = [
            Static(Content.assemble((fmt.node_text(choice.name, 60), "bold"), "  ",
                                    (fmt.node_text(choice.description or "", 200), "dim")))]
        for pname, ptype in choice.params.items():
            widgets.append(Static(Content(f"{fmt.node_text(pname, 40)} ({ptype})"), classes="label"))
            widgets.append(Input(placeholder=ptype, id=f"p-{len(widgets)}", name=pname))
        if choice.kind == "node":
            widgets.append(Static(Content("nodes (several = one job, ranks in this order)"), classes="label"))
            widgets.append(SelectionList[str](*[(fmt.node_text(n, 60), n) for n in choice.nodes], id="nodes"))
        elif choice.kind == "ctr":  # a container template of the agents (issue 16): one container per node
            widgets.append(Static(Content("nodes (one container on each)"), classes="label"))
            widgets.append(SelectionList[str](*[(fmt.node_text(n, 60), n) for n in choice.nodes], id="nodes"))
        else:
            widgets.append(Static(Content(f"Kubernetes Job from {fmt.node_text(choice.path, 80)}: the server's "
                                          "dry run is shown before anything is created"), classes="label"))
        form.mount_all(widgets)

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()  # Enter moves on; it never launches
        self.focus_next()

    def request(self) -> LaunchRequest | str:
        """The request, or why it is not complete."""
        c = self.current
        if c is None:
            return "pick a template"
        params = {}
        for inp in self.query("#form Input").results(Input):
            if inp.value.strip():
                params[inp.name or ""] = inp.value.strip()
        nodes: list[str] = []
        if c.kind in ("node", "ctr"):
            nodes = list(self.query_one("#nodes", SelectionList).selected)
            if not nodes:
                return "choose at least one node"
        return LaunchRequest(c, params, nodes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id != "confirm":
            self.dismiss(None)
            return
        req = self.request()
        if isinstance(req, str):
            self.query_one("#error", Static).update(Content(req))
            return
        self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)
