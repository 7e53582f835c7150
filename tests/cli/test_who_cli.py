"""`clustertop who USER` as a real process against a real redis-server: snapshots published by the agent's
own Publisher (tests/support/builders.publish), the Kubernetes payload beside them, energy ledgers
where agents write them (``wire.energy_key``)."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings

from clustertop import wire
from clustertop.cli import who
from clustertop.read import people
from clustertop.read.model import NodeView
from clustertop.wire import schema
from tests.cli.test_snapshot_cli import clustertop
from tests.conftest import RedisServer, free_port
from tests.support import builders as b
from tests.support.hostile import RAW_UNSAFE, HostileCluster, hostile_clusters

GIB = b.GIB
UID = "4f1c2a9e-0b7d-4c3e-9a55-2d6b8e1f0c77"
EVIL = "\u202eevil\x1b[31m"


def publish_cluster(redis_server: RedisServer) -> None:
    now = time.time()
    in_pod = schema.Owner(kind="pod", pod_uid=UID)  # what the node knows: the uid from the cgroup
    a = b.node("gpu-a", ts=now, gpus=[
        b.gpu(0, procs=[schema.GpuProc(pid=10, used_mem_bytes=6 * GIB, user="alice", cmdline="python train.py",
                                       owner=in_pod)]),
        b.gpu(1, procs=[schema.GpuProc(pid=11, used_mem_bytes=2**64 - 1, user="alice", cmdline="python eval.py"),
                        schema.GpuProc(pid=12, used_mem_bytes=GIB, user="bob", cmdline="python bob.py")])],
        procs=[schema.Proc(pid=10, user="alice", cmdline="python train.py", cpu_pct=250.0, rss_bytes=4 * GIB,
                           owner=in_pod)])
    hostile = b.node("gpu-h", ts=now, gpus=[b.gpu(0, procs=[
        schema.GpuProc(pid=66, used_mem_bytes=GIB, user=EVIL, cmdline="\x1b]0;owned\x07 rm -rf / \u202e" + "y" * 100_000)])],
        procs=[])
    pod = schema.K8sPod(namespace="ml", name="train-a-7d9f-x2", node="gpu-a", phase="Running", gpus=1,
                        owner_kind="ReplicaSet", owner="train-a-7d9f", uid=UID)
    k8s = schema.ClusterPayload(name="kubernetes", source_host="gpu-a", ts=now, ok=True,
                                kubernetes=schema.Kubernetes(pods=[pod]))
    client = redis_server.client()
    b.publish(client, [a, hostile], cluster=[k8s])
    use = [schema.EnergyUse(kind="user", name="alice", joules=7.2e6, gpu_s=3600.0)]
    led = schema.EnergyLedger(host="gpu-a", ts=now, recent={int(now) - 100: use}, hours={int(now) - 600: use})
    client.set(wire.energy_key("gpu-a"), wire.encode(led))
    client.set(wire.energy_key("gpu-h"), b"\xff garbage")


def test_who_text(redis_server: RedisServer) -> None:
    publish_cluster(redis_server)
    out = clustertop("who", "alice", "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "alice: 2 GPU processes, 1 processes, 1 pods, 0 containers, 0 launched tasks, 0 Celery tasks"
    # 2**64 - 1 bytes is no VRAM figure: summed where known, the rest said.
    assert lines[1] == "GPUs held now: 2 on 1 nodes, 6.0 GiB VRAM (+1 processes of unknown VRAM)"
    assert lines[2].startswith("energy: last hour 2.00 kWh, 1.00 GPU-hours; last 24 h 2.00 kWh, 1.00 GPU-hours")
    assert "ledgers unreadable on 1 nodes: gpu-h" in lines[2]
    text = out.stdout
    # The pod is named on read (read/owners.py) and found through her process.
    assert "  gpu-a             GPU 0  pid 10  6.0 GiB VRAM  python train.py  (pod ml/train-a-7d9f-x2)" in lines
    assert "  gpu-a             GPU 1  pid 11  N/A GiB VRAM  python eval.py" in lines
    assert ("  gpu-a             ml/train-a-7d9f-x2  Running  1 GPUs requested  (ReplicaSet train-a-7d9f; "
            "via gpu-a pid 10)") in lines
    assert "bob" not in text and lines[-1] == "searched 2 nodes"


def test_who_hostile_user_is_escaped(redis_server: RedisServer) -> None:
    publish_cluster(redis_server)
    out = clustertop("who", EVIL, "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    assert not RAW_UNSAFE.search(out.stdout)  # nothing reaches the terminal raw
    assert out.stdout.startswith("\\u202eevil\\x1b[31m: 1 GPU processes")
    assert "\\x1b]0;owned\\x07 rm -rf / \\u202eyyy" in out.stdout and len(out.stdout) < 2000  # cut, not 100 KB
    js = clustertop("who", EVIL, "--json", "--redis", redis_server.url)
    assert js.returncode == 0, js.stderr
    assert not RAW_UNSAFE.search(js.stdout.replace("\n", ""))
    doc = json.loads(js.stdout)
    assert doc["user"] == EVIL and doc["items"][0]["host"] == "gpu-h"  # the same strings to a JSON reader


def test_who_json(redis_server: RedisServer) -> None:
    publish_cluster(redis_server)
    out = clustertop("who", "alice", "--json", "--redis", redis_server.url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["user"] == "alice" and doc["source"] == redis_server.url
    assert doc["gpus"] == [{"host": "gpu-a", "index": 0}, {"host": "gpu-a", "index": 1}]
    assert (doc["vram_bytes"], doc["vram_unknown"]) == (6 * GIB, 1)
    assert doc["energy"]["day"]["kwh"] == 2.0 and doc["energy"]["day"]["hosts"] == ["gpu-a"]
    assert list(doc["energy_errors"]) == ["gpu-h"]
    items = {(i["kind"], i["pid"]): i for i in doc["items"]}
    assert set(items) == {("gpu-process", 10), ("gpu-process", 11), ("process", 10), ("pod", None)}
    assert items[("gpu-process", 11)]["vram_bytes"] is None  # unknown is null, never 0
    assert items[("pod", None)]["ident"] == UID and items[("pod", None)]["name"] == "ml/train-a-7d9f-x2"
    nobody = json.loads(clustertop("who", "carol", "--json", "--redis", redis_server.url).stdout)
    assert nobody["items"] == [] and nobody["energy"] == {"hour": None, "day": None}


def test_who_without_or_with_an_unreachable_store() -> None:
    out = clustertop("who", "alice")
    assert out.returncode == 2 and "no store" in out.stderr
    out = clustertop("who", "alice", "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1 and "unreachable" in out.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_clusters(max_nodes=3))
def test_who_output_of_any_hostile_cluster_is_inert(c: HostileCluster) -> None:
    """Whatever nodes and cluster payloads hold: the search never raises, the text never carries a raw
    control, bidi or zero-width character, and the JSON parses. Users searched: names the nodes carry."""
    views = [NodeView(n.host, "up", snap=n.snap) for n in c.nodes]
    users = {p.user for n in c.nodes for g in n.snap.gpus or () for p in g.procs or () if p.user}
    users |= {p.user for n in c.nodes for p in (n.snap.system.procs if n.snap.system else None) or () if p.user}
    for user in sorted(users)[:3] + ["alice", "0"]:
        w = people.find(user, views, c.cluster)
        assert not RAW_UNSAFE.search(who.as_text(w, {h: "x\x1b" for h in [c.nodes[0].host]}).replace("\n", ""))
        doc = json.loads(who.as_json(who.as_document(w, "test", {})))
        assert len(doc["items"]) == len(w.items)
