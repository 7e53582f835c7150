"""The wall's unit file: `systemd-analyze verify` passes, exposure stays low, and it serves the wall
read-only on loopback and kills every dashboard process it started when stopped."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "clustertop-wall.service"
ANALYZE = shutil.which("systemd-analyze")


def need_analyze() -> str:
    if ANALYZE is None:
        pytest.skip("systemd-analyze not installed")
    return ANALYZE


def test_wall_unit_verifies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exe = need_analyze()
    units = tmp_path / "units"
    dropin = units / f"{UNIT.name}.d"
    dropin.mkdir(parents=True)
    shutil.copy(UNIT, units / UNIT.name)
    dummy = tmp_path / "bin" / "clustertop"
    dummy.parent.mkdir()
    dummy.write_text("#!/bin/sh\nexit 0\n")
    dummy.chmod(0o755)
    # verify insists the ExecStart binary exists: a drop-in points it at a dummy.
    (dropin / "exec.conf").write_text(f"[Service]\nExecStart=\nExecStart={dummy} serve --wall\n")
    r = subprocess.run([exe, "verify", str(units / UNIT.name)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert UNIT.name not in r.stderr, r.stderr


def test_wall_unit_exposure_is_low() -> None:
    exe = need_analyze()
    r = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    print(f"exposure {m.group(1)}")
    assert float(m.group(1)) <= 2.0


def test_wall_unit_essentials() -> None:
    text = UNIT.read_text()
    for line in ("ExecStart=/usr/local/bin/clustertop serve --wall --host 127.0.0.1 ",
                 "KillMode=control-group", "Restart=always", "DynamicUser=yes", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=\n", "EnvironmentFile=-/etc/clustertop/wall.env"):
        assert line in text, line
