"""Provides the Agent: build collectors, tick, publish, hold leases, survive Redis outages.

One Agent is the whole node daemon minus process concerns (signals, logging setup, sd_notify
wiring live in agents/main.py). The dashboard's local mode runs one in a thread against the
embedded store, so nothing here assumes it owns the process.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from clustertop.agents.commands import default_state_dir
from clustertop.agents.config import AgentConfig, node_name, timeout_for
from clustertop.agents.energy import Ledger
from clustertop.agents.lease import Lease
from clustertop.agents.publisher import Publisher, hist_point
from clustertop.agents.runner import Runner, Slot
from clustertop.agents.sdnotify import Notifier
from clustertop.agents.selfstats import SelfStats
from clustertop.collectors import base
from clustertop.collectors.owner import name_containers
from clustertop.config import ConfigError
from clustertop.control import signing
from clustertop.errors import describe
from clustertop.store import connect_light, redact
from clustertop.store.resp import errors as store_errors
from clustertop.wire import schema

log = logging.getLogger("clustertop.agent")

#: A tick waits for its collectors at most this fraction of the interval; slower ones report
#: next tick (their last good value stays in the snapshot meanwhile).
TICK_BUDGET = 0.8
#: Publish retry back-off while Redis is unreachable. Nothing is buffered meanwhile: only the
#: latest snapshot matters, and the collectors keep running so it is fresh on recovery.
#: The cap is short on purpose: a node must show up again within ~2 s of Redis coming back, and a
#: retry costs one refused connect (or one connect timeout on a blackholed server).
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 1.5

# The fields a collector may fill: everything but the envelope the agent writes itself.
_NODE_FIELDS = set(schema.NodeSnapshot.__struct_fields__) - {
    "v", "host", "ts", "seq", "interval_s", "role", "labels", "collectors", "agent"}
_CLUSTER_FIELDS = set(schema.ClusterPayload.__struct_fields__) - {
    "v", "name", "source_host", "ts", "seq", "interval_s", "ok", "error", "last_ok_ts"}


def load_node_key(cfg: AgentConfig, dry_run: bool = False) -> signing.PrivateKey | None:
    """The node's own key (``[agent] node_key``, else ``node.key`` in the state directory), created on first use.

    A real agent that cannot load or create it refuses to start, naming the file and the fix: publishing
    unsigned data would make every dashboard show this node as unverified. A dry run only reads an
    existing key (it writes nothing, and may run as a user who cannot write the state directory): without
    one it signs with nothing and says so.
    """
    state = cfg.state_dir or default_state_dir()
    path = cfg.node_key or os.path.join(state, "node.key")
    if dry_run:
        try:
            return signing.load_private(path) if os.path.exists(path) else None
        except signing.KeyFileError as e:
            log.warning("dry run: node key not usable (%s): nothing would be signed", e)
            return None
    try:
        return signing.node_key(state, cfg.node_key)
    except (OSError, signing.KeyFileError) as e:
        what = "[agent] node_key" if cfg.node_key else "[agent] state_dir"
        raise ConfigError(cfg.file, what, f"node key: {e}") from None


class Agent:
    def __init__(self, cfg: AgentConfig, client_factory: Callable[[], Any] | None = None, *,
                 notifier: Notifier | None = None, dry_run: bool = False) -> None:
        if not cfg.node:  # an AgentConfig built by hand (local mode) rather than by load_config
            cfg.node = node_name(cfg.proc_root)
        self.cfg = cfg
        self.dry_run = dry_run
        #: Signs this node's seals, results and audit entries (None only in a dry run without a key).
        self.node_key = load_node_key(cfg, dry_run)
        if dry_run and self.node_key is None:
            log.info("dry run: no node key at %s (a real start creates it): nothing signed",
                     cfg.node_key or os.path.join(cfg.state_dir or default_state_dir(), "node.key"))
        self.notifier = notifier or Notifier(None)
        self.roots = base.Roots(proc=cfg.proc_root, sys=cfg.sys_root)
        self.stats = SelfStats(cfg.read_only)
        self.seq = 0
        self.ticks = 0
        #: Called after every tick with the agent (the command executor attaches here).
        self.hooks: list[Callable[[Agent], None]] = []
        self._client_factory = client_factory
        self._client: Any = None
        self._publisher: Publisher | None = None
        self._cluster_seq: dict[str, int] = {}
        self.leases: dict[str, Lease] = {}
        self._backoff = 0.0
        self._retry_at = 0.0
        self._outage_since: float | None = None
        self._close_lock = threading.Lock()
        self._closed = False
        slots = [self._build(name) for name in cfg.enabled_collectors()]
        self.runner = Runner(slots)
        if not dry_run:
            self.runner.jitter_first_runs()
        for s in slots:
            if s.scope == "cluster" and s.collector is not None and not dry_run:
                s.gate = self._gate(s.name)
        #: Job control: only when operator keys are configured (without them every command would be
        #: refused anyway). Built here so a bad [security]/[templates.*] stops the agent at start.
        self.executor: Any = None
        if cfg.security.operator_keys and not dry_run:
            from clustertop.agents.commands import CommandExecutor

            self.executor = CommandExecutor(self._new_client, cfg.node, cfg, roots=self.roots, node_key=self.node_key)
        self._executor_thread: threading.Thread | None = None
        #: kWh and GPU-hours per GPU, user, pod, job (agents/energy.py), kept in Redis under the node's own key.
        self.energy = None if dry_run else Ledger(cfg.node, cfg.energy)
        #: Alerts for the whole cluster, evaluated here while this agent holds the "alerts" lease.
        self.alerts: Any = None
        if cfg.alerts is not None and cfg.alerts.evaluate and not dry_run:
            from clustertop.alerting.service import AlertService
            from clustertop.wire.alerts import ALERTS_LEASE

            self.alerts = AlertService(
                cfg.alerts, cfg.node, self._new_client,
                lambda client: Lease(client, ALERTS_LEASE, cfg.node, cfg.alerts.interval if cfg.alerts else 2.0),
                self.node_key)
        self._alerts_thread: threading.Thread | None = None
        self._alerts_stop = threading.Event()
        #: Bucket summaries (issue 18), folded here for the buckets whose leases this agent holds.
        self.summaries: Any = None
        if cfg.summaries is not None and cfg.summaries.enabled and not dry_run and self.node_key is not None:
            from clustertop.agents.summaries import SummaryService

            self.summaries = SummaryService(
                cfg.summaries, cfg.node, cfg.interval_s, self._new_client,
                lambda client, name, period: Lease(client, name, cfg.node, period), self.node_key)
        self._summaries_thread: threading.Thread | None = None

    # -- construction -------------------------------------------------------------------------

    def _build(self, name: str) -> Slot:
        cc = self.cfg.collector(name)
        cls: Any = None
        try:
            module_name, _, cls_name = base.REGISTRY[name].partition(":")
            cls = getattr(importlib.import_module(module_name), cls_name)
        except Exception as e:  # a collector that cannot even load must not stop the others
            return self._broken(name, cc.interval_s or self.cfg.interval_s, describe(e))
        default = float(getattr(cls, "default_interval_s", self.cfg.interval_s) or self.cfg.interval_s)
        # Node collectors cannot usefully run faster than the agent ticks.
        interval = cc.interval_s or max(default, self.cfg.interval_s)
        timeout = timeout_for(interval, cc.timeout_s)
        ctx = base.Context(node=self.cfg.node, roots=self.roots, config=dict(cc.options),
                           config_file=self.cfg.file, interval_s=interval, timeout_s=timeout)
        field = str(getattr(cls, "field", name))
        scope = str(getattr(cls, "scope", "node"))
        status = schema.CollectorStatus(interval_s=interval)
        slot = Slot(name=name, collector=None, field=field, scope=scope, interval_s=interval,
                    timeout_s=timeout, status=status)
        fields = _CLUSTER_FIELDS if scope == "cluster" else _NODE_FIELDS
        if field not in fields:
            status.error = f"collector field {field!r} is not in the {scope} schema"
            return slot
        try:
            slot.collector = cls(ctx)
        except ConfigError:
            raise  # bad [collectors.<name>] options: refuse to start, naming the key
        except base.NoData:
            # "No such hardware" decided at start-up: a valid, permanent answer.
            from clustertop.agents.runner import NODATA_VALUES

            status.ok, status.last_ok_ts = True, time.time()
            slot.value, slot.value_ts = NODATA_VALUES.get(field), status.last_ok_ts
        except Exception as e:
            status.error = describe(e)
            log.warning("collector %s unavailable: %s", name, status.error)
        return slot

    def _broken(self, name: str, interval: float, error: str) -> Slot:
        log.warning("collector %s unavailable: %s", name, error)
        status = schema.CollectorStatus(ok=False, error=error, interval_s=interval)
        return Slot(name=name, collector=None, field="", scope="node", interval_s=interval,
                    timeout_s=timeout_for(interval, None), status=status)

    def _gate(self, name: str) -> Callable[[], bool]:
        return lambda: name in self.leases and self.leases[name].held

    # -- the store ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        if self._client_factory is not None:
            return self._client_factory()
        if self.cfg.redis_url:
            return connect_light(self.cfg.redis_url, self.cfg.redis_password_file, self.cfg.redis_ca_file)
        raise ConfigError(self.cfg.file, "[agent] redis",
                          "no Redis URL (set --redis, CLUSTERTOP_REDIS or [agent] redis)")

    def _refresh_leases(self) -> None:
        if time.monotonic() < self._retry_at:
            return  # Redis is down and we are backing off: a blackholed server would stall each tick
        for s in self.runner.slots.values():
            if s.gate is None:
                continue
            lease = self.leases.get(s.name)
            if lease is None:
                lease = self.leases[s.name] = Lease(self.client, s.name, self.cfg.node, s.interval_s)
            was = lease.held
            try:
                now_held = lease.refresh()
            except store_errors():
                now_held = lease.held  # outage: logged by publish(); keep what Redis would keep
            if now_held != was:
                log.info("%s lease %s", s.name, "taken: polling it for the cluster" if now_held else "lost")

    # -- one tick ---------------------------------------------------------------------------------

    def tick(self, *, complete: bool = False) -> tuple[schema.NodeSnapshot, list[schema.ClusterPayload]]:
        """Run due collectors and build the snapshot (nothing is published here).

        ``complete``: run every collector now and wait up to its timeout (``--once``, and always
        in dry-run mode); cluster-scope ones still need the lease unless in dry-run mode.
        """
        complete = complete or self.dry_run
        budget = self.cfg.interval_s * TICK_BUDGET
        if complete:
            budget = max([s.timeout_s for s in self.runner.slots.values()] or [1.0])
            for s in self.runner.slots.values():
                s.next_due = 0.0  # no jitter, no waiting for the schedule
        if not self.dry_run:
            self._refresh_leases()
        self.runner.tick(budget, run_all=self.dry_run)
        self.seq += 1
        return self._snapshot(), self._cluster_payloads()

    def _snapshot(self) -> schema.NodeSnapshot:
        snap = schema.NodeSnapshot(host=self.cfg.node, ts=time.time(), seq=self.seq,
                                   interval_s=self.cfg.interval_s, role=self.cfg.role,
                                   labels=dict(self.cfg.labels) or None, agent=self.stats.sample())
        statuses: dict[str, schema.CollectorStatus] = {}
        for s in self.runner.slots.values():
            if s.scope == "cluster":
                # A standby agent does not poll: only the lease holder reports on the source.
                if s.collector is not None and not (self.dry_run or s.gate is None or s.gate()):
                    continue
            elif s.field in _NODE_FIELDS:
                setattr(snap, s.field, self.runner.value(s))
            statuses[s.name] = msgspec.structs.replace(s.status)
        snap.collectors = statuses
        if snap.containers is not None:  # processes named by their container, not a 12-hex id (issue 16)
            name_containers(snap)
        if self.executor is not None:
            snap.tasks = self.executor.tasks()
            templates = getattr(self.executor, "templates", None)
            if templates is not None:  # the launcher offers these (names and param types, never argv)
                snap.templates = [schema.TemplateInfo(name=t.name, description=t.description,
                                                      params={n: p.type for n, p in t.params.items()})
                                  for t in templates.values()]
        return snap

    def _cluster_payloads(self) -> list[schema.ClusterPayload]:
        out = []
        for s in self.runner.slots.values():
            if s.scope != "cluster" or s.collector is None:
                continue
            if not (self.dry_run or (s.gate is not None and s.gate() and s.fresh)):
                continue
            seq = self._cluster_seq[s.name] = self._cluster_seq.get(s.name, 0) + 1
            payload = schema.ClusterPayload(
                name=s.name, source_host=self.cfg.node, ts=time.time(), seq=seq, interval_s=s.interval_s,
                ok=s.status.ok, error=s.status.error, last_ok_ts=s.status.last_ok_ts)
            # The last good data stays in the payload when the source fails: "Ceph unreachable,
            # data from 2 min ago" beats an empty panel.
            setattr(payload, s.field, s.value)
            out.append(payload)
        return out

    def publish(self, snap: schema.NodeSnapshot, cluster: list[schema.ClusterPayload]) -> bool:
        """One pipeline. False when skipped (backing off) or failed; never raises for Redis."""
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            if self._publisher is None:
                self._publisher = Publisher(self.client, self.cfg.node, self.cfg.interval_s, self.cfg.hist_every_s,
                                            key=self.node_key, full_every_s=self.cfg.full_every_s,
                                            wanted_every_s=self.cfg.full_every_wanted_s)
            self._publisher.publish(snap, hist_point(snap), cluster=cluster)
        except store_errors() as e:
            self.stats.publish_errors += 1
            self._backoff = min(BACKOFF_MAX_S, self._backoff * 2) if self._backoff else BACKOFF_MIN_S
            self._retry_at = now + self._backoff
            if self._outage_since is None:  # once per outage, not once per tick
                self._outage_since = time.time()
                log.warning("cannot publish to %s: %s (retrying every %g..%g s, not buffering)",
                            self._where(), describe(e), BACKOFF_MIN_S, BACKOFF_MAX_S)
            return False
        except (ValueError, OverflowError) as e:
            # An oversized snapshot, or an int past 64 bits that msgpack cannot carry (a collector's
            # bug): this tick is lost with a logged reason; the loop (and the watchdog ping) goes on.
            log.error("snapshot not published: %s", e)
            return False
        if self._outage_since is not None:
            log.info("publishing to %s again after %.0f s (%d failed attempts so far)", self._where(),
                     time.time() - self._outage_since, self.stats.publish_errors)
            self._outage_since = None
        self._backoff = 0.0
        self._retry_at = 0.0
        return True

    def account_energy(self, snap: schema.NodeSnapshot) -> None:
        """Count the snapshot's GPU energy; save the ledger when due. Skipped while Redis is backing off
        (the ledger keeps counting in memory and is saved with the next successful write)."""
        if self.energy is None:
            return
        if time.monotonic() < self._retry_at:
            self.energy.observe(snap)
            return
        try:
            self.energy.step(snap, self.client, time.time())
        except store_errors() as e:
            log.debug("energy ledger not saved: %s", describe(e))

    def _where(self) -> str:
        return redact(self.cfg.redis_url) if self.cfg.redis_url else "the store"

    def status_line(self) -> str:
        slots = [s for s in self.runner.slots.values() if s.scope == "node"]
        ok = sum(1 for s in slots if s.status.ok)
        line = f"{ok}/{len(slots)} collectors ok"
        held = [n for n, lease in self.leases.items() if lease.held]
        if held:
            line += f", lease holder for {', '.join(sorted(held))}"
        if self._outage_since is not None:
            line += f"; Redis unreachable for {time.time() - self._outage_since:.0f} s"
        return line

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick, publish, sleep to the next interval boundary, until ``stop`` is set."""
        interval = self.cfg.interval_s
        next_t = time.monotonic()
        ready = False
        if self.executor is not None and self._executor_thread is None:
            # Its own thread and connection: a blocking XREADGROUP must never delay a tick.
            self._executor_thread = threading.Thread(target=self.executor.run, args=(stop,),
                                                     name="commands", daemon=True)
            self._executor_thread.start()
        if self.alerts is not None and self._alerts_thread is None:
            # Its own thread and connection too: reading the cluster must never delay this node's tick.
            self._alerts_thread = threading.Thread(target=self.alerts.run, args=(self._alerts_stop,),
                                                   name="alerts", daemon=True)
            self._alerts_thread.start()
        if self.summaries is not None and self._summaries_thread is None:
            # Its own thread and connection as well (stopped with the alerts': ``_alerts_stop``).
            self._summaries_thread = threading.Thread(target=self.summaries.run, args=(self._alerts_stop,),
                                                      name="summaries", daemon=True)
            self._summaries_thread.start()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                snap, cluster = self.tick()
                self.publish(snap, cluster)
                self.account_energy(snap)
                for hook in self.hooks:
                    hook(self)
                healthy = True
            except Exception:  # a bug: log it, skip the watchdog ping so systemd can restart us
                log.exception("tick failed")
                healthy = False
            self.ticks += 1
            self.stats.last_tick_ms = round((time.monotonic() - t0) * 1000, 2)
            if healthy:
                if not ready:
                    self.notifier.ready(self.status_line())
                    ready = True
                else:
                    self.notifier.watchdog(self.status_line())
            now = time.monotonic()
            next_t += interval
            if next_t <= now:  # fell behind (suspend, slow tick): skip, never burst
                next_t = now + interval - (now - next_t) % interval
            stop.wait(next_t - now)
        self._alerts_stop.set()

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._alerts_thread is not None:
            self._alerts_stop.set()  # the service releases its lease as it stops: handed over at once
            self._alerts_thread.join(timeout=5)
        if self._summaries_thread is not None:
            self._alerts_stop.set()  # so does the summary service, every bucket's
            self._summaries_thread.join(timeout=5)
        for lease in self.leases.values():
            try:
                lease.release()  # hand over at once instead of after the TTL
            except store_errors():
                pass
        if self.energy is not None and self._client is not None and self.energy.loaded:
            try:
                self.energy.save(self._client, time.time(), force=True)  # the power-integrated tail too
            except store_errors():
                pass
        self.runner.close()
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a broken connection may raise; nothing left to do
                pass
