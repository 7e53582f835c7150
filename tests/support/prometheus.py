"""A real Prometheus (the Debian package, 2.42) on a loopback port, scraping given targets every second.

How to run it was paid for in ../shared/recipes/prometheus: new static targets are picked up on a 5 s
tick, so the first sample lands ~5.5 s after start whatever the scrape interval; the API is polled for
what a test waits for, never slept on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import free_port


class Prometheus:
    def __init__(self, targets: dict[str, str], interval_s: float = 1.0) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            raise RuntimeError("prometheus not installed: run the README's test command (tests/run installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="ct-prom-"))
        self.port = free_port()
        jobs = "\n".join(f"  - job_name: {job}\n    static_configs: [{{targets: ['{addr}']}}]"
                         for job, addr in targets.items())
        (self.dir / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {interval_s:g}s, evaluation_interval: {interval_s:g}s}}\n"
            f"scrape_configs:\n{jobs}\n")
        self.log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self.wait_for(lambda: self._ready(), "Prometheus ready", 30)
        except Exception:
            self.stop()
            raise

    def _ready(self) -> bool:
        return ready(self.proc, self.url, "prometheus", self.logs)

    def logs(self) -> str:
        self.log.flush()
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series of the result vector."""
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            doc = json.load(r)
        if doc.get("status") != "success":
            raise AssertionError(f"{promql}: {doc}")
        data = doc["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def value(self, promql: str) -> float | None:
        """The one value of an instant query (None: empty result; more than one: an error)."""
        res = self.query(promql)
        if len(res) > 1:
            raise AssertionError(f"{promql}: {len(res)} series")
        return res[0][1] if res else None

    @staticmethod
    def wait_for(cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        """Poll ``cond`` until it returns something true; the bound only turns a hang into a failure."""
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.1)

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


def ready(proc: subprocess.Popen[bytes], url: str, name: str, logs: Callable[[], str]) -> bool:
    """Whether a Prometheus-family server (Prometheus, Alertmanager) answers ``/-/ready`` with 200; raises with
    the end of its log if the process has exited (a bad flag or config), rather than waiting out a timeout."""
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited {proc.returncode}: {logs()[-2000:]}")
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
