"""Provides the agent's configuration: one strict TOML file, CLUSTERTOP_* environment, flags.

Precedence is flags > environment > file > defaults. Every mistake is a ConfigError that names
where it came from (the file and ``[section] key``, or the environment variable), because an
agent that silently falls back to a default on a typo is worse than one that refuses to start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clustertop.collectors import base
from clustertop.config import ConfigError, check_keys, get, load_toml

ENV = "environment"  # the "file" named in errors that come from CLUSTERTOP_* variables

AGENT_KEYS = {"redis", "redis_password_file", "redis_ca_file", "interval", "history_interval", "node",
              "role", "labels", "read_only", "proc_root", "sys_root", "state_dir"}
TOP_SECTIONS = {"agent", "collectors", "templates", "security"}
COLLECTOR_KEYS = {"enabled", "interval", "timeout"}  # everything else is the collector's own option

#: A collector's timeout defaults to its interval, within these bounds.
MIN_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 30.0


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
    read_only: bool = False
    role: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    state_dir: str | None = None  # launched tasks' logs; default $STATE_DIRECTORY or /var/lib/clustertop
    collectors: dict[str, CollectorConfig] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    security: dict[str, Any] = field(default_factory=dict)

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
    cfg = AgentConfig(file=path)
    if path is not None:
        _apply_file(cfg, load_toml(path), path)
    _apply_env(cfg, env)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if not hasattr(cfg, key):
            raise ConfigError(None, key, "unknown override")
        setattr(cfg, key, value)
    _check(cfg, "command line")
    if not cfg.node:
        cfg.node = node_name(cfg.proc_root)
    return cfg


def _apply_file(cfg: AgentConfig, data: dict[str, Any], path: str) -> None:
    for section in data:
        if section not in TOP_SECTIONS:
            raise ConfigError(path, f"[{section}]", f"unknown section (known: {', '.join(sorted(TOP_SECTIONS))})")
        if not isinstance(data[section], dict):
            raise ConfigError(path, section, f"expected a [{section}] table, got {type(data[section]).__name__}")
    agent = data.get("agent", {})
    check_keys(agent, AGENT_KEYS, path, "agent")

    def g(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        return get(agent, key, kind, default, path, "agent")

    cfg.redis_url = g("redis", str, cfg.redis_url)
    cfg.redis_password_file = g("redis_password_file", str, cfg.redis_password_file)
    cfg.redis_ca_file = g("redis_ca_file", str, cfg.redis_ca_file)
    cfg.interval_s = float(g("interval", (int, float), cfg.interval_s))
    cfg.hist_every_s = float(g("history_interval", (int, float), cfg.hist_every_s))
    cfg.node = g("node", str, cfg.node)
    cfg.role = g("role", str, cfg.role)
    cfg.read_only = g("read_only", bool, cfg.read_only)
    cfg.proc_root = g("proc_root", str, cfg.proc_root)
    cfg.sys_root = g("sys_root", str, cfg.sys_root)
    cfg.state_dir = g("state_dir", str, cfg.state_dir)
    labels = g("labels", dict, {})
    for k, v in labels.items():
        if not isinstance(v, str):
            raise ConfigError(path, f"[agent] labels.{k}", f"expected str, got {type(v).__name__} {v!r}")
    cfg.labels = dict(labels)
    _check(cfg, path)

    for name, table in data.get("collectors", {}).items():
        cfg.collectors[name] = _collector(name, table, path)
    for name, table in data.get("templates", {}).items():
        if not isinstance(table, dict):
            raise ConfigError(path, f"[templates.{name}]", f"expected a table, got {type(table).__name__}")
        cfg.templates[name] = table
    cfg.security = data.get("security", {})


def _collector(name: str, table: Any, path: str) -> CollectorConfig:
    section = f"collectors.{name}"
    if not isinstance(table, dict):
        raise ConfigError(path, f"[{section}]", f"expected a table, got {type(table).__name__}")
    if name not in base.REGISTRY:
        raise ConfigError(path, f"[{section}]", f"unknown collector (known: {', '.join(sorted(base.REGISTRY))})")
    cc = CollectorConfig(name=name)
    cc.enabled = get(table, "enabled", bool, True, path, section)
    interval = get(table, "interval", (int, float), None, path, section)
    timeout = get(table, "timeout", (int, float), None, path, section)
    for key, value in (("interval", interval), ("timeout", timeout)):
        if value is not None and value <= 0:
            raise ConfigError(path, f"[{section}] {key}", f"must be > 0, got {value!r}")
    cc.interval_s = None if interval is None else float(interval)
    cc.timeout_s = None if timeout is None else float(timeout)
    # Collector-specific keys pass through; the collector validates them and names the key itself.
    cc.options = {k: v for k, v in table.items() if k not in COLLECTOR_KEYS}
    return cc


def _env_float(env: Mapping[str, str], var: str) -> float | None:
    raw = env.get(var)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(ENV, var, f"expected a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(ENV, var, f"must be > 0, got {raw!r}")
    return value


def _env_bool(env: Mapping[str, str], var: str) -> bool | None:
    raw = env.get(var)
    if raw is None or raw == "":
        return None
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(ENV, var, f"expected true/false (1/0, yes/no), got {raw!r}")


def _apply_env(cfg: AgentConfig, env: Mapping[str, str]) -> None:
    strings = {"CLUSTERTOP_REDIS": "redis_url", "CLUSTERTOP_REDIS_PASSWORD_FILE": "redis_password_file",
               "CLUSTERTOP_REDIS_CA_FILE": "redis_ca_file", "CLUSTERTOP_NODE": "node",
               "CLUSTERTOP_ROLE": "role", "CLUSTERTOP_PROC_ROOT": "proc_root",
               "CLUSTERTOP_SYS_ROOT": "sys_root"}
    for var, attr in strings.items():
        if env.get(var):
            setattr(cfg, attr, env[var])
    _check_url(env.get("CLUSTERTOP_REDIS") or None, ENV, "CLUSTERTOP_REDIS")
    for var, attr in (("CLUSTERTOP_INTERVAL", "interval_s"), ("CLUSTERTOP_HISTORY_INTERVAL", "hist_every_s")):
        value = _env_float(env, var)
        if value is not None:
            setattr(cfg, attr, value)
    read_only = _env_bool(env, "CLUSTERTOP_READ_ONLY")
    if read_only is not None:
        cfg.read_only = read_only


def _check(cfg: AgentConfig, where: str) -> None:
    """Value checks after each layer, so the error names the layer that set the bad value."""
    file = where if where != "command line" else None
    if not cfg.interval_s > 0:
        raise ConfigError(file, "[agent] interval" if file else "--interval", f"must be > 0, got {cfg.interval_s!r}")
    if not cfg.hist_every_s > 0:
        raise ConfigError(file, "[agent] history_interval", f"must be > 0, got {cfg.hist_every_s!r}")
    _check_url(cfg.redis_url, file, "[agent] redis" if file else "--redis")


def _check_url(url: str | None, file: str | None, key: str) -> None:
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        from clustertop.store import redact

        raise ConfigError(file, key, f"expected a redis://, rediss:// or unix:// URL, got {redact(url)!r}")


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
