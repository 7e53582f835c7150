"""Provides the dashboard's modes: `clustertop demo`, `clustertop --redis URL`, and local mode.

The composition root: the only place that starts agents (real or simulated) next to the dashboard.
Each mode builds a store (a client factory), starts what fills it, runs the dashboard, and stops
its threads on the way out, whatever way the dashboard ended.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How long shutting down waits for a background thread (they check their stop event each tick).
JOIN_TIMEOUT_S = 5.0


@dataclass
class Backend:
    """What a mode runs behind the dashboard: a store, its label, threads to stop at exit."""

    client_factory: Callable[[], Any]
    label: str
    #: Trust anchors the mode brings (control.trust.KnownNodes): the demo's simulated nodes' keys, held in
    #: memory; None: the operator's known_nodes file, as for a real cluster.
    known: Any = None
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(JOIN_TIMEOUT_S)
        for close in self.closers:
            close()


def start_demo(seed: int, nodes: int | None, interval_s: float = 1.0, now: float | None = None,
               prefill_s: float = 3600) -> Backend:
    """Embedded store, an hour of history, one tick already published, and the simulator thread.

    Each simulated node has its own key (in memory, fresh each run) and seals what it publishes, as an
    agent does; the dashboard gets their public halves as its known nodes, so the demo shows "verified"
    the way an enrolled cluster does (and what a kill's confirm dialog says then)."""
    from clustertop.control.trust import KnownNodes
    from clustertop.sim.simulate import SimCluster, make_publishers, prefill_history, publish, start_thread
    from clustertop.store import embedded

    _, factory = embedded()
    client = factory()
    sim = SimCluster(seed=seed, nodes=nodes, keys=True)
    sim.interval_s = interval_s
    t = time.time() if now is None else now
    prefill_history(client, sim, t, seconds=prefill_s)
    pubs = make_publishers(sim, client, interval_s)
    publish(client, sim, t, pubs)  # the dashboard's first read finds the whole cluster
    backend = Backend(factory, f"demo (simulated, seed {seed})", known=KnownNodes(keys=sim.node_keys()))
    backend.threads.append(start_thread(factory, seed, nodes, interval_s, backend.stop, sim=sim, publishers=pubs))
    return backend


def start_local(read_only: bool = False, interval_s: float = 1.0) -> Backend:
    """Local mode: embedded store and an in-process agent, so this machine is a one-node cluster."""
    from clustertop.agents.agent import Agent
    from clustertop.agents.config import load_config
    from clustertop.store import embedded

    _, factory = embedded()
    # env={}: local mode is what runs when no store is configured; stray CLUSTERTOP_* settings of a
    # real agent on this machine (its node name, its Redis) must not leak into it.
    cfg = load_config(None, env={}, overrides={"interval_s": interval_s, "read_only": read_only})
    agent = Agent(cfg, factory)
    # The one node is this process's own agent, its key read from this machine's disk, its store in this
    # process: its public half is a trust anchor as good as a known_nodes line (nobody else can write here).
    from clustertop.control.trust import KnownNodes

    known = KnownNodes(keys={cfg.node: agent.node_key.public()}) if agent.node_key is not None else None
    backend = Backend(factory, f"local ({cfg.node})", known=known)
    th = threading.Thread(target=agent.run, args=(backend.stop,), name="clustertop-local-agent", daemon=True)
    th.start()
    backend.threads.append(th)
    backend.closers.append(agent.close)
    return backend


def start_store(url: str, password_file: str | None = None, ca_file: str | None = None) -> Backend:
    """A real store by URL. Nothing is started; a bad URL fails here, before the screen opens."""
    from clustertop.store import connect, redact

    connect(url, password_file, ca_file)  # raises ConfigError for a malformed URL or unreadable secret

    def factory() -> Any:
        return connect(url, password_file, ca_file)

    return Backend(factory, redact(url))


#: Flags spelled differently from their DashboardConfig key (argparse dest -> key).
FLAG_KEYS = {"key": "operator_key"}


def config_for(args: Any) -> Any:
    """The dashboard's DashboardConfig: flags > environment > file (--config, else the XDG default) > defaults.

    Every flag whose name is a config key is a layer; the demo has fewer flags, and no --config."""
    from clustertop.dashboard.settings import DashboardConfig, load_config

    flags = {FLAG_KEYS.get(dest, dest): value for dest, value in vars(args).items()}
    flags = {k: v for k, v in flags.items() if k in DashboardConfig.__struct_fields__}
    return load_config(getattr(args, "config", None), os.environ, flags)


def settings_for(cfg: Any, label: str) -> Any:
    return cfg.settings(label)


def show(settings: Any, client_factory: Callable[[], Any]) -> int:
    """Run the dashboard until the user quits (the tests replace this)."""
    from clustertop.dashboard.main import run

    return run(settings, client_factory)


def _run(backend: Backend, cfg: Any) -> int:
    try:
        settings = settings_for(cfg, backend.label)
        if backend.known is not None:
            settings.known = backend.known  # the mode's own anchors (the demo's nodes), not a file
        return show(settings, backend.client_factory)
    finally:
        backend.close()


def run_demo(args: Any) -> int:
    cfg = config_for(args)  # before anything starts: a bad config file stops here
    return _run(start_demo(args.seed, args.nodes), cfg)


def run_dashboard(args: Any) -> int:
    cfg = config_for(args)
    if cfg.redis:
        backend = start_store(cfg.redis, cfg.redis_password_file, cfg.redis_ca_file)
    else:
        backend = start_local(read_only=cfg.read_only or cfg.wall)
    return _run(backend, cfg)
