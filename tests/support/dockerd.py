"""A real Docker Engine for tests (../shared/recipes/containers/dockerd.sh, in Python).

Debian's docker.io (dockerd with its own managed containerd), private data-root, exec-root and socket
in a short temp dir (a unix socket path must stay under 108 bytes), no iptables, no bridge: containers
run with ``--network none``. The image is a busybox-static rootfs ``docker import``ed as
``localhost/test:1`` (0.2 s, 2 MB, no registry). Ready in ~0.2 s; ``stop()`` removes every container,
ends dockerd (and its containerd) and deletes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from typing import Any

IMAGE = "localhost/test:1"
APPLETS = ("sh", "sleep", "ls", "cat", "ps", "echo", "true", "env", "id")


def available() -> str | None:
    """Why a real engine can't run here, or None."""
    for tool in ("dockerd", "docker", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (tests/run installs docker.io and busybox-static)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


class Dockerd:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ct-dk-", dir="/tmp")
        self.sock = os.path.join(self.dir, "d.sock")
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.url}

    def start(self) -> Dockerd:
        log = open(os.path.join(self.dir, "dockerd.log"), "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=overlay2",
             "--data-root", os.path.join(self.dir, "data"), "--exec-root", os.path.join(self.dir, "exec"),
             "--pidfile", os.path.join(self.dir, "dockerd.pid"), "-H", self.url],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log()[-2000:]}")
            if subprocess.run(["docker", "version"], env=self.env(), capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"dockerd not ready in 30 s: {self.log()[-2000:]}")
        self._import_image()
        return self

    def _import_image(self) -> None:
        root = os.path.join(self.dir, "rootfs.tar")
        with tarfile.open(root, "w") as tar:
            for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            tar.add(shutil.which("busybox") or "/bin/busybox", "bin/busybox")
            for a in APPLETS:
                info = tarfile.TarInfo(f"bin/{a}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        with open(root, "rb") as f:
            subprocess.run(["docker", "import", "-", IMAGE], stdin=f, env=self.env(), check=True, capture_output=True)

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "dockerd.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def docker(self, *args: str, check: bool = True) -> str:
        """The docker CLI against this engine: the reference the collector is checked against."""
        r = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def run(self, name: str, *cmd: str, extra: tuple[str, ...] = ()) -> str:
        """``docker run -d --network none``; returns the full id."""
        return self.docker("run", "-d", "--name", name, "--network", "none", *extra, IMAGE, *cmd).strip()

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", ref))[0]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # dockerd leaves an empty /docker cgroup in each v1 hierarchy: harmless, removed when empty
        for base in ("/sys/fs/cgroup",):
            for sub in os.listdir(base) if os.path.isdir(base) else ():
                try:
                    os.rmdir(os.path.join(base, sub, "docker"))
                except OSError:
                    pass
        subprocess.run(["umount", "-R", os.path.join(self.dir, "data")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def dockerd_fixture() -> Any:
    """A module-scoped ``dockerd`` fixture (heavy: tests/conftest.py HEAVY_FIXTURES): import it into a test module."""
    import pytest

    @pytest.fixture(scope="module")
    def dockerd() -> Any:
        why = available()
        if why:
            pytest.skip(why)
        d = Dockerd().start()
        try:
            yield d
        finally:
            d.stop()

    return dockerd
