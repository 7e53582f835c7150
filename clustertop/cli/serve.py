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


def make_server(command: str, host: str, port: int, url: str, font_size: int, title: str) -> Any:
    from aiohttp import web
    from textual_serve.server import Server

    class ClustertopServer(Server):  # type: ignore[misc]
        async def handle_index(self, request: web.Request) -> Any:
            # textual-serve reads the font size from ?fontsize= (default 16): a kiosk URL without it
            # gets ours, by redirect, so the page and a bookmarked URL agree.
            if "fontsize" not in request.query:
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
    if not 6 <= args.font_size <= 96:
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
    print(f"clustertop serve: {url}/?fontsize={args.font_size}", file=sys.stderr, flush=True)
    try:
        server.serve()
    finally:
        stop_children()
    return 0
