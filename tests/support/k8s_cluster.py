"""Provides a real, kubelet-less Kubernetes control plane on loopback for tests: the session fixture ``k8s_cluster``.

etcd 3.4 (Debian ``etcd-server``) + kube-apiserver, kube-controller-manager and kube-scheduler 1.20.2
built from Debian's ``kubernetes`` source package by ``tests/support/k8s/build.sh`` (cached outside the checkout
in ``~/.cache/clustertop-k8s/bin``; ``K8S_BIN`` overrides). Everything binds 127.0.0.1 on free ports,
lives in a pytest tmp dir, and is stopped through the ``Popen`` objects this fixture holds (never by
name, no pid files), even when a test fails.

No kubelet can run here, so ``FakeKubelet`` stands in for the kubelets of Nodes named ``fake-*``: a
client of the real API server that does what a kubelet reports (pod Running with container statuses,
deletion confirmed once a pod is marked for deletion) and nothing else. Pod logs and exec have no
stand-in: the API server really tries the node (127.0.0.1:10250, nothing listens) and fails.

Identities (static token file, RBAC on): ``admin`` (system:masters); ``reader`` (a ClusterRole with
get/list/watch on nodes, pods, jobs, deployments: what the agent's collector needs); ``nsviewer`` (the
built-in ``view`` role in one namespace only). Build when the binaries are missing needs
``apt-get install -y golang-go dpkg-dev rsync etcd-server`` and a deb-src entry (see tests/support/k8s/README.md);
without them the fixture skips, saying why.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

HERE = Path(__file__).resolve().parent / "k8s"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "clustertop-k8s"
BIN = Path(os.environ.get("K8S_BIN", str(CACHE / "bin")))
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
INSTALL = "apt-get install -y golang-go dpkg-dev rsync etcd-server (plus a deb-src entry, then apt-get update)"
TOKENS = {"admin": "admin-token-1", "reader": "reader-token-2", "nsviewer": "nsviewer-token-3"}
VIEW_NAMESPACE = "team-a"  # nsviewer may read this namespace and nothing else
NODE_PREFIX = "fake-"
RBAC_READER = Path(__file__).resolve().parent.parent / "fixtures" / "k8s" / "rbac" / "clustertop-reader.yaml"


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if not os.access(BIN / b, os.X_OK)]


def can_build() -> str | None:
    """None if tests/support/k8s/build.sh can run here, else why not."""
    for tool in ("go", "dpkg-source", "apt-get", "make", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    sources = Path("/etc/apt")
    has_src = any("deb-src" in p.read_text(errors="replace") for p in sources.rglob("*")
                  if p.is_file() and p.suffix in (".list", ".sources"))
    if not has_src and not (CACHE / "src" / "k8s").is_dir():
        return "no deb-src entry in the apt sources (apt-get source kubernetes needs one)"
    return None


def ensure_binaries() -> None:
    """Build once into the cache if missing (about 8-15 min on 2 busy cores); skip, saying why, if impossible."""
    if not missing_binaries():
        return
    why = can_build()
    if why is not None:
        msg = f"Kubernetes binaries missing in {BIN} ({', '.join(missing_binaries())}) and cannot build: {why}; {INSTALL}"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    print(f"building Kubernetes 1.20 into {BIN} (one-off, several minutes)...", file=sys.stderr)
    log = CACHE / "build.log"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        rc = subprocess.call(["nice", "-n", "10", str(HERE / "build.sh")], stdout=out, stderr=subprocess.STDOUT,
                             env={**os.environ, "K8S_BIN": str(BIN)})
    if rc != 0 or missing_binaries():
        pytest.fail(f"tests/support/k8s/build.sh failed (exit {rc}); see {log}")


# ---------------------------------------------------------------------------------------------
# Certificates (cryptography: already a dependency, no openssl subprocess)
# ---------------------------------------------------------------------------------------------


def _write_pki(pki: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def pem_key(key: Any) -> bytes:
        return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clustertop-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost"), x509.DNSName("kubernetes")]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(pem_key(key))
    sa = ec.generate_private_key(ec.SECP256R1())
    (pki / "sa.key").write_bytes(pem_key(sa))
    (pki / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    # token,user,uid,"groups"
    (pki / "tokens.csv").write_text("\n".join(
        f"{tok},{user},{user}" + (',"system:masters"' if user == "admin" else "") for user, tok in TOKENS.items()) + "\n")


def _kubeconfig(path: Path, server: str, ca: Path, user: str) -> None:
    import base64

    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority-data: {base64.b64encode(ca.read_bytes()).decode()}
users:
- name: {user}
  user:
    token: {TOKENS[user]}
contexts:
- name: test-{user}
  context: {{cluster: test, user: {user}, namespace: default}}
current-context: test-{user}
""")


# ---------------------------------------------------------------------------------------------
# The stand-in kubelet
# ---------------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FakeKubelet:
    """Stands in for the kubelets of ``fake-*`` Nodes (none can run here), as a client of the real API
    server: Pending pods bound to such a node go Running (Succeeded with label ``fake-kubelet/exit=0``),
    pods marked for deletion are confirmed deleted, as a kubelet does once it stopped the containers."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(str(kubeconfig), persist_config=False)
        self.core = client.CoreV1Api(self.api)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self.thread.start()

    def _handle(self, pod: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        md, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName") or ""
        if not node.startswith(NODE_PREFIX):
            return
        try:
            if md.get("deletionTimestamp"):
                self.core.delete_namespaced_pod(md["name"], md["namespace"], grace_period_seconds=0)
                return
            if st.get("phase") == "Pending":
                ts = _now()
                done = (spec.get("restartPolicy") in ("Never", "OnFailure")
                        and (md.get("labels") or {}).get("fake-kubelet/exit") == "0")
                state = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts, "finishedAt": ts}}
                         if done else {"running": {"startedAt": ts}})
                ready = not done
                self.core.patch_namespaced_pod_status(md["name"], md["namespace"], {"status": {
                    "phase": "Succeeded" if done else "Running", "hostIP": "127.0.0.1", "podIP": "10.244.0.10",
                    "startTime": ts,
                    "conditions": [{"type": t, "status": "True" if (ready or t == "PodScheduled") else "False",
                                    "lastTransitionTime": ts}
                                   for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                    "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "",
                                           "ready": ready, "started": ready, "restartCount": 0, "state": state}
                                          for c in spec.get("containers") or ()],
                }})
        except ApiException as e:
            if e.status not in (404, 409):
                self.errors.append(f"{md.get('namespace')}/{md.get('name')}: {e.status} {e.reason}")

    def _run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                w = watch.Watch()
                # deserialize=False: raw dicts, as a kubelet reads JSON; no model objects needed.
                for ev in w.stream(self.core.list_pod_for_all_namespaces, timeout_seconds=2, deserialize=False):
                    if self.stop.is_set():
                        w.stop()
                        break
                    obj = ev.get("object")  # with deserialize=False the client leaves the dict here
                    if ev.get("type") in ("ADDED", "MODIFIED") and isinstance(obj, dict):
                        self._handle(obj)
            except Exception as e:  # noqa: BLE001 - the watch reconnects, as a kubelet's does
                if not self.stop.is_set():
                    self.errors.append(f"watch: {e!r}")
                    time.sleep(0.3)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.api.close()


# ---------------------------------------------------------------------------------------------
# The control plane
# ---------------------------------------------------------------------------------------------


class K8sCluster:
    def __init__(self, root: Path) -> None:
        self.dir = root
        self.pki = root / "pki"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.etcd_port, self.etcd_peer, self.api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cmds: dict[str, list[str]] = {}
        self.kubeconfigs: dict[str, Path] = {}
        self.kubelet: FakeKubelet | None = None
        self.timings: dict[str, float] = {}

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.cmds[name] = argv
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        # Own session: a Ctrl-C on pytest reaches us, not the daemons, so the finalizer stops them in order.
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def _wait(self, name: str, url: str, ok: bytes, timeout_s: float = 90.0, ca: Path | None = None,
              token: str | None = None) -> None:
        import ssl

        ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
                    body = r.read()
                    if ok in body:
                        return
                    last = body[:200].decode(errors="replace")
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s ({last}): {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> None:
        t0 = time.monotonic()
        _write_pki(self.pki)
        self._spawn("etcd", [
            shutil.which("etcd") or "etcd", "--name", "ct-test", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster", f"ct-test=http://127.0.0.1:{self.etcd_peer}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr"])
        self._wait("etcd", f"http://127.0.0.1:{self.etcd_port}/health", b'"health":"true"')
        self.timings["etcd_ready_s"] = time.monotonic() - t0
        pki = self.pki
        self._spawn("kube-apiserver", [
            str(BIN / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.api_port),
            "--insecure-port", "0",
            "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"), "--token-auth-file", str(pki / "tokens.csv"),
            # RBAC, so a restricted identity is really refused (and can_i says so).
            "--authorization-mode", "RBAC",
            "--service-account-key-file", str(pki / "sa.pub"), "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--api-audiences", "https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range", "10.96.0.0/16", "--endpoint-reconciler-type", "none",
            "--profiling=false",
            # TaintNodesByCondition would taint every new Node not-ready (only the disabled node
            # lifecycle controller clears it); ServiceAccount admission answers flaky 500s right
            # after a namespace is created (no token controller in time). Both off, as in the recipe.
            "--disable-admission-plugins", "TaintNodesByCondition,ServiceAccount",
            "--v", "1"])
        self._wait("kube-apiserver", f"{self.server}/readyz", b"ok", ca=pki / "ca.crt", token=TOKENS["admin"])
        self.timings["apiserver_ready_s"] = time.monotonic() - t0
        for user in TOKENS:
            self.kubeconfigs[user] = self.dir / f"kubeconfig-{user}"
            _kubeconfig(self.kubeconfigs[user], self.server, pki / "ca.crt", user)
        admin = str(self.kubeconfigs["admin"])
        common = ["--kubeconfig", admin, "--authentication-kubeconfig", admin, "--authorization-kubeconfig", admin,
                  "--bind-address", "127.0.0.1", "--secure-port", "0", "--port", "0", "--leader-elect=false",
                  "--v", "1"]
        # nodelifecycle off: hand-made Nodes never heartbeat, it would taint them and evict their pods.
        self._spawn("kube-controller-manager", [
            str(BIN / "kube-controller-manager"), *common,
            "--controllers", "*,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-nodeipam,-bootstrapsigner,"
            "-tokencleaner,-csrsigning",
            "--service-account-private-key-file", str(pki / "sa.key"), "--root-ca-file", str(pki / "ca.crt"),
            "--use-service-account-credentials=false"])
        self._spawn("kube-scheduler", [str(BIN / "kube-scheduler"), *common])
        self._setup_rbac()
        self.kubelet = FakeKubelet(self.kubeconfigs["admin"])
        self.timings["total_start_s"] = time.monotonic() - t0

    def _setup_rbac(self) -> None:
        from kubernetes import client

        api = self.client("admin")
        rbac: Any = client.RbacAuthorizationV1Api(api)  # plain dicts, as on the wire
        core: Any = client.CoreV1Api(api)
        import yaml  # type: ignore[import-untyped]

        # The documented manifest itself, so the collector's tests run with exactly those permissions.
        role, binding = yaml.safe_load_all(RBAC_READER.read_text())
        rbac.create_cluster_role(role)
        rbac.create_cluster_role_binding(binding)
        core.create_namespace({"metadata": {"name": VIEW_NAMESPACE}})
        rbac.create_namespaced_role_binding(VIEW_NAMESPACE, {
            "metadata": {"name": "nsviewer-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "nsviewer"}]})
        # "view" is an aggregated ClusterRole: the apiserver creates it empty and the controller-manager's
        # aggregation controller fills its rules a moment later. Until then nsviewer may read nothing, and
        # a test that starts at once sees 403 everywhere (seen on a quiet machine, where nothing waits).
        deadline = time.monotonic() + 60
        while not (getattr(_read_view(rbac), "rules", None) or []):
            if time.monotonic() > deadline:
                raise RuntimeError("the 'view' ClusterRole got no rules within 60 s (clusterrole-aggregation)")
            time.sleep(0.2)
        api.close()

    def client(self, user: str = "admin") -> Any:
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfigs[user]), persist_config=False)

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1]) / 1024
            except OSError:
                pass
        return out

    def stop_process(self, name: str) -> None:
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def restart(self, name: str) -> None:
        self.stop_process(name)
        self._spawn(name, self.cmds[name])
        if name == "kube-apiserver":
            self._wait(name, f"{self.server}/readyz", b"ok", ca=self.pki / "ca.crt", token=TOKENS["admin"])

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.close()
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self.stop_process(name)


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sCluster]:
    if shutil.which("etcd") is None:
        msg = f"etcd not installed: {INSTALL}"
        print(msg, file=sys.stderr)
        pytest.skip(msg)
    ensure_binaries()
    cluster = K8sCluster(tmp_path_factory.mktemp("k8s"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _read_view(rbac: Any) -> Any:
    """The bootstrap "view" ClusterRole, or None while the apiserver has not created it yet."""
    from kubernetes.client.exceptions import ApiException

    try:
        return rbac.read_cluster_role("view")
    except ApiException as e:
        if e.status == 404:
            return None
        raise
