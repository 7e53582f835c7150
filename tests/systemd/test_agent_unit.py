"""The agent's unit file: `systemd-analyze verify` passes and the exposure score stays <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from clustertop.agents.config import load_config
from clustertop.collectors import base
from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "clustertop-agent.service"
ANALYZE = shutil.which("systemd-analyze")


def need_analyze() -> str:
    if ANALYZE is None:
        print("systemd-analyze not installed: unit checks skipped")
        pytest.skip("systemd-analyze not installed")
    return ANALYZE


def test_unit_verifies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exe = need_analyze()
    # verify refuses an ExecStart binary that does not exist. It adds the unit's own directory to
    # the search path, so a drop-in next to a copy of the unit points ExecStart at a dummy.
    units = tmp_path / "units"
    dropin = units / f"{UNIT.name}.d"
    dropin.mkdir(parents=True)
    shutil.copy(UNIT, units / UNIT.name)
    dummy = tmp_path / "bin" / "clustertop"
    dummy.parent.mkdir()
    dummy.write_text("#!/bin/sh\nexit 0\n")
    dummy.chmod(0o755)
    (dropin / "exec.conf").write_text(f"[Service]\nExecStart=\nExecStart={dummy} agent --config /etc/clustertop/agent.toml\n")
    r = subprocess.run([exe, "verify", str(units / UNIT.name)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clustertop-agent.service" not in r.stderr, r.stderr  # no warning about our unit either
    # The drop-in really was read: without it, the missing binary is reported.
    (dropin / "exec.conf").write_text("[Service]\nExecStart=\nExecStart=/nonexistent/clustertop agent\n")
    bad = subprocess.run([exe, "verify", str(units / UNIT.name)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "/nonexistent/clustertop" in bad.stdout + bad.stderr


def test_unit_exposure_is_ok() -> None:
    exe = need_analyze()
    r = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    score = float(m.group(1))
    print(f"exposure {score}")
    assert score <= 2.0


def test_unit_essentials() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
                 "EnvironmentFile=-/etc/clustertop/agent.env",
                 "ExecStart=/usr/local/bin/clustertop agent --config /etc/clustertop/agent.toml"):
        assert line in text, line


def test_example_config_loads_commented_and_uncommented(tmp_path) -> None:  # type: ignore[no-untyped-def]
    example = ROOT / "systemd" / "agent.toml.example"
    cfg = load_config(str(example), env={}, overrides={"node": "n"})
    assert cfg.redis_url is None and cfg.collectors == {}
    # Every "# key = value" and "# [section]" line uncommented: still a valid config, every key known.
    live = re.sub(r"(?m)^(\s*)#\s+(\[[^\]]+\]|[a-z_]+ = .*)$", r"\1\2", example.read_text())
    path = tmp_path / "agent.toml"
    path.write_text(live)
    full = load_config(str(path), env={})
    assert full.redis_url == "redis://clustertop@redis.lab:6379/0"
    assert set(full.collectors) == set(base.REGISTRY)  # every collector's section is documented
    assert full.collectors["ceph"].options["username"] == "clustertop"
    assert full.templates["train"].argv[0] == "python3"
