"""Provides launched-task management: templates from the agent's config, and the tasks run from them.

A template is the only thing an operator can run on a node: ``argv`` with ``{param}`` placeholders,
typed params, user, cwd, env and limits, all fixed in the agent's own config. A param value only
ever lands inside ONE argv element (never split, never seen by a shell), and it is validated
against its declared type first.

Each task runs in its own session and process group (``start_new_session``), so stopping it
reaches its children too. Where clustertop-task.socket listens (the shipped units), each task runs in a
clustertop-task@ unit of its own, outside the agent's cgroup, its limits and its restarts
(agents/taskexec.py). Else, where systemd is PID 1 and usable (root), it runs under ``systemd-run --scope``
so ``memory_max``/``cpu_quota`` are enforced by cgroups; elsewhere it runs plainly and the reason
is logged and shown on the task. Output (stdout+stderr) goes through a pipe into a bounded,
rotated log under the state dir: a chatty task can never fill the node's disk.

Safety at load and at launch: a typed value may not start with "-" (a program would read it as an
option) unless its param says ``allow_dash``; a template whose argv runs a shell with ``-c`` (where a
param value would be shell code) is refused at load unless it says ``shell = true`` (then logged
loudly); a template never runs as root unless ``[security] allow_root`` says so.

Tasks outlive the agent. Each has a record (``tasks/<id>/task.json``: pid, start ticks, process group,
template, params, user, log, start, timeout deadline, job, rank) written at launch and at exit; a new
TaskManager on the same state dir adopts the tasks still running (pid AND start ticks equal, so a
reused pid is never taken for one), lists, tails and stops them, and enforces their timeout. Their
output pipe is a FIFO in the task's directory that the task holds open read-write itself: with the
agent gone it never gets SIGPIPE (a plain pipe would kill it at its next write), it only waits once
the pipe's buffer (1 MiB where the kernel allows) is full, until the next agent drains it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import pwd
import re
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from clustertop.agents import taskexec
from clustertop.collectors import procfs
from clustertop.collectors.base import Roots
from clustertop.config import ConfigError, Invalid, Positive, convert, parse_bool
from clustertop.wire import schema

log = logging.getLogger("clustertop.tasks")

PARAM_TYPES = ("int", "str", "float", "bool")

#: Output kept per task: the live file rotates at half of this, with one older file kept.
LOG_MAX_BYTES = 1024 * 1024
#: What ``tail`` returns at most (a result must stay a small Redis entry).
TAIL_MAX_BYTES = 64 * 1024
#: Finished tasks remembered for ``list`` and the snapshot, newest kept.
KEEP_FINISHED = 50
MAX_RUNNING = 64

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MEMORY = re.compile(r"^(\d+[KMGT]?|\d+%|infinity)$")
_QUOTA = re.compile(r"^\d+%$")
_INT = re.compile(r"^[+-]?\d+$")
_MISSING: Any = object()

#: Programs that run their -c argument as shell code: a template that does so makes every param value
#: a piece of a shell command ("echo {msg}" with msg = "hi; id" runs id).
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox"})
#: "-c", or a cluster holding c ("-ec", "-lc"), or fish's long form.
_SHELL_C = re.compile(r"^(-[A-Za-z]*c[A-Za-z]*|--command)$")
#: Record format of tasks/<id>/task.json.
RECORD_VERSION = 1


class ParamError(ValueError):
    """A launch request whose params do not fit the template; the message says which and why."""


class LaunchRefused(ValueError):
    """A launch this node refuses (a template that would run as root, or as a user it does not have);
    the message says why."""


@dataclass
class Param:
    name: str
    type: str = "str"
    default: Any = _MISSING
    choices: list[Any] | None = None
    pattern: re.Pattern[str] | None = None
    # A value starting with "-" would be read as an option by most programs (argv injection without
    # any shell: int "-1" reached `sleep` as an option): refused, whatever the type, unless the
    # template says this param may look like one.
    allow_dash: bool = False
    max_len: int = 4096

    def convert(self, value: Any) -> Any:
        """The value in this param's type, or ParamError. Accepts the typed value or its text."""
        kind = self.type
        if kind == "bool":
            try:
                if not isinstance(value, (bool, str)):
                    raise ValueError(value)
                out: Any = value if isinstance(value, bool) else parse_bool(value)
            except ValueError:
                raise ParamError(f"param {self.name}: expected bool, got {value!r}") from None
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                out = value
            elif isinstance(value, str) and _INT.match(value.strip()):
                out = int(value.strip())
            else:
                raise ParamError(f"param {self.name}: expected int, got {value!r}")
        elif kind == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out = float(value)
            elif isinstance(value, str):
                try:
                    out = float(value.strip())
                except ValueError:
                    raise ParamError(f"param {self.name}: expected float, got {value!r}") from None
            else:
                raise ParamError(f"param {self.name}: expected float, got {value!r}")
            if not math.isfinite(out):
                raise ParamError(f"param {self.name}: expected a finite float, got {value!r}")
        else:
            if not isinstance(value, str):
                raise ParamError(f"param {self.name}: expected str, got {type(value).__name__} {value!r}")
            if "\x00" in value:
                raise ParamError(f"param {self.name}: NUL byte not allowed")
            if len(value) > self.max_len:
                raise ParamError(f"param {self.name}: longer than {self.max_len} characters")
            out = value
        # Judged on the text that lands in argv, so "-1", -1 and -0.5 are caught as well as "--x".
        if _text(out).startswith("-") and not self.allow_dash:
            raise ParamError(f"param {self.name}: {_text(out)[:40]!r} must not start with '-' (a program would "
                             "read it as an option; the param may say allow_dash = true)")
        if self.choices is not None and out not in self.choices:
            raise ParamError(f"param {self.name}: {out!r} not one of {self.choices!r}")
        if self.pattern is not None and not self.pattern.fullmatch(_text(out)):
            raise ParamError(f"param {self.name}: {out!r} does not match {self.pattern.pattern!r}")
        return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Template:
    name: str
    argv: list[str]
    params: dict[str, Param] = field(default_factory=dict)
    user: str | None = None
    cwd: str | None = None  # None: "/" (never the agent's own working directory)
    env: dict[str, str] = field(default_factory=dict)
    memory_max: str | None = None
    cpu_quota: str | None = None
    timeout_s: float | None = None
    description: str | None = None
    shell: bool = False  # argv runs a shell with -c, and the config said that is intended

    def render(self, given: dict[str, Any]) -> list[str]:
        """argv with every placeholder replaced; each value stays inside its one element."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ParamError(f"unknown param(s) {', '.join(unknown)} (template {self.name} takes: "
                             f"{', '.join(sorted(self.params)) or 'none'})")
        values: dict[str, str] = {}
        for name, p in self.params.items():
            if name in given and given[name] is not None:
                values[name] = _text(p.convert(given[name]))
            elif p.default is not _MISSING:
                values[name] = _text(p.default)
            else:
                raise ParamError(f"param {name}: required")
        # re.sub with a function: the replacement text is never re-parsed, so a value holding
        # "{other}" or backslashes stays literal.
        return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in self.argv]


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[templates.NAME.limits]``: what systemd puts on the task's scope (they need systemd-run)."""

    memory_max: str | int | None = None  # MemoryMax=: bytes, 4G, 512M, 80% or infinity
    cpu_quota: str | None = None  # CPUQuota=: 200% is two CPUs
    timeout_s: Positive | None = None  # stopped (TERM, then KILL) after this long

    def __post_init__(self) -> None:
        if self.memory_max is not None and not _MEMORY.match(str(self.memory_max)):
            raise Invalid("memory_max", f"expected bytes, e.g. 4G, 512M, 80% or infinity; got {self.memory_max!r}")
        if self.cpu_quota is not None and not _QUOTA.match(self.cpu_quota):
            raise Invalid("cpu_quota", f"expected a percentage like 200%, got {self.cpu_quota!r}")


class ParamConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[templates.NAME.params] P = {...}`` (or just ``P = "int"``): what one placeholder accepts."""

    type: str = "str"  # one of PARAM_TYPES
    default: Any = msgspec.UNSET  # UNSET: the operator must give it
    choices: list[Any] | None = None
    pattern: str | None = None  # a regular expression the whole value must match
    allow_dash: bool = False  # see Param.allow_dash
    max_len: Annotated[int, msgspec.Meta(gt=0)] = 4096


class TemplateConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[templates.NAME]``: a task this agent may launch. argv only, never a shell."""

    argv: list[str] = []  # "{param}" placeholders are filled in, each inside its own element
    params: dict[str, ParamConfig | str] = {}
    user: str | None = None  # run as this user (the agent must be allowed to switch); None: the agent's own
    cwd: str | None = None
    env: dict[str, str] = {}
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    description: str | None = None  # shown in the dashboard's launcher
    shell: bool = False  # argv may run a shell with -c (sh -c "..."): refused at load without this

    def __post_init__(self) -> None:
        if not self.argv:
            raise Invalid("argv", "required: a non-empty list of strings")
        for arg in self.argv:
            for m in _PLACEHOLDER.finditer(arg):
                if m.group(1) not in self.params:
                    raise Invalid("argv", f"placeholder {{{m.group(1)}}} has no param")
        if not self.shell and runs_shell(self.argv):
            raise Invalid("argv", f"runs a shell ({' '.join(self.argv)[:80]!r}): every param value would be "
                                  "shell code; use the program's own argv, or set shell = true if that is meant")


def runs_shell(argv: list[str]) -> bool:
    """Does ``argv`` run a shell that executes a -c string (directly, or through env)?

    Through env, every word after it counts (its options, NAME=VALUE pairs and -S "split string" come
    before the program): erring on the side of refusing, which shell = true overrides.
    """
    if not argv:
        return False
    first = os.path.basename(argv[0])
    if first == "env":
        words = [w for a in argv[1:] for w in a.split()]
        shells = [i for i, w in enumerate(words) if os.path.basename(w) in SHELLS]
        return bool(shells) and any(_SHELL_C.match(w) for w in words[shells[0] + 1:])
    return first in SHELLS and any(_SHELL_C.match(a) for a in argv[1:])


def parse_templates(raw: Mapping[str, Any] | None, file: str | None) -> dict[str, Template]:
    """``[templates.<name>]`` tables (or their TemplateConfigs) into Templates; every mistake names file and key."""
    out: dict[str, Template] = {}
    for name, table in (raw or {}).items():
        section = f"templates.{name}"
        c = table if isinstance(table, TemplateConfig) else convert(table, TemplateConfig, file, section)
        lim = c.limits
        t = Template(name=name, argv=list(c.argv), user=c.user, cwd=c.cwd, env=dict(c.env),
                     memory_max=None if lim.memory_max is None else str(lim.memory_max), cpu_quota=lim.cpu_quota,
                     timeout_s=lim.timeout_s, description=c.description, shell=c.shell)
        for pname, spec in c.params.items():
            t.params[pname] = _param(pname, spec, file, f"{section}.params")
        if t.shell and runs_shell(t.argv):
            _warn_shell(file, t)
        out[name] = t
    return out


_warned: set[tuple[str | None, str, tuple[str, ...]]] = set()


def _warn_shell(file: str | None, tpl: Template) -> None:
    # Once per process and template: the config is parsed at load and again by the executor.
    key = (file, tpl.name, tuple(tpl.argv))
    if key in _warned:
        return
    _warned.add(key)
    log.warning("!!! [templates.%s] runs a shell (%s) with shell = true: every param value of it is shell "
                "code on this node; prefer the program's own argv !!!", tpl.name, " ".join(tpl.argv)[:120])


def _param(name: str, spec: ParamConfig | str, file: str | None, section: str) -> Param:
    key = f"[{section}] {name}"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(file, key, "param names are letters, digits and _")
    if isinstance(spec, str):
        spec = ParamConfig(type=spec)
    if spec.type not in PARAM_TYPES:
        raise ConfigError(file, key, f"unknown type {spec.type!r} (known: {', '.join(PARAM_TYPES)})")
    p = Param(name=name, type=spec.type, allow_dash=spec.allow_dash, max_len=spec.max_len)
    if spec.pattern is not None:
        try:
            p.pattern = re.compile(spec.pattern)
        except re.error as e:
            raise ConfigError(file, f"{key}.pattern", f"bad regular expression: {e}") from None
    try:
        if spec.choices is not None:
            p.choices = [p.convert(c) for c in spec.choices]
        if spec.default is not msgspec.UNSET:
            p.default = p.convert(spec.default)
    except ParamError as e:
        raise ConfigError(file, key, str(e)) from None
    return p


# ---------------------------------------------------------------------------------------------
# systemd detection
# ---------------------------------------------------------------------------------------------


def detect_systemd() -> tuple[list[str] | None, str]:
    """The ``systemd-run`` prefix to use, or None and the reason why not (logged once)."""
    exe = shutil.which("systemd-run")
    if exe is None:
        return None, "systemd-run not installed"
    if not os.path.isdir("/run/systemd/system"):
        return None, "systemd is not the init system here (no /run/systemd/system)"
    prefix = [exe, "--scope", "--quiet", "--collect"]
    if os.geteuid() != 0:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
            return None, "not root and no systemd user manager (XDG_RUNTIME_DIR/systemd/private)"
        prefix.insert(1, "--user")
    # A real probe: a container can have systemd-run and /run/systemd/system but no usable bus.
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"systemd-run probe failed: {e}"
    if probe.returncode != 0:
        err = probe.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"systemd-run probe failed: {err[-1] if err else probe.returncode}"
    return prefix, "systemd scope"


def scope_command(prefix: list[str], unit: str, tpl: Template, argv: list[str]) -> list[str]:
    """argv wrapped in a transient systemd scope carrying the template's limits.

    ``--scope`` runs the program in the foreground, as our child (same pid, our pipe, our process
    group), while systemd puts it in its own cgroup where MemoryMax/CPUQuota apply.
    """
    cmd = [*prefix, f"--unit={unit}"]
    if tpl.memory_max:
        cmd.append(f"--property=MemoryMax={tpl.memory_max}")
    if tpl.cpu_quota:
        cmd.append(f"--property=CPUQuota={tpl.cpu_quota}")
    if tpl.user:
        cmd.append(f"--uid={tpl.user}")
    return [*cmd, "--", *argv]


# ---------------------------------------------------------------------------------------------
# Bounded output log
# ---------------------------------------------------------------------------------------------


class BoundedLog:
    """``output.log`` rotating to ``output.log.1`` at half the budget: never more than max_bytes."""

    def __init__(self, path: str, max_bytes: int = LOG_MAX_BYTES) -> None:
        self.path = path
        self.half = max(1024, max_bytes // 2)
        self.lock = threading.Lock()
        self.f = open(path, "ab")  # noqa: SIM115 - closed by close()
        self.size = self.f.tell()

    def write(self, data: bytes) -> None:
        with self.lock:
            while data:
                room = self.half - self.size
                if room <= 0:
                    self._rotate()
                    continue
                chunk, data = data[:room], data[room:]
                self.f.write(chunk)
                self.size += len(chunk)
            self.f.flush()

    def _rotate(self) -> None:
        self.f.close()
        os.replace(self.path, self.path + ".1")
        self.f = open(self.path, "ab")  # noqa: SIM115
        self.size = 0

    def close(self) -> None:
        with self.lock:
            self.f.close()

    def total_bytes(self) -> int:
        total = 0
        for p in (self.path + ".1", self.path):
            try:
                total += os.path.getsize(p)
            except OSError:
                pass
        return total

    def tail(self, lines: int, max_bytes: int = TAIL_MAX_BYTES) -> str:
        with self.lock:
            data = b""
            for p in (self.path + ".1", self.path):
                try:
                    with open(p, "rb") as f:
                        f.seek(0, os.SEEK_END)
                        f.seek(max(0, f.tell() - max_bytes))
                        data += f.read()
                except OSError:
                    pass
        data = data[-max_bytes:]
        text = data.decode("utf-8", "replace")
        parts = text.splitlines()
        return "\n".join(parts[-lines:]) if lines > 0 else ""


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------


#: The task's record and its output FIFO, in tasks/<id>/.
RECORD = "task.json"
OUTPUT_FIFO = "output.pipe"
#: Buffer of the output FIFO: how much a task may write while no agent reads (a restart) before it waits.
PIPE_BYTES = 1024 * 1024
#: How often the output pump and the watcher of an adopted task look at close() (ms).
POLL_MS = 500


class TaskRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``tasks/<id>/task.json``: what a later agent needs to adopt, list, tail, stop and time out a task."""

    v: int = RECORD_VERSION
    id: str
    template: str
    pid: Annotated[int, msgspec.Meta(gt=1)]
    pgid: int  # == pid: every task leads its own session
    start_ticks: Annotated[int, msgspec.Meta(ge=0)] | None  # None: gone before it was read; never adopted
    params: dict[str, Any] = {}  # as the operator gave them (shown, never re-run: any JSON value is kept)
    user: str | None = None
    argv: list[str] = []
    started_ts: float
    deadline_ts: float | None = None  # wall clock: started + timeout_s, so a restart does not reset it
    job: str | None = None
    rank: int | None = None
    unit: str | None = None
    note: str | None = None
    state: str = "running"
    ended_ts: float | None = None
    exit_code: int | None = None
    stop_requested: bool = False
    via_unit: bool = False  # in a clustertop-task@ unit: its instance writes exit.json when it ends


@dataclass
class _Running:
    task: schema.Task
    log: BoundedLog
    proc: subprocess.Popen[bytes] | None = None  # None: adopted from an earlier agent, not our child
    out_fd: int | None = None  # read end of the task's output FIFO; the pump owns and closes it
    pidfd: int | None = None  # adopted: pins the process; readable once it exits
    start_ticks: int | None = None
    deadline_ts: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    exited: bool = False
    stop_requested: bool = False
    pump: threading.Thread | None = None
    timers: list[threading.Timer] = field(default_factory=list)
    via_unit: bool = False  # launched through clustertop-task.socket (see TaskRecord.via_unit)


class TaskManager:
    """Launches, stops, lists and tails tasks. Thread-safe: the executor and the snapshot both call it."""

    def __init__(self, state_dir: str, roots: Roots | None = None, log_max_bytes: int = LOG_MAX_BYTES,
                 use_systemd: bool | None = None, stop_grace_s: float = 5.0,
                 task_socket: str | None = taskexec.DEFAULT_SOCKET) -> None:
        self.dir = os.path.join(state_dir, "tasks")  # created at the first launch, not before
        # clustertop-task.socket (agents/taskexec.py): used whenever it exists, each task in its own unit.
        self.task_socket = task_socket
        self.roots = roots or Roots()
        self.log_max_bytes = log_max_bytes
        self.stop_grace_s = stop_grace_s
        self._use_systemd = use_systemd
        self._systemd: tuple[list[str] | None, str] | None = None
        self._lock = threading.Lock()
        self._tasks: dict[str, _Running] = {}
        self._closed = False  # set by close(): a later TaskManager owns the tasks and their records now
        self._adopt()

    def _scope(self) -> tuple[list[str] | None, str]:
        if self._systemd is None:
            if self._use_systemd is False:
                self._systemd = (None, "systemd disabled")
            else:
                self._systemd = detect_systemd()
                if self._systemd[0] is None:
                    log.info("tasks run without systemd scopes (limits other than timeout_s not enforced): %s",
                             self._systemd[1])
        return self._systemd

    def launch(self, tpl: Template, params: dict[str, Any], job: str | None = None,
               rank: int | None = None, allow_root: bool = False,
               rank_env: Mapping[str, str] | None = None) -> schema.Task:
        """Start one task; ParamError for bad params, LaunchRefused where this node's policy forbids it
        (running as root without ``allow_root``), OSError/ValueError if it cannot start. ``rank_env``
        (``job_env``'s checked values) goes on top of the template's env: a template cannot fake a rank."""
        argv = tpl.render(params)
        uid = run_as_uid(tpl)
        if uid == 0 and not allow_root:
            why = f"its user {tpl.user!r} is root" if tpl.user else "the agent runs as root and the template sets no user"
            raise LaunchRefused(f"template {tpl.name} would run as root ({why}): refused ([security] allow_root is "
                                f'off; give [templates.{tpl.name}] a user = "NAME")')
        with self._lock:
            running = sum(1 for r in self._tasks.values() if not r.exited)
        if running >= MAX_RUNNING:
            raise ValueError(f"too many running tasks ({running})")
        task_id = secrets.token_hex(6)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tdir = os.path.join(self.dir, task_id)
        os.makedirs(tdir, mode=0o700)
        env = _base_env(tpl.user)
        env.update(tpl.env)
        env.update(rank_env or {})
        cmd = list(argv)
        kwargs: dict[str, Any] = {}
        sock = self.task_socket if self.task_socket and os.path.exists(self.task_socket) else None
        if sock is not None:
            if uid != os.geteuid():
                raise LaunchRefused(f"template {tpl.name}: cannot run as {tpl.user}: tasks run in clustertop-task@ "
                                    "units as the agent's own user")
            return self._launch_unit(sock, task_id, tdir, tpl, argv, env, dict(params), job, rank)
        prefix, why = self._scope()
        note = None
        unit = None
        if prefix is not None:
            unit = f"clustertop-task-{task_id}"
            cmd = scope_command(prefix, unit, tpl, argv)
        else:
            if tpl.memory_max or tpl.cpu_quota:
                note = f"memory_max/cpu_quota not enforced: {why}"
                log.warning("task %s (%s): %s", task_id, tpl.name, note)
            if tpl.user:
                kwargs.update(_as_user(tpl.user))
        out = BoundedLog(os.path.join(tdir, "output.log"), self.log_max_bytes)
        try:
            rd, wr = _output_fifo(tdir)
        except BaseException:
            out.close()
            raise
        try:
            proc = subprocess.Popen(cmd, shell=False, start_new_session=True, stdin=subprocess.DEVNULL,
                                    stdout=wr, stderr=wr, cwd=tpl.cwd or "/", env=env, close_fds=True, **kwargs)
        except BaseException:
            os.close(rd)
            out.close()
            raise
        finally:
            os.close(wr)  # the task holds its own copy; ours would keep the pump from ever seeing EOF
        started = time.time()
        task = schema.Task(id=task_id, template=tpl.name, pid=proc.pid, pgid=proc.pid, started_ts=started,
                           job=job, rank=rank, argv=argv, unit=unit, note=note, log_path=out.path)
        # Read now, while the pid cannot be reused (our unreaped child): what a later agent adopts it by.
        ticks = _start_ticks(self.roots, proc.pid)
        run = _Running(task=task, proc=proc, log=out, out_fd=rd, start_ticks=ticks, params=dict(params),
                       user=tpl.user, deadline_ts=started + tpl.timeout_s if tpl.timeout_s else None)
        self._start_watching(run, self._wait, tpl.timeout_s)
        log.info("task %s launched from template %s: pid %d argv %r%s", task_id, tpl.name, proc.pid, argv,
                 f" in {unit}" if unit else "")
        return task

    def _launch_unit(self, sock: str, task_id: str, tdir: str, tpl: Template, argv: list[str], env: dict[str, str],
                     params: dict[str, Any], job: str | None, rank: int | None) -> schema.Task:
        """The task in a clustertop-task@ unit of its own (agents/taskexec.py), watched as an adopted one."""
        note = None
        if tpl.memory_max or tpl.cpu_quota:
            note = "memory_max/cpu_quota not enforced (clustertop-task@ units carry the limits)"
            log.warning("task %s (%s): memory_max/cpu_quota not enforced in a clustertop-task@ unit", task_id, tpl.name)
        out = BoundedLog(os.path.join(tdir, "output.log"), self.log_max_bytes)
        try:
            rd, wr = _output_fifo(tdir)
        except BaseException:
            out.close()
            raise
        try:
            dir_fd = os.open(tdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                reply = taskexec.request(sock, argv, env, tpl.cwd or "/", wr, dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            os.close(rd)
            out.close()
            raise
        finally:
            os.close(wr)  # the task got its own copy over the socket
        started = time.time()
        pid = reply["pid"]
        ticks = reply.get("ticks") if isinstance(reply.get("ticks"), int) else None
        unit = reply.get("unit") if isinstance(reply.get("unit"), str) else None
        task = schema.Task(id=task_id, template=tpl.name, pid=pid, pgid=pid, started_ts=started, job=job, rank=rank,
                           argv=argv, unit=unit, note=note, log_path=out.path)
        run = _Running(task=task, log=out, out_fd=rd, start_ticks=ticks, params=params, user=tpl.user,
                       deadline_ts=started + tpl.timeout_s if tpl.timeout_s else None, via_unit=True)
        try:  # pinned only if still the process the unit reported (else it already ended: _watch sees that)
            fd = os.pidfd_open(pid)
            if _alive(self.roots, pid, ticks):
                run.pidfd = fd
            else:
                os.close(fd)
        except (AttributeError, OSError):
            pass
        self._start_watching(run, self._watch, tpl.timeout_s)
        log.info("task %s launched from template %s: pid %d argv %r in %s", task_id, tpl.name, pid, argv, unit)
        return task

    def _start_watching(self, run: _Running, watcher: Any, timeout_s: float | None) -> None:
        """A new task registered and saved, then its output pump, its end watcher (``_wait`` for our own
        child, ``_watch`` for one in its own unit) and its timeout started."""
        task_id = run.task.id
        with self._lock:
            self._tasks[task_id] = run
            self._save(run)
        run.pump = threading.Thread(target=self._pump, args=(run,), name=f"task-out-{task_id}", daemon=True)
        run.pump.start()
        name = "wait" if watcher == self._wait else "watch"
        threading.Thread(target=watcher, args=(run,), name=f"task-{name}-{task_id}", daemon=True).start()
        if timeout_s:
            self._timer(run, timeout_s, self._on_timeout)

    def _timer(self, run: _Running, delay: float, fn: Any) -> None:
        t = threading.Timer(delay, fn, args=(run,))
        t.daemon = True
        run.timers.append(t)
        t.start()

    def _pump(self, run: _Running) -> None:
        """Task output into its bounded log, until every writer (the task, its children) is gone or close()."""
        fd = run.out_fd
        assert fd is not None
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while not self._closed:
                # Read after every wait, ready or not: a FIFO whose writers all opened it before we did (an
                # adopted task) never reports POLLHUP when they are gone, but a read then returns b"" (EOF).
                poller.poll(POLL_MS)
                try:
                    chunk = os.read(fd, 65536)  # non-blocking: BlockingIOError while writers live and it is empty
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                run.log.write(chunk)
        except (OSError, ValueError) as e:
            log.debug("task %s output: %s", run.task.id, e)
        finally:
            os.close(fd)

    def _wait(self, run: _Running) -> None:
        assert run.proc is not None
        # Wait without reaping first: while the zombie exists its pid (= the pgid) cannot be reused,
        # so a killpg under the lock never hits a stranger.
        try:
            os.waitid(os.P_PID, run.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        # Let the pump drain the pipe first so "exited" means the output is complete; bounded,
        # because a child that inherited stdout can keep the pipe open long after the leader.
        if run.pump is not None:
            run.pump.join(2.0)
        with self._lock:
            rc = run.proc.wait()
            if self._closed:
                return  # reaped (it is our child), but its record belongs to the TaskManager that adopted it
            self._ended(run, rc)
        log.info("task %s ended: %s (exit %s)", run.task.id, run.task.state, rc)

    def _watch(self, run: _Running) -> None:
        """A task that is not our child (adopted, or in its clustertop-task@ unit): notice its end by its pidfd,
        or by /proc where the kernel has no pidfds. Its exit code: the unit's exit.json, else unknown."""
        poller = None
        if run.pidfd is not None:
            poller = select.poll()
            poller.register(run.pidfd, select.POLLIN)
        while not self._closed:
            if poller is not None:
                if poller.poll(POLL_MS):
                    break
            elif not _alive(self.roots, run.task.pid, run.start_ticks):
                break
            else:
                time.sleep(POLL_MS / 1000)
        if self._closed:  # the next TaskManager pins the process again itself
            with self._lock:
                if run.pidfd is not None:
                    os.close(run.pidfd)
                    run.pidfd = None
            return
        if run.pump is not None:
            run.pump.join(2.0)
        rc = self._unit_exit(run, wait_s=3.0) if run.via_unit else None
        with self._lock:
            self._ended(run, rc)
        log.info("task %s (%s) ended: %s", run.task.id, "in its unit" if run.via_unit else "adopted", run.task.state)

    def _unit_exit(self, run: _Running, wait_s: float = 0.0) -> int | None:
        """The exit code the task's clustertop-task@ instance recorded; it writes it just after reaping the
        task, so a moment after the task's end is waited for."""
        tdir = os.path.join(self.dir, run.task.id)
        deadline = time.monotonic() + wait_s
        while True:
            rc = taskexec.read_exit(tdir, run.task.pid, run.start_ticks)
            if rc is not None or time.monotonic() >= deadline:
                return rc
            time.sleep(0.05)

    def _ended(self, run: _Running, rc: int | None) -> None:
        """Under the lock: the task is over; ``rc`` None when it was adopted (its exit status went to init)."""
        run.exited = True
        t = run.task
        t.ended_ts = time.time()
        t.exit_code = rc
        if rc is None:
            t.state = "killed" if run.stop_requested else "ended"
            t.note = t.note or "exit status unknown (adopted after an agent restart)"
        else:
            t.state = "killed" if rc < 0 or run.stop_requested else ("exited" if rc == 0 else "failed")
        for timer in run.timers:
            timer.cancel()
        if run.pidfd is not None:
            os.close(run.pidfd)
            run.pidfd = None
        self._save(run)

    def _leader_alive(self, run: _Running) -> bool:
        """Under the lock: is the task's leader (pid = pgid) still the task? Our own child stays ours until
        _wait reaps it under this lock; an adopted one is checked by its pidfd and its start ticks."""
        if run.proc is not None:
            return True
        if run.pidfd is not None:
            p = select.poll()
            p.register(run.pidfd, select.POLLIN)
            if p.poll(0):
                return False  # exited
        return _alive(self.roots, run.task.pid, run.start_ticks)

    def _signal_group(self, run: _Running, sig: int) -> bool:
        """Signal the task's process group; False if nothing was left to signal."""
        pgid = run.task.pgid
        assert pgid is not None
        with self._lock:
            if not run.exited and self._leader_alive(run):
                try:
                    os.killpg(pgid, sig)
                    return True
                except ProcessLookupError:
                    return False
        # The leader is gone. Its children keep the group id in use, so it cannot have been
        # recycled while one of them lives; check one really is there before signalling.
        if not _group_has_members(self.roots, pgid):
            return False
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False

    def _on_timeout(self, run: _Running) -> None:
        log.warning("task %s exceeded timeout_s: stopping it", run.task.id)
        run.task.note = "stopped: timeout_s exceeded"
        self._stop(run)

    def _stop(self, run: _Running) -> bool:
        with self._lock:
            run.stop_requested = True
            if not run.exited:
                self._save(run)  # a stop asked for is carried out by the next agent too, if this one dies now
        sent = self._signal_group(run, signal.SIGTERM)
        # Programs that ignore TERM get KILL after a grace period (children too, via the group).
        t = threading.Timer(self.stop_grace_s, self._signal_group, args=(run, signal.SIGKILL))
        t.daemon = True
        t.start()
        return sent

    def stop(self, task_id: str) -> schema.Task:
        run = self._get(task_id)
        if not self._stop(run):
            raise ValueError(f"task {task_id} has no process left")
        log.info("task %s: stop requested (TERM to group %s, KILL after %.0f s)", task_id, run.task.pgid,
                 self.stop_grace_s)
        return run.task

    def tail(self, task_id: str, lines: int = 50) -> tuple[schema.Task, str]:
        run = self._get(task_id)
        return run.task, run.log.tail(lines)

    def _get(self, task_id: str) -> _Running:
        with self._lock:
            run = self._tasks.get(task_id)
        if run is None:
            raise KeyError(f"no task {task_id!r} on this node")
        return run

    def tasks(self) -> list[schema.Task]:
        """Every running task and the newest finished ones (copies: safe to encode elsewhere)."""
        with self._lock:
            runs = list(self._tasks.values())
            finished = [r for r in runs if r.exited]
            for old in finished[:-KEEP_FINISHED]:
                old.log.close()
                del self._tasks[old.task.id]
            out = []
            for r in self._tasks.values():
                t = schema.Task(**{f: getattr(r.task, f) for f in r.task.__struct_fields__})
                t.log_bytes = r.log.total_bytes()
                out.append(t)
        return out

    def close(self) -> None:
        """Let go of the tasks (they keep running: an agent restart must not kill users' work). Their
        records stay for the next TaskManager, which adopts them; output waits in their FIFOs meanwhile."""
        with self._lock:
            self._closed = True
            runs = list(self._tasks.values())
            for r in runs:
                for timer in r.timers:
                    timer.cancel()
        for r in runs:  # the pumps see _closed within POLL_MS and close their read ends
            if r.pump is not None and r.pump is not threading.current_thread():
                r.pump.join(2 * POLL_MS / 1000)

    # -- records and adoption ------------------------------------------------------------------

    def _save(self, run: _Running) -> None:
        """Under the lock: write the task's record (atomically: a crash leaves the old one or the new one)."""
        if self._closed:
            return
        t = run.task
        rec = TaskRecord(id=t.id, template=t.template, pid=t.pid or 0, pgid=t.pgid or 0, start_ticks=run.start_ticks,
                         params=run.params, user=run.user, argv=t.argv or [], started_ts=t.started_ts or 0.0,
                         deadline_ts=run.deadline_ts, job=t.job, rank=t.rank, unit=t.unit, note=t.note, state=t.state,
                         ended_ts=t.ended_ts, exit_code=t.exit_code, stop_requested=run.stop_requested,
                         via_unit=run.via_unit)
        path = os.path.join(self.dir, t.id, RECORD)
        try:
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.encode(rec))
                f.flush()
                os.fsync(f.fileno())
            os.replace(path + ".tmp", path)
        except OSError as e:  # the task runs on; only a later agent's view of it is lost
            log.warning("task %s: cannot write its record %s: %s", t.id, path, e)

    def _adopt(self) -> None:
        """Tasks an earlier agent launched on this state dir: the live ones adopted, the others listed as ended."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("tasks of an earlier agent not read (%s): %s", self.dir, e)
            return
        finished: list[_Running] = []
        for name in names:
            rec = _load_record(os.path.join(self.dir, name, RECORD), name)
            if rec is None:
                continue
            task = schema.Task(id=rec.id, template=rec.template, pid=rec.pid, pgid=rec.pgid, started_ts=rec.started_ts,
                               ended_ts=rec.ended_ts, exit_code=rec.exit_code, state=rec.state, job=rec.job,
                               rank=rec.rank, argv=rec.argv, unit=rec.unit, note=rec.note,
                               log_path=os.path.join(self.dir, rec.id, "output.log"))
            try:
                out = BoundedLog(task.log_path or "", self.log_max_bytes)
            except OSError as e:
                log.warning("task %s of an earlier agent: its log cannot be opened: %s", rec.id, e)
                continue
            run = _Running(task=task, log=out, start_ticks=rec.start_ticks, deadline_ts=rec.deadline_ts,
                           params=dict(rec.params), user=rec.user, stop_requested=rec.stop_requested,
                           via_unit=rec.via_unit)
            if rec.state != "running":
                run.exited = True
                finished.append(run)
                continue
            run.pidfd = _pin(self.roots, rec)
            rc = self._unit_exit(run) if run.via_unit and run.pidfd is None else None
            if rc is not None:  # ended while no agent watched, and its unit recorded how
                self._tasks[rec.id] = run
                self._ended(run, rc)
                log.info("task %s (template %s): ended since the last agent with %s", rec.id, rec.template, rc)
                continue
            if run.pidfd is None and not _alive(self.roots, rec.pid, rec.start_ticks):
                # Gone while no agent watched it (or its pid now names another process): its exit status
                # went to init. Never signalled again.
                run.exited = True
                task.state, task.ended_ts = "lost", time.time()
                task.note = "lost: ended while the agent was down (exit status unknown)"
                self._tasks[rec.id] = run
                self._save(run)
                log.info("task %s (template %s): gone since the last agent, listed as lost", rec.id, rec.template)
                continue
            self._tasks[rec.id] = run
            self._resume(run)
        # The newest finished ones, as tasks() keeps them.
        finished.sort(key=lambda r: r.task.ended_ts or r.task.started_ts or 0.0)
        for r in finished[:-KEEP_FINISHED]:
            r.log.close()
        for r in finished[-KEEP_FINISHED:]:
            self._tasks[r.task.id] = r

    def _resume(self, run: _Running) -> None:
        """Watch an adopted task as if we had launched it: output, end, timeout, and a stop asked before."""
        t = run.task
        fifo = os.path.join(self.dir, t.id, OUTPUT_FIFO)
        try:
            run.out_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            log.warning("task %s: its output is not captured any more (%s): %s", t.id, fifo, e)
        if run.out_fd is not None:
            run.pump = threading.Thread(target=self._pump, args=(run,), name=f"task-out-{t.id}", daemon=True)
            run.pump.start()
        threading.Thread(target=self._watch, args=(run,), name=f"task-watch-{t.id}", daemon=True).start()
        if run.deadline_ts is not None:
            # The deadline is wall clock from the launch: a restart neither resets nor forgets it.
            self._timer(run, max(0.0, run.deadline_ts - time.time()), self._on_timeout)
        log.info("task %s (template %s, pid %s) adopted from an earlier agent", t.id, t.template, t.pid)
        if run.stop_requested:
            threading.Thread(target=self._stop, args=(run,), name=f"task-stop-{t.id}", daemon=True).start()


def run_as_uid(tpl: Template) -> int:
    """The uid ``tpl`` runs as: its user's, else the agent's own. LaunchRefused for an unknown user."""
    if not tpl.user:
        return os.geteuid()
    try:
        return pwd.getpwnam(tpl.user).pw_uid
    except KeyError:
        raise LaunchRefused(f"template {tpl.name}: no such user {tpl.user!r} on this node") from None


def _output_fifo(tdir: str) -> tuple[int, int]:
    """(read end for the pump, read-write end for the task) of a new FIFO in the task's directory.

    The task gets it read-write, so a reader of its own pipe always exists: when the agent stops, the
    task never gets SIGPIPE (or EPIPE); it only waits once the buffer is full, until a new agent opens
    the FIFO again (by its path) and drains it.
    """
    path = os.path.join(tdir, OUTPUT_FIFO)
    os.mkfifo(path, 0o600)
    rd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        wr = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except BaseException:
        os.close(rd)
        raise
    with contextlib.suppress(OSError, AttributeError):  # pipe-max-size may be lower; 64 KiB is the floor
        fcntl.fcntl(rd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return rd, wr


def _start_ticks(roots: Roots, pid: int) -> int | None:
    try:
        st = procfs.read_pid_stat(roots, pid)
    except (OSError, ValueError):
        return None
    return st.starttime if st is not None else None


def _alive(roots: Roots, pid: int | None, ticks: int | None) -> bool:
    """Is ``pid`` still the process that started at ``ticks`` (the exact identity), and not a zombie?"""
    if pid is None or ticks is None:
        return False
    try:
        st = procfs.read_pid_stat(roots, pid)
    except (OSError, ValueError):
        return False
    return st is not None and st.starttime == ticks and st.state not in ("Z", "X")


def _pin(roots: Roots, rec: TaskRecord) -> int | None:
    """A pidfd on the recorded task if it still runs (opened first, then checked: the pidfd cannot come
    to name another process later); None if it is gone, is another process now, or pidfds are unavailable."""
    try:
        fd = os.pidfd_open(rec.pid)
    except (AttributeError, OSError):
        return None
    if _alive(roots, rec.pid, rec.start_ticks):
        return fd
    os.close(fd)
    return None


def _load_record(path: str, name: str) -> TaskRecord | None:
    try:
        with open(path, "rb") as f:
            rec = msgspec.json.decode(f.read(), type=TaskRecord)
    except FileNotFoundError:
        return None  # a directory of a launch that failed, or from before records
    except (OSError, msgspec.DecodeError) as e:
        log.warning("task record %s unreadable, skipped: %s", path, e)
        return None
    # The id names the directory, and a task leads its own group: anything else is not our record.
    if rec.id != name or rec.pgid != rec.pid:
        log.warning("task record %s names another task (id %r, pid %s, pgid %s), skipped", path, rec.id, rec.pid,
                    rec.pgid)
        return None
    return rec


#: Largest world a launch may declare: far above any cluster this runs, small enough to refuse nonsense.
MAX_WORLD = 65536
#: RFC 1123 host name label; a master address is a host name of these, or an IP address.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class RankError(ValueError):
    """A multi-node launch's rank, world size or master address that this node refuses."""


def _rank_int(args: Mapping[str, Any], name: str, lo: int, hi: int) -> int:
    v = args.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise RankError(f"{name} must be an integer in {lo}..{hi}, got {v!r}"[:200])
    return v


def master_address(value: Any) -> str:
    """An IP address or a host name (RFC 1123): anything else is refused, never passed on."""
    import ipaddress

    if not isinstance(value, str) or not value or len(value) > 253:
        raise RankError(f"master_addr must be a host name or IP address, got {value!r}"[:200])
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not all(_LABEL.match(part) for part in value.rstrip(".").split(".")):
        raise RankError(f"master_addr must be a host name or IP address, got {value!r}"[:200])
    return value


def job_env(args: Mapping[str, Any]) -> dict[str, str]:
    """The environment a rank of a multi-node job is given, from a launch command's (signed) args.

    ``rank``, ``world_size``, ``local_rank``, ``master_addr``, ``master_port`` become the names
    torch.distributed's ``env://`` reads (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), Open
    MPI's (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK) and PMI's (PMI_RANK, PMI_SIZE). A launch without
    ``world_size`` (one node, or an operator tool from before) gets none of them. Each value is checked
    here, on the node: integers in range, rank < world size, the address a host name or IP.
    """
    if args.get("world_size") is None:
        return {}
    world = _rank_int(args, "world_size", 1, MAX_WORLD)
    rank = _rank_int(args, "rank", 0, world - 1)
    local = _rank_int(args, "local_rank", 0, rank)  # its place among the ranks before it on this node
    addr = master_address(args.get("master_addr"))
    port = _rank_int(args, "master_port", 1, 65535)
    env = {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": local, "MASTER_ADDR": addr, "MASTER_PORT": port,
           "OMPI_COMM_WORLD_RANK": rank, "OMPI_COMM_WORLD_SIZE": world, "OMPI_COMM_WORLD_LOCAL_RANK": local,
           "PMI_RANK": rank, "PMI_SIZE": world}
    return {k: str(v) for k, v in env.items()}


def _base_env(user: str | None) -> dict[str, str]:
    """A small, predictable environment: never the agent's own (it may hold Redis credentials)."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
    for k in ("LANG", "LC_ALL", "TZ"):
        if k in os.environ:
            env[k] = os.environ[k]
    try:
        pw = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    except KeyError:
        pass
    return env


def _as_user(user: str) -> dict[str, Any]:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"no such user {user!r}") from None
    if pw.pw_uid == os.geteuid():
        return {}
    if os.geteuid() != 0:
        raise ValueError(f"cannot run as {user}: the agent is not root")
    # Drop supplementary groups too (extra_groups=[]): root's groups must not leak into the task.
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _group_has_members(roots: Roots, pgid: int) -> bool:
    try:
        names = os.listdir(roots.proc)
    except OSError:
        return False
    for name in names:
        if not name.isdigit() or int(name) == pgid:
            continue
        try:
            stat = procfs.read_pid_stat(roots, int(name))
        except (OSError, ValueError):
            continue
        if stat is not None and stat.pgrp == pgid:
            return True
    return False
