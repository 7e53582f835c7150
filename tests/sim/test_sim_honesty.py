"""The simulator publishes no field that the real collectors leave empty.

Field paths (``NodeSnapshot.gpus[].power_mw``) are compared, not values: the paths the simulator fills
over a few minutes of simulated time, against the paths the real collectors fill here, in this test,
on their real inputs: the host collector on this machine's /proc and /sys, the GPU collector on the fake
NVML (``tests/support/nvml.py``: no GPU here; it keeps NVML's semantics, NotSupported included) with
the GTX 1080 Ti and H100 captures, bonds, network mounts and sensors on their captured /proc and /sys
trees, the captured host tree with a pod's and a service's processes added, and
the Celery collector on a real redis-server with a real Celery worker. A section the simulator
publishes that no real collector here covers must be named in ``NOT_CHECKED`` with the reason, so a new
section cannot slip by: the test fails on any section in neither.
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clustertop.collectors.base import Context, Roots
from clustertop.sim.simulate import SimCluster
from clustertop.wire import schema
from tests.conftest import FIXTURES, RedisServer

T0 = 1767225600.0

#: Top-level sections of the simulator's payloads this test does not compare, and why. Everything
#: else the simulator publishes is compared.
NOT_CHECKED = {
    "NodeSnapshot.collectors": "the runner's own bookkeeping, filled for every collector alike",
    "NodeSnapshot.agent": "the agent's own cost (AgentStats), measured by the runner, not a collector",
    "NodeSnapshot.tasks": "launched tasks: the executor's records, tested in tests/agents",
    "NodeSnapshot.templates": "the agent's own config",
    "ClusterPayload.ceph": "needs a real Ceph cluster (tests/collectors/test_ceph_real.py)",
    "ClusterPayload.kubernetes": "needs a real Kubernetes (tests/collectors/test_k8s_real.py)",
    "ClusterPayload.queues.dask_tasks_processing": "needs a real Dask cluster (tests/collectors/test_dask.py)",
    "ClusterPayload.queues.dask_tasks_waiting": "needs a real Dask cluster (tests/collectors/test_dask.py)",
    "ClusterPayload.queues.workers[dask]": "needs a real Dask cluster (tests/collectors/test_dask.py)",
    "ClusterPayload.queues.dask_computations": "needs a real Dask cluster (tests/collectors/test_dask_progress.py)",
    "ClusterPayload.queues.dask_task_stream": "needs a real Dask cluster (tests/collectors/test_dask_progress.py)",
    **{f"ClusterPayload.queues.dask_stream{f}": "needs a real Dask cluster (tests/collectors/test_dask_progress.py)"
       for f in ("", "_bucket_s", "_from_ts", "_to_ts", "_other_workers")},
}
#: Identity and envelope fields every payload carries, whoever writes it.
ENVELOPE = {"v", "host", "ts", "seq", "interval_s", "role", "labels", "name", "source_host", "ok", "error",
            "last_ok_ts"}


def paths(obj: Any, prefix: str, out: set[str], top: bool = False) -> set[str]:
    """Every field path under ``obj`` whose value is not None (list items as ``[]``, dict values as ``{}``;
    a Worker's path says its kind, Celery and Dask workers being different sources); ``top``: ``prefix``
    itself too (a collector's output is the section's value)."""
    if top and obj is not None:
        out.add(prefix)
    if isinstance(obj, msgspec.Struct):
        for f in obj.__struct_fields__:
            v = getattr(obj, f)
            if v is None:
                continue
            p = f"{prefix}.{f}"
            out.add(p)
            paths(v, p, out)
    elif isinstance(obj, list):
        for item in obj:
            p = prefix + (f"[{item.kind}]" if isinstance(item, schema.Worker) else "[]")
            out.add(p)
            paths(item, p, out)
    elif isinstance(obj, dict):
        for v in obj.values():
            paths(v, prefix + "{}", out)
    return out


def sim_paths() -> set[str]:
    sim = SimCluster(seed=3)
    out: set[str] = set()
    for i in range(0, 600, 7):  # ten minutes: OSD flaps, jobs start and end, queues fill and drain
        ticks, cluster = sim.step(T0 + i)
        for snap, _ in ticks:
            paths(snap, "NodeSnapshot", out)
        for c in cluster:
            paths(c, "ClusterPayload", out)
    return out


def real_node_paths(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> set[str]:
    from clustertop.collectors.bonds import BondsCollector
    from clustertop.collectors.gpu import GpuCollector
    from clustertop.collectors.host import HostCollector
    from clustertop.collectors.nfs import NetMountCollector
    from clustertop.collectors.sensors import SensorsCollector
    from tests.support import nvml as fake

    node_a = FIXTURES / "gpu" / "node-a"  # a captured /proc: a pod's training process, a service's
    out: set[str] = set()
    host = HostCollector(Context(node="t"))
    host.collect()
    time.sleep(0.3)  # rates need two reads
    paths(host.collect(), "NodeSnapshot.system", out, top=True)
    # The captured host tree, two samples 2 s apart (tests/collectors/test_host.py), with node-a's pod
    # process and service process added: what this container's /proc cannot show.
    tree = tmp / "host"
    shutil.copytree(FIXTURES / "host" / "basic", tree, symlinks=True)
    for pid in ("4242", "4300"):
        shutil.copytree(node_a / "proc" / pid, tree / "proc" / pid)
    host = HostCollector(Context(node="t", roots=Roots(proc=str(tree / "proc"), sys=str(tree / "sys")),
                                 config={"procs_interval": 2}))
    host.collect()
    shutil.copytree(FIXTURES / "host" / "basic-second", tree, dirs_exist_ok=True)
    paths(host.collect(), "NodeSnapshot.system", out, top=True)
    for model, count in (("gtx1080ti", 2), ("h100_sxm", 8)):
        lib = fake.install(monkeypatch, model, count)
        lib.devices[0].compute = [fake.FakeProc(4242, 74 * 1024**3), fake.FakeProc(4300, 2 * 1024**3)]
        g = GpuCollector(Context(node="g", roots=Roots(proc=str(node_a / "proc"), etc=str(node_a / "etc")),
                                 config={"pcie": True}, config_file="agent.toml"))
        g.collect()
        paths(g.collect(), "NodeSnapshot.gpus", out, top=True)
    for scenario in ("healthy", "degraded", "throughput"):
        top = FIXTURES / "bonds" / "sysfs" / scenario
        b = BondsCollector(Context(node="n", roots=Roots(proc=str(top / "proc"), sys=str(top / "sys"))))
        b.collect()
        paths(b.collect(), "NodeSnapshot.bonds", out, top=True)
    nfs = NetMountCollector(Context(node="n", roots=Roots(proc=str(FIXTURES / "nfs" / "gpu-node" / "proc")),
                                    config={}, config_file="agent.toml"), probe=lambda p: (1, 0))
    nfs.collect()
    paths(nfs.collect(), "NodeSnapshot.netmounts", out, top=True)
    for board in ("x86-server", "arm-board"):  # captured /sys/class/hwmon and thermal zones
        sensors = SensorsCollector(Context(node="n", roots=Roots(sys=str(FIXTURES / "sensors" / board / "sys")),
                                           config={}, config_file="agent.toml"))
        sensors.collect()
        paths(sensors.collect(), "NodeSnapshot.sensors", out, top=True)
    return out


def real_container_paths(tmp: Path) -> set[str]:
    """The real containers collector (``collect``, two polls: CPU % needs two samples) on the answers captured
    from a real dockerd (tests/fixtures/docker/), served by an object with the Engine's calls. The capture has
    one inspect (d1's): it stands in for the other two containers (same engine, same image) so that their
    stats are asked too; only which fields get filled matters here."""
    from clustertop.collectors import containers as engine_api

    docker = FIXTURES / "docker"

    def load(name: str) -> Any:
        return json.loads((docker / name).read_text())

    listed, inspect = load("containers_json.json"), load("inspect_d1.json")
    stats: dict[str, list[Any]] = {}
    for name in ("stats_burn.json", "stats_burn_oneshot.json", "stats_d1_oneshot.json", "stats_exited.json"):
        s = load(name)
        stats.setdefault(s["id"], []).append(s)  # in capture order: one answer per poll
    poll = [0]

    class Captured:
        def version(self) -> Any:
            return load("version.json")

        def list(self) -> Any:
            return listed

        def inspect(self, cid: str) -> Any:
            return {**inspect, "Id": cid}

        def stats(self, cid: str) -> Any:
            answers = stats.get(cid) or [None]
            return answers[min(poll[0], len(answers) - 1)]

        def close(self) -> None:
            pass

    sock = tmp / "docker.sock"
    sock.touch()  # collect() checks the socket exists and is readable: the captured answers stand behind it
    c = engine_api.ContainersCollector(Context(node="n", config={
        "socket": f"unix://{sock}", "templates": {"t": {"image": "i", "cmd": ["x", "{n}"], "params": {"n": "int"}}}}))
    c.engine = Captured()  # type: ignore[assignment]
    out: set[str] = set()
    try:
        for poll[0] in range(2):
            paths(c.collect(), "NodeSnapshot.containers", out, top=True)
    finally:
        c.close()
    return out


def test_paths_walks_structs_lists_and_worker_kinds() -> None:
    q = schema.Queues(queues=[schema.Queue(broker="b", name="q", depth=3)],
                      workers=[schema.Worker(name="w", kind="dask", nthreads=2)])
    got = paths(q, "Q", set())
    assert {"Q.queues", "Q.queues[].depth", "Q.workers[dask]", "Q.workers[dask].nthreads"} <= got
    assert "Q.queues[].unacked" not in got and "Q.workers[celery]" not in got


def real_celery_paths(worker: Any, redis_server: RedisServer, tmp_path: Path) -> set[str]:
    """The real collector on a real broker with a real worker: a held acks_late task (unacked, active),
    queued messages, a queue nobody consumes, two fresh inspections (rates); the worker's events (task
    history) and a saved group with failures in its Redis result backend (groups)."""
    from celery import Celery, group

    from tests.collectors.test_celery import Clock, collector, wait_for
    from tests.collectors.test_celery_groups import close_client

    app = worker.control.app
    clock = Clock()
    backend = redis_server.url.rsplit("/", 1)[0] + "/1"
    c = collector([redis_server.url], clock, result_backend=backend)
    client = Celery("ct-client", broker=redis_server.url, backend=backend, set_as_current=False)
    client.conf.update(task_default_queue="work", result_extended=True)
    out: set[str] = set()
    try:
        wait_for("the event receiver to listen", lambda: c.streams[0].since is not None)
        saved = group(client.signature("ct.maybe_fail", args=(i,)) for i in range(6)).apply_async()
        saved.save()

        def group_done() -> bool:
            q = c.collect()
            gs = q.celery_groups.groups if q.celery_groups is not None else None
            clock.t += 31  # the next discovery round
            return bool(gs) and gs[0].done == 6 and gs[0].name is not None
        wait_for("the saved group to end, named by the events", group_done)
        gate = tmp_path / "hold"
        app.send_task("ct.hold_late", args=(str(gate), 30), queue="work")
        wait_for("the held task to start", lambda: Path(f"{gate}.started").exists())
        for i in range(3):
            app.send_task("ct.add", args=(i, i), queue="backlog")
            q = c.collect()
            clock.t += 31
        paths(schema.ClusterPayload(name="celery", queues=q), "ClusterPayload", out)
        Path(f"{gate}.release").touch()
    finally:
        close_client(client)
        c.close()
    return out


@pytest.fixture
def worker(redis_server: RedisServer) -> Iterator[Any]:
    from tests.collectors.test_celery import CeleryWorker

    w = CeleryWorker(redis_server.url, events=True, backend=redis_server.url.rsplit("/", 1)[0] + "/1")
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def section(path: str) -> str:
    return next((k for k in NOT_CHECKED if path == k or path.startswith((k + ".", k + "[", k + "{"))), "")


#: Paths real collectors fill only from inputs neither this machine nor the captured trees have, each
#: with the test (file, function) that shows the real collector filling it and a text that function must
#: still contain; the test checks both, so an entry cannot outlive its proof unnoticed.
FILLED_ELSEWHERE: dict[str, tuple[str, str, str]] = {
    # veth and virtio NICs report no speed (-1 / EINVAL); a real NIC's /sys speed file, built by the test:
    "NodeSnapshot.system.nics[].speed_mbps": ("tests/collectors/test_host.py", "test_bond_tree",
                                             '("bond-slave", 1000, True, 9000)'),
}


def test_simulator_publishes_only_what_real_collectors_fill(monkeypatch: pytest.MonkeyPatch, worker: Any,
                                                           redis_server: RedisServer, tmp_path: Path) -> None:
    sim = sim_paths()
    real = (real_node_paths(monkeypatch, tmp_path) | real_celery_paths(worker, redis_server, tmp_path)
            | real_container_paths(tmp_path))
    for path, (file, func, needle) in FILLED_ELSEWHERE.items():  # the named test still shows it
        tree = ast.parse((Path(__file__).parents[2] / file).read_text())
        fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func), None)
        assert fn is not None and needle in ast.unparse(fn).replace("'", '"'), f"{path}: {file}::{func} no longer shows it"
    compared = {p for p in sim if not section(p) and p.split(".")[1].split("[")[0].split("{")[0] not in ENVELOPE}
    invented = sorted(compared - real - set(FILLED_ELSEWHERE))
    # A whole section the simulator starts to publish (its top path) lands here too unless NOT_CHECKED names it.
    assert not invented, "the simulator publishes what no real collector fills:\n" + "\n".join(invented)
