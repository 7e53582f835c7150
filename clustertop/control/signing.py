"""Provides Ed25519 signing of job-control commands: keys, key ids, canonical bytes, sign, verify.

Why Ed25519: small keys, deterministic signatures, no parameters to get wrong, and the agent
needs only public keys, so neither Redis nor a node's disk holds anything that can forge a
command. ``cryptography`` is imported lazily: the dashboard reads snapshots without it.

Key files (written by ``clustertop keygen``):
- ``NAME.key``: the private key, PEM (PKCS#8, unencrypted), mode 0600. Keep it on the operator's
  machine only.
- ``NAME.pub``: the public key, PEM (SubjectPublicKeyInfo). Copy it to each agent and list it in
  ``[security] operator_keys``.
Loaders also accept a bare base64 line of the raw 32 key bytes (easy to paste into config
management).

Key id: the first 16 hex digits of SHA-256 over the raw 32 public-key bytes. It only tells the
agent which key to try; the signature is what is trusted.

Signed bytes: ``b"clustertop-cmd-v1\\n"`` followed by the command as JSON with sorted keys and
no whitespace (msgspec), every field except ``sig``. The prefix keeps a command signature from
ever being valid for anything else signed with the same key. The agent verifies over the payload
as it arrived (decoded to plain values), so fields a newer sender adds are covered too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from clustertop.wire import schema

DOMAIN = b"clustertop-cmd-v1\n"


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes  # 32 bytes
    path: str | None = None

    def verify(self, sig: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(sig, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    key_id: str
    raw: bytes  # 32-byte seed; never logged, never sent
    path: str | None = None

    def sign(self, data: bytes) -> bytes:
        return _ed25519_private(self.raw).sign(data)

    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pub = Ed25519PrivateKey.from_private_bytes(self.raw).public_key()
        raw = _raw_public(pub)
        return PublicKey(key_id=key_id(raw), raw=raw)


@functools.lru_cache(maxsize=1024)
def _ed25519_private(raw: bytes) -> Any:
    """The key object for a seed, built once: building it costs as much as a signature (~20 us), and a
    node signs a seal every tick (a simulated cluster, one per node and tick)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(raw)


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw_public(pub: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[no-any-return]


def generate(out_dir: str, name: str = "operator") -> tuple[str, str, str]:
    """Write ``NAME.key`` (0600) and ``NAME.pub`` into ``out_dir``; return (key path, pub path, key id).

    Refuses to overwrite an existing key: losing a private key by typo locks operators out.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"bad key name {name!r}")
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    key_path = os.path.join(out_dir, f"{name}.key")
    pub_path = os.path.join(out_dir, f"{name}.pub")
    for p in (key_path, pub_path):
        if os.path.exists(p):
            raise KeyFileError(f"{p}: already exists (not overwritten)")
    priv = Ed25519PrivateKey.generate()
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # O_EXCL + mode at creation: the key is never readable by others, not even for an instant.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(key_path, 0o600)  # the umask can only remove bits; make the mode exact anyway
    pub = priv.public_key()
    with open(pub_path, "wb") as f:
        f.write(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path, key_id(_raw_public(pub))


def new_key() -> PrivateKey:
    """A fresh key that lives in memory only (the simulator's nodes, tests): nothing is written anywhere."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    return PrivateKey(key_id=PrivateKey(key_id="", raw=raw).public().key_id, raw=raw)


def public_b64(key: PublicKey) -> str:
    """The raw 32 public-key bytes in base64: what a node announces and ``clustertop enrol --key`` reads."""
    return base64.b64encode(key.raw).decode("ascii")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key: {e.strerror}") from None


def check_private_mode(path: str) -> None:
    """Refuse a private key that group or others may read, naming the fix (as ssh does).

    A key anyone on the machine can read is a key anyone can sign with: better to stop than to sign.
    """
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key: {e.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path}: mode {mode:04o} lets others read this private key; "
                           f"refused (fix: chmod 600 {path})")


def _b64_raw(data: bytes, path: str) -> bytes | None:
    text = data.strip()
    if b"\n" in text or not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    if len(raw) != 32:
        raise KeyFileError(f"{path}: base64 key is {len(raw)} bytes, expected 32")
    return raw


def load_public(path: str) -> PublicKey:
    data = _read(path)
    raw = _b64_raw(data, path)
    if raw is None and data.lstrip().startswith(b"ssh-"):
        raw = _ssh_public(data, path)
    if raw is None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            pub = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise KeyFileError(f"{path}: not a PEM public key: {e}") from None
        if not isinstance(pub, Ed25519PublicKey):
            raise KeyFileError(f"{path}: not an Ed25519 key ({type(pub).__name__})")
        raw = _raw_public(pub)
    return PublicKey(key_id=key_id(raw), raw=raw, path=path)


def _ssh_public(data: bytes, path: str) -> bytes:
    """An OpenSSH public key line (``ssh-ed25519 AAAA… comment``): operators can use the key they have."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        pub = serialization.load_ssh_public_key(data.strip().splitlines()[0])
    except (ValueError, IndexError) as e:
        raise KeyFileError(f"{path}: not an OpenSSH public key: {e}") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 key ({type(pub).__name__}); use ssh-keygen -t ed25519")
    return _raw_public(pub)


def load_private(path: str) -> PrivateKey:
    check_private_mode(path)
    data = _read(path)
    raw = _b64_raw(data, path)
    if raw is None and b"BEGIN OPENSSH PRIVATE KEY" in data:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            ssh_priv = serialization.load_ssh_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{path}: not an unencrypted OpenSSH private key ({e}); "
                               "clustertop needs a key without passphrase") from None
        if not isinstance(ssh_priv, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 key ({type(ssh_priv).__name__}); use ssh-keygen -t ed25519")
        raw = ssh_priv.private_bytes_raw()
    if raw is None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            priv = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key: {e}") from None
        if not isinstance(priv, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 key ({type(priv).__name__})")
        raw = priv.private_bytes_raw()
    key = PrivateKey(key_id="", raw=raw, path=path)
    return PrivateKey(key_id=key.public().key_id, raw=raw, path=path)


#: One prefix per kind of signed thing, so a signature made for one kind is never valid as another
#: (a node's signed result can't pass for a seal, an operator's audit entry can't pass for a command).
DOMAINS = {
    "cmd": DOMAIN,
    "seal": b"clustertop-seal-v1\n",
    "result": b"clustertop-result-v1\n",
    "audit": b"clustertop-audit-v1\n",
    "alerts": b"clustertop-alerts-v1\n",  # the lease holder's alert state (clustertop.wire.alerts)
    "summary": b"clustertop-summary-v1\n",  # a bucket summary's body (clustertop.wire.summary)
}


def sign_bytes(kind: str, data: bytes, key: PrivateKey) -> tuple[str, str]:
    """(key id, base64 signature) over ``kind``'s domain and exactly ``data``: for a payload signed as the
    bytes it is stored as (a bucket summary's body), so checking it needs no canonical re-encoding."""
    return key.key_id, base64.b64encode(key.sign(DOMAINS[kind] + data)).decode("ascii")


def check_bytes(kind: str, data: bytes, key_id: str, sig: str, pub: PublicKey) -> str | None:
    """Verify ``sign_bytes``' signature against the one key that may have made it. None = valid, else why not."""
    if not sig:
        return "unsigned"
    if key_id != pub.key_id:
        return f"signed by key {str(key_id)[:20]!r}, not the enrolled {pub.key_id}"
    try:
        raw = base64.b64decode(sig, validate=True)
    except ValueError:
        return "bad signature (not base64)"
    if len(raw) != 64:
        return "bad signature (wrong length)"
    return None if pub.verify(raw, DOMAINS[kind] + data) else "bad signature"


def canonical(kind: str, obj: msgspec.Struct | dict[str, Any]) -> bytes:
    """The canonical bytes a signature of ``kind`` covers: every field but ``sig``, sorted-key JSON.

    A struct is first put through the wire and back (msgpack, decoded as its own type), so the signer
    covers exactly what a reader will decode: an int left in a float field is 1 here and 1.0 there,
    and a signature over the first never verifies over the second.
    """
    if isinstance(obj, msgspec.Struct):
        try:
            obj = msgspec.msgpack.decode(msgspec.msgpack.encode(obj), type=type(obj))
        except msgspec.ValidationError:
            pass  # no reader can decode it either: sign it as it stands, it will be refused as unreadable
    fields = msgspec.to_builtins(obj) if isinstance(obj, msgspec.Struct) else dict(obj)
    fields.pop("sig", None)
    return DOMAINS[kind] + msgspec.json.encode(fields, order="sorted")


def signing_bytes(cmd: schema.Command | dict[str, Any]) -> bytes:
    """The canonical bytes a command's signature covers."""
    return canonical("cmd", cmd)


def sign_struct(kind: str, obj: Any, key: PrivateKey) -> Any:
    """Set ``key_id`` and ``sig`` on a signed struct (a seal, result or audit entry) and return it."""
    obj.key_id = key.key_id
    obj.sig = ""
    obj.sig = base64.b64encode(key.sign(canonical(kind, obj))).decode("ascii")
    return obj


def check(kind: str, obj: dict[str, Any] | msgspec.Struct, key: PublicKey) -> str | None:
    """Verify one signed struct (or its decoded fields) against the one key that may have signed it."""
    fields: dict[str, Any] = msgspec.to_builtins(obj) if isinstance(obj, msgspec.Struct) else obj
    sig_text = fields.get("sig")
    if not sig_text:
        return "unsigned"
    if str(fields.get("key_id") or "") != key.key_id:
        return f"signed by key {str(fields.get('key_id'))[:20]!r}, not the enrolled {key.key_id}"
    try:
        sig = base64.b64decode(str(sig_text), validate=True)
    except ValueError:
        return "bad signature (not base64)"
    if len(sig) != 64:
        return "bad signature (wrong length)"
    try:
        data = canonical(kind, fields)
    except (TypeError, msgspec.EncodeError) as e:
        return f"bad payload: {e}"
    return None if key.verify(sig, data) else "bad signature"


def node_key(state_dir: str, path: str | None = None) -> PrivateKey:
    """The node's own key: ``path``, or ``node.key`` in the state directory, created (0600) on first start.

    Each agent signs what it publishes with it (seals, results, audit entries); operators pin its
    public half (``clustertop enrol``), so one compromised node cannot speak for another.
    """
    path = path or os.path.join(state_dir, "node.key")
    if not os.path.exists(path):
        generate(os.path.dirname(path) or ".", os.path.basename(path).removesuffix(".key"))
    return load_private(path)


def fingerprint(key: PublicKey) -> str:
    """ssh's form: SHA256:<base64 of the SHA-256 of the raw key>, what an operator compares by eye."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.raw).digest()).decode().rstrip("=")


def sign(cmd: schema.Command, key: PrivateKey) -> schema.Command:
    """Set ``key_id`` and ``sig`` on ``cmd`` (in place) and return it."""
    cmd.key_id = key.key_id
    cmd.sig = base64.b64encode(key.sign(signing_bytes(cmd))).decode("ascii")
    return cmd


def verify(fields: dict[str, Any], keys: dict[str, PublicKey]) -> str | None:
    """Check the signature of a command given as plain decoded fields. None = valid, else why not."""
    sig_text = fields.get("sig")
    if not sig_text:
        return "unsigned"
    key = keys.get(str(fields.get("key_id") or ""))
    if key is None:
        return f"unknown key id {fields.get('key_id')!r}"
    try:
        sig = base64.b64decode(str(sig_text), validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character (plain ValueError from b64decode)
        return "bad signature (not base64)"
    if len(sig) != 64:
        return "bad signature (wrong length)"
    try:
        data = signing_bytes(fields)
    except (TypeError, msgspec.EncodeError) as e:
        return f"bad payload: {e}"
    return None if key.verify(sig, data) else "bad signature"
