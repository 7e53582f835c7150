"""Runner isolation: a raising and a hanging collector never hold back the others.

The collectors here are small classes following the Collector protocol (registry entries are
injected); the store is a real redis-server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from clustertop.agents.agent import Agent
from clustertop.agents.config import AgentConfig, CollectorConfig
from clustertop.collectors import base
from clustertop.read.reader import Reader
from clustertop.read.want import Wants
from clustertop.wire import schema

RELEASE = threading.Event()  # lets the hung collector return at teardown


class Good:
    name, field, scope, default_interval_s = "t_good", "system", "node", 0.1

    def __init__(self, ctx: base.Context) -> None:
        self.calls = 0
        self.node = ctx.node

    def collect(self) -> schema.System:
        self.calls += 1
        return schema.System(hostname=self.node, load1=float(self.calls))

    def close(self) -> None:
        pass


class Raising(Good):
    name, field = "t_raise", "bonds"

    def collect(self) -> list[schema.Bond]:
        raise RuntimeError("bonding driver exploded")


class Hanging(Good):
    name, field = "t_hang", "netmounts"

    def collect(self) -> list[schema.NetMount]:
        self.calls += 1
        RELEASE.wait(60)  # a stat() on a dead NFS server
        return [schema.NetMount(mountpoint="/late")]


class NoGpus(Good):
    name, field = "t_nogpu", "gpus"

    def collect(self) -> list[schema.Gpu]:
        raise base.NoData("no NVIDIA driver")


class BadInit(Good):
    name, field = "t_badinit", "system"

    def __init__(self, ctx: base.Context) -> None:
        raise OSError("NVML library not found")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, cls in (("t_good", "Good"), ("t_raise", "Raising"), ("t_hang", "Hanging"),
                     ("t_nogpu", "NoGpus"), ("t_badinit", "BadInit")):
        monkeypatch.setitem(base.REGISTRY, key, f"{__name__}:{cls}")
    RELEASE.clear()
    yield
    RELEASE.set()


def config(names: dict[str, CollectorConfig], interval: float = 0.2) -> AgentConfig:
    # The default collectors are switched off: this test is about the runner, not the host.
    cols = {n: CollectorConfig(name=n, enabled=False) for n in base.DEFAULT_NODE_COLLECTORS}
    cols.update(names)
    return AgentConfig(node="iso-node", interval_s=interval, collectors=cols)


def test_raising_and_hanging_collectors_are_isolated(registry: None, redis_server) -> None:  # type: ignore[no-untyped-def]
    cfg = config({"t_good": CollectorConfig("t_good"), "t_raise": CollectorConfig("t_raise"),
                  "t_hang": CollectorConfig("t_hang", timeout_s=0.3), "t_nogpu": CollectorConfig("t_nogpu")})
    agent = Agent(cfg, client_factory=redis_server.client)
    # Reads the node in full as its screen does: asking for its full snapshot every tick (read.want).
    reader = Reader(redis_server.client(), wants=Wants())
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        seqs = []
        deadline = time.monotonic() + 20
        snap = None
        while time.monotonic() < deadline:
            view = reader.read().node("iso-node")
            if view is not None and view.snap is not None:
                snap = view.snap
                if not seqs or seqs[-1] != snap.seq:
                    seqs.append(snap.seq)
                if len(seqs) >= 6 and snap.collectors["t_hang"].skipped >= 3:
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert snap is not None, "nothing published"
    assert len(seqs) >= 6 and seqs == sorted(seqs), seqs
    st = snap.collectors
    # The good collector kept publishing fresh values while the others failed.
    assert st["t_good"].ok and st["t_good"].error is None and st["t_good"].last_ok_ts is not None
    assert snap.system is not None and snap.system.hostname == "iso-node"
    assert snap.system.load1 is not None and snap.system.load1 >= 5
    # The raising one says why, the rest of the snapshot still flows.
    assert not st["t_raise"].ok and st["t_raise"].error == "RuntimeError: bonding driver exploded"
    assert snap.bonds is None
    # The hung one is reported, counted as skipped and never started a second time.
    assert not st["t_hang"].ok and st["t_hang"].error == "timed out after 0.3 s"
    assert st["t_hang"].skipped >= 3
    assert agent.runner.slots["t_hang"].collector.calls == 1
    assert snap.netmounts is None
    # NoData from a GPU collector means "no GPUs": an empty list, ok.
    assert st["t_nogpu"].ok and snap.gpus == []
    assert snap.agent is not None and snap.agent.pid is not None and snap.agent.rss_bytes
    # Released, the hung call's late result is taken up and the collector runs again.
    hung = agent.runner.slots["t_hang"]
    RELEASE.set()
    assert hung.future is not None
    hung.future.result(timeout=10)
    snap2, _ = agent.tick()
    assert snap2.netmounts == [schema.NetMount(mountpoint="/late")]
    assert snap2.collectors["t_hang"].ok and snap2.collectors["t_hang"].error is None
    before = hung.collector.calls  # type: ignore[union-attr]
    agent.tick(complete=True)  # runs again now that the old call has returned
    assert hung.collector.calls == before + 1 >= 2  # type: ignore[union-attr]
    agent.close()


def test_collector_that_cannot_start_is_reported(registry: None) -> None:
    cfg = config({"t_badinit": CollectorConfig("t_badinit"), "t_nogpu": CollectorConfig("t_nogpu")})
    agent = Agent(cfg, dry_run=True)
    snap, cluster = agent.tick()
    agent.close()
    assert snap.collectors["t_badinit"].error == "OSError: NVML library not found"
    assert snap.collectors["t_badinit"].ok is False
    assert snap.system is None and snap.gpus == [] and cluster == []


def test_failing_collector_keeps_last_good_value(registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config({"t_good": CollectorConfig("t_good")}, interval=0.05)
    agent = Agent(cfg, dry_run=True)
    first, _ = agent.tick()
    assert first.system is not None and first.collectors["t_good"].ok

    def broken(self: Good) -> schema.System:
        raise TimeoutError("psutil took too long")

    monkeypatch.setattr(Good, "collect", broken)
    second, _ = agent.tick()
    agent.close()
    st = second.collectors["t_good"]
    assert not st.ok and st.error == "TimeoutError: psutil took too long"
    # The last good value stays, with last_ok_ts telling its age.
    assert second.system == first.system
    assert st.last_ok_ts == first.collectors["t_good"].last_ok_ts
