"""Provides node maintenance for the operator: cordon, uncordon and drain, kubectl's way.

- ``set_unschedulable``: a merge patch of ``spec.unschedulable``; returns the value before.
- ``plan_drain``: what a drain would do, before anything happens: the node's pods sorted into
  *evict* (managed by a controller that replaces them elsewhere), *ignored* (DaemonSet-owned: the
  DaemonSet would put them back; mirror pods: the kubelet owns them; finished pods) and *refused*
  (not managed by any controller, or with emptyDir data: gone for good, so only with ``force`` /
  ``delete_local_data``, as kubectl's flags). Each pod covered by a PodDisruptionBudget is shown with
  its budget's ``disruptionsAllowed``.
- ``drain``: cordons, then asks for each eviction through the Eviction subresource (policy/v1beta1,
  the version a 1.20 API server serves), so the API server applies the PodDisruptionBudgets. A 429
  (the budget allows no disruption now) is reported for that pod and not retried; the others go on.
- ``wait_gone``: after the evictions, waits (bounded) until the evicted pods have left the node
  (deleted, or replaced by pods of other names or uids elsewhere), saying "3 of 5 pods gone" as they
  go, and names the pods still there at the timeout. A pod with a deletionTimestamp is still there:
  its containers may still run (kubectl's drain waits the same way).

``classify``, ``pdbs_covering`` and ``still_there`` are pure and take the API's JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clustertop.control.k8s_rollout import send
from clustertop.control.kubernetes import K8sControl, K8sControlError, _check_name

MIRROR = "kubernetes.io/config.mirror"


@dataclass
class PodPlan:
    namespace: str
    name: str
    why: str  # evict: its owner; ignored/refused: the reason
    pdbs: list[str] = field(default_factory=list)  # "ns/name (N disruption(s) allowed)"
    uid: str | None = None  # the pod the operator was shown: an eviction is refused if the name now means another

    def text(self) -> str:
        return f"{self.namespace}/{self.name}: {self.why}" + (f"; PDB {', '.join(self.pdbs)}" if self.pdbs else "")


@dataclass
class DrainPlan:
    node: str
    unschedulable: bool
    evict: list[PodPlan] = field(default_factory=list)
    ignored: list[PodPlan] = field(default_factory=list)
    refused: list[PodPlan] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"node {self.node}: {'already cordoned' if self.unschedulable else 'will be cordoned'}; "
               f"{len(self.evict)} pod(s) to evict, {len(self.ignored)} ignored, {len(self.refused)} refused"]
        out += [f"evict   {p.text()}" for p in self.evict]
        out += [f"ignore  {p.text()}" for p in self.ignored]
        out += [f"REFUSED {p.text()}" for p in self.refused]
        return out


@dataclass
class Eviction:
    namespace: str
    name: str
    ok: bool
    text: str


# ---------------------------------------------------------------------------------------------
# Pure
# ---------------------------------------------------------------------------------------------


def _matches(selector: Any, labels: dict[str, Any]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a pod's labels. An empty selector
    matches no pod (policy/v1beta1's rule; policy/v1 later made it match all)."""
    if not isinstance(selector, dict):
        return False
    ml = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not ml and not exprs:
        return False
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for e in exprs:
        if not isinstance(e, dict):
            return False
        key, op, values = str(e.get("key")), e.get("operator"), e.get("values") or []
        have = key in labels
        ok = {"In": have and labels.get(key) in values, "NotIn": not (have and labels.get(key) in values),
              "Exists": have, "DoesNotExist": not have}.get(str(op), False)
        if not ok:
            return False
    return True


def pdbs_covering(pod: dict[str, Any], pdbs: list[dict[str, Any]]) -> list[str]:
    md = pod.get("metadata") or {}
    labels: dict[str, Any] = md["labels"] if isinstance(md.get("labels"), dict) else {}
    out = []
    for b in pdbs:
        bmd = b.get("metadata") or {}
        if bmd.get("namespace") != md.get("namespace") or not _matches((b.get("spec") or {}).get("selector"), labels):
            continue
        allowed = (b.get("status") or {}).get("disruptionsAllowed")
        out.append(f"{bmd.get('namespace')}/{bmd.get('name')} ({'N/A' if allowed is None else allowed} "
                   f"disruption(s) allowed)")
    return out


def classify(node: str, unschedulable: bool, pods: list[dict[str, Any]], pdbs: list[dict[str, Any]],
             force: bool = False, delete_local_data: bool = False) -> DrainPlan:
    plan = DrainPlan(node=node, unschedulable=unschedulable)
    for pod in pods:
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        entry = PodPlan(namespace=str(md.get("namespace")), name=str(md.get("name")), why="", uid=md.get("uid"))
        owners = [r for r in md.get("ownerReferences") or [] if isinstance(r, dict) and r.get("controller")]
        owner = owners[0] if owners else None
        if MIRROR in (md.get("annotations") or {}):
            entry.why = "mirror pod (the kubelet's static pod)"
            plan.ignored.append(entry)
            continue
        if owner and owner.get("kind") == "DaemonSet":
            entry.why = f"DaemonSet {owner.get('name')} (it would put the pod back)"
            plan.ignored.append(entry)
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            entry.why = "finished"
            plan.ignored.append(entry)
            continue
        entry.pdbs = pdbs_covering(pod, pdbs)
        local = [v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict) and "emptyDir" in v]
        if not owner and not force:
            entry.why = "not managed by a controller: gone for good (force to evict)"
            plan.refused.append(entry)
        elif local and not delete_local_data:
            entry.why = f"emptyDir data ({', '.join(map(str, local))}) is lost (delete_local_data to evict)"
            plan.refused.append(entry)
        else:
            entry.why = f"{owner.get('kind')} {owner.get('name')}" if owner else "not managed: gone for good (forced)"
            plan.evict.append(entry)
    return plan


def still_there(pods: list[dict[str, Any]], waited: list[PodPlan]) -> list[PodPlan]:
    """Which of ``waited`` are still among ``pods`` (the node's pods now): same namespace, name and uid
    (a same-name replacement with a new uid, as a StatefulSet makes, is not the evicted pod)."""
    now = {(str((p.get("metadata") or {}).get("namespace")), str((p.get("metadata") or {}).get("name"))):
           (p.get("metadata") or {}).get("uid") for p in pods}
    out = []
    for w in waited:
        key = (w.namespace, w.name)
        if key in now and (w.uid is None or now[key] == w.uid):
            out.append(w)
    return out


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def set_unschedulable(ctl: K8sControl, node: str, value: bool) -> bool:
    """Cordon (True) or uncordon (False); returns spec.unschedulable before."""
    _check_name("node", node)
    cur = ctl._call(f"node {node}", ctl.core.read_node, node) or {}
    before = bool((cur.get("spec") or {}).get("unschedulable"))
    send(ctl, f"{'cordon' if value else 'uncordon'} node {node}", "PATCH", f"/api/v1/nodes/{node}",
         {"spec": {"unschedulable": value or None}}, "application/merge-patch+json")
    return before


def plan_drain(ctl: K8sControl, node: str, force: bool = False, delete_local_data: bool = False) -> DrainPlan:
    _check_name("node", node)
    cur = ctl._call(f"node {node}", ctl.core.read_node, node) or {}
    raw = ctl._call(f"pods on {node}", ctl.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}")
    pods = [p for p in (raw or {}).get("items") or [] if isinstance(p, dict)]
    pdbs: list[dict[str, Any]] = []
    for ns in sorted({str((p.get("metadata") or {}).get("namespace")) for p in pods}):
        pdbs += list_pdbs(ctl, ns)
    return classify(node, bool((cur.get("spec") or {}).get("unschedulable")), pods, pdbs, force, delete_local_data)


def list_pdbs(ctl: K8sControl, namespace: str) -> list[dict[str, Any]]:
    """The namespace's PodDisruptionBudgets (policy/v1beta1: the Python client 37 has no typed API for it)."""
    _check_name("namespace", namespace)
    got = send(ctl, f"disruption budgets in {namespace}", "GET",
               f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets", None, "application/json")
    return [b for b in (got or {}).get("items") or [] if isinstance(b, dict)]


def evict(ctl: K8sControl, namespace: str, name: str, uid: str | None = None) -> Eviction:
    body: dict[str, Any] = {"apiVersion": "policy/v1beta1", "kind": "Eviction",
                            "metadata": {"name": name, "namespace": namespace}}
    if uid:
        body["deleteOptions"] = {"preconditions": {"uid": uid}}
    try:
        send(ctl, f"evict {namespace}/{name}", "POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
             body, "application/json")
    except K8sControlError as e:
        if e.status == 429:  # a PodDisruptionBudget allows no disruption now: said, not retried
            return Eviction(namespace, name, False, f"refused by its PodDisruptionBudget: {e}")
        return Eviction(namespace, name, False, str(e))
    return Eviction(namespace, name, True, "evicted")


def drain(ctl: K8sControl, plan: DrainPlan) -> list[Eviction]:
    """Cordon, then evict the plan's pods (refused and ignored pods are left where they are)."""
    if not plan.unschedulable:
        set_unschedulable(ctl, plan.node, True)
    return [evict(ctl, p.namespace, p.name, p.uid) for p in plan.evict]


#: How long a drain waits for the evicted pods to go unless told otherwise. kubectl's own default is 0
#: (wait for ever); a dashboard worker or a script should not hang on a pod whose kubelet is gone.
WAIT_DEFAULT_S = 300.0


@dataclass
class Waited:
    gone: list[PodPlan]
    left: list[PodPlan]  # still on the node when the wait ended
    waited_s: float

    def text(self) -> str:
        total = len(self.gone) + len(self.left)
        out = f"{len(self.gone)} of {total} pod(s) gone after {self.waited_s:.0f} s"
        if self.left:
            out += "; still there: " + ", ".join(f"{p.namespace}/{p.name}" for p in self.left[:10])
            out += f" and {len(self.left) - 10} more" if len(self.left) > 10 else ""
        return out


def evicted_pods(plan: DrainPlan, results: list[Eviction]) -> list[PodPlan]:
    """The plan's pods whose eviction the API server accepted (a PDB's 429 stays reported, not waited on)."""
    ok = {(r.namespace, r.name) for r in results if r.ok}
    return [p for p in plan.evict if (p.namespace, p.name) in ok]


def wait_gone(ctl: K8sControl, node: str, pods: list[PodPlan], timeout_s: float = WAIT_DEFAULT_S,
              progress: Callable[[int, int], None] | None = None, poll_s: float = 1.0,
              stop: Callable[[], bool] | None = None) -> Waited:
    """Poll the node's pods (one list per ``poll_s``) until every pod of ``pods`` has left it or
    ``timeout_s`` passed; ``progress(gone, total)`` each time the count changes."""
    _check_name("node", node)
    start = time.monotonic()
    left = list(pods)
    shown = -1
    while True:
        if left:
            raw = ctl._call(f"pods on {node}", ctl.core.list_pod_for_all_namespaces,
                            field_selector=f"spec.nodeName={node}")
            left = still_there([p for p in (raw or {}).get("items") or [] if isinstance(p, dict)], left)
        gone = len(pods) - len(left)
        if progress is not None and gone != shown:
            progress(gone, len(pods))
            shown = gone
        elapsed = time.monotonic() - start
        if not left or elapsed >= timeout_s or (stop is not None and stop()):
            return Waited(gone=[p for p in pods if p not in left], left=left, waited_s=elapsed)
        time.sleep(min(poll_s, max(0.0, timeout_s - elapsed)))
