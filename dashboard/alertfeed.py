"""Provides the dashboard's side of alerts as a service: the evaluated state from Redis, Alertmanager's
silences, and acknowledging an alert by silencing it.

- The state (``ct:v1:alerts``, signed by the evaluating agent) is read in the reader thread every
  ``STATE_EVERY_S``, one GET after a refresh, and checked against known_nodes (``alerting.store``): the wall's
  timeline starts with what fired before the dashboard did.
- Silences are asked of Alertmanager (``[dashboard] alertmanager``) every ``SILENCES_EVERY_S`` in a worker
  thread (an Alertmanager that does not answer costs a timeout there, never a refresh) and shown next to the
  alerts they cover; "Alertmanager unreachable: ..." when it does not answer.
- Silencing goes straight from the dashboard to Alertmanager, with the operator's own network access and
  name (createdBy): Alertmanager is where silences live and are audited, nothing in Redis could stop a
  compromised node from lifting one. The dashboard's audit trail records it too (``Actions.execute``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.content import Content

from clustertop.alerting import alertmanager as am
from clustertop.alerting import store
from clustertop.dashboard import fmt
from clustertop.read.cluster import Alert
from clustertop.wire.alerts import AlertState

STATE_EVERY_S = 5.0
SILENCES_EVERY_S = 10.0
#: Silence lengths offered when acknowledging (seconds, label).
DURATIONS = [(3600.0, "1 hour"), (4 * 3600.0, "4 hours"), (86400.0, "1 day"), (7 * 86400.0, "1 week")]


class AlertFeed:
    def __init__(self, known: Any, alertmanager: list[str], clock: Callable[[], float] = time.time) -> None:
        self.known = known
        self.alertmanager = list(alertmanager)
        self.clock = clock
        self.read: store.Read | None = None
        self.silences: list[am.Silence] = []
        self.silence_error: str | None = None
        self.silences_read = False
        self._next_state = 0.0
        self.version = 0

    # -- reading ---------------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        if now >= self._next_state or now < self._next_state - 2 * STATE_EVERY_S:
            self._next_state = now + STATE_EVERY_S
            return True
        return False

    def poll_state(self, client: Any, now: float) -> store.Read:
        """Reader thread: one GET; never raises (a store failure is the refresh's to report)."""
        try:
            return store.read(client, self.known, now)
        except Exception as e:  # noqa: BLE001 - a broken store shows in the refresh; here only a word
            return store.Read(None, False, f"alert state not read: {e}", present=False)

    def set_state(self, read: store.Read) -> None:
        self.read = read
        self.version += 1

    def poll_silences(self) -> tuple[list[am.Silence], str | None]:
        """Worker thread: every configured Alertmanager's active silences, or why not."""
        out: list[am.Silence] = []
        errors = []
        for url in self.alertmanager:
            try:
                out += am.active_silences(url, timeout=3.0)
            except am.AlertmanagerError as e:
                errors.append(str(e))
        return out, ("Alertmanager unreachable: " + "; ".join(errors)) if errors else None

    def set_silences(self, silences: list[am.Silence], error: str | None) -> None:
        self.silences, self.silence_error, self.silences_read = silences, error, True
        self.version += 1

    @property
    def state(self) -> AlertState | None:
        return self.read.state if self.read is not None else None

    # -- what the screens show -------------------------------------------------------------------

    def silence_of(self, a: Alert) -> am.Silence | None:
        for s in self.silences:
            if a.rule and s.covers(a.rule, a.node, a.subject):
                return s
        return None

    def notes(self, alerts: list[Alert]) -> dict[str, str]:
        """alert key -> "silenced by alice until 14:05" for the alerts a silence covers."""
        out = {}
        for a in alerts:
            s = self.silence_of(a)
            if s is not None:
                until = fmt.clock(s.ends_ts) if s.ends_ts else "?"
                out[a.key] = f"silenced by {s.created_by or '?'} until {until}"
        return out

    def status(self) -> Content | None:
        """One line about the service, or None while there is nothing to say (no evaluator, no Alertmanager
        configured: a cluster without alerting as a service looks as it did)."""
        parts: list[Content] = []
        r = self.read
        if r is not None and r.present:
            style = "$ct-warn" if (not r.verified or r.stale) else "dim"
            text = "alerts service: " + r.text + (" - STALE, nobody evaluates alerts now" if r.stale else "")
            parts.append(Content.assemble((fmt.node_text(text, 160), style)))
            st = r.state
            failing = [d for d in (st.delivery if st is not None else []) if d.ok is False]
            if failing:
                d = failing[0]
                parts.append(Content.assemble(
                    (" · delivery to ", "$ct-warn"), (fmt.node_text(d.url, 60), "$ct-warn bold"),
                    (f" failing ({d.failures}x): ", "$ct-warn"), fmt.node_text(d.error or "?", 120)))
        if self.silence_error:
            parts.append(Content.assemble((" · " if parts else "", ""), (fmt.node_text(self.silence_error, 200),
                                                                          "$ct-crit")))
        elif self.alertmanager and self.silences_read:
            parts.append(Content.assemble((" · " if parts else "", ""),
                                          (f"{len(self.silences)} active silence(s) in Alertmanager", "dim")))
        return Content.assemble(*parts) if parts else None


def ask_silence(app: Any, alerts: list[Alert]) -> None:
    """Acknowledge: pick an alert, pick how long, confirm; the silence goes to every Alertmanager configured."""
    from clustertop.dashboard.actions import actions_of, fields
    from clustertop.dashboard.dialogs.pick import PickDialog

    acts = actions_of(app)
    feed: AlertFeed = app.alert_feed
    if not acts.allowed("silence alert"):
        return
    if not feed.alertmanager:
        acts.notify("no Alertmanager configured ([dashboard] alertmanager = [URL] or CLUSTERTOP_ALERTMANAGER)",
                    "error")
        return
    silenceable = [a for a in alerts if a.rule]
    if not silenceable:
        acts.notify("no alerts to silence")
        return
    by_id = {str(i): a for i, a in enumerate(silenceable[:200])}
    options = [(i, Content.assemble((f"{a.severity.upper():<9}", ""), (a.rule + "  ", "bold"),
                                    fmt.node_text(a.node or "cluster", 40), " ", fmt.node_text(a.subject, 40), "  ",
                                    fmt.node_text(a.message, 60))) for i, a in by_id.items()]

    def picked(oid: str | None) -> None:
        if oid is None:
            return
        a = by_id[oid]
        app.push_screen(PickDialog("Silence for how long?", [(str(s), Content(label)) for s, label in DURATIONS]),
                        lambda d: d is not None and confirm(a, float(d)))

    def confirm(a: Alert, duration: float) -> None:
        who = acts.operator()
        body = fields([("alert", f"{a.rule} on {a.node or 'cluster'}: {a.subject}"), ("now", a.message),
                       ("for", fmt.duration(duration)), ("created by", who),
                       ("in", ", ".join(am.shown(u) for u in feed.alertmanager)),
                       ("effect", "Alertmanager stops notifying for it; it stays listed here, marked silenced")])
        target = f"{a.rule} {a.node or 'cluster'} {a.subject}"
        acts.confirm("Silence this alert?", body, "Silence",
                     lambda: acts.execute("alert.silence", target, lambda: silence(a, duration, who)))

    def silence(a: Alert, duration: float, who: str) -> Any:
        from clustertop.dashboard.actions import Outcome

        done, failed = [], []
        for url in feed.alertmanager:
            try:
                sid = am.create_silence(url, am.silence_matchers(a.rule, a.node, a.subject), duration, who,
                                        f"acknowledged in clustertop by {who}")
                done.append(f"{am.shown(url)}: {sid}")
            except am.AlertmanagerError as e:
                failed.append(str(e))
        silences, error = feed.poll_silences()
        app.call_from_thread(feed.set_silences, silences, error)
        text = ("silenced " + "; ".join(done)) if done else "failed: " + "; ".join(failed)
        if done and failed:
            text += " (NOT in: " + "; ".join(failed) + ")"
        return Outcome(bool(done) and not failed, text)

    app.push_screen(PickDialog("Silence which alert?", options), picked)
