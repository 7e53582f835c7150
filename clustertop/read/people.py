"""Provides one person's work across the cluster (``clustertop who USER``, issue 19): from one read, that
user's processes, GPU processes with their VRAM and GPU, and the pods, containers, launched tasks and
Celery tasks those processes run in, with the GPUs they hold now and the energy the ledgers charge them.

What carries a user, and so what can be matched (everything else is joined through a matched process):
- processes (a node's top processes, ``System.procs``) and GPU processes: ``user`` (the name the node's
  passwd gives) or ``uid``; USER all digits matches the uid too. Exact match: no case folding, no prefix.
- pods: the Kubernetes payload carries no user, labels or annotations (``K8sPod``), so a pod is the user's
  when one of the user's processes runs in it (its cgroup names the pod's uid: ``read.owners.pod_of``).
- containers: ``Container`` has no user either; the same join, by the container id in the process's cgroup.
- launched tasks: ``Task`` records no user (the launcher's key is in the audit log, not on the wire):
  a running task is the user's when its leading pid (or group) is one of the user's processes on that node.
- Celery tasks: ``WorkerTask`` has no user; the active tasks of a worker whose process is the user's
  (``Owner.kind == "celery"``, named by its ``-n``/title; ``%h`` read as the node's name).
- energy: the ledgers' ``("user", USER)`` subject (``read.energy.windows``), the one figure kept per user.

``namespace`` (the dashboard's ``:ns``) keeps only the user's processes whose pod is in that namespace, and
what is joined through them; the others are counted, never dropped silently (``Work.hidden``): outside any
pod, in another namespace's pod, or in a pod the Kubernetes payload does not name (namespace unknown).

A node's top processes are bounded (top by CPU and memory): a user's idle process may not be listed, so
what is matched through processes is what the listed ones show. Nodes without a process list are counted
(``Work.no_procs``), never read as "none". Every string in the result is node text, unescaped: printing is
the caller's (``wire.text.inert``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from clustertop.read import layers, owners
from clustertop.read.cluster import queue_payloads
from clustertop.read.energy import Use, Windows
from clustertop.read.model import NodeView
from clustertop.wire import schema
from clustertop.wire.text import known

#: Items listed at most (all kinds together); the rest are counted in ``Work.omitted``.
MAX_ITEMS = 2000
#: Kinds in the order they are listed.
KINDS = ("gpu-process", "process", "pod", "container", "task", "celery-task")
#: A process's VRAM past this (1 PiB) is a node's garbage: unknown, not summed.
MAX_VRAM = float(1 << 50)


@dataclass
class Item:
    kind: str  # one of KINDS
    host: str | None  # the node (a pod: the node it is bound to, None when unscheduled)
    name: str  # a command line, "namespace/pod", a container's name, a task's template, a Celery task's name
    pid: int | None = None
    gpu: int | None = None  # GPU index on ``host`` (GPU processes)
    gpus: int | None = None  # GPUs a pod requests
    gpu_uuid: str | None = None
    vram_bytes: int | None = None  # None: the node could not say (or said garbage)
    cpu_pct: float | None = None
    rss_bytes: int | None = None
    state: str | None = None  # a pod's phase, a container's or task's state
    owner: str | None = None  # a process's pod/container/worker, in words
    ident: str | None = None  # a pod's uid, a container's id, a task's id, a Celery task's id
    via: str | None = None  # joined items: the user's process that makes it theirs ("gpu01 pid 4242")
    node_state: str = "up"  # the node's state in the read ("stale": an old snapshot)


@dataclass
class Work:
    user: str
    items: list[Item] = field(default_factory=list)
    gpus: list[tuple[str, int]] = field(default_factory=list)  # (host, GPU index) holding the user's processes
    vram_bytes: int = 0  # summed over the GPU processes whose VRAM is known ...
    vram_unknown: int = 0  # ... and how many GPU processes it does not cover
    energy_hour: Use | None = None
    energy_day: Use | None = None
    energy_read: bool = False  # ledgers were read (False: energy unknown, not zero)
    nodes: int = 0  # nodes searched (with a snapshot)
    no_procs: list[str] = field(default_factory=list)  # nodes whose snapshot has no process list
    omitted: int = 0  # items past MAX_ITEMS
    namespace: str | None = None  # the scope searched (None: everything)
    #: With a namespace: the user's processes left out, (host, pid) counted once, by why:
    #: "no pod" (not in a pod), "other namespace", "unknown pod" (a pod uid the payload does not name).
    hidden: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for i in self.items if i.kind == kind)

    def hidden_text(self) -> list[str]:
        """``hidden`` in words, one entry per reason ("3 processes outside pods"): the people screen's and
        ``clustertop who --ns``'s."""
        return [f"{self.hidden[k]} process{'' if self.hidden[k] == 1 else 'es'} {words}"
                for k, words in HIDDEN_WORDS if self.hidden.get(k)]


#: ``Work.hidden``'s reasons in words.
HIDDEN_WORDS = (("no pod", "outside pods"), ("other namespace", "in other namespaces' pods"),
                ("unknown pod", "in pods the Kubernetes payload does not name"))


def matches(user: str, name: str | None, uid: int | None) -> bool:
    if name is not None and name == user:
        return True
    return user.isascii() and user.isdigit() and uid is not None and uid == int(user)


def owner_text(o: schema.Owner | None) -> str | None:
    if o is None:
        return None
    ns = f"{o.namespace}/" if o.namespace else ""
    return f"{o.kind} {ns}{o.name or o.pod_uid or ''}".strip()


def _vram(v: int | None) -> int | None:
    f = known(v, 0, MAX_VRAM)
    return None if f is None else int(f)


def _outside(owner: schema.Owner | None, pods: Mapping[str, schema.K8sPod], namespace: str | None) -> str | None:
    """Why a process with ``owner`` is outside ``namespace`` ("no pod", "other namespace", "unknown pod"),
    or None when it is inside (or no namespace is asked for)."""
    if namespace is None:
        return None
    if owner is None or owner.kind != "pod":
        return "no pod"
    pod = owners.pod_of(owner, pods)
    if pod is None:
        return "unknown pod"
    return None if pod.namespace == namespace else "other namespace"


def find(user: str, nodes: Iterable[NodeView], cluster: Mapping[str, schema.ClusterPayload],
         energy: Windows | None = None, namespace: str | None = None) -> Work:
    """``user``'s work in one read (``ClusterState.nodes`` and ``.cluster``), with ``energy`` when the
    ledgers were read. Down nodes are skipped (their processes are gone or unknown); stale ones are kept
    and marked. ``namespace``: only processes in that namespace's pods (the rest counted in ``hidden``)."""
    w = Work(user=user, namespace=namespace)
    pods = owners.pod_index(cluster)
    hidden: dict[tuple[str, int | None], str] = {}  # (host, pid) -> why, so a GPU process and its Proc count once
    workers = {wk.name: wk for p in queue_payloads(dict(cluster)) for wk in (p.queues.workers if p.queues else None)
               or () if wk.kind == "celery"}
    items: list[Item] = []
    seen_pods: set[tuple[str, str]] = set()
    seen_containers: set[tuple[str, str]] = set()
    seen_workers: set[str] = set()
    digits = user.isascii() and user.isdigit()
    for nv in nodes:
        # Each section as the node's snapshot has it, without building the node's whole overlay where its full
        # snapshot is older than its brief (``read.layers``): the GPUs of this tick, with the full snapshot's
        # VRAM and command lines, only on a node where one of this user's GPU processes may be.
        snap = layers.current_head(nv)  # its GPUs below, built only where this user's process may be
        if snap is None or nv.state not in ("up", "stale"):
            continue
        w.nodes += 1
        host, st = nv.host, nv.state
        owned: list[tuple[int, schema.Owner | None]] = []  # (pid, owner) of the user's processes here
        pending = nv.pending
        if not pending:
            gpus = snap.gpus
        elif digits or user in layers.gpu_users(nv):
            gpus = layers.gpus(nv)  # a brief's processes carry no uid: only the full snapshot's may match it
        else:
            gpus = None  # no GPU process of this user here (by name; a user given as a uid takes the branch above)
        for g in gpus or ():
            for gp in g.procs or ():
                if not matches(user, gp.user, gp.uid):
                    continue
                # Named from the read's payload (``read.owners``) as the reader names a snapshot: here, where it left
                # the node's overlay to be built (``NodeView.pending``), it named nothing of it.
                gp_owner = owners.named(gp.owner, pods) if pending else gp.owner
                why = _outside(gp_owner, pods, namespace)
                if why is not None:
                    hidden[(host, gp.pid)] = why
                    continue
                vram = _vram(gp.used_mem_bytes)
                items.append(Item("gpu-process", host, gp.cmdline or gp.name or "", pid=gp.pid, gpu=g.index,
                                  gpu_uuid=g.uuid, vram_bytes=vram, owner=owner_text(gp_owner), node_state=st))
                if vram is None:
                    w.vram_unknown += 1
                else:
                    w.vram_bytes += vram
                if (host, g.index) not in w.gpus:
                    w.gpus.append((host, g.index))
                owned.append((gp.pid, gp_owner))
        procs = layers.procs(nv)
        if procs is None:
            w.no_procs.append(host)
        for p in procs or ():
            if matches(user, p.user, p.uid):
                p_owner = owners.named(p.owner, pods) if pending else p.owner
                why = _outside(p_owner, pods, namespace)
                if why is not None:
                    hidden[(host, p.pid)] = why
                    continue
                items.append(Item("process", host, p.cmdline or p.name or "", pid=p.pid,
                                  cpu_pct=known(p.cpu_pct, 0, 1e5), rss_bytes=_vram(p.rss_bytes), state=p.state,
                                  owner=owner_text(p_owner), node_state=st))
                owned.append((p.pid, p_owner))
        pids = {pid for pid, _ in owned}
        cs = layers.containers(nv)
        listed = {c.id: c for c in (cs.containers if cs is not None else None) or ()}
        for pid, o in owned:
            via = f"{host} pid {pid}"
            pod = owners.pod_of(o, pods)
            if pod is not None and (pod.namespace, pod.name) not in seen_pods:
                seen_pods.add((pod.namespace, pod.name))
                what = f"{pod.owner_kind} {pod.owner}" if pod.owner_kind else None
                items.append(Item("pod", pod.node, f"{pod.namespace}/{pod.name}", gpus=pod.gpus, state=pod.phase,
                                  owner=what, ident=pod.uid, via=via, node_state=st))
            if o is not None and o.kind == "container" and o.container_id \
                    and (host, o.container_id) not in seen_containers:
                seen_containers.add((host, o.container_id))
                c = listed.get(o.container_id)
                items.append(Item("container", host, (c.name if c is not None else None) or o.name or o.container_id[:12],
                                  state=c.state if c is not None else None,
                                  owner=f"template {c.template}" if c is not None and c.template else None,
                                  ident=o.container_id, via=via, node_state=st))
            if o is not None and o.kind == "celery" and o.name:
                wk = workers.get(o.name) or workers.get(o.name.replace("%h", host))
                if wk is not None and wk.name not in seen_workers:
                    seen_workers.add(wk.name)
                    for wt in wk.active or ():
                        items.append(Item("celery-task", host, wt.name or "", owner=f"worker {wk.name}", ident=wt.id,
                                          via=via, node_state=st))
        for t in snap.tasks or ():
            if t.state == "running" and ((t.pid is not None and t.pid in pids) or (t.pgid is not None and t.pgid in pids)):
                items.append(Item("task", host, t.template, pid=t.pid, state=t.state, ident=t.id,
                                  owner=f"job {t.job} rank {t.rank}" if t.job else None,
                                  via=f"{host} pid {t.pid if t.pid in pids else t.pgid}", node_state=st))
    order = {k: i for i, k in enumerate(KINDS)}
    items.sort(key=lambda i: (order[i.kind], i.host or "", -(i.vram_bytes or 0), -(i.cpu_pct or 0.0), i.pid or 0))
    w.items, w.omitted = items[:MAX_ITEMS], max(0, len(items) - MAX_ITEMS)
    for why in hidden.values():
        w.hidden[why] = w.hidden.get(why, 0) + 1
    if energy is not None:
        w.energy_read = True
        # The ledger names a user as the node's passwd does, "uid N" where it has no name (agents/energy.py).
        names = [user] + ([f"uid {user}"] if user.isascii() and user.isdigit() else [])
        w.energy_hour = next((energy.hour[("user", n)] for n in names if ("user", n) in energy.hour), None)
        w.energy_day = next((energy.day[("user", n)] for n in names if ("user", n) in energy.day), None)
    return w
