"""Provides the sending side of job control: build, sign, send a command, and await its result.

Shared by ``clustertop kill|launch|tasks`` and, later, the dashboard's action keys, so both run
the same checks and the same wire format. Imports nothing from agents or dashboard; Redis is a
redis-py client passed in (embedded fakeredis works too).

Wire format of a command (see agents/commands.py for the agent side):
- ``XADD ct:v1:cmd:{node} MAXLEN ~ 1000 * c <msgpack schema.Command>``
- ``args``: verb arguments; ``signal``: pid (int), start_ticks (int: /proc/<pid>/stat field 22), uid
  (int, optional), signal ("TERM" | "KILL" | "INT" | "HUP"), group (bool), cmdline (optional prefix);
  ``launch``: template, job, rank, and ``params``; ``stop``/``tail``: task (id), lines.
- The agent answers with exactly one ``schema.CommandResult`` on ``ct:v1:results:{node}`` (field "r"),
  signed with the node's own key. Anyone who can write to Redis can write there too, so an answer counts
  only when the key the operator enrolled for that node signed it (``Answer.verdict``): a forged "done"
  is shown as "unverified answer from gpu01: ...", never as done.
- Each command sent is recorded in the operator's own audit stream ``audit:op:{name}`` (signed with the
  operator's key, hash-chained: ``trust.append_audit``), in the same MULTI as the command itself, so
  no command reaches a node without the operator's trail saying so. ``name`` is the key file's stem.
- A kill is built on the process as its node signed it (``process_identity``): pid, start ticks, uid and
  command-line prefix from a snapshot whose seal verifies against the enrolled key, never from what
  a screen or Redis merely shows.
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clustertop import store, wire
from clustertop.control import signing, trust
from clustertop.wire import schema
from clustertop.wire.text import inert

#: Commands live two minutes by default: long enough for a busy agent, short enough that a
#: leaked command cannot be replayed later (agents refuse anything above their max_lifetime_s).
DEFAULT_LIFETIME_S = 120.0


def default_operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def build(node: str, verb: str, args: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
          operator: str | None = None, lifetime_s: float = DEFAULT_LIFETIME_S, now: float | None = None,
          command_id: str | None = None) -> schema.Command:
    ts = time.time() if now is None else now
    return schema.Command(id=command_id or uuid.uuid4().hex, node=node, verb=verb, args=dict(args or {}),
                          params=dict(params or {}), issued_ts=ts, expires_ts=ts + lifetime_s,
                          operator=operator or default_operator())


def send(client: Any, cmd: schema.Command) -> str:
    """Put a (signed) command on its node's stream, nothing else; returns the stream entry id. Job control
    uses ``send_audited`` (the operator's trail in the same MULTI); this is for tools and tests."""
    entry = client.xadd(wire.cmd_key(cmd.node), {"c": wire.encode(cmd)}, maxlen=wire.CMD_MAXLEN,
                        approximate=True)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def operator_name(key: signing.PrivateKey) -> str:
    """The operator's name: the key file's stem (``alice.key`` -> ``alice``). It names the operator's audit
    stream and Redis user (``operator-alice``), so it must be usable inside an ACL key pattern."""
    if not key.path:
        raise ValueError("the operator key has no file name to take the operator's name from")
    name = Path(key.path).stem
    if not trust.HOST.fullmatch(name):
        raise ValueError(f"{key.path}: the operator's name is the key file's stem, and {name!r} is not usable "
                         "(letters, digits, '.', '-', '_'): rename the key file, e.g. alice.key")
    return name


def command_target(cmd: schema.Command) -> str:
    """What a command acts on, in the words of an audit entry."""
    a = cmd.args
    if cmd.verb == "signal":
        ident = f"start ticks {a.get('start_ticks')}" + (f", uid {a.get('uid')}" if a.get("uid") is not None else "")
        return f"{cmd.node} pid {a.get('pid')} ({ident}){' group' if a.get('group') else ''} {a.get('signal')}"
    if cmd.verb == "launch":
        world = (f" of {a.get('world_size')} (master {a.get('master_addr')}:{a.get('master_port')})"
                 if a.get("world_size") is not None else "")
        return f"{cmd.node} template {a.get('template')}" + (f" job {a.get('job')} rank {a.get('rank')}{world}"
                                                               if a.get("job") else "")
    if cmd.verb in ("stop", "tail"):
        return f"{cmd.node} task {a.get('task')}"
    if cmd.verb == "container.launch":
        return f"{cmd.node} container template {inert(a.get('template'), limit=60)}"
    if cmd.verb.startswith("container."):
        cid = a.get("id")
        short = inert(cid[:12]) if isinstance(cid, str) else "?"
        return (f"{cmd.node} container {short} {inert(a.get('name') or '', limit=60)} (created {a.get('created')})"
                f"{' ' + str(a.get('signal')) if a.get('signal') else ''}")
    return cmd.node


def send_audited(client: Any, cmd: schema.Command, key: signing.PrivateKey, name: str,
                 where: str = "cli") -> schema.AuditEntry:
    """Put a signed command on its node's stream and its entry in the operator's audit stream, in ONE
    MULTI (``trust.append_audit``'s): both land or neither does. Returns the entry as appended."""
    entry = schema.AuditEntry(ts=time.time(), actor=name, action=cmd.verb[:40], target=command_target(cmd)[:300],
                              result="sent", where=where, command_id=cmd.id)

    def command(p: Any) -> None:
        p.xadd(wire.cmd_key(cmd.node), {"c": wire.encode(cmd)}, maxlen=wire.CMD_MAXLEN, approximate=True)

    if store.sharded(client):
        # Redis Cluster: the operator's audit stream and the node's command stream are in different slots,
        # and a MULTI cannot span slots. The entry first, then the command: a command is never on a stream
        # without its entry; if the second write fails, the trail says "sent" for a command that was not
        # (the CLI reports the error).
        entry = trust.append_audit(client, wire.operator_audit_key(name), entry, key)
        command(client)
        return entry
    return trust.append_audit(client, wire.operator_audit_key(name), entry, key, also=command)


def results_cursors(client: Any, nodes: list[str]) -> dict[str, str]:
    """Per node's results stream, the id of its newest entry now (one round trip): anything after it is
    an answer to what is sent next."""
    streams = list(dict.fromkeys(wire.results_key(n) for n in nodes))
    p = client.pipeline(transaction=False)
    for s in streams:
        p.xrevrange(s, count=1)
    out = {}
    for s, last in zip(streams, p.execute(), strict=True):
        out[s] = _text(last[0][0]) if last else "0-0"
    return out


@dataclass(frozen=True)
class Answer:
    """A node's answer and whether the key enrolled for that node signed it."""

    result: schema.CommandResult
    verdict: trust.Verdict

    @property
    def ok(self) -> bool:
        """Done, and said so by the node itself: nothing else counts as success."""
        return self.result.ok and self.verdict.ok


def answer_verdict(cmd: schema.Command, res: schema.CommandResult, stream_node: str,
                   known: trust.KnownNodes) -> trust.Verdict:
    """Whether ``res`` (read on ``stream_node``'s results stream) is ``cmd``'s node's own answer to it.

    The signature covers id, node and verb, so a result the node signed for another command can't be
    passed off as this one's; a result naming another node (whose key would verify it) can't either."""
    if res.node != cmd.node or stream_node != cmd.node:
        return trust.Verdict(False, f"the answer names {inert(res.node, limit=64)!r} on {inert(stream_node, limit=64)}'s "
                                    f"stream, but the command went to {cmd.node}")
    if res.verb != cmd.verb:
        return trust.Verdict(False, f"the answer is for a {inert(res.verb, limit=20)!r}, the command was a {cmd.verb!r}")
    return trust.result_verdict(res, known)


def await_results(client: Any, cmds: list[schema.Command], cursors: dict[str, str], timeout_s: float,
                  known: trust.KnownNodes) -> dict[str, Answer]:
    """Answers to ``cmds`` read from each node's results stream after ``cursors`` (one XREAD over all of
    them), until every command has its node's signed answer or time ran out.

    An answer nobody enrolled signed is kept, but the wait goes on for the node's own: a forged "done"
    written first must not hide the real "refused" that follows. Only for a node that is not enrolled
    (whose answers can never be verified) does the first answer end the wait.
    """
    want = {c.id: c for c in cmds}
    node_of = {wire.results_key(c.node): c.node for c in cmds}
    streams = {s: cursors.get(s, "0-0") for s in node_of}
    got: dict[str, Answer] = {}
    final: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(final) < len(want):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        resp = client.xread(streams, count=100, block=max(1, int(min(left, 1.0) * 1000)))
        for stream, entries in resp or []:
            skey = _text(stream)
            for eid, fields in entries:
                streams[skey] = _text(eid)
                try:
                    res = wire.decode(fields.get(b"r", fields.get("r")), schema.CommandResult)
                except wire.WireError:
                    continue
                cmd = want.get(res.id)
                if cmd is None or res.id in final:
                    continue
                verdict = answer_verdict(cmd, res, node_of.get(skey, skey), known)
                prev = got.get(res.id)
                if prev is None or (verdict.ok and not prev.verdict.ok):
                    got[res.id] = Answer(res, verdict)
                if verdict.ok or known.get(cmd.node) is None:
                    final.add(res.id)
    return got


class NotAwaited(Exception):
    """The commands were sent (and audited), but their results could not be read: say "sent", never
    "failed", and never a traceback (the command may well have run)."""

    def __init__(self, cmds: list[schema.Command], cause: BaseException, doing: str = "read results") -> None:
        self.cmds = cmds
        self.cause = cause
        ids = ", ".join(c.id for c in cmds)
        why = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        hint = ""
        if is_noperm(cause):
            why = why if why.upper().startswith("NOPERM") else f"NOPERM {why}"  # redis-py drops the code
            if doing == "read results":
                hint = " — the operator's ACL needs +xread (clustertop acl grants it)"
        super().__init__(f"sent (command id {ids}); cannot {doing}: {inert(why, limit=300)}{hint}")


def is_noperm(e: BaseException) -> bool:
    """A Redis ACL refusal (redis-py's NoPermissionError strips the NOPERM code from the message)."""
    return type(e).__name__ == "NoPermissionError" or str(e).upper().startswith("NOPERM")


def submit(client: Any, key: signing.PrivateKey, cmds: list[schema.Command], timeout_s: float = 15.0,
           known: trust.KnownNodes | None = None, name: str | None = None,
           where: str = "cli") -> dict[str, Answer | None]:
    """Sign every command, send each with its entry in the operator's audit stream, then wait for the
    nodes' answers (None = no answer in time), each with its verdict against ``known`` (no anchors:
    every answer is unverified).

    Raises before anything is sent when the results streams can't be read (nothing happened), and
    ``NotAwaited`` when they could not be read after sending (something may have happened)."""
    known = known if known is not None else trust.KnownNodes()
    name = name or operator_name(key)
    cursors = results_cursors(client, [c.node for c in cmds])
    sent: list[schema.Command] = []
    try:
        for cmd in cmds:
            signing.sign(cmd, key)
            send_audited(client, cmd, key, name, where)
            sent.append(cmd)
    except Exception as e:
        if sent:  # some went out (a multi-node launch): the caller must hear that, not "failed"
            raise NotAwaited(sent, e, f"send the other {len(cmds) - len(sent)}") from e
        raise
    try:
        got = await_results(client, cmds, cursors, timeout_s, known)
    except Exception as e:  # NOPERM (an ACL without +xread), a dropped connection: after the fact
        raise NotAwaited(cmds, e) from e
    return {c.id: got.get(c.id) for c in cmds}


# ---------------------------------------------------------------------------------------------
# The process a kill is built on: as its node signed it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Process ``pid`` as ``node``'s snapshot names it (``proc``, None: not in it), and whether the node's
    enrolled key vouches for that snapshot (``verdict``). ``snap`` is the snapshot it came from."""

    node: str
    pid: int
    proc: schema.Proc | schema.GpuProc | None
    verdict: trust.Verdict
    snap: schema.NodeSnapshot | None = None

    @property
    def verified(self) -> bool:
        return self.verdict.ok and self.proc is not None

    def problem(self) -> str | None:
        """Why this process can't be named exactly (None: it can)."""
        if self.snap is None:
            return f"no snapshot of {self.node} to take pid {self.pid}'s identity from ({self.verdict.text})"
        if self.proc is None:
            return (f"pid {self.pid} is not in {self.node}'s latest snapshot (it lists the top processes; "
                    "the process may also have ended)")
        if self.proc.start_ticks is None:
            return (f"pid {self.pid} has no start ticks in {self.node}'s snapshot (an older agent): it can't be "
                    "told apart from a process that reuses its pid")
        return None

    def words(self) -> str:
        """"gpu01 pid 4242 sleep 60, user alice (uid 1001), started 2025-06-15 10:00:00": node text, escaped."""
        p = self.proc
        if p is None:
            return f"{self.node} pid {self.pid}"
        what = inert(p.cmdline or p.name or "?", limit=120)
        user = inert(p.user, limit=32) if p.user else "?"
        uid = f" (uid {p.uid})" if p.uid is not None else ""
        started = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.start_ts)) if p.start_ts is not None
                   else "at an unknown time")
        ticks = f" (tick {p.start_ticks})" if p.start_ticks is not None else ""
        return f"{self.node} pid {self.pid} {what}, user {user}{uid}, started {started}{ticks}"

    def signal_args(self, sig: str = "TERM", group: bool = False, cmdline: str | None = None,
                    check_cmdline: bool = True) -> dict[str, Any]:
        """The signal's args from this identity (``problem()`` must be None): exact start ticks and uid,
        and the command line's prefix (``cmdline``, else the first word of the signed one)."""
        p = self.proc
        assert p is not None and p.start_ticks is not None, self.problem()
        prefix = cmdline if cmdline is not None else (cmdline_prefix(p.cmdline) if check_cmdline else None)
        return signal_args(self.pid, p.start_ticks, sig, group, prefix, uid=p.uid)


def cmdline_prefix(cmdline: str | None) -> str | None:
    """The part of a snapshot's command line the agent can compare with the live one: up to the first
    space. The collector turns control characters in arguments into spaces (a ``python -c`` script's
    newlines), so only what comes before the first space is surely the process's own text."""
    if not cmdline:
        return None
    head = cmdline.split(" ", 1)[0]
    return head or None


def _find(snap: schema.NodeSnapshot, pid: int) -> schema.Proc | schema.GpuProc | None:
    """``pid`` in a snapshot: its host entry (user, uid, full command line) first, else a GPU's."""
    for p in (snap.system.procs if snap.system else None) or ():
        if p.pid == pid:
            return p
    for g in snap.gpus or ():
        for gp in g.procs or ():
            if gp.pid == pid:
                return gp
    return None


def process_identity(client: Any, node: str, pid: int, known: trust.KnownNodes) -> Identity:
    """``pid`` as ``node``'s latest snapshot names it, read with its seal in one MULTI and checked against
    the key enrolled for ``node``. A payload that does not match its seal is read once more (a publisher
    that does not write both in one MULTI); a second mismatch stands."""
    snap, verdict = trust.verified_snapshot(client, node, known)
    if not verdict.ok and "does not match its seal" in verdict.text:
        snap, verdict = trust.verified_snapshot(client, node, known)
    return Identity(node, pid, _find(snap, pid) if snap is not None else None, verdict, snap)


def signal_args(pid: int, start_ticks: int, sig: str = "TERM", group: bool = False,
                cmdline: str | None = None, uid: int | None = None) -> dict[str, Any]:
    """The args of a "signal": the process exactly as the snapshot named it (Proc.start_ticks and
    Proc.uid), which the agent compares with == (a float start time with a tolerance hit reused pids).
    Passed through as given: the agent, not the sender, is the judge of what is valid."""
    args: dict[str, Any] = {"pid": pid, "start_ticks": start_ticks, "signal": sig.upper(), "group": group}
    if uid is not None:
        args["uid"] = uid
    if cmdline:
        args["cmdline"] = cmdline
    return args


#: torch.distributed's default rendezvous port (``torchrun --master_port``).
DEFAULT_MASTER_PORT = 29500


#: The container verbs an agent executes (agents/container_commands.py); "stop" also takes "grace" seconds.
CONTAINER_ACTIONS = ("stop", "kill", "restart")


def container_args(c: schema.Container, signal: str | None = None, grace: int | None = None) -> dict[str, Any]:
    """The args of a container stop / kill / restart: the container exactly as its node's snapshot named it,
    by full id and creation time (the agent compares both with ==; a name can be taken by a new container
    the moment the old one is removed). The name rides along for the audit's words only."""
    args: dict[str, Any] = {"id": c.id, "created": c.created_ts, "name": (c.name or "")[:100]}
    if signal is not None:
        args["signal"] = signal.upper()
    if grace is not None:
        args["grace"] = grace
    return args


def find_container(snap: schema.NodeSnapshot | None, ref: str) -> list[schema.Container]:
    """The containers of ``snap`` that ``ref`` names: a full id, an id prefix (>= 4 hex digits) or a name."""
    listed = (snap.containers.containers if snap is not None and snap.containers is not None else None) or []
    exact = [c for c in listed if c.id == ref or c.name == ref]
    if exact or len(ref) < 4:
        return exact
    return [c for c in listed if c.id.startswith(ref)]


def launch_commands(template: str, nodes: list[str], params: dict[str, Any], operator: str | None = None,
                    lifetime_s: float = DEFAULT_LIFETIME_S, master_addr: str | None = None,
                    master_port: int = DEFAULT_MASTER_PORT) -> list[schema.Command]:
    """One launch per node; several nodes make one job (same job id, ranks in node order).

    A job's commands also carry, signed, what each rank's process is given in its environment (the agent
    checks and sets them, ``agents.tasks.job_env``): ``world_size``, ``local_rank`` (the rank's place among
    the ranks on the same node), ``master_addr`` (default: the first node's name, which rank 0 runs on)
    and ``master_port``."""
    job = uuid.uuid4().hex[:12] if len(nodes) > 1 else None
    cmds = []
    for i, n in enumerate(nodes):
        args: dict[str, Any] = {"template": template, "job": job, "rank": i if job else None}
        if job:
            args.update(world_size=len(nodes), local_rank=nodes[:i].count(n),
                        master_addr=master_addr or nodes[0], master_port=master_port)
        cmds.append(build(n, "launch", args, params, operator=operator, lifetime_s=lifetime_s))
    return cmds


def result_line(res: schema.CommandResult) -> str:
    """An agent's answer in one line: the same words in the CLI and the dashboard. Every field is node
    text (``inert``: escaped, bounded), whoever wrote it; whether it is the node's own answer is
    ``answer_line``'s business."""
    return f"{inert(res.node, limit=64)}: {_result_body(res)}"


def _result_body(res: schema.CommandResult) -> str:
    def f(v: Any, limit: int = 80) -> str:
        return inert(v, limit=limit)

    if not res.ok:
        return f"{f(res.status, 20)}: {f(res.reason, 400)}"
    d = res.data or {}
    if res.verb == "signal":
        what = f"process group {f(d.get('pgid'))}" if d.get("group") else f"pid {f(d.get('pid'))}"
        return f"sent {f(d.get('signal'), 10)} to {what} (user {f(d.get('user'), 32)})"
    if res.verb == "launch":
        t = res.tasks[0] if res.tasks else None
        job = f" job {f(t.job)} rank {f(t.rank)}" if t and t.job else ""
        return f"launched {f(d.get('template'))} as task {f(d.get('task'))} (pid {f(d.get('pid'))}){job}"
    if res.verb == "stop":
        return f"stopping task {f(d.get('task'))} (process group {f(d.get('pgid'))})"
    if res.verb == "list":
        return f"{f(d.get('count'))} task(s)"
    if res.verb == "container.launch":
        return (f"launched container {f(d.get('name'))} ({f(str(d.get('id') or '')[:12])}) from template "
                f"{f(d.get('template'))}, image {f(d.get('image'), 120)}")
    if res.verb in ("container.stop", "container.kill", "container.restart"):
        verb = {"container.stop": "stopped", "container.kill": "killed", "container.restart": "restarted"}[res.verb]
        how = f" with SIG{f(d.get('signal'), 10)}" if d.get("signal") else ""
        return f"{verb} container {f(d.get('name'), 60)} ({f(str(d.get('id') or '')[:12])}){how}"
    return f"{f(res.verb, 20)} done"


def answer_line(ans: Answer, node: str) -> str:
    """An answer as the operator reads it: the node's own words, or "unverified answer from gpu01: …"
    (with why) for one its enrolled key did not sign, so a forged "done" never reads as done."""
    if ans.verdict.ok:
        return result_line(ans.result)
    return f"unverified answer from {inert(node, limit=64)}: {_result_body(ans.result)} [{inert(ans.verdict.text, limit=300)}]"


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
