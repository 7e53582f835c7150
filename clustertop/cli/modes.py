"""Provides the dashboard's modes: `clustertop demo`, `clustertop --redis URL`, and local mode.

The composition root: the only place that starts agents (real or simulated) next to the dashboard.
Each mode builds a store (a client factory), starts what fills it, runs the dashboard, and stops
its threads on the way out, whatever way the dashboard ended.
"""

from __future__ import annotations

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
    """Embedded store, an hour of history, one tick already published, and the simulator thread."""
    from clustertop.sim.simulate import SimCluster, make_publishers, prefill_history, publish, start_thread
    from clustertop.store import embedded

    _, factory = embedded()
    client = factory()
    sim = SimCluster(seed=seed, nodes=nodes)
    sim.interval_s = interval_s
    t = time.time() if now is None else now
    prefill_history(client, sim, t, seconds=prefill_s)
    pubs = make_publishers(sim, client, interval_s)
    publish(client, sim, t, pubs)  # the dashboard's first read finds the whole cluster
    backend = Backend(factory, f"demo (simulated, seed {seed})")
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
    backend = Backend(factory, f"local ({cfg.node})")
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


def settings_for(args: Any, label: str) -> Any:
    from clustertop.dashboard.settings import Settings

    return Settings(theme=args.theme, read_only=bool(args.read_only or args.wall), wall=bool(args.wall),
                    ascii=bool(args.ascii), refresh_s=args.refresh, source_label=label,
                    wall_page_s=float(getattr(args, "page_seconds", 20.0)),
                    # Job control (dashboard only; demo and serve have no such flags): None = not configured.
                    operator_key=getattr(args, "key", None), operator=getattr(args, "operator", None),
                    kubeconfig=getattr(args, "kubeconfig", None), k8s_context=getattr(args, "k8s_context", None),
                    k8s_templates=getattr(args, "k8s_templates", None),
                    celery_broker=getattr(args, "celery_broker", None),
                    dask_scheduler=getattr(args, "dask_scheduler", None))


def show(settings: Any, client_factory: Callable[[], Any]) -> int:
    """Run the dashboard until the user quits (the tests replace this)."""
    from clustertop.dashboard.main import run

    return run(settings, client_factory)


def _run(backend: Backend, args: Any) -> int:
    try:
        return show(settings_for(args, backend.label), backend.client_factory)
    finally:
        backend.close()


def run_demo(args: Any) -> int:
    return _run(start_demo(args.seed, args.nodes), args)


def run_dashboard(args: Any) -> int:
    if args.redis:
        backend = start_store(args.redis, args.redis_password_file, args.redis_ca_file)
    else:
        backend = start_local(read_only=bool(args.read_only or args.wall))
    return _run(backend, args)
