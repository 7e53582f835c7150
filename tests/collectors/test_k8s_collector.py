"""The kubernetes collector's configuration, its lazy import, and its failure words (no API server needed).

The real API server runs in test_k8s_real.py; here only what needs none of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clustertop.collectors.base import REGISTRY, Context, load
from clustertop.collectors.kubernetes import (
    KubernetesCollector,
    KubernetesUnreachable,
    api_status_message,
    parse_settings,
)
from clustertop.config import ConfigError
from tests.conftest import ROOT, free_port

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: t}}
contexts:
- name: ctx
  context: {{cluster: c, user: u}}
current-context: ctx
"""


def test_settings_defaults_and_errors_name_the_key(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(KUBECONFIG.format(port=1))
    s = parse_settings({"kubeconfig": str(kc)}, "agent.toml")
    assert (s.namespaces, s.timeout_s, s.gpu_resource, s.max_pods) == (None, 5.0, "nvidia.com/gpu", 1000)
    # timeout reaches the collector only when the agent did not take it; request_timeout wins.
    assert parse_settings({"timeout": 2}, None).timeout_s == 2.0
    assert parse_settings({"timeout": 2, "request_timeout": 7}, None).timeout_s == 7.0
    assert parse_settings({"namespaces": ["a", "b", "a"]}, None).namespaces == ("a", "b")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kubeconfig": str(tmp_path / "nope")}, "[collectors.kubernetes] kubeconfig: cannot read"),
        ({"namespace": ["a"]}, "[collectors.kubernetes] namespace: unknown key"),
        ({"namespaces": []}, "[collectors.kubernetes] namespaces: a non-empty list"),
        ({"namespaces": "ml"}, "[collectors.kubernetes] namespaces: expected list"),
        ({"request_timeout": 0}, "[collectors.kubernetes] request_timeout: must be > 0"),
        ({"max_pods": -1}, "[collectors.kubernetes] max_pods: must be >= 0"),
    ]
    for options, words in cases:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")) as e:
            parse_settings(options, "agent.toml")
        assert str(e.value).startswith("agent.toml: ")


def test_unknown_context_is_a_config_error(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(KUBECONFIG.format(port=1))
    with pytest.raises(ConfigError, match=r"\[collectors.kubernetes\] kubeconfig: Kubernetes config unusable.*prod"):
        KubernetesCollector(Context(node="n", config={"kubeconfig": str(kc), "context": "prod"}))


def test_nothing_listening_is_unreachable_in_words(tmp_path: Path) -> None:
    """A real TCP port with nothing behind it (a stopped API server): one line, says where and why."""
    kc = tmp_path / "kubeconfig"
    port = free_port()
    kc.write_text(KUBECONFIG.format(port=port))
    col: Any = load("kubernetes", Context(node="n", config={"kubeconfig": str(kc), "request_timeout": 2}))
    try:
        assert (col.name, col.field, col.scope) == ("kubernetes", "kubernetes", "cluster")
        with pytest.raises(KubernetesUnreachable) as e:
            col.collect()
        text = str(e.value)
        assert text.startswith(f"Kubernetes API unreachable: https://127.0.0.1:{port}: NewConnectionError: ")
        assert "Connection refused" in text and "\n" not in text
        assert col.last_error == text and col.last_good is None
    finally:
        col.close()


def test_status_bodies_give_the_servers_message() -> None:
    body = b'{"kind":"Status","status":"Failure","message":"nodes is forbidden: User \\"x\\" cannot list","code":403}'
    assert api_status_message(body) == 'nodes is forbidden: User "x" cannot list'
    assert api_status_message(b"upstream connect error\nmore") == "upstream connect error"
    assert api_status_message(None) == ""


def test_module_import_does_not_load_the_client() -> None:
    """Only building the collector loads the kubernetes client (the agent imports modules it may not use)."""
    assert REGISTRY["kubernetes"] == "clustertop.collectors.kubernetes:KubernetesCollector"
    code = ("import sys, clustertop.collectors.kubernetes, clustertop.collectors.kubernetes_parse, clustertop.read.ledger, clustertop.control.kubernetes;"
            "print(sorted(m for m in ('kubernetes', 'yaml', 'urllib3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_harness_skips_loudly_when_it_cannot_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """No binaries and no way to build them: the real tests skip, and say why (never silently)."""
    from tests.support import k8s_cluster

    monkeypatch.setattr(k8s_cluster, "BIN", tmp_path)
    monkeypatch.setattr(k8s_cluster.shutil, "which", lambda tool: None if tool == "go" else "/usr/bin/" + tool)
    assert k8s_cluster.missing_binaries() == list(k8s_cluster.BINARIES)
    with pytest.raises(pytest.skip.Exception, match="cannot build: go not found; apt-get install -y golang-go"):
        k8s_cluster.ensure_binaries()
    assert "cannot build: go not found" in capsys.readouterr().err
