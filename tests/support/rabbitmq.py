"""Provides a throwaway RabbitMQ (Debian's ``rabbitmq-server``) with the management plugin, for tests.

Everything is private to the instance: AMQP, management, Erlang distribution and epmd ports are free
loopback ports; the Mnesia database, logs, config, enabled-plugins file and Erlang cookie ($HOME) live
in a temporary directory; the node name is unique. The plugin is enabled by writing the
enabled-plugins file, which is what ``rabbitmq-plugins enable --offline`` does, without the CLI's
few seconds of Erlang start-up. ``stop()`` ends the server's process group and our epmd.

Install: ``apt-get install rabbitmq-server`` (Debian 12 ships 3.10.8). Starting takes ~8 s, so tests
share one instance per module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the real script; /usr/sbin's wrapper su's to rabbitmq
START_TIMEOUT_S = 60.0


def unavailable_reason() -> str | None:
    """Why a RabbitMQ cannot be started here, or None."""
    if not os.path.exists(SERVER):
        return "rabbitmq-server not installed (apt-get install rabbitmq-server)"
    if shutil.which("epmd") is None and not list(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")):
        return "Erlang's epmd not found"
    return None


def _epmd() -> str:
    found = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
    return str(found)


class RabbitMQ:
    """One rabbitmq-server on 127.0.0.1; ``amqp_url``, ``management_url`` (guest/guest)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ct-rabbit-"))
        self.port, self.mgmt_port, self.dist_port, self.epmd_port = (free_port() for _ in range(4))
        self.node = f"ct-{uuid.uuid4().hex[:8]}@localhost"
        (self.dir / "home").mkdir()
        (self.dir / "mnesia").mkdir()
        (self.dir / "log").mkdir()
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"management.tcp.port = {self.mgmt_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            # Rates are sampled every 5 s by default: 1 s makes publish rates appear within a test.
            "collect_statistics_interval = 1000\n"
        )
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        self.env = {
            **os.environ,
            "HOME": str(self.dir / "home"),  # the Erlang cookie goes here, not in the real $HOME
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),  # our own epmd, so stopping it touches nobody else's
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.management_url = f"http://127.0.0.1:{self.mgmt_port}"
        self.log = open(self.dir / "server.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([SERVER], env=self.env, cwd=self.dir, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    def _wait(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                r = httpx.get(f"{self.management_url}/api/overview", auth=("guest", "guest"), timeout=1)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"rabbitmq-server not up after {START_TIMEOUT_S:.0f} s: {self.output()[-2000:]}")

    def output(self) -> str:
        try:
            return (self.dir / "server.out").read_text(errors="replace")
        except OSError:
            return ""

    def api(self, path: str) -> object:
        import httpx

        r = httpx.get(f"{self.management_url}{path}", auth=("guest", "guest"), timeout=5)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # RabbitMQ shuts down cleanly on SIGTERM
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        # Processes the server left in its group (disk monitor shell, inet_gethost) go with it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # epmd daemonizes out of the group: ask ours (on its private port) to exit.
        subprocess.run([_epmd(), "-port", str(self.epmd_port), "-kill"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
