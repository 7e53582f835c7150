"""Ed25519 command signing: key files, key ids, canonical bytes, and what a signature covers."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess

import msgspec
import pytest

from clustertop import wire
from clustertop.control import signing
from clustertop.wire import schema


@pytest.fixture
def keypair(tmp_path):
    key_path, pub_path, kid = signing.generate(str(tmp_path / "keys"), "alice")
    return signing.load_private(key_path), signing.load_public(pub_path), kid


def _cmd(**kw) -> schema.Command:
    base = dict(id="c1", node="node-a", verb="signal", args={"pid": 42, "start_ts": "1700000000.5"},
                issued_ts=1700000000.0, expires_ts=1700000120.0, operator="alice@desk")
    base.update(kw)
    return schema.Command(**base)


def test_generate_writes_private_key_0600_and_public_key(tmp_path):
    key_path, pub_path, kid = signing.generate(str(tmp_path / "k"), "ops")
    assert key_path.endswith("ops.key") and pub_path.endswith("ops.pub")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert open(key_path).read().startswith("-----BEGIN PRIVATE KEY-----")
    assert open(pub_path).read().startswith("-----BEGIN PUBLIC KEY-----")
    assert len(kid) == 16
    # The key id is derived from the public key alone: both files agree.
    assert signing.load_private(key_path).key_id == signing.load_public(pub_path).key_id == kid


def test_generate_refuses_to_overwrite(tmp_path):
    signing.generate(str(tmp_path), "ops")
    with pytest.raises(signing.KeyFileError, match="already exists"):
        signing.generate(str(tmp_path), "ops")


def test_raw_base64_keys_load_like_pem(tmp_path, keypair):
    priv, pub, kid = keypair
    (tmp_path / "raw.pub").write_text(base64.b64encode(pub.raw).decode() + "\n")
    (tmp_path / "raw.key").write_text(base64.b64encode(priv.raw).decode())
    (tmp_path / "raw.key").chmod(0o600)
    assert signing.load_public(str(tmp_path / "raw.pub")).raw == pub.raw
    assert signing.load_private(str(tmp_path / "raw.key")).key_id == kid


def test_bad_key_files_say_why(tmp_path):
    (tmp_path / "short.pub").write_text(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(signing.KeyFileError, match="16 bytes, expected 32"):
        signing.load_public(str(tmp_path / "short.pub"))
    (tmp_path / "junk.pub").write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(signing.KeyFileError, match="not a PEM public key"):
        signing.load_public(str(tmp_path / "junk.pub"))
    with pytest.raises(signing.KeyFileError, match="cannot read key"):
        signing.load_public(str(tmp_path / "missing.pub"))


def test_signed_command_verifies_after_the_wire(keypair):
    priv, pub, kid = keypair
    cmd = signing.sign(_cmd(), priv)
    assert cmd.key_id == kid and len(base64.b64decode(cmd.sig)) == 64
    plain = msgspec.msgpack.decode(wire.encode(cmd))  # what the agent verifies: the payload as it came
    assert signing.verify(plain, {kid: pub}) is None


@pytest.mark.parametrize("field,value", [
    ("node", "node-b"), ("verb", "launch"), ("expires_ts", 1800000000.0), ("issued_ts", 1.0),
    ("operator", "mallory"), ("id", "c2"), ("args", {"pid": 43, "start_ts": "1700000000.5"}),
    ("params", {"x": "1"}),
])
def test_every_field_is_covered_by_the_signature(keypair, field, value):
    priv, pub, kid = keypair
    plain = msgspec.msgpack.decode(wire.encode(signing.sign(_cmd(), priv)))
    plain[field] = value
    assert signing.verify(plain, {kid: pub}) == "bad signature"


def test_an_added_field_is_covered_too(keypair):
    """A newer sender's extra field is inside the signature: nobody can bolt one on in transit."""
    priv, pub, kid = keypair
    plain = msgspec.msgpack.decode(wire.encode(signing.sign(_cmd(), priv)))
    plain["future_field"] = "x"
    assert signing.verify(plain, {kid: pub}) == "bad signature"


def test_unsigned_unknown_key_and_garbage_signature(keypair, tmp_path):
    priv, pub, kid = keypair
    plain = msgspec.to_builtins(_cmd())
    assert signing.verify(plain, {kid: pub}) == "unsigned"
    _, other_pub_path, other_kid = signing.generate(str(tmp_path / "o"), "other")
    signed = msgspec.to_builtins(signing.sign(_cmd(), priv))
    assert "unknown key id" in signing.verify(signed, {other_kid: signing.load_public(other_pub_path)})
    signed["sig"] = "!!!"
    assert signing.verify(signed, {kid: pub}) == "bad signature (not base64)"
    signed["sig"] = base64.b64encode(b"\0" * 64).decode()
    assert signing.verify(signed, {kid: pub}) == "bad signature"


def test_claiming_another_key_id_does_not_help(keypair, tmp_path):
    """Signed with key B but labelled with trusted key A's id: checked against A, fails."""
    priv, pub, kid = keypair
    mallory = signing.load_private(signing.generate(str(tmp_path / "m"), "m")[0])
    cmd = signing.sign(_cmd(), mallory)
    cmd.key_id = kid
    assert signing.verify(msgspec.to_builtins(cmd), {kid: pub}) == "bad signature"


def test_canonical_bytes_do_not_depend_on_field_order():
    a = signing.signing_bytes({"b": 1, "a": {"y": 2, "x": 1}, "sig": "ignored"})
    b = signing.signing_bytes({"a": {"x": 1, "y": 2}, "b": 1})
    assert a == b == signing.DOMAIN + b'{"a":{"x":1,"y":2},"b":1}'


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_a_private_key_others_can_read_is_refused_with_the_fix(tmp_path, mode):
    key_path, _, _ = signing.generate(str(tmp_path), "op")
    os.chmod(key_path, mode)
    with pytest.raises(signing.KeyFileError, match=r"lets others read.*chmod 600"):
        signing.load_private(key_path)
    os.chmod(key_path, 0o600)
    assert signing.load_private(key_path).key_id


def test_openssh_ed25519_keys_work_as_they_are(tmp_path):
    """An operator's existing ssh key: made by the real ssh-keygen where it exists, else by cryptography
    in the same OpenSSH formats."""
    key = tmp_path / "id_ed25519"
    if shutil.which("ssh-keygen"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(key)],
                       check=True)
    else:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        k = Ed25519PrivateKey.generate()
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                        serialization.NoEncryption()))
        key.chmod(0o600)
        (tmp_path / "id_ed25519.pub").write_bytes(k.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" alice@laptop\n")
    priv = signing.load_private(str(key))
    pub = signing.load_public(str(tmp_path / "id_ed25519.pub"))
    assert priv.key_id == pub.key_id
    cmd = signing.sign(schema.Command(id="1", node="n", verb="list", issued_ts=1.0, expires_ts=2.0), priv)
    assert signing.verify(msgspec.to_builtins(cmd), {pub.key_id: pub}) is None


def test_an_ssh_rsa_key_is_refused_by_name(tmp_path):
    line = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDD" + "A" * 10 + " x"
    (tmp_path / "rsa.pub").write_text(line)
    with pytest.raises(signing.KeyFileError, match="OpenSSH|Ed25519"):
        signing.load_public(str(tmp_path / "rsa.pub"))


def test_signatures_of_one_kind_never_pass_for_another(keypair):
    priv, pub, _ = keypair
    res = signing.sign_struct("result", schema.CommandResult(id="1", node="n", ok=True, status="done"), priv)
    assert signing.check("result", res, pub) is None
    assert signing.check("audit", res, pub) == "bad signature"  # same fields, other domain
    res.status = "refused"
    assert signing.check("result", res, pub) == "bad signature"


def test_the_node_key_is_created_once_private(tmp_path):
    k1 = signing.node_key(str(tmp_path))
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600
    assert signing.node_key(str(tmp_path)).key_id == k1.key_id  # not regenerated
    assert signing.fingerprint(k1.public()).startswith("SHA256:")
