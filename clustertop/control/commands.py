"""Provides the sending side of job control: build, sign, send a command, and await its result.

Shared by ``clustertop kill|launch|tasks`` and, later, the dashboard's action keys, so both run
the same checks and the same wire format. Imports nothing from agents or dashboard; Redis is a
redis-py client passed in (embedded fakeredis works too).

Wire format of a command (see agents/commands.py for the agent side):
- ``XADD ct:v1:cmd:{node} MAXLEN ~ 1000 * c <msgpack schema.Command>``
- ``args``: verb arguments; ``signal``: pid (int), start_ts (decimal text: the v1 args map has no
  float), signal ("TERM" | "KILL" | "INT" | "HUP"), group (bool), cmdline (optional prefix);
  ``launch``: template, job, rank, and ``params``; ``stop``/``tail``: task (id), lines.
- The agent answers with exactly one ``schema.CommandResult`` on ``ct:v1:results`` (field "r").
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from typing import Any

from clustertop import wire
from clustertop.control import signing
from clustertop.wire import schema

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
    """Put a (signed) command on its node's stream; returns the stream entry id."""
    entry = client.xadd(wire.cmd_key(cmd.node), {"c": wire.encode(cmd)}, maxlen=wire.CMD_MAXLEN,
                        approximate=True)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def results_cursor(client: Any) -> str:
    """The id of the newest result now: anything after it is an answer to what we send next."""
    last = client.xrevrange(wire.RESULTS_KEY, count=1)
    if not last:
        return "0-0"
    eid = last[0][0]
    return eid.decode() if isinstance(eid, bytes) else str(eid)


def await_results(client: Any, ids: list[str], cursor: str, timeout_s: float) -> dict[str, schema.CommandResult]:
    """Results for ``ids`` (the first per id), read from ``cursor`` on, until all came or time ran out."""
    want = set(ids)
    got: dict[str, schema.CommandResult] = {}
    deadline = time.monotonic() + timeout_s
    while want - set(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        resp = client.xread({wire.RESULTS_KEY: cursor}, count=100, block=max(1, int(min(left, 1.0) * 1000)))
        for _stream, entries in resp or []:
            for eid, fields in entries:
                cursor = eid.decode() if isinstance(eid, bytes) else str(eid)
                try:
                    res = wire.decode(fields.get(b"r", fields.get("r")), schema.CommandResult)
                except wire.WireError:
                    continue
                if res.id in want and res.id not in got:
                    got[res.id] = res
    return got


def submit(client: Any, key: signing.PrivateKey, cmds: list[schema.Command],
           timeout_s: float = 15.0) -> dict[str, schema.CommandResult | None]:
    """Sign and send every command, then wait for their results (None = no answer in time)."""
    cursor = results_cursor(client)
    for cmd in cmds:
        signing.sign(cmd, key)
        send(client, cmd)
    got = await_results(client, [c.id for c in cmds], cursor, timeout_s)
    return {c.id: got.get(c.id) for c in cmds}


def find_process(client: Any, node: str, pid: int) -> schema.Proc | schema.GpuProc | None:
    """The process ``pid`` as the node's latest snapshot shows it (the operator's view), or None."""
    data = client.get(wire.node_key(node))
    if data is None:
        return None
    snap = wire.decode(data, schema.NodeSnapshot)
    procs: list[Any] = list((snap.system.procs if snap.system else None) or [])
    for gpu in snap.gpus or []:
        procs += gpu.procs or []
    for p in procs:
        if p.pid == pid and p.start_ts is not None:
            return p  # type: ignore[no-any-return]
    return None


def signal_args(pid: int, start_ts: float, sig: str = "TERM", group: bool = False,
                cmdline: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"pid": pid, "start_ts": repr(float(start_ts)), "signal": sig.upper(), "group": group}
    if cmdline:
        args["cmdline"] = cmdline
    return args


def launch_commands(template: str, nodes: list[str], params: dict[str, Any], operator: str | None = None,
                    lifetime_s: float = DEFAULT_LIFETIME_S) -> list[schema.Command]:
    """One launch per node; several nodes make one job (same job id, ranks in node order)."""
    job = uuid.uuid4().hex[:12] if len(nodes) > 1 else None
    return [build(n, "launch", {"template": template, "job": job, "rank": i if job else None}, params,
                  operator=operator, lifetime_s=lifetime_s) for i, n in enumerate(nodes)]


def result_line(res: schema.CommandResult) -> str:
    """An agent's answer in one line: the same words in the CLI and the dashboard."""
    if not res.ok:
        return f"{res.node}: {res.status}: {res.reason}"
    d = res.data or {}
    if res.verb == "signal":
        what = f"process group {d.get('pgid')}" if d.get("group") else f"pid {d.get('pid')}"
        return f"{res.node}: sent {d.get('signal')} to {what} (user {d.get('user')})"
    if res.verb == "launch":
        t = res.tasks[0] if res.tasks else None
        job = f" job {t.job} rank {t.rank}" if t and t.job else ""
        return f"{res.node}: launched {d.get('template')} as task {d.get('task')} (pid {d.get('pid')}){job}"
    if res.verb == "stop":
        return f"{res.node}: stopping task {d.get('task')} (process group {d.get('pgid')})"
    if res.verb == "list":
        return f"{res.node}: {d.get('count')} task(s)"
    return f"{res.node}: {res.verb} done"
