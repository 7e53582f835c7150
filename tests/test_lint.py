"""ruff on everything, mypy on the rooms everything else builds on (wire, read, control, config, errors, store).

mypy reads source trees, and clustertop's user-fixed folders (collectors/, agents/, dashboard/, themes/)
join the package only through setuptools' package-dir mapping, which mypy does not follow. So the check
runs on a tree of symlinks laid out as the wheel installs it (clustertop/collectors -> collectors/ …),
built from the same mapping in pyproject.toml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.layers import package_dirs

TYPED_ROOMS = ["wire", "read", "control", "store", "config.py", "errors.py", "alerting"]


def test_ruff_finds_nothing() -> None:
    # The ruff the [test] extra installed beside this interpreter (constraints.txt pins it), else PATH's.
    ruff = str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        ruff = shutil.which("ruff") or ruff
    if not Path(ruff).exists():
        pytest.fail("ruff not installed: tests/run installs the [test] extra, which brings it")
    r = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def installed_layout(dest: Path) -> Path:
    """dest/clustertop/... with every mapped folder linked where the wheel puts it."""
    dirs = package_dirs()
    top = dest / "clustertop"
    top.mkdir()
    for entry in (ROOT / "clustertop").iterdir():
        (top / entry.name).symlink_to(entry)
    for name, folder in dirs.items():
        if name != "clustertop":
            (dest / Path(*name.split("."))).symlink_to(folder, target_is_directory=True)
    return top


def test_mypy_on_the_typed_rooms(tmp_path: Path) -> None:
    top = installed_layout(tmp_path)
    targets = [str(top / r) for r in TYPED_ROOMS]
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                        "--no-incremental", "--cache-dir", str(tmp_path / ".mypy_cache"), *targets],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
