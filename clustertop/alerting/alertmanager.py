"""Provides Alertmanager's v2 API: alerts as it wants them, a sender that never blocks the agent, silences.

Why urllib: four JSON calls (POST alerts, POST/GET/DELETE silences) do not need a client library, and the
same code runs in the agent (whose extra has httpx) and the dashboard (whose extra does not).

Delivery (``Deliverer``) runs on its own thread: the evaluator hands it the current records; every
Alertmanager URL gets every firing alert on each change and again every ``resend`` seconds (Alertmanager
resolves an alert nobody re-sends once its ``endsAt`` passes, so ``endsAt`` is set a few re-sends ahead
and a dead evaluator's alerts resolve on their own), and recently resolved ones with their ``endsAt``.
A URL that fails is retried with back-off (1 s doubling to 60 s); how each URL is doing is kept
(``status()``) and written with the alert state, so "paging is broken" is itself visible.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from clustertop.alerting.rules import RULES
from clustertop.errors import describe
from clustertop.wire.alerts import AlertRecord, Delivery
from clustertop.wire.text import inert

#: Label values come from nodes (a mountpoint, a pod name): cut so one cannot bloat every notification.
LABEL_MAX = 200
DESCRIPTION_MAX = 1000
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
#: A firing alert's endsAt is this many re-sends ahead: a missed re-send or two does not resolve it.
ENDS_AFTER_RESENDS = 4


class AlertmanagerError(Exception):
    """One failed call, in words ("http://am:9093: connection refused")."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def labels(r: AlertRecord, cluster: str) -> dict[str, str]:
    """What routing matches on. The label set is the alert's identity in Alertmanager, so only fields
    that do not change while it fires (the message goes into annotations)."""
    out = {"alertname": r.rule, "severity": r.severity, "source": r.source, "cluster": cluster,
           "subject": inert(r.subject, limit=LABEL_MAX)}
    if r.node:
        out["node"] = inert(r.node, limit=LABEL_MAX)
    return {k: v for k, v in out.items() if v}  # Alertmanager treats an empty label as absent anyway


def am_alert(r: AlertRecord, cluster: str, now: float, resend_s: float) -> dict[str, Any]:
    rule = RULES.get(r.rule)
    where = r.node or "cluster"
    summary = f"{rule.summary if rule else r.rule} ({where}: {r.subject})"
    ends = r.resolved_ts if r.state == "resolved" and r.resolved_ts else now + ENDS_AFTER_RESENDS * resend_s
    return {
        "labels": labels(r, cluster),
        "annotations": {"summary": inert(summary, limit=LABEL_MAX),
                        "description": inert(r.message, limit=DESCRIPTION_MAX)},
        "startsAt": iso(r.fired_ts or r.since_ts),
        "endsAt": iso(ends),
    }


def _base(url: str) -> str:
    u = urlsplit(url)
    return urlunsplit((u.scheme, u.netloc, u.path.rstrip("/"), "", ""))


def shown(url: str) -> str:
    """The URL without credentials, for the screen, logs and the alert state."""
    u = urlsplit(url)
    host = u.hostname or ""
    netloc = f"{host}:{u.port}" if u.port else host
    return urlunsplit((u.scheme, netloc, u.path, "", ""))


def call(method: str, url: str, body: Any = None, timeout: float = 3.0) -> Any:
    """One JSON call; AlertmanagerError on anything that is not a 2xx with JSON (or empty) back."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked in config
            raw = resp.read(4 * 1024 * 1024)
    except urllib.error.HTTPError as e:
        text = e.read(300).decode("utf-8", "replace").strip()
        raise AlertmanagerError(f"{shown(url)}: HTTP {e.code} {inert(text, limit=200)}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise AlertmanagerError(f"{shown(url)}: {describe(reason) if isinstance(reason, BaseException) else reason}") from None
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise AlertmanagerError(f"{shown(url)}: answer is not JSON") from None


def post_alerts(base_url: str, alerts: list[dict[str, Any]], timeout: float = 3.0) -> None:
    call("POST", _base(base_url) + "/api/v2/alerts", alerts, timeout)


# -- silences ------------------------------------------------------------------------------------


def silence_matchers(rule: str, node: str | None, subject: str) -> list[dict[str, Any]]:
    """Matchers for exactly one alert: the labels ``labels()`` gives it (a cluster-wide alert has no node)."""
    out = [{"name": "alertname", "value": rule, "isRegex": False, "isEqual": True},
           {"name": "subject", "value": inert(subject, limit=LABEL_MAX), "isRegex": False, "isEqual": True}]
    if node:
        out.append({"name": "node", "value": inert(node, limit=LABEL_MAX), "isRegex": False, "isEqual": True})
    return out


def create_silence(base_url: str, matchers: list[dict[str, Any]], duration_s: float, created_by: str, comment: str,
                   now: float | None = None, timeout: float = 3.0) -> str:
    """POST /api/v2/silences; returns the silence's id."""
    now = time.time() if now is None else now
    body = {"matchers": matchers, "startsAt": iso(now), "endsAt": iso(now + duration_s),
            "createdBy": created_by or "clustertop", "comment": comment or "silenced from clustertop"}
    got = call("POST", _base(base_url) + "/api/v2/silences", body, timeout)
    sid = got.get("silenceID") if isinstance(got, dict) else None
    if not isinstance(sid, str):
        raise AlertmanagerError(f"{shown(base_url)}: no silenceID in the answer")
    return sid


def expire_silence(base_url: str, silence_id: str, timeout: float = 3.0) -> None:
    call("DELETE", _base(base_url) + "/api/v2/silence/" + quote(silence_id, safe=""), None, timeout)


class Silence:
    """An active silence as Alertmanager lists it (its text is whatever someone typed: data)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.id = str(raw.get("id") or "")
        self.created_by = str(raw.get("createdBy") or "")
        self.comment = str(raw.get("comment") or "")
        self.ends_ts = parse_iso(raw.get("endsAt"))
        self.state = str((raw.get("status") or {}).get("state") or "") if isinstance(raw.get("status"), dict) else ""
        self.matchers: dict[str, str] = {}
        for m in raw.get("matchers") or []:
            if isinstance(m, dict) and not m.get("isRegex") and m.get("isEqual", True):
                self.matchers[str(m.get("name"))] = str(m.get("value"))

    def covers(self, rule: str, node: str | None, subject: str) -> bool:
        want = {"alertname": rule, "subject": subject, **({"node": node} if node else {})}
        return bool(self.matchers) and all(want.get(k) == v for k, v in self.matchers.items())


def active_silences(base_url: str, timeout: float = 3.0) -> list[Silence]:
    got = call("GET", _base(base_url) + "/api/v2/silences", None, timeout)
    if not isinstance(got, list):
        raise AlertmanagerError(f"{shown(base_url)}: expected a list of silences")
    return [s for s in (Silence(x) for x in got if isinstance(x, dict)) if s.state == "active"]


# -- delivery --------------------------------------------------------------------------------------


class _Target:
    def __init__(self, url: str) -> None:
        self.url = url
        self.status = Delivery(url=shown(url))
        self.next_try = 0.0
        self.backoff = 0.0
        self.sent_version = -1
        self.sent_ts = 0.0


class Deliverer:
    """Sends the records it is handed to every Alertmanager, from its own thread."""

    def __init__(self, urls: list[str], cluster: str, resend_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.time,
                 post: Callable[[str, list[dict[str, Any]], float], None] = post_alerts) -> None:
        self.targets = [_Target(u) for u in urls]
        self.cluster = cluster
        self.resend_s = resend_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.post = post
        self._lock = threading.Lock()
        self._records: list[AlertRecord] = []
        self._version = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def submit(self, records: list[AlertRecord], changed: bool) -> None:
        """The evaluator's current records (only firing and resolved ones are sent)."""
        with self._lock:
            self._records = [r for r in records if r.state in ("firing", "resolved")]
            if changed:
                self._version += 1
        if changed:
            self._wake.set()

    def status(self) -> list[Delivery]:
        with self._lock:
            return [Delivery(**{f: getattr(t.status, f) for f in Delivery.__struct_fields__}) for t in self.targets]

    def run_once(self) -> None:
        """Send where due: a change not yet delivered there, or a re-send interval passed."""
        now = self.clock()
        with self._lock:
            records, version = list(self._records), self._version
        for t in self.targets:
            if now < t.next_try:
                continue
            if t.sent_version == version and now - t.sent_ts < self.resend_s:
                continue
            if not records and t.sent_version == version:
                t.sent_ts = now
                continue
            body = [am_alert(r, self.cluster, now, self.resend_s) for r in records]
            try:
                if body:
                    self.post(t.url, body, self.timeout_s)
            except Exception as e:  # an Alertmanager down or refusing: recorded, retried, never raised
                with self._lock:
                    t.backoff = min(BACKOFF_MAX_S, t.backoff * 2) if t.backoff else BACKOFF_MIN_S
                    t.next_try = now + t.backoff
                    t.status.ok, t.status.last_try_ts = False, now
                    t.status.error, t.status.failures = describe(e) if not isinstance(e, AlertmanagerError) \
                        else str(e), t.status.failures + 1
                continue
            with self._lock:
                t.backoff, t.next_try = 0.0, 0.0
                t.sent_version, t.sent_ts = version, now
                t.status.ok, t.status.last_try_ts, t.status.last_ok_ts = True, now, now
                t.status.error, t.status.failures = None, 0

    def start(self) -> None:
        if self._thread is None and self.targets:
            self._thread = threading.Thread(target=self._run, name="alertmanager", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)
            self._thread = None
