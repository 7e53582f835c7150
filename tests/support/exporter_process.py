"""`clustertop exporter` as a real process: started on a free port it picks itself, stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from tests.conftest import ROOT

SERVING = re.compile(r"serving http://(\S+)/metrics")


class ExporterProcess:
    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "clustertop", "exporter", "--listen", "127.0.0.1:0",
                                      *args], stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.stderr: list[str] = []
        self.address = ""
        found = threading.Event()

        def drain() -> None:  # keep reading stderr for the whole run: a full pipe would stall the exporter
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                m = SERVING.search(line)
                if m and not found.is_set():
                    self.address = m.group(1)
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60) or not self.address:
            self.stop()
            raise RuntimeError("clustertop exporter did not start: " + "".join(self.stderr))
        self.url = f"http://{self.address}/metrics"
        self.port = int(self.address.rsplit(":", 1)[1])

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        time.sleep(0.05)  # let the stderr reader take the last lines
        return self.proc.returncode
