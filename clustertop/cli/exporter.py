"""`clustertop exporter [--listen ADDR:PORT] [--redis URL …] [--fresh-detail]`: the whole cluster as a Prometheus `/metrics` page.

One process for the cluster, next to Redis or Prometheus, instead of an exporter per node: it reads what
the agents already publish (clustertop/export/). The page is unauthenticated and read-only; it listens on
loopback unless told otherwise, since every node's figures and names are on it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from typing import Any

DEFAULT_LISTEN = "127.0.0.1:9877"


def add_parser(sub: Any, add_store: Any) -> None:
    e = sub.add_parser("exporter", help="serve the whole cluster as Prometheus metrics (/metrics)")
    add_store(e)
    e.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help=f"address to serve /metrics on (default {DEFAULT_LISTEN}: loopback only; "
                        "[::1]:PORT for IPv6, :PORT for every IPv4 address; port 0 picks a free one)")
    e.add_argument("--cache", type=float, default=None, metavar="SECONDS",
                   help="scrapes this close together share one read of Redis (default 1; 0: every scrape reads)")
    e.add_argument("--fresh-detail", action="store_true",
                   help="ask every node for its full snapshot every tick, so the detail series (GPU clocks, PCIe, "
                        "energy, per-process VRAM, containers) are current, not up to the agents' full_every "
                        "(15 s) old; costs about 2.3x the bytes per node into Redis (docs/exporter.md)")
    e.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` -> (host, port): ``[::1]:9877`` is IPv6, ``:9877`` every IPv4 address. Raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen {text!r}: expected ADDR:PORT, e.g. {DEFAULT_LISTEN}, [::1]:9877 or :9877")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError names the address
    elif ":" in host:
        raise ValueError(f"--listen {text!r}: write an IPv6 address in brackets, e.g. [::1]:9877")
    return host, int(port_text)


def run(args: argparse.Namespace) -> int:
    from clustertop.export.exporter import CACHE_S, Exporter, serve
    from clustertop.store import connect, redact

    if not args.redis:
        print("clustertop exporter: no store: give --redis URL (or set CLUSTERTOP_REDIS)", file=sys.stderr)
        return 2
    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        print(f"clustertop exporter: {e}", file=sys.stderr)
        return 2
    cache = CACHE_S if args.cache is None else args.cache
    if not 0 <= cache <= 60:
        print("clustertop exporter: --cache must be between 0 and 60 seconds", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="clustertop exporter: %(message)s")
    client = connect(args.redis, args.redis_password_file, args.redis_ca_file)
    exporter = Exporter(client, cache_s=cache, fresh_detail=args.fresh_detail)
    try:
        server, _ = serve(exporter, host, port)
    except OSError as e:
        print(f"clustertop exporter: cannot listen on {args.listen}: {e.strerror or e}", file=sys.stderr)
        return 1
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else (bound_host or "0.0.0.0")
    # The bound port on its own line: with port 0, this is how a script (or a test) learns it.
    print(f"clustertop exporter: serving http://{shown}:{bound_port}/metrics from {redact(args.redis)}",
          file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):  # a timeout, so Ctrl-C is seen at once
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    server.server_close()
    return 0
