"""Real Redis HA deployments on loopback for tests: a 3-master/3-replica Redis Cluster and a
master/replica/3-sentinel set, as ../shared/recipes/redis-ha/ starts them (its scripts' logic in Python,
with free ports and a private directory, every process our own child so a test can ``kill -9`` one).

Pitfalls from the recipe, kept here: ``--repl-diskless-sync-delay 0`` (else a replica's first sync waits
5 s and a master killed before that is never replaced), and waiting for ``master_link_status:up`` on every
replica before any fault is injected.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

COMMON = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, bus: bool = False) -> list[int]:
    """``n`` free loopback ports (with ``bus``: each port + 10000 free too, for the cluster bus)."""
    out: list[int] = []
    socks = []
    try:
        while len(out) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            p = s.getsockname()[1]
            if bus and (p + 10000 > 65535 or not _free(p + 10000)):
                continue
            out.append(p)
    finally:
        for s in socks:
            s.close()
    return out


def _wait(pred, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return time.monotonic() - t0
        except (redis.exceptions.RedisError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


#: port -> redis-py keywords for the test's own admin connections: TLS for the servers started with TLS only
#: (RedisSentinel(tls=...)), the admin user's credentials for those started with an ACL file (RedisCluster(acl=...)).
_TLS: dict[int, dict[str, str | bool]] = {}


def _cli(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1, **_TLS.get(port, {}))  # type: ignore[arg-type]


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    dir: str

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


def _start(port: int, d: str, args: list[str]) -> Server:
    os.makedirs(d, exist_ok=True)
    proc = subprocess.Popen(["redis-server", *args], cwd=d, stdout=open(os.path.join(d, "out.log"), "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    srv = Server(port, proc, d)
    _wait(lambda: _cli(port).ping(), 10, f"redis-server on {port}")
    return srv


@dataclass
class RedisCluster:
    """3 masters + 3 replicas (``--cluster-replicas 1``), node timeout 1000 ms. ``acl``: (an ACL file, an
    admin user in it, that user's password): every node loads the file (ACLs are per node: a cluster shares
    no users), replicas sync as that user, and this class's own connections log in as it."""

    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="ct-rcluster-"))
    servers: dict[int, Server] = field(default_factory=dict)
    acl: tuple[str, str, str] | None = None

    def start(self) -> RedisCluster:
        auth: list[str] = []
        cli_auth: list[str] = []
        ports = free_ports(6, bus=True)
        if self.acl is not None:
            path, user, pw = self.acl
            auth = ["--aclfile", path, "--masteruser", user, "--masterauth", pw]
            cli_auth = ["--user", user, "--pass", pw, "--no-auth-warning"]
            for port in ports:
                _TLS[port] = {"username": user, "password": pw}
        for port in ports:
            self.servers[port] = _start(port, os.path.join(self.root, str(port)), [
                "--port", str(port), "--dir", os.path.join(self.root, str(port)), "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000", *auth, *COMMON])
        subprocess.run(["redis-cli", *cli_auth, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for p in ports:
            _wait(lambda p=p: b"cluster_state:ok" in _cli(p).execute_command("CLUSTER", "INFO"), 30,
                  f"cluster_state:ok on {p}")
        for p in ports:
            _wait(lambda p=p: self.role(p) == "master" or
                  _cli(p).info("replication").get("master_link_status") == "up", 30, f"replica {p} in sync")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{next(iter(self.servers))}"

    def role(self, port: int) -> str:
        r = _cli(port).execute_command("ROLE")
        return r[0].decode() if isinstance(r[0], bytes) else str(r[0])

    def master_of(self, key: str) -> int:
        slot = int(_cli(self.live()[0]).execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in _cli(self.live()[0]).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise RuntimeError(f"no master for slot {slot}")

    def replica_of(self, master_port: int) -> int:
        """The port of the replica of ``master_port``, as the replica itself says (``ROLE``: its master's port).
        Not the master's ``CLUSTER NODES``: right after the cluster forms, gossip may not have told the
        master which node replicates it yet (seen once in a CI run); so this also waits, up to 10 s."""
        found: list[int] = []

        def ask() -> bool:
            for p in self.live():
                if p == master_port:
                    continue
                r = _cli(p).execute_command("ROLE")
                if r[0] in (b"slave", "slave") and int(r[2]) == master_port:
                    found.append(p)
                    return True
            return False

        try:
            _wait(ask, 10, f"a replica of {master_port}")
        except RuntimeError:
            raise RuntimeError(f"no replica of {master_port}") from None
        return found[0]

    def live(self) -> list[int]:
        return [p for p, s in self.servers.items() if s.alive()]

    def kill_master(self, master_port: int) -> tuple[float, int]:
        """``kill -9`` the master; returns (the monotonic time of the kill, its replica's port)."""
        replica = self.replica_of(master_port)
        t = time.monotonic()
        self.servers[master_port].kill9()
        return t, replica

    def wait_promoted(self, replica: int, timeout: float = 30) -> float:
        """Seconds until ``replica`` is a master and its cluster state ok."""
        t0 = time.monotonic()
        _wait(lambda: self.role(replica) == "master" and
              b"cluster_state:ok" in _cli(replica).execute_command("CLUSTER", "INFO"), timeout,
              f"replica {replica} promoted")
        return time.monotonic() - t0

    def stop(self) -> None:
        for s in self.servers.values():
            if s.alive():
                s.proc.terminate()
                try:
                    s.proc.wait(5)
                except subprocess.TimeoutExpired:
                    s.kill9()
            _TLS.pop(s.port, None)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisSentinel:
    """One master, one replica, three sentinels (quorum 2, down-after 1000 ms, failover-timeout 5000)."""

    name: str = "mymaster"
    #: (CA, certificate, key) files: every server and sentinel speaks TLS only (replication and the
    #: sentinels' links too); clients need no certificate of their own.
    tls: tuple[str, str, str] | None = None
    #: The sentinels' own password (``requirepass`` in their config); the data nodes keep none.
    sentinel_password: str | None = None
    root: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="ct-rsentinel-"))
    master: Server | None = None
    replica: Server | None = None
    sentinels: list[Server] = field(default_factory=list)

    def _listen(self, port: int) -> list[str]:
        if self.tls is None:
            return ["--port", str(port)]
        ca, cert, key = self.tls
        _TLS[port] = {"ssl": True, "ssl_ca_certs": ca}
        return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", cert, "--tls-key-file", key,
                "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--tls-replication", "yes"]

    def start(self) -> RedisSentinel:
        m, r, *ss = free_ports(5)
        self.master = _start(m, os.path.join(self.root, str(m)), [*self._listen(m), "--dir", os.path.join(self.root, str(m)), *COMMON])
        self.replica = _start(r, os.path.join(self.root, str(r)), [*self._listen(r), "--dir", os.path.join(self.root, str(r)),
                                                                  *COMMON, "--replicaof", "127.0.0.1", str(m)])
        _wait(lambda: _cli(r).info("replication").get("master_link_status") == "up", 30, "replica in sync")
        for p in ss:
            d = os.path.join(self.root, str(p))
            os.makedirs(d, exist_ok=True)
            conf = os.path.join(d, "sentinel.conf")  # each sentinel rewrites its own
            listen = self._listen(p)
            with open(conf, "w") as f:
                f.write(" ".join(listen[i].removeprefix("--") + " " + listen[i + 1] + "\n"
                                 for i in range(0, len(listen), 2)))
                f.write(f"bind 127.0.0.1\ndir {d}\n"
                        f"sentinel monitor {self.name} 127.0.0.1 {m} 2\n"
                        f"sentinel down-after-milliseconds {self.name} 1000\n"
                        f"sentinel failover-timeout {self.name} 5000\n"
                        f"sentinel parallel-syncs {self.name} 1\n")
                if self.sentinel_password is not None:
                    f.write(f"requirepass {self.sentinel_password}\n")
                    _TLS[p] = {**_TLS.get(p, {}), "password": self.sentinel_password}
            self.sentinels.append(_start(p, d, [conf, "--sentinel"]))
        for s in self.sentinels:
            _wait(lambda s=s: self._sentinel_field(s.port, "num-other-sentinels") == "2" and
                  self._sentinel_field(s.port, "num-slaves") == "1", 30, f"sentinel {s.port} converged")
        return self

    def _sentinel_field(self, port: int, name: str) -> str:
        return str(_cli(port).sentinel_master(self.name).get(name))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        if self.tls is None:
            return f"redis+sentinel://{hosts}/{self.name}"
        return f"rediss+sentinel://{hosts}/{self.name}?ssl_ca_certs={self.tls[0]}"

    def master_port(self) -> int:
        host, port = _cli(self.sentinels[0].port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(port)

    def kill_master(self) -> float:
        assert self.master is not None
        t = time.monotonic()
        self.master.kill9()
        return t

    def wait_promoted(self, timeout: float = 30) -> float:
        """Seconds until the replica is master and every sentinel names it."""
        assert self.replica is not None
        t0 = time.monotonic()
        r = self.replica.port

        def done() -> bool:
            if _cli(r).execute_command("ROLE")[0] != b"master":
                return False
            return all(int(_cli(s.port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1]) == r
                       for s in self.sentinels)

        _wait(done, timeout, "the replica promoted and named by every sentinel")
        return time.monotonic() - t0

    def stop(self) -> None:
        for s in [*self.sentinels, self.replica, self.master]:
            if s is not None and s.alive():
                s.proc.terminate()
                try:
                    s.proc.wait(5)
                except subprocess.TimeoutExpired:
                    s.kill9()
            if s is not None:
                _TLS.pop(s.port, None)
        shutil.rmtree(self.root, ignore_errors=True)


# -- what runs against a deployment during a failover ------------------------------------------------


def start_agent(url: str, node: str, state_dir: str, interval: float = 0.5) -> subprocess.Popen[bytes]:
    """The real agent process (its own RESP client), with its own state directory (node key, replay log)."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "NOTIFY_", "WATCHDOG_"))}
    env["STATE_DIRECTORY"] = state_dir
    os.makedirs(state_dir, exist_ok=True)
    log = open(os.path.join(state_dir, "agent.log"), "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen([sys.executable, "-m", "clustertop", "agent", "--redis", url, "--node", node,
                             "--interval", str(interval)], env=env, stdout=log, stderr=subprocess.STDOUT)


def start_exporter(url: str, port: int, log_dir: str) -> subprocess.Popen[bytes]:
    import sys

    log = open(os.path.join(log_dir, "exporter.log"), "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "clustertop", "exporter", "--redis", url, "--listen",
                             f"127.0.0.1:{port}", "--cache", "0"], stdout=log, stderr=subprocess.STDOUT)


def scrape(port: int) -> dict[str, float]:
    """``clustertop_store_up`` and ``clustertop_node_up{node=...}`` lines of the exporter, as name -> value."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("clustertop_store_up", "clustertop_node_up")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@dataclass
class Sample:
    t: float  # monotonic
    reader: str  # "up" (every node up with data newer than the kill), "error: ...", or the node states
    exporter: str  # "up" (store up, every node up), or what it served


class Probe:
    """Reads the deployment every ``step`` s from a thread, as the dashboard and a Prometheus server would:
    a ``Reader`` on ``store.connect(url)`` and a scrape of the exporter. ``up`` means every node in
    ``nodes`` is up with data published after ``since`` (wall time): what recovering means here."""

    def __init__(self, url: str, nodes: list[str], exporter_port: int, step: float = 0.1) -> None:
        import threading

        from clustertop import store
        from clustertop.read.reader import Reader

        self.reader = Reader(store.connect(url, timeout_s=1.0))
        self.nodes, self.port, self.step = nodes, exporter_port, step
        self.samples: list[Sample] = []
        self.since = 0.0
        self.crashes: list[str] = []  # anything but a store error out of a read: a bug
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _read(self) -> str:
        from clustertop.store.resp import errors

        try:
            st = self.reader.read()
        except errors() as e:
            return f"error: {type(e).__name__}"
        except Exception as e:  # noqa: BLE001 - recorded, and the test fails on it
            self.crashes.append(f"{type(e).__name__}: {e}")
            return f"crash: {type(e).__name__}"
        views = {v.host: v for v in st.nodes}
        ok = all(h in views and views[h].state == "up" and views[h].digest is not None and
                 views[h].digest.ts > self.since for h in self.nodes)
        return "up" if ok else " ".join(f"{h}:{views[h].state if h in views else 'absent'}" for h in self.nodes)

    def _scrape(self) -> str:
        try:
            m = scrape(self.port)
        except OSError as e:
            return f"scrape failed: {e}"
        if m.get("clustertop_store_up") != 1.0:
            return "store down"
        ups = [m.get(f'clustertop_node_up{{node="{h}"}}') for h in self.nodes]
        return "up" if all(u == 1.0 for u in ups) else f"nodes {ups}"

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            self.samples.append(Sample(t, self._read(), self._scrape()))
            self._stop.wait(max(0.0, self.step - (time.monotonic() - t)))

    def recovered_at(self, what: str, after: float) -> float | None:
        """The first sample at or after ``after`` from which ``what`` ("reader"/"exporter") stays up."""
        first = None
        for s in self.samples:
            if s.t < after:
                continue
            if getattr(s, what) == "up":
                first = s.t if first is None else first
            else:
                first = None
        return first

    def down_between(self, what: str, t0: float, t1: float) -> list[str]:
        return [getattr(s, what) for s in self.samples if t0 <= s.t <= t1 and getattr(s, what) != "up"]


def until(cond, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Poll ``cond`` (store errors count as "not yet") until it holds; the monotonic time it did."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if cond():
                return time.monotonic()
        except (redis.exceptions.RedisError, OSError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")


def digest_ts(client: redis.Redis, node: str) -> float:
    from clustertop import wire
    from clustertop.wire import schema

    data = client.get(wire.digest_key(node))
    return wire.decode(data, schema.NodeDigest).ts if data is not None else 0.0


async def failover_scenario(url: str, nodes: list[str], tmp: str, kill, wait_promoted, new_master) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Real agents (one per name in ``nodes``) and the exporter on ``url``, the dashboard app and a probe
    (reader + scrapes) reading it; then ``kill()`` (a master, ``kill -9``; returns its monotonic time) and
    ``wait_promoted()`` (seconds until its replica serves). Returns seconds after the promotion at which
    each part carried on, and asserts the outage was shown while it lasted."""
    import asyncio

    from clustertop import store
    from clustertop.dashboard.app import make_app
    from clustertop.dashboard.settings import Settings
    from clustertop.dashboard.widgets.header import ClusterHeader
    from tests.conftest import free_port
    from tests.support import builders as b

    port = free_port()
    procs = [start_agent(url, n, os.path.join(tmp, n)) for n in nodes]
    procs.append(start_exporter(url, port, tmp))
    probe = None
    everyone = f"{len(nodes)}/{len(nodes)} nodes up"
    app = make_app(Settings(refresh_s=0.2), lambda: store.connect(url, timeout_s=1.0))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            header = app.screen.query_one(ClusterHeader)
            await b.wait_until(pilot, lambda: everyone in header.text, "every agent on screen", tries=1500)
            probe = Probe(url, nodes, port).start()
            await asyncio.to_thread(until, lambda: probe.recovered_at("exporter", 0) is not None, 30)
            probe.since = time.time()
            t_kill = kill()
            seen: list[tuple[float, bool, str]] = []  # what the dashboard showed: (t, unreachable, header)

            async def watch_app() -> None:
                while True:
                    seen.append((time.monotonic(), app.view.unreachable, header.text))
                    await pilot.pause(0.05)

            watcher = asyncio.ensure_future(watch_app())
            promoted_after = await asyncio.to_thread(wait_promoted)
            t_promoted = t_kill + promoted_after
            client = new_master()
            t_agents = await asyncio.to_thread(until, lambda: all(digest_ts(client, n) > probe.since for n in nodes), 30)
            await asyncio.to_thread(until, lambda: probe.recovered_at("reader", t_promoted) is not None and
                                    probe.recovered_at("exporter", t_promoted) is not None, 30)
            await b.wait_until(pilot, lambda: not app.view.unreachable and everyone in header.text,
                               "the dashboard back", tries=1500)
            await asyncio.sleep(0.5)
            watcher.cancel()
        probe.close()
        t_reader, t_exporter = probe.recovered_at("reader", t_promoted), probe.recovered_at("exporter", t_promoted)
        assert t_reader is not None and t_exporter is not None
        assert not probe.crashes, probe.crashes
        # The outage was shown while it lasted: reads failed (or showed nodes not up), the exporter said so.
        assert probe.down_between("reader", t_kill, t_promoted), "the reader never noticed the outage"
        assert probe.down_between("exporter", t_kill, t_promoted), "the exporter never noticed the outage"
        assert all(p.poll() is None for p in procs), "an agent or the exporter died in the failover"
        after = [x for x in seen if x[0] > t_kill]
        last_out = max((t for t, unreachable, _ in after if unreachable), default=None)
        back = [t for t, unreachable, text in after
                if last_out is not None and t > last_out and not unreachable and everyone in text]
        return {"promoted": promoted_after, "agents": t_agents - t_promoted, "reader": t_reader - t_promoted,
                "exporter": t_exporter - t_promoted, "dashboard": (back[0] if back else float("nan")) - t_promoted,
                "dashboard_unreachable_shown": float(any(u for t, u, _ in seen if t_kill < t < t_promoted)),
                "_header_in_outage": [text for t, u, text in seen if t_kill < t < t_promoted and u][-1:]}  # type: ignore[dict-item]
    finally:
        if probe is not None:
            probe.close()
        stop(procs)


# A process that counts the SIGHUPs it receives into a file: the job-control tests' witness of "run once, never
# twice". The count is written to a temporary file and renamed, so a reader never sees the file half-written, and
# the signal is handled after kill() returns, so a test waits for a count instead of reading it at once.
HUP_COUNTER = """import os, signal, sys, time
n = 0
def write():
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(n))
    os.replace(tmp, sys.argv[1])
def hup(*_):
    global n
    n += 1
    write()
signal.signal(signal.SIGHUP, hup)
write()
while True:
    time.sleep(1)
"""


class HupCounter:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-c", HUP_COUNTER, str(out)])
        until(lambda: self.count() == 0, 10)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def count(self) -> int | None:
        try:
            return int(self.out.read_text())
        except (OSError, ValueError):
            return None

    def wait_for(self, n: int, timeout: float = 5) -> int | None:
        """The count once it reaches ``n``, or what it is after ``timeout`` (a signal is handled asynchronously)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            c = self.count()
            if c is not None and c >= n:
                return c
            time.sleep(0.02)
        return self.count()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def assert_ran_at_most_once(hups: HupCounter, answers: Callable[[], list[Any]], expires_ts: float, what: str) -> None:
    """A signed HUP command in flight across a failover: wait until it is answered (``answers()``: the
    results with its id on the new master) or its expiry has passed (then a late look refuses it as expired).
    It ran once with one ok answer, or never with no answer or "expired"; never twice."""
    deadline = expires_ts + 5
    while time.time() < deadline and not answers():
        time.sleep(0.1)
    time.sleep(0.5)
    got = answers()
    count = hups.wait_for(1 if got and got[0].ok else 2, timeout=1)
    assert count is not None
    print(f"\ncommand in flight across {what}: executed {count} time(s); answers: {[(r.status, r.reason) for r in got]}")
    assert count <= 1, "executed twice"
    assert len(got) <= 1
    if count == 1:
        assert got and got[0].ok
    else:
        assert not got or got[0].status == "expired"
