"""Provides pure parsers from Kubernetes API JSON (as the API server sends it) to the wire schema.

The collector asks for raw JSON (``_preload_content=False``) and hands the decoded dicts here:
the client's own model deserialisation costs ~10x more CPU than ``json.loads`` and would turn every
camelCase field into a snake_case object these parsers would then have to undo. Input is the list
object (``{"kind": "PodList", "items": [...]}``) or one item; nothing here touches the network.

Semantics follow the API, not kubectl's cosmetics: a pod's GPU request is its *effective* request
(max of the init containers' and the sum of the app containers', as the scheduler counts it);
GPUs a node has allocated are those requested by its non-terminated pods.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation, Overflow
from typing import Any

from clustertop.wire import schema

GPU_RESOURCE = "nvidia.com/gpu"
#: Phases after which a pod no longer holds its resources (the scheduler frees them).
TERMINATED_PHASES = schema.K8S_TERMINATED_PHASES

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


#: resource.Quantity: "no quantity may represent a number greater than 2^63-1 in magnitude".
_QUANTITY_MAX = 2**63 - 1


def parse_quantity(value: Any) -> Decimal | None:
    """A resource.Quantity ("7800m", "32Gi", "2", "1e3") as a Decimal; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = Decimal(value)  # exact; str() of an int past 4300 digits raises
    elif isinstance(value, float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        m = _QUANTITY.match(value.strip())
        if m is None:
            return None
        try:
            number = Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]
        except (InvalidOperation, Overflow):  # Overflow: "1e999999999Ki" is past Decimal's exponent range
            return None
    else:
        return None
    # NaN and Infinity (json.loads accepts both) and sizes the API itself refuses are not quantities.
    return number if number.is_finite() and abs(number) <= _QUANTITY_MAX else None


def _int(value: Any, scale: int = 1) -> int | None:
    q = parse_quantity(value)
    if q is None:
        return None
    # Quantities round up (the API's own rule for a request like "0.5" GPUs it would refuse anyway).
    return _fit(int((q * scale).to_integral_value(rounding="ROUND_CEILING")))


def _fit(n: int) -> int | None:
    """n, or None past int64 (the API's own integer range): millicores of the largest quantity, or a
    sum of big counts, would not fit the wire."""
    return n if -_QUANTITY_MAX - 1 <= n <= _QUANTITY_MAX else None


def parse_ts(text: Any) -> float | None:
    """RFC 3339 as the API writes it ("2025-11-22T14:03:07Z") -> Unix seconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def items(obj: Any) -> list[dict[str, Any]]:
    """The items of a list object (or [obj] for a single object); malformed entries are dropped."""
    if isinstance(obj, dict) and "items" in obj:
        raw = _list(obj, "items")  # iterating a number raises; a string's characters are no items
    elif isinstance(obj, dict):
        raw = [obj]
    else:
        raw = []
    return [i for i in raw if isinstance(i, dict)]


def _d(obj: Any, *path: str) -> Any:
    """obj[path0][path1]... or None when any step is missing or not a dict."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _dict(obj: Any, *path: str) -> dict[str, Any]:
    """Like _d, but {} unless the value there is a dict (a list or a number where the API has an object)."""
    v = _d(obj, *path)
    return v if isinstance(v, dict) else {}


def _list(obj: Any, *path: str) -> list[Any]:
    """Like _d, but [] unless the value there is a list."""
    v = _d(obj, *path)
    return v if isinstance(v, list) else []


def _str(value: Any) -> str | None:
    """A non-empty string, else None: the schema's str fields must not carry numbers or lists."""
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------


def abnormal_conditions(conditions: Any) -> dict[str, str]:
    """type -> status for the conditions that signal trouble.

    Ready is healthy when "True"; every other condition (MemoryPressure, DiskPressure, PIDPressure,
    NetworkUnavailable, and node-problem-detector's KernelDeadlock and friends) is healthy when
    "False". "Unknown" is trouble either way: the kubelet stopped reporting.
    """
    out: dict[str, str] = {}
    for c in conditions if isinstance(conditions, list) else ():
        kind, status = _d(c, "type"), _d(c, "status")
        if not isinstance(kind, str) or not isinstance(status, str):
            continue
        healthy = "True" if kind == "Ready" else "False"
        if status != healthy:
            out[kind] = status
    return out


def parse_node(obj: dict[str, Any], gpu_resource: str = GPU_RESOURCE) -> schema.K8sNode:
    conditions = _d(obj, "status", "conditions")
    ready: bool | None = None
    for c in conditions if isinstance(conditions, list) else ():
        if _d(c, "type") == "Ready":
            ready = _d(c, "status") == "True"  # "Unknown" = node controller lost the kubelet = not ready
    capacity = _dict(obj, "status", "capacity")
    allocatable = _dict(obj, "status", "allocatable")
    has_status = isinstance(_d(obj, "status", "capacity"), dict)
    return schema.K8sNode(
        name=str(_d(obj, "metadata", "name") or "?"),
        ready=ready,
        unschedulable=bool(_d(obj, "spec", "unschedulable")),
        conditions=abnormal_conditions(conditions) or None,
        # A node without the resource has no such GPUs (0, a fact); a node without any status is unknown.
        gpu_capacity=_int(capacity.get(gpu_resource, 0)) if has_status else None,
        gpu_allocatable=_int(allocatable.get(gpu_resource, 0)) if has_status else None,
        cpu_allocatable_m=_int(allocatable.get("cpu"), 1000) if "cpu" in allocatable else None,
        mem_allocatable_bytes=_int(allocatable.get("memory")) if "memory" in allocatable else None,
    )


def parse_nodes(obj: Any, gpu_resource: str = GPU_RESOURCE) -> list[schema.K8sNode]:
    return [parse_node(i, gpu_resource) for i in items(obj)]


# ---------------------------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------------------------


def _container_request(container: Any, resource: str) -> int:
    # Extended resources cannot be overcommitted: requests must equal limits, and a limit alone
    # defaults the request to it (the API server fills it in, but be safe on older objects).
    value = _dict(container, "resources", "requests").get(resource)
    if value is None:
        value = _dict(container, "resources", "limits").get(resource)
    if value is None:
        return 0
    n = _int(value)
    # The API server refuses negative quantities; one here is no request at all, like an unreadable one.
    return n if n is not None and n > 0 else 0


def pod_gpus(spec: Any, resource: str = GPU_RESOURCE) -> int:
    """The pod's effective request: max(sum over app containers, max over init containers)."""
    apps = sum(_container_request(c, resource) for c in _list(spec, "containers"))
    inits = [_container_request(c, resource) for c in _list(spec, "initContainers")]
    return _fit(max([apps, *inits])) or 0  # a sum past int64 is no GPU count: unknown, as an unreadable request


def _restarts(status: Any) -> int | None:
    raw = [cs.get("restartCount") for key in ("containerStatuses", "initContainerStatuses")
           for cs in _list(status, key) if isinstance(cs, dict)]
    counts = [c for c in raw if isinstance(c, int)]
    if counts:
        return _fit(sum(counts))
    # No container ever started (Pending, unscheduled): zero restarts is a fact, not a guess.
    return 0 if _d(status, "phase") == "Pending" else None


def pod_reason(obj: dict[str, Any]) -> str | None:
    """Why a pod is in its state, in the API's own words (the same sources kubectl's STATUS uses)."""
    if _d(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    status = _dict(obj, "status")
    if isinstance(status.get("reason"), str) and status["reason"]:
        return str(status["reason"])  # Evicted, NodeLost, UnexpectedAdmissionError, ...
    phase = status.get("phase")
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _list(status, key):
            waiting = _d(cs, "state", "waiting", "reason")
            if waiting and waiting not in ("PodInitializing", "ContainerCreating"):
                return str(waiting)  # CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError
            terminated = _d(cs, "state", "terminated", "reason")
            if terminated and (phase != "Running" or key == "initContainerStatuses") and terminated != "Completed":
                return str(terminated)  # Error, OOMKilled, ContainerCannotRun
    for c in _list(status, "conditions"):
        if _d(c, "type") == "PodScheduled" and _d(c, "status") == "False" and _d(c, "reason"):
            return str(c["reason"])  # Unschedulable: not enough GPUs free anywhere
    if phase == "Succeeded":
        return "Completed"
    return None


def _controller(refs: Any) -> dict[str, Any] | None:
    refs = [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []
    for r in refs:
        if r.get("controller"):
            return r
    return refs[0] if refs else None


def parse_pod(obj: dict[str, Any], gpu_resource: str = GPU_RESOURCE) -> schema.K8sPod:
    md = _dict(obj, "metadata")
    owner = _controller(md.get("ownerReferences")) or {}
    return schema.K8sPod(
        namespace=str(md.get("namespace") or ""),
        name=str(md.get("name") or "?"),
        # _str: a number or a list here would make the dashboard refuse the whole payload
        node=_str(_d(obj, "spec", "nodeName")),
        phase=_str(_d(obj, "status", "phase")),
        reason=pod_reason(obj),
        restarts=_restarts(obj.get("status")),
        gpus=pod_gpus(obj.get("spec"), gpu_resource),
        created_ts=parse_ts(md.get("creationTimestamp")),
        owner_kind=_str(owner.get("kind")),
        owner=_str(owner.get("name")),
        uid=_str(md.get("uid")),
    )


def parse_pods(obj: Any, gpu_resource: str = GPU_RESOURCE) -> list[schema.K8sPod]:
    return [parse_pod(i, gpu_resource) for i in items(obj)]


def allocate(nodes: Iterable[schema.K8sNode], pods: Iterable[schema.K8sPod]) -> None:
    """Fill each node's gpu_allocated from the pods bound to it (in place)."""
    used: dict[str, int] = {}
    for p in pods:
        if p.gpus and p.holds_resources():
            assert p.node is not None
            used[p.node] = used.get(p.node, 0) + p.gpus
    for n in nodes:
        n.gpu_allocated = _fit(used.get(n.name, 0))


def _interest(p: schema.K8sPod) -> int:
    """Lower sorts first: what an operator needs to see survives truncation."""
    if p.gpus and p.holds_resources():
        return 0
    if p.gpus or p.phase not in ("Running", "Succeeded") or p.reason or (p.restarts or 0) > 0:
        return 1
    return 2


def _key(p: schema.K8sPod) -> tuple[str, str]:
    return (p.namespace, p.name)


def select_pods(pods: list[schema.K8sPod], limit: int) -> list[schema.K8sPod]:
    """At most ``limit`` pods for the wire (a payload must stay under wire.MAX_PAYLOAD_BYTES), sorted
    by namespace and name: GPU pods are kept first, then troubled ones, then the rest.

    Sorted because the API server's watch cache lists in no particular order: without it the pods
    that survive the cut (and the rows on screen) would change from one poll to the next."""
    if len(pods) <= limit:
        return sorted(pods, key=_key)
    ranked = sorted(pods, key=lambda p: (_interest(p), p.namespace, p.name))
    return sorted(ranked[:limit], key=_key)


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------


def _opt_int(value: Any, default: int | None = None) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and _fit(value) is not None
    return value if ok else default


def parse_job(obj: dict[str, Any]) -> schema.K8sWorkload:
    md, spec, st = _dict(obj, "metadata"), _dict(obj, "spec"), _dict(obj, "status")
    return schema.K8sWorkload(
        kind="Job", namespace=str(md.get("namespace") or ""), name=str(md.get("name") or "?"),
        # parallelism is how many pods the Job runs at once: its "replicas".
        replicas=_opt_int(spec.get("parallelism"), 1),
        # The Job controller omits zero counters from status: absent means 0 once status exists.
        active=_opt_int(st.get("active"), 0), succeeded=_opt_int(st.get("succeeded"), 0),
        failed=_opt_int(st.get("failed"), 0),
    )


def parse_deployment(obj: dict[str, Any]) -> schema.K8sWorkload:
    md, spec, st = _dict(obj, "metadata"), _dict(obj, "spec"), _dict(obj, "status")
    return schema.K8sWorkload(
        kind="Deployment", namespace=str(md.get("namespace") or ""), name=str(md.get("name") or "?"),
        replicas=_opt_int(spec.get("replicas"), 1),  # the API defaults an omitted spec.replicas to 1
        ready=_opt_int(st.get("readyReplicas"), 0),  # omitted while zero
    )


def parse_jobs(obj: Any) -> list[schema.K8sWorkload]:
    return [parse_job(i) for i in items(obj)]


def parse_deployments(obj: Any) -> list[schema.K8sWorkload]:
    return [parse_deployment(i) for i in items(obj)]


def parse_version(obj: Any) -> str | None:
    v = _d(obj, "gitVersion")
    return v if isinstance(v, str) and v else None
