"""Agent config: strict file parsing (errors name file and key), environment, flag precedence."""

from __future__ import annotations

import os

import pytest

from clustertop.agents.config import AgentConfig, load_config, node_name
from clustertop.config import ConfigError
from tests.conftest import FIXTURES

CFG = FIXTURES / "config"


def test_good_file_fills_every_section() -> None:
    cfg = load_config(str(CFG / "good.toml"), env={})
    assert isinstance(cfg, AgentConfig)
    assert cfg.file == str(CFG / "good.toml")
    assert cfg.redis_url == "redis://:secret@10.0.0.5:6379/0"
    assert (cfg.interval_s, cfg.hist_every_s) == (2.0, 10.0)
    assert (cfg.node, cfg.role, cfg.read_only) == ("tower-1", "gpu", True)
    assert cfg.labels == {"rack": "a3", "site": "lab"}
    gpu = cfg.collectors["gpu"]
    assert (gpu.interval_s, gpu.timeout_s, gpu.options) == (2.0, 1.5, {})
    ceph = cfg.collectors["ceph"]
    # Collector-specific keys are passed through untouched; the collector validates them.
    assert ceph.options == {"urls": ["https://mgr-a:8443", "https://mgr-b:8443"], "username": "clustertop",
                            "password_file": "/etc/clustertop/ceph.pass"}
    assert ceph.interval_s == 10.0 and ceph.enabled
    assert cfg.templates["train"].argv[0] == "python"  # typed: [templates.*] and [security] are Structs
    assert cfg.security.operator_keys
    # nfs disabled, ceph (cluster scope) runs because it is configured, defaults otherwise.
    assert cfg.enabled_collectors() == ["host", "gpu", "bonds", "containers", "sensors", "ceph"]


def test_defaults_without_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sys" / "kernel").mkdir(parents=True)
    (tmp_path / "sys" / "kernel" / "hostname").write_text("fixture-host\n")
    cfg = load_config(None, env={}, overrides={"proc_root": str(tmp_path)})
    assert cfg.file is None and cfg.redis_url is None
    assert (cfg.interval_s, cfg.hist_every_s, cfg.read_only) == (1.0, 5.0, False)
    assert cfg.node == "fixture-host"  # the hostname under the proc root, not this machine's
    assert cfg.enabled_collectors() == ["host", "gpu", "bonds", "nfs", "containers", "sensors"]


def test_node_name_falls_back_to_this_machine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    assert node_name(str(tmp_path)) == socket.gethostname()


@pytest.mark.parametrize("name, key, words", [
    ("unknown_agent_key.toml", "[agent] intervall", "unknown key"),
    ("unknown_section.toml", "[dashbaord]", "unknown section"),
    ("wrong_type.toml", "[agent] interval", "expected int or float, got str 'fast'"),
    ("unknown_collector.toml", "[collectors.gpus]", "unknown collector"),
    ("collector_wrong_type.toml", "[collectors.host] enabled", "expected bool"),
    ("negative_interval.toml", "[collectors.bonds] interval", "must be > 0"),
    ("security_not_table.toml", "[security]", "expected table, got str 'none'"),
    ("labels_not_str.toml", "[agent] labels.rack", "expected str"),
    ("agent_bad_value.toml", "[agent] redis", "expected a redis://, rediss:// or unix:// URL"),
    # A collector's own options are checked at load, with the collector's own Struct.
    ("collector_unknown_key.toml", "[collectors.ceph] url", "unknown key (known: ca_file, "),
    ("collector_bad_value.toml", "[collectors.nfs] probe_timeout", "must be at most 30 s, got 31.0"),
    ("template_unknown_key.toml", "[templates.train] privileged", "unknown key (known: argv, cwd, description, "),
    ("template_shell.toml", "[templates.train] argv", "runs a shell ('bash -c python train.py --data {data}')"),
    ("template_wrong_type.toml", "[templates.train] argv", "expected list, got str 'python train.py'"),
    ("template_bad_value.toml", "[templates.train.limits] memory_max", "expected bytes, e.g. 4G"),
    ("template_bad_param.toml", "[templates.train.params] epochs", "param epochs: expected int, got 'ten'"),
    ("security_unknown_key.toml", "[security] allow_rot", "unknown key (known: allow_root, "),
    ("security_wrong_type.toml", "[security] min_uid", "expected int, got str '1000'"),
    ("security_bad_value.toml", "[security] verbs", "unknown verb 'reboot'"),
])
def test_bad_files_name_file_and_key(name: str, key: str, words: str) -> None:
    path = str(CFG / name)
    with pytest.raises(ConfigError) as ei:
        load_config(path, env={})
    e = ei.value
    assert e.file == path and e.key == key
    assert words in e.problem
    assert str(e).startswith(f"{path}: {key}: ")


def test_bad_toml_and_missing_file_name_the_file() -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as ei:
        load_config(str(CFG / "bad_toml.toml"), env={})
    assert ei.value.file == str(CFG / "bad_toml.toml")
    with pytest.raises(ConfigError, match="file not found") as ei:
        load_config(str(CFG / "nope.toml"), env={})
    assert ei.value.file == str(CFG / "nope.toml")


def test_config_path_from_environment() -> None:
    cfg = load_config(None, env={"CLUSTERTOP_CONFIG": str(CFG / "good.toml")})
    assert cfg.node == "tower-1"


def test_precedence_flags_over_env_over_file() -> None:
    good = str(CFG / "good.toml")
    env = {"CLUSTERTOP_REDIS": "redis://env:6379/1", "CLUSTERTOP_INTERVAL": "0.5",
           "CLUSTERTOP_NODE": "env-node", "CLUSTERTOP_READ_ONLY": "false"}
    from_env = load_config(good, env=env)
    assert (from_env.redis_url, from_env.interval_s, from_env.node, from_env.read_only) == (
        "redis://env:6379/1", 0.5, "env-node", False)
    assert from_env.role == "gpu"  # not overridden: the file's value stays
    flags = {"redis_url": "redis://flag:6379/2", "interval_s": 3.0, "node": "flag-node", "read_only": True,
             "sys_root": None}  # None = flag not given
    from_flags = load_config(good, env=env, overrides=flags)
    assert (from_flags.redis_url, from_flags.interval_s, from_flags.node, from_flags.read_only) == (
        "redis://flag:6379/2", 3.0, "flag-node", True)
    assert from_flags.sys_root == "/sys"


@pytest.mark.parametrize("var, value", [
    ("CLUSTERTOP_INTERVAL", "soon"),
    ("CLUSTERTOP_INTERVAL", "0"),
    ("CLUSTERTOP_HISTORY_INTERVAL", "-5"),
    ("CLUSTERTOP_READ_ONLY", "maybe"),
    ("CLUSTERTOP_REDIS", "http://10.0.0.5:6379"),
])
def test_bad_environment_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(None, env={var: value, "CLUSTERTOP_NODE": "n"})
    assert ei.value.key == var
    assert var in str(ei.value)


def test_bad_url_error_does_not_leak_the_password() -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(None, env={"CLUSTERTOP_REDIS": "http://user:hunter2@h:6379", "CLUSTERTOP_NODE": "n"})
    assert "hunter2" not in str(ei.value)


def test_cli_reports_config_errors_with_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--dry-run", "--config",
                        str(CFG / "unknown_agent_key.toml")], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 2
    assert "unknown_agent_key.toml: [agent] intervall: unknown key" in r.stderr
