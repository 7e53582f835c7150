"""Provides the command palette entries: go to a node, switch screens, switch themes."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from clustertop.dashboard import fmt


class ClusterCommands(Provider):
    def _commands(self) -> list[tuple[str, Any, str]]:
        app: Any = self.app
        out: list[tuple[str, Any, str]] = [
            ("Screen: overview", partial(app.action_go, "overview"), "the cluster as one machine"),
            ("Screen: nodes", partial(app.action_go, "nodes"), "every node in a table"),
            ("Screen: GPUs", partial(app.action_go, "gpus"), "every GPU and its processes"),
            ("Screen: storage", partial(app.action_go, "storage"), "Ceph health, OSDs, pools, RBD; disks, mounts"),
            ("Screen: network", partial(app.action_go, "network"), "every bond and its slaves; NIC rates"),
            ("Screen: work", partial(app.action_go, "work"), "queues, workers, pods, GPU ledger, launched tasks"),
            ("Screen: audit", partial(app.action_go, "audit"), "who did what to what, and how it went"),
            ("Screen: energy", partial(app.action_go, "energy"), "kWh, cost and GPU-hours per GPU, node, user, pod, job"),
            ("Screen: who", partial(app.action_go, "people"), "one user's processes, GPUs, pods, containers, tasks"),
            ("Help: keys", app.action_help, "every key"),
        ]
        for name in sorted(app.clustertop_themes):
            out.append((f"Theme: {name}", partial(setattr, app, "theme", name), "switch the colour theme"))
        state = app.view.state
        for v in state.nodes if state is not None else ():
            out.append((f"Go to node {fmt.node_text(v.host, 60)}", partial(app.open_node, v.host),
                        f"{v.state}, data age {fmt.age(v.age_s)}"))
        return out

    async def discover(self) -> Hits:
        for name, action, help_text in self._commands()[:12]:
            yield Hit(1.0, Content(name), action, text=name, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, _highlight(matcher, name), action, text=name, help=help_text)


def _highlight(matcher: Matcher, name: str) -> Content:
    """Matcher.highlight() parses its input as markup; node names are data, so start from plain Content."""
    content = Content(name)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, name)
    for offset in offsets:
        if not name[offset].isspace():
            content = content.stylize(matcher._match_style, offset, offset + 1)
    return content
