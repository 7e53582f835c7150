"""Provides the ``kubernetes`` cluster-scope collector: nodes, pods, Jobs and Deployments, read-only.

Every interval, four list calls (nodes, pods, jobs, deployments), each with ``resourceVersion=0``
so the API server answers from its watch cache instead of a quorum read from etcd, and each with
``_request_timeout``. The raw JSON goes to ``clustertop.collectors.kubernetes_parse`` (pure). Per node: GPU capacity,
allocatable and allocated (the GPU requests of its non-terminated pods), abnormal conditions and
cordon; per pod: phase, reason, restarts, GPU request, owner, uid (what the ledger joins GPU
processes to).

Config, ``[collectors.kubernetes]``::

    kubeconfig = "/etc/clustertop/kubeconfig"  # default: in-cluster service account, else ~/.kube/config
    context = "prod"                           # default: the kubeconfig's current context
    namespaces = ["ml", "inference"]           # default: all namespaces
    request_timeout = 5                        # seconds per API call
    gpu_resource = "nvidia.com/gpu"            # the extended resource that counts as a GPU
    max_pods = 1000                            # pods kept on the wire (GPU and troubled pods first)

``timeout`` (like ``interval``) belongs to the agent: it bounds the whole ``collect()``; it is the
default of ``request_timeout`` when it reaches the collector. Read-only credentials are enough
(get/list on nodes, pods, jobs, deployments: tests/fixtures/k8s/rbac/clustertop-reader.yaml, the
manifest the real-cluster tests run with); a list the credentials may not read is reported in
``Kubernetes.errors`` and the rest still flows. With ``namespaces`` set, GPUs allocated per node
still need one cluster-wide list of running pods; refused, they read None (unknown), not a partial sum.

Failure: ``collect()`` raises ``KubernetesUnreachable`` ("Kubernetes API unreachable: ...") or
``KubernetesError`` (credentials refused, every list failed); ``last_good``/``last_ok_ts`` keep the
previous result so the agent publishes it with ``ok=False``. The kubernetes client is imported here
only, when the collector is built: an agent without this section never loads it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from clustertop.collectors import kubernetes_parse as k8s_parse
from clustertop.collectors.base import Context, Section
from clustertop.config import ConfigError, Invalid, Positive, convert
from clustertop.errors import first_line
from clustertop.wire import schema

SECTION = "collectors.kubernetes"

DEFAULT_INTERVAL_S = 10.0
DEFAULT_TIMEOUT_S = 5.0
#: A K8sPod is ~150 bytes on the wire; 1000 of them leave room under wire.MAX_PAYLOAD_BYTES (256 KiB).
DEFAULT_MAX_PODS = 1000
#: The server's version changes only on upgrades: ask again this often (and after every outage).
VERSION_EVERY_S = 600.0


class KubernetesError(Exception):
    """The API server could not be read; the message says why, in words, on one line."""


class KubernetesUnreachable(KubernetesError):
    """No answer at all: connection refused, timeout, TLS failure."""


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None
    context: str | None
    namespaces: tuple[str, ...] | None  # None = all namespaces
    timeout_s: float
    gpu_resource: str
    max_pods: int


class KubernetesConfig(Section):
    """``[collectors.kubernetes]``: which API server (kubeconfig and context) and what to list."""

    kubeconfig: str | None = None  # None: the service account in a pod, else the client's default
    context: str | None = None
    namespaces: list[str] | None = None  # None: all namespaces
    request_timeout: Positive | None = None  # None: `timeout`, else DEFAULT_TIMEOUT_S
    gpu_resource: str = k8s_parse.GPU_RESOURCE
    max_pods: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_PODS

    def __post_init__(self) -> None:
        if self.namespaces is not None and (not self.namespaces or not all(self.namespaces)):
            raise Invalid("namespaces", "a non-empty list of namespace names (omit it for all)")


def parse_settings(options: dict[str, Any], file: str | None) -> Settings:
    """Validate ``[collectors.kubernetes]``; every problem is a ConfigError naming the key."""
    c = convert(options, KubernetesConfig, file, SECTION)
    kubeconfig = c.kubeconfig
    if kubeconfig is not None:
        kubeconfig = os.path.expanduser(kubeconfig)
        if not os.access(kubeconfig, os.R_OK):
            raise ConfigError(file, f"[{SECTION}] kubeconfig", f"cannot read {kubeconfig!r}")
    namespaces = tuple(dict.fromkeys(c.namespaces)) if c.namespaces is not None else None
    timeout = c.request_timeout or c.timeout or DEFAULT_TIMEOUT_S
    return Settings(kubeconfig=kubeconfig, context=c.context, namespaces=namespaces, timeout_s=float(timeout),
                    gpu_resource=c.gpu_resource, max_pods=c.max_pods)


def _reason_text(reason: Any) -> str:
    """urllib3 wraps the cause (MaxRetryError(reason=NewConnectionError(...))): name the cause."""
    inner = getattr(reason, "reason", None)
    cause = inner if isinstance(inner, BaseException) else reason
    text = first_line(cause) or type(cause).__name__
    # NewConnectionError's text repeats the connection object's repr before the useful part.
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return f"{type(cause).__name__}: {text}"


def api_status_message(body: Any) -> str:
    """The ``message`` of a metav1.Status error body, or the body's first line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
            return body.strip().splitlines()[0][:200] if body.strip() else ""
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])[:300]
    return ""


def build_api_client(kubeconfig: str | None, context: str | None, *, retries: int = 1) -> Any:
    """An ApiClient for the kubeconfig (or the in-cluster service account). Raises ConfigError-free
    ``KubernetesError`` when the kubeconfig is unusable. Shared by the collector and k8s_control."""
    from kubernetes import client, config  # heavy: only who talks to Kubernetes loads it

    cfg = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
        else:
            # persist_config=False: never rewrite the operator's kubeconfig (token refreshes).
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                    persist_config=False)
    except (config.ConfigException, OSError, ValueError, TypeError) as e:
        raise KubernetesError(f"Kubernetes config unusable ({kubeconfig or '~/.kube/config'}): "
                              f"{first_line(e) or type(e).__name__}") from None
    # One quick retry covers a keep-alive connection the server closed between polls; more would
    # multiply the wait when the server is really gone.
    cfg.retries = retries
    return client.ApiClient(configuration=cfg)


class KubeApi:
    """Thin raw-JSON access to the API server; raises KubernetesError subclasses only."""

    def __init__(self, settings: Settings, api_client: Any | None = None) -> None:
        import urllib3
        from kubernetes import client

        self._urllib3 = urllib3
        self._ApiException = client.exceptions.ApiException
        self.s = settings
        self.api = api_client or build_api_client(settings.kubeconfig, settings.context)
        self.server = str(self.api.configuration.host)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.version_api = client.VersionApi(self.api)

    def close(self) -> None:
        self.api.close()

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) as raw JSON. ApiException is re-raised (the caller decides whether a
        403 is partial); transport failures become KubernetesUnreachable."""
        kwargs.update(_preload_content=False, _request_timeout=self.s.timeout_s)
        try:
            resp = fn(*args, **kwargs)
            data = resp.data
        except self._ApiException:
            raise
        except self._urllib3.exceptions.MaxRetryError as e:
            raise KubernetesUnreachable(f"Kubernetes API unreachable: {self.server}: {_reason_text(e.reason)}") from None
        except (self._urllib3.exceptions.HTTPError, OSError) as e:  # timeouts, resets, TLS
            raise KubernetesUnreachable(f"Kubernetes API unreachable: {self.server}: {_reason_text(e)}") from None
        try:
            return json.loads(data)
        except ValueError:
            raise KubernetesError(f"Kubernetes {what}: answer is not JSON") from None

    def list(self, what: str, all_fn: Callable[..., Any], ns_fn: Callable[..., Any]) -> list[dict[str, Any]]:
        """One list across all namespaces, or one per configured namespace."""
        # resourceVersion=0: served from the API server's watch cache (cheap; may lag a second).
        if self.s.namespaces is None:
            return k8s_parse.items(self.call(what, all_fn, resource_version="0"))
        out: list[dict[str, Any]] = []
        for ns in self.s.namespaces:
            out.extend(k8s_parse.items(self.call(what, ns_fn, ns, resource_version="0")))
        return out


def _api_error(what: str, e: Any) -> str:
    msg = api_status_message(getattr(e, "body", None)) or str(getattr(e, "reason", "") or "")
    return f"{what}: HTTP {e.status}: {msg}".rstrip(": ")


class KubernetesCollector:
    """Collector ``kubernetes`` (cluster scope): returns ``schema.Kubernetes``."""

    name = "kubernetes"
    field = "kubernetes"
    scope = "cluster"
    default_interval_s = DEFAULT_INTERVAL_S
    config_type = KubernetesConfig

    def __init__(self, ctx: Context, api_client: Any | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = parse_settings(ctx.config, ctx.config_file)
        self.clock, self.wall = clock, wall
        try:
            self.api = KubeApi(self.settings, api_client)
        except KubernetesError as e:
            # A kubeconfig that cannot be used at all (no such context, no server) is a config mistake.
            raise ConfigError(ctx.config_file, f"[{SECTION}] kubeconfig", str(e)) from None
        self.last_good: schema.Kubernetes | None = None
        self.last_ok_ts: float | None = None
        self.last_error: str | None = None
        self._version: str | None = None
        self._version_due = 0.0

    def collect(self) -> schema.Kubernetes:
        try:
            k = self._collect()
        except KubernetesError as e:
            self.last_error = str(e)
            self._version_due = 0.0  # re-read the version after an outage: it may be an upgrade
            raise
        self.last_good, self.last_ok_ts, self.last_error = k, self.wall(), None
        return k

    def _collect(self) -> schema.Kubernetes:
        api, gpu = self.api, self.settings.gpu_resource
        errors: list[str] = []
        failures = 0

        def attempt(what: str, fn: Callable[[], Any]) -> Any:
            nonlocal failures
            try:
                return fn()
            except api._ApiException as e:
                if e.status == 401:
                    raise KubernetesError(f"Kubernetes API refused the credentials: {_api_error(what, e)}") from None
                failures += 1
                errors.append(_api_error(what, e))  # 403 on one list (RBAC), 404 (no such API): partial
                return None

        # Nodes are cluster-scoped: namespace-limited credentials may not list them.
        raw_nodes = attempt("nodes", lambda: k8s_parse.items(api.call("nodes", api.core.list_node,
                                                                      resource_version="0")))
        raw_pods = attempt("pods", lambda: api.list("pods", api.core.list_pod_for_all_namespaces,
                                                    api.core.list_namespaced_pod))
        raw_jobs = attempt("jobs", lambda: api.list("jobs", api.batch.list_job_for_all_namespaces,
                                                    api.batch.list_namespaced_job))
        raw_deps = attempt("deployments", lambda: api.list("deployments", api.apps.list_deployment_for_all_namespaces,
                                                           api.apps.list_namespaced_deployment))
        if failures == 4:
            raise KubernetesError(f"Kubernetes API answered every list with an error: {'; '.join(errors)}")

        # Sorted: the watch cache lists in no particular order, and a stable payload diffs and renders calmly.
        nodes = sorted((k8s_parse.parse_node(n, gpu) for n in raw_nodes), key=lambda n: n.name) \
            if raw_nodes is not None else None
        pods = [k8s_parse.parse_pod(p, gpu) for p in raw_pods] if raw_pods is not None else None
        if nodes is not None:
            if pods is not None and self.settings.namespaces is None:
                k8s_parse.allocate(nodes, pods)
            else:
                self._allocate_cluster_wide(nodes, pods, errors)
        workloads: list[schema.K8sWorkload] | None = None
        if raw_jobs is not None or raw_deps is not None:
            workloads = [k8s_parse.parse_job(j) for j in raw_jobs or ()]
            workloads += [k8s_parse.parse_deployment(d) for d in raw_deps or ()]
            workloads.sort(key=lambda w: (w.kind, w.namespace, w.name))
        return schema.Kubernetes(
            server=api.server, version=self._server_version(errors), nodes=nodes,
            pods=k8s_parse.select_pods(pods, self.settings.max_pods) if pods is not None else None,
            pods_total=len(pods) if pods is not None else None,
            workloads=workloads, errors=errors or None,
        )

    def _allocate_cluster_wide(self, nodes: list[schema.K8sNode], pods: list[schema.K8sPod] | None,
                               errors: list[str]) -> None:
        """GPUs allocated count every namespace's pods. With ``namespaces`` set (or pods not listable)
        try one cluster-wide list of non-terminated pods; if that is refused too, allocation is
        unknown (None), never the misleading partial sum."""
        api = self.api
        selector = "status.phase!=Succeeded,status.phase!=Failed"
        try:
            raw = k8s_parse.items(api.call("pods", api.core.list_pod_for_all_namespaces, resource_version="0",
                                           field_selector=selector))
        except api._ApiException as e:
            errors.append(f"GPU allocation unknown: {_api_error('pods in all namespaces', e)}")
            for n in nodes:
                n.gpu_allocated = None
            return
        k8s_parse.allocate(nodes, [k8s_parse.parse_pod(p, self.settings.gpu_resource) for p in raw])

    def _server_version(self, errors: list[str]) -> str | None:
        if self.clock() >= self._version_due:
            try:
                self._version = k8s_parse.parse_version(self.api.call("version", self.api.version_api.get_code))
            except self.api._ApiException as e:
                errors.append(_api_error("version", e))
            self._version_due = self.clock() + VERSION_EVERY_S
        return self._version

    def close(self) -> None:
        self.api.close()
