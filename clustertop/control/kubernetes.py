"""Provides Kubernetes steering for the dashboard and the CLI, with the operator's own kubeconfig.

Every action is split so a confirmation can say what it will cost before anything happens:

- ``preview_delete_pod`` / ``delete_pod``: phase, restarts, GPUs, owner, and whether something will
  recreate it ("the Job will recreate it") or not ("not managed: gone for good").
- ``preview_delete_job`` / ``delete_job``: its pods go with it (propagation Background: batch/v1
  Jobs would otherwise *orphan* their pods, the API's legacy default).
- ``scale_deployment``: returns the replica count before and after.
- ``prepare_job`` / ``create_job``: a Job from a YAML template whose ``{{ name }}`` placeholders are
  filled in the *parsed* structure (values never pass through a YAML parser, so a value cannot add
  keys or documents), sent first as a server-side dry run (``dry_run="All"``): the plan holds the object
  the server would create, with defaults and admission applied; ``create_job`` then creates it.
- ``pod_logs``: a kubelet serves logs; when none answers, a clear ``K8sControlError``.
- ``can_i``: a SelfSubjectAccessReview, so the dashboard offers only the keys the operator may use.

Talks only to the API server; imports neither agents nor the dashboard. Errors are
``K8sControlError`` with the API server's own message.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from clustertop.collectors import kubernetes_parse as k8s_parse
from clustertop.errors import first_line

#: Which API group a plain resource name belongs to (for can_i).
GROUPS = {"pods": "", "pods/log": "", "nodes": "", "namespaces": "", "jobs": "batch", "cronjobs": "batch",
          "deployments": "apps", "deployments/scale": "apps", "replicasets": "apps", "statefulsets": "apps",
          "daemonsets": "apps"}
#: Owner kinds whose controller replaces a deleted pod, in words for the confirmation.
RECREATES = {"Job": "the Job will recreate it (unless it has finished)",
             "ReplicaSet": "its ReplicaSet will recreate it",
             "StatefulSet": "its StatefulSet will recreate it with the same name",
             "DaemonSet": "its DaemonSet will recreate it on the same node",
             "ReplicationController": "its ReplicationController will recreate it"}

#: Keys whose values (whole subtrees: args lists, label maps) the API only accepts as strings: a
#: placeholder there is text even when it fills the whole value ("--epochs", "{{ epochs }}" -> "90").
STRING_KEYS = frozenset({"args", "command", "labels", "annotations", "nodeSelector", "name", "generateName",
                         "namespace", "image", "value", "serviceAccountName", "workingDir", "mountPath",
                         "claimName", "key", "operator", "effect", "priorityClassName", "schedulerName"})
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class K8sControlError(Exception):
    """An action failed or was refused; str() is one line for the status bar."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TemplateError(K8sControlError):
    """The Job template or its parameters do not fit; nothing was sent."""


@dataclass
class Impact:
    """What a delete will cost, for the confirmation text."""

    kind: str  # "Pod" | "Job"
    namespace: str
    name: str
    phase: str | None = None
    restarts: int | None = None
    gpus: int | None = None
    node: str | None = None
    owner_kind: str | None = None
    owner: str | None = None
    recreated: bool = False
    pods: int | None = None  # Job: pods deleted with it
    running: int | None = None  # Job: of which still running
    consequence: str = ""
    uid: str | None = None  # the object the operator was shown: a delete is refused if the name now means another


    def text(self) -> str:
        """One paragraph for a confirmation dialog (names are node text: escape before markup)."""
        if self.kind == "Pod":
            parts = [f"pod {self.namespace}/{self.name}", f"phase {self.phase or 'N/A'}",
                     f"restarts {'N/A' if self.restarts is None else self.restarts}"]
            if self.gpus:
                parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''} on {self.node or 'no node'}")
            if self.owner_kind:
                parts.append(f"owned by {self.owner_kind} {self.owner}")
        else:
            parts = [f"job {self.namespace}/{self.name}", f"{self.pods} pod(s), {self.running} running"]
        return ", ".join(parts) + f": {self.consequence}"


@dataclass
class JobPlan:
    """A filled-in template that passed the server-side dry run; ``create_job`` sends it for real."""

    namespace: str
    body: dict[str, Any]  # what we send
    preview: dict[str, Any]  # what the server would create (defaults and admission applied)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        md = self.preview.get("metadata") or {}
        return str(md.get("name") or md.get("generateName") or "?")


@dataclass
class Created:
    namespace: str
    name: str
    uid: str | None


# ---------------------------------------------------------------------------------------------
# Templates (pure)
# ---------------------------------------------------------------------------------------------

Scalar = str | int | float | bool


def parse_param_text(text: str) -> Scalar:
    """A parameter typed on a command line: "3" -> 3, "0.5" -> 0.5, "true" -> True, else the text.

    Deliberately narrower than YAML's own resolver: "007", "1e3", "yes", "null" and anything with
    structure stay plain strings.
    """
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
        return int(text)
    if re.fullmatch(r"-?(0|[1-9][0-9]*)\.[0-9]+", text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def placeholders(obj: Any) -> set[str]:
    """Every placeholder name in a parsed template."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            found |= placeholders(k) | placeholders(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= placeholders(v)
    elif isinstance(obj, str):
        found.update(_PLACEHOLDER.findall(obj))
    return found


def _fill(obj: Any, params: dict[str, Scalar], path: str, text_only: bool = False) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and "{{" in k:
                raise TemplateError(f"template: placeholder in a key at {path or '/'} ({k!r}): only values may vary")
            out[k] = _fill(v, params, f"{path}/{k}", text_only or k in STRING_KEYS)
        return out
    if isinstance(obj, list):
        return [_fill(v, params, f"{path}/{i}", text_only) for i, v in enumerate(obj)]
    if not isinstance(obj, str) or "{{" not in obj:
        return obj
    whole = _PLACEHOLDER.fullmatch(obj.strip())
    if whole:
        # The whole value is one placeholder: the parameter's own type (parallelism: 2 stays a
        # number), except where the API takes only strings.
        value = params[whole.group(1)]
        return _text(value) if text_only else value
    filled = _PLACEHOLDER.sub(lambda m: _text(params[m.group(1)]), obj)
    if "{{" in filled or "}}" in filled:
        raise TemplateError(f"template: malformed placeholder at {path}: {obj!r} (use {{{{ name }}}})")
    return filled


def _text(value: Scalar) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def fill_template(template: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Substitute ``{{ name }}`` placeholders in a parsed template; every parameter must be used and
    every placeholder given. Values are scalars only and are never parsed as YAML."""
    if not isinstance(template, dict):
        raise TemplateError("template: not a YAML mapping (expected one Job manifest)")
    wanted = placeholders(template)
    missing = sorted(wanted - set(params))
    if missing:
        raise TemplateError(f"template: missing parameter(s): {', '.join(missing)}")
    extra = sorted(set(params) - wanted)
    if extra:
        raise TemplateError(f"template: unknown parameter(s): {', '.join(extra)} (template uses: "
                            f"{', '.join(sorted(wanted)) or 'none'})")
    for k, v in params.items():
        if not isinstance(v, str | int | float | bool):
            raise TemplateError(f"parameter {k}: must be a string, number or boolean, got {type(v).__name__}")
        if isinstance(v, str) and "\x00" in v:
            raise TemplateError(f"parameter {k}: NUL byte not allowed")
    body = _fill(copy.deepcopy(template), params, "")
    if body.get("kind") != "Job" or not str(body.get("apiVersion", "")).startswith("batch/"):
        raise TemplateError(f"template: expected kind Job (batch/v1), got {body.get('kind')!r} "
                            f"{body.get('apiVersion')!r}")
    md = body.get("metadata")
    if not isinstance(md, dict) or not (md.get("name") or md.get("generateName")):
        raise TemplateError("template: metadata.name or metadata.generateName is required")
    return body


def load_template(path: str) -> Any:
    import yaml  # type: ignore[import-untyped]  # PyYAML comes with the kubernetes client

    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as e:
        raise TemplateError(f"template {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        hint = " (quote placeholders: image: \"{{ image }}\")" if "{{" in str(e) or "unhashable" in str(e) else ""
        raise TemplateError(f"template {path}: not valid YAML: {first_line(e)}{hint}") from None
    if len(docs) != 1:
        raise TemplateError(f"template {path}: expected exactly one YAML document, found {len(docs)}")
    return docs[0]


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or len(value) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", value):
        raise K8sControlError(f"{what} {value!r} is not a valid Kubernetes name")


class K8sControl:
    """Actions on one cluster with the operator's kubeconfig (not the agents' read-only one)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, timeout_s: float = 10.0,
                 api_client: Any | None = None) -> None:
        from kubernetes import client

        from clustertop.collectors.kubernetes import KubernetesError, build_api_client

        try:
            self.api = api_client or build_api_client(kubeconfig, context)
        except KubernetesError as e:
            raise K8sControlError(str(e)) from None
        self._client = client
        self.timeout_s = timeout_s
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.authz = client.AuthorizationV1Api(self.api)
        self.server = str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()

    def _call(self, what: str, fn: Any, *args: Any, text: bool = False, **kwargs: Any) -> Any:
        """fn(...) with the timeout; the answer as decoded JSON (or str with text=True).
        Errors -> K8sControlError carrying the API server's message and HTTP status."""
        import urllib3

        from clustertop.collectors.kubernetes import _reason_text, api_status_message

        kwargs["_request_timeout"] = self.timeout_s
        kwargs["_preload_content"] = False  # raw JSON: the same dicts k8s_parse reads from the collector
        try:
            resp = fn(*args, **kwargs)
        except self._client.exceptions.ApiException as e:
            msg = api_status_message(e.body) or str(e.reason or "")
            raise K8sControlError(f"{what}: {msg or f'HTTP {e.status}'}", status=e.status) from None
        except (ValueError, TypeError) as e:  # the client's own validation (pydantic): nothing was sent
            raise K8sControlError(f"{what}: refused by the client before sending: {first_line(e)}") from None
        except urllib3.exceptions.MaxRetryError as e:
            raise K8sControlError(f"{what}: Kubernetes API unreachable: {self.server}: {_reason_text(e.reason)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise K8sControlError(f"{what}: Kubernetes API unreachable: {self.server}: {_reason_text(e)}") from None
        data = resp.data
        if text:
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise K8sControlError(f"{what}: answer is not JSON") from None

    def _post(self, path: str, body: dict[str, Any], query: list[tuple[str, str]], *,
              _request_timeout: float, _preload_content: bool = False) -> Any:
        """POST raw JSON. The typed client methods validate bodies against the client's models first
        (client 37 refuses a number where the model says string, although the API server accepts a
        number for a quantity); the API server is the authority on what a Job may be."""
        return self._raw("POST", path, body, query, "application/json", _request_timeout=_request_timeout)

    def _raw(self, method: str, path: str, body: Any, query: list[tuple[str, str]], content_type: str, *,
             _request_timeout: float, _preload_content: bool = False) -> Any:
        """One raw JSON request through the client's auth and connection pool (for calls the typed client
        lacks or validates wrongly: a Job body, a patch with an explicit type, the Eviction subresource)."""
        req = self.api.param_serialize(method, path, query_params=query, body=body, auth_settings=["BearerToken"],
                                       header_params={"Content-Type": content_type, "Accept": "application/json"})
        resp = self.api.call_api(*req, _request_timeout=_request_timeout)
        resp.read()
        if not 200 <= resp.status <= 299:
            raise self._client.exceptions.ApiException.from_response(http_resp=resp, body=None, data=None)
        return resp

    # -- pods ---------------------------------------------------------------------------------

    def preview_delete_pod(self, namespace: str, name: str) -> Impact:
        _check_name("namespace", namespace)
        _check_name("pod", name)
        obj = self._call(f"pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace)
        p = k8s_parse.parse_pod(obj)
        imp = Impact(kind="Pod", namespace=namespace, name=name, phase=p.phase, restarts=p.restarts, gpus=p.gpus,
                     node=p.node, owner_kind=p.owner_kind, owner=p.owner, uid=p.uid)
        if p.owner_kind in RECREATES:
            imp.recreated = True
            imp.consequence = RECREATES[p.owner_kind]
            if p.owner_kind == "ReplicaSet":
                imp.consequence += " (a Deployment's pods come back as new pods with new names)"
        elif p.owner_kind:
            imp.consequence = f"owned by {p.owner_kind} {p.owner}: that controller decides whether it comes back"
        else:
            imp.consequence = "not managed: gone for good"
        if p.phase == "Running":
            imp.consequence += "; its running processes are killed"
        return imp

    def delete_pod(self, namespace: str, name: str, uid: str | None = None,
                   grace_period_s: int | None = None) -> Impact:
        """Delete the pod the operator confirmed: pass ``uid`` from ``preview_delete_pod`` and the API
        server refuses (409) if the name has since been reused (a StatefulSet's replacement, a re-run)."""
        imp = self.preview_delete_pod(namespace, name)
        # Options in the body: with a DeleteOptions body the server ignores the query parameters.
        body: dict[str, Any] = _preconditions(uid or imp.uid)
        if grace_period_s is not None:
            body["gracePeriodSeconds"] = grace_period_s
        self._call(f"delete pod {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace, body=body)
        return imp

    def pod_logs(self, namespace: str, name: str, container: str | None = None, tail_lines: int = 200,
                 previous: bool = False) -> str:
        """The end of a container's log; ``previous``: of the instance before its last restart (what a
        container in CrashLoopBackOff printed before it died, ``kubectl logs --previous``)."""
        _check_name("namespace", namespace)
        _check_name("pod", name)
        kwargs: dict[str, Any] = {"tail_lines": tail_lines}
        if container:
            kwargs["container"] = container
        if previous:
            kwargs["previous"] = True
        try:
            return str(self._call(f"logs of {namespace}/{name}", self.core.read_namespaced_pod_log, name, namespace,
                                  text=True, **kwargs))
        except K8sControlError as e:
            if previous and e.status == 400:
                # The kubelet's words ("previous terminated container ... not found"): it has not restarted
                # (or its old log was rotated away), which is an answer, not a broken kubelet.
                raise K8sControlError(f"no previous log for {namespace}/{name}: the container has not restarted, or "
                                      f"its old log is gone ({e})", status=e.status) from None
            if e.status is not None and (e.status >= 500 or e.status == 400):
                # The API server proxies logs from the node's kubelet: a 5xx (or "container not
                # running") means the kubelet did not or cannot serve them.
                raise K8sControlError(f"logs unavailable for {namespace}/{name}: the node's kubelet did not "
                                      f"serve them ({e})", status=e.status) from None
            raise

    # -- jobs ---------------------------------------------------------------------------------

    def preview_delete_job(self, namespace: str, name: str) -> Impact:
        _check_name("namespace", namespace)
        _check_name("job", name)
        job = self._call(f"job {namespace}/{name}", self.batch.read_namespaced_job, name, namespace)
        uid = (job.get("metadata") or {}).get("uid")
        raw = self._call(f"pods of job {namespace}/{name}", self.core.list_namespaced_pod, namespace,
                         label_selector=f"controller-uid={uid}" if uid else f"job-name={name}")
        pods = k8s_parse.parse_pods(raw)
        w = k8s_parse.parse_job(job)
        running = sum(1 for p in pods if p.phase == "Running")
        done = bool(w.succeeded and not w.active)
        consequence = (f"its {len(pods)} pod(s) are deleted with it" + (f", {running} of them running" if running else "")
                       + ("; not managed by anything: gone for good" if not _owned(job) else
                          f"; owned by {_owned(job)}, which may create it again"))
        if done:
            consequence = "finished job: " + consequence
        return Impact(kind="Job", namespace=namespace, name=name, pods=len(pods), running=running, uid=uid,
                      gpus=sum(p.gpus for p in pods if p.holds_resources()),
                      owner_kind=_owner_kind(job), owner=_owner_name(job), consequence=consequence)

    def delete_job(self, namespace: str, name: str, uid: str | None = None) -> Impact:
        imp = self.preview_delete_job(namespace, name)
        # Background: the garbage collector deletes the pods after the Job. Without an explicit
        # policy batch/v1 orphans them: the pods would keep running, holding their GPUs. In the body:
        # once a request has a DeleteOptions body the server ignores the query parameters.
        body = {**_preconditions(uid or imp.uid), "propagationPolicy": "Background"}
        self._call(f"delete job {namespace}/{name}", self.batch.delete_namespaced_job, name, namespace, body=body)
        return imp

    def prepare_job(self, template_path: str, params: dict[str, Any], namespace: str | None = None) -> JobPlan:
        """Fill the template and ask the server to dry-run it; nothing is created."""
        body = fill_template(load_template(template_path), params)
        md = body["metadata"]
        ns = namespace or md.get("namespace") or "default"
        if md.get("namespace") and namespace and md["namespace"] != namespace:
            raise TemplateError(f"template says namespace {md['namespace']!r}, asked for {namespace!r}")
        _check_name("namespace", ns)
        md["namespace"] = ns
        preview = self._call(f"dry run of job in {ns}", self._post, f"/apis/batch/v1/namespaces/{ns}/jobs", body,
                             [("dryRun", "All")])
        return JobPlan(namespace=ns, body=body, preview=preview, params=dict(params))

    def create_job(self, plan: JobPlan) -> Created:
        obj = self._call(f"create job in {plan.namespace}", self._post,
                         f"/apis/batch/v1/namespaces/{plan.namespace}/jobs", plan.body, [])
        md = obj.get("metadata") or {}
        return Created(namespace=plan.namespace, name=str(md.get("name")), uid=md.get("uid"))

    # -- deployments --------------------------------------------------------------------------

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> tuple[int | None, int]:
        """Set spec.replicas through the scale subresource; returns (before, after)."""
        _check_name("namespace", namespace)
        _check_name("deployment", name)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise K8sControlError(f"replicas must be a whole number >= 0, got {replicas!r}")
        cur = self._call(f"deployment {namespace}/{name} scale", self.apps.read_namespaced_deployment_scale,
                         name, namespace)
        before = (cur.get("spec") or {}).get("replicas")
        new = self._call(f"scale deployment {namespace}/{name}", self.apps.patch_namespaced_deployment_scale,
                         name, namespace, {"spec": {"replicas": replicas}})
        return before, int((new.get("spec") or {}).get("replicas", replicas))

    # -- permissions --------------------------------------------------------------------------

    def can_i(self, verb: str, resource: str, namespace: str | None = None, name: str | None = None) -> bool:
        """May the operator do this? ``resource`` is "pods", "jobs", "deployments/scale", "pods/log"...
        A review that cannot be made (API down) raises; a refusal is False."""
        res, _, sub = resource.partition("/")
        attrs: dict[str, Any] = {"verb": verb, "resource": res, "group": GROUPS.get(resource, GROUPS.get(res, ""))}
        if sub:
            attrs["subresource"] = sub
        if namespace:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}}
        out = self._call(f"can-i {verb} {resource}", self.authz.create_self_subject_access_review, review)
        return bool((out.get("status") or {}).get("allowed"))

    def allowed_actions(self, namespace: str | None = None) -> dict[str, bool]:
        """The dashboard's keys, each True only when the operator may use it."""
        checks = {"delete_pod": ("delete", "pods"), "delete_job": ("delete", "jobs"),
                  "create_job": ("create", "jobs"), "scale_deployment": ("patch", "deployments/scale"),
                  "pod_logs": ("get", "pods/log"), "rollout": ("patch", "deployments"),
                  "nodes": ("patch", "nodes")}
        return {k: self.can_i(verb, res, namespace) for k, (verb, res) in checks.items()}


def _preconditions(uid: str | None) -> dict[str, Any]:
    return {"preconditions": {"uid": uid}} if uid else {}


def _owner_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    for r in refs:
        if isinstance(r, dict) and r.get("controller"):
            return r
    return None


def _owner_kind(obj: dict[str, Any]) -> str | None:
    r = _owner_ref(obj)
    return r.get("kind") if r else None


def _owner_name(obj: dict[str, Any]) -> str | None:
    r = _owner_ref(obj)
    return r.get("name") if r else None


def _owned(obj: dict[str, Any]) -> str | None:
    r = _owner_ref(obj)
    return f"{r.get('kind')} {r.get('name')}" if r else None
