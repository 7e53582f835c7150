"""Provides the dashboard's settings: everything the CLI and the tests can turn, and its config file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from clustertop.config import (
    Invalid,
    NonNegative,
    Positive,
    check_http_urls,
    check_tls,
    convert,
    environment,
    load_toml,
    overlay,
)


@dataclass
class Settings:
    theme: str | None = None  # None: the default theme ("dark")
    read_only: bool = False  # hide and refuse every action (job control comes later)
    wall: bool = False  # wall display: implies read_only
    wall_page_s: float = 20.0  # wall: seconds per page before the next one (0: no rotation)
    ascii: bool = False  # plain ASCII bars and sparklines (old terminals, serial consoles)
    refresh_s: float = 1.0
    source_label: str = ""  # shown in the header: "redis://host:6379", "demo", "local"
    frozen_time: float | None = None  # tests and snapshots freeze the clock here
    themes_dir: str | None = None  # extra user theme files (*.toml)
    # Job control (dashboard/actions.py): the operator's signing key and the operator's own credentials.
    operator_key: str | None = None  # private key file (--key / CLUSTERTOP_KEY); None: process keys explain
    operator: str | None = None  # name in the audit trail (default: user@host)
    kubeconfig: str | None = None  # the operator's kubeconfig (None: the client's default)
    k8s_context: str | None = None
    k8s_templates: str | None = None  # directory of Job templates (*.yaml) offered by the launcher
    celery_broker: str | None = None  # broker URL for revoke/terminate and pool grow/shrink
    celery_backend: str | None = None  # result backend URL: retry reads a task's full arguments there
    # Celery's global_keyprefix of that broker / result backend (control/celery.py); "" for none
    celery_broker_keyprefix: str = ""
    celery_backend_keyprefix: str = ""
    dask_scheduler: str | None = None  # scheduler dashboard URL for retire
    action_timeout_s: float = 15.0  # how long to wait for an agent's answer
    drain_timeout_s: float = 300.0  # how long a drain waits for its evicted pods to leave the node
    # Trust anchors (control/trust.py), local files and never Redis: the nodes' enrolled keys, which
    # snapshots, results and node audit entries are checked against, and operators' public keys, which
    # the audit screen checks their entries against (NAME.pub signs audit:op:NAME).
    known_nodes: str | None = None  # None: trust.default_known_nodes()
    operator_keys: list[str] = field(default_factory=list)
    # Alertmanager v2 URLs: acknowledging an alert creates a silence there (dashboard/alertfeed.py).
    alertmanager: list[str] = field(default_factory=list)
    known: Any = None  # a trust.KnownNodes in memory (the demo's simulated nodes); None: read known_nodes
    # The demo (cli/modes.py): its start-up progress (sim.simulate.Startup, ``text()`` None once live), and why
    # Kubernetes/Celery/Dask actions are refused (no real cluster behind it: never the user's kubeconfig).
    startup: Any = None
    external_control_refused: str | None = None
    # The demo's stand-in for those clients (sim.control.SimControl: ``.k8s``, ``.celery``, ``retire_worker``),
    # acting on the simulated cluster; when set, Kubernetes/Celery/Dask actions go there and nowhere else.
    demo_control: Any = None
    # History past an hour (dashboard/ranges.py): from this Prometheus's query_range instead of the
    # agents' Redis tiers ([history] prometheus); None: the Redis tiers.
    history_prometheus: str | None = None
    history_timeout_s: float = 5.0
    history_wall: list[str] = field(default_factory=lambda: ["1 h", "24 h"])  # the wall's trends, in turn
    # Ceph operator actions (dashboard/ceph_ops.py): the operator's own ceph-mgr dashboard access ([ceph] of the
    # config file and CLUSTERTOP_CEPH_*), None when neither sets it; and the config file read (None: there was
    # none; messages name where the default one would be).
    ceph: Any = None  # a CephAccess
    config_file: str | None = None

    @property
    def effective_read_only(self) -> bool:
        return self.read_only or self.wall


#: DashboardConfig keys that hold file or directory paths.
PATHS = ("redis_password_file", "redis_ca_file", "themes_dir", "operator_key", "kubeconfig", "k8s_templates",
         "known_nodes")


class HistoryConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[history]`` of the config file: where the node screen's 24 h and 7 d come from."""

    prometheus: str | None = None  # http(s) URL of a Prometheus scraping `clustertop exporter`
    timeout: Positive = 5.0  # seconds per query_range request
    wall: list[str] = msgspec.field(default_factory=lambda: ["1 h", "24 h"])  # the wall's GPU trends, in turn

    def __post_init__(self) -> None:
        from urllib.parse import urlsplit

        from clustertop.dashboard.ranges import range_named

        for label in self.wall:
            try:
                range_named(label)
            except ValueError as e:
                raise Invalid("wall", str(e)) from None
        if not self.wall:
            raise Invalid("wall", "name at least one range (\"1 h\", \"24 h\", \"7 d\")")

        if self.prometheus is not None:
            u = urlsplit(self.prometheus)
            if u.scheme not in ("http", "https") or not u.netloc:
                raise Invalid("prometheus", f"expected an http:// or https:// URL, got {self.prometheus!r}")


class CephAccess(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[ceph]`` of the config file: the operator's own ceph-mgr dashboard access for the Ceph keys (RBD
    snapshots and clones on the storage screen, noout and OSD out/in on a node's screen). The same access
    ``clustertop ceph`` takes from --ceph-url/--ceph-user/--ceph-password-file/--ceph-ca-file or
    CLUSTERTOP_CEPH_URL/_USER/_PASSWORD_FILE/_CA_FILE (those variables override this section here too).
    The password lives in a file, never in this one. Files are checked when an action needs them."""

    urls: list[str] = []  # every ceph-mgr dashboard URL (the standbys redirect to the active one)
    username: str | None = None  # your dashboard user (not the agent's read-only one)
    password_file: str | None = None
    ca_file: str | None = None  # the CA of the dashboard's TLS certificate
    verify: bool = True
    timeout: Positive = 300.0  # seconds to wait for an RBD task (a flatten copies every object)
    password: str | None = None  # refused: a secret in a config file ends up in backups

    def __post_init__(self) -> None:
        if self.password is not None:
            raise Invalid("password", "not allowed: put it in a file only you can read and set password_file")
        check_http_urls("urls", self.urls, "your ceph-mgr dashboard URLs, e.g. [\"https://mgr-a:8443\"]")
        if not self.username:
            raise Invalid("username", "required: your ceph-mgr dashboard user")
        if not self.password_file:
            raise Invalid("password_file", "required: a file holding your dashboard password")
        check_tls(self.ca_file, self.verify)
        self.password_file = os.path.expanduser(self.password_file)
        self.ca_file = os.path.expanduser(self.ca_file) if self.ca_file else None


def ceph_access(section: dict[str, Any] | None, env: Mapping[str, str], file: str | None) -> CephAccess | None:
    """``[ceph]`` (a TOML table, or None) with CLUSTERTOP_CEPH_* over it; None when neither says anything.
    Errors name the file and ``[ceph] key``, or the environment variable."""
    from clustertop.config import ENV, ConfigError
    from clustertop.control.ceph import ENV as CEPH_ENV

    data = dict(section or {})
    from_env: dict[str, Any] = {}
    for var, key in CEPH_ENV.items():
        text = env.get(var)
        if text:
            from_env[key] = [u for u in text.split(",") if u] if key == "urls" else text
    if section is None and not from_env:
        return None
    data.update(from_env)
    try:
        return convert(data, CephAccess, file, "ceph")
    except ConfigError as e:
        key = (e.key or "").removeprefix("[ceph] ")
        var = next((v for v, k in CEPH_ENV.items() if k == key and k in from_env), None)
        if var is not None:  # the value at fault came from the environment: name the variable
            raise ConfigError(ENV, var, e.problem) from None
        raise


def config_file(path: str | None, env: Mapping[str, str]) -> str:
    """The file settings come from, or where the default one would be (named in "add [ceph] to ...")."""
    home = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return path or os.path.join(home, "clustertop", "config.toml")


class DashboardConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[dashboard]`` of the config file (systemd/dashboard.toml.example documents each key). Every
    scalar key is also CLUSTERTOP_<KEY> in the environment, and most are flags of the same name."""

    redis: str | None = None  # None: local mode (this machine as a one-node cluster)
    redis_password_file: str | None = None
    redis_ca_file: str | None = None
    theme: str | None = None
    themes_dir: str | None = None
    refresh: Positive = 1.0
    read_only: bool = False
    wall: bool = False
    page_seconds: NonNegative = 20.0
    ascii: bool = False
    operator_key: str | None = None
    operator: str | None = None
    kubeconfig: str | None = None
    k8s_context: str | None = None
    k8s_templates: str | None = None
    celery_broker: str | None = None
    celery_backend: str | None = None  # the Celery result backend: retry reads the full arguments there
    # The broker's and result backend's global_keyprefix, as the Celery apps' config writes them (Redis only)
    celery_broker_keyprefix: str | None = None
    celery_backend_keyprefix: str | None = None
    dask_scheduler: str | None = None
    action_timeout: Positive = 15.0
    drain_timeout: Positive = 300.0  # seconds a drain (D on the Work screen's node) waits for evicted pods to go
    known_nodes: str | None = None  # None: trust.default_known_nodes()
    operator_keys: list[str] = []
    alertmanager: list[str] = []  # where acknowledging an alert creates a silence (the agents deliver there)
    # The file's own [history] section (load_config puts it here); "[history]" is its name only so that no
    # [dashboard] key can set it.
    history: HistoryConfig = msgspec.field(default_factory=lambda: HistoryConfig(), name="[history]")
    # The file's [ceph] section with CLUSTERTOP_CEPH_* over it (load_config), and the file itself; bracketed
    # names for the same reason as [history].
    ceph: CephAccess | None = msgspec.field(default=None, name="[ceph]")
    config_file: str | None = msgspec.field(default=None, name="[file]")

    def __post_init__(self) -> None:
        from clustertop.store import url_problem  # lazy: only a config that names a store needs it

        why = self.redis and url_problem(self.redis)
        if why:
            raise Invalid("redis", why)
        # No shell reads a config file: "~/..." is expanded here, as it would be on the command line.
        for name in PATHS:
            value = getattr(self, name)
            if value:
                setattr(self, name, os.path.expanduser(value))
        self.operator_keys = [os.path.expanduser(p) for p in self.operator_keys]
        for key in ("celery_broker_keyprefix", "celery_backend_keyprefix"):
            if getattr(self, key) is not None:  # the celery collector's rule (lazy: set only by Celery users)
                from clustertop.control.celery import keyprefix_problem

                why = keyprefix_problem(getattr(self, key))
                if why:
                    raise Invalid(key, why)
        from clustertop.alerting.config import url_problem

        for i, url in enumerate(self.alertmanager):
            why = url_problem(url)
            if why:
                raise Invalid(f"alertmanager[{i}]", why)

    def settings(self, source_label: str) -> Settings:
        return Settings(theme=self.theme, themes_dir=self.themes_dir, read_only=self.read_only or self.wall,
                        wall=self.wall, wall_page_s=self.page_seconds, ascii=self.ascii, refresh_s=self.refresh,
                        source_label=source_label, operator_key=self.operator_key, operator=self.operator,
                        kubeconfig=self.kubeconfig, k8s_context=self.k8s_context, k8s_templates=self.k8s_templates,
                        celery_broker=self.celery_broker, celery_backend=self.celery_backend,
                        celery_broker_keyprefix=self.celery_broker_keyprefix or "",
                        celery_backend_keyprefix=self.celery_backend_keyprefix or "",
                        dask_scheduler=self.dask_scheduler,
                        action_timeout_s=self.action_timeout, drain_timeout_s=self.drain_timeout,
                        known_nodes=self.known_nodes,
                        operator_keys=list(self.operator_keys), alertmanager=list(self.alertmanager),
                        history_prometheus=self.history.prometheus, history_timeout_s=self.history.timeout,
                        history_wall=list(self.history.wall), ceph=self.ceph, config_file=self.config_file)


class DashboardFile(msgspec.Struct, forbid_unknown_fields=True):
    dashboard: DashboardConfig = msgspec.field(default_factory=DashboardConfig)
    history: HistoryConfig = msgspec.field(default_factory=HistoryConfig)
    ceph: dict[str, Any] | None = None  # checked as CephAccess by ceph_access, with the environment over it


#: Names the environment knew before the CLUSTERTOP_<KEY> rule (variable -> key).
ENV_ALIASES = {"CLUSTERTOP_KEY": "operator_key"}
#: Flags not spelled --<key> (for errors that name the flag).
FLAG_NAMES = {"operator_key": "--key"}


def default_path(env: Mapping[str, str]) -> str | None:
    """$XDG_CONFIG_HOME/clustertop/config.toml (~/.config/... without it), if there is one."""
    home = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.path.join(home, "clustertop", "config.toml")
    return path if os.path.isfile(path) else None


def load_config(path: str | None, env: Mapping[str, str] = os.environ,
                flags: Mapping[str, Any] | None = None) -> DashboardConfig:
    """flags > environment > file (``path``, else the XDG default) > defaults. ``flags`` are keyed by
    DashboardConfig field; None (or False, for on/off flags) means "not given"."""
    path = path or default_path(env)
    file = convert(load_toml(path), DashboardFile, path) if path else DashboardFile()
    # [history] and [ceph] ride on the dashboard's section.
    parsed = msgspec.structs.replace(file.dashboard, history=file.history, ceph=ceph_access(file.ceph, env, path),
                                     config_file=path)
    given = {k: v for k, v in (flags or {}).items() if v is not None and v is not False}
    layers = {**environment(env, DashboardConfig, ENV_ALIASES),
              **overlay(given, DashboardConfig, "command line", lambda k: FLAG_NAMES.get(k) or "--" + k.replace("_", "-"))}
    return msgspec.structs.replace(parsed, **layers)
