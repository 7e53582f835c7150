"""Provides what the dashboard and CLI trust, and how they check it: enrolled node keys, seals, results, audit chains.

The trust anchors are local files, never Redis (which every node can write): ``known_nodes`` pins each
node's public key as ssh's known_hosts pins a host's, written once by ``clustertop enrol``. Everything a
node publishes that anyone acts on is checked against that key:
- its snapshot, through the seal it publishes beside it (``seal_verdict``): the base of every kill;
- its command results (``result_verdict``): a result nobody enrolled signed is never shown as done;
- its audit entries, chained and signed (``verify_stream``).
Nothing here draws or decides policy: it answers "verified", or why not, in words.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clustertop import wire
from clustertop.control import signing
from clustertop.wire import schema

#: Host names as they may appear in known_nodes (and in ACL key patterns: no glob characters).
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def default_known_nodes() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "clustertop", "known_nodes")


@dataclass
class KnownNodes:
    """host -> the node's enrolled public key. Lines: ``HOST ed25519 BASE64-RAW-KEY [comment]``."""

    path: str | None = None
    keys: dict[str, signing.PublicKey] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None = None) -> KnownNodes:
        """The file at ``path`` (default: XDG config); a missing file is an empty list, a bad line an error."""
        path = path or default_known_nodes()
        out = cls(path=path)
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return out
        except OSError as e:
            raise signing.KeyFileError(f"{path}: cannot read: {e.strerror}") from None
        for n, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) < 3 or parts[1] != "ed25519" or not HOST.fullmatch(parts[0]):
                raise signing.KeyFileError(f"{path}:{n}: expected 'HOST ed25519 BASE64KEY', got {line[:80]!r}")
            out.keys[parts[0]] = public_from_b64(parts[2], f"{path}:{n}")
        return out

    def get(self, host: str) -> signing.PublicKey | None:
        return self.keys.get(host)

    def add(self, host: str, key: signing.PublicKey, comment: str = "") -> None:
        """Pin ``host``'s key (appended). Re-enrolling a host with another key is refused: remove its line
        by hand first, as with ssh, because a changed key is exactly what an impostor looks like."""
        if not HOST.fullmatch(host):
            raise signing.KeyFileError(f"bad host name {host!r} (letters, digits, '.', '-', '_')")
        old = self.keys.get(host)
        if old is not None and old.raw != key.raw:
            raise signing.KeyFileError(f"{self.path}: {host} is enrolled with another key "
                                       f"({signing.fingerprint(old)}); remove that line first if the node was rebuilt")
        if old is not None:
            return
        assert self.path is not None
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{host} ed25519 {base64.b64encode(key.raw).decode()}" + (f" {comment}" if comment else "") + "\n")
        self.keys[host] = key


def public_from_b64(text: str, where: str) -> signing.PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise signing.KeyFileError(f"{where}: key is not base64") from None
    if len(raw) != 32:
        raise signing.KeyFileError(f"{where}: key is {len(raw)} bytes, expected 32")
    return signing.PublicKey(key_id=signing.key_id(raw), raw=raw, path=where)


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a node's data may be acted on. ``ok`` only when its enrolled key signed exactly these bytes."""

    ok: bool
    text: str  # "signed by gpu01 (SHA256:…)" or why not: "gpu01 is not enrolled", "bad signature", …

    @classmethod
    def good(cls, host: str, key: signing.PublicKey) -> Verdict:
        return cls(True, f"signed by {host}'s enrolled key {signing.fingerprint(key)}")


def sha256_hex(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def seal_verdict(host: str, node_bytes: bytes | None, seal_bytes: bytes | None, known: KnownNodes,
                 kind: str = "node",
                 check: Callable[[schema.NodeSeal, signing.PublicKey], str | None] | None = None) -> Verdict:
    """Does ``host``'s enrolled key vouch for these payload bytes (``kind``: node, brief or digest)?

    ``check(seal, key)``: the signature check (``signing.check``), for a caller that remembers its answer
    per seal (the dashboard re-reads the same seal every second; a verification costs ~66 µs)."""
    key = known.get(host)
    if key is None:
        return Verdict(False, f"{host} is not enrolled (clustertop enrol {host})")
    if node_bytes is None:
        return Verdict(False, f"no data from {host}")
    if seal_bytes is None:
        return Verdict(False, f"{host} published no seal (an agent from before signing, or forged data)")
    try:
        seal = wire.decode(seal_bytes, schema.NodeSeal)
    except wire.WireError as e:
        return Verdict(False, f"unreadable seal from {host}: {e}")
    if seal.host != host:
        return Verdict(False, f"the seal names {seal.host[:64]!r}, not {host}")
    why = check(seal, key) if check is not None else signing.check("seal", seal, key)
    if why is not None:
        return Verdict(False, f"{why} on {host}'s seal")
    if getattr(seal, kind) != sha256_hex(node_bytes):
        return Verdict(False, f"{host}'s {kind} payload does not match its seal (changed by someone else)")
    return Verdict.good(host, key)


def read_sealed(client: Any, host: str, kind: str = "node") -> tuple[bytes | None, bytes | None]:
    """The payload and its seal, read in one MULTI so both come from the same tick."""
    key = {"node": wire.node_key, "brief": wire.brief_key, "digest": wire.digest_key}[kind](host)
    p = client.pipeline(transaction=True)
    p.get(key)
    p.get(wire.seal_key(host))
    data, seal = p.execute()
    return data, seal


def verified_snapshot(client: Any, host: str, known: KnownNodes) -> tuple[schema.NodeSnapshot | None, Verdict]:
    """``host``'s full snapshot and whether its enrolled key vouches for it (what a kill may be built on)."""
    data, seal = read_sealed(client, host)
    verdict = seal_verdict(host, data, seal, known)
    if data is None:
        return None, verdict
    try:
        snap = wire.decode(data, schema.NodeSnapshot)
    except wire.WireError as e:
        return None, Verdict(False, f"bad data from {host}: {e}")
    if snap.host != host:
        return None, Verdict(False, f"the snapshot under {host}'s key names {snap.host[:64]!r}")
    return snap, verdict


def result_verdict(res: schema.CommandResult, known: KnownNodes) -> Verdict:
    key = known.get(res.node)
    if key is None:
        return Verdict(False, f"{res.node} is not enrolled: its answer can't be checked")
    why = signing.check("result", res, key)
    return Verdict(False, f"{why} on the result from {res.node}") if why else Verdict.good(res.node, key)


# ---------------------------------------------------------------------------------------------
# Audit chains
# ---------------------------------------------------------------------------------------------

#: How many times an append retries when another writer of the same stream got in between.
APPEND_TRIES = 5


def entry_hash(entry: schema.AuditEntry) -> str:
    """What the next entry's ``prev`` holds: the SHA-256 of this entry's signed bytes."""
    return hashlib.sha256(signing.canonical("audit", entry)).hexdigest()


def _decode_entry(fields: dict[Any, Any] | None) -> schema.AuditEntry | None:
    if not fields:
        return None
    raw = fields.get(b"a", fields.get("a"))
    try:
        return wire.decode(raw, schema.AuditEntry)
    except wire.WireError:
        return None


def append_audit(client: Any, stream: str, entry: schema.AuditEntry, key: signing.PrivateKey,
                 maxlen: int = wire.AUDIT_MAXLEN, also: Callable[[Any], None] | None = None) -> schema.AuditEntry:
    """Number, chain, sign and append ``entry`` to ``stream`` (compare-and-append: WATCH, last entry, MULTI).

    Works with redis-py, the embedded store and the agent's RESP client alike. The stream is capped; the
    chain simply starts later then (``verify_stream`` tells trimmed from removed).
    ``also(pipe)`` queues more commands in the same MULTI (the agent's result, replay marker and XACK), so
    they land together with the entry or not at all; it may be called once per try.
    """
    for _ in range(APPEND_TRIES):
        with client.pipeline(transaction=True) as p:
            try:
                p.watch(stream)
                last_entries = p.xrevrange(stream, count=1)
                last = _decode_entry(last_entries[0][1]) if last_entries else None
                entry.seq = (last.seq + 1) if last is not None else 1
                entry.prev = entry_hash(last) if last is not None else ""
                signing.sign_struct("audit", entry, key)
                p.multi()
                p.xadd(stream, {"a": wire.encode(entry)}, maxlen=maxlen, approximate=True)
                if also is not None:
                    also(p)
                p.execute()
                return entry
            except Exception as e:
                if type(e).__name__ != "WatchError":
                    raise
    raise RuntimeError(f"could not append to {stream}: {APPEND_TRIES} writers got in first")


@dataclass
class StreamReport:
    stream: str
    entries: int = 0
    first_seq: int | None = None
    problems: list[str] = field(default_factory=list)  # the first one is what `audit verify` names
    #: entry id -> its first problem, so a screen can mark each entry it shows (absent: verified)
    bad: dict[str, str] = field(default_factory=dict)

    def note(self, eid: str, problem: str) -> None:
        self.problems.append(problem)
        self.bad.setdefault(eid, problem)


def verify_stream(stream: str, entries: Iterable[tuple[Any, dict[Any, Any] | None]],
                  key_for: Callable[[schema.AuditEntry], signing.PublicKey | None]) -> StreamReport:
    """Check every entry's signature (by the key ``key_for`` names for it) and the chain between them.

    A chain starting above seq 1 is a stream trimmed by its cap, not a problem; anything else out of
    order is: an altered entry (bad signature), an entry removed (a gap, or ``prev`` that is not the
    hash of the entry before) or inserted (unsigned, or signed by a key that may not write here).
    """
    rep = StreamReport(stream)
    prev: schema.AuditEntry | None = None
    for eid, fields in entries:
        eid_text = eid.decode() if isinstance(eid, bytes) else str(eid)
        rep.entries += 1
        e = _decode_entry(fields)
        where = f"{stream} entry {eid_text}"
        if e is None:
            rep.note(eid_text, f"{where}: unreadable (inserted or damaged)")
            prev = None
            continue
        key = key_for(e)
        if key is None:
            rep.note(eid_text, f"{where} (seq {e.seq}): signed by key {e.key_id[:20]!r}, which may not write here")
        else:
            why = signing.check("audit", e, key)
            if why is not None:
                rep.note(eid_text, f"{where} (seq {e.seq}): {why} (altered)")
        if prev is None and rep.first_seq is None:
            rep.first_seq = e.seq
            if e.seq < 1:
                rep.note(eid_text, f"{where}: no sequence number (written before chaining, or forged)")
        elif prev is not None:
            if e.seq != prev.seq + 1:
                what = "removed" if e.seq > prev.seq + 1 else "inserted or replayed"
                rep.note(eid_text, f"{where}: seq {e.seq} after {prev.seq}: entries {what}")
            elif e.prev != entry_hash(prev):
                rep.note(eid_text, f"{where} (seq {e.seq}): does not chain to the entry before (altered or replaced)")
        prev = e
    return rep

