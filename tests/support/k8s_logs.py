"""Provides ``LogKubelet``: the log endpoint of a kubelet, for the real API server to proxy pod logs to.

No kubelet can run here (tests/support/k8s_cluster.py). The real kube-apiserver serves
``GET /api/v1/namespaces/NS/pods/NAME/log`` by connecting to the pod's Node: the Node's address of
the preferred type and the port in ``status.daemonEndpoints.kubeletEndpoint`` (HTTPS; with no
``--kubelet-certificate-authority`` it does not check the kubelet's certificate), path
``/containerLogs/NS/POD/CONTAINER`` with ``follow``, ``timestamps``, ``sinceTime``, ``tailLines``, ``previous``. This
server answers exactly that, on 127.0.0.1 only, with what a kubelet does: a stamp (RFC 3339, nanoseconds,
trailing zeros dropped) before each line when ``timestamps=true``, lines from ``sinceTime`` (whole
seconds) on, and with ``follow=true`` a chunked response that sends each line as the test "prints" it
(``emit``) and ends when the container ends (``end``); ``restart`` keeps what the container printed as the
previous instance's log (``previous=true``; before any restart the kubelet answers 400 "previous terminated
container … not found", as a real one does). ``drop()`` cuts every open stream mid-way, as a
network fault or a kubelet restart does. Everything else (authentication of the API server, exec,
stats) is left out: nothing here needs it.

``node_body(name, port)`` is a Node whose only address is 127.0.0.1 and whose kubelet port is this one.
"""

from __future__ import annotations

import datetime
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


def _stamp(ns: int) -> str:
    """The kubelet's RFC3339Nano: fraction with trailing zeros dropped (none at all on a whole second)."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    f = f"{frac:09d}".rstrip("0")
    return f"{base}.{f}Z" if f else f"{base}Z"


def _cert(dir_: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubelet")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    crt, k = dir_ / "kubelet.crt", dir_ / "kubelet.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return crt, k


class LogKubelet:
    def __init__(self, dir_: Path) -> None:
        self.lines: dict[tuple[str, str, str], list[tuple[int, bytes]]] = {}
        self.ended: set[tuple[str, str, str]] = set()
        self.previous: dict[tuple[str, str, str], list[tuple[int, bytes]]] = {}
        self.cond = threading.Condition()
        self.requests: list[dict[str, list[str]]] = []
        self.open_streams = 0
        self._generation = 0  # drop() bumps it: streams of an older generation end abruptly
        crt, key = _cert(dir_)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="log-kubelet", daemon=True)
        self.thread.start()

    # -- what the test does -------------------------------------------------------------------

    def emit(self, ns: str, pod: str, container: str, text: bytes | str, ts_ns: int | None = None) -> int:
        """The container prints one line (now, or at ``ts_ns``); returns its stamp."""
        data = text.encode() if isinstance(text, str) else text
        with self.cond:
            ts = ts_ns if ts_ns is not None else time.time_ns()
            self.lines.setdefault((ns, pod, container), []).append((ts, data))
            self.cond.notify_all()
        return ts

    def end(self, ns: str, pod: str, container: str) -> None:
        """The container exits: open streams end cleanly."""
        with self.cond:
            self.ended.add((ns, pod, container))
            self.cond.notify_all()

    def restart(self, ns: str, pod: str, container: str) -> None:
        """The container exited and was started again: what it printed becomes the previous instance's log."""
        with self.cond:
            self.previous[(ns, pod, container)] = self.lines.pop((ns, pod, container), [])
            self.ended.discard((ns, pod, container))
            self.cond.notify_all()

    def drop(self) -> None:
        """Cut every open stream mid-way (no final chunk): a dropped connection."""
        with self.cond:
            self._generation += 1
            self.cond.notify_all()

    def wait_streams(self, n: int, limit_s: float = 20.0) -> None:
        end = time.monotonic() + limit_s
        with self.cond:
            while self.open_streams != n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"open log streams: {self.open_streams}, wanted {n}")
                self.cond.wait(min(left, 0.1))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- the endpoint ---------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        parts = url.path.strip("/").split("/")
        q = parse_qs(url.query)
        self.requests.append({"path": [url.path], **q})
        if len(parts) != 4 or parts[0] != "containerLogs":
            h.send_error(404)
            return
        key = (parts[1], parts[2], parts[3])
        stamps = q.get("timestamps", ["false"])[0] == "true"
        follow = q.get("follow", ["false"])[0] == "true"
        since = None
        if "sinceTime" in q:
            since = int(datetime.datetime.strptime(q["sinceTime"][0], "%Y-%m-%dT%H:%M:%SZ")
                        .replace(tzinfo=datetime.UTC).timestamp()) * 1_000_000_000
        tail = int(q["tailLines"][0]) if "tailLines" in q else None

        def fmt(ts: int, data: bytes) -> bytes:
            return (_stamp(ts).encode() + b" " if stamps else b"") + data + b"\n"

        if q.get("previous", ["false"])[0] == "true":
            with self.cond:
                prev = self.previous.get(key)
            if prev is None:
                body = f'previous terminated container "{key[2]}" in pod "{key[1]}" not found'.encode()
                h.send_response(400)
                h.send_header("Content-Type", "text/plain")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
                return
            if tail is not None:
                prev = prev[-tail:] if tail > 0 else []
            data = b"".join(fmt(ts, d) for ts, d in prev)
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        with self.cond:
            have = [x for x in self.lines.get(key, []) if since is None or x[0] >= since]
            if tail is not None:
                have = have[-tail:] if tail > 0 else []
            sent = len(self.lines.get(key, []))
            gen = self._generation
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        sock: socket.socket = h.connection

        def chunk(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        with self.cond:
            self.open_streams += 1
            self.cond.notify_all()
        try:
            if have:
                chunk(b"".join(fmt(ts, d) for ts, d in have))
            while follow:
                with self.cond:
                    self.cond.wait(0.1)
                    new = self.lines.get(key, [])[sent:]
                    sent += len(new)
                    dropped = self._generation != gen
                    ended = key in self.ended
                if dropped:
                    # Abrupt: close without the last chunk; the reader sees a broken chunked body.
                    sock.shutdown(socket.SHUT_RDWR)
                    h.close_connection = True
                    return
                if new:
                    chunk(b"".join(fmt(ts, d) for ts, d in new))
                if ended:
                    break
                # The API server closes its side when its client goes: seen as a readable socket at EOF.
                r, _, _ = select.select([sock], [], [], 0)
                if r:
                    try:
                        if not sock.recv(1):
                            h.close_connection = True
                            return
                    except (OSError, ssl.SSLError):
                        h.close_connection = True
                        return
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (OSError, ssl.SSLError):
            h.close_connection = True
        finally:
            with self.cond:
                self.open_streams -= 1
                self.cond.notify_all()


def node_body(name: str, port: int) -> dict[str, Any]:
    """A Ready Node whose kubelet is ``LogKubelet`` on 127.0.0.1:port (the only address: loopback)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": res, "allocatable": res,
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                       "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now,
                                       "lastTransitionTime": now, "reason": "Test", "message": "set by the test"}]}}


@pytest.fixture
def logpod(k8s_cluster: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A namespace, a Node whose kubelet log endpoint is a LogKubelet, a two-container pod Running on it."""
    from kubernetes import client as kc

    from tests.collectors.test_k8s_real import wait_for

    api = k8s_cluster.client("admin")
    core = kc.CoreV1Api(api)
    kubelet = LogKubelet(tmp_path)
    tag = uuid.uuid4().hex[:6]
    ns, node = f"lg-{tag}", f"fake-lg-{tag}"
    body = node_body(node, kubelet.port)
    core.create_namespace({"metadata": {"name": ns}})
    core.create_node(body)
    core.patch_node_status(node, {"status": body["status"]})
    core.create_namespaced_pod(ns, {"metadata": {"name": "train"}, "spec": {
        "nodeName": node, "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": "registry.local/train:1"},
                       {"name": "side", "image": "registry.local/side:1"}]}})
    wait_for("pod running", lambda: core.read_namespaced_pod("train", ns), lambda p: p.status.phase == "Running")
    try:
        yield {"ns": ns, "node": node, "kubelet": kubelet, "core": core, "cluster": k8s_cluster}
    finally:
        core.delete_namespace(ns)
        core.delete_node(node)
        kubelet.close()
        api.close()
