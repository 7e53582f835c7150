"""The dashboard's config file: real files through the real loader, precedence, and the CLI's answer to a bad one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clustertop.cli import modes
from clustertop.cli.main import build_parser
from clustertop.config import ConfigError
from clustertop.dashboard.settings import DashboardConfig, load_config
from tests.conftest import FIXTURES

CFG = FIXTURES / "config" / "dashboard"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CLUSTERTOP_* from the developer's shell, and an empty XDG config home (returned)."""
    for k in list(os.environ):
        if k.startswith("CLUSTERTOP_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def run_with_fake_dashboard(monkeypatch: pytest.MonkeyPatch, *argv: str) -> Any:
    """The Settings the app would get from `clustertop <argv>` (the screen itself is not started)."""
    got: list[Any] = []
    monkeypatch.setattr(modes, "show", lambda settings, factory: got.append(settings) or 0)
    args = build_parser().parse_args(list(argv))
    run = modes.run_demo if args.command == "demo" else modes.run_dashboard
    assert run(args) == 0
    (settings,) = got
    return settings


def test_good_file_reaches_the_settings_the_app_gets(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    s = run_with_fake_dashboard(monkeypatch, "dashboard", "--config", str(CFG / "good.toml"))
    assert s.source_label == "redis://ops:***@10.0.0.5:6379/2"  # the file's store, as the header shows it
    assert (s.theme, s.refresh_s, s.read_only, s.wall, s.wall_page_s, s.ascii) == ("light", 2.0, True, False, 30.0, True)
    assert s.themes_dir == os.path.expanduser("~/themes")  # "~" expanded: no shell reads a config file
    assert (s.operator_key, s.operator, s.k8s_context, s.k8s_templates) == (
        "/etc/clustertop/ops.key", "ops", "prod", "/srv/k8s-jobs")
    assert (s.celery_broker, s.dask_scheduler, s.action_timeout_s) == ("redis://celery:6379/0", "http://dask:8787", 5.0)
    assert s.drain_timeout_s == 600.0


def test_top_level_config_flag_means_the_dashboard(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    from clustertop.cli import main

    got: list[Any] = []
    monkeypatch.setattr(modes, "show", lambda settings, factory: got.append(settings) or 0)
    assert main.main(["--config", str(CFG / "good.toml")]) == 0
    assert got[0].theme == "light"


def test_flags_over_environment_over_file(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    good = str(CFG / "good.toml")
    monkeypatch.setenv("CLUSTERTOP_THEME", "high-contrast")
    monkeypatch.setenv("CLUSTERTOP_REFRESH", "0.5")
    monkeypatch.setenv("CLUSTERTOP_KEY", "/env/ops.key")  # the older name of CLUSTERTOP_OPERATOR_KEY
    s = run_with_fake_dashboard(monkeypatch, "dashboard", "--config", good)
    assert (s.theme, s.refresh_s, s.operator_key) == ("high-contrast", 0.5, "/env/ops.key")
    assert s.operator == "ops"  # not in the environment: the file's value stays
    s = run_with_fake_dashboard(monkeypatch, "dashboard", "--config", good, "--theme", "colorblind", "--refresh", "3",
                                "--key", "/flag/ops.key")
    assert (s.theme, s.refresh_s, s.operator_key) == ("colorblind", 3.0, "/flag/ops.key")


def test_xdg_default_file_is_read_when_present(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    assert load_config(None, os.environ) == DashboardConfig()  # no file: the defaults
    (clean_env / "clustertop").mkdir(parents=True)
    (clean_env / "clustertop" / "config.toml").write_text('[dashboard]\ntheme = "light"\nwall = true\n')
    s = run_with_fake_dashboard(monkeypatch, "demo", "--seed", "2")
    assert (s.theme, s.wall, s.read_only) == ("light", True, True)  # wall implies read-only
    (clean_env / "clustertop" / "config.toml").write_text('[dashboard]\nwal = true\n')
    with pytest.raises(ConfigError) as ei:
        modes.config_for(build_parser().parse_args(["dashboard"]))
    assert ei.value.file == str(clean_env / "clustertop" / "config.toml") and ei.value.key == "[dashboard] wal"


@pytest.mark.parametrize("name, key, words", [
    ("unknown_key.toml", "[dashboard] thme", "unknown key (known: action_timeout, alertmanager, ascii, "),
    ("unknown_section.toml", "[dashbaord]", "unknown section (known: ceph, dashboard, history)"),
    ("top_level_key.toml", "theme", "unknown key: settings go in a table ([ceph, dashboard, history])"),
    ("wrong_type.toml", "[dashboard] refresh", "expected int or float, got str 'fast'"),
    ("bad_value.toml", "[dashboard] page_seconds", "must be >= 0, got -5.0"),
    ("bad_url.toml", "[dashboard] redis", "expected a redis://, rediss:// or unix:// URL"),
    ("bad_toml.toml", None, "not valid TOML"),
    ("bad_history_url.toml", "[history] prometheus", "expected an http:// or https:// URL"),
    ("bad_history_range.toml", "[history] wall", "no history range '1 month' (known: 1 h, 24 h, 7 d)"),
    ("unknown_history_key.toml", "[history] retention", "unknown key (known: prometheus, timeout, wall)"),
])
def test_bad_files_name_file_and_key(name: str, key: str | None, words: str) -> None:
    path = str(CFG / name)
    with pytest.raises(ConfigError) as ei:
        load_config(path, {})
    assert (ei.value.file, ei.value.key) == (path, key)
    assert words in ei.value.problem


@pytest.mark.parametrize("env, var, words", [
    ({"CLUSTERTOP_REFRESH": "soon"}, "CLUSTERTOP_REFRESH", "expected int or float"),
    ({"CLUSTERTOP_READ_ONLY": "maybe"}, "CLUSTERTOP_READ_ONLY", "expected true/false"),
    ({"CLUSTERTOP_REDIS": "http://h:6379"}, "CLUSTERTOP_REDIS", "expected a redis://"),
])
def test_bad_environment_names_the_variable(env: dict[str, str], var: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(None, {"XDG_CONFIG_HOME": "/nonexistent", **env})
    assert (ei.value.file, ei.value.key) == ("environment", var)
    assert words in ei.value.problem


@pytest.mark.parametrize("argv", [["dashboard", "--config"], ["--config"]])
def test_cli_bad_file_exits_2_naming_file_and_key(argv: list[str], clean_env: Path) -> None:
    bad = str(CFG / "wrong_type.toml")
    r = subprocess.run([sys.executable, "-m", "clustertop", *argv, bad], capture_output=True, text=True,
                       env=dict(os.environ), timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{bad}: [dashboard] refresh: expected int or float, got str 'fast'" in r.stderr
    assert "Traceback" not in r.stderr
