"""A multi-node launch hands each rank its rank, world size and master address in the environment.

The end-to-end test runs two real `clustertop agent` processes on a real redis-server and launches one
three-rank job through the real CLI (`clustertop launch --node a --node b --node a`): each rank's process
(a real python) prints the names torch.distributed and MPI read, into its task log; the test reads the
logs. The refusal tests go through the real executor (signed commands, real redis-server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from clustertop.agents.tasks import RankError, job_env, master_address
from clustertop.control import commands as cc
from clustertop.read.reader import Reader
from tests.agents.test_agent_commands_e2e import _env, _wait
from tests.agents.test_commands import audits, keys, make, results, run_one, send  # noqa: F401 - fixtures
from tests.agents.test_commands_tasks import wait_task

PY = sys.executable
NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_RANK",
         "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE")
DUMP = f"import json,os; print(json.dumps({{k: os.environ.get(k) for k in {list(NAMES)!r}}}))"
TEMPLATES = {"envdump": {"argv": [PY, "-c", DUMP], "env": {"RANK": "99"}}}  # a template cannot fake a rank


def test_launch_commands_carry_world_local_rank_and_master() -> None:
    cmds = cc.launch_commands("t", ["a", "b", "a"], {}, master_port=29511)
    assert [(c.node, c.args["rank"], c.args["local_rank"]) for c in cmds] == [("a", 0, 0), ("b", 1, 0), ("a", 2, 1)]
    assert {(c.args["world_size"], c.args["master_addr"], c.args["master_port"]) for c in cmds} == {(3, "a", 29511)}
    assert len({c.args["job"] for c in cmds}) == 1
    assert cc.command_target(cmds[2]).endswith(" rank 2 of 3 (master a:29511)")  # the operator's audit says it
    (one,) = cc.launch_commands("t", ["a"], {})
    assert "world_size" not in one.args and one.args["job"] is None  # one node: no job, no rank env


def test_job_env_values_and_refusals() -> None:
    env = job_env({"rank": 2, "world_size": 4, "local_rank": 1, "master_addr": "gpu01.lab", "master_port": 29500})
    assert env == {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu01.lab",
                   "MASTER_PORT": "29500", "OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4",
                   "OMPI_COMM_WORLD_LOCAL_RANK": "1", "PMI_RANK": "2", "PMI_SIZE": "4"}
    assert job_env({"rank": 0, "job": "x"}) == {}  # from an operator tool that sends no world size
    assert master_address("10.0.0.7") == "10.0.0.7" and master_address("fd00::1") == "fd00::1"
    good = {"rank": 0, "world_size": 2, "local_rank": 0, "master_addr": "h", "master_port": 1}
    for bad in ({"rank": 2}, {"rank": -1}, {"rank": True}, {"rank": "0"}, {"world_size": 0},
                {"world_size": 2**64}, {"world_size": 1.5}, {"local_rank": 1}, {"local_rank": None},
                {"master_port": 0}, {"master_port": 65536}, {"master_port": "29500"},
                {"master_addr": "h; rm -rf /"}, {"master_addr": "-oProxyCommand=x"}, {"master_addr": ""},
                {"master_addr": "a" * 64}, {"master_addr": "h\u202e"}, {"master_addr": "x" * 10_000},
                {"master_addr": None}, {"master_addr": ["h"]}, {"master_addr": "h..x"}):
        with pytest.raises(RankError):
            job_env({**good, **bad})


def test_bad_rank_args_are_refused_and_launch_nothing(redis_server, make, keys):  # noqa: F811
    client, ex = redis_server.client(), make(templates=TEMPLATES)
    base = {"template": "envdump", "job": "j1", "rank": 0, "world_size": 2, "local_rank": 0, "master_port": 29500}
    send(client, keys["ops"], verb="launch", args={**base, "master_addr": "$(id)"})
    run_one(ex)
    res = results(client)[-1]
    assert not res.ok and "master_addr must be a host name or IP address" in (res.reason or "")
    send(client, keys["ops"], verb="launch", args={**base, "master_addr": "h", "rank": 5})
    run_one(ex)
    res = results(client)[-1]
    assert not res.ok and "rank must be an integer in 0..1" in (res.reason or "")
    assert ex.tasks() == []
    refused = audits(client)[-1]  # the node's own audit says what was asked, and why not
    assert refused.result.startswith("refused") and "job j1 rank 5 of 2 (master h:29500)" in refused.target
    # The checked values reach the task, over the template's own env.
    send(client, keys["ops"], verb="launch", args={**base, "master_addr": "h", "rank": 1, "local_rank": 1})
    run_one(ex)
    res = results(client)[-1]
    assert res.ok, res.reason
    t = wait_task(ex, res.data["task"], "exited")
    out = json.loads(Path(t.log_path or "").read_text())
    assert (out["RANK"], out["WORLD_SIZE"], out["LOCAL_RANK"], out["MASTER_ADDR"]) == ("1", "2", "1", "h")
    assert "job j1 rank 1 of 2 (master h:29500)" in audits(client)[-1].target


RENDEZVOUS = """
import os, socket, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
if rank == 0:  # what torch.distributed's TCPStore does on rank 0: listen on the master address
    srv = socket.create_server((addr, port))
    srv.settimeout(30)
    seen = []
    for _ in range(world - 1):
        conn, _ = srv.accept()
        seen.append(int(conn.recv(16)))
        conn.close()
    print("rank 0 met ranks", sorted(seen))
else:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((addr, port), timeout=2) as c:
                c.sendall(str(rank).encode())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    print("rank", rank, "reached", addr, port)
"""


class Agents:
    """Real `clustertop agent` processes, one per node, on one redis-server, enrolled by the operator."""

    def __init__(self, redis_url: str, tmp: Path, nodes: tuple[str, ...], template: str) -> None:
        from clustertop.control import signing

        _, pub, _ = signing.generate(str(tmp / "keys"), "ops")
        self.keyfile, self.known, self.url = str(tmp / "keys" / "ops.key"), str(tmp / "known_nodes"), redis_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for node in nodes:
            cfg = tmp / f"{node}.toml"
            cfg.write_text(f"""
[agent]
node = "{node}"
interval = 0.5
state_dir = "{tmp / node}"

[collectors.nfs]
enabled = false

[security]
operator_keys = ["{pub}"]
allow_root = true

{template}
""")
            self.procs[node] = subprocess.Popen([PY, "-m", "clustertop", "agent", "--config", str(cfg), "--redis",
                                                 redis_url], env=_env(), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
        self.reader = Reader(redis.Redis.from_url(redis_url))
        for node in nodes:
            assert _wait(lambda n=node: (v := self.reader.read().node(n)) is not None and v.state == "up"), node
            r = subprocess.run([PY, "-m", "clustertop", "enrol", node, "--key", str(tmp / node / "node.pub"),
                                "--known-nodes", self.known], env=_env(), capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr

    def launch(self, *words: str) -> None:
        r = subprocess.run([PY, "-m", "clustertop", "launch", *words, "--known-nodes", self.known,
                            "--key", self.keyfile, "--redis", self.url],
                           env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    def exited(self, count: int) -> list[Any]:
        """The launched tasks, once ``count`` of them have all exited (from the nodes' snapshots)."""
        def done() -> list[Any]:
            state = self.reader.read()
            tasks = [t for n in self.procs if (v := state.node(n)) and v.snap for t in v.snap.tasks or ()]
            return tasks if len(tasks) == count and all(t.state == "exited" for t in tasks) else []

        assert _wait(done, timeout=60), f"the {count} ranks never all exited"
        return done()

    def stop(self) -> None:
        for p in self.procs.values():
            children = psutil.Process(p.pid).children(recursive=True) if p.poll() is None else []
            p.terminate()
            p.wait(10)
            for c in children:
                if c.is_running():
                    c.kill()


def test_multi_node_launch_gives_each_rank_its_env_on_real_agents(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    template = f"""[templates.envdump]
argv = {json.dumps(TEMPLATES["envdump"]["argv"])}
env = {{ RANK = "99" }}
"""
    agents = Agents(redis_server.url, tmp_path, ("a", "b"), template)
    try:
        agents.launch("envdump", "--node", "a", "--node", "b", "--node", "a", "--master-addr", "10.0.0.7",
                      "--master-port", "29511")
        tasks = agents.exited(3)
        seen = {}
        for t in tasks:
            out = json.loads(Path(t.log_path or "").read_text())  # what the rank's own process saw
            seen[out["RANK"]] = out
            assert out["RANK"] == str(t.rank)
        assert sorted(seen) == ["0", "1", "2"] and len({t.job for t in tasks}) == 1
        for rank, out in seen.items():
            assert out["WORLD_SIZE"] == out["OMPI_COMM_WORLD_SIZE"] == out["PMI_SIZE"] == "3"
            assert out["OMPI_COMM_WORLD_RANK"] == out["PMI_RANK"] == rank
            assert (out["MASTER_ADDR"], out["MASTER_PORT"]) == ("10.0.0.7", "29511")
        assert [seen[r]["LOCAL_RANK"] for r in "012"] == ["0", "0", "1"]  # rank 2 is node a's second
        assert seen["2"]["OMPI_COMM_WORLD_LOCAL_RANK"] == "1"
    finally:
        agents.stop()


def test_ranks_meet_at_the_master_address_they_were_given(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The values are usable, not only present: rank 0 listens on MASTER_ADDR:MASTER_PORT (as
    torch.distributed's TCPStore does), the other ranks, on other agents, connect there and say their rank."""
    from tests.conftest import free_port

    template = f"""[templates.meet]
argv = {json.dumps([PY, "-c", RENDEZVOUS])}
limits = {{ timeout_s = 60 }}
"""
    agents = Agents(redis_server.url, tmp_path, ("a", "b", "c"), template)
    try:
        agents.launch("meet", "--node", "a", "--node", "b", "--node", "c", "--node", "b",
                      "--master-addr", "127.0.0.1", "--master-port", str(free_port()))
        tasks = {t.rank: t for t in agents.exited(4)}
        assert sorted(tasks) == [0, 1, 2, 3] and all(t.exit_code == 0 for t in tasks.values())
        logs = {r: Path(t.log_path or "").read_text() for r, t in tasks.items()}
        assert logs[0].strip() == "rank 0 met ranks [1, 2, 3]", logs
        assert all(f"rank {r} reached 127.0.0.1" in logs[r] for r in (1, 2, 3)), logs
    finally:
        agents.stop()
