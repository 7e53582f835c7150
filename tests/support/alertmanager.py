"""A real Alertmanager (Debian ``prometheus-alertmanager`` 0.25) on a loopback port, routing every alert
to a webhook receiver run in the test process (``Webhook``), which records each notification with the
time it arrived.

From ../shared/recipes/prometheus: ``--cluster.listen-address=`` (empty) or its gossip binds 0.0.0.0:9094;
ready in ~0.1-0.5 s; a POSTed alert reaches the webhook ``group_wait`` later.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import free_port

EXE = "prometheus-alertmanager"


class Webhook:
    """Alertmanager's webhook receiver: every POST body kept as (arrival time, JSON)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook.received.append((time.time(), json.loads(body or b"null")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def notifications(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.received)

    def alerts(self, status: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        """Every alert of every notification (arrival time, alert), optionally only those ``status``."""
        return [(t, a) for t, n in self.notifications() for a in n.get("alerts", [])
                if status is None or a.get("status") == status]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    def __init__(self, webhook_url: str, group_wait: str = "1s", group_interval: str = "1s",
                 group_by: tuple[str, ...] = ("alertname", "node", "subject")) -> None:
        exe = shutil.which(EXE)
        if exe is None:
            raise RuntimeError(f"{EXE} not installed: run the README's test command (tests/run installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="ct-am-"))
        self.port = free_port()
        (self.dir / "alertmanager.yml").write_text(
            "route:\n  receiver: hook\n"
            f"  group_by: [{', '.join(group_by)}]\n  group_wait: {group_wait}\n"
            f"  group_interval: {group_interval}\n  repeat_interval: 1h\n"
            "receivers:\n  - name: hook\n"
            f"    webhook_configs: [{{url: '{webhook_url}', send_resolved: true}}]\n")
        self.log = open(self.dir / "am.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, f"--config.file={self.dir / 'alertmanager.yml'}", f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_for(self._ready, "Alertmanager ready", 30)
        except Exception:
            self.stop()
            raise

    def _ready(self) -> bool:
        from tests.support.prometheus import ready

        return ready(self.proc, self.url, "alertmanager", self.logs)

    def alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager holds now (GET /api/v2/alerts)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as r:
            return json.load(r)  # type: ignore[no-any-return]

    def logs(self) -> str:
        self.log.flush()
        return (self.dir / "am.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``cond`` until it returns something true; the bound only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
