"""Provides the ``celery`` cluster-scope collector: queue depths from the brokers, workers from Celery.

Config, ``[collectors.celery]``::

    brokers = ["redis://redis-a:6379/0", "amqp://clustertop@rabbit-a//"]  # every broker to watch
    management_url = "http://rabbit-a:15672"       # RabbitMQ management API (for amqp:// brokers)
    management_user = "clustertop"                  # a "monitoring"-tagged user is enough
    management_password_file = "/etc/clustertop/rabbit.pass"
    queues = ["celery", "gpu"]                      # names to watch; default: discover them
    inspect_interval = 30                           # seconds between worker inspections (broadcasts)
    result_backend = "redis://redis-a:6379/1"       # optional: group and chord progress (celery_groups.py)
    broker_keyprefix = "proj:"                      # Celery's broker_transport_options global_keyprefix
    result_backend_keyprefix = "proj:"              # ... and result_backend_transport_options' (Redis only)
    request_timeout = 2                             # seconds per network call

``timeout`` in this section is the agent runner's deadline for the whole poll (the agent strips it),
so the per-call limit is ``request_timeout``.

Queue depth
- Redis broker: kombu files a message of priority p in the list ``<queue>\\x06\\x16<step>`` (step 0 is
  the plain ``<queue>`` list), so depth is the sum of ``LLEN`` over the priority steps, the way Flower
  reads it; all lists of all queues in one pipeline. Queues are discovered from kombu's binding sets
  (``_kombu.binding.<exchange>``) and from what workers consume, every ``inspect_interval``.
- RabbitMQ: the management API's ``/api/queues/<vhost>`` with ``columns=`` (depth, ready, unacked,
  consumers, publish/deliver rates): one request per broker.

Unacked and rates on a Redis broker (Redis keeps no counters per list, so they are balanced):
- unacked: the entries of kombu's ``unacked`` hash (delivered, not yet acknowledged), each placed in its
  queue by its exchange and routing key through the binding sets; read once per message, bounded per poll
  (``UNACKED_READ_*``). Not placeable or not yet read: None with the reason in ``errors``, never 0.
- publish/deliver rates: ``queues_parse.redis_rates`` between two fresh worker inspections (every
  ``inspect_interval``): acked = the consuming workers' started-task counters minus the change in their
  running unacknowledged (``acks_late``) tasks; delivered = change in unacked + acked; published = change
  in the lists + delivered. None unless the same workers consumed the queue in both samples, each of them
  this queue only, none restarted.

Workers: Celery's own remote control (``inspect().stats()/.active()/.active_queues()``) is a broadcast
every worker answers, so it runs at most every ``inspect_interval`` and its result is reused between;
``stats`` waits ``request_timeout`` for replies, the other two return once as many workers answered.
A worker that stops answering stays listed as offline for ``OFFLINE_KEEP_S``. Without the ``celery``
package on the polling node, workers are None (unknown) with a note in ``errors``; queues still flow.

Task history (``task_events``, default on; needs the ``celery`` package): each broker's event stream is
captured by a thread (``celery_events.EventStream``) and drained every poll into ``Queues.task_history``:
counts per task name, runtime p50/p95, recent tasks with a failure's traceback; "events off" when no
worker sends events.

Groups and chords (``result_backend``, a Redis result backend): "N of M done, K failed" per saved group
and chord header, from the backend's own keys (``celery_groups.ResultBackend``); without it
``Queues.celery_groups`` is None (the dashboard says to configure one). Results in JSON or msgpack are read;
pickle never (unpickling runs code from the network: said as "not read (unsafe)"), yaml and others are named.

Key prefixes: Celery's ``broker_transport_options={"global_keyprefix": P}`` makes kombu prefix every key
of a Redis broker (queue lists, binding sets, the unacked hash, the pub/sub channels of events and remote
control) with P as given; ``result_backend_transport_options={"global_keyprefix": P}`` prefixes the result
backend's task, group and chord keys, with "_" added when P does not end in one of ``:_-.`` (as Celery
does). ``broker_keyprefix`` / ``result_backend_keyprefix`` say the same here; without them a prefixed
deployment's queues are simply not found.

A queue that grew over ``GROWTH_POLLS`` polls with no consumer (RabbitMQ's consumer count, or no
online worker consuming it on Redis) is flagged ``growing_unconsumed``.

Partial failures go to ``Queues.errors`` and the rest still flows; when every broker fails,
``collect()`` raises ``CeleryUnreachable``. URLs in output are redacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import msgspec

from clustertop.collectors import celery_events, celery_groups, queues_parse
from clustertop.collectors.base import Context, Section
from clustertop.config import Invalid, Positive, convert
from clustertop.errors import describe
from clustertop.store import read_secret, redact
from clustertop.wire import schema

SECTION = "collectors.celery"
# Key-prefix rules live with the pure parsers (queues_parse), which control/celery.py shares too.
REDIS_SCHEMES = queues_parse.REDIS_SCHEMES
keyprefix_problem = queues_parse.keyprefix_problem
AMQP_SCHEMES = {"amqp", "amqps", "pyamqp"}

DEFAULT_INTERVAL_S = 10.0
DEFAULT_INSPECT_INTERVAL_S = 30.0
DEFAULT_REQUEST_TIMEOUT_S = 2.0
#: Redis discovery: SCAN page size (the whole keyspace is walked, in pages, every inspect_interval).
SCAN_COUNT = 1000
#: How long a worker that stopped answering stays listed as offline.
OFFLINE_KEEP_S = 600.0
#: Redis brokers, kombu's unacked hash (each entry is a whole message): new entries read per poll, at
#: most, and their bytes; a larger entry is never read; a hash of more entries is not counted at all.
UNACKED_READ_MAX = 5000
UNACKED_READ_BYTES = 32 * 1024 * 1024
UNACKED_VALUE_MAX = 8 * 1024 * 1024
UNACKED_MAX = 200_000
#: ``RedisBroker.tag_queue`` value of an entry too large to read (queue names are never empty).
UNREAD = ""


class CeleryUnreachable(Exception):
    """No configured broker could be read; the message names each and why."""


@dataclass(frozen=True)
class Settings:
    brokers: tuple[str, ...]
    management_url: str | None
    management_user: str | None
    management_password_file: str | None
    queues: tuple[str, ...] | None
    inspect_interval_s: float
    timeout_s: float
    priority_steps: tuple[int, ...]
    task_events: bool = True
    result_backend: str | None = None
    broker_keyprefix: str = ""  # kombu's global_keyprefix, as given
    result_backend_keyprefix: str = ""  # Celery's, "_" added as Celery adds it


class CeleryConfig(Section):
    """``[collectors.celery]``: brokers to read queue depths from, and optionally RabbitMQ's management API."""

    brokers: list[str] = []  # redis://, rediss://, amqp://, amqps://, pyamqp://
    management_url: str | None = None  # RabbitMQ management API (http://host:15672)
    management_user: str | None = None
    management_password_file: str | None = None
    queues: list[str] | None = None  # None: discovered (Redis bindings, RabbitMQ's queue list)
    inspect_interval: Positive = DEFAULT_INSPECT_INTERVAL_S  # seconds between worker inspections
    request_timeout: Positive | None = None  # None: `timeout`, else DEFAULT_REQUEST_TIMEOUT_S
    priority_steps: list[int] = msgspec.field(default_factory=lambda: list(queues_parse.PRIORITY_STEPS))
    task_events: bool = True  # listen to Celery's event stream for task history (celery_events.py)
    # Redis result backend (may equal a broker): group and chord progress (celery_groups.py)
    result_backend: str | None = None
    # Celery's broker_transport_options / result_backend_transport_options "global_keyprefix" (Redis only)
    broker_keyprefix: str | None = None
    result_backend_keyprefix: str | None = None
    # Refused, never used: a secret in the config file ends up in backups and editors' swap files.
    management_password: str | None = None

    def __post_init__(self) -> None:
        if self.management_password is not None:
            raise Invalid("management_password",
                          "not allowed: put it in a file readable only by the agent and set management_password_file")
        if not self.brokers:
            raise Invalid("brokers", "required: a list of broker URLs, e.g. [\"redis://host:6379/0\"]")
        for b in self.brokers:
            if urlsplit(b).scheme not in REDIS_SCHEMES | AMQP_SCHEMES:
                raise Invalid("brokers", f"not a redis:// or amqp:// URL: {redact(b)!r}")
        if self.result_backend is not None and urlsplit(self.result_backend).scheme not in REDIS_SCHEMES:
            raise Invalid("result_backend", "only a Redis result backend (redis:// or rediss://) is read, got "
                                            f"{redact(self.result_backend)!r}")
        if self.management_url is not None:
            parts = urlsplit(self.management_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Invalid("management_url", f"not an http(s) URL: {redact(self.management_url)!r}")
        if self.management_password_file is not None and self.management_user is None:
            raise Invalid("management_user", "required with management_password_file")
        if self.queues is not None and (not self.queues or not all(self.queues)):
            raise Invalid("queues", "expected a non-empty list of queue names (or leave it out to discover)")
        for key in ("broker_keyprefix", "result_backend_keyprefix"):
            why = keyprefix_problem(getattr(self, key))
            if why:
                raise Invalid(key, why)
        if self.broker_keyprefix and not any(urlsplit(b).scheme in REDIS_SCHEMES for b in self.brokers):
            raise Invalid("broker_keyprefix", "applies to Redis brokers only (RabbitMQ has no key prefix)")
        if self.result_backend_keyprefix and self.result_backend is None:
            raise Invalid("result_backend_keyprefix", "needs result_backend (the Redis result backend it prefixes)")
        if not self.priority_steps or min(self.priority_steps) < 0 or 0 not in self.priority_steps:
            raise Invalid("priority_steps",
                          "expected kombu's priority_steps: non-negative integers including 0, e.g. [0, 3, 6, 9]")


def backend_keyprefix(p: str) -> str:
    """Celery's ``BaseKeyValueStoreBackend._add_global_keyprefix``: "_" is added unless P ends in ``:_-.``."""
    return p if not p or p[-1] in ":_-." else p + "_"


def parse_settings(options: dict[str, Any], file: str | None) -> Settings:
    """Validate ``[collectors.celery]``; every problem is a ConfigError naming the key."""
    c = convert(options, CeleryConfig, file, SECTION)
    # `timeout` only reaches us when the collector is built directly (the agent strips it): then it
    # means the same as request_timeout.
    timeout = c.request_timeout or c.timeout or DEFAULT_REQUEST_TIMEOUT_S
    mgmt = c.management_url
    return Settings(
        brokers=tuple(c.brokers), management_url=mgmt.rstrip("/") if mgmt else None, management_user=c.management_user,
        management_password_file=c.management_password_file, queues=tuple(c.queues) if c.queues else None,
        inspect_interval_s=float(c.inspect_interval), timeout_s=float(timeout),
        priority_steps=tuple(sorted(set(c.priority_steps))), task_events=c.task_events,
        result_backend=c.result_backend, broker_keyprefix=c.broker_keyprefix or "",
        result_backend_keyprefix=backend_keyprefix(c.result_backend_keyprefix or ""),
    )


# ---------------------------------------------------------------------------------------------
# Brokers: thin readers, one per URL
# ---------------------------------------------------------------------------------------------


class RedisBroker:
    """Depths from a Redis broker: one pipeline of LLENs per poll; discovery by SCAN, cached."""

    def __init__(self, url: str, settings: Settings) -> None:
        from clustertop.store import connect

        self.url, self.shown, self.s = url, redact(url), settings
        self.prefix = settings.broker_keyprefix  # kombu's global_keyprefix: on every key, as given
        self.client = connect(url, timeout_s=settings.timeout_s)
        self.discovered: set[str] = set()
        self.routes: dict[tuple[str, str], set[str]] = {}
        #: delivery tag -> queue (None: not attributable) of the messages in kombu's unacked hash: each
        #: message is read once while it stays unacknowledged, not on every poll.
        self.tag_queue: dict[bytes, str | None] = {}

    def discover(self) -> set[str]:
        """Queue names from kombu's binding sets. SCAN, not KEYS: KEYS blocks a busy broker."""
        keys = list(self.client.scan_iter(match=queues_parse.glob_escape(self.prefix) + queues_parse.BINDING_PREFIX + "*",
                                          count=SCAN_COUNT))
        if not keys:
            self.discovered, self.routes = set(), {}
            return self.discovered
        with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.smembers(k)
            members = pipe.execute()
        names: set[str] = set()
        for m in members:
            names |= queues_parse.queues_from_bindings(m)
        self.routes = queues_parse.binding_routes(
            {queues_parse.exchange_of_binding_key(queues_parse.unprefixed(k, self.prefix)): m
             for k, m in zip(keys, members, strict=True)})
        self.discovered = names
        return names

    def unacked(self) -> tuple[dict[str, int] | None, str | None]:
        """Messages delivered and not yet acknowledged, per queue, from kombu's ``unacked`` hash; or None
        and why. Each message is read once while it stays there (its queue is cached by delivery tag), at
        most ``UNACKED_READ_MAX`` of them and ``UNACKED_READ_BYTES`` per poll: until the rest is read, the
        counts are None (the next polls read on from there)."""
        from redis.exceptions import ResponseError

        key = self.prefix + queues_parse.UNACKED_KEY
        try:
            n = self.client.hlen(key)
            if n > UNACKED_MAX:
                self.tag_queue.clear()
                return None, f"{n} unacknowledged messages, more than {UNACKED_MAX}: not counted"
            tags = self.client.hkeys(key)
        except ResponseError as e:  # WRONGTYPE: someone else's key of that name
            return None, f"{key!r} is not kombu's unacked hash: {describe(e)}"
        live = set(tags)
        for gone in set(self.tag_queue) - live:
            del self.tag_queue[gone]  # acknowledged (or restored) since: forget it
        new = [t for t in tags if t not in self.tag_queue]
        left = 0  # new entries this poll's budget did not reach
        if new:
            with self.client.pipeline(transaction=False) as pipe:
                for t in new:
                    pipe.hstrlen(key, t)
                sizes = pipe.execute()
            batch, budget = [], UNACKED_READ_BYTES
            for t, size in zip(new, sizes, strict=True):
                if size > UNACKED_VALUE_MAX:
                    self.tag_queue[t] = UNREAD  # never read whole: its queue stays unknown
                elif size <= budget and len(batch) < UNACKED_READ_MAX:
                    batch.append(t)
                    budget -= size
                else:
                    left += 1
            if batch:
                values = self.client.hmget(key, batch)
                routes = [queues_parse.unacked_route(v) if v is not None else None for v in values]
                if any(r is not None and r[0] and r not in self.routes for r in routes):
                    self.discover()  # a binding declared since the last discovery
                for tag, v, r in zip(batch, values, routes, strict=True):
                    if v is not None:  # None: acknowledged between HKEYS and HMGET
                        self.tag_queue[tag] = queues_parse.route_queue(self.routes, *r) if r is not None else None
        counts: dict[str, int] = {}
        unknown = unread = 0
        for tag in live:
            if tag not in self.tag_queue:
                continue  # not read yet (counted in ``left``), or acknowledged between the reads
            q = self.tag_queue[tag]
            if q is None:
                unknown += 1
            elif q == UNREAD:
                unread += 1
            else:
                counts[q] = counts.get(q, 0) + 1
        if unread:
            return None, f"{unread} unacknowledged messages over {UNACKED_VALUE_MAX} bytes, not read: unacked unknown"
        if unknown:
            return None, (f"{unknown} unacknowledged messages of no known queue (not a direct exchange): "
                          "unacked unknown")
        if left:
            return None, f"{left} unacknowledged messages still to read (at most {UNACKED_READ_MAX} a poll): unacked unknown"
        return counts, None

    def depths(self, names: list[str]) -> dict[str, int | None]:
        """Depth per queue; None for a queue whose key is not a list (WRONGTYPE: not kombu's)."""
        steps = self.s.priority_steps
        with self.client.pipeline(transaction=False) as pipe:
            for n in names:
                for k in queues_parse.priority_keys(n, steps):
                    pipe.llen(self.prefix + k)
            # One bad key must not sink every queue of the broker: errors come back as values.
            sizes = pipe.execute(raise_on_error=False)
        per = len(steps)
        out: dict[str, int | None] = {}
        for i, n in enumerate(names):
            part = sizes[i * per:(i + 1) * per]
            out[n] = sum(part) if all(isinstance(x, int) for x in part) else None
        return out

    def close(self) -> None:
        self.client.close()


def amqp_vhost(url: str) -> str:
    """kombu's rule: the path after the first '/' is the vhost, empty means '/' (``amqp://h//`` is '/')."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class RabbitBroker:
    """Queues of one vhost from the RabbitMQ management API (one GET with ``columns=``)."""

    def __init__(self, url: str, settings: Settings, http: Any) -> None:
        self.url, self.shown, self.s, self.http = url, redact(url), settings, http
        self.vhost = amqp_vhost(url)

    def queues(self, names: list[str] | None) -> list[schema.Queue]:
        if self.s.management_url is None:
            raise CeleryUnreachable("no management_url configured: RabbitMQ queue depths need the management API")
        resp = self.http.get(f"{self.s.management_url}/api/queues/{quote(self.vhost, safe='')}",
                             params={"columns": ",".join(queues_parse.RABBIT_COLUMNS)})
        if resp.status_code in (401, 403):
            raise CeleryUnreachable(f"management API refused {self.s.management_user or 'the user'}: HTTP {resp.status_code}")
        if resp.status_code == 404:
            raise CeleryUnreachable(f"management API: vhost {self.vhost!r} not found (HTTP 404)")
        resp.raise_for_status()
        return queues_parse.parse_rabbit_queues(resp.json(), self.shown, names)


# ---------------------------------------------------------------------------------------------
# Workers: Celery's remote control, rate-limited
# ---------------------------------------------------------------------------------------------


@dataclass
class Inspection:
    workers: dict[str, schema.Worker] = field(default_factory=dict)
    consumes: dict[str, set[str]] = field(default_factory=dict)  # worker -> queues
    #: worker -> (tasks started since it started, tasks running unacknowledged); None where unknown
    counters: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    error: str | None = None
    ts: float | None = None  # wall clock of the last successful round
    mono: float | None = None  # time.monotonic() of the broadcast: the instant the counters are from


class Inspector:
    """``inspect()`` on one broker, at most every ``inspect_interval``; the last answer in between."""

    def __init__(self, url: str, settings: Settings, clock: Callable[[], float], wall: Callable[[], float]) -> None:
        self.url, self.s, self.clock, self.wall = url, settings, clock, wall
        self.state = Inspection()
        self._due = 0.0
        self._app: Any = None

    def _control(self) -> Any:
        if self._app is None:
            from celery import Celery  # type: ignore[import-untyped]  # only the poller pays for it

            t = self.s.timeout_s
            app = Celery("clustertop-inspect", broker=self.url, set_as_current=False)
            # A dead broker must fail within the call's timeout, not retry forever as a worker would.
            app.conf.update(broker_connection_timeout=t, broker_connection_retry=False,
                            broker_connection_max_retries=1, broker_heartbeat=0,
                            broker_transport_options={"socket_timeout": t, "socket_connect_timeout": t,
                                                      "max_retries": 1, "interval_start": 0,
                                                      "interval_step": 0, "interval_max": 0,
                                                      **keyprefix_option(self.url, self.s.broker_keyprefix)})
            self._app = app
        return self._app.control

    def due(self) -> bool:
        return self.clock() >= self._due

    def poll(self) -> Inspection:
        if not self.due():
            return self.state
        self._due = self.clock() + self.s.inspect_interval_s
        try:
            control = self._control()
            t = self.s.timeout_s
            mono = time.monotonic()
            stats = control.inspect(timeout=t).stats() or {}
            # Knowing how many workers exist, the next two calls return as soon as all answered.
            limit = len(stats) or None
            active = control.inspect(timeout=t, limit=limit).active() if stats else {}
            queues = control.inspect(timeout=t, limit=limit).active_queues() if stats else {}
        except Exception as e:  # noqa: BLE001 - any failure of the broadcast leaves the queues flowing
            self.state.error = f"workers: {describe(e)}"
            for w in self.state.workers.values():
                w.online = None  # we could not ask: unknown, not offline
            return self.state
        now = self.wall()
        fresh = {w.name: w for w in queues_parse.parse_celery_workers(stats, active, now, now)}
        for name, old in self.state.workers.items():
            if name not in fresh and old.last_seen_ts is not None and now - old.last_seen_ts < OFFLINE_KEEP_S:
                old.online, old.active = False, None
                fresh[name] = old
        counters = {w: (queues_parse.started_total(st), queues_parse.running_unacked((active or {}).get(w)))
                    for w, st in stats.items()}
        self.state = Inspection(workers=fresh, consumes=queues_parse.consumed_queues(queues), counters=counters,
                                ts=now, mono=mono)
        return self.state

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def keyprefix_option(url: str, prefix: str) -> dict[str, str]:
    """The transport option that makes a Celery app of ours use the broker's prefix (Redis brokers only:
    remote control and events go over pub/sub channels kombu prefixes too)."""
    return {"global_keyprefix": prefix} if prefix and urlsplit(url).scheme in REDIS_SCHEMES else {}


def _celery_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("celery") is not None


# ---------------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------------


class CeleryCollector:
    """Collector ``celery`` (cluster scope): returns ``schema.Queues`` for ``ClusterPayload.queues``."""

    name = "celery"
    field = "queues"
    scope = "cluster"
    default_interval_s = DEFAULT_INTERVAL_S
    config_type = CeleryConfig

    def __init__(self, ctx: Context, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.s = parse_settings(ctx.config, ctx.config_file)
        self.node = ctx.node
        self.clock, self.wall = clock, wall
        self.growth = queues_parse.GrowthTracker()
        self._http: Any = None
        self.redis: list[RedisBroker] = []
        self.rabbit: list[RabbitBroker] = []
        for url in self.s.brokers:
            if urlsplit(url).scheme in REDIS_SCHEMES:
                self.redis.append(RedisBroker(url, self.s))
            else:
                self.rabbit.append(RabbitBroker(url, self.s, self._client()))
        self.inspect_ok = _celery_installed()
        self.inspectors = [Inspector(u, self.s, clock, wall) for u in self.s.brokers] if self.inspect_ok else []
        self.streams: list[celery_events.EventStream] = []
        if self.inspect_ok and self.s.task_events:
            self.streams = [celery_events.EventStream(u, redact(u), self.s.timeout_s, wall,
                                                      keyprefix_option(u, self.s.broker_keyprefix))
                            for u in self.s.brokers]
            for st in self.streams:
                st.start()
        self.backend: celery_groups.ResultBackend | None = None
        if self.s.result_backend is not None:
            self.backend = celery_groups.ResultBackend(self.s.result_backend, redact(self.s.result_backend),
                                                       self.s.timeout_s, self.s.inspect_interval_s, clock, wall,
                                                       keyprefix=self.s.result_backend_keyprefix)
        self._discover_due = 0.0
        self._samples: dict[tuple[str, str], queues_parse.RedisSample] = {}
        self._last_round: dict[str, float] = {}
        self._notes: list[str] = []
        self.last_good: schema.Queues | None = None
        self.last_ok_ts: float | None = None

    def _client(self) -> Any:
        if self._http is None:
            import httpx

            auth = None
            if self.s.management_user is not None:
                password = ""
                if self.s.management_password_file:
                    password = read_secret(self.s.management_password_file, "RabbitMQ management password")
                auth = (self.s.management_user, password)
            self._http = httpx.Client(timeout=self.s.timeout_s, auth=auth, follow_redirects=False,
                                      headers={"User-Agent": "clustertop-celery"})
        return self._http

    def collect(self) -> schema.Queues:
        errors: list[str] = []
        self._notes = []
        failed = 0
        inspections: dict[str, Inspection] = {}
        for ins in self.inspectors:
            inspections[ins.url] = ins.poll()
            if ins.state.error:
                errors.append(f"broker {redact(ins.url)}: {ins.state.error}")
        if not self.inspect_ok:
            errors.append(f"celery package not installed on {self.node}: workers unknown (pip install celery)")

        rediscover = self.clock() >= self._discover_due
        if rediscover:
            self._discover_due = self.clock() + self.s.inspect_interval_s
        queues: list[schema.Queue] = []
        for rb in self.redis:
            try:
                queues += self._redis_queues(rb, inspections.get(rb.url), rediscover)
            except Exception as e:  # noqa: BLE001 - one broker failing must not hide the others
                failed += 1
                errors.append(f"broker {rb.shown}: {describe(e)}")
        for ab in self.rabbit:
            try:
                queues += ab.queues(list(self.s.queues) if self.s.queues else None)
            except Exception as e:  # noqa: BLE001
                failed += 1
                errors.append(f"broker {ab.shown}: {describe(e)}")
        if failed and failed == len(self.s.brokers):
            raise CeleryUnreachable("Celery brokers unreachable: " + "; ".join(errors))
        errors += self._notes
        self.growth.update(queues)

        workers: list[schema.Worker] | None = None
        if self.inspect_ok:
            workers = []
            for ins in self.inspectors:
                workers += ins.state.workers.values()
        history = None
        if self.streams:
            history = []
            by_url = {ins.url: ins for ins in self.inspectors}
            for st in self.streams:
                ins = by_url.get(st.url)
                online = [w.name for w in ins.state.workers.values() if w.online] if ins is not None else []
                history.append(st.drain(online, share=len(self.streams)))
        groups = None
        if self.backend is not None:
            try:
                groups = self.backend.poll(self._task_name)
            except Exception as e:  # noqa: BLE001 - the backend down must not hide the queues
                groups = schema.CeleryGroups(backend=self.backend.shown, note=f"result backend: {describe(e)}")
        result = schema.Queues(queues=queues, workers=workers, errors=errors or None, task_history=history,
                               celery_groups=groups)
        self.last_good, self.last_ok_ts = result, self.wall()
        return result

    def _task_name(self, task_id: str) -> str | None:
        """A task's name as the event stream told it (groups' members), else None."""
        for st in self.streams:
            t = st.history.tasks.get(task_id)
            if t is not None and t.name:
                return t.name
        return None

    def _redis_queues(self, rb: RedisBroker, ins: Inspection | None, rediscover: bool) -> list[schema.Queue]:
        consumes = ins.consumes if ins is not None and ins.ts is not None and not ins.error else None
        if self.s.queues:
            names = list(self.s.queues)
        else:
            found = rb.discover() if rediscover else rb.discovered
            for qs in (consumes or {}).values():
                found = found | {q for q in qs if not queues_parse.is_internal_queue(q)}
            names = sorted(found)
        depths = rb.depths(names) if names else {}
        per_queue, why = rb.unacked() if names else (None, None)
        if why is not None:
            self._notes.append(f"broker {rb.shown}: {why}")
        # Rates are differences between two fresh worker inspections: only then are the workers' counters new.
        fresh = ins is not None and ins.mono is not None and ins.mono != self._last_round.get(rb.url)
        if fresh and ins is not None:
            self._last_round[rb.url] = ins.mono
        online = {w for w, st in (ins.workers.items() if ins else ()) if st.online}
        out = []
        for n in names:
            consumers = None
            if consumes is not None:
                consumers = sum(1 for w, qs in consumes.items() if n in qs and w in online)
            ready = depths.get(n)
            un = per_queue.get(n, 0) if per_queue is not None else None
            # depth stays what the lists hold (Flower's figure, what "tasks queued" sums); unacked is beside it
            q = schema.Queue(broker=rb.shown, name=n, kind="celery-redis", depth=ready, ready=ready, unacked=un,
                             consumers=consumers)
            if fresh and ins is not None and ins.mono is not None:
                self._rates(q, ins, consumes, ins.mono)
            out.append(q)
        if fresh:  # a queue no longer watched must not keep its last sample forever
            for key in [k for k in self._samples if k[0] == rb.shown and k[1] not in names]:
                del self._samples[key]
        return out

    def _rates(self, q: schema.Queue, ins: Inspection, consumes: dict[str, set[str]] | None, mono: float) -> None:
        """Fill ``q``'s publish/deliver rates from this and the last sample (``queues_parse.redis_rates``)."""
        key = (q.broker, q.name)
        if q.ready is None or q.unacked is None or consumes is None:
            self._samples.pop(key, None)
            return
        found: list[tuple[str, int, int]] | None = []
        for w in sorted(w for w, qs in consumes.items() if q.name in qs):
            started, running = ins.counters.get(w, (None, None))
            if consumes[w] != {q.name} or started is None or running is None:
                found = None  # a worker's counters are not split by queue; or it did not say
                break
            found.append((w, started, running))
        cur = queues_parse.RedisSample(t=mono, ready=q.ready, unacked=q.unacked,
                                       counters=tuple(found) if found is not None else None)
        prev = self._samples.get(key)
        self._samples[key] = cur
        rates = queues_parse.redis_rates(prev, cur) if prev is not None else None
        if rates is not None:
            q.publish_rate, q.deliver_rate = rates.publish, rates.deliver

    def close(self) -> None:
        for st in self.streams:
            st.close()
        if self.backend is not None:
            self.backend.close()
        for rb in self.redis:
            rb.close()
        for ins in self.inspectors:
            ins.close()
        if self._http is not None:
            self._http.close()
