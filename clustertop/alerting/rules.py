"""Provides the rule set and its evaluation: alerts in, pending -> firing -> resolved out.

``read.cluster.alerts`` says what is wrong *now*; a rule says how long it must last before anyone is
told (``for``), how severe it is, and whether it is silenced. ``Evaluator.step`` is pure (time is passed
in), so every transition is tested without sleeping. Identity is (rule, node, subject): the message of
"down, last seen 5m ago" changes every minute, the alert does not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from clustertop.alerting.config import AlertsSection, seconds
from clustertop.read.cluster import Alert
from clustertop.wire.alerts import EVENTS_MAX, MESSAGE_MAX, SUBJECT_MAX, AlertEvent, AlertRecord


@dataclass(frozen=True)
class Rule:
    name: str
    summary: str  # Alertmanager's summary annotation
    for_s: float = 0.0
    severity: str | None = None  # None: the alert's own (e.g. a bond with no slave left is critical)
    threshold: float | None = None  # the rule's own number, where it has one
    unit: str = ""


def _r(name: str, summary: str, for_s: float = 0.0, severity: str | None = None, threshold: float | None = None,
       unit: str = "") -> tuple[str, Rule]:
    return name, Rule(name, summary, for_s, severity, threshold, unit)


#: The built-in rules: one per kind of alert ``read.cluster.alerts`` makes. ``for`` defaults are short:
#: the sources already debounce (a node is stale only after 3 missed reports, a queue grows for a while).
RULES: dict[str, Rule] = dict([
    _r("NodeSilent", "a node stopped reporting", 0.0, "critical"),
    _r("NodeBadData", "a node publishes data that cannot be used", 10.0),
    _r("CollectorFailing", "a collector on a node keeps failing", 30.0),
    _r("GpuLost", "a GPU fell off the bus", 0.0),
    _r("GpuHot", "a GPU runs hot", 60.0),
    _r("GpuEccErrors", "a GPU reports uncorrected ECC errors", 0.0),
    _r("GpuThrottled", "a GPU is throttled by hardware", 60.0),
    _r("GpuXid", "a GPU reported an XID error", 0.0),
    _r("GpuMemoryRepair", "a GPU's memory needs a reset or service (row remap, page retirement)", 0.0),
    _r("GpuProblem", "a GPU reports a problem", 30.0),
    _r("CpuHot", "a node's CPU/SoC runs at its slowdown temperature", 60.0),
    _r("CpuThrottled", "a node's CPU/SoC is thermally throttled", 60.0),
    _r("BondDegraded", "a network bond lost a link", 0.0),
    _r("MountHung", "a network mount hangs", 0.0),
    _r("MountSlow", "a network mount is slow", 60.0),
    _r("MountError", "a network mount fails", 30.0),
    _r("FilesystemFull", "a filesystem is nearly full", 60.0),
    _r("NodeProblem", "a node reports a problem", 30.0),
    _r("CephUnreachable", "Ceph does not answer", 30.0),
    _r("CephOsdDown", "a Ceph OSD is down", 0.0),
    _r("CephHealth", "Ceph reports a health check", 30.0),
    _r("QueueGrowingNoConsumer", "a queue grows and nothing consumes it", 0.0),
    _r("QueueSourceError", "a queue source fails", 60.0),
    _r("KubeNodeNotReady", "a Kubernetes node is NotReady", 30.0),
    _r("KubeGpuPodPending", "a GPU pod stays Pending", 0.0, threshold=300.0, unit="s"),
    _r("KubePodCrashLooping", "a pod is in CrashLoopBackOff", 60.0),
    _r("GpuIdleAllocated", "GPUs allocated to a pod sit idle", 0.0),
    _r("GpuUnownedBusy", "GPUs busy outside the scheduler", 0.0),
    _r("GpuLedger", "the GPU ledger flags a node", 0.0),
])


@dataclass(frozen=True)
class Settings:
    """The rule set with ``[alerts]`` applied."""

    for_s: dict[str, float]
    severity: dict[str, str]
    threshold: dict[str, float]
    silenced: frozenset[str]
    keep_resolved_s: float

    @classmethod
    def of(cls, section: AlertsSection | None = None) -> Settings:
        section = section or AlertsSection()
        for_s = {n: r.for_s for n, r in RULES.items()}
        severity = {n: r.severity for n, r in RULES.items() if r.severity}
        threshold = {n: r.threshold for n, r in RULES.items() if r.threshold is not None}
        silenced = set(section.silenced)
        for name, rc in section.rules.items():
            if rc.for_ is not None:
                for_s[name] = seconds(rc.for_)
            if rc.severity is not None:
                severity[name] = rc.severity
            if rc.threshold is not None:
                threshold[name] = rc.threshold
            if rc.silenced:
                silenced.add(name)
        return cls(for_s, severity, threshold, frozenset(silenced), section.keep_resolved)

    def pending_grace_s(self) -> float:
        return self.threshold["KubeGpuPodPending"]


Ident = tuple[str, str | None, str]


def ident(rule: str, node: str | None, subject: str) -> Ident:
    return (rule, node, subject)


class Evaluator:
    """The rule set's memory: every alert it tracks and the timeline of what fired and resolved."""

    def __init__(self, settings: Settings, events_max: int = EVENTS_MAX) -> None:
        self.settings = settings
        self.records: dict[Ident, AlertRecord] = {}
        self.events: deque[AlertEvent] = deque(maxlen=events_max)

    def adopt(self, records: Iterable[AlertRecord], events: Iterable[AlertEvent]) -> None:
        """Carry on from the state a previous lease holder wrote: what fires keeps firing, no second notice."""
        for r in records:
            if r.rule in RULES and r.state in ("pending", "firing", "resolved"):
                self.records[ident(r.rule, r.node, r.subject)] = msgspec.structs.replace(r)
        self.events.extend(events)

    def step(self, alerts: Iterable[Alert], now: float) -> list[AlertEvent]:
        """Fold the alerts present now in; return the events this step made (fired, resolved)."""
        s = self.settings
        made: list[AlertEvent] = []
        seen: set[Ident] = set()
        for a in alerts:
            rule = a.rule or "NodeProblem"
            if rule in s.silenced or rule not in RULES:
                continue
            node = a.node[:SUBJECT_MAX] if a.node else a.node
            subject = a.subject[:SUBJECT_MAX]
            key = ident(rule, node, subject)
            if key in seen:
                continue  # two alerts of one rule on one subject (two ECC lines): one alert
            seen.add(key)
            r = self.records.get(key)
            if r is None or r.state == "resolved":
                r = AlertRecord(rule=rule, severity=s.severity.get(rule, a.severity), source=a.source, node=node,
                                subject=subject, message="", state="pending", since_ts=now)
                self.records[key] = r
            r.message = a.message[:MESSAGE_MAX]
            if r.state == "pending" and now - r.since_ts >= s.for_s.get(rule, 0.0):
                r.state, r.fired_ts = "firing", now
                made.append(self._event(r, "fired", now))
        for key, r in list(self.records.items()):
            if key in seen:
                continue
            if r.state == "pending":
                del self.records[key]  # it never fired: nobody was told, nothing to take back
            elif r.state == "firing":
                r.state, r.resolved_ts = "resolved", now
                made.append(self._event(r, "resolved", now))
            elif r.resolved_ts is not None and now - r.resolved_ts > s.keep_resolved_s:
                del self.records[key]
        return made

    def _event(self, r: AlertRecord, kind: str, now: float) -> AlertEvent:
        ev = AlertEvent(ts=now, kind=kind, rule=r.rule, severity=r.severity, source=r.source, node=r.node,
                        subject=r.subject, message=r.message)
        self.events.append(ev)
        return ev

    def sorted_records(self) -> list[AlertRecord]:
        order = {"firing": 0, "pending": 1, "resolved": 2}
        sev = {"critical": 0, "warning": 1, "info": 2}
        return sorted(self.records.values(), key=lambda r: (order.get(r.state, 3), sev.get(r.severity, 3),
                                                            r.node or "", r.rule, r.subject))
