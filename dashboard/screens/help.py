"""Provides the help screen: every key, from the live bindings (so it never drifts from the code)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("1 / 2 / 3", "overview / nodes / GPUs"),
    ("4 / 5", "storage (Ceph, disks, mounts) / network (bonds, NICs)"),
    ("6 / 7", "work (queues, workers, pods, GPU ledger, tasks) / audit trail"),
    ("e", "energy: kWh, cost and GPU-hours per GPU, node, user, pod, job (1 h / 24 h)"),
    ("w", "who: one user's processes, GPUs, pods, containers, tasks (/ or w: type the user; enter: node)"),
    ("k / K", "GPU or node screen: terminate / kill a process (asks first; needs --key)"),
    ("h", "node screen: history over 1 h / 24 h / 7 d"),
    ("c", "node screen: stop / restart / kill one of the node's containers (asks first; needs --key)"),
    ("o", "node screen: Ceph noout / norebalance, the node's OSDs out / in (asks first; needs [ceph]; "
          "in the footer where Ceph places OSDs)"),
    ("r", "storage: an RBD image or snapshot: snapshot, protect, unprotect, delete, clone, flatten ([ceph])"),
    ("ctrl+d", "work: delete a pod or Job, revoke a Celery task, retire a Dask worker, stop a task"),
    ("ctrl+k", "work: revoke and terminate a running Celery task"),
    ("ctrl+r", "work, task history: retry an ended Celery task: its arguments from the result backend, shown first"),
    ("l / s / n", "work: pod logs, following (f pauses, End resumes, p: before the last restart) / scale a deployment / launch a task"),
    ("i / H", "work: describe a pod, Deployment or Job (fields, conditions, events) / a Deployment's rollout history"),
    ("u / R", "work: roll a Deployment back to its previous revision / restart it (asks first)"),
    ("C / D", "work, GPU ledger: cordon or uncordon / drain a Kubernetes node (what is evicted shown first)"),
    ("+ / -", "work: grow / shrink a Celery worker's pool"),
    ("[ / ]", "work: previous / next tab"),
    ("v", "network: show or hide virtual and loopback NICs"),
    ("a", "overview: acknowledge an alert: a silence in Alertmanager (asks first; [dashboard] alertmanager)"),
    ("arrows, enter", "move, open the selected node"),
    ("click", "open a node (tile or row); click a column header to sort"),
    ("/", "filter the nodes or GPUs table (Esc clears)"),
    (":", ":ns NAME / :ns all / :ns: the Work and people screens' namespace; :ctx NAME / :ctx: the kubeconfig context "
          "the Kubernetes actions use"),
    ("s / S", "sort by the next column / reverse"),
    ("escape", "back"),
    ("ctrl+p", "command palette: go to node, screens, themes"),
    ("t", "next theme"),
    ("?", "this help"),
    ("q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    /* A scroll container cannot size itself to its content (width: auto collapsed it to an empty box):
       give it a width that fits the longest line, and let the height follow the text up to the screen. */
    HelpScreen #help { width: 100; max-width: 96%; height: auto; max-height: 90%; border: round $primary;
                       background: $surface; padding: 0 1; }
    HelpScreen #help > Static { width: 100%; height: auto; }
    /* Two columns: a description that wraps (an 80-column terminal) stays right of its key. */
    HelpScreen #keys { layout: grid; grid-size: 2; grid-columns: 16 1fr; grid-gutter: 0 2; height: auto; }
    HelpScreen #keys > Static { height: auto; }
    HelpScreen #keys > .key { text-align: right; text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Content.assemble(("clustertop keys", "bold $primary"), "\n"))
            with Grid(id="keys"):
                for key, what in KEYS:
                    yield Static(key, classes="key", markup=False)
                    yield Static(what, classes="what", markup=False)
            ro = getattr(self.app, "settings", None)
            if ro is not None and ro.effective_read_only:
                yield Static(Content.assemble("\n", ("read-only: actions are hidden and refused", "$ct-warn")))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
