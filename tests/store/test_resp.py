"""The agent's small Redis client against a real redis-server: same replies as redis-py for every
command the agent uses, pipelines and transactions, ACL auth, errors, reconnects."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from clustertop.store import resp
from tests.conftest import ROOT, RedisServer


def pair(srv: RedisServer) -> tuple[resp.Client, redis.Redis]:
    return resp.Client.from_url(srv.url), redis.Redis.from_url(srv.url)


def test_replies_match_redis_py(redis_server) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair(redis_server)
    assert ours.ping() is True
    assert ours.set("k", b"v", px=5000) is True and theirs.get("k") == b"v"
    assert ours.set("k", "w", nx=True) is None  # NX on an existing key: None, as redis-py
    assert ours.set("k", "w", xx=True, keepttl=True) is True and 0 < theirs.pttl("k") <= 5000
    assert ours.get("k") == theirs.get("k") == b"w"
    assert ours.get("missing") is None
    assert ours.zadd("z", {"gpu01": 1.5, "gpu02": 2}) == 2 and theirs.zrange("z", 0, -1, withscores=True) == \
        [(b"gpu01", 1.5), (b"gpu02", 2.0)]
    sid = ours.xadd("s", {"d": b"\x00\xff"}, maxlen=10)
    assert isinstance(sid, bytes) and theirs.xrange("s") == ours.xrange("s") == [(sid, {b"d": b"\x00\xff"})]
    assert ours.exists("k", "missing") == 1 and ours.delete("k") == 1
    sid2 = theirs.xadd("s", {"d": b"two"})
    assert ours.xrevrange("s", count=1) == theirs.xrevrange("s", count=1) == [(sid2, {b"d": b"two"})]
    assert ours.pexpire("z", 1000) is True
    # what the alert evaluator's read of the cluster (read.Reader) uses, alone and pipelined
    assert ours.zrange("z", 0, -1, withscores=True) == theirs.zrange("z", 0, -1, withscores=True)
    assert ours.zrange("z", 0, -1) == theirs.zrange("z", 0, -1) == [b"gpu01", b"gpu02"]
    theirs.set("a", b"1")
    assert ours.mget(["a", "missing", "a"]) == theirs.mget(["a", "missing", "a"]) == [b"1", None, b"1"]
    p = ours.pipeline(transaction=False)
    p.zrange("z", 0, -1, withscores=True)
    p.mget(["a"])
    assert p.execute() == [[(b"gpu01", 1.5), (b"gpu02", 2.0)], [b"1"]]


def test_watch_multi_aborts_when_a_watched_key_changes(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Compare-and-set without Lua (agents are not granted EVAL): WATCH, read, MULTI/EXEC as redis-py."""
    ours, theirs = pair(redis_server)
    theirs.set("lease", "me")
    with ours.pipeline(transaction=True) as p:
        p.watch("lease")
        assert p.get("lease") == b"me"  # immediate while watching
        p.multi()
        p.pexpire("lease", 5000)
        assert p.execute() == [True]
    with ours.pipeline(transaction=True) as p:
        p.watch("lease")
        theirs.set("lease", "someone-else")  # changed between the read and EXEC
        p.multi()
        p.delete("lease")
        with pytest.raises(resp.WatchError):
            p.execute()
    assert theirs.get("lease") == b"someone-else"
    with ours.pipeline(transaction=True) as p:  # leaving while watching must not keep the WATCH
        p.watch("lease")
    theirs.set("lease", "x")
    p2 = ours.pipeline(transaction=True)
    p2.set("after", "1")
    assert p2.execute() == [True]


def test_consumer_group_reads_match_redis_py(redis_server) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair(redis_server)
    assert ours.xgroup_create("cmd", "g", id="0", mkstream=True) is True
    with pytest.raises(resp.ResponseError, match="BUSYGROUP"):
        ours.xgroup_create("cmd", "g", id="0", mkstream=True)
    i1 = theirs.xadd("cmd", {"c": b"one"})
    got = ours.xreadgroup("g", "me", {"cmd": ">"}, count=10, block=100)
    assert got == [[b"cmd", [(i1, {b"c": b"one"})]]]
    # pending re-read: the same shape redis-py gives
    assert ours.xreadgroup("g", "me", {"cmd": "0"}, count=10) == \
        theirs.xreadgroup("g", "me", {"cmd": "0"}, count=10)
    assert ours.xack("cmd", "g", i1) == 1
    # BLOCK longer than the socket timeout must not time out the socket
    c = resp.Client.from_url(redis_server.url, socket_timeout=0.2)
    assert c.xreadgroup("g", "me", {"cmd": ">"}, count=1, block=500) == []  # as redis-py


def test_pipeline_and_transaction(redis_server) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair(redis_server)
    p = ours.pipeline(transaction=False)
    p.set("a", 1).zadd("idx", {"a": 1.0})
    p.xadd("h", {"d": "x"}, maxlen=5)
    res = p.execute()
    assert res[0] is True and res[1] == 1 and isinstance(res[2], bytes)
    t = ours.pipeline(transaction=True)
    t.set("b", "2")
    t.get("b")
    assert t.execute() == [True, b"2"]
    bad = ours.pipeline(transaction=False)
    bad.set("c", "3")
    bad.xack("a", "nogroup", "0-1")  # WRONGTYPE: "a" is a string
    with pytest.raises(resp.ResponseError, match="WRONGTYPE"):
        bad.execute()
    assert theirs.get("c") == b"3"  # non-transactional: the rest still ran, as with redis-py


def test_acl_user_and_wrong_password(redis_server) -> None:  # type: ignore[no-untyped-def]
    admin = redis_server.client()
    admin.acl_setuser("agent", enabled=True, passwords=["+s3cret"], keys=["ct:*"], commands=["+@all"])
    host = f"127.0.0.1:{redis_server.port}"
    c = resp.Client.from_url(f"redis://agent@{host}/0", password="s3cret")
    assert c.set("ct:v1:x", "1") is True
    with pytest.raises(resp.ResponseError, match="NOPERM"):
        c.set("other", "1")
    with pytest.raises(resp.ResponseError, match="WRONGPASS"):
        resp.Client.from_url(f"redis://agent@{host}/0", password="nope").ping()


def test_dead_server_is_a_connection_error_and_it_reconnects(redis_server) -> None:  # type: ignore[no-untyped-def]
    c = resp.Client.from_url(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    assert c.ping()
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(resp.ConnectionFailed):
        c.ping()
    assert isinstance(resp.ConnectionFailed("x"), resp.errors())
    with pytest.raises(resp.ConnectionFailed):
        c.ping()  # still down: an error every time, never a hang or a stale answer
    again = RedisServer(port=port)  # the server comes back where it was
    try:
        # The old client stays unusable only until its server answers again: it reconnects itself.
        assert c.ping()
        c.set("k", b"v")
        assert c.get("k") == b"v"
    finally:
        again.stop()


def test_unix_socket_and_db_selection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sock = tmp_path / "r.sock"
    srv = RedisServer(extra=["--unixsocket", str(sock), "--unixsocketperm", "700"])
    try:
        c = resp.Client.from_url(f"unix://{sock}?db=3")
        assert c.set("k", "v") is True
        assert redis.Redis.from_url(srv.url.replace("/0", "/3")).get("k") == b"v"
    finally:
        srv.stop()


def test_agent_never_imports_redis_py() -> None:
    code = ("import sys\nfrom clustertop.agents.config import load_config\nfrom clustertop.agents.agent import Agent\n"
            "a = Agent(load_config(None, env={}, overrides={'node': 't'}), None, dry_run=True)\n"
            "a.tick(complete=True)\n"
            "bad = [m for m in ('redis', 'textual', 'kubernetes', 'ssl', 'asyncio') if m in sys.modules]\n"
            "nv = 'pynvml' in sys.modules\n"
            "import os\nprint(bad, nv, os.path.exists('/proc/driver/nvidia'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    bad, nv, driver = out.rsplit("]", 1)[0] + "]", *out.rsplit("]", 1)[1].split()
    assert bad == "[]", out
    if driver == "False":  # no NVIDIA driver here: NVML is never even imported
        assert nv == "False", out


# ---------------------------------------------------------------------------------------------
# Bounded reads: what anyone who can write to Redis puts on a stream never costs its size in memory
# ---------------------------------------------------------------------------------------------


def test_oversized_bulk_is_dropped_and_the_connection_stays_in_step(redis_server) -> None:  # type: ignore[no-untyped-def]
    import tracemalloc

    ours, theirs = pair(redis_server)
    big = 20 * 1024 * 1024
    i1 = theirs.xadd("s", {"c": b"x" * big})
    i2 = theirs.xadd("s", {"c": b"small"})
    tracemalloc.start()
    try:
        got = ours.xrange("s", max_bulk=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [(i1, {b"c": resp.Oversized(big)}), (i2, {b"c": b"small"})]
    # Read through in chunks, never held: the peak is a chunk or two, not the 20 MB value.
    assert peak < 1024 * 1024, peak
    assert ours.ping() and ours.get("missing") is None  # the next replies are read where they start
    # Unlimited (the default), the same entry comes back whole, as redis-py gives it.
    assert ours.xrange("s", count=1) == theirs.xrange("s", count=1)


def test_limits_per_client_and_per_call(redis_server) -> None:  # type: ignore[no-untyped-def]
    theirs = redis_server.client()
    theirs.set("k", b"y" * 5000)
    limited = resp.Client.from_url(redis_server.url, max_bulk=4096)
    assert limited.get("k") == resp.Oversized(5000)
    assert limited.get("k") == resp.Oversized(5000)  # still in step
    theirs.xadd("s", {"f": b"y" * 5000})
    [(_, fields)] = limited.xrange("s", max_bulk=8192)  # a call's own limit wins over the client's
    assert fields == {b"f": b"y" * 5000}
    assert resp.Client.from_url(redis_server.url).get("k") == b"y" * 5000


def test_too_many_fields_are_dropped_whole_and_the_id_kept(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Thousands of small fields must not get around max_bulk: an array longer than max_array is read
    through and replaced, while the entry id stays (the caller must still acknowledge the entry)."""
    ours, theirs = pair(redis_server)
    theirs.xgroup_create("cmd", "g", id="0", mkstream=True)
    many = theirs.xadd("cmd", {f"f{i}": b"v" for i in range(5000)})
    one = theirs.xadd("cmd", {"c": b"ok"})
    got = ours.xreadgroup("g", "me", {"cmd": ">"}, count=10, max_bulk=1024, max_array=16)
    [[stream, entries]] = got
    assert stream == b"cmd" and [e[0] for e in entries] == [many, one]
    assert isinstance(entries[0][1], resp.Oversized) and entries[0][1].length > 5000 * 8
    assert entries[1][1] == {b"c": b"ok"}
    # A whole reply too long (nested arrays included) is dropped as one marker, and the next read is fine.
    assert isinstance(ours.xrange("cmd", max_array=1), resp.Oversized)
    assert ours.xack("cmd", "g", many, one) == 2
