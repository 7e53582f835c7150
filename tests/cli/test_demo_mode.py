"""`clustertop demo` plays job control safely: its own ephemeral operator key, never the user's kubeconfig,
broker or scheduler, and a dashboard that opens before the simulator has filled the store.

HOME and KUBECONFIG point at a temp dir whose kubeconfig is a tripwire: a Python audit hook (sys.addaudithook,
the interpreter's own record of every open()) notes any open of it. The same check run with ordinary settings
opens it (the control case), so the check can fail.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clustertop.cli import modes
from clustertop.cli.main import build_parser
from clustertop.dashboard.actions import Actions
from clustertop.dashboard.settings import Settings

_OPENED: list[str] = []
_WATCH: list[str] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _WATCH and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if any(path.startswith(w) for w in _WATCH):
            _OPENED.append(path)


sys.addaudithook(_hook)  # hooks cannot be removed: it watches nothing unless a test sets _WATCH


@pytest.fixture
def tripwire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    kube = home / ".kube"
    kube.mkdir(parents=True)
    (kube / "config").write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", str(kube / "config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    # The user's job-control settings, by environment and by config file: the demo must take none of them.
    monkeypatch.setenv("CLUSTERTOP_KUBECONFIG", str(kube / "config"))
    monkeypatch.setenv("CLUSTERTOP_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:1//")
    cfg = home / ".config" / "clustertop"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(f'[dashboard]\ndask_scheduler = "http://127.0.0.1:1"\n'
                                     f'operator_key = "{home}/alice.key"\n'
                                     'alertmanager = ["http://127.0.0.1:1"]\n')
    _OPENED.clear()
    _WATCH[:] = [str(kube)]
    yield home
    _WATCH.clear()


def _actions(settings: Any) -> Actions:
    return Actions(SimpleNamespace(settings=settings))


def test_demo_hands_its_own_key_and_its_simulated_kubernetes_celery_dask(tripwire: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}

    def fake_show(settings: Any, client_factory: Any) -> int:
        got["settings"] = settings
        got["key_exists"] = bool(settings.operator_key) and os.path.exists(settings.operator_key)
        acts = _actions(settings)
        # Kubernetes, Celery and Dask go to the simulated cluster (sim/control.py): no client is built.
        ctl = settings.demo_control
        assert type(ctl).__name__ == "SimControl"
        assert acts.k8s() is ctl.k8s and acts.celery() is ctl.celery
        assert acts._k8s is None and acts._celery is None
        return 0

    monkeypatch.setattr(modes, "show", fake_show)
    assert modes.run_demo(build_parser().parse_args(["demo", "--nodes", "3"])) == 0
    s = got["settings"]
    assert got["key_exists"] and s.operator_key.endswith("demo-operator.key")
    assert not str(s.operator_key).startswith(str(tripwire))
    assert s.kubeconfig is None and s.celery_broker is None and s.dask_scheduler is None
    assert not getattr(s, "alertmanager", [])  # nor the user's Alertmanager (silences)
    assert _OPENED == [], f"the demo opened the user's kubeconfig: {_OPENED}"
    assert not os.path.exists(s.operator_key)  # the ephemeral key went with the demo


def test_the_tripwire_fires_for_an_ordinary_dashboard(tripwire: Path) -> None:
    pytest.importorskip("kubernetes")
    acts = _actions(Settings())
    try:
        acts.k8s()
    except Exception:  # noqa: BLE001 - an empty kubeconfig has no context: what matters is that it was read
        pass
    assert any(p.endswith("config") for p in _OPENED), "the control case did not read $KUBECONFIG"


def test_demo_opens_before_the_store_is_filled_and_says_how_far_it_got(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_show(settings: Any, client_factory: Any) -> int:
        from clustertop.read.reader import Reader

        startup = settings.startup
        seen["first"] = startup.text()
        seen["nodes_at_open"] = Reader(client_factory()).read().totals.nodes_up
        assert startup.live.wait(60), startup.text()
        seen["after"] = startup.text()
        state = Reader(client_factory()).read()
        seen["nodes_live"] = state.totals.nodes_up
        return 0

    monkeypatch.setattr(modes, "show", fake_show)
    before = {t.name for t in threading.enumerate()}
    assert modes.run_demo(build_parser().parse_args(["demo", "--nodes", "200"])) == 0
    assert seen["first"] is not None and "200 nodes" in seen["first"]
    assert seen["nodes_at_open"] < 200  # the screen opened before the simulator had published the cluster
    assert seen["after"] is None and seen["nodes_live"] == 200
    assert "clustertop-sim" not in {t.name for t in threading.enumerate()} - before
