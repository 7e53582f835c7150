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
