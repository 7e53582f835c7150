"""Provides the command executor: signed job-control commands read from Redis and carried out.

One thread, its own Redis connection. Commands arrive on ``ct:v1:cmd:{node}`` (stream field "c"),
read through a consumer group so that a command read but not finished before a crash stays in
this consumer's pending list and is looked at again on restart.

Every command is checked, in this order, and refused with the reason otherwise:
signature (one of ``[security] operator_keys``), node, replay (id seen in memory or in Redis),
expiry, issue time not in the future beyond the skew, lifetime not absurd, verb allowed,
read-only off. Then, per verb: the target process is still the one the operator saw (pid +
start time), its owner may be signalled, the template exists and the params fit it.

Exactly-once, as far as a crash allows: the seen marker (``SET seen:<id> running NX``) is written
BEFORE executing; the result, the audit entry, the marker's "done" and the XACK are written
after, in one MULTI. A command found with a "running" marker and no result (the agent died in
between) is reported "interrupted, not re-run" and never executed again.

Results are not signed (agents hold no private keys): anyone who can write to Redis can write a
fake result, but never a command an agent will execute.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal as signals
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from clustertop import wire
from clustertop.agents.tasks import ParamError, TaskManager, Template, parse_templates
from clustertop.collectors import procfs
from clustertop.collectors.base import Roots
from clustertop.config import ConfigError, Invalid, Positive, convert
from clustertop.control import signing
from clustertop.errors import describe
from clustertop.wire import schema

log = logging.getLogger("clustertop.commands")

VERBS = ("signal", "launch", "stop", "list", "tail")
SIGNALS = {"TERM": signals.SIGTERM, "KILL": signals.SIGKILL, "INT": signals.SIGINT, "HUP": signals.SIGHUP}
GROUP = "agent"  # consumer group on the node's own stream; the consumer is the node name
#: A pid's start time is boot time + ticks: btime is whole seconds, so allow a second of slack.
#: (procfs.PidInfo carries the exact ticks too: stat.starttime.)
START_TOLERANCE_S = 1.0
TAIL_MAX_LINES = 1000
#: Ids remembered in memory beyond their marker's expiry, so a replay after a Redis flush is refused.
SEEN_MEMORY_S = 3600.0
SEEN_MEMORY_MAX = 100_000


# ---------------------------------------------------------------------------------------------
# [security]
# ---------------------------------------------------------------------------------------------


@dataclass
class Security:
    keys: dict[str, signing.PublicKey] = field(default_factory=dict)  # key id -> key
    signal_users: list[str] = field(default_factory=list)  # names or numeric uids
    allow_root: bool = False
    min_uid: int = 1000
    verbs: tuple[str, ...] = VERBS
    max_lifetime_s: float = 600.0
    clock_skew_s: float = 30.0


class SecurityConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[security]``: who may command this agent, and what they may do. Key files are read by
    parse_security (when the executor is built), not here, so a config can be checked anywhere."""

    operator_keys: list[str] = []  # public key files (clustertop keygen), relative to the config file
    signal_users: list[str | int] = []  # whose processes may be signalled, besides the agent's own user
    allow_root: bool = False  # may processes with a uid below min_uid (root, system daemons) be signalled?
    min_uid: Annotated[int, msgspec.Meta(ge=0)] = 1000  # uids below this are system accounts
    verbs: list[str] = msgspec.field(default_factory=lambda: list(VERBS))  # the commands this node accepts
    max_lifetime_s: Positive = 600.0  # a command valid for longer than this is refused
    clock_skew_s: Positive = 30.0  # how far the operator's clock may be ahead of this node's

    def __post_init__(self) -> None:
        for v in self.verbs:
            if v not in VERBS:
                raise Invalid("verbs", f"unknown verb {v!r} (known: {', '.join(VERBS)})")


def parse_security(raw: dict[str, Any] | SecurityConfig | None, file: str | None) -> Security:
    """``[security]`` (its table or its SecurityConfig) with the operator keys loaded."""
    s = "security"
    c = raw if isinstance(raw, SecurityConfig) else convert(raw or {}, SecurityConfig, file, s)
    sec = Security(signal_users=[str(u) for u in c.signal_users], allow_root=c.allow_root, min_uid=c.min_uid,
                   verbs=tuple(c.verbs), max_lifetime_s=c.max_lifetime_s, clock_skew_s=c.clock_skew_s)
    base = os.path.dirname(os.path.abspath(file)) if file else os.getcwd()
    for i, path in enumerate(c.operator_keys):
        try:
            key = signing.load_public(os.path.join(base, os.path.expanduser(path)))
        except signing.KeyFileError as e:
            raise ConfigError(file, f"[{s}] operator_keys[{i}]", str(e)) from None
        sec.keys[key.key_id] = key
    return sec


# ---------------------------------------------------------------------------------------------
# Process identity: read by procfs (one /proc/<pid> reader for the whole agent)
# ---------------------------------------------------------------------------------------------


def group_members(roots: Roots, pgid: int) -> list[procfs.PidInfo]:
    out = []
    for name in os.listdir(roots.proc):
        if name.isdigit():
            try:
                # no boot time: the members' owners are checked, not their start times
                info = procfs.read_pid(roots, int(name), None)
            except (OSError, ValueError):
                continue
            if info is not None and info.stat.pgrp == pgid:
                out.append(info)
    return out


def user_name(uid: int | None) -> str:
    if uid is None:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owner_refusal(info: procfs.PidInfo, sec: Security, agent_uid: int) -> str | None:
    """Why the owner of ``info`` may not be signalled, or None."""
    pid = info.stat.pid
    if info.uid is None:
        return f"owner of pid {pid} unknown"
    name = user_name(info.uid)
    if info.uid < sec.min_uid and not sec.allow_root:
        what = "root-owned" if info.uid == 0 else f"system process (uid {info.uid} < {sec.min_uid})"
        return f"pid {pid} is {what}: refused ([security] allow_root is off)"
    if info.uid == agent_uid or name in sec.signal_users or str(info.uid) in sec.signal_users:
        return None
    return f"user {name} not allowed ([security] signal_users)"


# ---------------------------------------------------------------------------------------------
# The executor
# ---------------------------------------------------------------------------------------------


class Refused(Exception):
    """A command that must not run; str() is the reason."""


def _cfg(cfg: Any, name: str, default: Any) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def default_state_dir() -> str:
    if os.environ.get("STATE_DIRECTORY"):  # systemd StateDirectory=
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    if os.geteuid() == 0:
        return "/var/lib/clustertop"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "clustertop")


class CommandExecutor:
    """Reads, checks and executes this node's commands. ``run(stop)`` in its own thread.

    ``cfg``: anything with ``templates``, ``security``, ``read_only`` and optionally ``file``,
    ``roots`` (or ``proc_root``/``sys_root``) and ``state_dir`` - agents.config.AgentConfig, or a dict.
    Config mistakes raise ConfigError here, at construction, not at the first command.
    ``block_ms`` (the XREADGROUP wait) must stay below the client's socket timeout.
    """

    def __init__(self, client_factory: Callable[[], Any], node: str, cfg: Any, roots: Roots | None = None,
                 state_dir: str | None = None, clock: Callable[[], float] = time.time,
                 block_ms: int = 1000) -> None:
        file = _cfg(cfg, "file", None)
        self.client_factory = client_factory
        self.node = node
        self.security = parse_security(_cfg(cfg, "security", {}), file)
        self.templates: dict[str, Template] = parse_templates(_cfg(cfg, "templates", {}), file)
        self.read_only = bool(_cfg(cfg, "read_only", False))
        self.roots = roots or _cfg(cfg, "roots", None) or Roots(
            proc=_cfg(cfg, "proc_root", "/proc"), sys=_cfg(cfg, "sys_root", "/sys"))
        self.state_dir = state_dir or _cfg(cfg, "state_dir", None) or default_state_dir()
        self.task_mgr = TaskManager(self.state_dir, self.roots)
        self.clock = clock
        self.block_ms = block_ms
        self.key = wire.cmd_key(node)
        self.client: Any = None
        self._seen: dict[str, float] = {}  # id -> forget after (wall clock)
        self._unfinished: dict[str, tuple[schema.CommandResult, schema.AuditEntry]] = {}
        if not self.security.keys:
            log.warning("no [security] operator_keys: every command will be refused")

    # -- public API ------------------------------------------------------------------------

    def tasks(self) -> list[schema.Task]:
        return self.task_mgr.tasks()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: (re)connect with backoff, finish pending commands, read new ones."""
        from clustertop.store.resp import errors, response_errors

        backoff = 0.5
        while not stop.is_set():
            try:
                if self.client is not None:
                    self.client.close()  # the old connection pool, after a failure
                self.client = self.client_factory()
                self.ensure_group()
                self.process_pending()
                backoff = 0.5
                while not stop.is_set():
                    self.poll_once()
            except response_errors() as e:
                if "NOGROUP" in str(e):  # the stream was deleted (FLUSHALL): recreate and go on
                    log.warning("command stream lost its group (%s); recreating", e)
                    continue
                log.error("command loop: Redis error: %s", e)
            except errors() as e:
                log.warning("command loop: Redis unreachable (%s); retrying in %.1f s", e, backoff)
            except Exception:  # one bad command must not end job control for the agent's lifetime
                log.exception("command loop failed; restarting it")
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, 10.0)
        self.task_mgr.close()

    def ensure_group(self) -> None:
        from clustertop.store.resp import response_errors

        try:
            # From "0", not "$": a command sent before this agent first started still gets an answer.
            self.client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except response_errors() as e:
            if "BUSYGROUP" not in str(e):
                raise

    def process_pending(self) -> int:
        """Entries this consumer read before but never acknowledged (a crash): look at each again."""
        n = 0
        while True:
            resp = self.client.xreadgroup(GROUP, self.node, {self.key: "0"}, count=50)
            entries = resp[0][1] if resp else []
            if not entries:
                return n
            for entry_id, fields in entries:
                n += 1
                if not fields:  # trimmed from the stream since: nothing left to judge
                    log.warning("pending command entry %s no longer in the stream; acknowledged", _s(entry_id))
                    self.client.xack(self.key, GROUP, entry_id)
                    continue
                self.handle(entry_id, fields)

    def poll_once(self) -> int:
        resp = self.client.xreadgroup(GROUP, self.node, {self.key: ">"}, count=10, block=self.block_ms)
        n = 0
        for _stream, entries in resp or []:
            for entry_id, fields in entries:
                self.handle(entry_id, fields)
                n += 1
        return n

    # -- one command -------------------------------------------------------------------------

    def handle(self, entry_id: Any, fields: dict[Any, Any]) -> schema.CommandResult | None:
        """Judge, execute and record one stream entry. Returns the result written (None for a replay)."""
        now = self.clock()
        raw = fields.get(b"c", fields.get("c"))
        try:
            cmd = wire.decode(raw, schema.Command)
            plain = msgspec.msgpack.decode(raw if isinstance(raw, bytes) else str(raw).encode())
            if not isinstance(plain, dict):
                raise wire.WireError("not a map")
        except (wire.WireError, msgspec.DecodeError) as e:
            cmd = schema.Command(id=f"entry:{_s(entry_id)}", node=self.node, verb="?")
            return self._finish(entry_id, cmd, self._result(cmd, "refused", f"unreadable command: {e}"),
                                marker=False, verified=False)

        if cmd.id in self._unfinished:  # executed, but Redis failed while recording: record it now
            result, audit = self._unfinished[cmd.id]
            return self._write(entry_id, cmd, result, audit, marker=True)
        reason = signing.verify(plain, self.security.keys)
        if reason is None and cmd.node != self.node:
            reason = f"wrong node (command for {cmd.node!r}, this is {self.node!r})"
        if reason is not None:
            if not self.security.keys:
                reason += " (no operator keys configured on this node)"
            return self._finish(entry_id, cmd, self._result(cmd, "refused", reason), marker=False, verified=False)

        # Authentic from here on. A replay gets no second result: the first one stands.
        if cmd.id in self._seen:
            self._replay(entry_id, cmd, "replayed (id already seen by this agent)")
            return None
        marker_key = wire.SEEN_KEY_PREFIX + cmd.id
        state = self.client.get(marker_key)
        if state == b"running":
            # Seen by an earlier life of this agent, which died between executing and recording.
            self._remember(cmd, now)
            res = self._result(cmd, "failed", "interrupted (the agent stopped mid-command), not re-run")
            log.warning("command %s (%s) was interrupted by an agent restart: not re-run", cmd.id, cmd.verb)
            return self._finish(entry_id, cmd, res, marker=True, verified=True)
        if state is not None:
            self._remember(cmd, now)
            self._replay(entry_id, cmd, "replayed (id already executed)")
            return None

        try:
            self._check_policy(cmd, now)
        except Refused as e:
            self._remember(cmd, now)  # a duplicate of a refused command gets no second result either
            status = "expired" if str(e).startswith("expired") else "refused"
            return self._finish(entry_id, cmd, self._result(cmd, status, str(e)), marker=False, verified=True)

        ttl_ms = max(1000, int((cmd.expires_ts + self.security.clock_skew_s - now) * 1000))
        if not self.client.set(marker_key, "running", nx=True, px=ttl_ms):
            self._remember(cmd, now)
            self._replay(entry_id, cmd, "replayed (id already executed)")
            return None
        self._remember(cmd, now)
        result = self._execute(cmd)
        return self._finish(entry_id, cmd, result, marker=True, verified=True)

    def _check_policy(self, cmd: schema.Command, now: float) -> None:
        sec = self.security
        if cmd.expires_ts < now:
            raise Refused(f"expired {now - cmd.expires_ts:.0f} s ago")
        if cmd.issued_ts > now + sec.clock_skew_s:
            raise Refused(f"issued {cmd.issued_ts - now:.0f} s in the future (clock skew > {sec.clock_skew_s:.0f} s)")
        lifetime = cmd.expires_ts - cmd.issued_ts
        if not 0 < lifetime <= sec.max_lifetime_s:
            raise Refused(f"lifetime {lifetime:.0f} s outside (0, {sec.max_lifetime_s:.0f}] s")
        if cmd.verb not in VERBS:
            raise Refused(f"unknown verb {cmd.verb!r}")
        if cmd.verb not in sec.verbs:
            raise Refused(f"verb {cmd.verb} not allowed on this node ([security] verbs)")
        if self.read_only:
            raise Refused("agent is read-only")

    def _remember(self, cmd: schema.Command, now: float) -> None:
        self._seen[cmd.id] = max(cmd.expires_ts, now) + SEEN_MEMORY_S
        if len(self._seen) > SEEN_MEMORY_MAX or len(self._seen) % 1000 == 0:
            for cid, until in list(self._seen.items()):
                if until < now:
                    del self._seen[cid]

    # -- execution ---------------------------------------------------------------------------

    def _execute(self, cmd: schema.Command) -> schema.CommandResult:
        try:
            if cmd.verb == "signal":
                return self._signal(cmd)
            if cmd.verb == "launch":
                return self._launch(cmd)
            if cmd.verb == "stop":
                task = self.task_mgr.stop(_str_arg(cmd, "task"))
                return self._result(cmd, "done", None, data={"task": task.id, "pgid": task.pgid}, tasks=[task])
            if cmd.verb == "list":
                tasks = self.task_mgr.tasks()
                return self._result(cmd, "done", None, data={"count": len(tasks)}, tasks=tasks)
            if cmd.verb == "tail":
                lines = cmd.args.get("lines", 50)
                if not isinstance(lines, int) or isinstance(lines, bool) or not 0 <= lines <= TAIL_MAX_LINES:
                    raise Refused(f"lines must be an int in 0..{TAIL_MAX_LINES}")
                task, text = self.task_mgr.tail(_str_arg(cmd, "task"), lines)
                return self._result(cmd, "done", None, data={"task": task.id, "lines": lines},
                                    output=text, tasks=[task])
            raise Refused(f"unknown verb {cmd.verb!r}")
        except Refused as e:
            return self._result(cmd, "refused", str(e))
        except KeyError as e:  # no such task
            return self._result(cmd, "refused", str(e.args[0]) if e.args else "not found")
        except Exception as e:
            log.exception("command %s (%s) failed", cmd.id, cmd.verb)
            return self._result(cmd, "failed", describe(e))

    def _signal(self, cmd: schema.Command) -> schema.CommandResult:
        pid = cmd.args.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise Refused(f"pid must be a positive int, got {pid!r}")
        start_raw = cmd.args.get("start_ts")
        try:
            # The v1 args map has no float type: start_ts travels as decimal text.
            start_ts = float(start_raw) if start_raw is not None and not isinstance(start_raw, bool) else None
        except ValueError:
            start_ts = None
        if start_ts is None:
            raise Refused("start_ts required (pid alone does not identify a process)")
        name = str(cmd.args.get("signal") or "TERM").upper().removeprefix("SIG")
        if name not in SIGNALS:
            raise Refused(f"signal {name} not allowed (allowed: {', '.join(SIGNALS)})")
        sig = SIGNALS[name]
        group = bool(cmd.args.get("group", False))
        if pid == 1 or pid == os.getpid():
            raise Refused(f"pid {pid} is {'init' if pid == 1 else 'the agent itself'}")
        # Pin the process first (pidfd), then check who it is: if the pid is recycled after the
        # check, the pidfd still names the old, dead process and the signal goes nowhere.
        pidfd = _pidfd(pid)
        try:
            info = procfs.read_pid(self.roots, pid, procfs.read_btime(self.roots))
            if info is None:
                raise Refused(f"no process {pid} (already gone)")
            if info.start_ts is None:
                raise ValueError("no btime in /proc/stat")
            if abs(info.start_ts - start_ts) > START_TOLERANCE_S:
                raise Refused(f"pid reused: pid {pid} started at {info.start_ts:.2f}, not {start_ts:.2f}")
            prefix = cmd.args.get("cmdline")
            if isinstance(prefix, str) and prefix and not info.cmdline.startswith(prefix):
                raise Refused(f"pid reused: command line of pid {pid} no longer starts with {prefix[:40]!r}")
            why = owner_refusal(info, self.security, os.getuid())
            if why:
                raise Refused(why)
            pgrp = info.stat.pgrp
            target = f"pid {pid} ({info.stat.comm}, user {user_name(info.uid)})"
            if group:
                if pgrp in (os.getpgrp(), 0, 1):
                    raise Refused(f"process group {pgrp} includes the agent or init")
                for member in group_members(self.roots, pgrp):
                    why = owner_refusal(member, self.security, os.getuid())
                    if why:
                        raise Refused(f"process group {pgrp}: {why}")
                os.killpg(pgrp, sig)
                target = f"process group {pgrp} of {target}"
            elif pidfd is not None:
                signals.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(pid, sig)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        log.info("signal %s sent to %s (command %s by %s)", name, target, cmd.id, cmd.operator or cmd.key_id)
        return self._result(cmd, "done", None, data={"pid": pid, "signal": name, "group": group,
                                                     "pgid": pgrp, "user": user_name(info.uid)})

    def _launch(self, cmd: schema.Command) -> schema.CommandResult:
        name = _str_arg(cmd, "template")
        tpl = self.templates.get(name)
        if tpl is None:
            raise Refused(f"unknown template {name!r} (this node has: {', '.join(sorted(self.templates)) or 'none'})")
        job = cmd.args.get("job")
        rank = cmd.args.get("rank")
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)):
            raise Refused(f"rank must be an int, got {rank!r}")
        try:
            task = self.task_mgr.launch(tpl, dict(cmd.params), job=str(job) if job is not None else None,
                                        rank=rank)
        except ParamError as e:
            raise Refused(f"bad params: {e}") from None
        return self._result(cmd, "done", None, data={"task": task.id, "pid": task.pid, "template": name},
                            tasks=[task])

    # -- recording ---------------------------------------------------------------------------

    def _result(self, cmd: schema.Command, status: str, reason: str | None, **kw: Any) -> schema.CommandResult:
        return schema.CommandResult(id=cmd.id, node=self.node, verb=cmd.verb, ok=status == "done", status=status,
                                    reason=reason, ts=self.clock(), **kw)

    def _audit(self, cmd: schema.Command, result_text: str, verified: bool) -> schema.AuditEntry:
        actor = cmd.operator or cmd.key_id or "?"
        if not verified:
            actor = f"unverified:{actor}"  # a name anyone could have typed
        return schema.AuditEntry(ts=self.clock(), actor=actor[:200], action=cmd.verb[:40],
                                 target=_target(self.node, cmd), result=result_text[:500],
                                 where=f"agent:{self.node}", command_id=cmd.id[:200])

    def _finish(self, entry_id: Any, cmd: schema.Command, result: schema.CommandResult, marker: bool,
                verified: bool) -> schema.CommandResult:
        text = "ok" if result.ok else f"{result.status}: {result.reason}"
        audit = self._audit(cmd, text, verified)
        log.info("command %s %s %s from %s: %s", cmd.id, cmd.verb, audit.target, audit.actor, text)
        if marker:
            self._unfinished[cmd.id] = (result, audit)
        return self._write(entry_id, cmd, result, audit, marker)

    def _write(self, entry_id: Any, cmd: schema.Command, result: schema.CommandResult, audit: schema.AuditEntry,
               marker: bool) -> schema.CommandResult:
        # One MULTI: result, audit, marker "done" and XACK land together or not at all, so a
        # crash can never leave a command answered twice or acknowledged without an answer.
        p = self.client.pipeline(transaction=True)
        if marker:
            p.set(wire.SEEN_KEY_PREFIX + cmd.id, "done", xx=True, keepttl=True)
        p.xadd(wire.RESULTS_KEY, {"r": wire.encode(result)}, maxlen=wire.RESULTS_MAXLEN, approximate=True)
        p.xadd(wire.AUDIT_KEY, {"a": wire.encode(audit)}, maxlen=wire.AUDIT_MAXLEN, approximate=True)
        p.xack(self.key, GROUP, entry_id)
        p.execute()
        self._unfinished.pop(cmd.id, None)
        return result

    def _replay(self, entry_id: Any, cmd: schema.Command, reason: str) -> None:
        audit = self._audit(cmd, f"refused: {reason}", verified=True)
        log.warning("command %s %s from %s refused: %s", cmd.id, cmd.verb, audit.actor, reason)
        p = self.client.pipeline(transaction=True)
        p.xadd(wire.AUDIT_KEY, {"a": wire.encode(audit)}, maxlen=wire.AUDIT_MAXLEN, approximate=True)
        p.xack(self.key, GROUP, entry_id)
        p.execute()


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):  # kernel < 5.3 or seccomp: fall back to kill(2)
        return None


def _str_arg(cmd: schema.Command, name: str) -> str:
    value = cmd.args.get(name)
    if not isinstance(value, str) or not value:
        raise Refused(f"{name} required")
    return value


def _target(node: str, cmd: schema.Command) -> str:
    a = cmd.args
    if cmd.verb == "signal":
        return f"{node} pid {a.get('pid')}" + (" (group)" if a.get("group") else "")
    if cmd.verb == "launch":
        return f"{node} template {a.get('template')}"
    if cmd.verb in ("stop", "tail"):
        return f"{node} task {a.get('task')}"
    return node


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
