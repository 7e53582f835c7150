"""Provides the collector interface, the roots every path is built from, and the registry."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from clustertop.config import Positive


class NoData(Exception):
    """The source is absent on this node (no NVIDIA driver, no bonds): not an error."""


@dataclass(frozen=True)
class Roots:
    """Where /proc, /sys and /dev live; tests and `--proc-root` point these at fixture trees."""

    proc: str = "/proc"
    sys: str = "/sys"
    dev: str = "/dev"
    etc: str = "/etc"

    def procfs(self, *parts: str) -> str:
        return os.path.join(self.proc, *parts)

    def sysfs(self, *parts: str) -> str:
        return os.path.join(self.sys, *parts)


@dataclass
class Context:
    """What a collector is built with: its own config section, the roots, and the node's name."""

    node: str
    roots: Roots = field(default_factory=Roots)
    config: dict[str, Any] = field(default_factory=dict)  # the [collectors.<name>] table (options only)
    config_file: str | None = None  # for errors: ConfigError(config_file, "[collectors.x] key", problem)
    interval_s: float = 1.0  # how often collect() will be called (rate collectors use it as a hint)
    #: The runner's deadline for one collect() ([collectors.<name>] timeout, stripped from ``config``).
    #: Collectors that make network calls budget their own per-request timeouts inside it.
    timeout_s: float | None = None


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The keys every ``[collectors.NAME]`` table takes. Each collector subclasses it with its own
    options, next to its code (``config_type`` on the collector class), and converts ``ctx.config``
    with it; the agent converts the file's table with the same Struct at load, so a typo stops the
    agent before anything runs."""

    enabled: bool = True
    interval: Positive | None = None  # None: the collector's default_interval_s (or the agent's)
    timeout: Positive | None = None  # the runner's deadline for one collect(); None: from the interval


class Collector(Protocol):
    """One source. Built once, ``collect()`` called every interval from the runner's thread pool.

    ``collect`` returns the value for the snapshot field named by ``field`` (node scope) or for
    the ClusterPayload field (cluster scope); raising NoData means "nothing here", any other
    exception is reported in the collector's status and the rest of the snapshot still flows.
    """

    name: str
    field: str
    scope: str  # "node" | "cluster"
    default_interval_s: float

    def collect(self) -> Any: ...

    def close(self) -> None: ...


# name -> "module:Class". Strings, so that nothing is imported until a collector is enabled.
REGISTRY: dict[str, str] = {
    "host": "clustertop.collectors.host:HostCollector",
    "gpu": "clustertop.collectors.gpu:GpuCollector",
    "bonds": "clustertop.collectors.bonds:BondsCollector",
    "nfs": "clustertop.collectors.nfs:NetMountCollector",
    "sensors": "clustertop.collectors.sensors:SensorsCollector",
    "ceph": "clustertop.collectors.ceph:CephCollector",
    "kubernetes": "clustertop.collectors.kubernetes:KubernetesCollector",
    "celery": "clustertop.collectors.celery:CeleryCollector",
    "dask": "clustertop.collectors.dask:DaskCollector",
    "containers": "clustertop.collectors.containers:ContainersCollector",
}

#: Collectors that run by default on every node (cluster-scope ones run only when configured).
DEFAULT_NODE_COLLECTORS = ("host", "gpu", "bonds", "nfs", "containers", "sensors")  # containers: where the socket exists


def config_type(name: str) -> type[Section]:
    """The Struct of ``[collectors.<name>]``: the collector's own, or just the common keys."""
    return getattr(_class(name), "config_type", Section)  # type: ignore[no-any-return]


def _class(name: str) -> Any:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown collector {name!r} (known: {', '.join(sorted(REGISTRY))})") from None
    module_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load(name: str, ctx: Context) -> Collector:
    return _class(name)(ctx)  # type: ignore[no-any-return]
