"""Provides the people screen (``w``): one user's work across the cluster, as `clustertop who USER` lists it.

``/`` (or ``w`` again) opens the box to type a user name or numeric uid; Enter searches. The rows are
``clustertop.read.people.find`` over the dashboard's current read, redrawn with every read (the
search is pure and cheap: a pass over each node's process lists); Enter on a row opens its node.
The screen reads every node in full without asking for it (``Level.DETAIL``): top processes are not in
briefs or digests, so they are each node's last full snapshot's (up to its agent's ``full_every`` old, said in
the header), the GPU processes this tick's (from the brief).
Energy is the energy screen's (``e``): its ledgers are read there, not on every read here.
``:ns NAME`` (dashboard/k8s_scope.py) narrows it to processes in that namespace's pods and what is joined
through them; the summary says how many of the user's processes that hides and why (``:ns all`` restores).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual import on
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Input, Static

from clustertop.dashboard import fmt, k8s_scope
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.header import aged, oldest_detail
from clustertop.dashboard.widgets.table import LiveTable, SortCell, num_cell, text_cell
from clustertop.read.people import Item, Work, find
from clustertop.read.plan import Level

COLUMNS = [("kind", "kind"), ("host", "node"), ("pid", "pid"), ("gpu", "GPU"), ("vram", "VRAM"),
           ("state", "state"), ("name", "what"), ("owner", "owner / via")]
FOLD = ("owner", "state", "gpu")
KIND_WORDS = {"gpu-process": "GPU proc", "process": "process", "pod": "pod", "container": "container",
              "task": "task", "celery-task": "celery"}


def item_row(i: Item) -> list[SortCell]:
    extra = "; ".join(x for x in (i.owner, f"via {i.via}" if i.via else None,
                                  f"node {i.node_state}" if i.node_state != "up" else None) if x)
    return [
        SortCell(KIND_WORDS.get(i.kind, i.kind), "bold" if i.kind == "gpu-process" else "", i.kind),
        text_cell(i.host, limit=40),
        num_cell(fmt.num(i.pid), i.pid),
        num_cell(fmt.num(i.gpu) if i.gpu is not None else ("-" if i.kind != "gpu-process" else fmt.NA), i.gpu),
        num_cell(fmt.bytes_(i.vram_bytes) if i.kind == "gpu-process" else "-", i.vram_bytes),
        text_cell(i.state, limit=20) if i.state else SortCell("-", "dim", None),
        text_cell(i.name, limit=200),
        text_cell(extra or None, "dim", 80),
    ]


def sort_value(i: Item, column: str) -> object:
    return {"kind": i.kind, "host": i.host, "pid": i.pid, "gpu": i.gpu, "vram": i.vram_bytes, "state": i.state,
            "name": i.name, "owner": i.owner}[column]


def summary(w: Work | None, user: str, detail_age_s: float | None = None) -> Content:
    if not user:
        return Content.assemble(("Who: ", "bold $primary"),
                                ("press / and type a user name or uid, then Enter", "dim"))
    assert w is not None
    counts = ", ".join(f"{w.count(k)} {word}" for k, word in (
        ("gpu-process", "GPU processes"), ("process", "processes"), ("pod", "pods"), ("container", "containers"),
        ("task", "tasks"), ("celery-task", "Celery tasks")))
    vram = fmt.bytes_(w.vram_bytes) + (f" (+{w.vram_unknown} unknown)" if w.vram_unknown else "")
    lines = [Content.assemble(("Who: ", "bold $primary"), (fmt.node_text(user, 60), "bold"), f"  {counts}"),
             Content(f"GPUs held now: {len(w.gpus)} on {len({h for h, _ in w.gpus})} nodes, VRAM {vram}"
                     f"  · searched {w.nodes} nodes  · energy: e")]
    if w.no_procs:
        lines.append(Content.assemble((f"no process list from {len(w.no_procs)} nodes "
                                       f"({fmt.node_text(', '.join(w.no_procs[:5]), 80)}): unknown there", "$ct-warn")))
    if w.namespace is not None:
        lines.append(scope_line(w))
    if w.omitted:
        lines.append(Content.assemble((f"{w.omitted} more items not listed", "dim")))
    if detail_age_s is not None:
        # Level.DETAIL: process lists are in no brief, so they are each node's last full snapshot's.
        lines.append(aged(Content.assemble(("GPU processes current", "dim")),
                          "· other processes, process states and VRAM per process", detail_age_s))
    return Content("\n").join(lines)


def scope_line(w: Work) -> Content:
    """"ns ml: only processes in its pods; hidden: 3 processes outside pods (:ns all shows them)"."""
    hidden = w.hidden_text()
    tail = f"; hidden: {', '.join(hidden)} (:ns all shows them)" if hidden else "; none of theirs hidden"
    return Content.assemble(("ns ", "bold"), (fmt.node_text(w.namespace or "", 63), "bold"),
                            (f": only processes in its pods{tail}", "$ct-warn" if hidden else "dim"))


class PeopleScreen(DataScreen):
    screen_name = "who"
    plan_level = Level.DETAIL

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash,w", "ask", "User"),
    ]
    DEFAULT_CSS = """
    PeopleScreen #who-input { display: none; }
    PeopleScreen.-asking #who-input { display: block; }
    PeopleScreen #who-summary { height: auto; padding: 0 1; }
    PeopleScreen LiveTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.user = ""
        self.work: Work | None = None

    def compose_body(self) -> Iterable[Widget]:
        yield Input(placeholder="user name or uid, then Enter (Esc: back)", id="who-input")
        yield Static(summary(None, ""), id="who-summary")
        yield LiveTable(COLUMNS, id="who-table", fold=FOLD)

    def on_mount(self) -> None:
        if not self.user:
            self.action_ask()

    def action_ask(self) -> None:
        self.add_class("-asking")
        self.query_one("#who-input", Input).focus()

    @on(Input.Submitted, "#who-input")
    def _asked(self, event: Input.Submitted) -> None:
        self.user = event.value.strip()
        self.remove_class("-asking")
        self.query_one("#who-table", LiveTable).focus()
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.draw(view)

    def draw(self, view: View) -> None:
        assert view.state is not None
        self.work = find(self.user, view.state.nodes, view.state.cluster,
                         namespace=k8s_scope.namespace_of(self.app)) if self.user else None
        self.query_one("#who-summary", Static).update(summary(self.work, self.user, oldest_detail(view.state.nodes)))
        items = self.work.items if self.work is not None else []
        table = self.query_one("#who-table", LiveTable)
        table.show_rows([str(n) for n in range(len(items))], items, item_row, sort_value)

    @on(LiveTable.RowSelected, "#who-table")
    def _open(self, event: LiveTable.RowSelected) -> None:
        item = self.query_one("#who-table", LiveTable).item_at(event.index)
        if isinstance(item, Item) and item.host:
            self.app.open_node(item.host)  # type: ignore[attr-defined]
