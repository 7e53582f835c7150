"""The dashboard's modes: what each one starts behind the dashboard, and that it stops it again.

The dashboard itself is replaced by a stand-in (``modes.show``) that reads the store the way the
dashboard does (clustertop.read.reader.Reader on a client from the factory it was given); the screens
have their own tests.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from clustertop import wire
from clustertop.cli import modes
from clustertop.cli.main import build_parser
from clustertop.read.reader import Reader
from tests.conftest import RedisServer


class FakeDashboard:
    """Stands in for dashboard.main.run: records what it was given and reads the store once."""

    def __init__(self, wait_for: int = 1, raise_exc: Exception | None = None) -> None:
        self.wait_for = wait_for
        self.raise_exc = raise_exc
        self.settings: Any = None
        self.states: list[Any] = []

    def __call__(self, settings: Any, client_factory: Any) -> int:
        self.settings = settings
        reader = Reader(client_factory())
        for _ in range(300):  # the local agent needs a tick or two; poll, do not time
            state = reader.read()
            if state.totals.nodes_up >= self.wait_for:
                break
            threading.Event().wait(0.05)
        self.states.append(state)
        if self.raise_exc is not None:
            raise self.raise_exc
        return 0


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def sim_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("clustertop-sim", "clustertop-local-agent")]


def test_start_demo_fills_store_and_stops() -> None:
    backend = modes.start_demo(seed=2, nodes=None, interval_s=0.05, now=time.time(), prefill_s=600)
    try:
        client = backend.client_factory()
        first = Reader(client).read()
        assert [n.state for n in first.nodes] == ["up"] * 15
        assert sorted(first.cluster) == ["celery", "ceph", "dask", "kubernetes"]
        assert client.xlen(wire.hist_key("gpu01")) >= 120  # ten minutes at 5 s, plus the live tick
        # The prefilled ten minutes are in the 1-minute tier too (the node screen's 24 h), as an agent keeps them.
        from clustertop.dashboard.ranges import tier_points
        from clustertop.wire.tiers import MINUTE

        assert 8 <= len(tier_points(client, "gpu01", MINUTE, time.time(), 86400)) <= 11
        # Every tick's digests; full snapshots on the agents' cadence (or while a reader wants them: below).
        seqs = {n.host: n.digest.seq for n in first.nodes if n.digest}
        backend.stop.wait(0.4)
        later = Reader(client).read()
        assert all(n.digest is not None and n.digest.seq > seqs[n.host] for n in later.nodes)
        assert backend.label == "demo (simulated, seed 2)"
    finally:
        backend.close()
    assert not any(t.is_alive() for t in backend.threads)


def test_run_demo_hands_the_dashboard_settings_and_store(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDashboard(wait_for=15)
    monkeypatch.setattr(modes, "show", fake)
    before = len(sim_threads())
    rc = modes.run_demo(parse("demo", "--seed", "3", "--wall", "--ascii", "--refresh", "2"))
    assert rc == 0
    s = fake.settings
    assert s.source_label == "demo (simulated, seed 3)"
    assert s.wall and s.read_only and s.ascii and s.refresh_s == 2.0
    assert fake.states[0].totals.nodes_up == 15 and fake.states[0].totals.gpus_total == 10
    assert len(sim_threads()) == before  # the simulator thread ended with the dashboard


def test_the_demo_enrols_its_simulated_nodes_and_their_seals_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """`clustertop demo` hands the dashboard in-memory anchors with every simulated node's key, and each
    node seals what it publishes: the demo reads "verified", as an enrolled cluster does."""
    from clustertop.control import trust

    verdicts: dict[str, Any] = {}

    def show(settings: Any, client_factory: Any) -> int:
        assert settings.startup.live.wait(60)  # the demo opens at once; its simulator fills the store behind it
        reader = Reader(client_factory())
        reader.read()
        state = reader.read(seals=reader.known)
        for host, (kind, payload, seal) in state.sealed.items():
            verdicts[host] = trust.seal_verdict(host, payload, seal, settings.known, kind)
        return 0

    monkeypatch.setattr(modes, "show", show)
    assert modes.run_demo(parse("demo", "--seed", "3")) == 0
    assert len(verdicts) == 15 and all(v.ok for v in verdicts.values()), verdicts
    assert all("signed by" in v.text and "enrolled key SHA256:" in v.text for v in verdicts.values())


def test_run_demo_scales_and_stops_even_when_the_dashboard_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDashboard(wait_for=30, raise_exc=RuntimeError("boom"))
    monkeypatch.setattr(modes, "show", fake)
    before = len(sim_threads())
    with pytest.raises(RuntimeError):
        modes.run_demo(parse("demo", "--nodes", "30"))
    assert fake.states[0].totals.nodes_up == 30
    assert len(sim_threads()) == before


def test_local_mode_runs_an_agent_for_this_machine(monkeypatch: pytest.MonkeyPatch, env_no_store: None) -> None:
    fake = FakeDashboard(wait_for=1)
    monkeypatch.setattr(modes, "show", fake)
    before = len(sim_threads())
    rc = modes.run_dashboard(parse("dashboard", "--read-only"))
    assert rc == 0
    state = fake.states[0]
    (node,) = state.nodes
    assert node.state == "up"
    assert node.snap is not None and node.snap.collectors["host"].ok
    assert node.snap.system is not None and node.snap.system.cpu_count
    assert fake.settings.source_label == f"local ({node.host})"
    assert fake.settings.read_only
    # This machine's own agent is enrolled with the key it seals with: local mode reads "verified".
    key = fake.settings.known.get(node.host)
    assert key is not None and list(fake.settings.known.keys) == [node.host]
    assert len(sim_threads()) == before  # the in-process agent stopped with the dashboard


def test_store_mode_uses_the_url_and_redacts_it(monkeypatch: pytest.MonkeyPatch,
                                                redis_server: RedisServer) -> None:
    from clustertop.sim.simulate import SimCluster, make_publishers, publish

    client = redis_server.client()
    sim = SimCluster(seed=1, nodes=6)
    publish(client, sim, time.time(), make_publishers(sim, client, 1.0))
    fake = FakeDashboard(wait_for=6)
    monkeypatch.setattr(modes, "show", fake)
    assert modes.run_dashboard(parse("dashboard", "--redis", redis_server.url)) == 0
    assert fake.settings.source_label == redis_server.url
    assert fake.states[0].totals.nodes_up == 6

    backend = modes.start_store(f"redis://ops:s3cret@127.0.0.1:{redis_server.port}/0")
    assert backend.label == f"redis://ops:***@127.0.0.1:{redis_server.port}/0"
    assert "s3cret" not in backend.label


def test_store_mode_bad_url_fails_before_the_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    from clustertop.config import ConfigError

    monkeypatch.setattr(modes, "show", FakeDashboard())
    with pytest.raises(ConfigError):
        modes.run_dashboard(parse("dashboard", "--redis", "http://not-redis"))


def test_demo_settings_match_the_dashboard_settings_class() -> None:
    """The names the composition root passes exist on dashboard.settings.Settings."""
    s = modes.settings_for(modes.config_for(parse("demo", "--theme", "light")), "x")
    assert s.theme == "light" and s.source_label == "x" and not s.read_only
