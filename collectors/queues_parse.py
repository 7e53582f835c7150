"""Provides the pure parsers behind the ``celery`` and ``dask`` collectors: strings and dicts in, schema out.

Nothing here opens a socket: the readers in ``collectors/celery.py`` and ``collectors/dask.py`` fetch,
these functions turn what was fetched into ``schema.Queue`` / ``schema.Worker``, so the tests can feed
them captured answers (``tests/fixtures/queues/``) and synthesized 1,000-worker ones.
"""

from __future__ import annotations

from bisect import bisect
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from clustertop.wire import schema

# ---------------------------------------------------------------------------------------------
# Celery on a Redis broker (kombu's redis transport)
# ---------------------------------------------------------------------------------------------

#: kombu/transport/redis.py: ``PRIORITY_STEPS = [0, 3, 6, 9]`` and ``Channel.sep = '\x06\x16'``.
#: A message of priority p lands in the list ``<queue><sep><step>`` where step is the largest
#: step <= p; step 0 is the plain ``<queue>`` list. Flower sums the same keys.
PRIORITY_STEPS = (0, 3, 6, 9)
SEP = "\x06\x16"
#: kombu keeps one set per exchange; members are "<routing_key><sep><pattern><sep><queue>".
BINDING_PREFIX = "_kombu.binding."


def priority_keys(queue: str, steps: Iterable[int] = PRIORITY_STEPS, sep: str = SEP) -> list[str]:
    """The Redis lists that together hold ``queue`` (kombu ``Channel._q_for_pri`` for every step)."""
    return [f"{queue}{sep}{s}" if s else queue for s in steps]


def priority_step(priority: int, steps: Iterable[int] = PRIORITY_STEPS) -> int:
    """The step a message of ``priority`` is filed under (kombu ``Channel.priority``)."""
    ordered = sorted(steps)
    return ordered[max(0, bisect(ordered, priority) - 1)]


def is_internal_queue(name: str) -> bool:
    """Celery's own plumbing, not work: remote-control mailboxes and replies, event queues."""
    return name.endswith(".pidbox") or name.startswith("celeryev.")


def queues_from_bindings(members: Iterable[bytes | str], sep: str = SEP) -> set[str]:
    """Queue names from the members of kombu's ``_kombu.binding.<exchange>`` sets."""
    out: set[str] = set()
    for m in members:
        text = m.decode("utf-8", "replace") if isinstance(m, bytes) else m
        parts = text.split(sep)
        if len(parts) != 3 or not parts[2]:
            continue  # not kombu's layout: someone else's key under the same prefix
        if not is_internal_queue(parts[2]):
            out.add(parts[2])
    return out


#: Broker URL schemes of Redis: the brokers (and result backends) a global_keyprefix applies to.
REDIS_SCHEMES = {"redis", "rediss"}
#: A key prefix longer than this is not a prefix anyone configured.
KEYPREFIX_MAX = 128


def keyprefix_problem(p: str | None) -> str | None:
    """Why ``p`` is not a usable global_keyprefix (None: it is, or it is unset)."""
    if p is None:
        return None
    if not p:
        return "empty: leave it out for no prefix"
    if len(p) > KEYPREFIX_MAX:
        return f"{len(p)} characters, more than {KEYPREFIX_MAX}"
    if not p.isprintable():
        return f"{p!r} has control characters"
    return None


def glob_escape(s: str) -> str:
    """``s`` as a literal in a Redis MATCH pattern (``*?[]`` and the backslash escaped): a key prefix."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def unprefixed(key: bytes | str, prefix: str) -> bytes | str:
    """``key`` without Celery's ``global_keyprefix`` (SCAN matched it, so it is there)."""
    return key[len(prefix.encode()):] if isinstance(key, bytes) else key[len(prefix):]


def exchange_of_binding_key(key: bytes | str) -> str:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return text[len(BINDING_PREFIX):]


#: kombu/transport/redis.py ``Channel.unacked_key``: a hash, delivery tag -> JSON ``[message, exchange,
#: routing_key]``, written when a message is delivered to a consumer and deleted when it is acknowledged
#: (``QoS.append`` / ``QoS.ack``). One hash per broker database, for every queue.
UNACKED_KEY = "unacked"


def binding_routes(tables: Mapping[str, Iterable[bytes | str]], sep: str = SEP) -> dict[tuple[str, str], set[str]]:
    """(exchange, routing_key) -> queues, from kombu's binding sets (exchange name -> members)."""
    out: dict[tuple[str, str], set[str]] = {}
    for exchange, members in tables.items():
        for m in members:
            text = m.decode("utf-8", "replace") if isinstance(m, bytes) else m
            parts = text.split(sep)
            if len(parts) == 3 and parts[2]:
                out.setdefault((exchange, parts[0]), set()).add(parts[2])
    return out


#: The message itself is skipped unparsed (``Raw``): only where it came from is read.
_unacked_decoder = msgspec.json.Decoder(tuple[msgspec.Raw, str | None, str | None])


def unacked_route(value: bytes | str) -> tuple[str, str] | None:
    """(exchange, routing_key) of one value of kombu's ``unacked`` hash; None when it is not kombu's."""
    try:
        _, exchange, routing_key = _unacked_decoder.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return None
    return exchange or "", routing_key or ""


def route_queue(routes: Mapping[tuple[str, str], set[str]], exchange: str, routing_key: str) -> str | None:
    """The queue a delivered message came from, the way kombu's ``_lookup`` finds it for a direct exchange
    (Celery's task queues): the one queue bound with that routing key; the default exchange ("") routes by
    queue name. None when no queue or several match (a fanout or topic exchange: we do not guess)."""
    qs = routes.get((exchange, routing_key))
    if qs and len(qs) == 1:
        return next(iter(qs))
    if not qs and not exchange and routing_key:
        return routing_key
    return None


def started_total(stats: Any) -> int | None:
    """Tasks a worker has started since it started (``inspect().stats()['total']``: task name -> count,
    counted in ``celery.worker.state.task_accepted``); None when the reply has no such counter."""
    total = stats.get("total") if isinstance(stats, dict) else None
    if not isinstance(total, dict) or not all(_int(v) is not None and v >= 0 for v in total.values()):
        return None
    return _int(sum(total.values()))


def running_unacked(active: Any) -> int | None:
    """Tasks a worker is running whose message is not yet acknowledged (``acks_late`` tasks), from its
    ``inspect().active()`` reply; None when the reply is not a list or a task lacks ``acknowledged``."""
    if not isinstance(active, list):
        return None
    n = 0
    for t in active:
        if not isinstance(t, dict) or not isinstance(t.get("acknowledged"), bool):
            return None
        n += not t["acknowledged"]
    return n


@dataclass(frozen=True)
class RedisSample:
    """One queue of a Redis broker at one fresh worker inspection: what the rates are differences of."""

    t: float  # monotonic seconds
    ready: int  # LLEN sum
    unacked: int  # entries of kombu's unacked hash that belong to this queue
    counters: tuple[tuple[str, int, int], ...] | None  # (worker, started_total, running_unacked) per consumer


@dataclass(frozen=True)
class Rates:
    publish: float
    deliver: float


def redis_rates(prev: RedisSample, cur: RedisSample) -> Rates | None:
    """Publish and deliver rates of a queue of a Redis broker between two samples.

    Redis keeps no per-list counters, so they are balanced from what it does keep. With ready R (the lists),
    unacked U (kombu's hash), published P, delivered X and acknowledged A over the window:
    ``dR = P - X`` and ``dU = X - A`` (a restore moves a message from U back to R: nets out), so
    ``X = dU + A`` and ``P = dR + X``. A comes from the consuming workers' own counters: tasks started
    (``total``) minus the change in started-but-unacknowledged (``acks_late``) ones.

    None (unknown) unless the same workers consumed the queue in both samples, each of them only this
    queue (a worker's counters are not split by queue), and none of them restarted (a counter went back).
    The samples are taken up to ``request_timeout`` apart (the broadcast, then the lists), so a busy queue's
    figures can be off by rate x that time over the window; a negative result of that skew shows as 0.
    """
    dt = cur.t - prev.t
    if dt <= 0 or prev.counters is None or cur.counters is None:
        return None
    before = {w: (s, r) for w, s, r in prev.counters}
    after = {w: (s, r) for w, s, r in cur.counters}
    if set(before) != set(after):
        return None
    acked = 0
    for w, (s1, r1) in after.items():
        s0, r0 = before[w]
        if s1 < s0:
            return None
        acked += (s1 - s0) - (r1 - r0)
    delivered = (cur.unacked - prev.unacked) + acked
    published = (cur.ready - prev.ready) + delivered
    return Rates(publish=max(0.0, published / dt), deliver=max(0.0, delivered / dt))


# ---------------------------------------------------------------------------------------------
# RabbitMQ management API: GET /api/queues/<vhost>?columns=...
# ---------------------------------------------------------------------------------------------

#: Only what we show: the management plugin then skips building the rest of each queue object.
RABBIT_COLUMNS = ("name", "messages", "messages_ready", "messages_unacknowledged", "consumers",
                  "message_stats.publish_details.rate", "message_stats.deliver_get_details.rate")


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v in schema.WIRE_INTS else None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        return float(v)
    except OverflowError:  # an int of 309+ digits
        return None


def _rate(stats: Any, key: str) -> float | None:
    if not isinstance(stats, dict):
        return None
    details = stats.get(key)
    return _float(details.get("rate")) if isinstance(details, dict) else None


def parse_rabbit_queues(data: Any, broker: str, names: Iterable[str] | None = None) -> list[schema.Queue]:
    """``/api/queues/<vhost>`` JSON -> queues. ``names``: only these (and every one of them, with
    None depths when RabbitMQ does not know it); None: every queue except Celery's internal ones.

    A queue the broker has just declared can lack ``messages`` (stats not yet emitted): None, not 0.
    """
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list of queues, got {type(data).__name__}")
    by_name: dict[str, schema.Queue] = {}
    for q in data:
        if not isinstance(q, dict) or not isinstance(q.get("name"), str):
            continue
        by_name[q["name"]] = schema.Queue(
            broker=broker, name=q["name"], kind="rabbitmq",
            depth=_int(q.get("messages")), ready=_int(q.get("messages_ready")),
            unacked=_int(q.get("messages_unacknowledged")), consumers=_int(q.get("consumers")),
            publish_rate=_rate(q.get("message_stats"), "publish_details"),
            deliver_rate=_rate(q.get("message_stats"), "deliver_get_details"),
        )
    if names is None:
        return [by_name[n] for n in sorted(by_name) if not is_internal_queue(n)]
    return [by_name.get(n) or schema.Queue(broker=broker, name=n, kind="rabbitmq") for n in names]


# ---------------------------------------------------------------------------------------------
# Celery workers: replies of inspect().stats() / .active() / .active_queues()
# ---------------------------------------------------------------------------------------------


def pool_size(stats: Mapping[str, Any]) -> int | None:
    """Processes in a prefork pool (grows and shrinks with pool_grow/pool_shrink), else the
    pool's ``max-concurrency`` (threads, gevent, solo)."""
    pool = stats.get("pool")
    if not isinstance(pool, dict):
        return None
    procs = pool.get("processes")
    if isinstance(procs, list):
        return len(procs)
    return _int(pool.get("max-concurrency"))


def _host(worker: str) -> str | None:
    return worker.split("@", 1)[1] if "@" in worker else None


def parse_celery_workers(stats: Mapping[str, Any] | None, active: Mapping[str, Any] | None,
                         now: float, seen_ts: float) -> list[schema.Worker]:
    """Workers that answered ``stats`` (online) with their pool and active tasks.

    ``active`` may be None (that call failed): tasks unknown, not "none". ``time_start`` in the
    reply is the worker's wall clock (celery.worker.request.on_accepted), so runtimes across nodes
    depend on their clocks agreeing; a negative runtime from skew is shown as 0.
    """
    names = set(stats or {}) | set(active or {})
    out = []
    for name in sorted(names):
        st = (stats or {}).get(name)
        tasks: list[schema.WorkerTask] | None = None
        reply = (active or {}).get(name) if active is not None else None
        if isinstance(reply, list):
            tasks = []
            for t in reply:
                if not isinstance(t, dict) or not isinstance(t.get("id"), str):
                    continue
                started = _float(t.get("time_start"))
                args = t.get("args")
                tasks.append(schema.WorkerTask(
                    id=t["id"], name=t.get("name") if isinstance(t.get("name"), str) else None,
                    started_ts=started, runtime_s=max(0.0, now - started) if started is not None else None,
                    args=(str(args)[:200] if args not in (None, [], ()) else None),
                ))
        out.append(schema.Worker(
            name=name, kind="celery", host=_host(name), online=True, last_seen_ts=seen_ts,
            pool_size=pool_size(st) if isinstance(st, dict) else None, active=tasks,
        ))
    return out


def consumed_queues(active_queues: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """worker -> names of the queues it consumes, from ``inspect().active_queues()``."""
    out: dict[str, set[str]] = {}
    for worker, qs in (active_queues or {}).items():
        if isinstance(qs, list):
            out[worker] = {q["name"] for q in qs if isinstance(q, dict) and isinstance(q.get("name"), str)}
    return out


# ---------------------------------------------------------------------------------------------
# Growth with no consumer
# ---------------------------------------------------------------------------------------------

#: Polls a queue must have grown over, without any consumer, before it is flagged.
GROWTH_POLLS = 3


@dataclass
class GrowthTracker:
    """Remembers the last few (depth, consumers) per queue and says which grow with nobody reading.

    Growing means: ``polls`` samples in a row, each depth >= the one before, the last > the first,
    and consumers == 0 in all of them. Unknown depth or unknown consumers reset the history: we flag
    only what we saw, never a guess.
    """

    polls: int = GROWTH_POLLS
    _hist: dict[tuple[str, str], deque[int]] = field(default_factory=dict)

    def update(self, queues: list[schema.Queue]) -> None:
        seen = set()
        for q in queues:
            key = (q.broker, q.name)
            seen.add(key)
            if q.depth is None or q.consumers != 0:
                self._hist.pop(key, None)
                continue
            h = self._hist.setdefault(key, deque(maxlen=self.polls))
            h.append(q.depth)
            q.growing_unconsumed = (len(h) == self.polls and h[-1] > h[0]
                                    and all(b >= a for a, b in zip(h, list(h)[1:], strict=False)))
        for gone in set(self._hist) - seen:
            del self._hist[gone]  # a queue that vanished must not leak history forever


# ---------------------------------------------------------------------------------------------
# Dask: the scheduler's /json/identity.json and /json/counts.json
# ---------------------------------------------------------------------------------------------

#: Worker-side task states that the scheduler counts as "processing" on that worker.
DASK_PROCESSING_STATES = ("waiting", "ready", "constrained", "executing", "long-running")
#: Worker status values (distributed.core.Status) of a worker that is leaving or gone.
DASK_LEAVING = {"closing", "closed", "closing_gracefully", "failed", "dont_reply"}


class _DaskMetrics(msgspec.Struct):
    memory: int | None = None  # RSS of the worker process (SystemMonitor)
    task_counts: dict[str, int] | None = None


class _DaskWorker(msgspec.Struct):
    host: str | None = None
    name: Any = None
    nthreads: int | None = None
    memory_limit: int | None = None  # 0 = no limit
    last_seen: float | None = None
    status: str | None = None
    metrics: _DaskMetrics | None = None


class _DaskIdentity(msgspec.Struct):
    type: str | None = None
    address: str | None = None
    workers: dict[str, _DaskWorker] = {}


#: Typed decoding skips every field we do not declare without building it: at 1,000 workers the
#: identity document is megabytes, most of it metrics we never show.
_identity_decoder = msgspec.json.Decoder(_DaskIdentity)


@dataclass
class DaskIdentity:
    address: str | None
    workers: list[schema.Worker]


def parse_dask_identity(raw: bytes | str, seen_ts: float) -> DaskIdentity:
    """``/json/identity.json`` -> workers (name = address, the id Dask's own tools use)."""
    try:
        ident = _identity_decoder.decode(raw)
    except msgspec.DecodeError as e:
        raise ValueError(f"not a scheduler identity document: {e}") from None
    except RecursionError:  # nested deeper than the stack, in a field we skip
        raise ValueError("not a scheduler identity document: nested too deeply") from None
    if ident.type not in (None, "Scheduler"):
        raise ValueError(f"not a scheduler identity document: type {ident.type!r}")
    workers = []
    for addr in sorted(ident.workers):
        w = ident.workers[addr]
        m = w.metrics
        processing = None
        if m is not None and m.task_counts is not None:
            processing = _int(sum(m.task_counts.get(s, 0) for s in DASK_PROCESSING_STATES))
        # _int: msgspec decodes JSON integers of any size, the wire carries 64 bits
        workers.append(schema.Worker(
            name=addr, kind="dask", host=w.host,
            online=None if w.status is None else w.status not in DASK_LEAVING,
            last_seen_ts=w.last_seen, processing=processing,
            mem_bytes=_int(m.memory) if m is not None else None,
            mem_limit_bytes=_int(w.memory_limit) or None,  # 0 means "no limit", not a zero-byte limit
            nthreads=_int(w.nthreads),
        ))
    return DaskIdentity(address=ident.address, workers=workers)


@dataclass(frozen=True)
class DaskCounts:
    processing: int | None
    waiting: int | None  # not started: see DASK_NOT_STARTED_STATES
    workers: int | None


def parse_dask_counts(data: Any) -> DaskCounts:
    """``/json/counts.json``: the scheduler's own totals. ``processing`` = tasks assigned to workers;
    ``waiting`` here = waiting on dependencies + ``unrunnable`` (no-worker). Tasks *queued* on the
    scheduler are not in this document: only the Prometheus counts (``parse_dask_task_states``) have them."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of counts, got {type(data).__name__}")
    waiting, unrunnable = _int(data.get("waiting")), _int(data.get("unrunnable"))
    return DaskCounts(processing=_int(data.get("processing")),
                      waiting=None if waiting is None else _int(waiting + (unrunnable or 0)),
                      workers=_int(data.get("workers")))


#: Scheduler task states that mean "not running yet": waiting on dependencies, queued on the scheduler
#: (distributed >= 2022.11 holds back root tasks beyond worker-saturation), or no worker can run it.
DASK_NOT_STARTED_STATES = ("waiting", "queued", "no-worker")
_PROM_TASKS = 'dask_scheduler_tasks{state="'


def parse_dask_task_states(text: str) -> dict[str, int] | None:
    """``dask_scheduler_tasks{state="..."} N`` from the scheduler's Prometheus ``/metrics``; None when
    the scheduler does not export it (prometheus_client not installed there: a one-line comment)."""
    states: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith(_PROM_TASKS):
            continue
        state, _, rest = line[len(_PROM_TASKS):].partition('"}')
        try:
            n = int(float(rest.split()[0]))
        except (IndexError, ValueError, OverflowError):  # OverflowError: "+Inf", legal in Prometheus text
            continue  # a line we do not understand is skipped, not guessed
        if _int(n) is not None:
            states[state] = n
    return states or None
