"""Provides AlertService: the headless evaluation one agent runs while it holds the "alerts" lease.

Each ``interval``: renew or take the lease; while held, read the cluster as the dashboard does
(``read.Reader``: one round trip, GPU level so the GPU ledger's flags can be computed), fold it into alerts
(``read.cluster.alerts``), step the rule set, write the signed state with its timeline, and hand the
records to the Alertmanager sender. Own thread, own Redis connection: a slow read never delays a tick, a
slow Alertmanager never delays a read. A new lease holder carries on from the state the previous one
wrote, so what fires keeps firing without a second notice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from clustertop.alerting import store
from clustertop.alerting.alertmanager import Deliverer
from clustertop.alerting.config import AlertsSection
from clustertop.alerting.rules import Evaluator, Settings
from clustertop.control import signing
from clustertop.errors import describe
from clustertop.read.cluster import HostMatchMemo
from clustertop.read.cluster import alerts as cluster_alerts
from clustertop.read.ledger import LedgerTracker, update_from_state
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.wire.alerts import AlertState

log = logging.getLogger("clustertop.alerts")


class AlertService:
    def __init__(self, section: AlertsSection, node: str, client_factory: Callable[[], Any],
                 lease_factory: Callable[[Any], Any], node_key: signing.PrivateKey | None,
                 clock: Callable[[], float] = time.time, deliverer: Deliverer | None = None) -> None:
        self.section = section
        self.node = node
        self.settings = Settings.of(section)
        self.client_factory = client_factory
        self.lease_factory = lease_factory
        self.node_key = node_key
        self.clock = clock
        self.evaluator = Evaluator(self.settings)
        self.deliverer = deliverer or Deliverer(section.alertmanager, section.cluster, section.resend,
                                                section.timeout, clock)
        self.ledger = LedgerTracker()
        self.client: Any = None
        self.lease: Any = None
        self.reader: Reader | None = None
        self.host_match = HostMatchMemo()  # Kubernetes node names matched to hosts, from evaluation to evaluation
        self.seq = 0
        self.adopted = False
        self.error: str | None = None  # the last failure, once per kind (logged when it changes)
        self.evaluations = 0

    def _connect(self) -> None:
        if self.client is None:
            self.client = self.client_factory()
            self.lease = self.lease_factory(self.client)
            self.reader = Reader(self.client, clock=self.clock)

    def step(self) -> bool:
        """One evaluation if this agent holds (or takes) the lease; returns whether it did. Never raises
        for Redis or a bad payload: the failure is logged once and the next step tries again."""
        try:
            self._connect()
            if not self.lease.refresh():
                if self.adopted:
                    log.info("alerts lease lost: another agent evaluates alerts now")
                self.adopted = False
                self.deliverer.submit([], changed=False)
                return False
            self._evaluate()
        except Exception as e:  # Redis down, a bug in a rule: the agent goes on
            why = describe(e)
            if why != self.error:
                log.warning("alert evaluation failed: %s", why)
            self.error = why
            self._drop_connection()
            return False
        if self.error is not None:
            log.info("alert evaluation works again")
            self.error = None
        return True

    def _evaluate(self) -> None:
        assert self.reader is not None
        if not self.adopted:
            prev = store.load_unverified(self.client)
            if prev is not None:
                self.evaluator.adopt(prev.alerts, prev.events)
                self.seq = prev.seq
            self.adopted = True
            log.info("alerts lease taken: evaluating %d rules for the cluster", len(self.settings.for_s))
            first = True
        else:
            first = False
        state = self.reader.read(ReadPlan(Level.GPUS))
        flags = None
        if "kubernetes" in state.cluster:
            flags = update_from_state(self.ledger, state).flags
        now = self.clock()
        current = cluster_alerts(state.nodes, state.cluster, now, flags=flags,
                                 pending_grace_s=self.settings.pending_grace_s(), host_memo=self.host_match)
        events = self.evaluator.step(current, now)
        records = self.evaluator.sorted_records()
        self.deliverer.submit(records, changed=bool(events) or first)
        self.seq += 1
        self.evaluations += 1
        out = AlertState(host=self.node, ts=now, seq=self.seq, interval_s=self.section.interval, alerts=records,
                         events=list(self.evaluator.events), delivery=self.deliverer.status())
        store.write(self.client, out, self.node_key)

    def _drop_connection(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: S110 - a broken connection may fail to close; a new one comes next step
                pass
        # The lease object goes with its connection; what we held lapses by its TTL (or is renewed by
        # the new object only after it takes the key again).
        self.adopted = False

    def run(self, stop: threading.Event) -> None:
        self.deliverer.start()
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                self.step()
                stop.wait(max(0.05, self.section.interval - (time.monotonic() - t0)))
        finally:
            self.close()

    def close(self) -> None:
        self.deliverer.stop()
        if self.lease is not None:
            try:
                self.lease.release()
            except Exception:  # noqa: S110 - Redis gone: the lease lapses by its TTL
                pass
        self._drop_connection()
