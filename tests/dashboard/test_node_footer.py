"""The node screen's footer (dashboard/screens/node.py): ``o Ceph`` is shown on a node Ceph places OSDs on,
next to its maintenance section, without pushing k/K, the screens, Help or Quit off an 80x24 terminal; on a
node without OSDs the footer leaves it out and the same key still opens the cluster flags; read-only hides
both. The demo (its simulated Ceph, with OSDs on the towers) on a real redis-server; what is checked is the
footer line as the compositor draws it."""

from __future__ import annotations

from typing import Any

import pytest

from clustertop.cli import modes
from clustertop.dashboard.app import make_app
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.settings import Settings
from clustertop.read.reader import Reader
from tests.dashboard.test_dashboard_ceph_ops import ceph_now
from tests.dashboard.test_dashboard_fuzz import drawn_lines
from tests.support import builders as b
from tests.support.demo import demo, demo_app  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def hosts(backend: modes.Backend) -> tuple[str, str]:
    """(a node with OSDs, a node without) in the demo's Ceph."""
    with_osds = sorted({o.host for o in ceph_now(backend).osds if o.host})
    nodes = {nv.host for nv in Reader(backend.client_factory()).read().nodes}
    return with_osds[0], sorted(nodes - set(with_osds))[0]


async def open_node(pilot: Any, app: Any, host: str) -> NodeScreen:
    app.open_node(host)
    await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen) and app.screen.host == host, host)
    return app.screen  # type: ignore[no-any-return]


def footer(app: Any) -> str:
    return drawn_lines(app)[-1]


@pytest.mark.parametrize("size", [(80, 24), (120, 30), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_o_in_the_footer_on_a_node_with_osds(demo: modes.Backend, size: tuple[int, int]) -> None:  # noqa: F811
    osd_host, plain_host = hosts(demo)
    app = demo_app(demo)
    async with app.run_test(size=size) as pilot:
        await b.wait_reads(pilot)
        await open_node(pilot, app, osd_host)
        await b.wait_until(pilot, lambda: "o Ceph" in footer(app), "o Ceph in the footer", tries=1500)
        line = footer(app)
        for key in ("esc Back", "k Terminate", "K Kill", "o Ceph", "1234567 screens", "? Help", "q Quit", "palette"):
            assert key in line, (key, line)
        assert line.index("K Kill") < line.index("o Ceph") < line.index("? Help")
        # A node Ceph places no OSD on: not in the footer, but the key still opens the flags.
        await pilot.press("escape")
        screen = await open_node(pilot, app, plain_host)
        await b.wait_until(pilot, lambda: screen._sig != (), "the node drawn", tries=1500)
        await pilot.pause()
        line = footer(app)
        assert "o Ceph" not in line and "k Terminate" in line and "q Quit" in line, line
        await pilot.press("o")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the flags picker", tries=1500)
        assert "Ceph places no OSD here; the cluster flags" in str(app.screen.query_one("#title").render())


async def test_read_only_shows_neither_ceph_binding(demo: modes.Backend) -> None:  # noqa: F811
    osd_host, _plain = hosts(demo)
    settings = Settings(refresh_s=0.5, source_label=demo.label, known=demo.known, read_only=True,
                        demo_control=demo.demo_control, operator_key=demo.operator_key)
    app = make_app(settings, demo.client_factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await b.wait_reads(pilot)
        screen = await open_node(pilot, app, osd_host)
        await b.wait_until(pilot, lambda: screen._has_osds, "the OSD section drawn", tries=1500)
        assert screen.check_action("ceph_maint", ()) is False
        assert screen.check_action("ceph_maint_offscreen", ()) is False
        await pilot.pause()
        line = footer(app)
        assert "o Ceph" not in line and "k Terminate" not in line and "q Quit" in line, line
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)  # refused: no dialog
