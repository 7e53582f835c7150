"""Layering, checked where it matters: what each layer leaves OUT of sys.modules (fresh subprocess).

The agent must not load Textual or the Kubernetes client; the dashboard must not load psutil or
NVML; the wire layer (schema, wire, reader) must load none of the heavy libraries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT


def loaded_after(code: str) -> set[str]:
    """Top-level module names present in sys.modules after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, sys as _sys
        print("MODULES=" + _json.dumps(sorted({m.split(".")[0] for m in _sys.modules})))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES="):]))


def test_agent_tick_loads_no_ui_and_no_kubernetes() -> None:
    mods = loaded_after("""
        import agents.main
        from agents.agent import Agent
        from agents.config import load_config
        agent = Agent(load_config(None, env={}, overrides={"node": "imports"}), dry_run=True)
        snap, _ = agent.tick()
        agent.close()
        assert snap.collectors, "no collector ran"
    """)
    assert "agents" in mods and "collectors" in mods  # the probe did run
    assert not mods & {"textual", "rich", "kubernetes", "dashboard", "plotext"}, mods & {
        "textual", "rich", "kubernetes", "dashboard", "plotext"}


def test_wire_layer_is_light() -> None:
    mods = loaded_after("import collectors.schema, collectors.wire, collectors.reader, collectors.cluster")
    assert "msgspec" in mods
    heavy = {"psutil", "pynvml", "httpx", "kubernetes", "textual", "redis", "agents", "dashboard"}
    assert not mods & heavy, mods & heavy


def test_dashboard_loads_no_collector_libraries() -> None:
    if not any(p.suffix == ".py" and p.name != "__init__.py" for p in (ROOT / "dashboard").iterdir()):
        pytest.skip("dashboard package is still empty")
    mods = loaded_after("""
        import dashboard, pkgutil, importlib
        # Every dashboard module, not just the package: a stray import anywhere would show.
        for info in pkgutil.walk_packages(dashboard.__path__, "dashboard."):
            importlib.import_module(info.name)
    """)
    assert "dashboard" in mods
    assert not mods & {"psutil", "pynvml", "agents"}, mods & {"psutil", "pynvml", "agents"}
