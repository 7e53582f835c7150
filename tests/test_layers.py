"""The layout's rules, checked: who may import whom (every import statement, read from the files),
no circles, one namespace, and what each side leaves out of sys.modules when it really runs.

The table below is the contract; docs/architecture.md draws it. A new dependency between rooms is a
design decision: change the table in the same commit and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from collections import defaultdict

import pytest

from tests.conftest import ROOT
from tests.layers import Import, graph, modules, package_dirs, room

#: room -> the rooms it may import ("" is the namespace root, which holds only ``__version__``).
MAY_IMPORT: dict[str, set[str]] = {
    # errors: describe(), the one wording of an exception for every room; it imports nothing.
    "errors": set(),
    "wire": {"errors"},
    "config": {"errors"},
    "themes": {"errors"},
    # data only (the systemd units and sample configs in the wheel): read with importlib.resources, never imported
    "systemd": set(),
    "store": {"errors", "config", "wire"},
    "read": {"errors", "wire"},
    "collectors": {"errors", "config", "wire", "store"},
    # control reuses the Kubernetes collector's client builder and pod parser: one of each, not a copy.
    "control": {"errors", "config", "wire", "store", "collectors"},
    # alerting: the rule set over read.cluster.alerts, Alertmanager delivery, the signed alert state in Redis.
    "alerting": {"errors", "config", "wire", "read", "control"},
    # agents run the alert evaluation (alerting) while one of them holds the "alerts" lease, and fold bucket
    # summaries (read: the Reader and read.summary) for the buckets whose leases they hold.
    "agents": {"errors", "config", "wire", "store", "control", "collectors", "alerting", "read"},
    # sim gives each simulated node its own key (control.signing), so a demo's nodes seal like real agents; and
    # folds its nodes into bucket summaries (read.summary) as a summary node's agent does.
    "sim": {"errors", "config", "wire", "store", "collectors", "control", "agents", "read"},
    "dashboard": {"errors", "config", "wire", "store", "read", "control", "themes", "alerting"},
    # export: the Prometheus exposition of a read (`clustertop exporter`); the CLI hands it its Redis client.
    "export": {"errors", "wire", "read"},
    "cli": {"errors", "config", "wire", "store", "read", "control", "collectors", "agents", "sim", "dashboard",
            "themes", "export", "alerting"},
    "__main__": {"cli"},
}

#: Third-party libraries a room may import at module top (lazy imports inside functions are how the
#: heavy ones stay out of processes that do not use them; the sys.modules probes below check that).
TOP_LEVEL_LIBRARIES: dict[str, set[str]] = {
    "errors": set(),
    "wire": {"msgspec"},
    "read": {"msgspec"},
    "config": {"msgspec"},
}

STDLIB = set(sys.stdlib_module_names)


def _edges() -> tuple[dict[str, object], list[Import]]:
    mods, edges = graph()
    return mods, edges


def test_every_room_is_in_the_contract() -> None:
    mods, _ = _edges()
    rooms = {room(m) for m in mods} - {"", None}
    assert rooms == set(MAY_IMPORT), rooms ^ set(MAY_IMPORT)


def test_rooms_import_only_what_the_contract_allows() -> None:
    _, edges = _edges()
    bad = []
    for e in edges:
        a, b = room(e.importer), room(e.imported)
        if b is None or a == b or b == "":
            continue
        if b not in MAY_IMPORT.get(a or "", set()):
            bad.append(f"{e.importer}:{e.line} imports {e.imported} ({a} may import {sorted(MAY_IMPORT[a or ''])})")
    assert not bad, "\n".join(bad)


def test_the_contract_has_no_circle() -> None:
    seen: dict[str, int] = {}

    def visit(r: str, path: list[str]) -> None:
        assert seen.get(r) != 1, " -> ".join([*path, r])
        if seen.get(r) == 2:
            return
        seen[r] = 1
        for s in MAY_IMPORT.get(r, ()):
            visit(s, [*path, r])
        seen[r] = 2

    for r in MAY_IMPORT:
        visit(r, [])


def test_no_module_import_circle() -> None:
    """At import time (module top, TYPE_CHECKING left out): a circle makes import order matter."""
    mods, edges = _edges()
    g: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        if not (e.lazy or e.typing_only) and e.imported in mods and e.imported != e.importer:
            g[e.importer].add(e.imported)
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            circles.append(" -> ".join([*path[path.index(m):], m]))
            return
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(g[m]):
            visit(n, [*path, m])
        state[m] = 2

    for m in sorted(mods):
        visit(m, [])
    assert not circles, "\n".join(circles)


def test_nothing_imports_the_cli() -> None:
    _, edges = _edges()
    bad = [f"{e.importer}:{e.line}" for e in edges
           if room(e.imported) == "cli" and room(e.importer) not in ("cli", "__main__")]
    assert not bad, bad


def test_light_rooms_import_no_heavy_library_at_module_top() -> None:
    _, edges = _edges()
    bad = []
    for e in edges:
        r = room(e.importer)
        if r not in TOP_LEVEL_LIBRARIES or e.lazy or e.typing_only or room(e.imported) is not None:
            continue
        top = e.imported.split(".")[0]
        if top and top not in STDLIB and top != "__future__" and top not in TOP_LEVEL_LIBRARIES[r]:
            bad.append(f"{e.importer}:{e.line} imports {e.imported}")
    assert not bad, "\n".join(bad)


def test_one_namespace_only() -> None:
    """Everything is clustertop.…: no import of the folders by their own names (a second copy of a module)."""
    _, edges = _edges()
    legacy = {"collectors", "agents", "dashboard", "themes"}
    bad = [f"{e.importer}:{e.line} imports {e.imported}" for e in edges if e.imported.split(".")[0] in legacy]
    # tests, bench and scripts too
    for folder in ("tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for e in __import__("tests.layers", fromlist=["imports_of"]).imports_of("x", path, set()):
                if e.imported.split(".")[0] in legacy:
                    bad.append(f"{path.relative_to(ROOT)}:{e.line} imports {e.imported}")
    assert not bad, "\n".join(bad)


def test_pyproject_lists_every_package_and_nothing_else() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert listed == found, listed ^ found
    assert all(name == "clustertop" or name.startswith("clustertop.") for name in package_dirs())


# ---------------------------------------------------------------------------------------------
# What each side really loads (fresh interpreter)
# ---------------------------------------------------------------------------------------------


def loaded_after(code: str) -> set[str]:
    """Module names present in sys.modules after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, sys as _sys
        print("MODULES=" + _json.dumps(sorted(_sys.modules)))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES="):]))


def tops(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


def rooms_loaded(mods: set[str]) -> set[str]:
    return {r for r in (room(m) for m in mods) if r}


def test_agent_tick_loads_no_ui_and_no_kubernetes() -> None:
    mods = loaded_after("""
        import clustertop.agents.main
        from clustertop.agents.agent import Agent
        from clustertop.agents.config import load_config
        agent = Agent(load_config(None, env={}, overrides={"node": "imports"}), dry_run=True)
        snap, _ = agent.tick()
        agent.close()
        assert snap.collectors, "no collector ran"
    """)
    assert "clustertop.agents.agent" in mods and "clustertop.collectors.host" in mods  # the probe did run
    heavy = {"textual", "rich", "kubernetes", "plotext", "redis", "fakeredis", "celery", "distributed"}
    assert not tops(mods) & heavy, tops(mods) & heavy
    assert not rooms_loaded(mods) & {"dashboard", "read", "sim", "cli", "themes"}


def test_wire_and_read_rooms_are_light() -> None:
    mods = loaded_after("import clustertop.wire.schema, clustertop.wire.digest, clustertop.wire.brief, "
                        "clustertop.read.reader, clustertop.read.cluster, clustertop.read.ledger")
    assert "msgspec" in tops(mods)
    heavy = {"psutil", "pynvml", "httpx", "kubernetes", "textual", "redis", "cryptography"}
    assert not tops(mods) & heavy, tops(mods) & heavy
    assert rooms_loaded(mods) <= {"wire", "read"}, rooms_loaded(mods)


def test_dashboard_loads_no_collector_libraries() -> None:
    mods = loaded_after("""
        import clustertop.dashboard as dashboard, pkgutil, importlib
        # Every dashboard module, not just the package: a stray import anywhere would show.
        for info in pkgutil.walk_packages(dashboard.__path__, "clustertop.dashboard."):
            importlib.import_module(info.name)
    """)
    assert "clustertop.dashboard.app" in mods
    assert not tops(mods) & {"psutil", "pynvml"}, tops(mods) & {"psutil", "pynvml"}
    assert not rooms_loaded(mods) & {"agents", "collectors", "sim", "cli"}, rooms_loaded(mods)


@pytest.mark.parametrize("argv", [["--help"], ["agent", "--help"]])
def test_cli_help_loads_nothing_heavy(argv: list[str]) -> None:
    """`clustertop --help` answers at once: subcommands import what they need when they run."""
    mods = loaded_after(f"""
        import sys
        from clustertop.cli.main import main
        try:
            main({argv!r})
        except SystemExit:
            pass
    """)
    heavy = {"textual", "kubernetes", "psutil", "pynvml", "redis", "fakeredis", "httpx"}
    assert not tops(mods) & heavy, tops(mods) & heavy
