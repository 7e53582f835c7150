"""Provides the agent's configuration: one strict TOML file, CLUSTERTOP_* environment, flags.

Precedence is flags > environment > file > defaults. Every section of the file is a msgspec Struct:
``[agent]`` here, ``[collectors.NAME]`` next to each collector, ``[templates.NAME]`` in agents/tasks.py,
``[security]`` in agents/commands.py. Every mistake is a ConfigError that names where it came from
(the file and ``[section] key``, the environment variable, or the flag), because an agent that
silently falls back to a default on a typo is worse than one that refuses to start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from clustertop.agents.commands import SecurityConfig
from clustertop.agents.energy import EnergySection
from clustertop.agents.publisher import FULL_EVERY_S, FULL_EVERY_WANTED_S
from clustertop.agents.summaries import SummariesSection
from clustertop.agents.tasks import TemplateConfig, parse_templates
from clustertop.alerting.config import AlertsSection
from clustertop.collectors import base
from clustertop.config import ConfigError, Invalid, Positive, convert, environment, load_toml, overlay
from clustertop.store import url_problem

COLLECTOR_KEYS = {"enabled", "interval", "timeout"}  # everything else is the collector's own option

#: A collector's timeout defaults to its interval, within these bounds.
MIN_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 30.0


class AgentSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[agent]``; each key can also be set as CLUSTERTOP_<KEY> (labels excepted) and most as a flag."""

    redis: str | None = None  # redis://, rediss:// or unix:// URL
    redis_password_file: str | None = None
    redis_ca_file: str | None = None
    interval: Positive = 1.0  # seconds between snapshots
    history_interval: Positive = 5.0  # seconds between history points
    # seconds between full snapshots nobody wants (every tick while a reader does); 0: every tick
    full_every: Annotated[float, msgspec.Meta(ge=0)] = FULL_EVERY_S
    # seconds between full snapshots while a reader wants them (a node's screen); up to the interval: every tick
    full_every_wanted: Annotated[float, msgspec.Meta(ge=0)] = FULL_EVERY_WANTED_S
    node: str = ""  # "": the hostname under proc_root
    role: str | None = None
    labels: dict[str, str] = {}
    read_only: bool = False  # refuse every command
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    state_dir: str | None = None  # launched tasks' logs; default $STATE_DIRECTORY or /var/lib/clustertop
    node_key: str | None = None  # the node's private key; default node.key in state_dir, created at first start

    def __post_init__(self) -> None:
        why = self.redis and url_problem(self.redis)
        if why:
            raise Invalid("redis", why)


class AgentFile(msgspec.Struct, forbid_unknown_fields=True):
    """The whole agent.toml. Collector tables stay plain here: each is converted with its collector's Struct."""

    agent: AgentSection = msgspec.field(default_factory=AgentSection)
    collectors: dict[str, dict[str, Any]] = {}
    templates: dict[str, TemplateConfig] = {}
    security: SecurityConfig = msgspec.field(default_factory=SecurityConfig)
    energy: EnergySection = msgspec.field(default_factory=EnergySection)  # [energy]: price, split (agents/energy.py)
    # present: this agent may evaluate alerts for the cluster, one agent at a time (clustertop.alerting)
    alerts: AlertsSection | None = None
    # present: this agent may fold bucket summaries, a bucket per lease (agents/summaries.py)
    summaries: SummariesSection | None = None


#: AgentConfig's field for each [agent] key whose name differs (flags and overrides use these).
FIELD_OF = {"redis": "redis_url", "interval": "interval_s", "history_interval": "hist_every_s",
            "full_every": "full_every_s", "full_every_wanted": "full_every_wanted_s"}


@dataclass
class CollectorConfig:
    name: str
    enabled: bool = True
    interval_s: float | None = None  # None: the collector's default_interval_s (or the agent's)
    timeout_s: float | None = None  # None: derived from the interval (see timeout_for)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentConfig:
    file: str | None = None
    redis_url: str | None = None
    redis_password_file: str | None = None
    redis_ca_file: str | None = None
    node: str = ""
    interval_s: float = 1.0
    hist_every_s: float = 5.0
    full_every_s: float = FULL_EVERY_S
    full_every_wanted_s: float = FULL_EVERY_WANTED_S
    read_only: bool = False
    role: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    state_dir: str | None = None  # launched tasks' logs; default $STATE_DIRECTORY or /var/lib/clustertop
    node_key: str | None = None  # the node's private key; default node.key in state_dir
    collectors: dict[str, CollectorConfig] = field(default_factory=dict)
    templates: dict[str, TemplateConfig] = field(default_factory=dict)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    energy: EnergySection = field(default_factory=EnergySection)
    alerts: AlertsSection | None = None  # [alerts]: take part in the alerts lease (clustertop.alerting)
    summaries: SummariesSection | None = None  # [summaries]: fold bucket summaries (agents/summaries.py)

    def enabled_collectors(self) -> list[str]:
        """Default node collectors plus every configured section, minus ``enabled = false``.

        Cluster-scope collectors are never defaults, so they run only when their section exists.
        """
        names = list(base.DEFAULT_NODE_COLLECTORS)
        names += [n for n in self.collectors if n not in names]
        return [n for n in names if n not in self.collectors or self.collectors[n].enabled]

    def collector(self, name: str) -> CollectorConfig:
        return self.collectors.get(name) or CollectorConfig(name=name)


def timeout_for(interval_s: float, configured: float | None) -> float:
    if configured is not None:
        return configured
    return min(MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, interval_s))


def load_config(path: str | None, env: Mapping[str, str] = os.environ,
                overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """The agent's config. ``overrides`` are command-line values keyed by AgentConfig field name;
    None values mean "flag not given"."""
    path = path or env.get("CLUSTERTOP_CONFIG") or None
    parsed = convert(load_toml(path), AgentFile, path) if path is not None else AgentFile()
    # Pure checks of the templates (params, patterns) at load, not only when commands are enabled.
    parse_templates(parsed.templates, path)
    key_of = {v: k for k, v in FIELD_OF.items()}
    flags: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        key = key_of.get(name, name)
        if key not in AgentSection.__struct_fields__:
            raise ConfigError(None, name, "unknown override")
        if value is not None:
            flags[key] = value
    layers = {**environment(env, AgentSection), **overlay(flags, AgentSection, "command line", _flag)}
    agent = msgspec.structs.replace(parsed.agent, **layers)
    cfg = AgentConfig(file=path, templates=parsed.templates, security=parsed.security, alerts=parsed.alerts,
                      energy=parsed.energy, summaries=parsed.summaries,
                      collectors={n: _collector(n, t, path) for n, t in parsed.collectors.items()},
                      **{FIELD_OF.get(k, k): getattr(agent, k) for k in AgentSection.__struct_fields__})
    if not cfg.node:
        cfg.node = node_name(cfg.proc_root)
    return cfg


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _collector(name: str, table: dict[str, Any], path: str | None) -> CollectorConfig:
    if name not in base.REGISTRY:
        raise ConfigError(path, f"[collectors.{name}]", f"unknown collector (known: {', '.join(sorted(base.REGISTRY))})")
    try:
        kind = base.config_type(name)
    except ImportError:
        # A collector whose module cannot load is reported broken when the agent builds it (and the
        # others still run); its own options cannot be checked here, the common keys still are.
        kind = base.Section
    section = convert(table, kind, path, f"collectors.{name}")
    # The collector gets its options as written and converts them itself (it is also built directly).
    return CollectorConfig(name=name, enabled=section.enabled, interval_s=section.interval, timeout_s=section.timeout,
                           options={k: v for k, v in table.items() if k not in COLLECTOR_KEYS})


def node_name(proc_root: str = "/proc") -> str:
    """The hostname as the (possibly foreign) proc root sees it, else this machine's."""
    try:
        with open(os.path.join(proc_root, "sys", "kernel", "hostname"), encoding="utf-8") as f:
            name = f.read().strip()
        if name:
            return name
    except OSError:
        pass
    return socket.gethostname()
