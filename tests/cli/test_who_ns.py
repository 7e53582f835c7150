"""`clustertop who USER --ns NAME` (the people screen's ``:ns``) as a real process against a real redis-server:
snapshots published by the agent's own Publisher (tests/support/builders.publish), the Kubernetes payload beside
them, an energy ledger where agents write it."""

from __future__ import annotations

import json
import time

from clustertop import wire
from clustertop.wire import schema
from tests.cli.test_snapshot_cli import clustertop
from tests.conftest import RedisServer
from tests.support import builders as b
from tests.support.hostile import RAW_UNSAFE

GIB = b.GIB
ML, OTHER, GONE = ("4f1c2a9e-0b7d-4c3e-9a55-2d6b8e1f0c77", "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
                   "00000000-1111-4222-8333-444444444444")


def publish(redis_server: RedisServer) -> None:
    """alice: pid 10 in a pod of "ml" (GPU 0 and the process list), pid 11 outside pods (GPU 1), pid 20 in a
    pod of "other", pid 30 in a pod the Kubernetes payload does not list; bob in "ml" too."""
    now = time.time()

    def pod(uid: str) -> schema.Owner:
        return schema.Owner(kind="pod", pod_uid=uid)

    node = b.node("gpu-a", ts=now, gpus=[
        b.gpu(0, procs=[schema.GpuProc(pid=10, used_mem_bytes=6 * GIB, user="alice", cmdline="python train.py",
                                       owner=pod(ML)),
                        schema.GpuProc(pid=12, used_mem_bytes=GIB, user="bob", cmdline="python bob.py", owner=pod(ML))]),
        b.gpu(1, procs=[schema.GpuProc(pid=11, used_mem_bytes=2 * GIB, user="alice", cmdline="python eval.py")])],
        procs=[schema.Proc(pid=10, user="alice", cmdline="python train.py", cpu_pct=250.0, rss_bytes=4 * GIB,
                           owner=pod(ML)),
               schema.Proc(pid=20, user="alice", cmdline="python serve.py", cpu_pct=5.0, owner=pod(OTHER)),
               schema.Proc(pid=30, user="alice", cmdline="python old.py", cpu_pct=1.0, owner=pod(GONE))])
    pods = [schema.K8sPod(namespace="ml", name="train-a", node="gpu-a", phase="Running", gpus=1, uid=ML),
            schema.K8sPod(namespace="other", name="serve-b", node="gpu-a", phase="Running", gpus=0, uid=OTHER)]
    k8s = schema.ClusterPayload(name="kubernetes", source_host="gpu-a", ts=now, ok=True,
                                kubernetes=schema.Kubernetes(pods=pods))
    client = redis_server.client()
    b.publish(client, [node], cluster=[k8s])
    use = [schema.EnergyUse(kind="user", name="alice", joules=7.2e6, gpu_s=3600.0)]
    led = schema.EnergyLedger(host="gpu-a", ts=now, recent={int(now) - 100: use}, hours={int(now) - 600: use})
    client.set(wire.energy_key("gpu-a"), wire.encode(led))


def test_who_ns_keeps_the_namespace_and_says_what_it_hides(redis_server: RedisServer) -> None:
    publish(redis_server)
    out = clustertop("who", "alice", "--ns", "ml", "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "alice: 1 GPU processes, 1 processes, 1 pods, 0 containers, 0 launched tasks, 0 Celery tasks"
    assert lines[1] == "GPUs held now: 1 on 1 nodes, 6.0 GiB VRAM"  # GPU 1's eval.py is outside pods
    assert lines[2].endswith("(in every namespace: the ledgers keep none)")  # energy is not narrowed: said
    assert lines[3] == ("ns ml: only processes in its pods; hidden: 1 process outside pods, 1 process in other "
                        "namespaces' pods, 1 process in pods the Kubernetes payload does not name (without --ns: shown)")
    assert "  gpu-a             ml/train-a  Running  1 GPUs requested  (via gpu-a pid 10)" in lines
    assert not any(x in out.stdout for x in ("eval.py", "serve.py", "old.py", "bob"))

    other = clustertop("who", "alice", "--ns", "other", "--redis", redis_server.url)
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines()[0].startswith("alice: 0 GPU processes, 1 processes, 1 pods")
    assert "other/serve-b" in other.stdout and "train.py" not in other.stdout
    # pid 10 is both a GPU process and a listed process: hidden once.
    assert "hidden: 2 processes outside pods" not in other.stdout
    assert ("hidden: 1 process outside pods, 1 process in other namespaces' pods, 1 process in pods the "
            "Kubernetes payload does not name") in other.stdout

    # --ns all is every namespace, the same answer as without --ns; an empty namespace hides all, and says so.
    everything = clustertop("who", "alice", "--redis", redis_server.url)
    assert clustertop("who", "alice", "--ns", "all", "--redis", redis_server.url).stdout == everything.stdout
    assert "ns " not in everything.stdout and "every namespace" not in everything.stdout
    empty = clustertop("who", "alice", "--ns", "nobody-here", "--redis", redis_server.url)
    assert empty.returncode == 0 and empty.stdout.startswith("alice: 0 GPU processes, 0 processes, 0 pods")
    assert "ns nobody-here: only processes in its pods; hidden: 1 process outside pods" in empty.stdout


def test_who_ns_json(redis_server: RedisServer) -> None:
    publish(redis_server)
    out = clustertop("who", "alice", "--ns", "ml", "--json", "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["namespace"] == "ml"
    assert doc["hidden"] == {"no pod": 1, "other namespace": 1, "unknown pod": 1}
    assert {(i["kind"], i["pid"]) for i in doc["items"]} == {("gpu-process", 10), ("process", 10), ("pod", None)}
    assert doc["gpus"] == [{"host": "gpu-a", "index": 0}] and doc["vram_bytes"] == 6 * GIB
    assert doc["energy"]["day"]["kwh"] == 2.0  # the user's, every namespace
    plain = json.loads(clustertop("who", "alice", "--json", "--redis", redis_server.url).stdout)
    assert plain["namespace"] is None and plain["hidden"] == {} and len(plain["items"]) == 7  # 2 GPU, 3 processes, 2 pods


def test_who_ns_refuses_what_is_no_namespace_name() -> None:
    for bad in ("ML", "a_b", "x" * 64, "-a", "\u202eevil\x1b[2J"):
        out = clustertop("who", "alice", f"--ns={bad}", "--redis", "redis://127.0.0.1:1/0")
        # Refused before the store is read (exit 2, not 1 "unreachable"), the value shown escaped.
        assert out.returncode == 2 and "not a namespace name" in out.stderr, (bad, out.stderr)
        assert not RAW_UNSAFE.search(out.stderr.replace("\n", ""))
