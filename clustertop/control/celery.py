"""Provides Celery job control for the dashboard and the CLI, over the broker, with the operator's credentials.

Revoke a task (optionally terminating it with a signal), send a task by name from a template with
named parameters, grow or shrink a worker's pool, shut a worker down, retry an ended task. Every call waits for the
workers' replies (``reply=True``) at most ``timeout`` seconds and returns a ``Result`` that says in
words what happened; nothing here raises for a broker or worker problem.

A task template (TOML or YAML) names the task and where its arguments come from::

    task = "train.fit"                 # the registered task name
    queue = "gpu"                      # optional: routing
    priority = 6                       # optional: 0..9 (Redis: kombu's steps 0/3/6/9)
    args = ["{dataset}", "{epochs}"]   # "{p}" alone is replaced by the typed value of p
    kwargs = { tag = "run-{dataset}" } # "{p}" inside text is replaced by its text

    [params.dataset]
    type = "str"                       # str | int | float | bool
    choices = ["imagenet", "cifar"]    # optional
    [params.epochs]
    type = "int"
    default = 10

Key prefixes: on a Redis broker whose apps set ``broker_transport_options={"global_keyprefix": P}``, kombu
prefixes every key and the pub/sub channels remote control travels on, so commands reach the workers only with
the same ``broker_keyprefix``; a retry reads the backend's keys with its ``backend_keyprefix`` (Celery's
``result_backend_transport_options`` one, as written in the app's config). Both are checked by the celery
collector's ``queues_parse.keyprefix_problem`` (one rule for the agent's config, the dashboard's and the CLI's).

Retry reads a result written in JSON (Celery's own decoder) or msgpack (``msgspec.msgpack``: plain data, no
extension types), told apart by its first bytes (``celery_groups.serializer_of``); pickle is never read
(unpickling runs code from whoever can write the backend), yaml and the rest are named, not guessed.

Imports no agent code; ``celery`` is imported on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clustertop.config import parse_bool
from clustertop.errors import describe
from clustertop.store import redact

DEFAULT_TIMEOUT_S = 2.0
#: A result larger than this is not read for a retry (whoever writes the backend chooses its size).
RETRY_META_MAX = 4 * 1024 * 1024
PARAM_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
TEMPLATE_KEYS = {"task", "queue", "priority", "args", "kwargs", "params", "description"}
PARAM_KEYS = {"type", "default", "choices", "description"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Result:
    ok: bool
    text: str  # one line, for the screen and the audit trail
    data: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'error'}: {self.text}"


@dataclass(frozen=True)
class RetryPlan:
    """What a retry would send again, as the result backend holds it (hostile data: shown in full before
    anything is sent)."""

    task_id: str  # the task retried
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    state: str | None  # its state in the backend (FAILURE, SUCCESS, REVOKED ...)


class TemplateError(ValueError):
    """A template or a parameter value is wrong; the message names which."""


# ---------------------------------------------------------------------------------------------
# Templates (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskTemplate:
    name: str  # template name (file stem)
    task: str
    queue: str | None
    priority: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    params: dict[str, dict[str, Any]]


def load_template(path: str | Path) -> TaskTemplate:
    """A template from a ``.toml``, ``.yaml`` or ``.yml`` file."""
    p = Path(path)
    try:
        if p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(p.read_text(encoding="utf-8"))
        elif p.suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise TemplateError(f"{p}: YAML templates need PyYAML (pip install pyyaml), or use TOML") from None

            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        else:
            raise TemplateError(f"{p}: unknown template format {p.suffix!r} (use .toml or .yaml)")
    except OSError as e:
        raise TemplateError(f"{p}: cannot read: {e.strerror}") from None
    except TemplateError:
        raise
    except Exception as e:  # noqa: BLE001 - a TOML or YAML syntax error, in the parser's words
        raise TemplateError(f"{p}: not valid {p.suffix[1:].upper()}: {e}") from None
    return parse_template(p.stem, data, str(p))


def parse_template(name: str, data: Any, where: str = "<template>") -> TaskTemplate:
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: expected a table, got {type(data).__name__}")
    unknown = set(data) - TEMPLATE_KEYS
    if unknown:
        raise TemplateError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(TEMPLATE_KEYS))})")
    task = data.get("task")
    if not isinstance(task, str) or not task:
        raise TemplateError(f"{where}: task: required, the registered task name")
    queue = data.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise TemplateError(f"{where}: queue: expected text")
    priority = data.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 255):
        raise TemplateError(f"{where}: priority: expected an integer 0..255")
    args = data.get("args", [])
    kwargs = data.get("kwargs", {})
    if not isinstance(args, list):
        raise TemplateError(f"{where}: args: expected a list")
    if not isinstance(kwargs, dict):
        raise TemplateError(f"{where}: kwargs: expected a table")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise TemplateError(f"{where}: params: expected a table of parameters")
    for pname, spec in params.items():
        if not isinstance(spec, dict):
            raise TemplateError(f"{where}: params.{pname}: expected a table")
        bad = set(spec) - PARAM_KEYS
        if bad:
            raise TemplateError(f"{where}: params.{pname}: unknown key {sorted(bad)[0]!r}")
        if spec.get("type", "str") not in PARAM_TYPES:
            raise TemplateError(f"{where}: params.{pname}.type: one of {', '.join(PARAM_TYPES)}")
    used = _placeholders(args) | _placeholders(kwargs)
    missing = used - set(params)
    if missing:
        raise TemplateError(f"{where}: placeholder {{{sorted(missing)[0]}}} has no [params.{sorted(missing)[0]}]")
    return TaskTemplate(name=name, task=task, queue=queue, priority=priority, args=args, kwargs=kwargs, params=params)


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    return set()


def _convert(pname: str, kind: str, value: Any) -> Any:
    want = PARAM_TYPES[kind]
    if isinstance(value, want) and not (want is not bool and isinstance(value, bool)):
        return value
    if want is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # from a dialog or the command line: convert the text
        try:
            return parse_bool(value) if want is bool else want(value)
        except ValueError:
            pass
    raise TemplateError(f"parameter {pname}: expected {kind}, got {value!r}")


def resolve_params(tpl: TaskTemplate, values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for every parameter: given, else the default; unknown or missing ones refused."""
    unknown = set(values) - set(tpl.params)
    if unknown:
        raise TemplateError(f"template {tpl.name}: unknown parameter {sorted(unknown)[0]!r} "
                            f"(known: {', '.join(sorted(tpl.params)) or 'none'})")
    out: dict[str, Any] = {}
    for pname, spec in tpl.params.items():
        kind = spec.get("type", "str")
        if pname in values:
            v = _convert(pname, kind, values[pname])
        elif "default" in spec:
            v = _convert(pname, kind, spec["default"])
        else:
            raise TemplateError(f"template {tpl.name}: parameter {pname} is required")
        if "choices" in spec and v not in spec["choices"]:
            raise TemplateError(f"parameter {pname}: {v!r} is not one of {spec['choices']!r}")
        out[pname] = v
    return out


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """Fill placeholders: a value that is exactly "{p}" becomes p's typed value; "{p}" inside text
    becomes its text. Nothing is evaluated: there is no format mini-language, no attribute access."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return params[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, list):
        return [render(v, params) for v in value]
    if isinstance(value, dict):
        return {k: render(v, params) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Control over the broker
# ---------------------------------------------------------------------------------------------


def keyprefix_problem(prefix: str | None, url: str | None = None) -> str | None:
    """Why ``prefix`` cannot be a global_keyprefix (of ``url``, when given: Redis only); None when it can, or
    is unset. The celery collector's rule (one rule for the agent's, the dashboard's and the CLI's settings)."""
    from urllib.parse import urlsplit

    from clustertop.collectors.queues_parse import REDIS_SCHEMES
    from clustertop.collectors.queues_parse import keyprefix_problem as problem

    why = problem(prefix)
    if why or prefix is None or url is None:
        return why
    if not url:
        return "set without the Redis URL it prefixes"
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        return f"applies to Redis only ({redact(url)} has no key prefix)"
    return None


class UnreadableResult(ValueError):
    """A stored result this module does not read (its serializer, or garbage); the message says which."""


def _no_ext(code: int, data: memoryview) -> Any:
    raise UnreadableResult(f"result serializer msgpack: holds extension type {code}: not read (plain data only)")


def decode_meta(raw: bytes | None, json_decode: Callable[[bytes], Any]) -> Any:
    """A task's stored result meta from its bytes: None -> PENDING (no result), as Celery says it; JSON through
    ``json_decode`` (the backend's own ``decode_result``: kombu's types come back as Celery gives them); msgpack
    as plain data; pickle never (unpickling runs code from whoever can write the backend), the rest named."""
    from clustertop.collectors.celery_groups import serializer_of, unreadable

    if not raw:
        return {"status": "PENDING", "result": None}
    kind = serializer_of(raw[:16])
    if kind == "json":
        return json_decode(raw)
    if kind != "msgpack":
        raise UnreadableResult(unreadable(kind))
    import msgspec

    try:
        return msgspec.msgpack.Decoder(ext_hook=_no_ext).decode(raw)
    except (msgspec.DecodeError, RecursionError):  # cut short, or nested past reason: whoever wrote it
        raise UnreadableResult("result serializer msgpack: not valid msgpack") from None


def _prefix_option(prefix: str) -> dict[str, str]:
    return {"global_keyprefix": prefix} if prefix else {}


def _summarize(replies: Any) -> tuple[bool, str, dict[str, Any]]:
    """Celery's replies, ``[{worker: {"ok": text} | {"error": text}}]``, as one verdict."""
    data: dict[str, Any] = {}
    oks, errs = [], []
    for r in replies or ():
        if not isinstance(r, dict):
            continue
        for worker, body in r.items():
            data[worker] = body
            if isinstance(body, dict) and "error" in body:
                errs.append(f"{worker}: {body['error']}")
            else:
                text = body.get("ok") if isinstance(body, dict) else body
                oks.append(f"{worker}: {text}")
    if not data:
        return False, "no worker replied", data
    return not errs, "; ".join(errs + oks), data


class CeleryControl:
    """Control commands on one broker. ``broker`` may carry the operator's password; messages redact it."""

    def __init__(self, broker: str, timeout: float = DEFAULT_TIMEOUT_S, backend: str | None = None,
                 broker_keyprefix: str = "", backend_keyprefix: str = "") -> None:
        self.broker, self.shown, self.timeout = broker, redact(broker), timeout
        self.backend = backend  # the result backend: where a retry finds the full arguments
        # Celery's global_keyprefix of the broker and of the result backend, as the apps' config writes them.
        self.broker_keyprefix, self.backend_keyprefix = broker_keyprefix, backend_keyprefix
        self._app: Any = None
        self._results: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            why = self.broker_keyprefix and keyprefix_problem(self.broker_keyprefix, self.broker)
            if why:
                raise ValueError(f"broker_keyprefix: {why}")  # the callers' except: the Result's words
            from celery import Celery  # type: ignore[import-untyped]

            t = self.timeout
            app = Celery("clustertop-control", broker=self.broker, set_as_current=False)
            # Fail within the timeout on a dead broker instead of retrying like a worker would.
            app.conf.update(broker_connection_timeout=t, broker_connection_retry=False,
                            broker_connection_max_retries=1, task_publish_retry=False,
                            broker_transport_options={"socket_timeout": t, "socket_connect_timeout": t,
                                                      "max_retries": 1, "interval_start": 0,
                                                      "interval_step": 0, "interval_max": 0,
                                                      **_prefix_option(self.broker_keyprefix)})
            self._app = app
        return self._app

    @property
    def results(self) -> Any:
        """An app for the result backend alone. Sending stays on ``app`` (no backend): a sent task would
        otherwise subscribe to its result there, which nothing here waits for."""
        if self._results is None:
            why = self.backend_keyprefix and keyprefix_problem(self.backend_keyprefix, self.backend or "")
            if why:
                raise ValueError(f"backend_keyprefix: {why}")
            from celery import Celery  # type: ignore[import-untyped]

            t = self.timeout
            app = Celery("clustertop-results", broker=self.broker, backend=self.backend, set_as_current=False)
            # The prefix as the workers' config writes it: Celery adds the "_" itself, as it does for them.
            app.conf.update(redis_socket_timeout=t, redis_socket_connect_timeout=t, redis_retry_on_timeout=False,
                            result_backend_always_retry=False,
                            result_backend_transport_options=_prefix_option(self.backend_keyprefix))
            self._results = app
        return self._results

    def close(self) -> None:
        for a in (self._app, self._results):
            if a is not None:
                a.close()

    def _broadcast(self, what: str, call: Any) -> Result:
        try:
            replies = call()
        except Exception as e:  # noqa: BLE001 - the operator gets the reason, not a traceback
            return Result(False, f"{what} via {self.shown}: {describe(e)}")
        ok, text, data = _summarize(replies)
        return Result(ok, f"{what}: {text}", data)

    def revoke(self, task_id: str, terminate: bool = False, signal: str = "SIGTERM",
               workers: list[str] | None = None) -> Result:
        """Revoke ``task_id``: queued copies are dropped when a worker meets them; with ``terminate``
        the process running it now gets ``signal``. Every worker keeps the id in its revoked set."""
        what = f"{'terminate' if terminate else 'revoke'} task {task_id}"
        return self._broadcast(what, lambda: self.app.control.revoke(
            task_id, terminate=terminate, signal=signal, destination=workers, reply=True, timeout=self.timeout))

    def pool_grow(self, worker: str, n: int = 1) -> Result:
        return self._broadcast(f"grow {worker} pool by {n}", lambda: self.app.control.pool_grow(
            n, destination=[worker], reply=True, timeout=self.timeout))

    def pool_shrink(self, worker: str, n: int = 1) -> Result:
        return self._broadcast(f"shrink {worker} pool by {n}", lambda: self.app.control.pool_shrink(
            n, destination=[worker], reply=True, timeout=self.timeout))

    def shutdown(self, worker: str) -> Result:
        """Warm shutdown of one worker: it finishes its running tasks, then exits.

        A worker never replies to ``shutdown`` (it raises WorkerShutdown before it could), so we
        ping it first: the operator learns whether anyone was there to receive the order."""
        what = f"shut down {worker}"
        try:
            if not self.app.control.ping(destination=[worker], timeout=self.timeout):
                return Result(False, f"{what}: worker did not answer ping")
            self.app.control.shutdown(destination=[worker])
        except Exception as e:  # noqa: BLE001
            return Result(False, f"{what} via {self.shown}: {describe(e)}")
        return Result(True, f"{what}: shutdown sent (it exits once its running tasks finish)")

    def send(self, tpl: TaskTemplate, values: Mapping[str, Any]) -> Result:
        """Send the template's task with ``values`` filled in; the result carries the task id."""
        try:
            params = resolve_params(tpl, values)
        except TemplateError as e:
            return Result(False, str(e))
        args, kwargs = render(tpl.args, params), render(tpl.kwargs, params)
        opts: dict[str, Any] = {}
        if tpl.queue:
            opts["queue"] = tpl.queue
        if tpl.priority is not None:
            opts["priority"] = tpl.priority
        try:
            res = self.app.send_task(tpl.task, args=args, kwargs=kwargs, **opts)
        except Exception as e:  # noqa: BLE001
            return Result(False, f"send {tpl.task} via {self.shown}: {describe(e)}")
        where = f" to queue {tpl.queue}" if tpl.queue else ""
        return Result(True, f"sent {tpl.task}{where}: task id {res.id}",
                      {"task_id": res.id, "args": args, "kwargs": kwargs})

    def retry_plan(self, task_id: str) -> RetryPlan | Result:
        """What a retry of ``task_id`` would send: its name, args, kwargs and queue from the result backend
        (workers with ``result_extended=True``), or a Result saying why it cannot be retried. Celery has no
        remote retry and the events carry only a truncated repr of the arguments: those are never re-sent."""
        if not self.backend:
            return Result(False, f"retry {task_id}: no result backend configured (--celery-backend URL): the full "
                                 "arguments are only there; the events carry a truncated repr")
        try:
            be = self.results.backend
            key = be.get_key_for_task(task_id) if hasattr(be, "get_key_for_task") else None
            client = getattr(be, "client", None)
            if key is not None and client is not None:  # a key-value backend (Redis): its bytes, read by us
                # One bounded read (no STRLEN-then-GET race with whoever writes it): a byte past the bound refuses.
                raw = client.getrange(key, 0, RETRY_META_MAX)
                if len(raw) > RETRY_META_MAX:
                    return Result(False, f"retry {task_id}: its result is over {RETRY_META_MAX} bytes: not read")
                meta = decode_meta(raw, be.decode_result)
            else:
                meta = be.get_task_meta(task_id)  # another backend: Celery's own decoding (JSON)
        except UnreadableResult as e:
            return Result(False, f"retry {task_id}: {e}")
        except Exception as e:  # noqa: BLE001 - unreachable backend, refused serializer: the reason
            return Result(False, f"retry {task_id}: result backend {redact(self.backend)}: {describe(e)}")
        state = meta.get("status") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or state == "PENDING" and meta.get("result") is None and "name" not in meta:
            return Result(False, f"retry {task_id}: no result in the backend (not ended yet, expired, or another backend)")
        name, args, kwargs, queue = meta.get("name"), meta.get("args"), meta.get("kwargs"), meta.get("queue")
        if not isinstance(name, str) or not name or args is None:
            return Result(False, f"retry {task_id}: the backend has no arguments for it (workers need "
                                 "result_extended=True); the events' truncated repr is not re-sent")
        if (not isinstance(args, list | tuple) or not isinstance(kwargs, dict | type(None))
                or not all(isinstance(k, str) for k in kwargs or ())):
            return Result(False, f"retry {task_id}: the backend's args/kwargs are not a list and a mapping of names")
        return RetryPlan(task_id=task_id, name=name, args=list(args), kwargs=dict(kwargs or {}),
                         queue=queue if isinstance(queue, str) and queue else None,
                         state=state if isinstance(state, str) else None)

    def retry(self, plan: RetryPlan) -> Result:
        """Send ``plan``'s task again as a new task (same name, args, kwargs, queue); the result has its id."""
        opts = {"queue": plan.queue} if plan.queue else {}
        try:
            res = self.app.send_task(plan.name, args=plan.args, kwargs=plan.kwargs, **opts)
        except Exception as e:  # noqa: BLE001
            return Result(False, f"retry {plan.task_id} via {self.shown}: {describe(e)}")
        where = f" to queue {plan.queue}" if plan.queue else ""
        return Result(True, f"retried {plan.name} {plan.task_id}{where}: new task id {res.id}",
                      {"task_id": res.id, "from": plan.task_id})
