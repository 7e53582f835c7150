"""Installs that fit where they run: the extras in pyproject.toml, and what a command says without its own.

Two halves. In process: clustertop/cli/extras.py's tables agree with pyproject.toml and cover every
third-party import in the package; a missing library (blocked in sys.modules) gives the hint and exit 2.
For real: a wheel built from this tree (once per session), a fresh venv with only the agent extra, and the
commands run from it — the agent works there (dry run, and publishing to a real Redis without redis-py),
`demo` and `k8s` name the extra they need instead of a traceback, and the venv holds no UI or cluster
client and fits the 40 MB a node is given.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from clustertop import wire
from clustertop.cli import extras, unitfiles
from clustertop.cli.main import build_parser, main
from tests.conftest import ROOT, RedisServer
from tests.layers import graph
from tests.support import install

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
AGENT_LIMIT_MB = 40.0

# ---------------------------------------------------------------------------------------------
# The tables against pyproject.toml and the code
# ---------------------------------------------------------------------------------------------


def declared(extra: str | None) -> set[str]:
    """Normalised distribution names an extra brings (None: the base), following clustertop[...] references."""
    reqs = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
    out: set[str] = set()
    for text in reqs:
        req = Requirement(text)
        if install.normalise(req.name) == "clustertop":
            for sub in req.extras:
                out |= declared(sub)
        else:
            out.add(install.normalise(req.name))
    return out


def third_party_imports() -> dict[str, list[str]]:
    """Top-level name of every non-stdlib import in the package -> the modules importing it."""
    _, edges = graph()
    out: dict[str, list[str]] = {}
    for e in edges:
        top = e.imported.split(".")[0]
        if top and top not in sys.stdlib_module_names and top not in ("clustertop", "__future__"):
            out.setdefault(top, []).append(f"{e.importer}:{e.line}")
    return out


def test_every_third_party_import_is_declared() -> None:
    base = declared(None)
    undeclared = {top: where for top, where in third_party_imports().items()
                  if top not in extras.PROVIDED_BY and install.normalise(top) not in base}
    assert not undeclared, f"imported but in no extra (add to pyproject.toml and extras.PROVIDED_BY): {undeclared}"


def test_the_base_is_msgspec_alone() -> None:
    assert declared(None) == {"msgspec"}


@pytest.mark.parametrize("module", sorted(extras.PROVIDED_BY))
def test_each_extra_named_for_a_module_brings_it(module: str) -> None:
    dist, bringers = extras.PROVIDED_BY[module]
    for extra in bringers:
        assert install.normalise(dist) in declared(extra), f"[{extra}] does not declare {dist} (for {module})"


def test_each_command_needs_only_what_its_extra_brings() -> None:
    parser = build_parser()
    commands = set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)
    for command, (extra, modules) in extras.NEEDS.items():
        assert command in commands, f"{command} is not a subcommand"
        for module in modules:
            assert install.normalise(extras.PROVIDED_BY[module][0]) in declared(extra), (command, module)


def test_includes_mirror_pyproject() -> None:
    """extras.INCLUDES is pyproject's clustertop[...] references within the role extras."""
    refs = {}
    for extra, reqs in PYPROJECT["optional-dependencies"].items():
        inner = [sub for r in reqs if install.normalise((req := Requirement(r)).name) == "clustertop"
                 for sub in sorted(req.extras)]
        if inner and extra not in ("all", "test"):
            refs[extra] = tuple(inner)
    assert refs == extras.INCLUDES


def test_all_is_every_role_and_test_is_all() -> None:
    roles = set(PYPROJECT["optional-dependencies"]) - {"all", "test"}
    assert declared("all") == set().union(*(declared(r) for r in roles))
    assert declared("all") <= declared("test")


def test_agent_extra_carries_no_ui_and_no_cluster_client() -> None:
    assert not declared("agent") & {"textual", "rich", "kubernetes", "celery", "distributed", "fakeredis", "redis"}


def test_constraints_pin_exactly_what_test_resolves_to() -> None:
    """constraints.txt pins every distribution '.[test]' needs (as installed here) and nothing stale.

    After a dependency changes in pyproject.toml this fails until constraints.txt is refreshed (how: its
    top comment)."""
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
            pinned[install.normalise(req.name)] = line
    needed: set[str] = set()
    todo = [Requirement(r) for r in (*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["test"])]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = install.normalise(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        if name == "clustertop":
            todo += [Requirement(r) for e in req.extras for r in PYPROJECT["optional-dependencies"][e]]
            continue
        needed.add(name)
        requires = importlib.metadata.distribution(name).requires or []
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (*req.extras, "")):
                todo.append(sub)
    assert needed - set(pinned) == set(), "needed by [test] but not pinned in constraints.txt"
    assert set(pinned) - needed == set(), "pinned in constraints.txt but no longer needed by [test]"


# ---------------------------------------------------------------------------------------------
# The hint, in process (a library blocked in sys.modules is one that is not installed)
# ---------------------------------------------------------------------------------------------


def test_a_command_without_its_extra_names_it(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "textual", None)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("clustertop demo needs the dashboard extra: pip install 'clustertop[dashboard]' "
                           "(textual is not installed)")


def test_the_hint_comes_before_the_command_complains_about_its_arguments(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No kubeconfig here either; the missing client is the first thing to fix, so it is said first."""
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    assert main(["k8s", "delete", "pod", "ns/name", "--yes"]) == 2
    assert "pip install 'clustertop[k8s]' (kubernetes is not installed)" in capsys.readouterr().err


def test_a_lazy_import_that_fails_later_gets_the_same_hint(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`snapshot --demo` needs fakeredis, which the up-front check (redis) does not cover."""
    monkeypatch.setitem(sys.modules, "fakeredis", None)
    assert main(["snapshot", "--demo"]) == 2
    assert capsys.readouterr().err.strip() == (
        "clustertop snapshot needs the dashboard extra: pip install 'clustertop[dashboard]' "
        "(fakeredis is not installed)")


def test_a_library_from_another_extra_is_named_with_that_extra(capsys: pytest.CaptureFixture[str]) -> None:
    assert extras.hint("k8s", ["redis"]) == ("clustertop k8s needs the dashboard extra: "
                                             "pip install 'clustertop[dashboard]' (redis is not installed)")
    assert extras.hint("kill", ["cryptography", "redis"]).startswith(
        "clustertop kill needs the dashboard extra: pip install 'clustertop[dashboard]'")
    assert "pip install 'clustertop[k8s,dashboard]'" in extras.hint("k8s", ["kubernetes", "redis"])


def test_any_other_missing_module_is_a_bug_and_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from clustertop.cli import snapshot

    def broken(_args: object) -> int:
        raise ModuleNotFoundError("No module named 'clustertop.gone'", name="clustertop.gone")

    monkeypatch.setattr(snapshot, "run", broken)
    with pytest.raises(ModuleNotFoundError, match="clustertop.gone"):
        main(["snapshot", "--demo"])


def test_a_present_library_with_a_missing_submodule_is_not_called_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx is installed here: a ModuleNotFoundError about httpx.something is a broken install, not an extra."""
    e = ModuleNotFoundError("No module named 'httpx._gone'", name="httpx._gone")
    assert extras.known_missing(e) is None
    monkeypatch.setitem(sys.modules, "httpx", None)
    assert extras.known_missing(e) == "httpx"


# ---------------------------------------------------------------------------------------------
# The shipped systemd files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(unitfiles.FILES))
def test_systemd_command_prints_the_shipped_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["systemd", name]) == 0
    assert capsys.readouterr().out == (ROOT / "systemd" / unitfiles.FILES[name]).read_text(encoding="utf-8")


def test_every_file_in_systemd_is_offered() -> None:
    shipped = {p.name for p in (ROOT / "systemd").iterdir() if p.is_file() and p.name != "__init__.py"}
    assert shipped == set(unitfiles.FILES.values())


# ---------------------------------------------------------------------------------------------
# For real: a wheel, a fresh venv with only the agent extra
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session from this tree, as `pip install .` would build it."""
    return install.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def agent_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    return install.make_venv(tmp_path_factory.mktemp("agent-venv") / "venv", wheel, "agent")


def run_in(venv: Path, *argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The venv's own `clustertop` script, from outside the checkout, with no clustertop settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "PYTHON"))}
    env["KUBECONFIG"] = str(cwd / "no-kubeconfig")
    return subprocess.run([str(install.bin_path(venv, "clustertop")), *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def test_the_wheel_carries_the_units_the_sample_configs_and_the_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for filename in unitfiles.FILES.values():
        assert f"clustertop/systemd/{filename}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    # The preset deflate dictionaries: without them no packed payload is read or written (wire.compress).
    from clustertop.wire import compress

    assert {f"clustertop/wire/dicts/{name}" for name in compress.DICTS.values()} <= names
    # One namespace: nothing but clustertop and its dist-info at the top of site-packages.
    assert {n.split("/")[0] for n in names} == {"clustertop", wheel.name.split("-py3")[0] + ".dist-info"}


def test_agent_venv_holds_no_ui_and_no_cluster_client(agent_venv: Path) -> None:
    dists = install.distributions(agent_venv)
    assert {"clustertop", "msgspec", "httpx", "cryptography", "nvidia-ml-py"} <= set(dists), dists
    unwanted = {"textual", "rich", "plotext", "kubernetes", "celery", "kombu", "distributed", "dask",
                "fakeredis", "redis", "hiredis", "textual-serve", "aiohttp", "psutil"}
    assert not set(dists) & unwanted, set(dists) & unwanted


def test_agent_venv_fits_a_node(agent_venv: Path) -> None:
    total, per_dist = install.footprint(agent_venv)
    assert total / 1e6 <= AGENT_LIMIT_MB, {k: round(v / 1e6, 2) for k, v in per_dist.items()}


def test_agent_dry_run_works_with_the_agent_extra_alone(agent_venv: Path, tmp_path: Path) -> None:
    r = run_in(agent_venv, "agent", "--once", "--dry-run", "--node", "fresh-venv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["node"]["host"] == "fresh-venv"
    assert out["node"]["collectors"]["host"]["ok"] is True, out["node"]["collectors"]["host"]
    assert "Traceback" not in r.stderr


def test_agent_publishes_to_redis_without_redis_py(agent_venv: Path, tmp_path: Path,
                                                   redis_server: RedisServer) -> None:
    """The agent speaks RESP itself: no redis-py in the venv, and the snapshot still lands."""
    r = run_in(agent_venv, "agent", "--once", "--redis", redis_server.url, "--node", "fresh-venv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert redis_server.client().exists(wire.node_key("fresh-venv")) == 1


@pytest.mark.parametrize(("argv", "extra"), [
    (["demo"], "dashboard"),
    ([], "dashboard"),  # no subcommand: local mode's dashboard
    (["k8s", "delete", "pod", "ns/name", "--yes"], "k8s"),
    (["celery", "revoke", "0123", "--broker", "redis://127.0.0.1:1/0"], "celery"),
    (["serve", "--demo"], "serve"),
])
def test_commands_without_their_extra_say_which_to_install(agent_venv: Path, tmp_path: Path, argv: list[str],
                                                          extra: str) -> None:
    r = run_in(agent_venv, *argv, cwd=tmp_path)
    command = argv[0] if argv else "dashboard"
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"clustertop {command} needs the {extra} extra: pip install 'clustertop[{extra}]'"), \
        r.stderr


def test_shipped_unit_is_printed_from_the_installed_package(agent_venv: Path, tmp_path: Path) -> None:
    r = run_in(agent_venv, "systemd", "agent", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / "systemd" / "clustertop-agent.service").read_text(encoding="utf-8")
    listing = run_in(agent_venv, "systemd", cwd=tmp_path).stdout
    assert str(install.site_packages(agent_venv) / "clustertop" / "systemd") in listing


# ---------------------------------------------------------------------------------------------
# For real: the README's first command, `pip install '.[dashboard]' && clustertop demo`
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dashboard_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    return install.make_venv(tmp_path_factory.mktemp("dashboard-venv") / "venv", wheel, "dashboard")


def test_dashboard_venv_holds_no_cluster_client(dashboard_venv: Path) -> None:
    dists = set(install.distributions(dashboard_venv))
    assert {"textual", "redis", "fakeredis", "plotext"} <= dists
    assert not dists & {"kubernetes", "celery", "distributed", "textual-serve", "httpx"}, dists


def test_snapshot_of_the_demo_with_the_dashboard_extra(dashboard_venv: Path, tmp_path: Path) -> None:
    r = run_in(dashboard_venv, "snapshot", "--demo", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["nodes_up"] > 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (tests/run installs it)")
@pytest.mark.parametrize("argv", [["demo"], []], ids=["demo", "local-mode"])
def test_demo_and_local_mode_run_with_the_dashboard_extra(dashboard_venv: Path, tmp_path: Path,
                                                          argv: list[str]) -> None:
    """In a real terminal (tmux): the overview comes up, q quits with 0, no traceback."""
    sock = f"ct-extras-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERTOP_", "PYTHON", "TMUX"))}
    env.update(TERM="xterm-256color", COLORTERM="truecolor")
    cmd = " ".join([str(install.bin_path(dashboard_venv, "clustertop")), *argv])

    def tmux(*args: str) -> str:
        r = subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def wait_for(pattern: str) -> str:
        screen = ""
        for _ in range(600):  # a bound that turns a hang into a readable failure, not a timing assertion
            screen = tmux("capture-pane", "-p", "-t", "t")
            if re.search(pattern, screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"waiting for {pattern!r}; the screen was:\n{screen}")

    tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120", "-y", "40",
         f"cd {tmp_path} && {cmd}; echo clustertop exited with $?; sleep 60")
    try:
        wait_for(r"clustertop overview")
        wait_for(r"\d+/\d+ nodes up")  # the first read lands after the first frame (slower under load)
        tmux("send-keys", "-t", "t", "q")
        screen = wait_for(r"clustertop exited with \d+")
        assert "clustertop exited with 0" in screen and "Traceback" not in screen, screen
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=30)
