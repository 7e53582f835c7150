"""Provides the containers collector and the Docker Engine API client the agent's container commands use.

The engine is reached through its unix socket (``[collectors.containers] socket``, default
``unix:///run/docker.sock``; Podman's ``podman system service`` socket serves the same API) with httpx's
``HTTPTransport(uds=...)``. Per poll: one list of every container, then, per container, its inspect
(restarts, pid, start time: the list has none of them) and, for running ones, one ``one-shot`` stats sample
(memory, pids, CPU counters). Without ``one-shot`` the engine takes two samples a second apart per
request; with it, it answers from its next sampling tick (Docker samples every container once a second,
so a request waits up to 1 s). Asked one after another, N containers took N seconds (measured: 1.0 s
per container); so the stats requests of a poll are made at once from a small thread pool and are all
answered by the same tick. CPU % is computed here between this poll's sample and the previous one, by
the formula ``docker stats`` uses, so the first poll after a start says None, not 0.

No socket = no engine on this node: ``NoData`` (the field stays None). JSON parsing is in
``containers_parse`` (pure, tested on captured answers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import msgspec

from clustertop.collectors import containers_parse as parse
from clustertop.collectors.base import Context, NoData, Section
from clustertop.config import Invalid, Positive, convert
from clustertop.wire import schema

#: The API version asked for: 1.41 is Docker 20.10's and what Podman 4's compatible service speaks.
API = "v1.41"
#: Stats requests in flight at once (each waits for the engine's next 1-s sampling tick).
STATS_PARALLEL = 32
#: The most an answer may be (a list of thousands of containers with hostile labels must not take the agent's memory).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class ContainerTemplateConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[collectors.containers.templates.NAME]``: a container this agent may launch. The image is fixed;
    params fill ``{placeholders}`` inside ``cmd`` elements only (argv, never a shell); no mounts, no
    privileges, network "none" unless the template says otherwise."""

    image: str
    cmd: list[str] = []  # "{param}" placeholders, as [templates.NAME] argv
    params: dict[str, Any] = {}  # as [templates.NAME.params]: checked by the agent's executor
    env: dict[str, str] = {}
    network: str = "none"  # "none" | "host" | "bridge" | a network name
    memory_bytes: Annotated[int, msgspec.Meta(gt=0)] | None = None
    cpus: Positive | None = None
    user: str | None = None  # the container's user ("1000", "nobody"); None: the image's
    description: str | None = None

    def __post_init__(self) -> None:
        if not self.image:
            raise Invalid("image", "required: the image to run (never taken from the command)")


class ContainersConfig(Section):
    """``[collectors.containers]``."""

    socket: str = "unix:///run/docker.sock"  # Podman: unix:///run/podman/podman.sock
    max_containers: Annotated[int, msgspec.Meta(ge=0)] = 200  # more are counted (total), not listed
    request_timeout: Positive = 2.0
    # Which containers stop / kill / restart may touch: only those launched from a template here
    # ("launched"), or every container of the engine ("all": anyone with the operator key then
    # controls whatever runs in Docker on this node).
    control: str = "launched"
    templates: dict[str, ContainerTemplateConfig] = {}

    def __post_init__(self) -> None:
        socket_path(self.socket)
        if self.control not in ("launched", "all"):
            raise Invalid("control", f"expected \"launched\" or \"all\", got {self.control!r}")


def socket_path(url: str) -> str:
    """``unix:///run/docker.sock`` -> ``/run/docker.sock`` (the only scheme: the API is never exposed on TCP here)."""
    if not url.startswith("unix://") or not url[len("unix://"):].startswith("/"):
        raise Invalid("socket", f"expected unix:///path/to/socket, got {url!r}")
    return url[len("unix://"):]


def settings(ctx_config: dict[str, Any], file: str | None) -> ContainersConfig:
    return convert(ctx_config, ContainersConfig, file, "collectors.containers")


class EngineError(Exception):
    """The engine answered with an error status; str() is its message."""


class Engine:
    """The Docker Engine API over a unix socket: just the calls clustertop makes."""

    def __init__(self, socket: str, timeout_s: float = 2.0) -> None:
        import httpx

        self.path = socket_path(socket)
        self.timeout_s = timeout_s
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=self.path), base_url=f"http://engine/{API}",
                                  timeout=timeout_s, limits=httpx.Limits(max_connections=STATS_PARALLEL + 4))

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
             timeout_s: float | None = None) -> Any:
        """One request; the JSON answer (None for an empty one). A status >= 400 raises EngineError with the
        engine's message (bounded: it is engine text, possibly naming hostile containers)."""
        with self._http.stream(method, path, params=params, json=body,
                               timeout=timeout_s if timeout_s is not None else self.timeout_s) as r:
            data = bytearray()
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise EngineError(f"{method} {path}: answer over {MAX_ANSWER_BYTES // 2**20} MiB")
            if r.status_code >= 400:
                try:
                    msg = json.loads(bytes(data)).get("message")
                except (ValueError, AttributeError):
                    msg = None
                raise EngineError(f"{r.status_code}: {str(msg or bytes(data[:200]).decode('utf-8', 'replace'))[:300]}")
        return json.loads(bytes(data)) if data.strip() else None

    # -- reading --
    def version(self) -> Any:
        return self.call("GET", "/version")

    def list(self) -> Any:
        return self.call("GET", "/containers/json", params={"all": "1"})

    def inspect(self, cid: str) -> Any:
        return self.call("GET", f"/containers/{cid}/json")

    def stats(self, cid: str) -> Any:
        return self.call("GET", f"/containers/{cid}/stats", params={"stream": "false", "one-shot": "true"})

    # -- acting (the agent's executor, after its checks) --
    def stop(self, cid: str, grace_s: int) -> None:
        self.call("POST", f"/containers/{cid}/stop", params={"t": str(grace_s)}, timeout_s=grace_s + 10.0)

    def kill(self, cid: str, signal: str = "KILL") -> None:
        self.call("POST", f"/containers/{cid}/kill", params={"signal": f"SIG{signal}"})

    def restart(self, cid: str, grace_s: int) -> None:
        self.call("POST", f"/containers/{cid}/restart", params={"t": str(grace_s)}, timeout_s=grace_s + 10.0)

    def create(self, name: str, body: dict[str, Any]) -> str:
        out = self.call("POST", "/containers/create", params={"name": name}, body=body)
        cid = out.get("Id") if isinstance(out, dict) else None
        if not isinstance(cid, str) or not parse.is_container_id(cid):
            raise EngineError(f"create answered no container id: {str(out)[:200]}")
        return cid

    def start(self, cid: str) -> None:
        self.call("POST", f"/containers/{cid}/start")

    def remove(self, cid: str) -> None:
        self.call("DELETE", f"/containers/{cid}", params={"force": "1"})


CpuCounters = dict[str, tuple[int, int, int] | None]


def read_engine(engine: Any, max_containers: int, prev_cpu: CpuCounters,
                stats_all: Callable[[list[str]], list[Any]]) -> tuple[list[schema.Container], int, CpuCounters]:
    """One poll of ``engine`` (an ``Engine``, or the demo's simulated one with the same calls and answers):
    (the containers shown, how many the engine has, this poll's CPU counters for the next). ``stats_all``
    answers the stats requests of the running ones, in order (None for one gone or too slow)."""
    listed = parse.parse_list(engine.list())
    # Running first, then the newest: when the list is cut, what is cut is old and stopped.
    listed.sort(key=lambda c: (c.state != "running", -(c.created_ts or 0)))
    shown = listed[:max_containers]
    running = []
    for c in shown:
        try:
            parse.apply_inspect(c, engine.inspect(c.id))
        except EngineError:  # removed between the list and now: it is listed as the list said
            continue
        if c.state == "running":
            running.append(c)
    answers = stats_all([c.id for c in running]) if running else []
    cpu: CpuCounters = {}
    for c, raw in zip(running, answers, strict=True):
        if raw is not None:  # None: gone, or no answer in time (its figures stay unknown)
            cpu[c.id] = parse.apply_stats(c, raw, prev_cpu.get(c.id))
    return shown, len(listed), cpu  # containers gone since are forgotten


def template_infos(cfg: ContainersConfig) -> list[schema.TemplateInfo]:
    """What the launcher offers: each template's name, description and param types (image and cmd stay here)."""
    out = []
    for name, t in sorted(cfg.templates.items()):
        params = {p: str(spec.get("type", "str")) if isinstance(spec, dict) else str(spec) for p, spec in t.params.items()}
        desc = t.description or f"container {t.image}"
        out.append(schema.TemplateInfo(name=name, description=desc, params=params))
    return out


class ContainersCollector:
    """The engine's containers -> schema.Containers."""

    name = "containers"
    field = "containers"
    scope = "node"
    default_interval_s = 5.0
    config_type = ContainersConfig

    def __init__(self, ctx: Context) -> None:
        self.cfg = settings(ctx.config, ctx.config_file)
        timeout = self.cfg.request_timeout
        if ctx.timeout_s is not None:
            timeout = min(timeout, ctx.timeout_s / 2)  # a hung engine leaves time for the runner to report it
        self.timeout_s = timeout
        self.path = socket_path(self.cfg.socket)
        self.engine: Engine | None = None  # made at the first poll that finds the socket
        self._cpu: dict[str, tuple[int, int, int] | None] = {}  # id -> last CPU counters
        self._engine_name: str | None = None
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.engine is not None:
            self.engine.close()

    def collect(self) -> schema.Containers:
        if not os.path.exists(self.path):
            raise NoData(f"no container engine socket at {self.path}")
        if not os.access(self.path, os.R_OK | os.W_OK):
            # The shipped unit's user is not in the engine's group: said plainly, once per poll, not as a traceback.
            raise PermissionError(f"{self.path}: permission denied (the engine's socket is root:docker 0660: give the "
                                  "agent's user that group, e.g. a drop-in with SupplementaryGroups=docker, or set "
                                  "[collectors.containers] enabled = false)")
        if self.engine is None:
            self.engine = Engine(self.cfg.socket, self.timeout_s)
        engine = self.engine
        if self._engine_name is None:
            self._engine_name = parse.engine_name(engine.version())
        shown, total, self._cpu = read_engine(engine, self.cfg.max_containers, self._cpu, self._stats_all)
        return schema.Containers(engine=self._engine_name, containers=shown, total=total,
                                 templates=template_infos(self.cfg) or None, control=self.cfg.control)

    def _stats_all(self, ids: list[str]) -> list[Any]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(STATS_PARALLEL, thread_name_prefix="ct-containers")
        return list(self._pool.map(self._stats, ids))

    def _stats(self, cid: str) -> Any:
        """One container's stats answer; None when it is gone or too slow (its figures stay unknown). Anything
        else (the engine went away) fails the poll, and the runner reports it."""
        import httpx

        assert self.engine is not None
        try:
            return self.engine.stats(cid)
        except (EngineError, httpx.TimeoutException):
            return None
