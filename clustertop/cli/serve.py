"""Provides `clustertop serve`: the dashboard in a browser, through textual-serve.

textual-serve runs one dashboard process per browser tab (the command built here) and relays its
screen over a websocket. The store settings travel in the environment (``CLUSTERTOP_REDIS`` ...),
not on the command line, so a password in a URL does not show in ``ps``.

There is no authentication in textual-serve: the default address is loopback, any other address
prints a warning and forces read-only, and a proxy with authentication belongs in front of it.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import sys
from typing import Any

from clustertop.config import ConfigError

DEFAULT_FONT_SIZE = 16
#: Without --font-size the page picks its font size from the viewport (``AUTO_PAGE``): about this many
#: columns and rows, never below DEFAULT_FONT_SIZE (a laptop keeps 16 px) nor above AUTO_MAX_PX. At 16 px
#: a 4K screen got 384 columns, a 15-node overview in its top eighth, unreadable across a room.
AUTO_COLUMNS = 180
AUTO_ROWS = 50
AUTO_MAX_PX = 64
#: The cell's width and height per pixel of font size in the page's terminal font (measured in Chromium:
#: 3840 px at 32 px gave 202 columns, 2160 px gave 58 rows).
CELL_W_PER_PX = 3840 / 202 / 32
CELL_H_PER_PX = 2160 / 58 / 32
AUTO_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>__TITLE__</title></head>
<body style="background:#10141a;color:#ccc;font-family:monospace">
<noscript>JavaScript is off: open <a href="?fontsize=__DEFAULT__">this page at __DEFAULT__ px</a>.</noscript>
<script>
(function () {
  // The font size that gives about __COLS__ columns and __ROWS__ rows in this window (the terminal grid
  // follows the font), then the page itself at that size: a 4K wall gets big text, a laptop 16 px.
  var w = window.innerWidth || screen.width, h = window.innerHeight || screen.height;
  var px = Math.floor(Math.min(w / (__COLS__ * __CW__), h / (__ROWS__ * __CH__)));
  px = Math.max(__DEFAULT__, Math.min(__MAX__, px || __DEFAULT__));
  var u = new URL(location.href);
  u.searchParams.set("fontsize", String(px));
  location.replace(u.toString());
})();
</script></body></html>
"""


def auto_page(title: str) -> str:
    """The page that picks the font size from the browser's viewport and reloads itself with it."""
    import html

    subs = {"__TITLE__": html.escape(title), "__COLS__": str(AUTO_COLUMNS), "__ROWS__": str(AUTO_ROWS),
            "__CW__": f"{CELL_W_PER_PX:.4f}", "__CH__": f"{CELL_H_PER_PX:.4f}",
            "__DEFAULT__": str(DEFAULT_FONT_SIZE), "__MAX__": str(AUTO_MAX_PX)}
    page = AUTO_PAGE
    for k, v in subs.items():
        page = page.replace(k, v)
    return page
#: How long the dashboard processes get to exit on SIGTERM before SIGKILL, at shutdown.
CHILD_GRACE_S = 3.0


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard_command(args: Any, read_only: bool) -> list[str]:
    """The argv textual-serve runs for each browser tab."""
    argv = [sys.executable, "-m", "clustertop", "demo" if args.demo else "dashboard"]
    if args.wall:
        argv.append("--wall")
    elif read_only:
        argv.append("--read-only")
    if args.theme:
        argv += ["--theme", args.theme]
    argv += ["--page-seconds", f"{args.page_seconds:g}"]
    return argv


def store_environment(args: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    if not args.demo:
        for name, value in (("CLUSTERTOP_REDIS", args.redis),
                            ("CLUSTERTOP_REDIS_PASSWORD_FILE", args.redis_password_file),
                            ("CLUSTERTOP_REDIS_CA_FILE", args.redis_ca_file)):
            if value:
                env[name] = value
    return env


def public_url(host: str, port: int, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    # The page tells the browser where the websocket is: a wildcard address is no place to go.
    shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def make_server(command: str, host: str, port: int, url: str, font_size: int | None, title: str) -> Any:
    from aiohttp import web
    from textual_serve.server import Server

    class ClustertopServer(Server):  # type: ignore[misc]
        async def handle_index(self, request: web.Request) -> Any:
            # textual-serve reads the font size from ?fontsize= (default 16): a kiosk URL without it
            # gets ours, by redirect, so the page and a bookmarked URL agree. No --font-size: a page
            # that measures the browser's viewport picks it (AUTO_PAGE), then comes back with it.
            if "fontsize" not in request.query:
                if font_size is None:
                    return web.Response(text=auto_page(title), content_type="text/html",
                                        headers={"Cache-Control": "no-store"})
                raise web.HTTPFound(str(request.rel_url.update_query(fontsize=str(font_size))))
            return await super().handle_index(request)

    return ClustertopServer(command, host=host, port=port, title=title, public_url=url)


def stop_children() -> None:
    """End the dashboard processes textual-serve started: stopping the server alone once left one
    spinning at 90 % CPU."""
    import psutil  # type: ignore[import-untyped]

    children = psutil.Process().children(recursive=True)
    for c in children:
        try:
            c.terminate()
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(children, timeout=CHILD_GRACE_S)
    for c in alive:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass


def run(args: Any) -> int:
    if not args.demo and not args.redis:
        raise ConfigError("clustertop serve", "--redis", "no store: give --redis URL (or CLUSTERTOP_REDIS), "
                          "or --demo for the simulated cluster")
    if not 1 <= args.port <= 65535:
        raise ConfigError("clustertop serve", "--port", f"{args.port} is not a TCP port")
    if args.font_size is not None and not 6 <= args.font_size <= 96:
        raise ConfigError("clustertop serve", "--font-size", f"{args.font_size} px is outside 6..96")
    public = not is_loopback(args.host)
    read_only = public or bool(getattr(args, "read_only", False))
    if public:
        print(f"clustertop serve: WARNING: listening on {args.host}:{args.port}, not on loopback. Anyone who can "
              "reach this address sees the whole cluster: textual-serve has no authentication. The dashboard "
              "is read-only; put an authenticating proxy in front, or use --host 127.0.0.1.", file=sys.stderr)
    os.environ.update(store_environment(args))
    command = shlex.join(dashboard_command(args, read_only))
    url = public_url(args.host, args.port, args.public_url)
    title = "clustertop wall" if args.wall else "clustertop"
    server = make_server(command, args.host, args.port, url, args.font_size, title)
    shown = f"{url}/?fontsize={args.font_size}" if args.font_size is not None else f"{url}/ (font size from the viewport)"
    print(f"clustertop serve: {shown}", file=sys.stderr, flush=True)
    try:
        server.serve()
    finally:
        stop_children()
    return 0
