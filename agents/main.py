"""Provides `clustertop agent`: config, logging, signals and sd_notify around one Agent."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from clustertop import wire
from clustertop.agents import caps
from clustertop.agents.agent import Agent, load_node_key
from clustertop.agents.config import AgentConfig, load_config
from clustertop.agents.sdnotify import Notifier
from clustertop.config import ConfigError
from clustertop.control import signing
from clustertop.store import redact

log = logging.getLogger("clustertop.agent")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, by AgentConfig field (None: not given)."""
    return {
        "redis_url": getattr(args, "redis", None),
        "redis_password_file": getattr(args, "redis_password_file", None),
        "redis_ca_file": getattr(args, "redis_ca_file", None),
        "node": getattr(args, "node", None),
        "interval_s": getattr(args, "interval", None),
        "read_only": getattr(args, "read_only", None) or None,  # store_true: absent means "not given"
        "proc_root": getattr(args, "proc_root", None),
        "sys_root": getattr(args, "sys_root", None),
    }


def setup_logging(level: str) -> None:
    # journald stamps time and unit itself; keep lines short.
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, str(level).upper(), logging.INFO),
                        format="%(levelname)s %(name)s: %(message)s")


def dry_run(cfg: AgentConfig) -> int:
    """Every configured collector once (cluster-scope too, no lease), printed as JSON.

    One sample only: rate fields (bytes/s, CPU %) need two samples and are honestly None here.
    """
    agent = Agent(cfg, dry_run=True)
    try:
        snap, cluster = agent.tick()
    finally:
        agent.close()
    out = {"node": snap, "cluster": {p.name: p for p in cluster}}
    sys.stdout.buffer.write(wire.to_json(out) + b"\n")
    sys.stdout.flush()
    return 0


def show_key(cfg: AgentConfig) -> int:
    """The node's public key on stdout, alone on its line (``clustertop agent --show-key > gpu01.pub`` is the
    file ``clustertop enrol gpu01 --key gpu01.pub`` takes); its name and fingerprint on stderr, to compare by
    eye with what ``enrol --from-redis`` shows. Creates the key if this node has none yet, as a start would."""
    key = load_node_key(cfg)
    assert key is not None  # only a dry run goes without
    pub = key.public()
    sys.stdout.write(signing.public_b64(pub) + "\n")
    sys.stdout.flush()
    print(f"node {cfg.node}: Ed25519 key {signing.fingerprint(pub)} ({key.path})\n"
          f"to enrol it where operators run clustertop, save the key line as {cfg.node}.pub, then: "
          f"clustertop enrol {cfg.node} --key {cfg.node}.pub",
          file=sys.stderr)
    return 0


def warn_missing_cap_kill(cfg: AgentConfig) -> bool:
    """``[security] signal_users`` names other users, but this process cannot signal them (no CAP_KILL: the
    shipped unit grants none; systemd/signal-users.conf is the drop-in that does). The agent still starts -
    monitoring must not stop over a job-control setting - and says so loudly; such kills then fail with
    EPERM. True when it warned."""
    if not cfg.security.signal_users or caps.has_capability(caps.CAP_KILL):
        return False
    log.warning("!!! %s: [security] signal_users = %s, but the agent lacks CAP_KILL: signals to other users' "
                "processes will fail. Grant it with the drop-in systemd/signal-users.conf (`clustertop systemd "
                "signal-users.conf`), or remove signal_users !!!", cfg.file or "(no config file)",
                list(cfg.security.signal_users))
    return True


def run(args: argparse.Namespace) -> int:
    if getattr(args, "task_exec", False):  # a clustertop-task@ instance: no config, no Redis, just the task
        from clustertop.agents.taskexec import serve

        return serve()
    setup_logging(getattr(args, "log_level", "info"))
    cfg = load_config(getattr(args, "config", None), os.environ, overrides_from(args))
    warn_missing_cap_kill(cfg)
    if getattr(args, "show_key", False):
        return show_key(cfg)
    if getattr(args, "dry_run", False):
        return dry_run(cfg)
    if not cfg.redis_url:
        raise ConfigError(cfg.file, "[agent] redis", "no Redis URL (set --redis, CLUSTERTOP_REDIS or [agent] redis)")
    notifier = Notifier.from_env()
    agent = Agent(cfg, notifier=notifier)
    log.info("node %s publishing to %s every %g s (%s)", cfg.node, redact(cfg.redis_url), cfg.interval_s,
             ", ".join(agent.runner.slots) or "no collectors")
    if agent.node_key is not None:
        log.info("signing with node key %s (%s)", signing.fingerprint(agent.node_key.public()), agent.node_key.path)
    try:
        if getattr(args, "once", False):
            snap, cluster = agent.tick(complete=True)
            if not agent.publish(snap, cluster):
                return 1
            return 0
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("%s: stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        agent.run(stop)
        notifier.stopping("stopping")
        return 0
    finally:
        agent.close()
        notifier.close()
