"""Provides the overview screen: the one-machine header, node tiles, alerts and cluster sparklines."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget

from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.alerts import AlertsStrip
from clustertop.dashboard.widgets.sparks import ClusterSparks
from clustertop.dashboard.widgets.tiles import NodeTiles
from clustertop.read.plan import Level


class OverviewScreen(DataScreen):
    screen_name = "overview"
    plan_level = Level.DIGESTS  # tiles, alerts and totals: digests are all it draws

    DEFAULT_CSS = """
    OverviewScreen NodeTiles { height: 1fr; padding: 1 1 0 1; }
    OverviewScreen ClusterSparks { border-top: solid $panel; }
    """

    def compose_body(self) -> Iterable[Widget]:
        ascii = bool(getattr(self.app, "settings", None) and self.app.settings.ascii)  # type: ignore[attr-defined]
        yield ClusterSparks(ascii=ascii, id="sparks")
        yield NodeTiles(ascii=ascii, id="tiles")
        yield AlertsStrip(id="alerts")

    def on_mount(self) -> None:
        self.query_one(NodeTiles).focus()

    def draw(self, view: View) -> None:
        assert view.state is not None
        self.query_one(ClusterSparks).show(view.history)
        self.query_one(NodeTiles).set_nodes(view.state.nodes, unreachable=view.unreachable)
        self.query_one(AlertsStrip).show(view.alerts, view.first_seen)

    def on_node_tiles_opened(self, event: NodeTiles.Opened) -> None:
        self.app.open_node(event.host)  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        # Sparkline width follows the screen; redraw them once at the new size.
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.query_one(ClusterSparks).show(view.history)
