"""Provides ``[alerts]``: the rule set's settings, in the agent's TOML and the dashboard's.

    [alerts]
    alertmanager = ["http://am1:9093", "http://am2:9093"]   # v2 API; every URL gets every alert
    cluster = "lab"                 # the "cluster" label on every alert
    silenced = ["GpuHot"]           # rules that never fire
    [alerts.rules.NodeSilent]
    for = "30s"                     # pending this long before it fires (also a number of seconds)
    severity = "critical"
    [alerts.rules.KubeGpuPodPending]
    threshold = 600                 # the rule's own number, where it has one (here: seconds Pending)

Every mistake names the file and key: an unknown rule, a threshold on a rule that has none, a bad URL.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from clustertop.config import Invalid, NonNegative, Positive

Severity = Literal["info", "warning", "critical"]


class RuleConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    for_: str | float | None = msgspec.field(default=None, name="for")  # "90s", "5m", "1h" or seconds
    severity: Severity | None = None
    threshold: float | None = None
    silenced: bool = False

    def __post_init__(self) -> None:
        if self.for_ is not None:
            try:
                seconds(self.for_)
            except ValueError as e:
                raise Invalid("for", str(e)) from None


class AlertsSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[alerts]``. In the agent: present = this agent may evaluate (one at a time, by lease)."""

    evaluate: bool = True  # agent only: take part in the "alerts" lease
    interval: Positive = 2.0  # seconds between evaluations
    alertmanager: list[str] = []
    cluster: str = "clustertop"
    resend: Positive = 30.0  # seconds between re-sends of a firing alert (Alertmanager's resolve_timeout is 5 min)
    timeout: Positive = 3.0  # one HTTP request to an Alertmanager
    keep_resolved: NonNegative = 900.0  # a resolved alert stays listed (and re-sent resolved) this long
    silenced: list[str] = []
    rules: dict[str, RuleConfig] = {}
    # dashboard only: who creates silences (Alertmanager's createdBy); "" = the login name
    operator: str = ""

    def __post_init__(self) -> None:
        from clustertop.alerting.rules import RULES

        for i, url in enumerate(self.alertmanager):
            why = url_problem(url)
            if why:
                raise Invalid(f"alertmanager[{i}]", why)
        for name in self.silenced:
            if name not in RULES:
                raise Invalid("silenced", f"unknown rule {name!r} (known: {', '.join(sorted(RULES))})")
        for name, rc in self.rules.items():
            rule = RULES.get(name)
            if rule is None:
                raise Invalid(f"rules.{name}", f"unknown rule (known: {', '.join(sorted(RULES))})")
            if rc.threshold is not None and rule.threshold is None:
                raise Invalid(f"rules.{name}.threshold", f"rule {name} has no threshold")


def url_problem(url: str) -> str | None:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"{url[:80]!r}: expected an http:// or https:// URL of an Alertmanager"
    return None


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def seconds(value: str | float) -> float:
    """"90s", "5m", "1.5h", 30 -> seconds; a ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like \"30s\", \"5m\" or a number of seconds")
    if isinstance(value, int | float):
        if not 0 <= value < 1e9:
            raise ValueError(f"duration {value} out of range (0 .. 1e9 s)")
        return float(value)
    m = _DURATION.fullmatch(value)
    if m is None:
        raise ValueError(f"duration {value[:40]!r}: expected like \"30s\", \"5m\", \"1h\"")
    return float(m.group(1)) * _UNIT[m.group(2)]
