"""The agent folds bucket summaries (issue 18): two real agents with ``[summaries]`` against a real redis-server,
on the agent's own RESP client. One holds every bucket's lease and writes signed summaries; when it stops, the
other takes the buckets over and the summaries carry its name; with ``max_buckets`` the two split the buckets.
A store that goes away costs the service its leases, never the agent; ``[summaries]`` mistakes name file and key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from clustertop.agents.agent import Agent
from clustertop.agents.config import AgentConfig, CollectorConfig, load_config
from clustertop.agents.lease import Lease
from clustertop.agents.summaries import SummariesSection, SummaryService, bucket_order
from clustertop.collectors import base
from clustertop.config import ConfigError
from clustertop.control import signing
from clustertop.control.summary import open_summary
from clustertop.control.trust import KnownNodes
from clustertop.read.cluster import summarize
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.read.summary import merge
from clustertop.store.resp import Client
from clustertop.wire.summary import BUCKETS, bucket_of, summary_key, summary_lease
from tests.conftest import RedisServer
from tests.support import builders as b
from tests.support.agent_thread import Running
from tests.support.waiting import until as wait

HOSTS = [f"n{i:03d}" for i in range(60)]


def agent(node: str, url: str, tmp: Path, **section: Any) -> Agent:
    # no node collectors: this test is about the summaries thread, not about what this machine has
    cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
    return Agent(AgentConfig(node=node, redis_url=url, interval_s=0.3, collectors=cols, state_dir=str(tmp / node),
                             summaries=SummariesSection(interval=0.25, **section)))


def opened(client: Any, known: KnownNodes) -> dict[int, Any]:
    out = {}
    for bucket in range(BUCKETS):
        s, _ = open_summary(client.get(summary_key(bucket)), known, bucket)
        if s is not None:
            out[bucket] = s
    return out


@pytest.fixture
def cluster(redis_server: RedisServer) -> Any:
    c = redis_server.client()
    b.publish(c, [b.tower(h, (10 + i % 80, 90)) for i, h in enumerate(HOSTS)])  # long TTL (builders)
    return c


def test_one_agent_folds_every_bucket_and_the_other_takes_over(redis_server: RedisServer, cluster: Any,
                                                               tmp_path: Path) -> None:
    a1, a2 = agent("sum1", redis_server.url, tmp_path), agent("sum2", redis_server.url, tmp_path)
    assert a1.node_key is not None and a2.node_key is not None
    known = KnownNodes(keys={"sum1": a1.node_key.public(), "sum2": a2.node_key.public()})
    buckets = {bucket_of(h) for h in [*HOSTS, "sum1", "sum2"]}  # the agents publish their own nodes too
    r1 = Running(a1)
    try:
        got = wait(lambda: (s := opened(cluster, known)) and set(s) == buckets and s, "every bucket summarised")
        assert {s.folder for s in got.values()} == {"sum1"}
        # What the summaries say is what a read of every digest says (once they cover the agent's own node too,
        # which starts publishing as its summary thread starts).
        reader = Reader(cluster)

        def agree() -> bool:
            st = reader.read(ReadPlan(Level.GPUS))
            return merge(list(opened(cluster, known).values()), st.cluster) == summarize(st.nodes, st.cluster)

        wait(agree, "the summaries' totals equal a digest read's")
        assert sum(len(s.gpus.node) for s in got.values()) == 2 * len(HOSTS)
        assert 0 < cluster.pttl(summary_key(next(iter(buckets)))) <= 2000  # PX: 3 intervals, at least 2 s
        r2 = Running(a2)  # standby: every lease is held
        try:
            time.sleep(1.0)
            assert {s.folder for s in opened(cluster, known).values()} == {"sum1"}
            r1.close()  # releases its leases as it stops: handed over at once
            got = wait(lambda: (s := opened(cluster, known)) and {x.folder for x in s.values()} == {"sum2"}
                       and set(s) == buckets and s, "sum2 folds every bucket", limit_s=15)
            assert a2.summaries.held == set(range(BUCKETS))
        finally:
            r2.close()
    finally:
        r1.close()
    assert cluster.get(b"ct:v1:lease:" + summary_lease(0).encode()) is None  # released on stop


def test_two_summary_nodes_with_max_buckets_split_the_buckets(redis_server: RedisServer, cluster: Any,
                                                              tmp_path: Path) -> None:
    # Node names whose orders start half the buckets apart, as a site would spread them.
    names = ["sumA"] + [n for n in (f"sum{i}" for i in range(200))
                        if (bucket_order(n)[0] - bucket_order("sumA")[0]) % BUCKETS == BUCKETS // 2][:1]
    a1, a2 = (agent(n, redis_server.url, tmp_path, max_buckets=BUCKETS // 2) for n in names)
    known = KnownNodes(keys={n: a.node_key.public() for n, a in zip(names, (a1, a2), strict=True)})  # type: ignore[union-attr]
    r1, r2 = Running(a1), Running(a2)
    try:
        wait(lambda: len(a1.summaries.held) == len(a2.summaries.held) == BUCKETS // 2, "both hold half")
        assert not a1.summaries.held & a2.summaries.held
        assert a1.summaries.held == set(bucket_order(names[0])[:BUCKETS // 2])
        got = wait(lambda: (s := opened(cluster, known)) and set(s) == {bucket_of(h) for h in [*HOSTS, *names]} and s,
                   "every bucket with a node summarised")
        assert {s.folder for s in got.values()} == set(names)
        for bucket, s in got.items():
            assert bucket in (a1 if s.folder == names[0] else a2).summaries.held
        # Each reads its own buckets' hosts only (Reader(hosts=...)), never the whole cluster's payloads.
        for a in (a1, a2):
            listed = [*HOSTS, *names]  # the agents publish their own nodes too
            assert set(a.summaries.reader.known) == {h for h in listed if bucket_of(h) in a.summaries.held}
    finally:
        r1.close()
        r2.close()


def test_a_store_that_goes_away_costs_the_leases_not_the_agent(tmp_path: Path) -> None:
    srv = RedisServer()
    port = srv.port
    c = srv.client()
    b.publish(c, [b.tower(h) for h in HOSTS[:5]])
    key = signing.new_key()
    svc = SummaryService(SummariesSection(interval=0.2), "sum1", 1.0, lambda: Client.from_url(srv.url),
                         lambda client, name, period: Lease(client, name, "sum1", period), key)
    try:
        assert svc.step() and svc.held == set(range(BUCKETS)) and svc.last_nodes == 5
        srv.stop()
        assert svc.step() is False  # no exception: logged once, connection and leases dropped
        assert svc.error is not None and svc.held == set() and svc.client is None
        assert svc.step() is False
        srv = RedisServer(port=port)  # back where it was, empty: the nodes publish again
        b.publish(srv.client(), [b.tower(h) for h in HOSTS[:5]])
        assert svc.step() and svc.error is None and svc.last_nodes == 5
        s, why = open_summary(srv.client().get(summary_key(bucket_of(HOSTS[0]))), {"sum1": key.public()},
                              bucket_of(HOSTS[0]))
        assert why is None and s is not None and HOSTS[0] in s.hosts
    finally:
        svc.close()
        srv.stop()


@pytest.mark.parametrize(("body", "key", "words"), [
    ("max_buckets = 0", "[summaries] max_buckets", ">= 1"),
    ("max_buckets = 65", "[summaries] max_buckets", "<= 64"),
    ("interval = -1", "[summaries] interval", "> 0"),
    ("gpu_columns = \"yes\"", "[summaries] gpu_columns", "expected bool"),
    ("bucket = 3", "[summaries] bucket", "unknown key"),
])
def test_bad_summaries_sections_name_file_and_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f"[summaries]\n{body}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(path), env={})
    e = ei.value
    assert e.file == str(path) and e.key == key, str(e)
    assert words in e.problem, e.problem


def test_a_good_summaries_section(tmp_path: Path) -> None:
    assert load_config(None, env={}).summaries is None  # absent: this agent folds nothing
    path = tmp_path / "agent.toml"
    path.write_text("[agent]\ninterval = 2.0\n[summaries]\nmax_buckets = 8\ngpu_columns = false\n")
    cfg = load_config(str(path), env={})
    assert cfg.summaries == SummariesSection(max_buckets=8, gpu_columns=False)
    svc = SummaryService(cfg.summaries, "n1", cfg.interval_s, lambda: None, lambda *a: None, signing.new_key())
    assert svc.interval_s == 2.0 and svc.max_buckets == 8  # the agent's interval by default


def test_a_bucket_whose_sums_cannot_be_written_is_left_to_its_digests(redis_server: RedisServer, caplog: Any) -> None:
    """Two nodes of one bucket report 2**64 - 1 bytes of memory (a broken counter): the sum passes what msgpack
    carries, so that bucket's summary is deleted rather than written (readers read its digests), said once; every
    other bucket is written."""
    c = redis_server.client()
    first = HOSTS[0]
    twin = next(h for h in (f"x{i}" for i in range(1000)) if bucket_of(h) == bucket_of(first))
    broken = [b.tower(h) for h in (first, twin)]
    for snap in broken:
        assert snap.system is not None and snap.system.mem is not None
        snap.system.mem.total_bytes = 2**64 - 1
    b.publish(c, [*broken, *(b.tower(h) for h in HOSTS[1:10])])
    c.set(summary_key(bucket_of(first)), b"an older summary")
    key = signing.new_key()
    svc = SummaryService(SummariesSection(interval=0.5), "sum1", 1.0, lambda: Client.from_url(redis_server.url),
                         lambda client, name, period: Lease(client, name, "sum1", period), key)
    try:
        with caplog.at_level("WARNING", logger="clustertop.summaries"):
            assert svc.step() and svc.step()
        assert c.get(summary_key(bucket_of(first))) is None
        assert "cannot be encoded" in svc.too_large[bucket_of(first)]
        assert sum("not written" in r.message for r in caplog.records) == 1
        others = {bucket_of(h) for h in HOSTS[1:10]} - {bucket_of(first)}
        assert all(open_summary(c.get(summary_key(x)), {"sum1": key.public()}, x)[0] for x in others)
    finally:
        svc.close()
