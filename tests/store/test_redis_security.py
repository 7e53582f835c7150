"""Redis done safely: a real redis-server with TLS and the documented ACL users (docs/security.md);
the real agent (its RESP client) and the dashboard's reader (redis-py) work through them, and the users
cannot do what the rule set forbids."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clustertop import store
from clustertop.read.reader import Reader
from clustertop.store import resp
from tests.conftest import ROOT, RedisServer, free_port

DOC = ROOT / "docs" / "security.md"


def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (what an admin would make with openssl)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clustertop test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _acl_lines() -> list[str]:
    """The ACL users exactly as docs/security.md documents them (so the doc cannot drift from the test)."""
    lines = [ln for ln in DOC.read_text().splitlines() if ln.startswith("user ct-")]
    assert len(lines) == 3
    pw = {"AGENT-PASSWORD": "agent-pw", "VIEWER-PASSWORD": "viewer-pw", "OPERATOR-PASSWORD": "op-pw"}
    return [re.sub(r">([A-Z-]+)", lambda m: ">" + pw[m.group(1)], ln) for ln in lines]


@pytest.fixture
def tls_acl_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    # Debian's redis-server is built with TLS; a build without it fails below with its own message.
    ca, cert, key = _cert(tmp_path)
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("\n".join(["user default on nopass ~* &* +@all", *_acl_lines()]) + "\n")
    port = free_port()
    srv = RedisServer.__new__(RedisServer)
    srv.port, srv.dir = port, str(tmp_path)
    srv.proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--aclfile", str(aclfile)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    c = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
    for _ in range(100):
        try:
            c.ping()
            break
        except redis.ConnectionError:
            if srv.proc.poll() is not None:
                pytest.fail(f"redis-server with TLS did not start: {srv.proc.stdout.read().decode()[-500:]}")  # type: ignore[union-attr]
            time.sleep(0.05)
    for name, pw in (("agent", "agent-pw"), ("viewer", "viewer-pw"), ("operator", "op-pw")):
        (tmp_path / f"{name}.pass").write_text(pw + "\n")
    yield port, ca, tmp_path
    srv.proc.terminate()
    srv.proc.wait(5)


def test_agent_and_reader_through_tls_and_acl(tls_acl_redis) -> None:  # type: ignore[no-untyped-def]
    port, ca, tmp = tls_acl_redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--once", "--node", "secure01",
                        "--redis", f"rediss://ct-agent@127.0.0.1:{port}/0", "--redis-password-file",
                        str(tmp / "agent.pass"), "--redis-ca-file", str(ca)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    viewer = store.connect(f"rediss://ct-viewer@127.0.0.1:{port}/0", str(tmp / "viewer.pass"), str(ca))
    st = Reader(viewer).read()
    assert [n.host for n in st.nodes] == ["secure01"] and st.nodes[0].state == "up"
    # the viewer only reads
    with pytest.raises(redis.exceptions.NoPermissionError):
        viewer.set("ct:v1:node:secure01", b"x")
    # the agent cannot touch other keys or administer the server
    agent = store.connect_light(f"rediss://ct-agent@127.0.0.1:{port}/0", str(tmp / "agent.pass"), str(ca))
    assert agent.set("ct:v1:lease:test", "x", px=1000) is True
    for args in (["FLUSHALL"], ["CONFIG", "GET", "*"], ["KEYS", "*"], ["SET", "other", "x"]):
        with pytest.raises(resp.ResponseError, match="NOPERM"):
            agent._call(args)
    # the lease's Lua script runs under the agent's ACL
    assert agent.eval("return redis.call('PEXPIRE', KEYS[1], 500)", 1, "ct:v1:lease:test") == 1


def test_tls_without_the_ca_is_refused(tls_acl_redis) -> None:  # type: ignore[no-untyped-def]
    port, _ca, tmp = tls_acl_redis
    agent = store.connect_light(f"rediss://ct-agent@127.0.0.1:{port}/0", str(tmp / "agent.pass"), None)
    with pytest.raises(resp.ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        agent.ping()
