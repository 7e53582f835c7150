"""Provides the executor's replay guard on the node's own disk: the command ids it has run or refused.

Redis keeps a marker per id too (``seen:{host}:{id}``), but Redis is where others write: a marker can be
deleted (by a flush, a restore, anyone with DEL), and an agent restarted after that would take a
recorded signed command for a new one. So every id the executor has judged is also appended here, in
the state directory, before the command runs, and read back at start.

The file (``seen.log``, mode 0600) has one line per event: ``UNTIL STATE ID``, where UNTIL is the wall
time after which the id may be forgotten (the command's own expiry plus a margin: after it, the expiry
check refuses the command anyway), STATE is ``r`` (marked running, about to execute) or ``d`` (judged
and recorded), and ID is the id as JSON (so no id can break a line). It is appended to with an fsync per
event (commands are rare, and a replay guard that a power cut forgets is no guard), and rewritten
without the expired ids at start and whenever it has grown past twice what it holds. At most
``max_ids`` ids are kept (the ones expiring first are dropped beyond that), so it stays bounded
whatever is sent; a torn last line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable
from typing import IO

import msgspec

log = logging.getLogger("clustertop.commands")

FILE_NAME = "seen.log"
#: Ids kept at most (a few MB of file at worst; a cluster's operators send nowhere near this per hour).
MAX_IDS = 100_000
#: Ids longer than this are kept by their SHA-256: the file's size is bounded by the count alone.
MAX_ID_CHARS = 200

RUNNING, DONE = "r", "d"


def _key(cid: str) -> str:
    if len(cid) <= MAX_ID_CHARS:
        return cid
    return "sha256:" + hashlib.sha256(cid.encode("utf-8", "surrogatepass")).hexdigest()


class SeenLog:
    """id -> (until, state), in memory and in ``DIR/seen.log``. ``path=None``: memory only (tests of other parts)."""

    def __init__(self, path: str | None, clock: Callable[[], float], max_ids: int = MAX_IDS) -> None:
        self.path = path
        self.clock = clock
        self.max_ids = max_ids
        self.ids: dict[str, tuple[float, str]] = {}
        self._lines = 0  # lines in the file now
        self._file: IO[bytes] | None = None
        if path is not None:
            self._load()

    # -- queries ---------------------------------------------------------------------------------

    def state(self, cid: str) -> str | None:
        """RUNNING, DONE, or None for an id never judged here (or forgotten after its expiry)."""
        got = self.ids.get(_key(cid))
        return got[1] if got is not None else None

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, str) and _key(cid) in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    # -- updates ---------------------------------------------------------------------------------

    def add(self, cid: str, until: float, state: str) -> None:
        """Record ``cid`` (durably, before returning). Raises OSError when the disk refuses: the caller must
        then not execute, because nothing would stop a replay after a restart."""
        if not math.isfinite(until):
            until = self.clock() + 3600.0  # nan/inf expiries are refused by policy forever anyway
        key = _key(cid)
        old = self.ids.get(key)
        until = max(until, old[0]) if old is not None else until
        self.ids[key] = (until, state)
        if self._file is not None:
            self._file.write(_line(key, until, state))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._lines += 1
        if len(self.ids) > self.max_ids or self._lines > 2 * max(len(self.ids), 1000):
            self._prune()
            if self.path is not None:
                self._rewrite()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- the file --------------------------------------------------------------------------------

    def _load(self) -> None:
        assert self.path is not None
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        bad = 0
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    parsed = _parse(raw)
                    if parsed is None:
                        bad += 1
                        continue
                    key, until, state = parsed
                    old = self.ids.get(key)
                    self.ids[key] = (max(until, old[0]) if old else until, state)
        except FileNotFoundError:
            pass
        if bad:
            log.warning("%s: %d unreadable line(s) skipped (a write cut short by a crash?)", self.path, bad)
        self._prune()
        self._rewrite()

    def _prune(self) -> None:
        now = self.clock()
        live = {k: v for k, v in self.ids.items() if v[0] >= now}
        if len(live) > self.max_ids:  # keep the ids that stay valid longest, with room for the next tenth
            room = self.max_ids - self.max_ids // 10
            keep = sorted(live.items(), key=lambda kv: kv[1][0])[len(live) - room:]
            log.warning("replay guard full: %d ids forgotten before their expiry", len(live) - room)
            live = dict(keep)
        self.ids = live

    def _rewrite(self) -> None:
        """The live ids into a new file, fsynced, renamed over the old one (a crash leaves one or the other)."""
        assert self.path is not None
        if self._file is not None:
            self._file.close()
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(_line(k, until, state) for k, (until, state) in self.ids.items()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._lines = len(self.ids)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for appends until close()


def _line(key: str, until: float, state: str) -> bytes:
    return b"%.3f %s %s\n" % (until, state.encode(), msgspec.json.encode(key))


def _parse(raw: bytes) -> tuple[str, float, str] | None:
    if not raw.endswith(b"\n"):
        return None  # torn write
    parts = raw.rstrip(b"\n").split(b" ", 2)
    if len(parts) != 3 or parts[1] not in (b"r", b"d"):
        return None
    try:
        until = float(parts[0])
        key = msgspec.json.decode(parts[2], type=str)
    except (ValueError, msgspec.DecodeError):
        return None
    if not math.isfinite(until):
        return None
    return key, until, parts[1].decode()
