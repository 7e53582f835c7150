"""Provides DataScreen: the base of every screen that draws the cluster (header, body, footer).

Only the active screen draws: the app hands each new View to the screen on top, and a screen
that comes back (after a modal, or a screen switch) catches up in ``on_screen_resume``.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import events
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from clustertop.dashboard import k8s_scope  # :ns / :ctx, said in the header while set
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.header import ClusterHeader, detail_note, status_line
from clustertop.read.plan import Level, ReadPlan


class DataScreen(Screen[None]):
    screen_name = "screen"
    #: What the screen draws from, for every node (``clustertop.read.plan.Level``): full snapshots as their
    #: keys hold them, brought up to date by the briefs and asking no agent for more (``DETAIL``, the default,
    #: always safe: the storage and network screens; its age is said in the header), briefs, the briefs' GPUs
    #: only, or digests (tiles, node rows, totals). ``Level.FULL`` (every node asked to write in full every
    #: tick) is no screen's: a screen that draws one node closely wants that node alone (``read_plan``).
    plan_level = Level.DETAIL

    def __init__(self) -> None:
        super().__init__()
        self._drawn = -1

    def compose(self) -> ComposeResult:
        yield ClusterHeader(id="header")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def on_resize(self, event: events.Resize) -> None:
        # Below 100 columns the footer drops the padding between keys, so a screen's own keys
        # (filter, sort, terminate, kill) leave room for "? Help" and "q Quit".
        for footer in self.query(Footer):  # the wall has none
            footer.compact = event.size.width < 100

    def on_screen_resume(self) -> None:
        view = getattr(self.app, "view", None)
        if view is not None:
            self.show(view)

    def read_plan(self) -> ReadPlan:
        """The read this screen draws from: every node at ``plan_level``. Screens that also draw one
        node in full (a node's screen, the GPU table's selection) add it here."""
        return ReadPlan(self.plan_level)

    def covered(self, view: View) -> bool:
        """Whether ``view``'s read holds everything this screen draws (briefs are not detail, digests
        not briefs)."""
        return view.state is None or view.state.plan.holds(self.read_plan())

    def show(self, view: View, force: bool = False) -> None:
        if view.version == self._drawn and not force:
            return
        try:
            header = self.query_one(ClusterHeader)
        except NoMatches:
            # A read can land while this screen is still composing or already torn down (the app
            # exiting): nothing to draw on; resume or the next read draws it.
            return
        covered = self.covered(view)
        if covered:
            self._drawn = view.version
        t = view.state.totals if view.state is not None else None
        header.show(t, status_line(t, view.source_label, view.read_ts, view.unreachable_since, view.store_error,
                                   view.now, self.screen_name) + k8s_scope.parts(self.app)
                    + (detail_note(view.state.nodes, view.state.want_error, self.read_plan().wanted_host)
                       if view.state is not None else []))
        self.set_class(view.unreachable, "-unreachable")
        if view.state is not None and covered:
            self.draw(view)
        elif not covered and not view.unreachable:
            # Just switched here from a screen that read briefs: the body draws nothing from them
            # (absent detail would read as N/A) and a read of what this screen needs is asked for
            # now. With the store unreachable the refresh timer retries, at its pace, not in a loop.
            self.app.refresh_now()  # type: ignore[attr-defined]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The app's policy for every screen's own keys too: job-control keys (WRITE_ACTIONS) are
        # hidden and refused in read-only mode wherever they are bound.
        return self.app.check_action(action, parameters)

    def draw(self, view: View) -> None:
        """Draw the body from ``view`` (state is not None). Override."""

