"""Provides the pod-naming join: a GPU process's pod uid -> the pod's namespace, name and owner.

A node knows only what /proc/<pid>/cgroup says of a process in a pod: its uid (``collectors.owner``).
The pod's namespace and name are in the Kubernetes payload, which only the lease-holding agent polls
(``cluster:kubernetes``), so the join is made here, on the read side, where both meet: once per read
(``Reader.read`` calls ``name_pods``), so the GPU table, the node screen, the ledger and the kill dialog
all see the same names. An owner whose uid is not in the payload (another cluster, a pod already gone,
a pod list cut to fit the wire) keeps its uid and no name: unknown, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from clustertop.wire import schema


def pod_index(cluster: Mapping[str, schema.ClusterPayload]) -> dict[str, schema.K8sPod]:
    """uid -> pod, from the Kubernetes payload (empty without one)."""
    payload = cluster.get("kubernetes")
    k8s = payload.kubernetes if payload is not None else None
    return {p.uid: p for p in (k8s.pods if k8s is not None else None) or () if p.uid}


def named(owner: schema.Owner | None, pods: Mapping[str, schema.K8sPod]) -> schema.Owner | None:
    """``owner`` with its pod's namespace and name filled in (a new Owner), or ``owner`` unchanged."""
    if owner is None or owner.kind != "pod" or not owner.pod_uid:
        return owner
    pod = pods.get(owner.pod_uid)
    if pod is None or (owner.name == pod.name and owner.namespace == pod.namespace):
        return owner
    return msgspec.structs.replace(owner, name=pod.name, namespace=pod.namespace)


def name_snapshot(snap: schema.NodeSnapshot | None, pods: Mapping[str, schema.K8sPod]) -> None:
    """Name the pod owners of ``snap``'s GPU processes and top processes (owners replaced, not changed)."""
    if snap is None or not pods:
        return
    for g in snap.gpus or ():
        for p in g.procs or ():
            p.owner = named(p.owner, pods)
    for q in (snap.system.procs if snap.system is not None else None) or ():
        q.owner = named(q.owner, pods)


def name_pods(snaps: Iterable[schema.NodeSnapshot | None], cluster: Mapping[str, schema.ClusterPayload]) -> None:
    """Every snapshot of a read, against that read's Kubernetes payload."""
    pods = pod_index(cluster)
    if pods:
        for snap in snaps:
            name_snapshot(snap, pods)


def pod_of(owner: schema.Owner | None, pods: Mapping[str, schema.K8sPod]) -> schema.K8sPod | None:
    """The pod a process belongs to, by uid (exact), else by namespace and name (the simulator's owners)."""
    if owner is None or owner.kind != "pod":
        return None
    if owner.pod_uid and owner.pod_uid in pods:
        return pods[owner.pod_uid]
    if owner.name and owner.namespace:
        for p in pods.values():
            if p.name == owner.name and p.namespace == owner.namespace:
                return p
    return None
