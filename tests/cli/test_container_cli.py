"""``clustertop container NODE ls|stop|kill|restart|launch`` as a real subprocess, against an agent's executor
(a thread with its own enrolled node key) on a real redis-server and a real Docker Engine
(tests/support/dockerd.py). The target comes from the node's signed snapshot, as with ``kill``. Heavy."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.agents.publisher import Publisher
from clustertop.collectors.base import Context
from clustertop.collectors.containers import ContainersCollector
from clustertop.wire import schema
from tests.cli.test_commands_cli import RAW, cli, key, node_keys  # noqa: F401 - fixtures
from tests.support.dockerd import IMAGE, dockerd_fixture

dockerd = dockerd_fixture()
NODE = "node-d"


@pytest.fixture
def agent(redis_server, tmp_path, key, node_keys, dockerd):  # type: ignore[no-untyped-def]  # noqa: F811
    stop = threading.Event()
    cfg = {"security": {"operator_keys": [key[1]], "allow_root": True},
           "collectors": {"containers": {"socket": dockerd.url, "control": "all", "templates": {
               "nap": {"image": IMAGE, "cmd": ["sleep", "{seconds}"], "params": {"seconds": "int"}}}}}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "st"), block_ms=100,
                         node_key=node_keys(NODE))
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    yield ex
    stop.set()
    t.join(10)


def publish(client, dockerd, node_key, extra: list[schema.Container] = ()) -> schema.Containers:  # type: ignore[no-untyped-def]
    got = ContainersCollector(Context(node=NODE, config={"socket": dockerd.url})).collect()
    got.containers = [*(got.containers or []), *extra]
    Publisher(client, NODE, 60.0, key=node_key).publish(schema.NodeSnapshot(host=NODE, ts=time.time(), containers=got))
    return got


def test_ls_stop_kill_launch_from_the_signed_snapshot(redis_server, agent, key, node_keys, dockerd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    client = redis_server.client()
    cid = dockerd.run("victim", "sleep", "1000")
    try:
        evil = schema.Container(id="e" * 64, name="\x1b]0;pwned\x07\u202eevil", image="[bold]x", state="running")
        publish(client, dockerd, node_keys(NODE), [evil])
        base = ["--redis", redis_server.url, "--key", key[0]]
        r = cli("container", NODE, "ls", *base)
        assert r.returncode == 0, r.stderr
        assert "victim" in r.stdout and cid[:12] in r.stdout and "running" in r.stdout
        assert not RAW.search(r.stdout)  # the hostile name printed escaped
        r = cli("container", NODE, "stop", "victim", "--grace", "0", *base)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{NODE}: stopped container victim ({cid[:12]})" in r.stdout
        assert dockerd.inspect(cid)["State"]["Status"] == "exited"
        (cmd,) = [wire.decode(f[b"c"], schema.Command) for _, f in client.xrange(wire.cmd_key(NODE))]
        created = json.loads(dockerd.docker("ps", "-a", "--no-trunc", "--filter", f"id={cid}", "--format",
                                            '{{json .CreatedAt}}'))  # "2026-12-07 03:28:47 +0000 UTC"
        assert cmd.args["id"] == cid and cmd.args["created"] == int(
            datetime.strptime(created[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())

        r = cli("container", NODE, "launch", "nap", "seconds=300", *base)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{NODE}: launched container ct-nap-" in r.stdout and "from template nap" in r.stdout
        # a name that is not in the snapshot is never guessed
        r = cli("container", NODE, "kill", "nobody", *base)
        assert r.returncode == 1 and "no container named 'nobody'" in r.stderr
    finally:
        dockerd.docker("rm", "-f", "victim", check=False)
        for name in dockerd.docker("ps", "-a", "--format", "{{.Names}}").split():
            if name.startswith("ct-nap-"):
                dockerd.docker("rm", "-f", name, check=False)


def test_an_unverified_snapshot_is_refused(redis_server, agent, key, dockerd) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    client = redis_server.client()
    cid = dockerd.run("victim2", "sleep", "1000")
    try:
        publish(client, dockerd, None)  # no seal: anyone who can write to Redis could have written it
        r = cli("container", NODE, "kill", "victim2", "--redis", redis_server.url, "--key", key[0])
        assert r.returncode == 1 and "cannot be verified" in r.stderr
        assert client.xlen(wire.cmd_key(NODE)) == 0 and dockerd.inspect(cid)["State"]["Running"]
    finally:
        dockerd.docker("rm", "-f", "victim2", check=False)
