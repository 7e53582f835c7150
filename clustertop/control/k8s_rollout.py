"""Provides Deployment rollouts for the operator: history, status, restart and undo, kubectl's way.

- ``rollout_history``: one ``Revision`` per ReplicaSet the Deployment controls, numbered by the
  ``deployment.kubernetes.io/revision`` annotation the deployment controller sets, with the
  ``kubernetes.io/change-cause`` annotation it copies from the Deployment (None when nobody gave one).
- ``rollout_status``: kubectl's reading of the Deployment's status (observed generation, updated,
  old and available replicas, the progress deadline), as ``RolloutStatus``.
- ``restart``: patches the pod template annotation ``kubectl.kubernetes.io/restartedAt``: a new
  template, so the controller replaces every pod in a rolling update (a new revision).
- ``plan_undo`` / ``undo``: apps/v1 has no rollback API, so like ``kubectl rollout undo`` the target
  ReplicaSet's pod template (without its ``pod-template-hash`` label) is copied into the Deployment
  with a JSON patch, together with the ReplicaSet's annotations (its change-cause); the controller then
  adopts that ReplicaSet again under a new revision number. The patch carries a ``test`` of the
  Deployment's resourceVersion, so an undo planned on a Deployment that changed since is refused (409/422).

The parsers (``history_from``, ``status_from``, ``undo_patch``) are pure and take the API's JSON.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any

from clustertop.control.kubernetes import K8sControl, K8sControlError, _check_name

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
#: Annotations kubectl never copies from a ReplicaSet onto the Deployment on undo (the controller's own).
SKIP_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration", REVISION,
                              "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                              "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"})


@dataclass
class Revision:
    number: int
    replicaset: str
    change_cause: str | None
    images: list[str] = field(default_factory=list)
    replicas: int | None = None  # the ReplicaSet's status.replicas now
    template: dict[str, Any] = field(default_factory=dict, repr=False)
    annotations: dict[str, str] = field(default_factory=dict, repr=False)

    def text(self) -> str:
        return (f"revision {self.number}: {self.change_cause or '<no change-cause>'} "
                f"[{', '.join(self.images) or 'no containers'}] (ReplicaSet {self.replicaset}, "
                f"{'N/A' if self.replicas is None else self.replicas} pod(s))")


@dataclass
class RolloutStatus:
    done: bool
    failed: bool
    text: str


@dataclass
class UndoPlan:
    namespace: str
    name: str
    current: int | None  # the Deployment's revision now
    target: Revision
    images_before: list[str]
    patch: list[dict[str, Any]] = field(repr=False, default_factory=list)

    def text(self) -> str:
        return (f"deployment {self.namespace}/{self.name}: back from revision "
                f"{'N/A' if self.current is None else self.current} to the pod template of revision "
                f"{self.target.number} ({self.target.change_cause or '<no change-cause>'}); images "
                f"{', '.join(self.images_before) or 'none'} -> {', '.join(self.target.images) or 'none'}; "
                f"every pod is replaced in a rolling update (a new revision)")


# ---------------------------------------------------------------------------------------------
# Pure
# ---------------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _images(template: dict[str, Any]) -> list[str]:
    spec = template.get("spec") if isinstance(template, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    return [f"{c.get('name')}={c.get('image')}" for c in containers or [] if isinstance(c, dict)]


def _md(obj: Any) -> dict[str, Any]:
    md = obj.get("metadata") if isinstance(obj, dict) else None
    return md if isinstance(md, dict) else {}


def history_from(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> list[Revision]:
    """The Deployment's revisions, oldest first, from the ReplicaSets it controls (by owner uid)."""
    uid = _md(deployment).get("uid")
    out: list[Revision] = []
    for rs in replicasets:
        md = _md(rs)
        owners = [r for r in md.get("ownerReferences") or [] if isinstance(r, dict) and r.get("controller")]
        if not uid or not any(r.get("uid") == uid for r in owners):
            continue
        ann: dict[str, Any] = md["annotations"] if isinstance(md.get("annotations"), dict) else {}
        number = _int(ann.get(REVISION))
        if number is None:
            continue
        template = ((rs.get("spec") or {}).get("template")) or {}
        cause = ann.get(CHANGE_CAUSE)
        out.append(Revision(number=number, replicaset=str(md.get("name")), change_cause=str(cause) if cause else None,
                            images=_images(template), replicas=_int((rs.get("status") or {}).get("replicas", 0)),
                            template=template, annotations={str(k): str(v) for k, v in ann.items()}))
    return sorted(out, key=lambda r: r.number)


def status_from(deployment: dict[str, Any]) -> RolloutStatus:
    """kubectl's DeploymentStatusViewer: done once every replica is updated and available."""
    name = _md(deployment).get("name")
    spec, st = deployment.get("spec") or {}, deployment.get("status") or {}
    observed = _int(st.get("observedGeneration"))
    if observed is None or (_int(_md(deployment).get("generation")) or 0) > observed:
        return RolloutStatus(False, False, "waiting for the deployment spec update to be observed")
    for c in st.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(False, True, f"deployment {name} exceeded its progress deadline")
    want = _int(spec.get("replicas"))
    updated = _int(st.get("updatedReplicas")) or 0
    replicas = _int(st.get("replicas")) or 0
    available = _int(st.get("availableReplicas")) or 0
    if want is not None and updated < want:
        return RolloutStatus(False, False, f"{updated} of {want} new replicas updated")
    if replicas > updated:
        return RolloutStatus(False, False, f"{replicas - updated} old replicas pending termination")
    if available < updated:
        return RolloutStatus(False, False, f"{available} of {updated} updated replicas available")
    return RolloutStatus(True, False, f"deployment {name} successfully rolled out")


def undo_patch(deployment: dict[str, Any], target: Revision) -> list[dict[str, Any]]:
    """kubectl's rollback patch: the target's template without pod-template-hash, and annotations =
    the Deployment's controller annotations + the ReplicaSet's others (its change-cause)."""
    template = copy.deepcopy(target.template)
    labels = _md(template).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    current = _md(deployment).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in SKIP_ANNOTATIONS}
    annotations.update({k: v for k, v in target.annotations.items() if k not in SKIP_ANNOTATIONS})
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": _md(deployment).get("resourceVersion")},
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations}]


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def send(ctl: K8sControl, what: str, method: str, path: str, body: Any, content_type: str,
         query: list[tuple[str, str]] | None = None) -> Any:
    """A raw JSON request (PATCH with an explicit patch type, POST of a subresource) through ``ctl``'s
    client, its timeout and its error handling; the answer as decoded JSON."""
    return ctl._call(what, ctl._raw, method, path, body, query or [], content_type)


def _deployment(ctl: K8sControl, namespace: str, name: str) -> dict[str, Any]:
    _check_name("namespace", namespace)
    _check_name("deployment", name)
    obj = ctl._call(f"deployment {namespace}/{name}", ctl.apps.read_namespaced_deployment, name, namespace)
    return obj if isinstance(obj, dict) else {}


def rollout_history(ctl: K8sControl, namespace: str, name: str) -> list[Revision]:
    dep = _deployment(ctl, namespace, name)
    sel = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    raw = ctl._call(f"replicasets of {namespace}/{name}", ctl.apps.list_namespaced_replica_set, namespace,
                    label_selector=",".join(f"{k}={v}" for k, v in sel.items()) or None)
    return history_from(dep, [rs for rs in (raw or {}).get("items") or [] if isinstance(rs, dict)])


def rollout_status(ctl: K8sControl, namespace: str, name: str) -> RolloutStatus:
    return status_from(_deployment(ctl, namespace, name))


def restart(ctl: K8sControl, namespace: str, name: str, now: datetime.datetime | None = None) -> str:
    """Set the restartedAt pod template annotation (as ``kubectl rollout restart``); returns its value."""
    _deployment(ctl, namespace, name)  # a clear 404 before the patch
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    send(ctl, f"restart deployment {namespace}/{name}", "PATCH",
         f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", body, "application/strategic-merge-patch+json")
    return stamp


def plan_undo(ctl: K8sControl, namespace: str, name: str, to_revision: int | None = None) -> UndoPlan:
    """What an undo would do; nothing is changed. ``to_revision`` None: the one before the current."""
    dep = _deployment(ctl, namespace, name)
    if (dep.get("spec") or {}).get("paused"):
        raise K8sControlError(f"deployment {namespace}/{name} is paused: resume it before an undo")
    revs = rollout_history(ctl, namespace, name)
    current = _int((_md(dep).get("annotations") or {}).get(REVISION))
    if to_revision is None:
        older = [r for r in revs if current is None or r.number < current]
        if not older:
            raise K8sControlError(f"deployment {namespace}/{name}: no previous revision to go back to")
        target = older[-1]
    else:
        found = [r for r in revs if r.number == to_revision]
        if not found:
            raise K8sControlError(f"deployment {namespace}/{name}: no revision {to_revision} "
                                  f"(have: {', '.join(str(r.number) for r in revs) or 'none'})")
        target = found[0]
    if target.number == current:
        raise K8sControlError(f"deployment {namespace}/{name}: revision {target.number} is the current one")
    tmpl = (dep.get("spec") or {}).get("template") or {}
    return UndoPlan(namespace=namespace, name=name, current=current, target=target, images_before=_images(tmpl),
                    patch=undo_patch(dep, target))


def undo(ctl: K8sControl, plan: UndoPlan) -> None:
    send(ctl, f"undo deployment {plan.namespace}/{plan.name}", "PATCH",
         f"/apis/apps/v1/namespaces/{plan.namespace}/deployments/{plan.name}", plan.patch,
         "application/json-patch+json")
