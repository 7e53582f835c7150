"""`clustertop acl --summary-node` against a real redis-server started with the file it prints: the summary node's
service works with its user (reads its buckets' nodes, holds the summary leases, writes signed summaries), and it
may write nothing else of others'; no other node (plain or cluster node) may write a summary key."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clustertop import wire
from clustertop.agents.lease import Lease
from clustertop.agents.summaries import SummariesSection, SummaryService
from clustertop.control import signing
from clustertop.control.summary import open_summary
from clustertop.store.resp import Client
from clustertop.wire.alerts import ALERTS_KEY, ALERTS_LEASE
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key, summary_lease
from tests.conftest import ROOT, RedisServer
from tests.support import builders as b

HOSTS = [f"gpu{i:02d}" for i in range(1, 21)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    d = tmp_path_factory.mktemp("acl")
    pw = d / "passwords"
    out = subprocess.run([sys.executable, "-m", "clustertop", "acl", "--node", "gpu01", "--cluster-node", "gpu02",
                          "--summary-node", "sum01", "--admin", "root", "--password-dir", str(pw)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    (d / "users.acl").write_text(out.stdout)
    srv = RedisServer(["--aclfile", str(d / "users.acl")])
    try:
        yield srv, pw
    finally:
        srv.stop()


def url(server: tuple[RedisServer, Path], user: str) -> str:
    srv, pw = server
    return f"redis://{user}:{(pw / user).read_text().strip()}@127.0.0.1:{srv.port}/0"


def as_user(server: tuple[RedisServer, Path], user: str) -> redis.Redis:
    srv, pw = server
    return redis.Redis(host="127.0.0.1", port=srv.port, username=user, password=(pw / user).read_text().strip())


def refused(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as e:
        return "NOPERM" in str(e)
    return False


def test_the_summary_service_works_with_a_summary_node_user(server: tuple[RedisServer, Path]) -> None:
    b.publish(as_user(server, "admin-root"), [b.tower(h) for h in HOSTS])
    key = signing.new_key()
    svc = SummaryService(SummariesSection(interval=1.0), "sum01", 1.0, lambda: Client.from_url(url(server, "node-sum01")),
                         lambda client, name, period: Lease(client, name, "sum01", period), key)
    try:
        assert svc.step(), svc.error
        assert svc.held == set(range(BUCKETS)) and svc.last_nodes == len(HOSTS)
        admin = as_user(server, "admin-root")
        bucket = bucket_of(HOSTS[0])
        s, why = open_summary(admin.get(summary_key(bucket)), {"sum01": key.public()}, bucket)
        assert why is None and s is not None and HOSTS[0] in s.hosts
        assert s.gpus is not None and len(s.gpus.node) == 2 * len(s.hosts)  # the briefs' GPUs were readable
    finally:
        svc.close()
    assert as_user(server, "admin-root").get(wire.lease_key(summary_lease(0))) is None  # released: +del


def test_only_a_summary_node_writes_summaries_and_it_writes_nothing_else(server: tuple[RedisServer, Path]) -> None:
    plain, cluster, folder = (as_user(server, u) for u in ("node-gpu01", "node-gpu02", "node-sum01"))
    attacks = {
        "a plain node writes a summary": lambda: plain.set(summary_key(3), b"x"),
        "a plain node deletes a summary": lambda: plain.delete(summary_key(3)),
        "a plain node takes a summary lease": lambda: plain.set(wire.lease_key(summary_lease(3)), b"t", nx=True),
        "a cluster node writes a summary": lambda: cluster.set(summary_key(3), b"x"),
        "the folder writes a node's digest": lambda: folder.set(wire.digest_key("gpu01"), b"x"),
        "the folder writes a node's seal": lambda: folder.set(wire.seal_key("gpu01"), b"x"),
        "the folder writes the alert state": lambda: folder.set(ALERTS_KEY, b"x"),
        "the folder takes the alerts lease": lambda: folder.set(wire.lease_key(ALERTS_LEASE), b"t"),
        "the folder takes a cluster lease": lambda: folder.set(wire.lease_key("ceph"), b"t"),
        "the folder writes a cluster payload": lambda: folder.set(wire.cluster_key("ceph"), b"x"),
        "the folder removes a node from the index": lambda: folder.zrem(wire.NODES_KEY, "gpu01"),
        "the folder sends a command": lambda: folder.xadd(wire.cmd_key("gpu01"), {"c": b"x"}),
        "the folder runs Lua": lambda: folder.eval("return 1", 0),
    }
    allowed = [name for name, call in attacks.items() if not refused(call)]
    assert not allowed, allowed
    # What it may do (a refusal here raises NOPERM): write and delete summaries, read every node's payloads.
    assert folder.set(summary_key(3), b"x", px=1000)
    assert folder.delete(summary_key(3)) == 1
    folder.get(wire.digest_key("gpu01"))
    folder.mget([wire.brief_key(h) for h in HOSTS[:3]])
    folder.zrange(wire.NODES_KEY, 0, -1)
