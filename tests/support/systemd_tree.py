"""A real systemd (252, Debian bookworm) as PID 1 of its own namespaces, for the unit tests that run the
shipped units for real (tests/systemd/test_unit_real.py).

The recipe is ../shared/recipes/systemd/unshare_systemd.sh (unshare + chroot, systemd as PID 1): on this
hybrid-cgroup host the guest's systemd mounts the v1 controllers itself, so MemoryMax=/TasksMax= are
enforced (systemd-nspawn hands it read-only controllers: limits would not be). What differs here:

- The Debian tree is built once (debootstrap minbase + systemd, dbus, python3, python3-venv, procps; about
  70 s, 300 MB) and cached in ~/.cache/clustertop-systemd/tree. It gets the ``clustertop`` system user the
  README's install creates, a regular user ``alice`` (uid 1500) whose processes the agent signals, and a
  venv /opt/clustertop made by the TREE's python3 (3.11.2 here; the host's may differ) holding the
  dependencies of the agent and serve extras, installed from a wheelhouse pip downloads on the host (the
  guest has no package index). The venv is redone when constraints.txt or the wheel's requirements change.
- Each boot runs on an overlay over the cached tree (upper and work dirs in a private temp dir), so a test
  never changes the cache and leaves nothing behind; the wheel of this checkout is installed into the
  overlay (``--no-deps``) and /usr/local/bin/clustertop is a symlink to the venv's script, as the README says.
- The guest shares the host's network namespace (no ``--net``): the agent in it reaches the test's
  redis-server on 127.0.0.1, as an agent reaches a central Redis. Every other namespace is its own.

Talk to the guest with Guest.run (nsenter into all its namespaces). Needs root (unshare, mount, cgroups).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from tests.support.install import CONSTRAINTS

CACHE = Path(os.environ.get("CLUSTERTOP_SYSTEMD_CACHE") or Path.home() / ".cache" / "clustertop-systemd")
BASE = CACHE / "tree"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "procps")
VENV = "/opt/clustertop"
EXTRAS = "agent,serve"
#: A regular user of the guest (uid >= min_uid 1000): the owner of the processes a signed kill targets.
OTHER_USER, OTHER_UID = "alice", 1500
HOSTNAME = "ct-guest"


class TreeError(RuntimeError):
    """The tree could not be built or booted; the message says which step and shows its output."""


def _run(argv: list[str], what: str, timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
        raise TreeError(f"{what} failed ({r.returncode}): {' '.join(argv)[:300]}\n{tail}")
    return r


def _mirror() -> str:
    """The first deb URI the host's apt uses (the same mirror the recipe builds from)."""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in f.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def _in_chroot(root: Path, script: str, what: str, binds: dict[str, str] | None = None,
               timeout: float = 900) -> str:
    """``script`` (bash) chrooted into ``root`` in a private mount namespace with /proc and /dev; ``binds``
    maps host paths to paths inside. Mounts vanish with the namespace."""
    mounts = ["mount -t proc proc \"$R/proc\"", "mount --rbind /dev \"$R/dev\""]
    for host, inside in (binds or {}).items():
        mounts.append(f"mkdir -p \"$R{inside}\" && mount --bind {host} \"$R{inside}\"")
    outer = "set -e; R=" + str(root) + "; " + "; ".join(mounts) + "; exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot \"$R\" /bin/bash -c \"$0\""
    return _run(["unshare", "--mount", "--propagation", "private", "bash", "-c", outer, "set -e; " + script],
                what, timeout=timeout).stdout


def ensure_tree() -> Path:
    """The cached Debian tree with systemd, built the first time (~70 s). TreeError if that fails."""
    if (BASE / ".clustertop-tree").exists():
        return BASE
    for tool in ("debootstrap", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            raise TreeError(f"{tool} is not installed (tests/run installs debootstrap; unshare and nsenter are "
                            "util-linux)")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / "tree.tmp"
    if not (tmp / ".debootstrap-ok").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        suite = "bookworm"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(tmp), _mirror()],
             "debootstrap of the systemd tree", timeout=1800)
        (tmp / ".debootstrap-ok").write_text(suite + "\n")
    _in_chroot(tmp, f"""
        rm -f /var/cache/apt/archives/*.deb
        id clustertop >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin --user-group clustertop
        id {OTHER_USER} >/dev/null 2>&1 || useradd --uid {OTHER_UID} --create-home --shell /bin/bash {OTHER_USER}
        getent group video >/dev/null || groupadd --system video
        [ -x {VENV}/bin/python ] || python3 -m venv {VENV}
        echo {HOSTNAME} > /etc/hostname
        # no console logins in a test guest: nobody types there, and getty on the host's tty would only compete
        systemctl mask console-getty.service getty@tty1.service serial-getty@.service >/dev/null 2>&1 || true
    """, "preparing the systemd tree")
    (tmp / ".clustertop-tree").write_text("ok\n")
    os.replace(tmp, BASE)
    return BASE


def _requirements(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    return "\n".join(sorted(line for line in text.splitlines() if line.startswith("Requires-Dist:")))


def ensure_deps(wheel: Path) -> None:
    """The tree's venv holds the dependencies of ``wheel[agent,serve]`` at constraints.txt's versions."""
    stamp = hashlib.sha256((_requirements(wheel) + CONSTRAINTS.read_text()).encode()).hexdigest()
    mark = BASE / VENV.lstrip("/") / ".clustertop-deps"
    if mark.exists() and mark.read_text().strip() == stamp:
        return
    house = CACHE / "wheelhouse"
    house.mkdir(exist_ok=True)
    # The host's pip (its index configuration) fetches; the tree's pip installs with no index at all.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    want = [f"{wheel}[{EXTRAS}]"]
    shutil.copy(CONSTRAINTS, house / "constraints.txt")
    for _ in range(6):
        _run(["python3", "-m", "pip", "download", "-q", "-d", str(house), "-c", str(CONSTRAINTS), "--only-binary=:all:",
              *want], "pip download of the agent's dependencies", timeout=900, env=env)
        (house / wheel.name).unlink(missing_ok=True)
        try:
            _in_chroot(BASE, f"{VENV}/bin/pip install -q --disable-pip-version-check --no-index --find-links "
                             f"/mnt/wheels -c /mnt/wheels/constraints.txt '/mnt/whl/{wheel.name}[{EXTRAS}]' && "
                             f"{VENV}/bin/pip uninstall -q -y clustertop",
                       "installing the dependencies into the tree's venv",
                       binds={str(house): "/mnt/wheels", str(wheel.parent): "/mnt/whl"})
            break
        except TreeError as e:
            # A requirement whose marker holds for the tree's python only (redis wants async-timeout below
            # 3.11.3; the tree has 3.11.2, the host maybe not): fetch it by name, then try again.
            m = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+[^;\s]*)", str(e))
            if m is None:
                raise
            want = [m.group(1)]
    else:
        raise TreeError("the tree's venv could not be completed from the wheelhouse")
    mark.write_text(stamp + "\n")


def _cgroup_dirs(name: str) -> list[Path]:
    """One dedicated cgroup per hierarchy under ours (the recipe's cg_dirs): joined before
    ``unshare --cgroup``, so the guest's cgroup root is that subtree everywhere."""
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, ctl, path = line.split(":", 2)
        mount = {"": "unified", "name=systemd": "systemd"}.get(ctl, ctl)
        base = Path("/sys/fs/cgroup") / mount
        if base.is_dir():
            out.append(base / path.strip("/") / name)
    return out


class Guest:
    """One boot of the cached tree on a private overlay: install, boot, run commands, stop."""

    def __init__(self, wheel: Path) -> None:
        self.wheel = wheel
        self.dir = Path(tempfile.mkdtemp(prefix="ct-systemd-"))
        self.upper, self.work, self.root = (self.dir / n for n in ("upper", "work", "root"))
        for d in (self.upper, self.work, self.root):
            d.mkdir()
        self.cgroups = _cgroup_dirs(f"ct-systemd-{os.getpid()}-{self.dir.name}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.boot_s: float | None = None
        self._uids: dict[str, int] = {}

    # -- before boot ---------------------------------------------------------------------------

    def uid(self, user: str) -> int:
        if not self._uids:
            for line in (BASE / "etc" / "passwd").read_text().splitlines():
                f = line.split(":")
                self._uids[f[0]] = int(f[2])
        return self._uids[user]

    def gid(self, group: str) -> int:
        for line in (BASE / "etc" / "group").read_text().splitlines():
            f = line.split(":")
            if f[0] == group:
                return int(f[2])
        raise KeyError(group)

    def put(self, path: str, text: str, mode: int = 0o644, owner: str = "root", group: str | None = None) -> None:
        """A file in the guest (written into the overlay's upper dir before boot)."""
        target = self.upper / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        gid = self.gid(group or owner)
        os.chown(target, self.uid(owner), gid)
        target.chmod(mode)

    def _overlay(self) -> str:
        return f"mount -t overlay overlay -o lowerdir={BASE},upperdir={self.upper},workdir={self.work} {self.root}"

    def install(self) -> None:
        """This checkout's wheel into the tree's venv (on the overlay), /usr/local/bin/clustertop linked to it."""
        script = (f"set -e; {self._overlay()}; R={self.root}; mount -t proc proc $R/proc; mount --rbind /dev $R/dev; "
                  f"mkdir -p $R/mnt/whl; mount --bind {self.wheel.parent} $R/mnt/whl; "
                  f"chroot $R {VENV}/bin/pip install -q --disable-pip-version-check --no-index --no-deps "
                  f"/mnt/whl/{self.wheel.name}; "
                  f"chroot $R {VENV}/bin/pip check; "
                  f"ln -sf {VENV}/bin/clustertop $R/usr/local/bin/clustertop")
        _run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], "installing the wheel",
             timeout=300)

    # -- boot and stop -------------------------------------------------------------------------

    def boot(self, timeout: float = 60) -> float:
        """Boot; returns the seconds until ``systemctl is-system-running`` says running (or degraded)."""
        for c in self.cgroups:
            c.mkdir(parents=True, exist_ok=True)
            if (c / "cpuset.cpus").exists():
                (c / "cpuset.cpus").write_text((c.parent / "cpuset.cpus").read_text())
                (c / "cpuset.mems").write_text((c.parent / "cpuset.mems").read_text())
        inner = f"""set -e; {self._overlay()}; R={self.root}
            mount -t proc proc $R/proc
            mount -t sysfs -o ro sysfs $R/sys
            mount -t tmpfs -o mode=755 tmpfs $R/sys/fs/cgroup
            mkdir $R/sys/fs/cgroup/systemd
            mount -t cgroup -o none,name=systemd cgroup $R/sys/fs/cgroup/systemd
            mount -t tmpfs -o mode=755 tmpfs $R/dev
            for n in null zero full random urandom tty; do touch $R/dev/$n; mount --bind /dev/$n $R/dev/$n; done
            mkdir $R/dev/pts $R/dev/shm; mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
            ln -s pts/ptmx $R/dev/ptmx
            mount -t tmpfs tmpfs $R/dev/shm; mount -t tmpfs tmpfs $R/run; mount -t tmpfs tmpfs $R/tmp
            hostname {HOSTNAME}
            # pivot_root, not chroot: the kernel refuses new user namespaces to a chrooted process, and
            # PrivateUsers=yes (the wall unit) needs one ("Failed to set up user namespacing").
            mkdir -p $R/.oldroot; cd $R; pivot_root . .oldroot
            exec /bin/sh -c 'umount -l /.oldroot && rmdir /.oldroot && exec /lib/systemd/systemd --system'"""
        join = "; ".join(f"echo $$ > {c}/cgroup.procs" for c in self.cgroups)
        outer = (f"{join}; exec env -i container=unshare TERM=dumb unshare --pid --fork --mount --uts --ipc "
                 f"--cgroup --propagation private bash -c \"$0\"")
        t0 = time.monotonic()
        log = open(self.dir / "boot.log", "wb")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(["bash", "-c", outer, inner], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = t0 + timeout
        while self.leader is None:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            for pid in (kids.read_text().split() if kids.exists() else []):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    self.leader = int(pid)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise TreeError(f"systemd did not start: {(self.dir / 'boot.log').read_text()[-3000:]}")
            time.sleep(0.02)
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                self.boot_s = time.monotonic() - t0
                return self.boot_s
            time.sleep(0.05)
        raise TreeError(f"the guest did not finish booting ({state!r}): "
                        f"{self.run('systemctl', '--failed', '--no-pager').stdout}")

    def stop(self) -> None:
        """Power the guest off (SIGRTMIN+4 to its PID 1), then remove its cgroups and the overlay dirs."""
        if self.proc is not None and self.proc.poll() is None:
            if self.leader is not None:
                try:
                    os.kill(self.leader, __import__("signal").SIGRTMIN + 4)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                if self.leader is not None:
                    os.kill(self.leader, 9)  # PID 1 of its namespace: the whole guest goes with it
                self.proc.wait(10)
        left = []
        for c in self.cgroups:
            if c.is_dir():
                for d in [*sorted((p for p in c.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), c]:
                    try:
                        d.rmdir()
                    except OSError as e:  # still busy: say so, the test's own verdict stands
                        left.append(f"{d}: {e}")
        shutil.rmtree(self.dir, ignore_errors=True)
        if left:
            print("systemd guest: cgroups left behind:", *left, sep="\n  ")

    # -- inside --------------------------------------------------------------------------------

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` as root in every namespace of the guest (its root directory and working directory too)."""
        assert self.leader is not None, "not booted"
        cmd = ["nsenter", "-t", str(self.leader), "-a", "-r", "-w"]
        return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=timeout, check=False,
                              env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def file(self, path: str) -> str:
        return self.run("cat", path).stdout
