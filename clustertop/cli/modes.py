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
    #: The demo's start-up progress (sim.simulate.Startup: ``text()`` while it fills the store), else None.
    startup: Any = None
    #: The mode's own operator key file (the demo's ephemeral key), else None: the operator's --key.
    operator_key: str | None = None
    #: Why the dashboard refuses Kubernetes/Celery/Dask actions in this mode (the demo), else None.
    external_refused: str | None = None
    #: The demo's Kubernetes/Celery/Dask control on the simulated cluster (sim.control.SimControl), else None.
    demo_control: Any = None
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(JOIN_TIMEOUT_S)
        for close in self.closers:
            close()


#: Simulated clusters up to this size keep history tiers in the demo.
DEMO_TIERS_MAX_NODES = 200


def start_demo(seed: int, nodes: int | None, interval_s: float = 1.0, now: float | None = None,
               prefill_s: float = 3600, wait: bool = True) -> Backend:
    """Embedded store, an hour of history, the first tick, and the simulator thread.

    Each simulated node has its own key (in memory, fresh each run) and seals what it publishes, as an
    agent does; the dashboard gets their public halves as its known nodes, so the demo shows "verified"
    the way an enrolled cluster does (and what a kill's confirm dialog says then).

    Job control: an ephemeral operator key (``sim.agents.DemoOperator``, a private temp dir removed at
    exit) that every simulated node trusts, and simulated agents that answer the signed commands on
    their cmd streams (``sim.agents.SimAgents``), polled by the simulator thread between ticks. The dashboard's
    Kubernetes, Celery and Dask actions go to ``sim.control.SimControl`` (``backend.demo_control``), whose
    calls run in the same thread between ticks and change the simulated cluster.

    ``wait=False`` (``clustertop demo``): return at once and let the simulator thread write the history
    and the first tick; ``backend.startup.text()`` says how far it got, for the screen."""
    from clustertop.control.trust import KnownNodes
    from clustertop.sim.agents import DemoOperator, SimAgents, template_infos
    from clustertop.sim.control import SimControl
    from clustertop.sim.simulate import (
        SimCluster,
        Startup,
        make_publishers,
        prefill_history,
        publish,
        start_thread,
    )
    from clustertop.store import embedded

    _, factory = embedded()
    client = factory()
    sim = SimCluster(seed=seed, nodes=nodes, keys=True)
    sim.interval_s = interval_s
    sim.templates = template_infos()  # the simulated agents launch these (sim/agents.py)
    startup = Startup(len(sim.hosts), prefill_s)
    # History tiers (24 h, 7 d on the node screen and the wall) as agents keep them: each publisher folds
    # the prefilled hour at its first tick (+0.3 s at 15 nodes; +3.7 s at 1,000, so not there).
    pubs = make_publishers(sim, client, interval_s, tiers=len(sim.hosts) <= DEMO_TIERS_MAX_NODES)
    if wait:
        t = time.time() if now is None else now
        prefill_history(client, sim, t, seconds=prefill_s, progress=startup.step)
        publish(client, sim, t, pubs)  # the dashboard's first read finds the whole cluster
        startup.live.set()
    operator = DemoOperator()
    agents = SimAgents(sim, factory, operator, time.time)
    control = SimControl(sim)  # the dashboard's Kubernetes/Celery/Dask actions, on the simulated cluster

    def each_tick(client: Any, now: float) -> None:
        control.run_pending(client, now)
        agents.poll(client, now)
    backend = Backend(factory, f"demo (simulated, seed {seed})", known=KnownNodes(keys=sim.node_keys()))
    backend.startup = startup
    backend.operator_key = operator.key_path
    backend.external_refused = DEMO_EXTERNAL  # only if demo_control were missing: never a real client
    backend.demo_control = control
    backend.threads.append(start_thread(factory, seed, nodes, interval_s, backend.stop, sim=sim, publishers=pubs,
                                        startup=None if wait else startup, each_tick=each_tick))
    backend.closers += [agents.close, operator.close]
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
        if backend.startup is not None:
            settings.startup = backend.startup
        if backend.external_refused is not None:
            settings.external_control_refused = backend.external_refused
        if backend.operator_key is not None:
            settings.operator_key = backend.operator_key
        if backend.demo_control is not None:
            settings.demo_control = backend.demo_control
        return show(settings, backend.client_factory)
    finally:
        backend.close()


#: The fallback when a demo has no ``demo_control``: refused, never a real client.
DEMO_EXTERNAL = ("demo: no simulated Kubernetes, Celery or Dask is connected (this dashboard never uses "
                 "a kubeconfig, broker or scheduler in the demo); kill and launch act on the simulated nodes")

#: What the demo never takes from the config file or the environment: the operator's own credentials.
#: Its job control acts on the simulated cluster only (its ephemeral key, its simulated agents); a
#: kubeconfig, broker or scheduler of the user's would point the demo's keys at a real cluster.
DEMO_CLEARED = {"operator_key": None, "kubeconfig": None, "k8s_context": None, "k8s_templates": None,
                "celery_broker": None, "celery_backend": None, "celery_broker_keyprefix": None,
                "celery_backend_keyprefix": None, "dask_scheduler": None, "known_nodes": None, "operator_keys": [],
                "ceph": None}


def run_demo(args: Any) -> int:
    import msgspec

    cfg = config_for(args)  # before anything starts: a bad config file stops here
    # The user's Alertmanager too (silences from the demo's `a` key would land on the real one).
    extra = {"alertmanager": []} if "alertmanager" in type(cfg).__struct_fields__ else {}
    cfg = msgspec.structs.replace(cfg, **DEMO_CLEARED, **extra)
    # The dashboard opens at once; the simulator fills the store behind it, its progress on screen.
    return _run(start_demo(args.seed, args.nodes, wait=False), cfg)


def run_dashboard(args: Any) -> int:
    cfg = config_for(args)
    if cfg.redis:
        backend = start_store(cfg.redis, cfg.redis_password_file, cfg.redis_ca_file)
    else:
        backend = start_local(read_only=cfg.read_only or cfg.wall)
    return _run(backend, cfg)
