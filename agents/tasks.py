"""Provides launched-task management: templates from the agent's config, and the tasks run from them.

A template is the only thing an operator can run on a node: ``argv`` with ``{param}`` placeholders,
typed params, user, cwd, env and limits, all fixed in the agent's own config. A param value only
ever lands inside ONE argv element (never split, never seen by a shell), and it is validated
against its declared type first.

Each task runs in its own session and process group (``start_new_session``), so stopping it
reaches its children too. Where systemd is PID 1 and usable, it runs under ``systemd-run --scope``
so ``memory_max``/``cpu_quota`` are enforced by cgroups; elsewhere it runs plainly and the reason
is logged and shown on the task. Output (stdout+stderr) goes through a pipe into a bounded,
rotated log under the state dir: a chatty task can never fill the node's disk.
"""

from __future__ import annotations

import logging
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

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


class ParamError(ValueError):
    """A launch request whose params do not fit the template; the message says which and why."""


@dataclass
class Param:
    name: str
    type: str = "str"
    default: Any = _MISSING
    choices: list[Any] | None = None
    pattern: re.Pattern[str] | None = None
    # A str value starting with "-" would be read as an option by most programs (argv injection
    # without any shell): refused unless the template says this param may look like one.
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
            if value.startswith("-") and not self.allow_dash:
                raise ParamError(f"param {self.name}: must not start with '-' (would read as an option)")
            out = value
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

    def __post_init__(self) -> None:
        if not self.argv:
            raise Invalid("argv", "required: a non-empty list of strings")
        for arg in self.argv:
            for m in _PLACEHOLDER.finditer(arg):
                if m.group(1) not in self.params:
                    raise Invalid("argv", f"placeholder {{{m.group(1)}}} has no param")


def parse_templates(raw: Mapping[str, Any] | None, file: str | None) -> dict[str, Template]:
    """``[templates.<name>]`` tables (or their TemplateConfigs) into Templates; every mistake names file and key."""
    out: dict[str, Template] = {}
    for name, table in (raw or {}).items():
        section = f"templates.{name}"
        c = table if isinstance(table, TemplateConfig) else convert(table, TemplateConfig, file, section)
        lim = c.limits
        t = Template(name=name, argv=list(c.argv), user=c.user, cwd=c.cwd, env=dict(c.env),
                     memory_max=None if lim.memory_max is None else str(lim.memory_max), cpu_quota=lim.cpu_quota,
                     timeout_s=lim.timeout_s, description=c.description)
        for pname, spec in c.params.items():
            t.params[pname] = _param(pname, spec, file, f"{section}.params")
        out[name] = t
    return out


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


@dataclass
class _Running:
    task: schema.Task
    proc: subprocess.Popen[bytes]
    log: BoundedLog
    exited: bool = False
    stop_requested: bool = False
    pump: threading.Thread | None = None
    timers: list[threading.Timer] = field(default_factory=list)


class TaskManager:
    """Launches, stops, lists and tails tasks. Thread-safe: the executor and the snapshot both call it."""

    def __init__(self, state_dir: str, roots: Roots | None = None, log_max_bytes: int = LOG_MAX_BYTES,
                 use_systemd: bool | None = None, stop_grace_s: float = 5.0) -> None:
        self.dir = os.path.join(state_dir, "tasks")  # created at the first launch, not before
        self.roots = roots or Roots()
        self.log_max_bytes = log_max_bytes
        self.stop_grace_s = stop_grace_s
        self._use_systemd = use_systemd
        self._systemd: tuple[list[str] | None, str] | None = None
        self._lock = threading.Lock()
        self._tasks: dict[str, _Running] = {}

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
               rank: int | None = None) -> schema.Task:
        """Start one task; ParamError for bad params, OSError/ValueError if it cannot start."""
        argv = tpl.render(params)
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
        cmd = list(argv)
        kwargs: dict[str, Any] = {}
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
            proc = subprocess.Popen(cmd, shell=False, start_new_session=True, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tpl.cwd or "/", env=env,
                                    close_fds=True, **kwargs)
        except BaseException:
            out.close()
            raise
        task = schema.Task(id=task_id, template=tpl.name, pid=proc.pid, pgid=proc.pid, started_ts=time.time(),
                           job=job, rank=rank, argv=argv, unit=unit, note=note, log_path=out.path)
        run = _Running(task=task, proc=proc, log=out)
        with self._lock:
            self._tasks[task_id] = run
        run.pump = threading.Thread(target=self._pump, args=(run,), name=f"task-out-{task_id}", daemon=True)
        run.pump.start()
        threading.Thread(target=self._wait, args=(run,), name=f"task-wait-{task_id}", daemon=True).start()
        if tpl.timeout_s:
            self._timer(run, tpl.timeout_s, self._on_timeout)
        log.info("task %s launched from template %s: pid %d argv %r%s", task_id, tpl.name, proc.pid, argv,
                 f" in {unit}" if unit else "")
        return task

    def _timer(self, run: _Running, delay: float, fn: Any) -> None:
        t = threading.Timer(delay, fn, args=(run,))
        t.daemon = True
        run.timers.append(t)
        t.start()

    def _pump(self, run: _Running) -> None:
        assert run.proc.stdout is not None
        fd = run.proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                run.log.write(chunk)
        except (OSError, ValueError) as e:
            log.debug("task %s output: %s", run.task.id, e)
        finally:
            run.proc.stdout.close()

    def _wait(self, run: _Running) -> None:
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
            run.exited = True
            t = run.task
            t.ended_ts = time.time()
            t.exit_code = rc
            t.state = "killed" if rc < 0 or run.stop_requested else ("exited" if rc == 0 else "failed")
            for timer in run.timers:
                timer.cancel()
        log.info("task %s ended: %s (exit %s)", t.id, t.state, rc)

    def _signal_group(self, run: _Running, sig: int) -> bool:
        """Signal the task's process group; False if nothing was left to signal."""
        pgid = run.task.pgid
        assert pgid is not None
        with self._lock:
            if not run.exited:
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
        run.stop_requested = True
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
        """Forget the tasks (they keep running: an agent restart must not kill users' work)."""
        with self._lock:
            for r in self._tasks.values():
                for timer in r.timers:
                    timer.cancel()


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
