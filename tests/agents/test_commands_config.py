"""The sample job-control config, loaded through the real agent config loader into an executor."""

from __future__ import annotations

import shutil

from clustertop.agents.commands import CommandExecutor
from clustertop.agents.config import load_config
from clustertop.control import signing
from tests.conftest import FIXTURES


def test_sample_config_builds_an_executor(redis_server, tmp_path):
    shutil.copy(FIXTURES / "commands" / "agent.toml", tmp_path / "agent.toml")
    _, _, kid = signing.generate(str(tmp_path), "operator")
    cfg = load_config(str(tmp_path / "agent.toml"), env={})
    ex = CommandExecutor(redis_server.client, cfg.node, cfg, state_dir=str(tmp_path / "state"))
    assert list(ex.security.keys) == [kid]
    assert ex.security.signal_users == ["alice", "bob"] and not ex.security.allow_root
    tpl = ex.templates["train"]
    assert (tpl.user, tpl.memory_max, tpl.cpu_quota, tpl.timeout_s) == ("alice", "32G", "400%", 86400.0)
    assert tpl.render({"lr": "3e-4", "dataset": "imagenet/train"}) == [
        "python3", "-m", "trainer", "--model=resnet50", "--epochs", "10", "--lr", "0.0003", "imagenet/train"]
    assert ex.tasks() == [] and ex.roots.proc == "/proc"
