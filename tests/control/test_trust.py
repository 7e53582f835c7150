"""Trust anchors and checks (clustertop.control.trust) against a real redis-server.

Each test plays the attacker the trust review found: a Redis writer who relabels a snapshot, answers for
another node, or edits, removes and inserts audit entries. The checks must say so, in words.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.control import signing, trust
from clustertop.store.resp import Client
from clustertop.wire import schema
from tests.conftest import RedisServer


def keypair(tmp: Path, name: str) -> tuple[signing.PrivateKey, signing.PublicKey]:
    k = signing.node_key(str(tmp), str(tmp / f"{name}.key"))
    return k, k.public()


def seal_for(host: str, key: signing.PrivateKey, node: bytes, seq: int = 1) -> bytes:
    s = schema.NodeSeal(host=host, seq=seq, ts=1.0, node=hashlib.sha256(node).hexdigest())
    return wire.encode(signing.sign_struct("seal", s, key))


def test_known_nodes_pin_and_refuse_a_changed_key(tmp_path: Path) -> None:
    path = str(tmp_path / "cfg" / "known_nodes")
    _, pub_a = keypair(tmp_path, "a")
    _, pub_b = keypair(tmp_path, "b")
    kn = trust.KnownNodes.load(path)
    assert kn.keys == {}
    kn.add("gpu01", pub_a, "enrolled by alice")
    kn.add("gpu01", pub_a)  # the same key again: nothing to do
    with pytest.raises(signing.KeyFileError, match="enrolled with another key"):
        kn.add("gpu01", pub_b)
    with pytest.raises(signing.KeyFileError, match="bad host name"):
        kn.add("gpu*", pub_b)
    again = trust.KnownNodes.load(path)
    assert again.get("gpu01").raw == pub_a.raw and len(Path(path).read_text().splitlines()) == 1


@pytest.mark.parametrize("line, why", [("gpu01 rsa AAAA", "expected 'HOST ed25519"),
                                       ("gpu01 ed25519 !!!", "not base64"),
                                       ("gpu01 ed25519 QUJD", "3 bytes, expected 32")])
def test_a_bad_known_nodes_line_names_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    (tmp_path / "kn").write_text("# comment\n\n" + line + "\n")
    with pytest.raises(signing.KeyFileError, match=rf"kn:3: .*{why}"):
        trust.KnownNodes.load(str(tmp_path / "kn"))


def test_a_seal_vouches_for_exactly_those_bytes(tmp_path: Path) -> None:
    key, pub = keypair(tmp_path, "gpu01")
    other, _ = keypair(tmp_path, "gpu02")
    kn = trust.KnownNodes(path=None, keys={"gpu01": pub})
    node = wire.encode(schema.NodeSnapshot(host="gpu01", ts=1.0))
    seal = seal_for("gpu01", key, node)
    assert trust.seal_verdict("gpu01", node, seal, kn).ok
    relabelled = wire.encode(schema.NodeSnapshot(host="gpu01", ts=1.0, role="xmrig"))
    assert "does not match its seal" in trust.seal_verdict("gpu01", relabelled, seal, kn).text
    assert "not enrolled" in trust.seal_verdict("gpu09", node, seal, kn).text
    assert "names 'gpu01'" in trust.seal_verdict("gpu02", node, seal, trust.KnownNodes(keys={"gpu02": pub})).text
    forged = seal_for("gpu01", other, relabelled)  # another node's key over the fake
    assert not trust.seal_verdict("gpu01", relabelled, forged, kn).ok
    assert "no seal" in trust.seal_verdict("gpu01", node, None, kn).text
    assert "unreadable seal" in trust.seal_verdict("gpu01", node, b"\xc1junk", kn).text


def test_verified_snapshot_reads_payload_and_seal_from_one_tick(redis_server: RedisServer, tmp_path: Path) -> None:
    key, pub = keypair(tmp_path, "gpu01")
    kn = trust.KnownNodes(keys={"gpu01": pub})
    c = redis_server.client()
    node = wire.encode(schema.NodeSnapshot(host="gpu01", ts=1.0))
    c.set(wire.node_key("gpu01"), node)
    c.set(wire.seal_key("gpu01"), seal_for("gpu01", key, node))
    snap, verdict = trust.verified_snapshot(c, "gpu01", kn)
    assert snap is not None and verdict.ok and "SHA256:" in verdict.text
    c.set(wire.node_key("gpu01"), wire.encode(schema.NodeSnapshot(host="gpu01", ts=2.0)))  # a writer swaps it
    snap, verdict = trust.verified_snapshot(c, "gpu01", kn)
    assert snap is not None and not verdict.ok


def test_a_result_is_checked_against_the_node_that_ran_it(tmp_path: Path) -> None:
    key_a, pub_a = keypair(tmp_path, "a")
    key_b, pub_b = keypair(tmp_path, "b")
    kn = trust.KnownNodes(keys={"gpu01": pub_a, "gpu02": pub_b})
    res = signing.sign_struct("result", schema.CommandResult(id="c1", node="gpu01", ok=True, status="done"), key_a)
    assert trust.result_verdict(res, kn).ok
    forged = signing.sign_struct("result", schema.CommandResult(id="c1", node="gpu01", ok=True, status="done"), key_b)
    assert "not the enrolled" in trust.result_verdict(forged, kn).text
    unsigned = schema.CommandResult(id="c1", node="gpu01", ok=True, status="done")
    assert "unsigned" in trust.result_verdict(unsigned, kn).text


def clients(srv: RedisServer) -> list[Any]:
    from clustertop.store import embedded

    _, factory = embedded()
    return [srv.client(), Client.from_url(srv.url), factory()]


def test_audit_entries_chain_and_verify_on_every_client(redis_server: RedisServer, tmp_path: Path) -> None:
    key, pub = keypair(tmp_path, "gpu01")
    for i, c in enumerate(clients(redis_server)):
        stream = f"{wire.node_audit_key('gpu01')}:{i}"
        for n in range(4):
            trust.append_audit(c, stream, schema.AuditEntry(ts=float(n), actor="node:gpu01", action="signal",
                                                            target=f"gpu01 pid {n}", result="ok"), key)
        entries = c.xrange(stream)
        rep = trust.verify_stream(stream, entries, lambda e: pub if e.key_id == pub.key_id else None)
        assert rep.entries == 4 and rep.first_seq == 1 and rep.problems == [], rep


def _stream(redis_server: RedisServer, tmp_path: Path, n: int = 5) -> tuple[Any, str, signing.PublicKey, list[Any]]:
    key, pub = keypair(tmp_path, "gpu01")
    c = redis_server.client()
    stream = wire.node_audit_key("gpu01")
    for i in range(n):
        trust.append_audit(c, stream, schema.AuditEntry(ts=float(i), actor="node:gpu01", action="signal",
                                                        target=f"pid {i}", result="ok"), key)
    return c, stream, pub, c.xrange(stream)


def problems(stream: str, entries: list[Any], pub: signing.PublicKey) -> list[str]:
    return trust.verify_stream(stream, entries, lambda e: pub if e.key_id == pub.key_id else None).problems


def test_verify_names_an_altered_entry(redis_server: RedisServer, tmp_path: Path) -> None:
    _, stream, pub, entries = _stream(redis_server, tmp_path)
    e = wire.decode(entries[2][1][b"a"], schema.AuditEntry)
    e.result = "refused: nothing happened"  # rewritten after the fact, signature kept
    entries[2] = (entries[2][0], {b"a": wire.encode(e)})
    out = problems(stream, entries, pub)
    assert out and "seq 3" in out[0] and "altered" in out[0]


def test_verify_names_a_removed_entry_but_not_a_trimmed_start(redis_server: RedisServer, tmp_path: Path) -> None:
    _, stream, pub, entries = _stream(redis_server, tmp_path)
    assert problems(stream, entries[2:], pub) == []  # the cap trimmed the oldest: fine
    out = problems(stream, entries[:2] + entries[3:], pub)
    assert out and "seq 4 after 2" in out[0] and "removed" in out[0]


def test_verify_names_an_inserted_entry(redis_server: RedisServer, tmp_path: Path) -> None:
    _, stream, pub, entries = _stream(redis_server, tmp_path)
    intruder, _ = keypair(tmp_path, "gpu02")
    fake = schema.AuditEntry(ts=9.0, actor="node:gpu01", action="signal", target="pid 1", result="ok", seq=3,
                             prev=trust.entry_hash(wire.decode(entries[1][1][b"a"], schema.AuditEntry)))
    signing.sign_struct("audit", fake, intruder)
    forged = entries[:2] + [(b"9-9", {b"a": wire.encode(fake)})] + entries[2:]
    out = problems(stream, forged, pub)
    assert out and "may not write here" in out[0]
    out = problems(stream, entries[:2] + [(b"9-9", {b"a": b"\x00junk"})] + entries[2:], pub)
    assert out and "unreadable" in out[0]


def run_cli(*argv: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    return subprocess.run([sys.executable, "-m", "clustertop", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, input=stdin, timeout=60)


def test_enrol_then_audit_verify_finds_the_first_bad_entry(redis_server: RedisServer, tmp_path: Path) -> None:
    import base64

    key, pub = keypair(tmp_path, "node")
    (tmp_path / "node.pub").write_text(base64.b64encode(pub.raw).decode() + "\n")
    kn = str(tmp_path / "known_nodes")
    r = run_cli("enrol", "gpu01", "--key", str(tmp_path / "node.pub"), "--known-nodes", kn)
    assert r.returncode == 0 and signing.fingerprint(pub) in r.stdout, r.stderr
    c = redis_server.client()
    # announced key differs from the enrolled one: --from-redis shows it, and enrolling it is refused
    other, other_pub = keypair(tmp_path, "other")
    c.set(wire.nodekey_key("gpu01"), base64.b64encode(other_pub.raw))
    r = run_cli("enrol", "gpu01", "--from-redis", "--yes", "--known-nodes", kn, "--redis", redis_server.url)
    assert r.returncode == 2 and "enrolled with another key" in r.stderr
    stream = wire.node_audit_key("gpu01")
    for i in range(3):
        trust.append_audit(c, stream, schema.AuditEntry(ts=float(i), actor="node:gpu01", action="signal",
                                                        target=f"pid {i}", result="ok"), key)
    r = run_cli("audit", "verify", "--known-nodes", kn, "--redis", redis_server.url)
    assert r.returncode == 0 and "3 entries by node gpu01: ok" in r.stdout, r.stdout + r.stderr
    second = c.xrange(stream)[1][0]
    c.xdel(stream, second)  # an admin-level attacker removes one entry
    r = run_cli("audit", "verify", "--known-nodes", kn, "--redis", redis_server.url)
    assert r.returncode == 1 and "seq 3 after 1" in r.stdout and "removed" in r.stdout


def test_enrol_from_redis_refuses_to_guess_without_a_terminal(redis_server: RedisServer, tmp_path: Path) -> None:
    import base64

    _, pub = keypair(tmp_path, "node")
    redis_server.client().set(wire.nodekey_key("gpu01"), base64.b64encode(pub.raw))
    kn = str(tmp_path / "known_nodes")
    r = run_cli("enrol", "gpu01", "--from-redis", "--known-nodes", kn, "--redis", redis_server.url, stdin="y\n")
    assert r.returncode == 2 and "--yes" in r.stderr and signing.fingerprint(pub) in r.stdout
    assert not Path(kn).exists()
