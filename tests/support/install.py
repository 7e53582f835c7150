"""Real installs of clustertop: a wheel built from this tree, fresh venvs with one extra, their size.

Shared by tests/cli/test_extras.py (the commands in a venv with only the agent extra) and
bench/install_footprint.py (site-packages per extra, the agent's import time and RSS). Nothing is
faked: `pip wheel` builds the wheel as a user's `pip install .` would, `python -m venv` makes the venv,
pip installs from the package index (with constraints.txt, so the versions are the tested ones).
Stdlib only, so the bench can use it outside pytest.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CONSTRAINTS = ROOT / "constraints.txt"

#: What goes into the wheel: pyproject's package-dir folders and what its metadata reads. Copied to a
#: scratch tree first, so building never writes build/ or egg-info into the checkout others work in.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "clustertop", "agents", "collectors", "dashboard", "themes",
           "systemd")

#: A fresh venv's own tools, not what an extra costs (their files are left out of the size).
VENV_TOOLS = {"pip", "setuptools", "wheel"}

#: pip as a script runs it: no prompts, no "new pip available" notice, no warning about running as root.
_PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_ROOT_USER_ACTION": "ignore"}


class InstallError(RuntimeError):
    pass


def _run(argv: list[str], what: str, timeout: float) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **_PIP_ENV})
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
        raise InstallError(f"{what} failed ({r.returncode}): {' '.join(argv)}\n{tail}")


def build_wheel(out_dir: Path) -> Path:
    """The wheel of this tree (pyproject.toml's build backend, in pip's isolated build env)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ct-src-") as scratch:
        src = Path(scratch) / "clustertop"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=ignore)
            else:
                shutil.copy2(path, src / name)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir), str(src)],
             "building the wheel", timeout=300)
    wheels = sorted(out_dir.glob("clustertop-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise InstallError(f"pip wheel left no clustertop wheel in {out_dir}")
    return wheels[-1]


def make_venv(venv: Path, wheel: Path, extras: str, constraints: Path | None = CONSTRAINTS) -> Path:
    """A fresh venv at ``venv`` with ``wheel[extras]`` installed (extras may be ""). Returns ``venv``."""
    _run([sys.executable, "-m", "venv", str(venv)], "creating the venv", timeout=120)
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    argv = [str(bin_path(venv, "python")), "-m", "pip", "install", "-q"]
    if constraints is not None:
        argv += ["-c", str(constraints)]
    _run([*argv, target], f"pip install {wheel.name}[{extras}]", timeout=900)
    return venv


def bin_path(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise InstallError(f"expected one site-packages in {venv}, found {found}")
    return found[0]


def distributions(venv: Path) -> dict[str, str]:
    """Normalised distribution name -> version, of what is installed in the venv."""
    out = {}
    for d in importlib.metadata.distributions(path=[str(site_packages(venv))]):
        out[normalise(d.metadata["Name"])] = d.version
    return out


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _tree_bytes(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def footprint(venv: Path) -> tuple[int, dict[str, int]]:
    """Bytes of site-packages without the venv's own tools, and bytes per distribution (largest first).

    Apparent sizes (sum of file sizes, .pyc included: pip compiles on install, a node carries them).
    The tools' share is every top-level entry their RECORD names (pip/, setuptools/, pkg_resources/,
    _distutils_hack/, distutils-precedence.pth, their dist-info folders).
    """
    site = site_packages(venv)
    tool_tops: set[str] = set()
    per_dist: dict[str, int] = {}
    for d in importlib.metadata.distributions(path=[str(site)]):
        name = normalise(d.metadata["Name"])
        files = [f for f in (d.files or []) if not str(f).startswith("..")]  # '..': scripts in bin/
        if name in VENV_TOOLS:
            tool_tops.update(Path(f).parts[0] for f in files)
            continue
        size = 0
        for f in files:
            p = site / f
            if p.is_file():
                size += p.lstat().st_size
        per_dist[name] = size
    total = sum(_tree_bytes(p) for p in site.iterdir() if p.name not in tool_tops)
    return total, dict(sorted(per_dist.items(), key=lambda kv: -kv[1]))
