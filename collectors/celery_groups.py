"""Group and chord progress ("N of M done, K failed") from a Redis result backend, for the ``celery`` collector.

What Celery 5.7 really keeps, read from its source (celery/backends/base.py, backends/redis.py) and checked
on a real worker (tests/collectors/test_celery_groups.py):
- ``celery-task-meta-<id>``: each task's result once it ended, JSON ``{"status": ..., "result": ...,
  "group_id": ...}``; ``status`` is the first key, so its first ``STATUS_BYTES`` bytes say the state
  without reading a result of any size (``GETRANGE``).
- ``celery-taskset-meta-<gid>``: a group saved by ``GroupResult.save()``: ``{"result": [[gid, parent],
  [[[member id, parent], null], ...]]}``: the members, so M.
- a chord's header on a Redis backend: ``<taskset key>.s`` the header size (set when the chord is sent),
  ``.t`` a size change (``add_to_chord``), ``.d`` the set of ``<member id>:<index>`` that returned (so N),
  ``.j`` their results, ``.c`` the claim of the worker sending the callback. When the callback is sent,
  ``.j .t .s .d`` are deleted and ``.c`` becomes ``done`` (for 300 s); when a header task failed, the
  callback fails with a ChordError, ``.s`` is deleted and ``.d``/``.j`` stay.
Not kept anywhere: the size of a group neither saved nor a chord's header (task events carry no group id
and the messages' ``group`` header has no size), so such groups are not shown (the note says why).

Bounded: group ids come from a resumable ``SCAN`` (``SCAN_CALLS`` calls per discovery round, the cursor
carries on), at most ``GROUPS_MAX`` groups and ``MEMBERS_TOTAL_MAX`` member ids are tracked, at most
``READS_MAX`` member states are read per poll (each ended member is read once), and ``PUBLISHED_MAX``
groups are published. Past a bound the counts are None and the note says which bound.

Serializers (Celery's ``result_serializer``): a result is read in JSON or msgpack (``msgspec.msgpack``: data
only, no extension types), told apart by its first bytes (``serializer_of``). A pickled result is never
unpickled (that would run code from the network): its group's counts are None with the note "result
serializer pickle: not read (unsafe)". yaml and anything else are named the same way, not guessed.

Key prefix: Celery's ``result_backend_transport_options={"global_keyprefix": P}`` puts P before every key
above (``keyprefix``, already normalised as Celery does it: ``celery.backend_keyprefix``).

``group_key``, ``status_of``, ``serializer_of``, ``taskset_members``, ``chord_member`` are pure;
``ResultBackend`` does the I/O.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from clustertop.collectors.queues_parse import glob_escape
from clustertop.wire import schema

TASK_PREFIX = b"celery-task-meta-"
TASKSET_PREFIX = b"celery-taskset-meta-"
CHORD_SUFFIXES = (b".j", b".t", b".s", b".d", b".c")
SCAN_COUNT = 1000
#: SCAN calls per discovery round (~SCAN_COUNT keys each); a larger keyspace is walked over several rounds.
SCAN_CALLS = 50
GROUPS_MAX = 100
MEMBERS_MAX = 10_000  # per group
MEMBERS_TOTAL_MAX = 100_000  # member ids held over all tracked groups
READS_MAX = 10_000  # member state reads per poll
PUBLISHED_MAX = 20
STATUS_BYTES = 64
TASKSET_VALUE_MAX = 4 * 1024 * 1024
ID_MAX = 200
ENDED = {"SUCCESS", "FAILURE", "REVOKED"}
_STATUS = re.compile(rb'^\s*\{\s*"status"\s*:\s*"([A-Z_]{1,20})"')
_INT = re.compile(rb"^\s*-?[0-9]{1,12}\s*$")


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def group_key(key: bytes, prefix: bytes = TASKSET_PREFIX) -> tuple[str, bytes] | None:
    """(group id, chord suffix or b"") of a ``celery-taskset-meta-*`` key (``prefix``: with the backend's
    global_keyprefix before it); None for what is not one."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    suffix = b""
    if rest[-2:] in CHORD_SUFFIXES:
        rest, suffix = rest[:-2], rest[-2:]
    if not rest or len(rest) > ID_MAX:
        return None
    try:
        return rest.decode(), suffix
    except UnicodeDecodeError:
        return None  # not an id Celery made (uuid4 text): someone else's key


def serializer_of(head: bytes) -> str:
    """Which ``result_serializer`` wrote a result, from its first bytes: "json" (an object), "msgpack" (a
    map), "pickle" (protocol 2-5 opcode), else "yaml" (text) or "unknown"."""
    if not head:
        return "unknown"
    b0 = head[0]
    if b0 == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # PROTO n (an empty msgpack map is never a result)
        return "pickle"
    if 0x81 <= b0 <= 0x8F or b0 in (0xDE, 0xDF):
        return "msgpack"
    if head.lstrip()[:1] == b"{":
        return "json"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "yaml" if text.isprintable() or "\n" in text else "unknown"


def _msgpack_str(b: bytes, i: int) -> tuple[str | None, int]:
    """A msgpack str at ``b[i]`` (fixstr or str8, all a status or its key needs) -> (text, next index)."""
    if i >= len(b):
        return None, i
    if 0xA0 <= b[i] <= 0xBF:
        n, i = b[i] & 0x1F, i + 1
    elif b[i] == 0xD9 and i + 1 < len(b):
        n, i = b[i + 1], i + 2
    else:
        return None, i
    if i + n > len(b):
        return None, i
    try:
        return b[i:i + n].decode("utf-8"), i + n
    except UnicodeDecodeError:
        return None, i


def _msgpack_status(head: bytes) -> str | None:
    """``{"status": "SUCCESS", ...}`` in msgpack: the map header, then its first key and value."""
    i = {0xDE: 3, 0xDF: 5}.get(head[0], 1)
    key, i = _msgpack_str(head, i)
    if key != "status":
        return None
    value, _ = _msgpack_str(head, i)
    return value if value is not None and re.fullmatch(r"[A-Z_]{1,20}", value) else None


def status_of(prefix: bytes | None) -> str | None:
    """The state from the first bytes of a task's result (JSON or msgpack, ``status`` first, as Celery writes
    it); None: no result yet, or not readable (``serializer_of`` says why)."""
    if not prefix:
        return None
    if serializer_of(prefix) == "msgpack":
        return _msgpack_status(prefix)
    m = _STATUS.match(prefix)
    return m.group(1).decode() if m else None


def unreadable(serializer: str) -> str:
    """The note for results a serializer wrote that are not read."""
    if serializer == "pickle":
        return "result serializer pickle: not read (unsafe: unpickling runs code from the network)"
    return f"result serializer {serializer}: not read (json and msgpack are)"


def parse_int(raw: Any) -> int | None:
    if isinstance(raw, bytes | str) and _INT.match(raw if isinstance(raw, bytes) else raw.encode()):
        return int(raw)
    return None


def taskset_members(raw: bytes) -> list[str]:
    """Member ids of a saved group (``GroupResult.as_tuple()`` in JSON or msgpack); ValueError with the reason."""
    kind = serializer_of(raw[:16])
    try:
        if kind == "msgpack":
            doc = msgspec.msgpack.decode(raw)  # plain data: no extension types are registered
        elif kind == "json":
            doc = json.loads(raw)
        else:
            raise ValueError(unreadable(kind))
    except (ValueError, UnicodeDecodeError, msgspec.DecodeError, RecursionError) as e:  # deep nesting: garbage
        if isinstance(e, ValueError) and str(e).startswith("result serializer"):
            raise
        raise ValueError(f"not valid {kind}") from None
    res = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(res, list) or len(res) != 2 or not isinstance(res[1], list):
        raise ValueError("not a saved GroupResult")
    out = []
    for m in res[1]:
        # [[id, parent], None] for a task; a nested group is [[gid, parent], [members]]: counted as one
        head = m[0] if isinstance(m, list) and m else None
        tid = head[0] if isinstance(head, list) and head else None
        if not isinstance(tid, str) or not tid or len(tid) > ID_MAX:
            raise ValueError("a member without a task id")
        out.append(tid)
    return out


def chord_member(m: bytes) -> str | None:
    """``<task id>:<header index>`` of a chord's ``.d`` set -> the task id."""
    tid = m.rsplit(b":", 1)[0]
    if not tid or len(tid) > ID_MAX:
        return None
    try:
        return tid.decode()
    except UnicodeDecodeError:
        return None


def clip(s: str, limit: int = ID_MAX) -> str:
    return s if len(s) <= limit else s[:limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------


@dataclass
class Tracked:
    id: str
    first_ts: float
    kind: str | None = None
    members: list[str] | None = None  # saved group: from its taskset; chord: the returned ones (.d)
    states: dict[str, str] = field(default_factory=dict)  # member id -> ended state (read once)
    total: int | None = None
    done: int | None = None
    failed: int | None = None
    revoked: int | None = None
    ended: bool | None = None
    note: str | None = None
    seen: bool = True  # some key of it existed at the last poll
    unread: str | None = None  # why its saved taskset is not read (it does not change: never asked again)


class ResultBackend:
    """Groups and chords of one Redis result backend (one redis-py client)."""

    def __init__(self, url: str, shown: str, timeout_s: float, every_s: float,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 keyprefix: str = "") -> None:
        from clustertop.store import connect

        self.shown, self.every_s, self.clock, self.wall = shown, every_s, clock, wall
        # The backend's global_keyprefix (normalised as Celery does) before every key it writes.
        self.task_prefix = keyprefix.encode() + TASK_PREFIX
        self.taskset_prefix = keyprefix.encode() + TASKSET_PREFIX
        self.match = (glob_escape(keyprefix) + TASKSET_PREFIX.decode() + "*").encode()  # the prefix literally
        self.client = connect(url, timeout_s=timeout_s)
        self.groups: dict[str, Tracked] = {}
        self.cursor = 0
        self.scanning = False  # a discovery round is under way (the cursor is mid-keyspace)
        self._due = 0.0
        self.untracked = 0  # group ids found past GROUPS_MAX in the last round

    def discover(self) -> None:
        """A few SCAN calls; a round that does not finish carries on at the next poll."""
        if not self.scanning:
            if self.clock() < self._due:
                return
            self._due = self.clock() + self.every_s
            self.scanning, self.cursor, self.untracked = True, 0, 0
        for _ in range(SCAN_CALLS):
            self.cursor, keys = self.client.scan(self.cursor, match=self.match, count=SCAN_COUNT)
            for k in keys:
                g = group_key(k if isinstance(k, bytes) else str(k).encode(), self.taskset_prefix)
                if g is None or g[0] in self.groups:
                    continue
                if len(self.groups) >= GROUPS_MAX:
                    self.untracked += 1
                    continue
                self.groups[g[0]] = Tracked(id=g[0], first_ts=self.wall())
            if self.cursor == 0:
                self.scanning = False
                break

    def poll(self, name_of: Callable[[str], str | None] = lambda _: None) -> schema.CeleryGroups:
        self.discover()
        pre = self.taskset_prefix
        # A saved group whose members all ended does not change again: only whether it still exists is asked.
        settled = [g for g, t in self.groups.items() if t.kind == "group" and t.ended and t.note is None]
        if settled:
            with self.client.pipeline(transaction=False) as pipe:
                for gid in settled:
                    pipe.exists(pre + gid.encode())
                gone = [g for g, n in zip(settled, pipe.execute(raise_on_error=False), strict=True) if n == 0]
            for gid in gone:
                del self.groups[gid]
        still = set(settled)
        ids = [g for g in self.groups if g not in still]
        with self.client.pipeline(transaction=False) as pipe:
            for gid in ids:
                k = pre + gid.encode()
                pipe.strlen(k)
                pipe.getrange(k + b".s", 0, 20)
                pipe.getrange(k + b".t", 0, 20)
                pipe.scard(k + b".d")
                pipe.getrange(k + b".c", 0, 40)
            flat = pipe.execute(raise_on_error=False)  # a foreign key of that name (WRONGTYPE) is a value here
        held = sum(len(t.members or ()) for t in self.groups.values())
        fetch_taskset, fetch_chord = [], []
        for i, gid in enumerate(ids):
            t = self.groups[gid]
            size, s, tdiff, scard, claim = flat[i * 5:i * 5 + 5]
            size = size if isinstance(size, int) else 0
            scard = scard if isinstance(scard, int) else 0
            chord_size, diff = parse_int(s), parse_int(tdiff)
            claim = claim if isinstance(claim, bytes) else b""
            t.seen = bool(size or chord_size is not None or scard or claim)
            if not t.seen:
                continue
            t.note = None
            if chord_size is not None or scard or claim:
                t.kind = "chord"
                if chord_size is not None:
                    t.total, t.ended = chord_size + (diff or 0), False
                elif scard:  # the size is deleted when the callback failed: every header task had returned
                    t.total, t.ended = max(t.total or 0, scard), True
                elif claim == b"done":  # the callback was sent; the counts went with the keys
                    t.ended = True
                    if t.done is None:
                        t.note = "chord ended before it was first read: counts gone with its keys"
                    continue  # keep the last counts read
                t.done = scard
                if scard > MEMBERS_MAX or held + scard > MEMBERS_TOTAL_MAX:
                    t.failed, t.revoked, t.note = None, None, f"{scard} members: past the bound, failures not read"
                else:
                    fetch_chord.append(gid)
            else:
                t.kind = "group"
                if t.unread is not None:
                    t.note = t.unread
                elif t.members is None:
                    if size > TASKSET_VALUE_MAX:
                        t.note = t.unread = f"saved group of {size} bytes: not read"
                    else:
                        fetch_taskset.append(gid)
        reads: list[tuple[str, str]] = []  # (group, member) to read the state of
        with self.client.pipeline(transaction=False) as pipe:
            for gid in fetch_taskset:
                pipe.get(pre + gid.encode())
            for gid in fetch_chord:
                pipe.smembers(pre + gid.encode() + b".d")
            got = pipe.execute(raise_on_error=False) if fetch_taskset or fetch_chord else []
        for gid, raw in zip(fetch_taskset + fetch_chord, got, strict=True):
            t = self.groups[gid]
            if gid in fetch_chord:
                members = [m for m in (chord_member(x) for x in raw) if m] if isinstance(raw, set) else []
                t.members = members
                continue
            if not isinstance(raw, bytes):
                continue  # gone between the reads
            try:
                members = taskset_members(raw)
            except ValueError as e:
                if str(e).startswith("result serializer"):  # the group's results are written the same way
                    t.note = t.unread = str(e)
                else:
                    t.note = t.unread = f"saved group: {e}"
                continue
            if len(members) > MEMBERS_MAX or held + len(members) > MEMBERS_TOTAL_MAX:
                t.total, t.note = len(members), f"{len(members)} members: past the bound, not read"
                if len(members) > MEMBERS_MAX:
                    t.unread = t.note  # the total bound may free up; this one never does
                continue
            t.members, t.total = members, len(members)
            held += len(members)
        for gid in ids:
            t = self.groups[gid]
            if t.seen and t.members is not None and t.note is None:
                reads += [(gid, m) for m in t.members if m not in t.states]
        cut = {gid for gid, _ in reads[READS_MAX:]}  # groups whose states this poll's budget did not reach
        reads = reads[:READS_MAX]
        if reads:
            with self.client.pipeline(transaction=False) as pipe:
                for _, m in reads:
                    pipe.getrange(self.task_prefix + m.encode(), 0, STATUS_BYTES - 1)
                prefixes = pipe.execute(raise_on_error=False)
            for (gid, m), p in zip(reads, prefixes, strict=True):
                if isinstance(p, bytes) and p and serializer_of(p) not in ("json", "msgpack"):
                    # A result we will not read (pickle: never): the group's counts are unknown, not short.
                    self.groups[gid].note = unreadable(serializer_of(p))
                    continue
                st = status_of(p) if isinstance(p, bytes) else None
                if st in ENDED:
                    self.groups[gid].states[m] = st
        for gid in ids:
            t = self.groups[gid]
            if t.note is not None and t.note.startswith("result serializer"):
                t.failed = t.revoked = None  # a chord's done and ended come from its keys, not its results
                if t.kind == "group":
                    t.done = t.ended = None
                continue
            if not t.seen or t.members is None or t.note is not None:
                continue
            vals = list(t.states.values())
            t.failed, t.revoked = vals.count("FAILURE"), vals.count("REVOKED")
            if t.kind == "group":
                t.done = len(vals)
                t.ended = t.done == t.total
            if gid in cut:
                t.note = f"member states still to read (at most {READS_MAX} a poll)"
                t.done = t.failed = t.revoked = None
        for gid in [g for g in ids if not self.groups[g].seen]:
            del self.groups[gid]  # expired or deleted: its keys are gone
        return self.render(name_of)

    def render(self, name_of: Callable[[str], str | None]) -> schema.CeleryGroups:
        shown = sorted(self.groups.values(), key=lambda t: (-t.first_ts, t.id))
        out = []
        for t in shown[:PUBLISHED_MAX]:
            names = {n for n in (name_of(m) for m in (t.members or ())[:50]) if n}
            out.append(schema.CeleryGroup(
                id=clip(t.id), kind=t.kind, name=clip(sorted(names)[0]) if len(names) == 1 else None,
                total=t.total, done=t.done, failed=t.failed, revoked=t.revoked, ended=t.ended, first_ts=t.first_ts,
                note=t.note))
        notes = []
        if len(shown) > PUBLISHED_MAX:
            notes.append(f"{len(shown) - PUBLISHED_MAX} older groups not shown")
        if self.untracked:
            notes.append(f"{self.untracked} groups past the {GROUPS_MAX} tracked: not shown")
        notes += sorted({t.note for t in self.groups.values() if t.note and t.note.startswith("result serializer")})
        return schema.CeleryGroups(backend=self.shown, groups=out, note="; ".join(notes) or None)

    def close(self) -> None:
        self.client.close()
