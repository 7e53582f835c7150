"""The real `clustertop demo` in a real terminal (tmux), read back with capture-pane, keys pressed.

What a person at 80x24 over ssh, or at 200x60, would see: the header, each screen after 2 and 3,
key hints in the footer, nothing past the right edge, a clean exit on q. Also the wall in a
terminal, 16 colours (TEXTUAL_COLOR_SYSTEM=standard: no 256-colour or RGB escapes reach the
terminal) and --ascii (bars without block characters). A private tmux server (-L) per test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (tests/run installs it)")

BLOCKS = set("█▉▊▋▌▍▎▏▁▂▃▄▅▆▇")
EXITED = re.compile(r"clustertop exited with (\d+)")


class Tmux:
    def __init__(self, width: int, height: int, args: list[str], env: dict[str, str] | None = None) -> None:
        self.sock = f"ct-test-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height
        extra = {"TERM": "xterm-256color", "COLORTERM": "truecolor", **(env or {})}
        cmd = " ".join([sys.executable, "-m", "clustertop", *args])
        # The shell says how clustertop ended: tmux 3.3 does not always keep a dead pane's status.
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                   *[a for k, v in extra.items() for a in ("-e", f"{k}={v}")],
                   f"cd {ROOT} && {cmd}; echo clustertop exited with $?; sleep 60", env={**os.environ, **extra})

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, env=env, timeout=30)
        if out.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {out.stderr}")
        return out.stdout

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "t")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, cond: Callable[[str], bool], what: str, tries: int = 300) -> str:
        """Poll the screen until ``cond`` holds on a settled frame. The bound turns a hang into a
        readable failure.

        Settled: the same text in two captures 50 ms apart. tmux applies what the app writes as it
        arrives, so on a loaded machine a capture can land mid-frame: the new screen's header over
        the old screen's body (CI once saw "clustertop nodes" above the overview's alert strip).
        """
        text = ""
        for _ in range(tries):
            text = self.screen()
            if cond(text):
                time.sleep(0.05)
                again = self.screen()
                if again == text:
                    return text
                continue
            time.sleep(0.1)
        raise AssertionError(f"waiting for {what}; the screen was:\n{text}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def term() -> Iterator[Callable[..., Tmux]]:
    made: list[Tmux] = []

    def make(width: int, height: int, *args: str, env: dict[str, str] | None = None) -> Tmux:
        t = Tmux(width, height, list(args), env)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def fits(screen: str, width: int) -> None:
    for line in screen.splitlines():
        assert len(line) <= width, f"line wider than {width}: {line!r}"


def quit_cleanly(t: Tmux) -> None:
    t.keys("q")
    s = t.wait_for(lambda s: EXITED.search(s) is not None, "clustertop to exit on q")
    m = EXITED.search(s)
    assert m is not None and m.group(1) == "0"
    assert "Traceback" not in s


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_demo_in_a_real_terminal(term: Callable[..., Tmux], size: tuple[int, int]) -> None:
    w, h = size
    t = term(w, h, "demo")
    # The demo opens at once and its simulator fills in behind it: wait for the cluster, not the first frame.
    s = t.wait_for(lambda s: re.search(r"[1-9]\d*/\d+ (nodes )?up", s) and "clustertop overview" in s
                   and "arm01" in s and "simulating" not in s, "the overview")
    fits(s, w)
    lines = s.splitlines()
    # The one-machine totals on the first line; at 80 columns in short words, in two rows at most.
    assert re.search(r"\d+/\d+ nodes up" if w >= 120 else r"\d+/\d+ up · ", lines[0])
    assert any("clustertop overview" in line for line in lines[1:3])
    assert "arm01" in s and "up" in s  # node tiles
    footer = lines[-1]
    assert "1234567 screens" in footer and "? Help" in footer and "q Quit" in footer  # key hints, even at 80 columns
    t.keys("2")
    s = t.wait_for(lambda s: "clustertop nodes" in s and "Filter" in s.splitlines()[-1], "the nodes screen")
    fits(s, w)
    assert "host" in s and "gpu05" in s and "state" in s
    t.keys("3")
    s = t.wait_for(lambda s: "clustertop gpus" in s and "gpu01" in s and "processes on" in s, "the GPU screen")
    fits(s, w)
    assert "gpu01" in s and "processes on" in s and "power/limit" in s
    # The screen with the most keys still shows help and quit. The footer takes the screen's own keys
    # a frame after the screen is drawn, so wait for them rather than read the first frame.
    s = t.wait_for(lambda s: "k Terminate" in s.splitlines()[-1], "the GPU screen's keys in the footer")
    footer = s.splitlines()[-1]
    assert "k Terminate" in footer and "? Help" in footer and "q Quit" in footer
    if w >= 120:
        assert "GeForce" in s and "throttle" in s
    else:  # the card's name and the rarer columns fold away at 80 columns; the header says so
        assert "GeForce" not in s and "+5 more" in s
    t.keys("6")
    s = t.wait_for(lambda s: "clustertop work" in s and "tasks" in s, "the work screen")
    fits(s, w)
    # The work summary keeps each figure with its label: at 80 columns it takes a second line
    # rather than end one with "GPUs capacity" and no number.
    assert re.search(r"GPUs capacity \d+ allocated \d+ busy \d+", s)
    assert re.search(r"tasks \d+ running", s) and re.search(r"pods \d+", s)
    quit_cleanly(t)


def test_wall_in_a_real_terminal_takes_only_quit(term: Callable[..., Tmux]) -> None:
    t = term(200, 60, "demo", "--wall", "--page-seconds", "0")
    # The demo opens at once and fills in behind it: wait for the cluster's data, not the first frame.
    s = t.wait_for(lambda s: "clustertop wall" in s and "nodes up / total" in s and "s old" in s
                   and ("BUSY" in s or "FULL" in s or "IDLE" in s), "the wall")
    fits(s, 200)
    assert "data" in s and "s old" in s and "GPUs busy / total" in s
    assert any(ch in s for ch in "█▀▄")  # the totals in the block font
    assert "BUSY" in s or "FULL" in s or "IDLE" in s  # heat tiles say their state in words
    t.keys("2")
    t.keys("3")
    time.sleep(0.5)  # give a wrong key the chance to switch screens, then look
    s = t.screen()
    assert "clustertop wall" in s and "clustertop nodes" not in s
    quit_cleanly(t)


def test_sixteen_colours_only_emit_sixteen_colour_escapes(term: Callable[..., Tmux]) -> None:
    t = term(120, 40, "demo", env={"TEXTUAL_COLOR_SYSTEM": "standard", "COLORTERM": ""})
    t.wait_for(lambda s: "nodes up" in s and "arm01" in s, "the overview")
    raw = t.screen(escapes=True)
    assert "\x1b[" in raw  # there is colour at all
    assert not re.search(r"\x1b\[[0-9;]*[34]8;[25];", raw), "256-colour or RGB escape in 16-colour mode"
    assert re.search(r"\x1b\[[0-9;]*(3[0-7]|9[0-7])m", raw)  # the 16 ANSI foreground colours
    quit_cleanly(t)


def test_ascii_bars(term: Callable[..., Tmux]) -> None:
    t = term(120, 40, "demo", "--ascii")
    s = t.wait_for(lambda s: "arm01" in s and "CPU" in s, "the overview")
    bar_lines = [ln for ln in s.splitlines() if re.search(r"\b(CPU|MEM)\b", ln)]
    assert bar_lines
    for ln in bar_lines:
        assert not (set(ln) & BLOCKS), f"block characters with --ascii: {ln!r}"
    assert any("#" in ln for ln in bar_lines)
    quit_cleanly(t)
