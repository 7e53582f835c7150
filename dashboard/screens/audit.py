"""Provides the audit screen: who did what to what, and how it went, from every writer's own stream.

Each writer appends to its own stream, signed with its own key and hash-chained (control/trust.py):
a node's agent to ``audit:node:{host}`` (what it executed or refused), an operator to
``audit:op:{name}`` (what it sent, and what the dashboard did itself). The screen reads the streams
of the hosts the read knows, of the operators whose keys are configured (``operator_keys``) and of any
other operator stream found (SCAN MATCH ``ct:v1:audit:op:*``), merges them newest first (by stream id:
Redis's clock, not a time any writer claims) and marks each entry it shows verified or UNVERIFIED
(``trust.verify_stream`` over what it read: a signature by the writer's anchor, and the chain to the
entry before). Anyone can write to Redis: an entry nobody's anchor signed is shown, and marked.

Read in a worker thread, on arrival, every AUDIT_EVERY_S while shown, and after each action: one
pipelined XREVRANGE per stream (bounded, ``per_stream``), then signatures checked only for the entries
shown (at most AUDIT_TAIL, ~66 µs each) and one entry before each stream's first shown, for its chain.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from clustertop import wire
from clustertop.control import signing, trust
from clustertop.dashboard import fmt
from clustertop.dashboard.actions import AUDIT_TAIL, actions_of
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.table import LiveTable, SortCell, text_cell
from clustertop.errors import describe
from clustertop.read.plan import Level
from clustertop.wire import schema

AUDIT_EVERY_S = 5.0
#: Entries read per stream: all AUDIT_TAIL from a few streams, fewer (never below this) from many.
PER_STREAM_MIN = 25
COLUMNS = [("when", "when"), ("actor", "who"), ("action", "action"), ("target", "target"), ("result", "result"),
           ("trust", "trust"), ("where", "where")]


@dataclass
class AuditRow:
    entry: schema.AuditEntry | None  # None: unreadable (inserted or damaged)
    stream: str
    eid: str
    problem: str | None  # None: verified (its writer's key signed it, and it chains to the entry before)


@dataclass
class AuditRead(Message):
    rows: list[AuditRow]
    streams: int = 0
    per_stream: int = 0
    error: str | None = None


def _order(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def audit_streams(client: Any, hosts: Iterable[str], operators: Iterable[str]) -> list[str]:
    """The streams to read: each known host's, each configured operator's, and every operator stream
    found by SCAN (an operator nobody configured still shows: unverified)."""
    streams = dict.fromkeys([wire.node_audit_key(h) for h in hosts] + [wire.operator_audit_key(n) for n in operators])
    for key in client.scan_iter(match=wire.operator_audit_key("*"), count=1000, _type="stream"):
        streams.setdefault(_text(key), None)
    return list(streams)


def anchor_for(stream: str, known: trust.KnownNodes,
               operators: dict[str, signing.PublicKey]) -> tuple[signing.PublicKey | None, str]:
    """The one key that may write ``stream``, and the writer's name (for "no key for ...")."""
    host = wire.name_in(stream, wire.node_audit_key)
    if host is not None:
        return known.get(host), f"node {host} (not enrolled: clustertop enrol {host})"
    name = wire.name_in(stream, wire.operator_audit_key) or ""
    return operators.get(name), f"operator {name} (no key for it in the dashboard's operator_keys)"


def read_audit(client: Any, hosts: list[str], known: trust.KnownNodes, operators: dict[str, signing.PublicKey],
               tail: int = AUDIT_TAIL) -> AuditRead:
    """The ``tail`` newest entries over every writer's stream, newest first, each marked. Worker thread."""
    streams = audit_streams(client, hosts, operators)
    per = tail if len(streams) <= 4 else max(PER_STREAM_MIN, min(tail, 4 * tail // len(streams)))
    p = client.pipeline(transaction=False)
    for st in streams:
        p.xrevrange(st, count=per + 1)  # one more: the entry the oldest shown one chains to
    got = p.execute()
    # Newest first over all streams, by stream id (Redis's clock): a writer can't claim its way to the top.
    cand = sorted(((_order(_text(eid)), i, j) for i, entries in enumerate(got) for j, (eid, _f) in enumerate(entries[:per])),
                  reverse=True)[:tail]
    shown: dict[int, int] = {}
    for _o, i, j in cand:
        shown[i] = max(shown.get(i, 0), j + 1)
    bad: dict[int, dict[str, str]] = {}
    for i, k in shown.items():
        key, writer = anchor_for(streams[i], known, operators)
        window = list(reversed(got[i][:k + 1]))  # oldest first, with the anchor entry when there is one
        if key is None:
            bad[i] = {_text(eid): f"no key for {writer} to check it against" for eid, _f in window}
            continue
        bad[i] = trust.verify_stream(streams[i], window, _only(key)).bad
    rows = []
    for _o, i, j in cand:
        eid, fields = got[i][j]
        e, eid_text = _decode(fields), _text(eid)
        # The row already says which stream and entry: the problem without that prefix.
        why = bad[i].get(eid_text)
        why = why.removeprefix(f"{streams[i]} entry {eid_text}").lstrip(": ") if why else None
        rows.append(AuditRow(e, streams[i], eid_text, why if e is not None else "unreadable (inserted or damaged)"))
    return AuditRead(rows, len(streams), per)


def _only(key: signing.PublicKey) -> Callable[[schema.AuditEntry], signing.PublicKey | None]:
    """The writer's one key, for the entries that name it; None (may not write here) for any other."""
    def key_for(e: schema.AuditEntry) -> signing.PublicKey | None:
        return key if e.key_id == key.key_id else None
    return key_for


def _decode(fields: Any) -> schema.AuditEntry | None:
    data = fields.get(b"a", fields.get("a")) if isinstance(fields, dict) else None
    try:
        return wire.decode(data, schema.AuditEntry)
    except wire.WireError:
        return None


def audit_rows(rows: list[AuditRow], ok: str, crit: str, warn: str) -> dict[str, list[Text]]:
    out: dict[str, list[Text]] = {}
    for i, r in enumerate(rows):
        e = r.entry
        mark = SortCell("verified", ok, 0) if r.problem is None else text_cell(f"UNVERIFIED: {r.problem}", f"bold {warn}", 120)
        if e is None:
            out[f"{r.stream}\x1f{r.eid}"] = [SortCell("?", "", i), text_cell(None), text_cell(None),
                                              text_cell(r.stream, "", 60), text_cell(None), mark, text_cell(None)]
            continue
        good = e.result in ("ok", "sent")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts)) if _finite(e.ts) else fmt.NA
        # Newest first by stream id (the reader's order): the "when" column sorts by that position.
        out[f"{r.stream}\x1f{r.eid}"] = [
            SortCell(when, "", i), text_cell(e.actor, "", 40), text_cell(e.action, "bold", 24),
            text_cell(e.target, "", 60), text_cell(e.result, ok if good else crit, 120), mark,
            text_cell(e.where, "dim", 30)]
    return out


def _finite(ts: float) -> bool:
    return ts == ts and abs(ts) < 1e11  # NaN, inf and absurd years from a hostile writer: N/A


def load_operator_keys(paths: list[str]) -> tuple[dict[str, signing.PublicKey], list[str]]:
    """Operators' public keys by name (the file's stem: NAME.pub verifies audit:op:NAME); unreadable ones
    as errors to show."""
    out: dict[str, signing.PublicKey] = {}
    errors = []
    for path in paths:
        try:
            out[os.path.basename(path).removesuffix(".pub")] = signing.load_public(path)
        except signing.KeyFileError as e:
            errors.append(str(e))
    return out, errors


class AuditScreen(DataScreen):
    screen_name = "audit"
    plan_level = Level.DIGESTS  # the audit stream and the header: no node detail
    BINDINGS = [Binding("r", "reload", "Reload")]
    DEFAULT_CSS = """
    AuditScreen #audit-status { height: 1; padding: 0 1; background: $panel; }
    AuditScreen LiveTable { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[AuditRow] = []
        self.error: str | None = None
        self.loads = 0
        self._seen_done = 0
        self._operators: dict[str, signing.PublicKey] | None = None
        self._key_errors: list[str] = []

    def compose_body(self) -> Iterable[Widget]:
        yield Static("reading the audit trail…", id="audit-status")
        yield LiveTable(COLUMNS, id="audit-table", fold=("where",))

    def on_mount(self) -> None:
        table = self.query_one(LiveTable)
        table.sort_column = "when"
        table.focus()
        self.load()
        self.set_interval(AUDIT_EVERY_S, self._tick)

    def _tick(self) -> None:
        if self.is_current:
            self.load()

    def action_reload(self) -> None:
        self.load()

    def load(self) -> None:
        # The hosts this read knows, taken here on the UI thread; the reading happens in the worker.
        state = self.app.view.state  # type: ignore[attr-defined]
        self._load([n.host for n in state.nodes] if state is not None else [])

    @work(thread=True, exclusive=True, group="audit")
    def _load(self, hosts: list[str]) -> None:
        try:
            if self._operators is None:
                self._operators, self._key_errors = load_operator_keys(self.app.settings.operator_keys)  # type: ignore[attr-defined]
            acts = actions_of(self.app)
            self.post_message(read_audit(acts.client(), hosts, acts.known(), self._operators))
        except Exception as e:  # a Redis error must not take the screen down
            self.post_message(AuditRead([], error=describe(e)))

    def on_audit_read(self, msg: AuditRead) -> None:
        self.loads += 1
        if msg.error is None or not self.rows:
            self.rows = msg.rows
        self.error = msg.error
        p = self.app.palette  # type: ignore[attr-defined]
        self.query_one(LiveTable).sync(audit_rows(self.rows, p.text_style("ok"), p.text_style("crit"),
                                                  p.text_style("warn")))
        n = len(self.rows)
        bad = sum(r.problem is not None for r in self.rows)
        marks = f"; {bad} UNVERIFIED" if bad else "; every one verified"
        status = (f"audit trail: read failed ({msg.error}); showing the last read" if msg.error else
                  "audit trail: no entries yet (every job-control action is recorded here)" if not n else
                  f"audit trail: the {n} newest entr{'y' if n == 1 else 'ies'} of {msg.streams} writers' streams "
                  f"(at most {msg.per_stream} each), newest first{marks}")
        if self._key_errors:
            status += f"; operator_keys: {'; '.join(self._key_errors)}"
        self.query_one("#audit-status", Static).update(Content(fmt.node_text(status, 400)), layout=False)

    def draw(self, view: View) -> None:
        done = len(actions_of(self.app).done)
        if done != self._seen_done:  # an action finished: its entry is in the stream now
            self._seen_done = done
            self.load()
