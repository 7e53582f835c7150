"""Provides process attribution: whose work a pid is (pod, container, Celery worker, service, session).

The answer comes from /proc/<pid>/cgroup, which container runtimes and systemd fill with recognisable
paths, plus the command line for Celery workers (a Celery worker is an ordinary process to the kernel).
``parse_cgroup`` and ``apply_cmdline`` are pure; ``owner_of`` reads the two files under the roots.
The gpu collector calls ``owner_of`` for GPU processes, the host collector for its top processes.
"""

from __future__ import annotations

import os
import re

import msgspec

from clustertop.collectors.base import Roots
from clustertop.collectors.procfs import parse_cmdline
from clustertop.wire import schema
from clustertop.wire.schema import Owner

# kubelet names pod cgroups "pod<uid>" (cgroupfs driver) or "kubepods-<qos>-pod<uid>.slice" (systemd
# driver, which must spell the uid's dashes as underscores because "-" is systemd's slice separator).
_POD = re.compile(r"(?:^|[/-])pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}"
                  r"[-_][0-9a-fA-F]{12})(?:\.slice)?(?:/|$)")
# Runtime scopes under the systemd driver: docker-<id>.scope, cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope (podman), nerdctl-<id>.scope; "-conmon-" is the runtime's monitor
# process for that container, counted as the container's.
_SCOPE = re.compile(r"(?:^|/)(?:docker|cri-containerd|crio|crio-conmon|libpod|libpod-conmon|nerdctl)-"
                    r"([0-9a-f]{64})\.scope(?:/|$)")
# Podman with the cgroupfs manager: /libpod_parent/libpod-<id> (and libpod-conmon-<id> for its monitor).
_LIBPOD = re.compile(r"(?:^|/)libpod-(?:conmon-)?([0-9a-f]{64})(?:/|$)")
# cgroupfs driver: the container id is a bare 64-hex path component (/docker/<id>, /kubepods/.../<id>,
# containerd's /<namespace>/<id>).
_BARE_ID = re.compile(r"(?:^|/)([0-9a-f]{64})(?:/|$)")
_LXC = re.compile(r"(?:^|/)(?:lxc\.payload\.|lxc/)([^/]+)")
# Slurm's cgroup plugins: v1 /slurm/uid_<u>/job_<j>/..., v2 /system.slice/slurmstepd.scope/job_<j>/...
_SLURM = re.compile(r"(?:^|/)job_(\d+)(?:/|$)")
_CELERY_TITLE = re.compile(r"^\[celeryd: ([^:\]\s]+)")

# The more specific attribution wins when cgroup v1 hierarchies disagree (hybrid systems often have a
# container path in the "cpu" hierarchy and "/" in a controller the runtime does not manage).
_RANK = {"pod": 4, "container": 3, "service": 2, "other": 1, "root": 0}


def _unit_name(component: str) -> str:
    for suffix in (".service", ".scope", ".slice"):
        if component.endswith(suffix):
            return component[: -len(suffix)]
    return component


def classify_path(path: str) -> tuple[str, Owner]:
    """One cgroup path -> (rank name, Owner)."""
    # Read from inside a cgroup namespace (an agent in a pod with hostPID), paths outside the
    # namespace start with "/..": what follows is still the real layout.
    path = "/" + "/".join(p for p in path.strip().split("/") if p and p != "..")
    if path == "/":
        # kernel threads and processes outside any managed cgroup
        return "root", Owner(kind="system")
    scope = _SCOPE.search(path)
    bare = _BARE_ID.search(path) or _LIBPOD.search(path)
    cid = scope.group(1) if scope else (bare.group(1) if bare else None)
    if "kubepods" in path:
        pod = _POD.search(path)
        if pod:
            uid = pod.group(1).replace("_", "-").lower()
            return "pod", Owner(kind="pod", pod_uid=uid, container_id=cid)
    if cid:
        return "container", Owner(kind="container", name=cid[:12], container_id=cid)
    lxc = _LXC.search(path)
    if lxc:
        return "container", Owner(kind="container", name=lxc.group(1))
    parts = [p for p in path.split("/") if p]
    slurm = _SLURM.search(path)
    if slurm and ("slurm" in path):
        return "service", Owner(kind="user", name=f"slurm job {slurm.group(1)}")
    if parts[0] == "user.slice":
        # /user.slice/user-1000.slice/session-3.scope, or a unit of the user's own systemd
        # (/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service): the innermost unit.
        units = [p for p in parts if p.endswith((".scope", ".service"))]
        return "service", Owner(kind="user", name=_unit_name(units[-1]) if units else None)
    if parts[0] in ("system.slice", "init.scope") or parts[-1].endswith(".service"):
        units = [p for p in parts if p.endswith((".service", ".scope"))]
        return "service", Owner(kind="system", name=_unit_name(units[-1]) if units else None)
    return "other", Owner(kind="user")


def parse_cgroup(text: str) -> Owner:
    """/proc/<pid>/cgroup (v1, v2 or hybrid) -> the most specific owner any line shows."""
    best: tuple[int, Owner] | None = None
    for line in text.splitlines():
        # "hierarchy-ID:controllers:path"; the path may itself contain ":" (rare, but legal)
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        rank, owner = classify_path(fields[2])
        if best is None or _RANK[rank] > best[0]:
            best = (_RANK[rank], owner)
    return best[1] if best else Owner(kind="user")


def celery_worker(argv: list[str]) -> tuple[bool, str | None]:
    """(is a Celery worker, its node name if the command line gives one)."""
    if not argv:
        return False, None
    # With setproctitle installed Celery rewrites its title into one string:
    # "[celeryd: w1@host:MainProcess] -active- (worker -A proj)", children "[celeryd: w1@host:ForkPoolWorker-3]".
    title = _CELERY_TITLE.match(argv[0])
    if title:
        return True, title.group(1)
    start = None
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "celery" or (arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "celery"):
            start = i
            break
    if start is None or "worker" not in argv[start + 1:]:
        return False, None
    rest = argv[start + 1:]
    for i, arg in enumerate(rest):
        if arg in ("-n", "--hostname") and i + 1 < len(rest):
            return True, rest[i + 1]
        if arg.startswith("--hostname="):
            return True, arg.split("=", 1)[1]
        if arg.startswith("-n") and len(arg) > 2 and not arg.startswith("--"):
            return True, arg[2:]
    return True, None


def apply_cmdline(owner: Owner, argv: list[str]) -> Owner:
    """A Celery worker is shown as one, unless it runs in a pod: in a Kubernetes cluster the pod is
    the unit people act on (and the dashboard joins it to the pod list by uid)."""
    if owner.kind == "pod":
        return owner
    is_celery, name = celery_worker(argv)
    if not is_celery:
        return owner
    return Owner(kind="celery", name=name, container_id=owner.container_id)


def owner_of(pid: int, roots: Roots) -> Owner | None:
    """Owner of a live pid, or None when it is gone or its files cannot be read."""
    try:
        with open(roots.procfs(str(pid), "cgroup"), encoding="utf-8", errors="replace") as f:
            cgroup = f.read()
    except OSError:
        return None
    try:
        with open(roots.procfs(str(pid), "cmdline"), "rb") as fb:
            argv = parse_cmdline(fb.read())
    except OSError:
        argv = []
    return apply_cmdline(parse_cgroup(cgroup), argv)


def name_containers(snap: schema.NodeSnapshot) -> None:
    """Name the snapshot's container-owned processes (GPU ones and the top processes) by their container,
    from the containers collector's list in the same snapshot: ``Owner.name`` was the id's first 12
    characters, which is all a cgroup path says. Owners are replaced, never changed in place (the GPU
    collector caches them per pid). Pods keep their uid: they are named on the read side, where the
    Kubernetes payload is (``clustertop.read.owners``)."""
    listed = snap.containers.containers if snap.containers is not None else None
    if not listed:
        return
    names = {c.id: c.name for c in listed if c.name}
    if not names:
        return

    def named(o: Owner | None) -> Owner | None:
        if o is None or o.kind != "container" or o.container_id not in names:
            return o
        return msgspec.structs.replace(o, name=names[o.container_id])

    for g in snap.gpus or ():
        for p in g.procs or ():
            p.owner = named(p.owner)
    for q in (snap.system.procs if snap.system is not None else None) or ():
        q.owner = named(q.owner)
