"""Process attribution from /proc/<pid>/cgroup and the command line (collectors/owner.py).

The cgroup lines below are in the formats the kernel, systemd, kubelet, Docker, containerd, CRI-O,
podman, LXC and Slurm write (ids made up, shapes real); the fixture files are real ones from the build VM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clustertop.collectors.base import Roots
from clustertop.collectors.owner import apply_cmdline, celery_worker, owner_of, parse_cgroup
from clustertop.wire.schema import Owner
from tests.conftest import FIXTURES

CID = "8e3f1c2a9b7d4e6f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef0"
CID2 = "4f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817065f4e"
UID = "0b2b2c4e-5d62-4a4b-9f36-2a3c7d9e1f10"
UID_ = UID.replace("-", "_")
BASIC = FIXTURES / "host" / "basic"


def v1(path: str) -> str:
    """A cgroup v1 file as a node with every controller in one place would show it."""
    controllers = ["pids", "devices", "memory", "cpu,cpuacct", "blkio", "freezer", "net_cls,net_prio",
                   "perf_event", "hugetlb", "cpuset", "rdma"]
    lines = [f"{12 - i}:{c}:{path}" for i, c in enumerate(controllers)]
    return "\n".join(lines + [f"1:name=systemd:{path}", ""])


@pytest.mark.parametrize("text, expected", [
    # kubelet, cgroupfs driver, cgroup v1 (Docker/containerd as runtime)
    (v1(f"/kubepods/burstable/pod{UID}/{CID}"), Owner(kind="pod", pod_uid=UID, container_id=CID)),
    (v1(f"/kubepods/pod{UID}/{CID}"), Owner(kind="pod", pod_uid=UID, container_id=CID)),  # Guaranteed QoS
    # kubelet, systemd driver, cgroup v2, containerd: the uid's dashes become underscores
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
     Owner(kind="pod", pod_uid=UID, container_id=CID)),
    (f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
     Owner(kind="pod", pod_uid=UID, container_id=CID)),
    # systemd driver with Docker (dockershim / cri-dockerd) and with CRI-O
    (v1(f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{CID}.scope"),
     Owner(kind="pod", pod_uid=UID, container_id=CID)),
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{CID}.scope\n",
     Owner(kind="pod", pod_uid=UID, container_id=CID)),
    # cgroup v2, cgroupfs driver (k3s default)
    (f"0::/kubepods/besteffort/pod{UID}/{CID}\n", Owner(kind="pod", pod_uid=UID, container_id=CID)),
    # kind / nested kubelet under its own slice
    (f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
     Owner(kind="pod", pod_uid=UID, container_id=CID)),
    # a process in the pod's cgroup itself, outside any container
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice\n",
     Owner(kind="pod", pod_uid=UID)),
    # plain containers
    (f"0::/system.slice/docker-{CID}.scope\n", Owner(kind="container", name=CID[:12], container_id=CID)),
    (v1(f"/docker/{CID}"), Owner(kind="container", name=CID[:12], container_id=CID)),
    (f"0::/machine.slice/libpod-{CID}.scope/container\n",
     Owner(kind="container", name=CID[:12], container_id=CID)),  # podman v4+, cgroup v2
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container\n",
     Owner(kind="container", name=CID[:12], container_id=CID)),  # rootless podman
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{CID}.scope\n",
     Owner(kind="container", name=CID[:12], container_id=CID)),  # conmon, the container's monitor
    (v1(f"/default/{CID}"), Owner(kind="container", name=CID[:12], container_id=CID)),  # nerdctl, cgroupfs
    # podman with the cgroupfs manager (../shared/recipes/containers/podman.sh, hybrid v1): /libpod_parent/libpod-<id>
    (v1(f"/libpod_parent/libpod-{CID}"), Owner(kind="container", name=CID[:12], container_id=CID)),
    (v1(f"/libpod_parent/libpod-{CID}/ctr"), Owner(kind="container", name=CID[:12], container_id=CID)),
    (v1(f"/libpod_parent/libpod-conmon-{CID}"), Owner(kind="container", name=CID[:12], container_id=CID)),
    (f"0::/system.slice/nerdctl-{CID}.scope\n", Owner(kind="container", name=CID[:12], container_id=CID)),
    ("0::/lxc.payload.web01\n", Owner(kind="container", name="web01")),
    (v1("/lxc/web01"), Owner(kind="container", name="web01")),
    # systemd services and user sessions
    ("0::/system.slice/nginx.service\n", Owner(kind="system", name="nginx")),
    ("0::/system.slice/system-getty.slice/getty@tty1.service\n", Owner(kind="system", name="getty@tty1")),
    (v1("/system.slice/ssh.service"), Owner(kind="system", name="ssh")),
    ("0::/init.scope\n", Owner(kind="system", name="init")),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", Owner(kind="user", name="session-3")),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/jupyter.service\n",
     Owner(kind="user", name="jupyter")),
    # Slurm jobs, v2 (slurmstepd scope) and v1 (slurm hierarchy)
    ("0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n", Owner(kind="user", name="slurm job 4242")),
    (v1("/slurm/uid_1000/job_4242/step_batch/task_0"), Owner(kind="user", name="slurm job 4242")),
    # seen from inside a cgroup namespace (agent in a pod with hostPID)
    ("0::/../../system.slice/nginx.service\n", Owner(kind="system", name="nginx")),
    (f"0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
     Owner(kind="pod", pod_uid=UID, container_id=CID)),
    # kernel threads, and processes nothing manages
    ("0::/\n", Owner(kind="system")),
    (v1("/"), Owner(kind="system")),
    ("", Owner(kind="user")),
    ("garbage without colons\n", Owner(kind="user")),
])
def test_parse_cgroup(text: str, expected: Owner) -> None:
    assert parse_cgroup(text) == expected


def test_hybrid_hierarchy_the_specific_line_wins() -> None:
    # systemd "hybrid" mode: v1 controllers at "/", the unified (0::) and name=systemd lines carry the unit
    text = "\n".join([
        "11:memory:/", "10:cpu,cpuacct:/", "9:pids:/", "1:name=systemd:/system.slice/docker-" + CID + ".scope",
        "0::/system.slice/docker-" + CID + ".scope", "",
    ])
    assert parse_cgroup(text) == Owner(kind="container", name=CID[:12], container_id=CID)


def test_a_container_line_beats_a_service_line() -> None:
    text = f"5:cpu:/docker/{CID}\n4:memory:/system.slice/docker.service\n"
    assert parse_cgroup(text).kind == "container"


def test_real_cgroup_files_from_the_fixture() -> None:
    # This VM has no systemd: every path is "/" except one memory cgroup the sandbox created.
    assert parse_cgroup((BASIC / "proc/2/cgroup").read_text()) == Owner(kind="system")
    assert parse_cgroup((BASIC / "proc/19145/cgroup").read_text()) == Owner(kind="user")


@pytest.mark.parametrize("argv, expected", [
    (["/usr/bin/python3", "/usr/local/bin/celery", "-A", "proj", "worker", "-l", "info", "-n", "w1@%h"],
     (True, "w1@%h")),
    (["python", "-m", "celery", "-A", "proj", "worker", "--hostname=gpu@node1"], (True, "gpu@node1")),
    (["celery", "--app", "proj", "worker", "--hostname", "arm7@board7"], (True, "arm7@board7")),
    (["celery", "-A", "proj", "worker", "-nw2@board2"], (True, "w2@board2")),
    (["/opt/venv/bin/celery", "-A", "proj", "worker"], (True, None)),
    # setproctitle: Celery rewrites its title; pool children say which worker they belong to
    (["[celeryd: w1@node1:MainProcess] -active- (worker -A proj -n w1@node1)"], (True, "w1@node1")),
    (["[celeryd: w1@node1:ForkPoolWorker-3]"], (True, "w1@node1")),
    # Celery, but not a worker
    (["/usr/local/bin/celery", "-A", "proj", "beat"], (False, None)),
    (["/usr/local/bin/celery", "-A", "proj", "inspect", "active"], (False, None)),
    (["python", "train.py", "--worker", "celery"], (False, None)),
    ([], (False, None)),
])
def test_celery_worker(argv: list[str], expected: tuple[bool, str | None]) -> None:
    assert celery_worker(argv) == expected


def test_celery_in_a_pod_stays_a_pod_and_elsewhere_becomes_celery() -> None:
    argv = ["celery", "-A", "proj", "worker", "-n", "w1@x"]
    pod = Owner(kind="pod", pod_uid=UID, container_id=CID)
    assert apply_cmdline(pod, argv) == pod
    container = Owner(kind="container", name=CID[:12], container_id=CID)
    assert apply_cmdline(container, argv) == Owner(kind="celery", name="w1@x", container_id=CID)
    assert apply_cmdline(Owner(kind="system", name="celery-w1"), argv) == Owner(kind="celery", name="w1@x")
    assert apply_cmdline(Owner(kind="system", name="nginx"), ["nginx: worker process"]) == Owner(kind="system",
                                                                                              name="nginx")


def test_owner_of_reads_the_fixture_tree() -> None:
    roots = Roots(proc=str(BASIC / "proc"), sys=str(BASIC / "sys"))
    assert owner_of(19137, roots) == Owner(kind="celery", name="w1@vm")
    assert owner_of(2, roots) == Owner(kind="system")
    assert owner_of(424242, roots) is None  # no such pid: None, not an exception


def test_owner_of_a_real_process(tmp_path: Path) -> None:
    # A real child whose command line is a Celery worker's: owner_of must read the live /proc.
    script = tmp_path / "celery"
    script.write_text("import sys\nprint('ready', flush=True)\nsys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, str(script), "-A", "proj", "worker", "-n", "w9@test"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # Popen returns while execve may still be setting up the new image (/proc/<pid>/cmdline reads
        # empty in that window): wait until the script runs.
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        owner = owner_of(child.pid, Roots())
        assert owner is not None
        assert owner.kind == "celery" and owner.name == "w9@test"
        mine = owner_of(os.getpid(), Roots())
        assert mine is not None and mine.kind != "celery"
    finally:
        child.communicate(b"")
    assert owner_of(child.pid, Roots()) is None  # reaped: gone
