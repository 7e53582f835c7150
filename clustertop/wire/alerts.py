"""Provides the alert state on the wire: ``ct:v1:alerts``, written by the agent that holds the "alerts" lease.

One key, rewritten whole on every evaluation: the alerts the rule set knows (pending, firing, recently
resolved), the timeline of fired/resolved events (capped), and how delivery to each Alertmanager went.
It is signed with the writing node's key (``control.signing``, domain "alerts"); readers check it against
their known_nodes (clustertop.alerting.store), because any node that may take the lease may write it.
"""

from __future__ import annotations

from clustertop.wire import PREFIX
from clustertop.wire.schema import SCHEMA_VERSION, Base, Payload

ALERTS_KEY = f"{PREFIX}:alerts"
#: The lease (agents/lease.py) that makes one agent evaluate and deliver.
ALERTS_LEASE = "alerts"
#: Events kept in the timeline (about a day of a busy cluster's openings and clearings).
EVENTS_MAX = 500
#: Node text kept per alert (a collector's error can be any length): the state must stay one readable key.
MESSAGE_MAX = 300
SUBJECT_MAX = 200


class AlertRecord(Base):
    """One alert the rule set tracks. Its identity is (rule, node, subject); the message may change."""

    rule: str
    severity: str  # locked when first seen, so Alertmanager's labels stay the same while it fires
    source: str
    node: str | None = None
    subject: str = ""
    message: str = ""  # node text: escaped before a terminal sees it
    state: str = "pending"  # "pending" | "firing" | "resolved"
    since_ts: float = 0.0  # first seen active
    fired_ts: float | None = None
    resolved_ts: float | None = None


class AlertEvent(Base):
    ts: float
    kind: str  # "fired" | "resolved"
    rule: str
    severity: str
    source: str
    node: str | None = None
    subject: str = ""
    message: str = ""


class Delivery(Base):
    """How sending to one Alertmanager went (the URL as configured, without credentials)."""

    url: str
    ok: bool | None = None  # None: nothing sent yet
    last_try_ts: float | None = None
    last_ok_ts: float | None = None
    error: str | None = None
    failures: int = 0  # in a row


class AlertState(Payload):
    v: int = SCHEMA_VERSION
    host: str = ""  # the node that evaluated and signed this
    ts: float = 0.0
    seq: int = 0
    interval_s: float = 2.0  # how often it is rewritten: a reader calls it stale after a few of these
    alerts: list[AlertRecord] = []
    events: list[AlertEvent] = []
    delivery: list[Delivery] = []
    left_out: int = 0  # alerts not written (resolved first, then the least severe) to keep the key readable
    key_id: str = ""
    sig: str = ""
