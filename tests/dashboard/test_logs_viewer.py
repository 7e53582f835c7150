"""The pod-log viewer: a pod's output is anyone's bytes, shown escaped and cut, never sent raw."""

from __future__ import annotations

import pytest
from textual.app import App
from textual.widgets import Log

from clustertop.dashboard.dialogs.logs import LINE_MAX, LogsViewer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


async def test_escape_sequences_bidi_and_huge_lines_are_inert() -> None:
    app: App[None] = App()
    async with app.run_test(size=(100, 30)) as pilot:
        viewer = LogsViewer("pod ml/train-0")
        await app.push_screen(viewer)
        await pilot.pause()
        viewer.show_text("ok line\n\x1b[2J\x1b]0;owned\x07evil\u202eabc\n" + "x" * (LINE_MAX * 3))
        await pilot.pause()
        lines = viewer.query_one(Log).lines
        assert lines[0] == "ok line"
        assert "\x1b" not in lines[1] and "\x07" not in lines[1] and "\u202e" not in lines[1]
        assert "evil" in lines[1] and "[2J" in lines[1]  # shown, escaped: nothing lost, nothing obeyed
        assert len(lines[2]) == LINE_MAX and lines[2].endswith("…")


async def test_following_viewer_says_what_was_dropped_and_pauses() -> None:
    """The viewer fed by a real (not started: no cluster here) LogFollower whose ring overflowed."""
    from clustertop.control.k8s_logs import LogFollower

    app: App[None] = App()
    async with app.run_test(size=(100, 30)) as pilot:
        viewer = LogsViewer("pod ml/train-0")
        await app.push_screen(viewer)
        f = LogFollower(None, "ml", "train-0", ring=10)  # type: ignore[arg-type]
        viewer.follow(f)
        f._add([f"line {i} \x1b[31m" for i in range(25)])
        viewer.poll()
        await pilot.pause()
        log = viewer.query_one(Log)
        assert len(log.lines) == 10 and log.lines[0] == "line 15 \\x1b[31m"
        status = str(viewer.query_one("#status").render())
        assert "10 line(s)" in status and "15 older dropped" in status, status
        viewer.set_following(False)
        f._add(["more"])
        viewer.poll()
        assert "PAUSED, 1 new below" in str(viewer.query_one("#status").render())
        viewer.action_close()
        await pilot.pause()
        assert f.closed  # the viewer closed its follower
