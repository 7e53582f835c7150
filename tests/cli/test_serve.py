"""`clustertop serve`: the real server process, real HTTP, and the page in headless Chromium.

Chromium is driven over the DevTools protocol (a plain ``--screenshot`` only catches the loading
splash): navigate at 3840x2160, let the page connect, capture the screen, and check in its pixels
that it is the wall in the dark theme (its background, the green of "nodes up", the amber of busy
GPU tiles) rather than the splash. The server is started in its own session and the whole
process group is killed afterwards: stopping the server alone once left the app spinning.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertop.cli import serve
from clustertop.cli.main import build_parser, main
from tests.conftest import ROOT, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# The dark theme (themes/dark.toml): background, ct-ok, ct-warn.
DARK_BG = (16, 20, 26)
OK_GREEN = (78, 191, 113)
WARN_AMBER = (232, 179, 57)


class Server:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="ct-serve-", suffix=".log")[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clustertop", "serve", "--port", str(self.port), *args],
            cwd=ROOT, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(300):  # the bound turns a server that never listens into a readable failure
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError(f"clustertop serve did not listen:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def group_members(self) -> list[int]:
        import psutil

        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == self.proc.pid:
                    out.append(p.pid)
            except (ProcessLookupError, PermissionError):
                continue
        return out

    def stop(self) -> None:
        """SIGTERM the server (it ends its dashboards), then kill whatever is left in its group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.log.unlink(missing_ok=True)


@pytest.fixture
def server_factory() -> Iterator[Any]:
    made: list[Server] = []

    def make(*args: str) -> Server:
        s = Server(*args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


# -- the command line and the HTTP side ---------------------------------------------------------


def test_loopback_detection() -> None:
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.168.1.5")


def test_the_served_command_carries_the_options_and_no_secrets() -> None:
    args = build_parser().parse_args(["serve", "--redis", "redis://:hunter2@db:6379/0", "--wall", "--theme",
                                      "high-contrast", "--page-seconds", "30"])
    argv = serve.dashboard_command(args, read_only=False)
    assert argv[1:] == ["-m", "clustertop", "dashboard", "--wall", "--theme", "high-contrast", "--page-seconds", "30"]
    assert "hunter2" not in " ".join(argv)  # the URL travels in the environment, not in `ps`
    assert serve.store_environment(args) == {"CLUSTERTOP_REDIS": "redis://:hunter2@db:6379/0"}
    demo = build_parser().parse_args(["serve", "--demo"])
    assert serve.dashboard_command(demo, read_only=True)[3:5] == ["demo", "--read-only"]
    assert serve.store_environment(demo) == {}


def test_serve_without_a_store_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CLUSTERTOP_REDIS", raising=False)
    assert main(["serve", "--port", "1"]) == 2
    assert "--redis" in capsys.readouterr().err


def test_index_redirects_to_the_font_size_and_serves_the_page(server_factory: Any) -> None:
    import http.client

    srv = server_factory("--demo", "--wall", "--font-size", "32")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/")
    r = conn.getresponse()
    r.read()
    assert r.status == 302 and r.getheader("Location", "").endswith("/?fontsize=32")
    conn.request("GET", "/?fontsize=32")
    r = conn.getresponse()
    page = r.read().decode()
    assert r.status == 200 and 'data-font-size="32"' in page
    assert f"ws://127.0.0.1:{srv.port}/ws" in page
    assert "clustertop wall" in page  # the page title
    out = srv.output()
    assert "-m clustertop demo --wall" in out and "WARNING" not in out


def test_binding_beyond_loopback_warns_and_forces_read_only(server_factory: Any) -> None:
    srv = server_factory("--demo", "--host", "0.0.0.0", "--public-url", "http://wall.example:1")
    out = srv.output()
    for _ in range(100):
        if "Serving" in out:
            break
        time.sleep(0.05)
        out = srv.output()
    assert "WARNING: listening on 0.0.0.0" in out and "no authentication" in out
    assert "--read-only" in out  # the served dashboard command


# -- the page in a real browser ------------------------------------------------------------------


async def _cdp_screenshot_stats(url: str, width: int, height: int, probe: Any = None,
                                tries: int = 40, ready: Any = None, page_js: str | None = None) -> dict[str, Any]:
    """Open ``url`` in headless Chromium; poll screenshots until the page is the wall (or ``ready(stats)``);
    pixel stats. ``probe()`` runs while the page is still open (its result in ``stats["probe"]``), and
    ``page_js`` is evaluated in the page then (its value in ``stats["page_js"]``)."""
    ready = ready or _looks_like_the_wall
    import aiohttp

    port = free_port()
    profile = tempfile.mkdtemp(prefix="ct-chromium-")
    assert CHROMIUM is not None
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
         f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        async with aiohttp.ClientSession() as http:
            targets: list[dict[str, Any]] = []
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                        targets = await r.json()
                    if any(t["type"] == "page" for t in targets):
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    mid = next(ids)
                    await ws.send_json({"id": mid, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == mid:
                            if "error" in msg:
                                raise AssertionError(f"{method}: {msg['error']}")
                            return dict(msg.get("result", {}))

                await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                           mobile=False)
                await call("Page.navigate", url=url)
                stats: dict[str, Any] = {}
                for _ in range(tries):  # the splash first, then the app once its websocket is up
                    await asyncio.sleep(0.5)
                    shot = await call("Page.captureScreenshot", format="png")
                    stats = await _pixel_stats(call, shot["data"])
                    if ready(stats):
                        break
                stats["png"] = base64.b64decode(shot["data"])
                href = await call("Runtime.evaluate", expression="location.href", returnByValue=True)
                stats["href"] = href["result"]["value"]
                stats["probe"] = probe() if probe is not None else None
                if page_js is not None:
                    r = await call("Runtime.evaluate", expression=page_js, returnByValue=True)
                    stats["page_js"] = r["result"].get("value")
                return stats
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


async def _pixel_stats(call: Any, png_b64: str) -> dict[str, Any]:
    """Decode the screenshot in the browser itself (no imaging library needed) and count colours."""
    js = """
    (async () => {
      const img = new Image();
      img.src = "data:image/png;base64,__PNG__";
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width; c.height = img.height;
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const want = __WANT__;
      const counts = {total: 0};
      for (const k in want) counts[k] = 0;
      for (let i = 0; i < d.length; i += 4 * 7) {
        counts.total++;
        for (const k in want) {
          const w = want[k];
          if (Math.abs(d[i] - w[0]) + Math.abs(d[i + 1] - w[1]) + Math.abs(d[i + 2] - w[2]) < 24) counts[k]++;
        }
      }
      counts.width = c.width; counts.height = c.height;
      return JSON.stringify(counts);
    })()
    """.replace("__PNG__", png_b64).replace("__WANT__", json.dumps({"bg": DARK_BG, "ok": OK_GREEN,
                                                                     "warn": WARN_AMBER}))
    r = await call("Runtime.evaluate", expression=js, awaitPromise=True, returnByValue=True)
    return dict(json.loads(r["result"]["value"]))


def _looks_like_the_wall(s: dict[str, Any]) -> bool:
    total = max(1, s.get("total", 0))
    return s.get("bg", 0) / total > 0.3 and s.get("ok", 0) / total > 0.002 and s.get("warn", 0) / total > 0.01


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (tests/run installs it)")
def test_the_wall_in_chromium_at_4k(server_factory: Any, tmp_path: Path) -> None:
    srv = server_factory("--demo", "--wall", "--font-size", "32", "--page-seconds", "0")
    stats = asyncio.run(_cdp_screenshot_stats(f"{srv.url}/", 3840, 2160, probe=srv.group_members))
    (tmp_path / "browser.png").write_bytes(stats.pop("png"))
    assert (stats["width"], stats["height"]) == (3840, 2160)
    assert _looks_like_the_wall(stats), f"the page is not the wall (splash or error?): {stats}"
    assert stats["href"].endswith("/?fontsize=32")  # our font size, by the redirect
    # The browser asked for the grid the terminal snapshots are taken at (202x58 at 32 px).
    sizes: list[tuple[str, str]] = []
    for _ in range(100):  # aiohttp logs the websocket request when it closes (the browser is gone now)
        sizes = re.findall(r"/ws\?width=(\d+)&height=(\d+)", re.sub(r"\s+", "", srv.output()))
        if sizes:
            break
        time.sleep(0.1)
    assert sizes, srv.output()
    w, h = map(int, sizes[-1])
    assert 190 <= w <= 215 and 50 <= h <= 62
    assert len(stats["probe"]) >= 2  # the server and the dashboard it ran for the tab
    srv.stop()
    assert srv.group_members() == []  # nothing left spinning


#: The terminal's drawn area and the window, measured in the page (xterm.js draws into .xterm-screen).
TERMINAL_RECT_JS = """JSON.stringify((() => {
  const el = document.querySelector(".xterm-screen") || document.querySelector("canvas");
  const r = el ? el.getBoundingClientRect() : {width: 0, height: 0};
  return {w: r.width, h: r.height, vw: window.innerWidth, vh: window.innerHeight};
})())"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (tests/run installs it)")
def test_the_overview_at_4k_picks_a_readable_font_and_fills_the_screen(server_factory: Any, tmp_path: Path) -> None:
    """No --font-size: the page measures the 3840x2160 viewport and asks for a font that gives about 180
    columns (16 px gave 384, a 15-node overview in the top eighth of a 50-inch screen)."""
    srv = server_factory("--demo")  # the overview, the default font size rule

    def overview_ready(s: dict[str, Any]) -> bool:  # the app, not the splash: its background and green bars
        total = max(1, s.get("total", 0))
        return s.get("bg", 0) / total > 0.3 and s.get("ok", 0) / total > 0.002

    stats = asyncio.run(_cdp_screenshot_stats(f"{srv.url}/", 3840, 2160, ready=overview_ready, tries=120,
                                              page_js=TERMINAL_RECT_JS))
    (tmp_path / "overview-4k.png").write_bytes(stats.pop("png"))
    assert overview_ready(stats), f"the page is not the dashboard (splash or error?): {stats}"
    m = re.search(r"[?&]fontsize=(\d+)", stats["href"])
    assert m is not None, stats["href"]
    px = int(m.group(1))
    assert 30 <= px <= 40, px  # from the viewport, not the 16 px default
    sizes: list[tuple[str, str]] = []
    for _ in range(100):
        sizes = re.findall(r"/ws\?width=(\d+)&height=(\d+)", re.sub(r"\s+", "", srv.output()))
        if sizes:
            break
        time.sleep(0.1)
    assert sizes, srv.output()
    cols, rows = map(int, sizes[-1])
    assert 160 <= cols <= 200 and 45 <= rows <= 62, (cols, rows)
    rect = json.loads(stats["page_js"])
    # The terminal fills the window: within a cell or two of its width and height.
    assert rect["vw"] == 3840 and rect["vh"] == 2160
    assert rect["w"] >= 3840 - 2 * 3840 / cols and rect["h"] >= 2160 - 2 * 2160 / rows, rect


def test_the_auto_font_page_measures_the_viewport() -> None:
    page = serve.auto_page("clustertop <wall>")
    assert "&lt;wall&gt;" in page and "<wall>" not in page  # the title escaped
    assert "innerWidth" in page and 'searchParams.set("fontsize"' in page
    # The rule as the page computes it, for a 4K and a laptop window.
    def px(w: int, h: int) -> int:
        v = int(min(w / (serve.AUTO_COLUMNS * serve.CELL_W_PER_PX), h / (serve.AUTO_ROWS * serve.CELL_H_PER_PX)))
        return max(serve.DEFAULT_FONT_SIZE, min(serve.AUTO_MAX_PX, v))
    assert px(3840, 2160) == 35 and px(1440, 900) == 16
