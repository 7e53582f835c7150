"""Provides the command executor: signed job-control commands read from Redis and carried out.

One thread, its own Redis connection. Commands arrive on ``ct:v1:cmd:{node}`` (stream field "c"),
read through a consumer group so that a command read but not finished before a crash stays in
this consumer's pending list and is looked at again on restart.

Every command is checked, in this order, and refused with the reason otherwise:
signature (one of ``[security] operator_keys``), node, replay (id in the state dir's replay log or in Redis),
expiry, issue time not in the future beyond the skew, lifetime not absurd, verb allowed,
read-only off. Then, per verb: the target process is still the one the operator saw (pid, start
ticks and uid, compared exactly), its owner may be signalled, the template exists and the params fit it.

Exactly-once, as far as a crash allows: the seen marker (``SET seen:{node}:<id> running NX``, and the
same id in ``seen.log`` in the state directory, fsynced) is written BEFORE executing; the result, the
audit entry, the marker's "done" and the XACK are written after, in one MULTI. A command found with a
"running" marker and no result (the agent died in between) is reported "interrupted, not re-run" and
never executed again. The state directory's log (agents/seen.py) outlives a deleted Redis marker.

What the node writes is signed with its own key (``[agent] node_key``), so nobody else who can write to
Redis can answer or testify for it: each ``CommandResult`` (``results:{node}``) and each audit entry
(``audit:node:{node}``, numbered and hash-chained by ``control.trust.append_audit``; the actor is
``node:{node}``, the operator's name the command carried is quoted in the target). Refusals of commands
nobody authenticated (unsigned, unknown key, bad signature, unreadable, another node's) and replays are
counted and sampled: at most one audit entry per REFUSAL_SAMPLE_S for each kind, carrying the count, so
a flood cannot push genuine entries out of the capped stream; every such entry is still acknowledged.
"""

from __future__ import annotations

import logging
import math
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
from clustertop.agents.container_commands import VERBS as CONTAINER_VERBS
from clustertop.agents.container_commands import ContainerControl, ContainerRefused, target_words
from clustertop.agents.seen import DONE, RUNNING, SeenLog
from clustertop.agents.tasks import (
    LaunchRefused,
    ParamError,
    RankError,
    TaskManager,
    Template,
    job_env,
    parse_templates,
)
from clustertop.collectors import procfs
from clustertop.collectors.base import Roots
from clustertop.config import ConfigError, Invalid, Positive, convert
from clustertop.control import signing, trust
from clustertop.errors import describe
from clustertop.store.resp import Oversized
from clustertop.wire import schema

log = logging.getLogger("clustertop.commands")

VERBS = ("signal", "launch", "stop", "list", "tail") + CONTAINER_VERBS
SIGNALS = {"TERM": signals.SIGTERM, "KILL": signals.SIGKILL, "INT": signals.SIGINT, "HUP": signals.SIGHUP}
GROUP = "agent"  # consumer group on the node's own stream; the consumer is the node name
TAIL_MAX_LINES = 1000
#: A signed command is < 4 KiB. Anyone who can write to Redis can XADD a 40 MB entry to this node's
#: stream: entries over this are read through in chunks and dropped unheld (store.resp's max_bulk),
#: then refused and acknowledged. Ten 40 MB entries read 10 at a time took an agent to 548 MB RSS and,
#: inside the unit's MemoryMax=256M, OOM-killed it on every restart (it re-reads its pending entries).
CMD_MAX_BYTES = 64 * 1024
#: Fields per entry (a command has one, "c"): more are dropped the same way, so thousands of small
#: fields cannot get around CMD_MAX_BYTES either.
CMD_MAX_FIELDS = 8
#: Entries per read: few, so one read holds at most CMD_READ_COUNT * CMD_MAX_FIELDS * CMD_MAX_BYTES (2 MiB).
CMD_READ_COUNT = 4
#: Ids remembered (memory and state dir) beyond their command's expiry, so a replay after a Redis flush,
#: or after a restart with the marker deleted, is refused; at most SEEN_MEMORY_MAX of them.
SEEN_MEMORY_S = 3600.0
SEEN_MEMORY_MAX = 100_000
#: Results kept in memory to write again if Redis loses them (see CommandExecutor._answered).
ANSWERED_MAX = 1000
#: Refusals nobody authenticated, and replays: at most one audit entry per this many seconds for each
#: kind, with the count since the last one (12,000 unsigned commands must not push genuine entries out
#: of the AUDIT_MAXLEN-capped stream) ...
REFUSAL_SAMPLE_S = 10.0
#: ... and at most this many results for them between two such entries (the results stream is capped too).
REFUSAL_RESULTS = 10


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
    # May processes with a uid below min_uid (root, system daemons) be signalled, and may templates run
    # as root (a template's user = "root", or no user while the agent runs as root)?
    allow_root: bool = False
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
                 block_ms: int = 1000, node_key: signing.PrivateKey | None = None) -> None:
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
        #: stop / kill / restart / launch of containers, through the engine's API ([collectors.containers])
        self.containers = ContainerControl.from_config(_cfg(cfg, "collectors", {}), file)
        #: Signs every result and audit entry this node writes: the node's word is its signature, so
        #: nobody else who can write to Redis can answer or testify for it. ``node_key``: the agent's
        #: (loaded once for publisher and executor), else ``[agent] node_key`` / state_dir/node.key.
        if node_key is None:
            try:
                node_key = signing.node_key(self.state_dir, _cfg(cfg, "node_key", None))
            except (OSError, signing.KeyFileError) as e:
                raise ConfigError(file, "[agent] node_key", f"node key: {e}") from None
        self.node_key = node_key
        self.clock = clock
        self.block_ms = block_ms
        self.key = wire.cmd_key(node)
        self.client: Any = None
        seen_path = os.path.join(self.state_dir, "seen.log")
        try:
            self._seen = SeenLog(seen_path, clock, SEEN_MEMORY_MAX)  # ids judged, read back from earlier lives
        except OSError as e:
            raise ConfigError(file, "[agent] state_dir", f"replay log {seen_path}: {describe(e)}") from None
        self._samples = {"unverified": _Sample(), "replayed": _Sample()}
        self._unfinished: dict[str, tuple[schema.CommandResult, schema.AuditEntry]] = {}
        # The last results this process recorded (id -> result): if Redis loses the record (a failover to an
        # asynchronous replica that had not received it), the entry comes back unacknowledged; the replay
        # log stops a second execution, and this lets the first result be written again (never re-run).
        self._answered: dict[str, schema.CommandResult] = {}
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
                    self.flush_refusals()  # a sampled count waiting for its window to end
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
        try:
            self.flush_refusals(force=True)  # the count of a sample still open goes on record too
        except Exception as e:  # Redis gone at shutdown: the count is lost, say so
            log.warning("refusals counted since the last sample not recorded: %s", describe(e))
        self._seen.close()
        self.task_mgr.close()
        self.containers.close()

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
        cursor = "0"
        while True:
            resp = self._read(cursor)
            entries = resp[0][1] if resp else []
            if not entries:
                return n
            for entry_id, fields in entries:
                n += 1
                # Onwards from this entry: one that fails again is looked at once, not re-read forever.
                cursor = _s(entry_id)
                if not fields:  # trimmed from the stream since: nothing left to judge
                    log.warning("pending command entry %s no longer in the stream; acknowledged", _s(entry_id))
                    self.client.xack(self.key, GROUP, entry_id)
                    continue
                self._judge(entry_id, fields)

    def poll_once(self) -> int:
        resp = self._read(">", block=self.block_ms)
        n = 0
        for _stream, entries in resp or []:
            for entry_id, fields in entries:
                self._judge(entry_id, fields)
                n += 1
        return n

    def _read(self, cursor: str, block: int | None = None) -> Any:
        """XREADGROUP of a few entries, each bounded (see CMD_MAX_BYTES) where the client can bound its
        reads (store.resp, the agent's own); redis-py/fakeredis (tests, the embedded store) read whole
        and _judge refuses the same entries after the fact."""
        kw: dict[str, Any] = {}
        if getattr(self.client, "bounded_reads", False):
            kw = {"max_bulk": CMD_MAX_BYTES, "max_array": 2 * CMD_MAX_FIELDS}
        return self.client.xreadgroup(GROUP, self.node, {self.key: cursor}, count=CMD_READ_COUNT, block=block, **kw)

    def _judge(self, entry_id: Any, fields: Any) -> schema.CommandResult | None:
        """An entry too big to be a command is refused (audited, acknowledged) unread; others go to handle."""
        why = _entry_refusal(fields)
        if why is None:
            return self.handle(entry_id, fields)
        log.warning("command entry %s refused: %s", _s(entry_id), why)
        cmd = schema.Command(id=f"entry:{_s(entry_id)}", node=self.node, verb="?")
        return self._finish(entry_id, cmd, self._result(cmd, "refused", why), marker=False, verified=False)

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
        # The state dir's log first (no round trip, and it survives a deleted Redis marker), then Redis.
        local = self._seen.state(cmd.id)
        marker_key = wire.seen_key(self.node, cmd.id)
        if local == DONE:
            first = self._answered.get(cmd.id)
            if first is not None and self.client.get(marker_key) is None:
                # Answered by this process, yet Redis has no marker: its record was lost (a failover to a
                # replica that had not received it, a flush). Write the same result again; never run again.
                log.warning("command %r: Redis lost its record (failover?); result written again, not re-run", cmd.id)
                text = "ok" if first.ok else f"{first.status}: {first.reason}"
                audit = self._audit(cmd, f"{text} (recorded again: Redis had lost the first record; not re-run)",
                                    True)
                self._answered.pop(cmd.id)
                return self._write(entry_id, cmd, first, audit, marker=False, again=True)
            self._replay(entry_id, cmd, "replayed (id already seen by this agent)")
            return None
        state = self.client.get(marker_key)
        if state is not None and state != b"running":
            self._remember(cmd, now, DONE)
            self._replay(entry_id, cmd, "replayed (id already executed)")
            return None
        if state == b"running" or local == RUNNING:
            # Marked by an earlier life of this agent, which died between executing and recording (the
            # marker in Redis says so, or the state dir's log alone when someone deleted that marker).
            res = self._result(cmd, "failed", "interrupted (the agent stopped mid-command), not re-run")
            log.warning("command %r (%r) was interrupted by an agent restart: not re-run", cmd.id, cmd.verb)
            return self._finish(entry_id, cmd, res, marker=True, verified=True)

        try:
            self._check_policy(cmd, now)
        except Refused as e:
            status = "expired" if str(e).startswith("expired") else "refused"
            # _write records the id as judged: a duplicate of a refused command gets no second result either.
            return self._finish(entry_id, cmd, self._result(cmd, status, str(e)), marker=False, verified=True)

        ttl_ms = max(1000, int((cmd.expires_ts + self.security.clock_skew_s - now) * 1000))
        if not self.client.set(marker_key, "running", nx=True, px=ttl_ms):
            self._remember(cmd, now, DONE)
            self._replay(entry_id, cmd, "replayed (id already executed)")
            return None
        # And on disk, fsynced, before anything runs. If the disk refuses, this raises and nothing runs;
        # the "running" marker then makes the next look at this entry report it "interrupted".
        self._remember(cmd, now, RUNNING)
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

    def _remember(self, cmd: schema.Command, now: float, state: str) -> None:
        """Note ``cmd``'s id as RUNNING (about to execute) or DONE (judged and recorded), in memory and on disk,
        until an hour past its expiry (after that the expiry check refuses it anyway)."""
        self._seen.add(cmd.id, max(cmd.expires_ts, now) + SEEN_MEMORY_S, state)

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
            if cmd.verb in CONTAINER_VERBS:
                try:
                    data = self.containers.act(cmd.verb, dict(cmd.args), dict(cmd.params), cmd.operator)
                except ContainerRefused as e:
                    raise Refused(str(e)) from None
                return self._result(cmd, "done", None, data=data)
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
        # The process is named exactly as the kernel keeps it: start ticks (/proc/<pid>/stat field 22)
        # and real uid, compared with ==. The old float start_ts with a 1 s tolerance let "nan" pass
        # (abs(x - nan) > 1 is False) and a kill hit a process that took the pid 0.05 s later.
        ticks = _identity_int(cmd.args, "start_ticks")
        if ticks is None:
            if cmd.args.get("start_ts") is not None:
                raise Refused("start_ticks required (an older dashboard/CLI: update it)")
            raise Refused("start_ticks required (pid alone does not identify a process)")
        uid = _identity_int(cmd.args, "uid")
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
            info = procfs.read_pid(self.roots, pid, None)  # no boot time: the ticks are compared, not seconds
            if info is None:
                raise Refused(f"no process {pid} (already gone)")
            if info.stat.starttime != ticks:
                raise Refused(f"pid reused: pid {pid} started at tick {info.stat.starttime}, not {ticks}")
            if uid is not None and info.uid != uid:
                raise Refused(f"pid reused: pid {pid} belongs to uid {info.uid}, not {uid}")
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
            rank_env = job_env(cmd.args)  # rank, world size, master: checked here, given to the task's env
        except RankError as e:
            raise Refused(str(e)) from None
        try:
            task = self.task_mgr.launch(tpl, dict(cmd.params), job=str(job) if job is not None else None,
                                        rank=rank, allow_root=self.security.allow_root, rank_env=rank_env)
        except ParamError as e:
            raise Refused(f"bad params: {e}") from None
        except LaunchRefused as e:  # as root without [security] allow_root, or no such user
            raise Refused(str(e)) from None
        return self._result(cmd, "done", None, data={"task": task.id, "pid": task.pid, "template": name},
                            tasks=[task])

    # -- recording ---------------------------------------------------------------------------

    def _result(self, cmd: schema.Command, status: str, reason: str | None, **kw: Any) -> schema.CommandResult:
        return schema.CommandResult(id=cmd.id, node=self.node, verb=cmd.verb, ok=status == "done", status=status,
                                    reason=reason, ts=self.clock(), **kw)

    def _audit(self, cmd: schema.Command, result_text: str, verified: bool) -> schema.AuditEntry:
        # The actor is this node: its key signs the entry, and a signature is the only identity that
        # counts. The operator's name is only what the command carried: quoted (repr: no newline or
        # control character in it can pass for other text) and, when no trusted key signed the command,
        # marked unverified (a name anyone could have typed).
        name = cmd.operator or ""
        who = f"operator {name[:100]!r}" if name else "no operator name"
        who = f"{who} (key {cmd.key_id[:20]})" if verified else f"unverified {who}"
        return schema.AuditEntry(ts=self.clock(), actor=f"node:{self.node}", action=cmd.verb[:40],
                                 target=f"{_target(self.node, cmd)[:300]}, sent by {who}", result=result_text[:500],
                                 where=f"agent:{self.node}", command_id=cmd.id[:200])

    def _finish(self, entry_id: Any, cmd: schema.Command, result: schema.CommandResult, marker: bool,
                verified: bool) -> schema.CommandResult | None:
        if not verified:  # nobody vouches for it: counted and sampled, not one entry each
            return self._sampled("unverified", entry_id, cmd, result, result.reason or result.status)
        text = "ok" if result.ok else f"{result.status}: {result.reason}"
        audit = self._audit(cmd, text, verified)
        # %r: ids, verbs, names and reasons carry operator text; none of it may start a log line of its own.
        log.info("command %r (%r) on %r: %r", cmd.id, cmd.verb, audit.target, text)
        if marker:
            self._unfinished[cmd.id] = (result, audit)
        return self._write(entry_id, cmd, result, audit, marker)

    def _write(self, entry_id: Any, cmd: schema.Command, result: schema.CommandResult, audit: schema.AuditEntry,
               marker: bool, again: bool = False) -> schema.CommandResult:
        # One MULTI: audit entry, result, marker "done" and XACK land together or not at all, so a crash
        # can never leave a command answered twice or acknowledged without an answer. append_audit reads
        # the stream's last entry under WATCH to chain to it, then queues ``rest`` in the same MULTI.
        # Sign a private copy: the result holds live Task records that the task watcher may update
        # between signing and encoding, and the bytes sent must be the bytes signed.
        result = wire.decode(wire.encode(result), schema.CommandResult)
        signing.sign_struct("result", result, self.node_key)
        data = wire.encode(result)

        def rest(p: Any) -> None:
            p.xadd(wire.results_key(self.node), {"r": data}, maxlen=wire.RESULTS_MAXLEN, approximate=True)
            if marker:
                p.set(wire.seen_key(self.node, cmd.id), "done", xx=True, keepttl=True)
            elif again:  # the lost marker, back (as "done": its command ran)
                ttl_ms = max(1000, int((cmd.expires_ts + self.security.clock_skew_s - self.clock()) * 1000))
                p.set(wire.seen_key(self.node, cmd.id), "done", px=ttl_ms)
            p.xack(self.key, GROUP, entry_id)

        trust.append_audit(self.client, wire.node_audit_key(self.node), audit, self.node_key, also=rest)
        self._unfinished.pop(cmd.id, None)
        self._remember(cmd, self.clock(), DONE)
        if marker and not again:
            self._answered[cmd.id] = result
            if len(self._answered) > ANSWERED_MAX:
                del self._answered[next(iter(self._answered))]  # the oldest
        return result

    def _replay(self, entry_id: Any, cmd: schema.Command, reason: str) -> None:
        # Anyone who can add to this node's stream can repeat a genuine command's bytes thousands of times:
        # the first refusal is recorded at once, the rest counted into the next sample.
        self._sampled("replayed", entry_id, cmd, None, reason)

    def _sampled(self, kind: str, entry_id: Any, cmd: schema.Command, result: schema.CommandResult | None,
                 reason: str) -> schema.CommandResult | None:
        """Refuse one entry of a kind that can come in floods: always acknowledged; an audit entry only when
        REFUSAL_SAMPLE_S have passed since the last one of this kind (carrying the count since), and a
        result (if any) only for the first REFUSAL_RESULTS of them in between. Returns the result written."""
        s = self._samples[kind]
        now = self.clock()
        log.debug("command %r (%r) refused: %r", cmd.id, cmd.verb, reason)
        window_over = now - s.last_ts >= REFUSAL_SAMPLE_S  # this one opens a new sample
        data = None
        if result is not None and (window_over or s.results < REFUSAL_RESULTS):
            result = wire.decode(wire.encode(result), schema.CommandResult)  # a private copy, as above
            signing.sign_struct("result", result, self.node_key)
            data = wire.encode(result)

        def rest(p: Any) -> None:
            if data is not None:
                p.xadd(wire.results_key(self.node), {"r": data}, maxlen=wire.RESULTS_MAXLEN, approximate=True)
            p.xack(self.key, GROUP, entry_id)

        if s.count == 0:
            s.since = now
        s.reason, s.cmd = reason, cmd
        if window_over:
            self._write_sample(kind, s, now, s.count + 1, rest)
        else:
            p = self.client.pipeline(transaction=True)
            rest(p)
            p.execute()
            s.count += 1
        if data is None:
            return None
        s.results += 1
        return result

    def flush_refusals(self, force: bool = False) -> None:
        """Write the sample of refusals counted since the last entry, once their window has passed (or now)."""
        now = self.clock()
        for kind, s in self._samples.items():
            if s.count and (force or now - s.last_ts >= REFUSAL_SAMPLE_S):
                self._write_sample(kind, s, now, s.count, None)

    def _write_sample(self, kind: str, s: _Sample, now: float, count: int,
                      also: Callable[[Any], None] | None) -> None:
        assert s.cmd is not None
        entry = self._audit(s.cmd, f"refused: {s.reason}", verified=kind == "replayed")
        what = "unverified commands" if kind == "unverified" else "replays"
        if count > 1:
            entry.target = f"{count} {what} refused in the last {now - s.since:.0f} s; the newest: {entry.target}"
        trust.append_audit(self.client, wire.node_audit_key(self.node), entry, self.node_key, also=also)
        if count > 1:
            log.warning("%d %s refused in the last %.0f s; the newest: %r (%r) on %r: %r", count, what,
                        now - s.since, s.cmd.id, s.cmd.verb, entry.target, s.reason)
        else:
            log.warning("command %r (%r) on %r refused: %r", s.cmd.id, s.cmd.verb, entry.target, s.reason)
        s.count, s.results, s.last_ts = 0, 0, now


@dataclass
class _Sample:
    """Refusals of one kind (unverified, replayed) counted since the last audit entry about them."""

    count: int = 0  # refused and acknowledged, in no entry yet
    since: float = 0.0  # when the first of them came
    last_ts: float = -math.inf  # when the last entry about this kind was written
    results: int = 0  # results written for them since that entry
    reason: str = ""  # the newest one's
    cmd: schema.Command | None = None  # the newest one


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):  # kernel < 5.3 or seccomp: fall back to kill(2)
        return None


def _entry_refusal(fields: Any) -> str | None:
    """Why a stream entry is no command, judged on its size alone (before decoding), or None."""
    if isinstance(fields, Oversized):  # more fields than CMD_MAX_FIELDS: dropped whole by the reader
        return f"command entry of more than {CMD_MAX_FIELDS} fields, {fields.length} bytes (a command has one field)"
    if len(fields) > CMD_MAX_FIELDS:
        return f"command entry of {len(fields)} fields (a command has one)"
    size = sum(_size(k) + _size(v) for k, v in fields.items())
    if size > CMD_MAX_BYTES:
        return f"command entry of {size} bytes over the {CMD_MAX_BYTES // 1024} KiB limit"
    return None


def _size(value: Any) -> int:
    return value.length if isinstance(value, Oversized) else len(value)


def _identity_int(args: dict[str, Any], name: str) -> int | None:
    """``args[name]`` as an exact int >= 0, None when absent; anything else (text such as "nan" or "12",
    a bool, a negative number) is refused by name: an identity is never parsed, rounded or guessed."""
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"{name} must be an int >= 0, got {type(value).__name__} {repr(value)[:40]}")
    if value < 0:
        raise Refused(f"{name} must be an int >= 0, got {value}")
    return value


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
        job = f" job {a.get('job')} rank {a.get('rank')}" if a.get("job") is not None else ""
        if a.get("world_size") is not None:  # what the task's environment is given (job_env)
            job += f" of {a.get('world_size')} (master {a.get('master_addr')}:{a.get('master_port')})"
        return f"{node} template {a.get('template')}{job}"
    if cmd.verb in ("stop", "tail"):
        return f"{node} task {a.get('task')}"
    if cmd.verb in CONTAINER_VERBS:
        return target_words(node, cmd.verb, a)
    return node


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
