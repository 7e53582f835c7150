"""Provides the container verbs of the command executor: stop, kill, restart and launch-from-template.

``agents/commands.py`` has judged the command already (signature, node, replay, expiry, verb allowed,
read-only); this module judges the target and acts through the Docker Engine API
(``clustertop.collectors.containers.Engine``), never a shell or the docker CLI.

The target is named by its full 64-hex id and its creation time (the engine's ``Created``, Unix seconds,
compared with ==), never by its name: a name is reused the moment a container is removed, an id with its
creation time is not. Then the policy: ``[collectors.containers] control = "launched"`` (the default)
lets commands touch only containers this agent launched from one of its container templates (the
``org.clustertop.template`` label); "all" lets them touch any. A container that kubelet manages (it has
a pod uid label) is refused whatever the policy: kubelet would start it again, the pod is what to delete.

Launch creates a container from ``[collectors.containers.templates.NAME]``: the image is the template's,
params fill ``{placeholders}`` in its cmd (checked as ``[templates.NAME.params]`` are, by the same code),
no mounts, no privileges, the template's network ("none" by default).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from clustertop.agents.tasks import _PLACEHOLDER, ParamConfig, ParamError, Template, _param, runs_shell
from clustertop.collectors import containers as engine_api
from clustertop.collectors.containers_parse import POD_UID_LABEL, TEMPLATE_LABEL, is_container_id, parse_time
from clustertop.config import ConfigError, convert

VERBS = ("container.stop", "container.kill", "container.restart", "container.launch")
SIGNALS = ("TERM", "KILL", "INT", "HUP")
GRACE_MAX_S = 300
#: Docker's container name rule (template names become part of the launched container's name).
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,60}")
#: The label naming the operator who launched a container (quoted text, for `docker inspect` readers).
OPERATOR_LABEL = "org.clustertop.operator"


class ContainerRefused(Exception):
    """The command must not act; str() is the reason (the executor turns it into a refusal)."""


@dataclass
class ContainerTemplate:
    name: str
    config: engine_api.ContainerTemplateConfig
    argv: Template  # the cmd and its params, rendered by the tasks' own code


@dataclass
class ContainerControl:
    """The engine and the policy of this node's container commands (None of it when the collector is off)."""

    socket: str | None = None  # None: no [collectors.containers], or enabled = false
    control: str = "launched"
    templates: dict[str, ContainerTemplate] = field(default_factory=dict)
    timeout_s: float = 5.0
    _engine: engine_api.Engine | None = None

    @classmethod
    def from_config(cls, collectors: Any, file: str | None) -> ContainerControl:
        """From the agent's collectors config (``AgentConfig.collectors`` or a plain dict of tables)."""
        entry = (collectors or {}).get("containers")
        if entry is None:
            options: dict[str, Any] = {}
        elif isinstance(entry, dict):
            if entry.get("enabled", True) is False:
                return cls()
            options = {k: v for k, v in entry.items() if k not in ("enabled", "interval", "timeout")}
        else:  # agents.config.CollectorConfig
            if not entry.enabled:
                return cls()
            options = dict(entry.options)
        cfg = engine_api.settings(options, file)
        out = cls(socket=cfg.socket, control=cfg.control, timeout_s=max(cfg.request_timeout, 5.0))
        for name, t in cfg.templates.items():
            section = f"collectors.containers.templates.{name}"
            if not _NAME.fullmatch(name):
                raise ConfigError(file, f"[{section}]", "template names are letters, digits, '.', '-', '_' "
                                                       "(they become part of the container's name)")
            if runs_shell(t.cmd):
                raise ConfigError(file, f"[{section}] cmd", f"runs a shell ({' '.join(t.cmd)[:80]!r}): every param "
                                                           "value would be shell code; use the program's own argv")
            tpl = Template(name=name, argv=list(t.cmd))
            for pname, spec in t.params.items():
                spec = spec if isinstance(spec, str) else convert(spec, ParamConfig, file, f"{section}.params.{pname}")
                tpl.params[pname] = _param(pname, spec, file, f"{section}.params")
            for arg in t.cmd:
                for m in _PLACEHOLDER.finditer(arg):
                    if m.group(1) not in tpl.params:
                        raise ConfigError(file, f"[{section}] cmd", f"placeholder {{{m.group(1)}}} has no param")
            out.templates[name] = ContainerTemplate(name, t, tpl)
        return out

    def engine(self) -> engine_api.Engine:
        if self.socket is None:
            raise ContainerRefused("no container engine on this node ([collectors.containers] is disabled)")
        if self._engine is None:
            self._engine = engine_api.Engine(self.socket, self.timeout_s)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    # -- the target, as the operator saw it ---------------------------------------------------------

    def target(self, args: dict[str, Any]) -> dict[str, Any]:
        """The container ``args`` names (id + created, exactly), inspected now; refused when it is another,
        gone, kubelet's, or outside ``control``."""
        cid = args.get("id")
        if not isinstance(cid, str) or not is_container_id(cid):
            raise ContainerRefused("id required: the container's full 64-hex id (a name can be reused)")
        created = args.get("created")
        if isinstance(created, bool) or not isinstance(created, int):
            raise ContainerRefused(f"created required: the container's creation time as an int, got {created!r:.40}")
        try:
            info = self.engine().inspect(cid)
        except engine_api.EngineError as e:
            if str(e).startswith("404"):
                raise ContainerRefused(f"no container {cid[:12]} (already removed)") from None
            raise
        if not isinstance(info, dict) or info.get("Id") != cid:
            raise ContainerRefused(f"the engine answered for another container than {cid[:12]}")
        ts = parse_time(info.get("Created"))
        if ts is None or int(ts) != created:
            raise ContainerRefused(f"container {cid[:12]} was created at {None if ts is None else int(ts)}, "
                                   f"not {created}: not the container the command names")
        labels = (info.get("Config") or {}).get("Labels") or {}
        if not isinstance(labels, dict):
            labels = {}
        if labels.get(POD_UID_LABEL):
            raise ContainerRefused(f"container {cid[:12]} belongs to pod uid {str(labels[POD_UID_LABEL])[:40]!r}: "
                                   "kubelet restarts it; delete the pod instead")
        if self.control != "all" and not labels.get(TEMPLATE_LABEL):
            raise ContainerRefused(f"container {cid[:12]} was not launched by clustertop "
                                   "([collectors.containers] control = \"launched\")")
        return info

    # -- acting ------------------------------------------------------------------------------------

    def act(self, verb: str, args: dict[str, Any], params: dict[str, Any], operator: str | None) -> dict[str, Any]:
        """Carry out one container verb; returns the result's data."""
        if verb == "container.launch":
            return self.launch(args, params, operator)
        info = self.target(args)
        cid = info["Id"]
        name = str(info.get("Name") or "").removeprefix("/")[:100]
        data: dict[str, Any] = {"id": cid, "name": name}
        engine = self.engine()
        if verb in ("container.stop", "container.restart"):
            grace = args.get("grace", 10)
            if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= GRACE_MAX_S:
                raise ContainerRefused(f"grace must be an int in 0..{GRACE_MAX_S} seconds")
            (engine.stop if verb == "container.stop" else engine.restart)(cid, grace)
            data["grace"] = grace
        elif verb == "container.kill":
            sig = str(args.get("signal") or "KILL").upper().removeprefix("SIG")
            if sig not in SIGNALS:
                raise ContainerRefused(f"signal {sig[:10]} not allowed (allowed: {', '.join(SIGNALS)})")
            engine.kill(cid, sig)
            data["signal"] = sig
        else:
            raise ContainerRefused(f"unknown verb {verb!r}")
        return data

    def launch(self, args: dict[str, Any], params: dict[str, Any], operator: str | None) -> dict[str, Any]:
        name = args.get("template")
        tpl = self.templates.get(name) if isinstance(name, str) else None
        if tpl is None:
            raise ContainerRefused(f"unknown container template {str(name)[:60]!r} (this node has: "
                                   f"{', '.join(sorted(self.templates)) or 'none'})")
        try:
            argv = tpl.argv.render(dict(params))
        except ParamError as e:
            raise ContainerRefused(f"bad params: {e}") from None
        c = tpl.config
        host: dict[str, Any] = {"NetworkMode": c.network, "Privileged": False}
        if c.memory_bytes is not None:
            host["Memory"] = c.memory_bytes
        if c.cpus is not None:
            host["NanoCpus"] = int(c.cpus * 1e9)
        body: dict[str, Any] = {"Image": c.image, "Env": [f"{k}={v}" for k, v in c.env.items()],
                                "Labels": {TEMPLATE_LABEL: tpl.name, OPERATOR_LABEL: repr((operator or "")[:100])},
                                "HostConfig": host}
        if argv:
            body["Cmd"] = argv
        if c.user is not None:
            body["User"] = c.user
        cname = f"ct-{tpl.name}-{uuid.uuid4().hex[:8]}"
        engine = self.engine()
        cid = engine.create(cname, body)
        try:
            engine.start(cid)
        except engine_api.EngineError:
            engine.remove(cid)  # not left behind half-made
            raise
        return {"id": cid, "name": cname, "template": tpl.name, "image": c.image[:200]}


def target_words(node: str, verb: str, args: dict[str, Any]) -> str:
    """What a container command acts on, in the audit's words (ids and names quoted: they are data)."""
    if verb == "container.launch":
        return f"{node} container template {str(args.get('template'))[:60]!r}"
    cid = args.get("id")
    short = cid[:12] if isinstance(cid, str) else repr(cid)[:20]
    label = f" {str(args.get('name'))[:60]!r}" if args.get("name") else ""
    return f"{node} container {short}{label}"

