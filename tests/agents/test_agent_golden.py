"""Golden end-to-end: the real `clustertop agent --once --dry-run` on a captured host tree.

Only deterministic collectors run (host and bonds read nothing but the fixture tree; gpu and nfs
would describe this machine). Volatile fields (timestamps, durations, the agent's own cost) are
removed before comparing. ``UPDATE_GOLDEN=1`` rewrites tests/golden/agent_dry_run.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT

TREE = FIXTURES / "host" / "basic"
GOLDEN = ROOT / "tests" / "golden" / "agent_dry_run.json"
CONFIG = """\
[collectors.gpu]
enabled = false

[collectors.nfs]
enabled = false
"""


def strip_volatile(out: dict[str, Any]) -> dict[str, Any]:
    node = out["node"]
    for key in ("ts", "agent"):
        node.pop(key, None)
    for status in node.get("collectors", {}).values():
        status.pop("duration_ms", None)
        status.pop("last_ok_ts", None)
    for payload in out.get("cluster", {}).values():
        for key in ("ts", "last_ok_ts"):
            payload.pop(key, None)
    return out


def test_dry_run_on_fixture_tree_matches_golden(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not (TREE / "proc").is_dir() or not (TREE / "sys").is_dir():
        pytest.skip(f"fixture tree {TREE} not captured yet")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_")}
    r = subprocess.run([sys.executable, "-m", "clustertop", "agent", "--once", "--dry-run", "--config", str(cfg),
                        "--proc-root", str(TREE / "proc"), "--sys-root", str(TREE / "sys"), "--node", "fixture"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    got = strip_volatile(json.loads(r.stdout))
    # Sanity independent of the golden file: the tree was read, not this machine.
    assert got["node"]["host"] == "fixture"
    assert got["node"]["collectors"]["host"]["ok"] is True
    kernel = TREE / "proc" / "sys" / "kernel"
    if (kernel / "hostname").exists():
        assert got["node"]["system"]["hostname"] == (kernel / "hostname").read_text().strip()
    if os.environ.get("UPDATE_GOLDEN") or not GOLDEN.exists():
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        if not os.environ.get("UPDATE_GOLDEN"):
            pytest.fail(f"{GOLDEN} did not exist: written now, review and commit it")
        return
    want = json.loads(GOLDEN.read_text())
    assert got == want, "dry-run output changed; review the diff, then rerun with UPDATE_GOLDEN=1"
