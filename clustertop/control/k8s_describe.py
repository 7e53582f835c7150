"""Provides the events of one Kubernetes object and a describe text (its key fields, conditions, events).

- ``object_events``: core/v1 Events whose ``involvedObject`` is the object (a fieldSelector on its kind,
  name and namespace), oldest first, as ``Event``.
- ``describe``: a short, readable summary of a Pod, Deployment, Job or Node in the spirit of
  ``kubectl describe``: a few key fields, the status conditions, then the events.

Everything here is text from the API server: callers make it inert (``wire.text.inert``) before it
reaches a terminal or markup. ``describe_lines`` is pure and takes the API's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustertop.control.kubernetes import K8sControl, K8sControlError, _check_name

KINDS = ("Pod", "Deployment", "Job", "Node")
#: Events shown at most (the newest), so one noisy object cannot flood a dialog.
MAX_EVENTS = 50


@dataclass
class Event:
    type: str | None
    reason: str | None
    message: str | None
    count: int | None
    last: str | None  # lastTimestamp (or eventTime, or firstTimestamp)
    source: str | None

    def text(self) -> str:
        n = "" if self.count in (None, 1) else f" (x{self.count})"
        return (f"{self.last or 'N/A'} {self.type or '?'} {self.reason or '?'}{n}: {self.message or ''}"
                f"{f' [{self.source}]' if self.source else ''}")


def parse_events(raw: Any) -> list[Event]:
    out = []
    items = (raw.get("items") or []) if isinstance(raw, dict) else []
    for e in items:
        if not isinstance(e, dict):
            continue
        src: dict[str, Any] = e["source"] if isinstance(e.get("source"), dict) else {}
        count = e.get("count")
        out.append(Event(type=_s(e.get("type")), reason=_s(e.get("reason")), message=_s(e.get("message")),
                         count=count if isinstance(count, int) and not isinstance(count, bool) else None,
                         last=_s(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")),
                         source=_s(src.get("component") or e.get("reportingComponent"))))
    return sorted(out, key=lambda ev: ev.last or "")[-MAX_EVENTS:]


def _s(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def _fields(kind: str, obj: dict[str, Any]) -> list[tuple[str, Any]]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        cs = [c for c in st.get("containerStatuses") or [] if isinstance(c, dict)]
        return [("node", spec.get("nodeName")), ("phase", st.get("phase")), ("pod IP", st.get("podIP")),
                ("started", st.get("startTime")), ("restarts", sum(int(c.get("restartCount") or 0) for c in cs)
                                                   if cs else None),
                *[(f"container {c.get('name')}", f"{c.get('image')} ready={c.get('ready')} "
                   f"state={','.join((c.get('state') or {}).keys()) or 'N/A'}") for c in cs]]
    if kind == "Deployment":
        tmpl = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        return [("replicas", f"{st.get('replicas', 0)} current, {st.get('updatedReplicas', 0)} updated, "
                             f"{st.get('availableReplicas', 0)} available of {spec.get('replicas', 'N/A')} wanted"),
                ("strategy", (spec.get("strategy") or {}).get("type")),
                ("revision", ((obj.get("metadata") or {}).get("annotations") or {}).get(
                    "deployment.kubernetes.io/revision")),
                ("change-cause", ((obj.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/change-cause")),
                ("paused", bool(spec.get("paused"))),
                *[(f"container {c.get('name')}", c.get("image")) for c in tmpl if isinstance(c, dict)]]
    if kind == "Job":
        return [("completions", spec.get("completions")), ("parallelism", spec.get("parallelism")),
                ("active", st.get("active")), ("succeeded", st.get("succeeded")), ("failed", st.get("failed")),
                ("started", st.get("startTime")), ("completed", st.get("completionTime"))]
    info = st.get("nodeInfo") or {}
    return [("unschedulable", bool(spec.get("unschedulable"))),
            ("taints", ", ".join(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}"
                                 for t in spec.get("taints") or [] if isinstance(t, dict)) or None),
            ("kubelet", info.get("kubeletVersion")),
            ("capacity", ", ".join(f"{k}={v}" for k, v in (st.get("capacity") or {}).items()) or None),
            ("allocatable", ", ".join(f"{k}={v}" for k, v in (st.get("allocatable") or {}).items()) or None)]


def describe_lines(kind: str, obj: dict[str, Any], events: list[Event]) -> list[str]:
    """The describe text, one string per line (uninterpreted: escape before showing)."""
    md = obj.get("metadata") or {}
    where = f"{md.get('namespace')}/" if md.get("namespace") else ""
    lines = [f"{kind} {where}{md.get('name')}", f"  created: {md.get('creationTimestamp') or 'N/A'}"]
    labels = md.get("labels") or {}
    if labels:
        lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in labels.items()))
    owners = [f"{r.get('kind')} {r.get('name')}" for r in md.get("ownerReferences") or [] if isinstance(r, dict)]
    if owners:
        lines.append("  controlled by: " + ", ".join(owners))
    for key, value in _fields(kind, obj):
        lines.append(f"  {key}: {'N/A' if value is None else value}")
    conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
    lines.append("conditions:" if conds else "conditions: none")
    for c in conds:
        extra = " ".join(x for x in (c.get("reason"), c.get("message")) if x)
        lines.append(f"  {c.get('type')}={c.get('status')}" + (f" ({extra})" if extra else ""))
    lines.append("events:" if events else "events: none (kept about an hour by the API server)")
    lines += [f"  {e.text()}" for e in events]
    return lines


def _read(ctl: K8sControl, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    what = f"{kind.lower()} {namespace + '/' if namespace else ''}{name}"
    if kind == "Node":
        obj = ctl._call(what, ctl.core.read_node, name)
    elif namespace is None:
        raise K8sControlError(f"{kind} needs a namespace")
    elif kind == "Pod":
        obj = ctl._call(what, ctl.core.read_namespaced_pod, name, namespace)
    elif kind == "Deployment":
        obj = ctl._call(what, ctl.apps.read_namespaced_deployment, name, namespace)
    else:
        obj = ctl._call(what, ctl.batch.read_namespaced_job, name, namespace)
    return obj if isinstance(obj, dict) else {}


def object_events(ctl: K8sControl, kind: str, namespace: str | None, name: str) -> list[Event]:
    if kind not in KINDS:
        raise K8sControlError(f"kind {kind!r} not one of {', '.join(KINDS)}")
    _check_name("name", name)
    sel = f"involvedObject.kind={kind},involvedObject.name={name}"
    if kind == "Node":  # a Node's events are recorded in the default namespace (kubelet, controllers)
        raw = ctl._call(f"events of node {name}", ctl.core.list_event_for_all_namespaces, field_selector=sel)
    else:
        if namespace is None:
            raise K8sControlError(f"{kind} needs a namespace")
        _check_name("namespace", namespace)
        raw = ctl._call(f"events of {namespace}/{name}", ctl.core.list_namespaced_event, namespace,
                        field_selector=sel + f",involvedObject.namespace={namespace}")
    return parse_events(raw)


def describe(ctl: K8sControl, kind: str, namespace: str | None, name: str, with_events: bool = True) -> list[str]:
    """``with_events`` False (the operator may not list events): said in place of the events."""
    events = object_events(ctl, kind, namespace, name) if with_events else []
    lines = describe_lines(kind, _read(ctl, kind, namespace, name), events)
    if not with_events:
        lines[-1] = "events: not shown (Kubernetes says you may not list events here)"
    return lines
