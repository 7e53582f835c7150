"""One URL rule for both clients (clustertop.store.url): what each option means, what is refused (named),
and the same URL giving redis-py (``store.connect``) and the agent's client (``store.connect_light``) the
same settings; client certificates on a real redis-server that requires them (``--tls-auth-clients yes``)."""

from __future__ import annotations

import datetime
import subprocess
import time
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clustertop import store
from clustertop.config import ConfigError
from clustertop.store import resp, url_problem
from clustertop.store.sentinel import SentinelConnection
from clustertop.store.url import parse
from tests.conftest import free_port
from tests.store.test_redis_security import _cert


def test_every_form_and_option() -> None:
    u = parse("rediss://agent:p%40ss@db.example:6380/2?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
              "&ssl_cert_reqs=optional&protocol=2")
    assert (u.tls, u.hosts, u.db, u.username, u.password) == (True, [("db.example", 6380)], 2, "agent", "p@ss")
    assert (u.ssl_ca_certs, u.ssl_certfile, u.ssl_keyfile, u.ssl_cert_reqs) == ("/ca.pem", "/c.pem", "/k.pem", "optional")
    assert parse("redis://h").hosts == [("h", 6379)] and parse("redis://[::1]:7000").hosts == [("::1", 7000)]
    assert parse("redis://h?db=5").db == 5
    assert parse("rediss://h?ssl_cert_reqs=CERT_NONE").ssl_cert_reqs == "none"  # as Celery broker URLs say it
    u = parse("unix:///run/redis.sock?db=3")
    assert (u.path, u.db, u.hosts) == ("/run/redis.sock", 3, [])
    u = parse("redis+sentinel://:pw@s1,s2:26380,[::1]/mymaster/4?sentinel_username=sen&sentinel_password=spw")
    assert u.sentinel and not u.tls and u.service == "mymaster" and u.db == 4 and u.password == "pw"
    assert u.hosts == [("s1", 26379), ("s2", 26380), ("::1", 26379)]
    assert (u.sentinel_username, u.sentinel_password) == ("sen", "spw")
    assert parse("rediss+sentinel://s1/m").tls
    # the file is named by the URL and read where the URL is used (clustertop.store), never by the parser
    assert parse("redis+sentinel://s1/m?sentinel_password_file=/etc/ct/sen.pw").sentinel_password_file == "/etc/ct/sen.pw"


@pytest.mark.parametrize(("url", "named"), [
    # the example: accepted and ignored before, by the agent's client
    ("rediss://h?ssl_certfile=/c.pem&ssl_cert_reqs=none&protocol=3", "protocol=3"),
    ("redis://h?socket_keepalive=1", "'socket_keepalive'"),
    ("redis://h?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
    ("redis://h?ssl_certfile=/c.pem", "'ssl_certfile' needs TLS"),
    ("rediss://h?ssl_keyfile=/k.pem", "'ssl_keyfile' without 'ssl_certfile'"),
    ("redis://h/x", "db 'x'"),
    ("redis://h:99999", "port '99999'"),
    ("redis://a,b", "several hosts"),
    ("redis+sentinel://s1", "no master name"),
    ("redis+sentinel://s1/m/1/x", "/MASTER/DB"),
    ("unix://host/sock", "not a host"),
    ("http://h", "scheme 'http'"),
    ("redis+sentinel://s1/m?sentinel_password=a&sentinel_password_file=/f", "both given"),
    ("redis://h?sentinel_password_file=/f", "needs redis+sentinel://"),
])
def test_anything_else_is_refused_by_name_on_both_sides(url: str, named: str) -> None:
    assert named in (url_problem(url) or "")
    for connect in (store.connect, store.connect_light):
        with pytest.raises(ConfigError, match="redis") as e:
            connect(url)
        assert named in str(e.value)


def test_only_a_cluster_client_is_sharded(redis_server) -> None:  # type: ignore[no-untyped-def]
    """One Redis keeps its one-MULTI writes (send_audited, the publisher): only a cluster splits them."""
    import fakeredis

    light = store.connect_light(redis_server.url)
    assert light.ping()
    for client in (redis_server.client(), store.connect(redis_server.url), fakeredis.FakeRedis(), light):
        assert store.sharded(client) is False, client


def test_password_never_in_a_refusal() -> None:
    why = url_problem("redis://user:hunter2@h?bogus=1")
    assert why is not None and "hunter2" not in why and "***" in why


def test_same_url_same_settings_on_both_clients(tmp_path: Path) -> None:
    url = "rediss://agent:pw@127.0.0.1:7000/1?ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_cert_reqs=none"
    py = store.connect(url)  # no I/O until first use: what it will build redis.Redis (or RedisCluster) with
    kw = dict(py._opts, host=py._host, port=py._port, db=py._db)
    light = store.connect_light(url).conn
    assert (kw["host"], kw["port"], kw["db"], kw["username"], kw["password"]) == \
           (light.host, light.port, light.db, light.username, light.password)
    assert (kw["ssl_certfile"], kw["ssl_keyfile"], kw["ssl_cert_reqs"]) == (light.certfile, light.keyfile, light.cert_reqs)
    assert kw["protocol"] == 2
    # Sentinel: redis-py's Sentinel-managed pool, the agent's sentinel-asking connection
    surl = "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/3?sentinel_password=spw"
    py = store.connect(surl)
    assert py.connection_pool.service_name == "mymaster" and py.connection_pool.connection_kwargs["db"] == 3
    conn = store.connect_light(surl).conn
    assert isinstance(conn, SentinelConnection) and conn.service == "mymaster" and conn.db == 3
    assert conn.sentinels == [("127.0.0.1", 1), ("127.0.0.1", 2)] and conn.sentinel_auth == (None, "spw")
    with pytest.raises(resp.ConnectionFailed, match="no sentinel names the master 'mymaster'"):
        conn.connect()  # nothing listens on ports 1 and 2


def _client_cert(tmp: Path, ca_pem: Path) -> tuple[Path, Path]:
    """A client certificate signed by the test CA (``_cert``'s); its key is re-read from the CA's files."""
    ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    ca_key = serialization.load_pem_private_key((tmp / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    paths = tmp / "client.pem", tmp / "client.key"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_client_certificate_on_a_server_that_requires_one(tmp_path: Path) -> None:
    ca, cert, key = _cert(tmp_path)
    ca_key = ec.generate_private_key(ec.SECP256R1())  # a CA of our own for clients, beside the server's
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client CA")])
    client_ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
                 .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                 .not_valid_after(now + datetime.timedelta(days=1))
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    (tmp_path / "client-ca.pem").write_bytes(client_ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    ccert, ckey = _client_cert(tmp_path, tmp_path / "client-ca.pem")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(tmp_path / "client-ca.pem"), "--tls-auth-clients", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_certfile={ccert}&ssl_keyfile={ckey}"
        py = store.connect(url)
        for _ in range(100):
            try:
                assert py.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        assert py.set("k", "v")
        assert store.connect_light(url).get("k") == b"v"
        # without the certificate, both are turned away by the server
        bare = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
        with pytest.raises(redis.ConnectionError):
            store.connect(bare, timeout_s=0.3).ping()  # the refusal comes after the handshake (TLS 1.3): a timeout
        with pytest.raises(resp.ConnectionFailed):
            store.connect_light(bare, timeout_s=0.3).ping()
    finally:
        proc.terminate()
        proc.wait(5)
