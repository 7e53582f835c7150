"""Provides ``Exporter``: one read of the cluster shared by the scrapes of one cache period, and its HTTP server.

A scrape reads Redis with the dashboard's own ``Reader`` (one pipelined round trip, every node's full
snapshot, so the series a node has never depend on how big the cluster is) and renders it once; a
scrape that comes less than ``cache_s`` after that read gets the same bytes (two Prometheus servers, an
HA pair, scraping within the same second cost one read). The lock is held through the read, so a
scraper arriving mid-read waits for it instead of starting a second one.

What is cached is the data: the exporter's own figures (scrape count, this scrape's wait, the data's
age, process CPU and memory) are written per response, after it. With ``Accept-Encoding: gzip`` the
data is compressed once per read and the small tail on its own: two gzip members back to back, which
is one valid gzip stream (RFC 1952; Go's reader, which Prometheus uses, reads them as one body).

The server is the standard library's ``ThreadingHTTPServer`` on its own thread: ``/metrics``, and ``/``
with a link to it; nothing else, no writes.
"""

from __future__ import annotations

import gzip
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clustertop import wire
from clustertop.errors import describe
from clustertop.export import metrics
from clustertop.export.exposition import CONTENT_TYPE, Exposition
from clustertop.read.energy import Windows, decode_ledgers, windows
from clustertop.read.ledger import LedgerTracker, update_from_state
from clustertop.read.plan import ALL_FULL
from clustertop.read.reader import Reader
from clustertop.read.want import Wants

log = logging.getLogger("clustertop.exporter")

#: Two scrapes closer than this share one read (the agents publish once a second: a fresher read
#: would show the same data).
CACHE_S = 1.0
#: The energy ledgers are read this often at most (agents write them every 15 s).
ENERGY_EVERY_S = 15.0
#: gzip level for the data: level 1 is a few times faster than the default 6 for ~10 % more bytes,
#: and the exporter's CPU is what a scrape of a big cluster costs.
GZIP_LEVEL = 1


@dataclass
class Rendered:
    """One read, rendered: the bytes every scrape of the cache period gets."""

    text: bytes
    at: float  # monotonic time the read was made
    store_up: bool
    read_s: float
    render_s: float
    series: int
    duplicates: int
    gz: bytes | None = None

    def body(self, compress: bool) -> bytes:
        if not compress:
            return self.text
        if self.gz is None:
            self.gz = gzip.compress(self.text, GZIP_LEVEL)
        return self.gz


class Exporter:
    """``client``: a redis-py client (or anything the ``Reader`` reads with). ``clock``: wall time for the
    reader (node ages); ``monotonic``: the cache's clock."""

    def __init__(self, client: Any, cache_s: float = CACHE_S, clock: Any = time.time,
                 monotonic: Any = time.monotonic, fresh_detail: bool = False) -> None:
        # Every node in full, with its brief and digest in the same round trip: the reader draws each node's
        # brief over its full snapshot where that is from an earlier tick (wire.brief.fresh), so every figure
        # a brief carries is current and only the detail (clocks, PCIe, energy, per-process VRAM, containers)
        # may be up to the agents' full_every old, which clustertop_node_detail_age_seconds says. Asking
        # every node for its full snapshot every tick (``fresh_detail``, for as long as agents allow:
        # wire.WANT_MAX_MS, so scrapes 15-30 s apart keep it) makes that detail current too, at about
        # 2.3x the bytes per node into Redis ("Byte budget" in docs/architecture.md): off by default.
        self.reader = Reader(client, clock=clock, wants=Wants(px_ms=wire.WANT_MAX_MS) if fresh_detail else None)
        self.cache_s = cache_s
        self.monotonic = monotonic
        self.ledger = LedgerTracker()
        self.lock = threading.Lock()
        self.rendered: Rendered | None = None
        self.scrapes = 0
        self.reads = 0
        self.read_errors = 0
        self._store_down_since: float | None = None
        self._energy_at: float | None = None
        self._windows: Windows | None = None
        self._started = _process_start_time()

    def scrape(self, compress: bool = False) -> bytes:
        """The exposition for one scrape (gzip-compressed when ``compress``)."""
        t0 = time.perf_counter()
        with self.lock:
            self.scrapes += 1
            r = self.rendered
            now = self.monotonic()
            if r is None or not 0 <= now - r.at < self.cache_s:
                r = self.rendered = self._refresh()
            data = r.body(compress)
            tail = self._tail(r, time.perf_counter() - t0).encode()
        return data + (gzip.compress(tail, GZIP_LEVEL) if compress else tail)

    def _refresh(self) -> Rendered:
        at = self.monotonic()
        t0 = time.perf_counter()
        self.reads += 1
        try:
            state = self.reader.read(ALL_FULL)
        except Exception as e:  # noqa: BLE001 - a dead store (or a bug in a read) must not end the server
            self.read_errors += 1
            if self._store_down_since is None:  # once per outage, not once per scrape
                self._store_down_since = at
                log.warning("store unreachable: %s (serving clustertop_store_up 0 until it answers)", describe(e))
            read_s = time.perf_counter() - t0
            return Rendered(b"", at, False, read_s, 0.0, 0, 0)
        read_s = time.perf_counter() - t0
        if self._store_down_since is not None:
            log.warning("store reachable again after %.0f s", at - self._store_down_since)
            self._store_down_since = None
        t1 = time.perf_counter()
        ledger = None
        if "kubernetes" in metrics.fresh_sources(state):
            ledger = update_from_state(self.ledger, state)
        x = metrics.render(state, ledger, self._energy(state))
        text = x.text().encode("utf-8", "replace")
        return Rendered(text, at, True, read_s, time.perf_counter() - t1, x.count(), x.duplicates)

    def _energy(self, state: Any) -> Windows | None:
        """The agents' energy ledgers (``wire.energy_key``), read at most every ENERGY_EVERY_S: they change
        every 15 s and are ~10 KB a node. A failed read keeps the last windows; none read yet: no series."""
        at = self.monotonic()
        if self._energy_at is not None and 0 <= at - self._energy_at < ENERGY_EVERY_S:
            return self._windows
        self._energy_at = at
        hosts = [v.host for v in state.nodes if v.state == "up"]
        try:
            p = self.reader.client.pipeline(transaction=False)
            for h in hosts:
                p.get(wire.energy_key(h))  # one GET per host: each key has its host's hash tag
            raw = p.execute()
        except Exception as e:  # noqa: BLE001 - energy is extra: the page goes on without it
            log.warning("energy ledgers not read: %s", describe(e))
            return self._windows
        # One node's garbage (or a ledger naming another host): its series are absent, the others' stay.
        ledgers, _ = decode_ledgers(zip(hosts, raw, strict=True))
        self._windows = windows(ledgers, state.ts)
        return self._windows

    def _tail(self, r: Rendered, waited_s: float) -> str:
        x = Exposition(metrics.EXPORTER_FAMILIES)
        add = x.add
        add("clustertop_store_up", "", r.store_up)
        add("clustertop_exporter_read_seconds", "", r.read_s)
        if r.store_up:
            add("clustertop_exporter_render_seconds", "", r.render_s)
            add("clustertop_exporter_series", "", r.series)
            add("clustertop_exporter_duplicate_series", "", r.duplicates)
        add("clustertop_exporter_scrape_seconds", "", waited_s)
        add("clustertop_exporter_data_age_seconds", "", max(0.0, self.monotonic() - r.at))
        add("clustertop_exporter_scrapes_total", "", self.scrapes)
        add("clustertop_exporter_reads_total", "", self.reads)
        add("clustertop_exporter_read_errors_total", "", self.read_errors)
        t = os.times()
        add("process_cpu_seconds_total", "", t.user + t.system)
        add("process_resident_memory_bytes", "", _rss_bytes())
        add("process_start_time_seconds", "", self._started)
        return x.text()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None  # not Linux: unknown, not 0


def _process_start_time() -> float:
    """This process's start, as client_python reports it (/proc/self/stat field 22 and the boot time),
    or now where /proc is not there (the exporter is created at start-up)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

INDEX = (b"<html><head><title>clustertop exporter</title></head><body><h1>clustertop exporter</h1>"
         b'<p><a href="/metrics">/metrics</a>: the whole cluster, read from Redis.</p></body></html>\n')


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip (and does not refuse it with q=0)."""
    for part in (header or "").split(","):
        coding, *params = part.split(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    return float(v) > 0
                except ValueError:
                    return False
        return True
    return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "clustertop-exporter"
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection scrape after scrape

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            if head:  # no read for a HEAD
                self._send(200, CONTENT_TYPE, b"", head=True)
                return
            compress = accepts_gzip(self.headers.get("Accept-Encoding"))
            try:
                body = self.server.exporter.scrape(compress)
            except Exception:  # a bug: say so to the scraper and in the log, keep serving
                log.exception("scrape failed")
                self._send(500, "text/plain; charset=utf-8", b"clustertop exporter: scrape failed (see its log)\n")
                return
            self._send(200, CONTENT_TYPE, body, gzip_encoded=compress)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", INDEX, head=head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n", head=head)

    def _send(self, code: int, ctype: str, body: bytes, head: bool = False, gzip_encoded: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if gzip_encoded:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # One line per scrape (every few seconds, forever) is noise in the journal; failures are logged above.
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a scraper that hangs up mid-response never holds the exit
    request_queue_size = 64  # the listen backlog (socketserver's 5 is for one client at a time)
    exporter: Exporter


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve(exporter: Exporter, host: str, port: int) -> tuple[_Server, threading.Thread]:
    """Listen on ``host:port`` (``host`` "" for every address, an IPv6 literal without brackets for IPv6)
    and serve on a daemon thread; ``server.shutdown()`` stops it. Raises OSError when it cannot listen."""
    cls = _Server6 if ":" in host else _Server
    server = cls((host, port), _Handler)
    server.exporter = exporter
    th = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="clustertop-exporter",
                          daemon=True)
    th.start()
    return server, th
