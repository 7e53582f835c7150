"""Provides the compressed form of a payload: raw deflate with a preset dictionary per payload kind.

May import: stdlib only (zlib; the dictionaries are package data in ``clustertop/wire/dicts/``).

A packed payload is ``b"\\xc1"`` + one byte naming the dictionary + raw deflate (no zlib header, no
checksum: the seal's SHA-256 covers the stored bytes, msgspec validates what inflates). 0xC1 is the one
byte msgpack never uses, so an uncompressed msgpack map from an older agent is told apart by its first byte
and ``wire.decode`` reads both. Why a preset dictionary: a payload is a few KB of msgpack whose field names
and shapes repeat from node to node and tick to tick; plain deflate of one payload finds little to refer
back to, one primed with the same kind's payloads from other (simulated and real) nodes finds most of it
(an 8-GPU tower's brief: ~4.5 KB, ~1.5 KB deflated, ~0.5 KB with its dictionary). Why zlib: it is in the
standard library; zstd dictionaries would mean a new dependency on every node (Python 3.11 has no zstd).

Dictionary ids are forever: a reader keeps every dictionary ever shipped (``DICTS``, named ``KIND-ID.bin``), a new dictionary gets a
new id and becomes its kind's ``CURRENT``. So dashboards and readers are upgraded before agents: an older
reader meets an id it does not have and says so ("dictionary 7 unknown ..."); an older agent's uncompressed
payloads read as before. ``python -m clustertop.sim.wire_dicts`` builds a new dictionary.

Inflation is bounded: a payload that inflates past the limit is refused after inflating at most limit + 1
bytes, so a decompression bomb from a hostile node costs nothing.
"""

from __future__ import annotations

import threading
import zlib
from importlib import resources

MARK = 0xC1
#: Deflate level, measured (bench/bytes_per_node.py, bench/agent_overhead.py): on an 8-GPU tower, 6 against
#: 1 packs the full snapshot, brief and digest into 1,654 / 477 / 95 bytes instead of 2,027 / 552 / 119 for
#: 56 / 21 / 9 µs instead of 26 / 11 / 5 (~125 B/s less per node for ~16 µs more per tick, under 1 % of the
#: agent's ~2 ms); 9 saves ~1 % more at 1.6x the time.
LEVEL = 6
#: zlib's default: the same bytes as 9 on these payloads, ~10 % faster, half the hash memory per compressor.
MEM_LEVEL = 8
NO_DICT = 0

#: Every dictionary ever shipped, by id (never reused, never changed, never removed).
DICTS: dict[int, str] = {1: "node-1.bin", 2: "brief-2.bin", 3: "digest-3.bin", 4: "hist-4.bin", 5: "seal-5.bin"}
#: The dictionary each kind is packed with now. A kind not named here is packed without one (id 0): the
#: energy ledger (~2.6 KB every 15 s, 0.25x deflated; a dictionary saves little more), the history tier
#: blocks (an hour or a day of numbers each) and the cluster payloads (one per cluster, not per node).
CURRENT: dict[str, int] = {"node": 1, "brief": 2, "digest": 3, "hist": 4, "seal": 5}

_WBITS = -15  # raw deflate, 32 KiB window (a preset dictionary is at most that)


class PackError(ValueError):
    """A packed payload that cannot be inflated (``wire.decode`` turns it into a WireError)."""


_lock = threading.Lock()
_dicts: dict[int, bytes] = {}
_compressors: dict[int, zlib._Compress] = {}


def dictionary(did: int) -> bytes:
    """The bytes of dictionary ``did`` (b"" for id 0), loaded once; PackError if this reader has no such id."""
    d = _dicts.get(did)
    if d is not None:
        return d
    if did == NO_DICT:
        return b""
    name = DICTS.get(did)
    if name is None:
        raise PackError(f"dictionary {did} unknown: this reader is older than the agent that packed it "
                        "(upgrade dashboards before agents)")
    try:
        d = resources.files(__package__).joinpath("dicts", name).read_bytes()
    except OSError as e:  # a broken install: still a reason on screen, never an exception in a refresh
        raise PackError(f"dictionary {did} ({name}) missing from this install: {e.strerror or e}") from None
    with _lock:
        _dicts[did] = d
    return d


def _compressor(did: int) -> zlib._Compress:
    c = _compressors.get(did)
    if c is None:
        zdict = dictionary(did)
        # Priming is the cost (setting a 32 KiB dictionary: ~100 µs); each payload gets a copy of a primed
        # object instead (~10 µs). The primed one is never fed, only copied, and copy() holds the object's
        # own lock: one per process serves every thread (the simulator publishes many nodes at once).
        if zdict:
            c = zlib.compressobj(LEVEL, zlib.DEFLATED, _WBITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict)
        else:
            c = zlib.compressobj(LEVEL, zlib.DEFLATED, _WBITS, MEM_LEVEL)
        with _lock:
            c = _compressors.setdefault(did, c)
    return c


def deflate(data: bytes, kind: str | None) -> bytes:
    """``data`` (an encoded payload) packed with ``kind``'s current dictionary (none for an unknown kind)."""
    did = CURRENT.get(kind, NO_DICT) if kind is not None else NO_DICT
    c = _compressor(did).copy()
    return bytes((MARK, did)) + c.compress(data) + c.flush()


def is_packed(data: bytes | bytearray | memoryview) -> bool:
    return len(data) > 0 and data[0] == MARK


def inflate(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """The payload ``data`` packs, at most ``limit`` bytes of it; PackError for anything else."""
    if len(data) < 3:
        raise PackError("truncated compressed payload")
    did = data[1]
    zdict = dictionary(did)
    d = zlib.decompressobj(_WBITS, zdict) if zdict else zlib.decompressobj(_WBITS)
    try:
        # Never more than limit + 1 bytes out, whatever the input claims: one more than allowed is enough
        # to refuse it.
        out = d.decompress(memoryview(data)[2:], limit + 1)
    except zlib.error as e:
        raise PackError(f"corrupt compressed payload: {e}") from None
    if len(out) > limit:
        raise PackError(f"compressed payload inflates past {limit} bytes")
    if not d.eof:
        raise PackError("truncated compressed payload")
    if d.unused_data:
        raise PackError(f"{len(d.unused_data)} bytes after the end of the compressed payload")
    return out
