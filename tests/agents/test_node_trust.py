"""The node side of trust, on a real redis-server with real agent processes: the node's key, the seal over
what it publishes, its signed results, its chained audit stream, replay protection that outlives Redis, and
refusal floods that cannot erase what the node has recorded.

Threat model: anyone who can write to Redis is hostile until a signature says otherwise. Each test plays
that writer (editing a payload, a result, an audit entry, deleting a replay marker, flooding the command
stream) and checks that the enrolled key tells the forgery from the node's own word.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from clustertop import wire
from clustertop.agents.agent import Agent
from clustertop.agents.commands import REFUSAL_RESULTS, REFUSAL_SAMPLE_S, CommandExecutor
from clustertop.agents.config import AgentConfig, CollectorConfig
from clustertop.agents.publisher import Publisher
from clustertop.agents.seen import SeenLog
from clustertop.collectors import base
from clustertop.config import ConfigError
from clustertop.control import commands as cc
from clustertop.control import signing, trust
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from clustertop.wire import schema
from tests.agents.test_commands import audits, pending, results
from tests.conftest import ROOT
from tests.support.builders import gpu, node

NODE = "gpu01"


def known(host: str, key: signing.PrivateKey | signing.PublicKey, tmp_path) -> trust.KnownNodes:  # type: ignore[no-untyped-def]
    k = trust.KnownNodes(path=str(tmp_path / "known_nodes"))
    k.add(host, key.public() if isinstance(key, signing.PrivateKey) else key)
    return k


def node_stream(client, host=NODE):  # type: ignore[no-untyped-def]
    return client.xrange(wire.node_audit_key(host))


def verify(client, host, key):  # type: ignore[no-untyped-def]
    pub = key.public()
    return trust.verify_stream(wire.node_audit_key(host), node_stream(client, host),
                               lambda e: pub if e.key_id == pub.key_id else None)


# ---------------------------------------------------------------------------------------------
# The seal
# ---------------------------------------------------------------------------------------------


def test_seal_vouches_for_node_brief_and_digest_and_not_for_another_writers_bytes(redis_server, tmp_path):
    client = redis_server.client()
    key, other = signing.new_key(), signing.new_key()
    Publisher(client, NODE, 1.0, key=key).publish(node(NODE, gpus=[gpu(0), gpu(1)]))
    k = known(NODE, key, tmp_path)
    for kind in ("node", "brief", "digest"):
        data, seal = trust.read_sealed(client, NODE, kind)
        v = trust.seal_verdict(NODE, data, seal, k, kind)
        assert v.ok, (kind, v.text)
    assert trust.verified_snapshot(client, NODE, k)[1].ok

    # Another writer changes each payload in turn (a real snapshot of its own, same TTL): refused.
    forged = node(NODE, gpus=[gpu(0, util=0), gpu(1, util=0)], cpu=1.0)
    from clustertop.wire.brief import brief
    from clustertop.wire.digest import digest

    for kind, payload in (("node", forged), ("brief", brief(forged)), ("digest", digest(forged))):
        Publisher(client, NODE, 1.0, key=key).publish(node(NODE, gpus=[gpu(0), gpu(1)]))
        keyname = {"node": wire.node_key, "brief": wire.brief_key, "digest": wire.digest_key}[kind](NODE)
        client.set(keyname, wire.encode(payload), px=3000)
        data, seal = trust.read_sealed(client, NODE, kind)
        v = trust.seal_verdict(NODE, data, seal, k, kind)
        assert not v.ok and "does not match its seal" in v.text, v.text

    # ... or forges the whole tick with a seal signed by its own key (a compromised node speaking for gpu01)
    Publisher(client, NODE, 1.0, key=other).publish(forged)
    v = trust.seal_verdict(NODE, *trust.read_sealed(client, NODE), k)
    assert not v.ok and "not the enrolled" in v.text, v.text
    # and a publisher without a key writes no seal: never verified
    client.delete(wire.seal_key(NODE))
    Publisher(client, NODE, 1.0).publish(node(NODE))
    assert client.get(wire.seal_key(NODE)) is None
    assert not trust.seal_verdict(NODE, *trust.read_sealed(client, NODE), k).ok


def test_seal_and_payloads_are_written_in_one_multi_with_the_same_ttl(redis_server):
    """MONITOR shows what the server executed: the tick's SETs (seal included) between MULTI and EXEC."""
    client = redis_server.client()
    key = signing.new_key()
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with redis_server.client().monitor() as m:
            ready.set()
            for cmd in m.listen():
                seen.append(cmd["command"])
                if cmd["command"].startswith("EXEC"):
                    return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    ready.wait(5)
    time.sleep(0.2)  # the MONITOR is registered once its reply came; give it a moment more
    Publisher(client, NODE, 1.0, key=key).publish(node(NODE))
    t.join(10)
    names = [c.split()[0].upper() + " " + (c.split()[1].strip('"') if len(c.split()) > 1 else "") for c in seen]
    i_multi = next(i for i, c in enumerate(names) if c.startswith("MULTI"))
    i_exec = next(i for i, c in enumerate(names) if c.startswith("EXEC"))
    inside = names[i_multi:i_exec]
    for k in (wire.node_key(NODE), wire.brief_key(NODE), wire.digest_key(NODE), wire.seal_key(NODE)):
        assert f"SET {k}" in inside, (k, names)
    ttls = {k: client.pttl(k) for k in (wire.node_key(NODE), wire.seal_key(NODE))}
    assert all(2000 < v <= 3000 for v in ttls.values()), ttls
    # The public key is announced with it (a claim for `enrol --from-redis`, never trusted by itself).
    assert client.get(wire.nodekey_key(NODE)).decode() == signing.public_b64(key.public())


def test_simulated_nodes_seal_with_their_own_keys(redis_server, tmp_path):
    client = redis_server.client()
    sim = SimCluster(seed=3, nodes=4, keys=True)
    publish(client, sim, time.time(), make_publishers(sim, client, 1.0))
    pubs = sim.node_keys()
    assert set(pubs) == set(sim.hosts) and len({p.raw for p in pubs.values()}) == len(sim.hosts)
    k = trust.KnownNodes(path=str(tmp_path / "kn"))
    for h, p in pubs.items():
        k.add(h, p)
    for h in sim.hosts:
        for kind in ("node", "brief", "digest"):
            v = trust.seal_verdict(h, *trust.read_sealed(client, h, kind), k, kind)
            assert v.ok, (h, kind, v.text)
    # Keys are per node: one node's seal does not pass for another's.
    a, b = sim.hosts[:2]
    client.set(wire.seal_key(b), client.get(wire.seal_key(a)), px=3000)
    assert not trust.seal_verdict(b, *trust.read_sealed(client, b), k).ok
    # Without keys=True the simulator seals nothing (and costs nothing more).
    plain = SimCluster(seed=3, nodes=2)
    assert plain.node_keys() == {} and plain.keys == {}


# ---------------------------------------------------------------------------------------------
# The agent: its key, --show-key, enrol, its announcement
# ---------------------------------------------------------------------------------------------


def _env(state: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    e["PYTHONPATH"] = str(ROOT)
    e["STATE_DIRECTORY"] = state
    return e


def test_show_key_output_enrols_and_the_agents_seals_verify_against_it(redis_server, tmp_path):
    state = str(tmp_path / "state")
    env = _env(state)
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--show-key", "--node", NODE],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    key = signing.load_private(os.path.join(state, "node.key"))  # created on first use, 0600
    assert os.stat(os.path.join(state, "node.key")).st_mode & 0o777 == 0o600
    assert r.stdout == signing.public_b64(key.public()) + "\n"  # the file `enrol --key` takes
    assert NODE in r.stderr and signing.fingerprint(key.public()) in r.stderr
    (tmp_path / "gpu01.pub").write_text(r.stdout)
    kn = str(tmp_path / "known_nodes")
    r = subprocess.run([sys.executable, "-m", "clustertop", "enrol", NODE, "--key", str(tmp_path / "gpu01.pub"),
                        "--known-nodes", kn], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert signing.fingerprint(key.public()) in r.stdout
    k = trust.KnownNodes.load(kn)
    assert k.get(NODE).raw == key.public().raw

    # The same node's agent (same state dir: same key) publishes once; its seal verifies against the pin.
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--once", "--node", NODE,
                        "--redis", redis_server.url, "--log-level", "warning"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    client = redis_server.client()
    snap, verdict = trust.verified_snapshot(client, NODE, k)
    assert verdict.ok and snap is not None and snap.host == NODE, verdict.text
    assert client.get(wire.nodekey_key(NODE)).decode() == signing.public_b64(key.public())


def _cfg(tmp_path, **kw) -> AgentConfig:  # type: ignore[no-untyped-def]
    cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
    return AgentConfig(node=NODE, collectors=cols, **kw)


def test_a_dry_run_that_cannot_write_the_state_dir_signs_nothing_and_says_so(tmp_path, caplog):
    (tmp_path / "file").write_text("not a directory")
    cfg = _cfg(tmp_path, state_dir=str(tmp_path / "file" / "state"))  # unwritable for root too
    with caplog.at_level(logging.INFO, logger="clustertop.agent"):
        agent = Agent(cfg, dry_run=True)
    try:
        assert agent.node_key is None
        assert any("nothing signed" in r.getMessage() for r in caplog.records)
        assert agent.tick()[0].host == NODE
    finally:
        agent.close()
    # A real start refuses, naming what to fix, rather than publish data nobody can verify.
    with pytest.raises(ConfigError, match=r"\[agent\] state_dir: node key"):
        Agent(cfg)
    # A dry run with a usable state dir reads an existing key but never creates one.
    cfg2 = _cfg(tmp_path, state_dir=str(tmp_path / "s2"))
    agent = Agent(cfg2, dry_run=True)
    agent.close()
    assert agent.node_key is None and not (tmp_path / "s2" / "node.key").exists()
    real = Agent(cfg2, client_factory=lambda: None)
    real.close()
    assert real.node_key is not None and (tmp_path / "s2" / "node.key").exists()
    again = Agent(cfg2, dry_run=True)
    again.close()
    assert again.node_key is not None and again.node_key.raw == real.node_key.raw
    # [agent] node_key names the file instead of state_dir/node.key
    cfg3 = _cfg(tmp_path, state_dir=str(tmp_path / "s3"), node_key=str(tmp_path / "keys" / "gpu01.key"))
    a3 = Agent(cfg3, client_factory=lambda: None)
    a3.close()
    assert a3.node_key is not None and a3.node_key.path == str(tmp_path / "keys" / "gpu01.key")


# ---------------------------------------------------------------------------------------------
# The executor: signed results, the node's chained audit stream
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def op(tmp_path):  # type: ignore[no-untyped-def]
    kp, pub, _ = signing.generate(str(tmp_path / "ops"), "alice")
    return signing.load_private(kp), pub


def executor(redis_server, tmp_path, pub, state="state", clock=time.time):  # type: ignore[no-untyped-def]
    ex = CommandExecutor(redis_server.client, NODE, {"security": {"operator_keys": [pub]}},
                         state_dir=str(tmp_path / state), block_ms=50, clock=clock)
    ex.client = redis_server.client()
    ex.ensure_group()
    return ex


def send_list(client, key, operator="alice", command_id=None):  # type: ignore[no-untyped-def]
    cmd = cc.build(NODE, "list", operator=operator, command_id=command_id)
    if key is not None:
        signing.sign(cmd, key)
    cc.send(client, cmd)
    return cmd


def drain(ex) -> None:  # type: ignore[no-untyped-def]
    while ex.poll_once():
        pass


def test_results_are_signed_by_the_node_and_a_forged_one_is_not_verified(redis_server, tmp_path, op):
    client = redis_server.client()
    key, pub = op
    ex = executor(redis_server, tmp_path, pub)
    k = known(NODE, ex.node_key, tmp_path)
    cmd = send_list(client, key)
    drain(ex)
    [res] = results(client, NODE)
    assert (res.id, res.status) == (cmd.id, "done")
    assert trust.result_verdict(res, k).ok
    # Another writer appends a result of its own for the same id, or edits the node's: neither verifies.
    res.ok, res.status = True, "done"
    res.data = {"count": 99}
    assert not trust.result_verdict(res, k).ok
    forged = schema.CommandResult(id=cmd.id, node=NODE, verb="list", ok=True, status="done")
    signing.sign_struct("result", forged, signing.new_key())
    assert "not the enrolled" in trust.result_verdict(forged, k).text
    # No shared results/audit streams are written any more: each node writes only its own.
    assert client.exists(f"{wire.PREFIX}:results", f"{wire.PREFIX}:audit") == 0


def test_the_nodes_audit_stream_verifies_and_names_an_edited_or_removed_entry(redis_server, tmp_path, op):
    client = redis_server.client()
    key, pub = op
    ex = executor(redis_server, tmp_path, pub)
    for _ in range(4):
        send_list(client, key)
    drain(ex)
    entries = audits(client, NODE)
    assert [e.seq for e in entries] == [1, 2, 3, 4] and entries[0].prev == ""
    assert all(e.actor == f"node:{NODE}" and "operator 'alice'" in e.target for e in entries)
    rep = verify(client, NODE, ex.node_key)
    assert rep.problems == [] and rep.entries == 4

    # Edited: entry 2's result rewritten in place (delete and re-add under the same id, as an admin could).
    rows = node_stream(client)
    eid, fields = rows[1]
    e = wire.decode(fields[b"a"], schema.AuditEntry)
    e.result = "refused: nothing happened here"
    client.delete(wire.node_audit_key(NODE))
    for i, (rid, f) in enumerate(rows):
        client.xadd(wire.node_audit_key(NODE), {"a": wire.encode(e)} if i == 1 else f, id=rid)
    rep = verify(client, NODE, ex.node_key)
    assert rep.problems and eid.decode() in rep.problems[0] and "altered" in rep.problems[0], rep.problems

    # Removed: back to the genuine entries, then entry 3 deleted.
    client.delete(wire.node_audit_key(NODE))
    for rid, f in rows:
        client.xadd(wire.node_audit_key(NODE), f, id=rid)
    assert verify(client, NODE, ex.node_key).problems == []
    client.xdel(wire.node_audit_key(NODE), rows[2][0])
    rep = verify(client, NODE, ex.node_key)
    assert rep.problems and rows[3][0].decode() in rep.problems[0] and "removed" in rep.problems[0], rep.problems


# ---------------------------------------------------------------------------------------------
# Replays: the state directory outlives Redis
# ---------------------------------------------------------------------------------------------


def test_replay_after_a_restart_with_the_redis_marker_deleted_is_refused(redis_server, tmp_path, op):
    client = redis_server.client()
    key, pub = op
    ex = executor(redis_server, tmp_path, pub)
    cmd = send_list(client, key)
    drain(ex)
    assert client.get(wire.seen_key(NODE, cmd.id)) == b"done"
    ex._seen.close()

    # The agent restarts (a new executor, nothing in memory) and someone deletes the replay marker.
    client.delete(wire.seen_key(NODE, cmd.id))
    ex2 = executor(redis_server, tmp_path, pub)
    client.xadd(wire.cmd_key(NODE), {"c": wire.encode(cmd)})
    drain(ex2)
    assert [r.id for r in results(client, NODE)] == [cmd.id]  # no second answer, nothing run again
    assert audits(client, NODE)[-1].result == "refused: replayed (id already seen by this agent)"
    assert pending(client, NODE) == 0
    # The state dir's log is the node's own: 0600, and it names the id.
    path = tmp_path / "state" / "seen.log"
    assert os.stat(path).st_mode & 0o777 == 0o600 and cmd.id in path.read_text()


def test_an_agent_killed_between_marker_and_result_is_reported_interrupted_even_without_the_marker(
        redis_server, tmp_path, op):
    """The log alone (its "running" line) says an earlier life died mid-command: not run again."""
    client = redis_server.client()
    key, pub = op
    ex = executor(redis_server, tmp_path, pub)
    ex._execute = lambda cmd: (_ for _ in ()).throw(SystemExit("killed"))  # dies right after marking
    cmd = send_list(client, key)
    with pytest.raises(SystemExit):
        ex.poll_once()
    ex._seen.close()
    assert client.get(wire.seen_key(NODE, cmd.id)) == b"running"
    client.delete(wire.seen_key(NODE, cmd.id))  # and the Redis marker is gone
    ex2 = executor(redis_server, tmp_path, pub)
    assert ex2.process_pending() == 1
    [res] = results(client, NODE)
    assert (res.id, res.status) == (cmd.id, "failed") and "interrupted" in res.reason


def test_seen_log_skips_a_torn_line_forgets_expired_ids_and_stays_bounded(tmp_path):
    now = [1000.0]
    path = str(tmp_path / "seen.log")
    log = SeenLog(path, lambda: now[0], max_ids=50)
    log.add("old", 1500.0, "d")
    log.add("new", 9000.0, "d")
    log.add("weird id\nwith a newline", 9000.0, "r")
    log.close()
    with open(path, "ab") as f:
        f.write(b'9000.000 d "torn')  # a crash mid-write
    now[0] = 2000.0
    log = SeenLog(path, lambda: now[0], max_ids=50)
    assert "old" not in log and log.state("new") == "d" and log.state("weird id\nwith a newline") == "r"
    assert len(open(path).read().splitlines()) == 2  # compacted at start
    for i in range(500):
        log.add(f"id{i}", 9000.0 + i, "d")
    assert len(log) <= 50 and "id499" in log
    assert len(open(path).read().splitlines()) <= 2 * 1000 + 1
    log.add("x" * 10_000, 99_000.0, "d")  # a huge id is kept by its hash
    assert "x" * 10_000 in log and max(len(line) for line in open(path)) < 300
    log.close()


# ---------------------------------------------------------------------------------------------
# Floods of unsigned commands, and forged names in the log
# ---------------------------------------------------------------------------------------------


def test_a_flood_of_unsigned_commands_is_sampled_and_cannot_push_genuine_entries_out(redis_server, tmp_path, op):
    client = redis_server.client()
    key, pub = op
    now = [time.time()]
    ex = executor(redis_server, tmp_path, pub, clock=lambda: now[0])
    genuine = [send_list(client, key) for _ in range(2)]
    drain(ex)
    p = client.pipeline(transaction=False)
    flood = [cc.build(NODE, "signal", {"pid": 1}, operator="mallory") for _ in range(2000)]
    for i, cmd in enumerate(flood):
        if i % 3 == 1:
            signing.sign(cmd, signing.new_key() if i < 30 else key)  # an unknown key ...
            if i >= 30:
                cmd.args["signal"] = "KILL"  # ... or a genuine key's signature over other bytes
        p.xadd(wire.cmd_key(NODE), {"c": wire.encode(cmd)})
    p.execute()
    handled = 0
    while handled < len(flood) // 2:  # half of the flood, then the clock moves past a sample window
        handled += ex.poll_once()
    now[0] += REFUSAL_SAMPLE_S + 1
    drain(ex)
    now[0] += REFUSAL_SAMPLE_S + 1
    ex.flush_refusals()
    genuine += [send_list(client, key)]
    drain(ex)

    entries = audits(client, NODE)
    ok = [e for e in entries if e.result == "ok"]
    sampled = [e for e in entries if e.result != "ok"]
    assert [e.command_id for e in ok] == [c.id for c in genuine]
    assert 2 <= len(sampled) <= 4, [e.target for e in sampled]

    def count(e: schema.AuditEntry) -> int:
        m = re.match(r"(\d+) unverified commands refused", e.target)
        return int(m.group(1)) if m else 1

    assert sum(count(e) for e in sampled) == len(flood)
    assert all("unverified operator 'mallory'" in e.target for e in sampled)
    assert pending(client, NODE) == 0  # every refused entry acknowledged
    assert verify(client, NODE, ex.node_key).problems == []  # and the chain is whole
    # Results for them are limited too: the results stream keeps the genuine answers.
    res = results(client, NODE)
    assert len([r for r in res if r.status == "refused"]) <= 3 * REFUSAL_RESULTS
    assert [r.id for r in res if r.ok] == [c.id for c in genuine]


def test_a_forged_operator_name_with_a_newline_stays_on_one_log_line(redis_server, tmp_path, op, caplog):
    client = redis_server.client()
    key, pub = op
    forged = "mallory\nINFO clustertop.commands: command 'x' ('signal') on 'gpu01 pid 1': 'ok'"
    ex = executor(redis_server, tmp_path, pub)
    with caplog.at_level(logging.DEBUG, logger="clustertop.commands"):
        send_list(client, None, operator=forged)  # unsigned: refused, sampled
        send_list(client, key, operator=forged, command_id="id\nINFO fake line")  # signed: a name is still text
        drain(ex)
    fmt = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    lines = [fmt.format(r) for r in caplog.records if r.name == "clustertop.commands"]
    assert lines and all("\n" not in line for line in lines), lines
    assert any("mallory" in line for line in lines)
    # In the audit trail the name is quoted too, and marked unverified where nobody signed it.
    targets = [e.target for e in audits(client, NODE)]
    assert any(t.endswith(f"sent by unverified operator {forged!r}") for t in targets), targets
    assert all("\n" not in t for t in targets)
