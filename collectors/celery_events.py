"""Celery task history from Celery's own event stream, for the ``celery`` collector.

``EventStream`` (I/O) listens on one broker with ``celery.events.EventReceiver`` in a daemon thread and
appends each event to a bounded deque (``CAPTURE_MAX``; what does not fit is counted in ``dropped``),
so the agent's tick never waits on the broker. ``TaskHistory`` (pure) is fed those events when the
collector drains the deque each tick, keeps bounded state (``MAX_TASKS`` task records, ``RUNTIMES_MAX``
runtimes per name, ``MAX_NAMES`` names) and renders ``schema.CeleryHistory``.

Events off: workers send events only when started with ``-E`` (or after ``celery control
enable_events``). A worker with events on sends ``worker-heartbeat`` every 2 s, so after listening for
``QUIET_S`` with no event from any worker, history says events are off (``events=False`` and a note)
instead of showing zero tasks. Online workers (from the collector's inspection) never heard from in
``QUIET_S`` are named in the note.

Groups: Celery 5 task events carry ``root_id``/``parent_id`` but not the group id (that is in the
message headers only; a group member's ``root_id`` is its own id), so group progress cannot come from
events: ``celery_groups.py`` reads it from the result backend (and names a group's members from here).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clustertop.errors import describe
from clustertop.wire import schema

#: Events held between two ticks at most; more are dropped (and counted).
CAPTURE_MAX = 50_000
#: Task records kept (the oldest go first).
MAX_TASKS = 2000
#: Task names tracked; events of further names are counted under OTHER.
MAX_NAMES = 200
OTHER = "(other names)"
#: Succeeded runtimes kept per name, and the window the percentiles cover.
RUNTIMES_MAX = 2000
WINDOW_S = 600.0
#: Published: recent tasks, names (busiest first), text sizes.
RECENT_N = 40
STATS_N = 50
TEXT_MAX = 200
TRACEBACK_MAX = 2000
#: All tracebacks of one broker together, at most (the cluster payload is bounded: wire.MAX_PAYLOAD_BYTES).
TRACEBACK_BUDGET = 24 * 1024
#: No event from any worker for this long while listening: events are off.
QUIET_S = 10.0
#: kombu's idle drain timeout: the receiver thread notices close() within this.
CAPTURE_TIMEOUT_S = 1.0

STATES = {
    "task-sent": "PENDING", "task-received": "RECEIVED", "task-started": "STARTED",
    "task-succeeded": "SUCCESS", "task-failed": "FAILURE", "task-retried": "RETRY",
    "task-revoked": "REVOKED", "task-rejected": "REJECTED",
}
ENDED = {"SUCCESS", "FAILURE", "REVOKED", "REJECTED"}
COUNTED = {"task-succeeded": "succeeded", "task-failed": "failed", "task-retried": "retried",
           "task-revoked": "revoked"}


def clip(v: object, limit: int) -> str | None:
    """A text field of an event, truncated to ``limit`` characters (None stays None). Escaping for the
    terminal is the reader's job (``wire.text.inert``); this only bounds the size."""
    if v is None:
        return None
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[:limit - 1] + "…"


def number(v: object) -> float | None:
    """A finite, non-negative float from an event field, else None (events come from any worker)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if f == f and 0 <= f < 1e12 else None


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


@dataclass
class Task:
    id: str
    name: str | None = None
    state: str | None = None
    state_ts: float = 0.0  # event time of the event that set ``state``: late events never roll it back
    worker: str | None = None
    ts: float | None = None
    runtime_s: float | None = None
    args: str | None = None
    kwargs: str | None = None
    exception: str | None = None
    traceback: str | None = None
    counted: set[str] = field(default_factory=set)  # terminal kinds already counted for this id


@dataclass
class NameStats:
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    revoked: int = 0
    runtimes: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RUNTIMES_MAX))


class TaskHistory:
    """Bounded task state of one broker, fed raw event dicts (pure: no I/O)."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.tasks: OrderedDict[str, Task] = OrderedDict()
        self.names: dict[str, NameStats] = {}
        self.heard: dict[str, float] = {}  # worker hostname -> wall clock of its last event (ours)
        self.last_event: float | None = None

    def feed(self, events: Iterable[dict[str, Any]], now: float) -> None:
        for ev in events:
            if isinstance(ev, dict):
                self.event(ev, now)

    def event(self, ev: dict[str, Any], now: float) -> None:
        kind = ev.get("type")
        host = ev.get("hostname")
        if isinstance(host, str) and len(host) <= 1000:
            if len(self.heard) < 10_000 or host in self.heard:
                self.heard[host] = now
            self.last_event = now
        if not isinstance(kind, str) or not kind.startswith("task-"):
            return
        uid = ev.get("uuid")
        if not isinstance(uid, str) or not uid or len(uid) > 200:
            return
        t = self.tasks.get(uid)
        if t is None:
            t = self.tasks[uid] = Task(id=uid)
            while len(self.tasks) > MAX_TASKS:
                self.tasks.popitem(last=False)
        else:
            self.tasks.move_to_end(uid)
        ets = number(ev.get("timestamp")) or now
        if isinstance(ev.get("name"), str):
            t.name = clip(ev["name"], TEXT_MAX)
        if isinstance(host, str):
            t.worker = clip(host, TEXT_MAX)
        if "args" in ev:
            t.args = clip(ev["args"], TEXT_MAX)
        if "kwargs" in ev:
            t.kwargs = clip(ev["kwargs"], TEXT_MAX)
        if kind in ("task-failed", "task-retried"):
            t.exception = clip(ev.get("exception"), TEXT_MAX)
            t.traceback = clip(ev.get("traceback"), TRACEBACK_MAX)
        if kind == "task-succeeded":
            t.runtime_s = number(ev.get("runtime"))
        state = STATES.get(kind)
        # Events of one task come from different processes and may arrive out of order: the newest event
        # time sets the state, except that a retry never overrides an end (task-retried is sent by the
        # worker's main process after the retry is queued, and can come after the next attempt ended).
        if state is not None and ets >= t.state_ts and not (state == "RETRY" and t.state in ENDED):
            t.state, t.state_ts, t.ts = state, ets, ets
        what = COUNTED.get(kind)
        if what is None:
            return
        # Terminal events are counted once per task id; every retry is counted.
        if what != "retried":
            if what in t.counted:
                return
            t.counted.add(what)
        stats = self._stats(t.name)
        setattr(stats, what, getattr(stats, what) + 1)
        if what == "succeeded" and t.runtime_s is not None:
            stats.runtimes.append((now, t.runtime_s))

    def _stats(self, name: str | None) -> NameStats:
        key = name or "(unknown name)"
        s = self.names.get(key)
        if s is None:
            if len(self.names) >= MAX_NAMES - 1:  # the last place is OTHER's
                key = OTHER
                s = self.names.get(key)
            if s is None:
                s = self.names[key] = NameStats()
        return s

    def events_on(self, since: float | None, now: float, online: Iterable[str] = ()) -> tuple[bool | None, str | None]:
        """Whether workers send events, and a note when they do not (``since``: listening since)."""
        if since is None:
            return None, None
        recent = self.last_event is not None and now - self.last_event < QUIET_S
        if not recent:
            if now - since < QUIET_S:
                return None, None  # not listened long enough to say
            return False, (f"no Celery events for {QUIET_S:.0f} s: workers send none (start them with -E, "
                           "or run `celery control enable_events`); task history unknown")
        silent = sorted(w for w in online if now - self.heard.get(w, -1e18) >= QUIET_S and now - since >= QUIET_S)
        if silent:
            shown = ", ".join(silent[:10]) + (" …" if len(silent) > 10 else "")
            return True, f"no events from {shown}: those workers run without -E; their tasks are missing"
        return True, None

    def render(self, now: float, events: bool | None, note: str | None, dropped: int,
               share: int = 1) -> schema.CeleryHistory:
        """``share``: how many brokers split the payload; each gets 1/share of the recent tasks and
        traceback budget, so the cluster payload stays within ``wire.MAX_PAYLOAD_BYTES`` however many."""
        share = max(1, share)
        recent_n, budget = max(5, RECENT_N // share), TRACEBACK_BUDGET // share
        stats = []
        for name, s in self.names.items():
            runs = sorted(r for ts, r in s.runtimes if now - ts <= WINDOW_S)
            stats.append(schema.CeleryTaskStat(
                name=name, succeeded=s.succeeded, failed=s.failed, retried=s.retried, revoked=s.revoked,
                runtime_p50_s=percentile(runs, 0.5), runtime_p95_s=percentile(runs, 0.95)))
        stats.sort(key=lambda x: (-(x.succeeded + x.failed + x.retried + x.revoked), x.name))
        recent: list[schema.CeleryTask] = []
        for t in reversed(self.tasks.values()):
            if len(recent) >= recent_n:
                break
            tb = t.traceback
            if tb is not None:
                tb = tb if len(tb) <= budget else None  # over the budget: the exception line still shows
                budget -= len(tb or "")
            recent.append(schema.CeleryTask(
                id=t.id, name=t.name, state=t.state, worker=t.worker, ts=t.ts, runtime_s=t.runtime_s,
                args=t.args, kwargs=t.kwargs, exception=t.exception, traceback=tb))
        known = events is not False
        return schema.CeleryHistory(
            broker=self.broker, events=events, note=note, window_s=WINDOW_S,
            stats=stats[:max(10, STATS_N // share)] if known else None, recent=recent if known else None,
            dropped=dropped or None)


class EventStream:
    """Celery events of one broker, captured by a daemon thread into a bounded deque."""

    def __init__(self, url: str, shown: str, timeout_s: float, wall: Callable[[], float] = time.time,
                 transport: dict[str, str] | None = None) -> None:
        self.url, self.shown, self.timeout_s, self.wall = url, shown, timeout_s, wall
        self.transport = transport or {}  # more broker_transport_options (the broker's global_keyprefix)
        self.history = TaskHistory(shown)
        self.buf: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.error: str | None = None
        self.since: float | None = None  # wall clock when the receiver started consuming
        self._stop = threading.Event()
        self._recv: Any = None  # the current EventReceiver (close() sets its should_stop)
        self._thread: threading.Thread | None = None
        self._app: Any = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"celery-events {self.shown}", daemon=True)
            self._thread.start()

    def _put(self, ev: dict[str, Any]) -> None:
        if len(self.buf) >= CAPTURE_MAX:
            self.dropped += 1
        else:
            self.buf.append(ev)

    def _run(self) -> None:
        from celery import Celery  # type: ignore[import-untyped]

        t = self.timeout_s
        app = Celery("clustertop-events", broker=self.url, set_as_current=False)
        app.conf.update(broker_connection_timeout=t, broker_heartbeat=0,
                        broker_transport_options={"socket_timeout": t, "socket_connect_timeout": t,
                                                  **self.transport})
        self._app = app
        backoff = 1.0
        while not self._stop.is_set():
            try:
                with app.connection_for_read() as conn:
                    recv = self._recv = app.events.Receiver(conn, handlers={"*": self._put})
                    recv.should_stop = self._stop.is_set()
                    ready = recv.on_consume_ready

                    def consuming(*args: Any, _ready: Any = ready, **kwargs: Any) -> None:
                        _ready(*args, **kwargs)
                        # Listening from here (the queue is bound): "events off" counts from now.
                        self.since, self.error = self.wall(), None

                    recv.on_consume_ready = consuming
                    backoff = 1.0
                    # One capture for the connection's life: its queue (auto-delete) lives as long as the
                    # consumer, so events are not lost between calls. kombu's consume loop checks
                    # ``should_stop`` before every drain, and drains with a 1 s timeout when idle, so
                    # close() ends it within a second, busy or not. (A capture ``timeout`` would not: it
                    # counts idle seconds only, and a busy stream is never idle.)
                    recv.capture(limit=None, timeout=None, wakeup=False)
            except Exception as e:  # noqa: BLE001 - the broker went away: say so, retry with backoff
                self.error, self.since = f"events: {describe(e)}", None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def drain(self, online: Iterable[str] = (), share: int = 1) -> schema.CeleryHistory:
        """Feed what was captured since the last tick into the history and render it."""
        now = self.wall()
        n = len(self.buf)
        pop = self.buf.popleft
        self.history.feed((pop() for _ in range(n)), now)
        if self.error is not None:
            events, note = None, self.error
        else:
            events, note = self.history.events_on(self.since, now, online)
        return self.history.render(now, events, note, self.dropped, share)

    def close(self) -> None:
        self._stop.set()
        if self._recv is not None:
            self._recv.should_stop = True
        if self._thread is not None:
            self._thread.join(CAPTURE_TIMEOUT_S + self.timeout_s + 1)
        if self._app is not None:
            self._app.close()
