"""`clustertop exporter` as a real process over HTTP, against a real redis-server."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from clustertop.cli.exporter import parse_listen
from clustertop.export.exporter import accepts_gzip
from tests.conftest import ROOT, RedisServer
from tests.support import builders as b
from tests.support import promtext
from tests.support.exporter_process import ExporterProcess


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def clustertop(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    return subprocess.run([sys.executable, "-m", "clustertop", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


def test_serves_metrics_plain_and_gzip_and_stops_on_sigterm(redis_server: RedisServer,
                                                            start_exporter: Callable[..., ExporterProcess]) -> None:
    b.publish(redis_server.client(), b.demo_cluster(ts=time.time()))
    exp = start_exporter("--redis", redis_server.url)
    assert exp.address.startswith("127.0.0.1:")
    code, headers, body = get(exp.url)
    assert code == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in headers
    fams = promtext.parse(body)
    assert fams["clustertop_cluster_gpus"].get() == 10 and fams["clustertop_store_up"].get() == 1
    # What Prometheus sends: gzip, answered gzip (the data and the exporter's own tail as two members).
    code, headers, zipped = get(exp.url, {"Accept-Encoding": "gzip"})
    assert code == 200 and headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(zipped)
    again = promtext.parse(gzip.decompress(zipped))
    assert again["DCGM_FI_DEV_GPU_UTIL"].samples == fams["DCGM_FI_DEV_GPU_UTIL"].samples
    assert again["clustertop_exporter_scrapes_total"].get() == 2
    code, headers, empty = get(exp.url, method="HEAD")
    assert code == 200 and empty == b""
    code, _, page = get(f"http://{exp.address}/")
    assert code == 200 and b'href="/metrics"' in page
    code, _, _ = get(f"http://{exp.address}/secrets")
    assert code == 404
    assert exp.stop() == 0
    assert "Traceback" not in "".join(exp.stderr)


def test_wants_full_snapshots_only_with_fresh_detail(redis_server: RedisServer,
                                                    start_exporter: Callable[..., ExporterProcess]) -> None:
    """By default a scrape writes no want key (agents keep their full-snapshot cadence: the byte budget);
    ``--fresh-detail`` asks every node for its full snapshot every tick."""
    from clustertop import wire

    client = redis_server.client()
    b.publish(client, b.demo_cluster(ts=time.time()))
    hosts = [h.decode() for h in client.zrange(wire.NODES_KEY, 0, -1)]
    assert hosts
    for args, wanted in (((), False), (("--fresh-detail",), True)):
        exp = start_exporter("--redis", redis_server.url, *args)
        code, _, body = get(exp.url)
        assert code == 200 and promtext.parse(body)["clustertop_node_up"].get(node=hosts[0]) == 1
        assert [bool(client.exists(wire.want_key(h))) for h in hosts] == [wanted] * len(hosts), args
        assert exp.stop() == 0


def test_a_store_that_is_down_at_start_is_reported_not_fatal(start_exporter: Callable[..., ExporterProcess]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exp = start_exporter("--redis", f"redis://127.0.0.1:{port}/0")
    code, _, body = get(exp.url)
    assert code == 200
    fams = promtext.parse(body)
    assert fams["clustertop_store_up"].get() == 0 and "clustertop_node_up" not in fams
    get(exp.url)
    assert exp.stop() == 0
    said = "".join(exp.stderr)
    assert said.count("store unreachable") == 1 and "Traceback" not in said  # once per outage


def test_refuses_what_it_cannot_do() -> None:
    out = clustertop("exporter")
    assert out.returncode == 2 and "--redis" in out.stderr
    out = clustertop("exporter", "--redis", "redis://127.0.0.1:1/0", "--listen", "nonsense")
    assert out.returncode == 2 and "ADDR:PORT" in out.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        out = clustertop("exporter", "--redis", "redis://127.0.0.1:1/0", "--listen", f"127.0.0.1:{taken}")
    assert out.returncode == 1 and "cannot listen" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("text, parsed", [
    ("127.0.0.1:9877", ("127.0.0.1", 9877)), (":9877", ("", 9877)), ("[::1]:9877", ("::1", 9877)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
])
def test_listen_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["9877", "host", "::1:9877", "[::1]", "1.2.3.4:70000", "[nope]:1", "a:b"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


@pytest.mark.parametrize("header, ok", [
    ("gzip", True), ("deflate, gzip;q=0.5", True), ("GZIP", True), ("gzip;q=0", False), ("identity", False),
    ("", False), (None, False), ("gzip;q=0.0", False), ("x-gzip", True),
])
def test_accept_encoding(header: str | None, ok: bool) -> None:
    assert accepts_gzip(header) is ok
