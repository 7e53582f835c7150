"""``clustertop k8s | celery | dask`` run as real subprocesses against real parts: the Kubernetes control
plane of tests/support/k8s_cluster.py (admin and reader identities; ``FakeKubelet`` stands in for kubelets, so
pods on ``fake-*`` Nodes run and pod logs have no kubelet to come from), a real Celery worker on a real
redis-server (tests/collectors/test_celery.py's harness), a real Dask scheduler and worker (tests/collectors/test_dask.py's).
Audit entries are read back from the real redis-server. Waiting is for a state, never timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from clustertop import wire
from clustertop.cli.steer import plain
from clustertop.wire import schema
from tests.conftest import FIXTURES, ROOT
from tests.support.k8s_cluster import K8sCluster, k8s_cluster  # noqa: F401 - the session fixture

TEMPLATE = FIXTURES / "k8s" / "templates" / "train-job.yaml"


def ct(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m clustertop ARGV`` with stdin not a terminal and no steering settings inherited."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_") and k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "clustertop", *argv], cwd=ROOT, env={**base, **(env or {})},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


def audit(redis_server: Any) -> list[schema.AuditEntry]:
    """Every operator's audit entries, oldest first (each operator appends to its own audit:op:NAME)."""
    c = redis_server.client()
    rows = [row for key in c.scan_iter(match=wire.operator_audit_key("*")) for row in c.xrange(key)]
    return [wire.decode(f[b"a"], schema.AuditEntry) for _id, f in sorted(rows)]


def test_plain_shows_terminal_controls_escaped() -> None:
    """``plain`` is ``wire.text.inert``: an escape is shown, never obeyed and never silently dropped (an
    operator should see that a name is odd), and one line is cut at PLAIN_LIMIT."""
    from clustertop.cli.steer import PLAIN_LIMIT

    assert plain("pod\x1b[31m-red\x07\u202e") == "pod\\x1b[31m-red\\x07\\u202e"
    assert plain("a\nb\tc\x1b]0;x\x07", lines=True) == "a\nb\tc\\x1b]0;x\\x07"
    assert plain("\u200bx" * 10**6).endswith("…") and len(plain("y" * 10**6)) == PLAIN_LIMIT


def test_read_only_refuses_everything(redis_server: Any) -> None:
    for argv in (["celery", "revoke", "abc", "--broker", redis_server.url],
                 ["dask", "retire", "tcp://127.0.0.1:1", "--scheduler", "http://127.0.0.1:1"],
                 ["k8s", "scale", "ns/d", "1", "--kubeconfig", "/nonexistent"]):
        r = ct(*argv, "--redis", redis_server.url, env={"CLUSTERTOP_READ_ONLY": "1"})
        assert r.returncode == 1 and "read-only" in r.stderr, (argv, r.stderr)
    assert audit(redis_server) == []  # refused before anything, so nothing happened to audit


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------


def test_k8s_delete_logs_scale_job_and_refusals(redis_server: Any, k8s_cluster: K8sCluster,  # noqa: F811
                                                tmp_path: Path) -> None:
    from kubernetes import client as kc

    from tests.collectors.test_k8s_real import node_body, pod_body, wait_for

    api = k8s_cluster.client("admin")
    core, apps, batch = kc.CoreV1Api(api), kc.AppsV1Api(api), kc.BatchV1Api(api)
    tag = uuid.uuid4().hex[:6]
    ns, node, pod = f"cli-{tag}", f"fake-cli-{tag}", "scratch"
    from clustertop.control import signing, trust

    key_path, pub_path, _ = signing.generate(str(tmp_path), "alice")  # the audit entries are signed by alice
    admin = ["--kubeconfig", str(k8s_cluster.kubeconfigs["admin"]), "--redis", redis_server.url,
             "--key", key_path]
    reader = ["--kubeconfig", str(k8s_cluster.kubeconfigs["reader"]), "--redis", redis_server.url]
    try:
        core.create_namespace({"metadata": {"name": ns}})
        body = node_body(node, 2)
        core.create_node(body)
        core.patch_node_status(node, {"status": body["status"]})
        core.create_namespaced_pod(ns, pod_body(pod, 1, node))
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": "serve"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "serve"}},
                     "template": {"metadata": {"labels": {"app": "serve"}},
                                  "spec": {"containers": [{"name": "s", "image": "nginx"}]}}}})

        def phase() -> str | None:
            try:
                return str(core.read_namespaced_pod(pod, ns).status.phase)
            except kc.exceptions.ApiException as e:
                if e.status == 404:
                    return None
                raise

        wait_for("pod running", phase, lambda p: p == "Running")

        # The reader identity: refused by Kubernetes, and the message names the verb and resource.
        r = ct("k8s", "delete", "pod", f"{ns}/{pod}", "--yes", *reader)
        assert r.returncode == 1 and "may not delete pods" in r.stderr, r.stderr
        r = ct("k8s", "scale", f"{ns}/serve", "4", *reader)
        assert r.returncode == 1 and "may not patch deployments/scale" in r.stderr, r.stderr

        # Logs: no kubelet serves them here -> a clear error, exit 1.
        r = ct("k8s", "logs", f"{ns}/{pod}", "--tail", "5", *admin)
        assert r.returncode == 1 and "kubelet did not serve" in r.stderr, r.stderr

        # No terminal and no --yes: the impact is shown, then refused; the pod is untouched.
        r = ct("k8s", "delete", "pod", f"{ns}/{pod}", *admin)
        assert r.returncode == 1 and "not a terminal" in r.stderr and "--yes" in r.stderr, r.stderr
        assert "not managed: gone for good; its running processes are killed" in r.stdout
        assert phase() == "Running" and audit(redis_server) == []

        r = ct("k8s", "delete", "pod", f"{ns}/{pod}", "--yes", *admin)
        assert r.returncode == 0, r.stderr
        assert f"impact: pod {ns}/{pod}, phase Running" in r.stdout and "deleted pod" in r.stdout
        wait_for("pod deleted", phase, lambda p: p is None)

        r = ct("k8s", "scale", f"{ns}/serve", "3", *admin)
        assert r.returncode == 0 and "1 -> 3" in r.stdout, r.stderr
        assert apps.read_namespaced_deployment_scale("serve", ns).spec.replicas == 3

        job_args = ["name=cli", "image=pytorch/pytorch:2.3", "gpus=1", "epochs=2", "parallelism=1", "-n", ns]
        r = ct("k8s", "job", str(TEMPLATE), *job_args, "--dry-run", *admin)
        assert r.returncode == 0, r.stderr
        assert f"server dry run: ok, job {ns}/train-cli" in r.stdout and "nvidia.com/gpu=1" in r.stdout
        assert batch.list_namespaced_job(ns).items == []  # a dry run creates nothing
        r = ct("k8s", "job", str(TEMPLATE), *job_args, *admin)
        assert r.returncode == 0 and "server dry run: ok" in r.stdout and "created job" in r.stdout, r.stderr
        assert [j.metadata.name for j in batch.list_namespaced_job(ns).items] == ["train-cli"]
        r = ct("k8s", "job", str(TEMPLATE), "name=cli", *admin)  # a missing parameter: usage, nothing sent
        assert r.returncode == 2 and "missing parameter" in r.stderr, r.stderr

        got = [(e.actor, e.action, e.target, e.result, e.where) for e in audit(redis_server)]
        assert got == [("alice", "k8s.delete_pod", f"{ns}/{pod}", "ok", "cli"),
                       ("alice", "k8s.scale", f"{ns}/serve to 3", "ok", "cli"),
                       ("alice", "k8s.create_job", f"{ns}/train-cli", "ok", "cli")]
        pub = signing.load_public(pub_path)
        stream = wire.operator_audit_key("alice")
        rep = trust.verify_stream(stream, redis_server.client().xrange(stream),
                                  lambda e: pub if e.key_id == pub.key_id else None)
        assert rep.entries == 3 and rep.problems == [], rep  # chained and signed by alice's key
    finally:
        try:
            core.delete_namespace(ns)
            core.delete_node(node)
        except kc.exceptions.ApiException:
            pass
        api.close()


# ---------------------------------------------------------------------------------------------
# Celery and Dask
# ---------------------------------------------------------------------------------------------


@pytest.mark.heavy  # a real Celery worker / Dask cluster
def test_celery_terminate_and_pool_grow(redis_server: Any, tmp_path: Path) -> None:
    pytest.importorskip("celery")
    from clustertop.collectors import queues_parse
    from tests.collectors.test_celery import CeleryWorker, wait_for

    worker = CeleryWorker(redis_server.url)
    try:
        worker.wait_ready()
        app = worker.control.app
        marker = tmp_path / "victim"
        res = app.send_task("ct.touch_after", args=(str(marker), 60), queue="work")
        started = Path(str(marker) + ".started")
        pid = int(wait_for("the task to start", lambda: started.exists() and started.read_text()))
        common = ["--broker", redis_server.url, "--redis", redis_server.url, "--operator", "bob"]

        r = ct("celery", "pool", worker.name, "+1", *common)
        assert r.returncode == 0, r.stderr + r.stdout

        def size() -> int | None:
            stats = app.control.inspect(timeout=1, destination=[worker.name]).stats() or {}
            return queues_parse.pool_size(stats.get(worker.name, {}))

        wait_for("the pool to have 3 processes", lambda: size() == 3)

        r = ct("celery", "revoke", res.id, "--terminate", "--signal", "KILL", *common)
        assert r.returncode == 0 and res.id in r.stdout, r.stderr + r.stdout

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            try:  # a zombie of the pool child also counts: it can no longer write the file
                return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
            except OSError:
                return True

        wait_for("the pool process running the task to be killed", gone)
        assert not marker.exists()

        # A task id carrying terminal escapes comes back (in the workers' reply) as plain text.
        r = ct("celery", "revoke", "evil\x1b[2J", *common)
        assert r.returncode == 0 and "\x1b" not in r.stdout + r.stderr and "evil\\x1b[2J" in r.stdout, r.stdout

        # Shutdown without a terminal and without --yes: refused, the worker still answers.
        r = ct("celery", "shutdown", worker.name, *common)
        assert r.returncode == 1 and "not a terminal" in r.stderr
        assert app.control.ping(destination=[worker.name], timeout=1)

        got = [(e.action, e.result, e.where, e.actor) for e in audit(redis_server)]
        assert got == [("celery.pool_grow", "ok", "cli", "bob"), ("celery.terminate", "ok", "cli", "bob"),
                       ("celery.revoke", "ok", "cli", "bob")]
    finally:
        worker.stop()


@pytest.mark.heavy  # a real Celery worker / Dask cluster
def test_dask_retire_removes_a_worker_and_says_unaudited_without_a_store() -> None:
    pytest.importorskip("distributed")
    from distributed import Client

    from tests.collectors.test_dask import WAIT_S, DaskCluster, wait_for

    c = DaskCluster(2)
    try:
        with Client(c.address, timeout=WAIT_S, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=WAIT_S)
            victim = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
            r = ct("dask", "retire", victim, "--scheduler", c.url)
            assert r.returncode == 0 and f"retired {victim}" in r.stdout, r.stderr + r.stdout
            assert "not audited" in r.stderr
            wait_for("the worker to leave", lambda: victim not in client.scheduler_info(n_workers=-1)["workers"])
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
            r = ct("dask", "retire", victim, env={"CLUSTERTOP_DASK_SCHEDULER": c.url})
            assert r.returncode == 1 and "retired nothing" in r.stderr
        r = ct("dask", "retire", victim)
        assert r.returncode == 2 and "no scheduler" in r.stderr
    finally:
        c.stop()
