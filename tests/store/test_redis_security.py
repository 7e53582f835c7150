"""Redis done safely: a real redis-server with TLS and the ACL users `clustertop acl` generates
(docs/security.md); the real agent (its RESP client) and the dashboard's reader (redis-py) work through
them, and the users cannot do what the rule set forbids. tests/store/test_acl.py replays the
cross-node attacks; this file checks the same users over TLS, end to end."""

from __future__ import annotations

import datetime
import ipaddress
import os
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
from clustertop.agents.lease import Lease
from clustertop.read.reader import Reader
from clustertop.store import resp
from tests.conftest import ROOT, RedisServer, free_port


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


def _acl_file(tmp: Path) -> Path:
    """The ACL users exactly as `clustertop acl` makes them (its passwords land in tmp/passwords)."""
    r = subprocess.run([sys.executable, "-m", "clustertop", "acl", "--cluster-node", "secure01", "--viewer", "wall",
                        "--operator", "alice", "--password-dir", str(tmp / "passwords")],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    path = tmp / "users.acl"
    path.write_text(r.stdout)
    return path


@pytest.fixture
def tls_acl_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    # Debian's redis-server is built with TLS; a build without it fails below with its own message.
    ca, cert, key = _cert(tmp_path)
    aclfile = _acl_file(tmp_path)
    port = free_port()
    srv = RedisServer.__new__(RedisServer)
    srv.port, srv.dir = port, str(tmp_path)
    srv.proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--aclfile", str(aclfile)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pw = tmp_path / "passwords"
    c = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca), username="viewer-wall",
                    password=(pw / "viewer-wall").read_text().strip())
    for _ in range(100):
        try:
            c.ping()
            break
        except redis.ConnectionError:
            if srv.proc.poll() is not None:
                pytest.fail(f"redis-server with TLS did not start: {srv.proc.stdout.read().decode()[-500:]}")  # type: ignore[union-attr]
            time.sleep(0.05)
    yield port, ca, pw
    srv.proc.terminate()
    srv.proc.wait(5)


def test_agent_and_reader_through_tls_and_acl(tls_acl_redis) -> None:  # type: ignore[no-untyped-def]
    port, ca, tmp = tls_acl_redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--once", "--node", "secure01",
                        "--redis", f"rediss://node-secure01@127.0.0.1:{port}/0", "--redis-password-file",
                        str(tmp / "node-secure01"), "--redis-ca-file", str(ca)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    viewer = store.connect(f"rediss://viewer-wall@127.0.0.1:{port}/0", str(tmp / "viewer-wall"), str(ca))
    st = Reader(viewer).read()
    assert [n.host for n in st.nodes] == ["secure01"] and st.nodes[0].state == "up"
    # the viewer only reads
    with pytest.raises(redis.exceptions.NoPermissionError):
        viewer.set("ct:v1:node:secure01", b"x")
    # the agent cannot touch other keys or administer the server
    agent = store.connect_light(f"rediss://node-secure01@127.0.0.1:{port}/0", str(tmp / "node-secure01"), str(ca))
    now = [0.0]
    lease = Lease(agent, "test", "secure01", period_s=1.0, clock=lambda: now[0])
    assert lease.refresh()
    now[0] += 1.0
    assert lease.refresh()  # renewed with WATCH/MULTI under the node's ACL: no Lua needed
    for args in (["FLUSHALL"], ["CONFIG", "GET", "*"], ["KEYS", "*"], ["SET", "other", "x"],
                 ["EVAL", "return 1", "0"], ["SET", "ct:v1:node:other", "x"]):
        with pytest.raises(resp.ResponseError, match="NOPERM"):
            agent._call(args)


def test_tls_without_the_ca_is_refused(tls_acl_redis) -> None:  # type: ignore[no-untyped-def]
    port, _ca, tmp = tls_acl_redis
    agent = store.connect_light(f"rediss://node-secure01@127.0.0.1:{port}/0", str(tmp / "node-secure01"), None)
    with pytest.raises(resp.ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        agent.ping()
