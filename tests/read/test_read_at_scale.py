"""The cheaper ways the read side takes at 10,000 nodes give what the general ways give (issue 18).

Speed is ``bench/dashboard_refresh.py``'s; these check sameness, against a real redis-server: a node up by
its digest alone gets the view ``Reader._node`` makes of it (newer schema, absurd time stamps included), the
caches still forget nodes that left the index, the alert-rule memo names what the patterns name and stays
bounded, and an alert's key, made once, is the key.
"""

from __future__ import annotations

import math
from typing import Any

from clustertop import wire
from clustertop.agents.publisher import Publisher
from clustertop.read import cluster
from clustertop.read.cluster import Alert, alerts, digest_rule
from clustertop.read.model import NodeView
from clustertop.read.plan import Level, ReadPlan
from clustertop.read.reader import Reader
from clustertop.wire import schema
from clustertop.wire.digest import digest, node_alerts
from tests.support import builders as b
from tests.wire.test_brief import troubled

DIGESTS = ReadPlan(Level.DIGESTS)


def write_digest(client: Any, host: str, d: schema.NodeDigest) -> None:
    """A digest as an agent writes it (packed), with the TTL the publisher gives it."""
    client.set(wire.digest_key(host), wire.pack(wire.encode(d), "digest"), ex=1800)


def test_a_node_up_by_its_digest_alone_gets_the_view_the_general_path_makes(redis_server: Any) -> None:
    c = redis_server.client()
    snaps, _ = troubled(nodes=40)
    for s in snaps:
        Publisher(c, s.host, 600.0).publish(s)
    # Hostile digests that still decode: a newer agent's (v above ours), time stamps NaN, in the future, 0.
    odd = {snaps[0].host: {"v": schema.SCHEMA_VERSION + 1}, snaps[1].host: {"ts": math.nan},
           snaps[2].host: {"ts": b.NOW + 1e12}, snaps[3].host: {"ts": 0.0}}
    for host, change in odd.items():
        d = digest(next(s for s in snaps if s.host == host))
        for k, v in change.items():
            setattr(d, k, v)
        write_digest(c, host, d)
    now = b.NOW + 0.5
    reader = Reader(c, clock=lambda: now, brief_from=0)
    reader.read(DIGESTS)  # the first read learns the nodes (every payload of a new node)
    st = reader.read(DIGESTS)
    assert len(st.nodes) == len(snaps) and all(n.snap is None for n in st.nodes)
    general = Reader(c, clock=lambda: now, brief_from=0)
    for view in st.nodes:
        assert view.digest is not None and view.state == "up"
        made = general._node(view.host, view.last_seen_ts or 0.0, None, None, view.digest, None, now, False)
        assert made == view, view.host
        assert reader.last_digest[view.host] is view.digest
    by_host = {n.host: n for n in st.nodes}
    assert by_host[snaps[0].host].newer_schema and not by_host[snaps[4].host].newer_schema
    assert by_host[snaps[1].host].age_s == 0.0 and by_host[snaps[2].host].age_s == 0.0  # NaN, future: no age
    # A node that left the index is forgotten by every cache, the digest one included.
    gone = snaps[5].host
    c.zrem(wire.NODES_KEY, gone)
    st = reader.read(DIGESTS)
    assert gone not in {n.host for n in st.nodes} and gone not in reader.last_digest
    assert snaps[6].host in reader.last_digest


def test_the_rule_memo_names_what_the_patterns_name_and_stays_bounded() -> None:
    snaps, _ = troubled(nodes=80)
    found = [(a.source, a.message) for s in snaps for a in node_alerts(s)]
    assert len(found) > 50
    plain = [cluster._digest_rule(src, msg) for src, msg in found]
    assert [digest_rule(src, msg) for src, msg in found] == plain  # filling the memo
    assert [digest_rule(src, msg) for src, msg in found] == plain  # from it
    assert digest_rule("gpu", "GPU 7 something new") == "GpuProblem"
    assert digest_rule("no-such-source", "x") == "NodeProblem"
    # Node text that varies without end (a hostile node) never grows it past its bound.
    for i in range(cluster._RULE_MEMO_MAX + 500):
        digest_rule("gpu", f"GPU {i} hot ({i} °C)")
    assert digest_rule.cache_info().currsize <= cluster._RULE_MEMO_MAX
    assert digest_rule("gpu", "GPU 3 hot (91 °C)") == "GpuHot"


def test_an_alerts_key_is_made_once_and_is_its_identity() -> None:
    snaps, _ = troubled(nodes=30)
    views = [NodeView(host=s.host, state="up", age_s=0.0, digest=digest(s)) for s in snaps]
    got = alerts(views, {}, b.NOW)
    assert got
    for a in got:
        assert a.key == f"{a.source}:{a.node}:{a.subject}:{a.message}" and a.key is a.key
    a = Alert("warning", "gpu", "n1", "gpu1", "GPU 1 hot (90 °C)", "GpuHot")
    assert a == Alert("warning", "gpu", "n1", "gpu1", "GPU 1 hot (90 °C)", "GpuHot") and a.key == "gpu:n1:gpu1:GPU 1 hot (90 °C)"
    assert hash(a) == hash(Alert("warning", "gpu", "n1", "gpu1", "GPU 1 hot (90 °C)", "GpuHot"))
