"""``:`` on the dashboard (dashboard/k8s_scope.py): ``:ns`` narrows the Work screen's pods and workloads,
``:ctx`` switches the context the Kubernetes actions use, said in the header while not the default, refused
for a context the kubeconfig lacks (file and key named). A real redis-server; the kubeconfig is a file
(its servers are never contacted here: a switch only drops the client; the real control plane's answer
to a switch is in test_ctx_switch_asks_can_i_of_the_new_context)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from clustertop.dashboard import k8s_scope as ks
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.widgets.header import ClusterHeader
from clustertop.wire import schema
from tests.dashboard.test_dashboard_actions import app_for
from tests.support import builders as b
from tests.support.k8s_cluster import K8sCluster, k8s_cluster  # noqa: F401 - the session fixture

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_parse() -> None:
    assert ks.parse(":ns team-a") == ks.Parsed("ns", "team-a")
    assert ks.parse("ns") == ks.Parsed("ns", None)
    assert ks.parse("  :namespace all ") == ks.Parsed("ns", "all")
    assert ks.parse("ctx prod-eu") == ks.Parsed("ctx", "prod-eu")
    assert ks.parse(":context") == ks.Parsed("ctx", None)
    assert ks.parse("ctx Weird_Name@x") == ks.Parsed("ctx", "Weird_Name@x")  # context names are free text
    for bad, why in (("", "empty command"), ("pods", "unknown command"), ("ns a b", "unknown command"),
                     ("ns Team_A", "not a namespace name"), ("ns \x1b[2J", "not a namespace name")):
        p = ks.parse(bad)
        assert p.verb == "error" and why in p.error, (bad, p)
        assert "\x1b" not in p.error


def test_contexts_in_names_file_and_key() -> None:
    doc = {"clusters": [{"name": "c1", "cluster": {"server": "https://10.0.0.1:6443"}}],
           "contexts": [{"name": "a", "context": {"cluster": "c1", "user": "u"}}, {"name": "b", "context": {}}],
           "current-context": "a"}
    assert ks.contexts_in(doc, "/k") == ({"a": "https://10.0.0.1:6443", "b": None}, "a")
    with pytest.raises(ValueError, match=r"^kubeconfig /k: contexts\[1\]\.name: missing"):
        ks.contexts_in({"contexts": [{"name": "a"}, {"context": {}}]}, "/k")
    with pytest.raises(ValueError, match=r"^kubeconfig /k: contexts: not a list"):
        ks.contexts_in({"contexts": "a"}, "/k")
    with pytest.raises(ValueError, match=r"^kubeconfig /k: not a YAML mapping"):
        ks.contexts_in(["x"], "/k")
    assert ks.contexts_in({"clusters": "junk", "contexts": None}, "/k") == ({}, None)


def _kubeconfig(path: Path, contexts: dict[str, tuple[str, str]], current: str, users: dict[str, str],
                ca: Path | None = None) -> Path:
    """contexts: name -> (server, user); users: user -> token; ca: the servers' CA (else none checked)."""
    import base64

    import yaml  # type: ignore[import-untyped]

    tls = ({"certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()} if ca is not None
           else {"insecure-skip-tls-verify": True})

    servers = sorted({s for s, _u in contexts.values()})
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": current,
           "clusters": [{"name": f"c{i}", "cluster": {"server": s, **tls}}
                        for i, s in enumerate(servers)],
           "users": [{"name": u, "user": {"token": t}} for u, t in users.items()],
           "contexts": [{"name": n, "context": {"cluster": f"c{servers.index(s)}", "user": u}}
                        for n, (s, u) in contexts.items()]}
    path.write_text(yaml.safe_dump(doc))
    return path


def _payload() -> schema.ClusterPayload:
    pods = [schema.K8sPod(namespace=ns, name=f"{ns}-p{i}", node="n1", phase="Running")
            for ns in ("team-a", "team-b") for i in range(2)]
    wl = [schema.K8sWorkload(kind="Deployment", namespace=ns, name=f"{ns}-web", replicas=1) for ns in ("team-a", "team-b")]
    return schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True,
                                 kubernetes=schema.Kubernetes(pods=pods, workloads=wl))


async def _command(pilot: Any, text: str) -> None:
    await pilot.press("colon")
    await pilot.pause()
    for ch in text:
        await pilot.press(ch if ch != " " else "space")
    await pilot.press("enter")
    await pilot.pause()


def _capture(app: Any) -> list[str]:
    """What the app notifies from now on (the toasts' text)."""
    notes: list[str] = []
    orig = app.notify

    def notify(msg: Any, *a: Any, **kw: Any) -> Any:
        notes.append(str(msg))
        return orig(msg, *a, **kw)

    app.notify = notify
    return notes


def _header(app: Any) -> str:
    return "\n".join(str(c) for c in app.screen.query_one(ClusterHeader).lines(200))


async def test_ns_narrows_pods_and_workloads_and_all_clears(redis_server: Any) -> None:
    b.publish(redis_server.client(), [b.tower("gpu-01", ts=time.time())], cluster=[_payload()])
    app = app_for(redis_server)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await b.work_tab(pilot, "pods", lambda n: n == 4, "all pods")
        await _command(pilot, "ns team-a")
        await b.wait_until(pilot, lambda: screen.table("pods").row_count == 2, "team-a's pods")
        assert sorted(screen.table("pods").keys) == ["team-a/team-a-p0", "team-a/team-a-p1"]
        assert "ns team-a (2 of 4 pods)" in _header(app)
        screen.query_one("#work-tabs").active = "workloads"
        await b.wait_until(pilot, lambda: screen.table("workloads").row_count == 1, "team-a's workload")
        # The / filter still narrows within the namespace.
        screen.query_one("#work-tabs").active = "pods"
        await pilot.pause()
        await _command(pilot, "ns all")
        await b.wait_until(pilot, lambda: screen.table("pods").row_count == 4, "all pods again")
        assert "ns team-a" not in _header(app)
        # :ns alone: pick from the namespaces the payload has (no kubeconfig: no API asked).
        await _command(pilot, "ns")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the namespace picker")
        await pilot.press("down", "down", "enter")  # all, team-a, team-b
        await b.wait_until(pilot, lambda: screen.table("pods").row_count == 2, "team-b's pods")
        assert sorted(screen.table("pods").keys) == ["team-b/team-b-p0", "team-b/team-b-p1"]
        # Nonsense is said, not obeyed.
        await _command(pilot, "ns Bad_Name")
        assert ks.namespace_of(app) == "team-b"


async def test_ctx_refuses_unknown_and_says_a_switch_plainly(redis_server: Any, tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "kubeconfig", {"main": ("https://127.0.0.1:9", "u"),
                                               "other": ("https://127.0.0.2:9", "u")}, "main", {"u": "t"})
    b.publish(redis_server.client(), [b.tower("gpu-01", ts=time.time())], cluster=[_payload()])
    app = app_for(redis_server, kubeconfig=str(kc))
    async with app.run_test(size=(200, 40)) as pilot:
        notes = _capture(app)
        await b.wait_reads(pilot)
        await _command(pilot, "ctx nope")
        assert app.settings.k8s_context is None
        assert any(f"no context 'nope' in kubeconfig {kc} (contexts[].name: main, other)" in n for n in notes), notes
        acts = actions_of(app)
        acts.k8s_allowed, acts._asked_k8s = {"delete_pod": False}, True  # as the old cluster answered
        await _command(pilot, "ctx other")
        assert app.settings.k8s_context == "other"
        assert acts._k8s is None and acts.k8s_allowed is None and acts._asked_k8s is False
        await b.wait_until(pilot, lambda: "ctx other -> https://127.0.0.2:9" in _header(app), "the header says it")
        await pilot.press("6")
        await pilot.pause()
        summary = "\n".join(str(c) for c in app.screen.query_one("#work-summary").lines(200))
        assert "ctx other -> https://127.0.0.2:9: actions go there, the lists are the agents' cluster" in summary
        # Back to the default: nothing to say any more.
        await _command(pilot, "ctx")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the context picker")
        await pilot.press("enter")  # main (sorted first)
        await pilot.pause()
        assert app.settings.k8s_context == "main"
        await b.wait_until(pilot, lambda: "ctx " not in _header(app), "the header quiet again")


async def test_ctx_refused_in_the_demo(redis_server: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """The demo's Kubernetes is simulated: ``:ctx`` opens no kubeconfig (not even $KUBECONFIG's)."""
    kc = _kubeconfig(tmp_path / "kubeconfig", {"main": ("https://127.0.0.1:9", "u")}, "main", {"u": "t"})
    monkeypatch.setenv("KUBECONFIG", str(kc))
    opened: list[str] = []
    real_open = open

    def spy(path: Any, *a: Any, **kw: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *a, **kw)

    for settings in ({"external_control_refused": "no real cluster behind it"}, {"demo_control": object()}):
        app = app_for(redis_server, **settings)
        async with app.run_test(size=(120, 30)) as pilot:
            notes = _capture(app)
            await b.wait_reads(pilot)
            monkeypatch.setattr("builtins.open", spy)
            await _command(pilot, "ctx main")
            await _command(pilot, "ctx")
            monkeypatch.setattr("builtins.open", real_open)
            assert app.settings.k8s_context is None and not isinstance(app.screen, PickDialog)
            assert str(kc) not in opened, opened
            assert sum(":ctx refused" in n or n.startswith(":ctx: ") for n in notes) == 2, notes


async def test_ctx_switch_asks_can_i_of_the_new_context(redis_server: Any, k8s_cluster: K8sCluster,  # noqa: F811
                                                        tmp_path: Path) -> None:
    """The real control plane: switched from the admin's context to the reader's, the dashboard asks can_i
    again and hides ctrl+d (the reader may not delete pods); back, and it shows again."""
    from clustertop.collectors import kubernetes_parse as k8s_parse  # noqa: F401 - the payload is hand-made
    from tests.support.k8s_cluster import TOKENS

    kc = _kubeconfig(tmp_path / "kubeconfig", {"admin": (k8s_cluster.server, "admin"),
                                               "reader": (k8s_cluster.server, "reader")}, "admin",
                     {"admin": TOKENS["admin"], "reader": TOKENS["reader"]}, ca=k8s_cluster.pki / "ca.crt")
    b.publish(redis_server.client(), [b.tower("gpu-01", ts=time.time())], cluster=[_payload()])
    app = app_for(redis_server, kubeconfig=str(kc))
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await b.work_tab(pilot, "pods", lambda n: n == 4, "the pods")
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
        assert acts.k8s_allowed["delete_pod"] is True  # type: ignore[index]
        assert screen.check_action("job_delete", ()) is True
        await _command(pilot, "ctx reader")
        await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i of the new context", tries=1500)
        assert acts.k8s_allowed["delete_pod"] is False and acts.k8s_allowed["pod_logs"] is False  # type: ignore[index]
        assert screen.check_action("job_delete", ()) is False
        assert f"ctx reader -> {k8s_cluster.server}" in _header(app)
        await _command(pilot, "ctx admin")
        await b.wait_until(pilot, lambda: acts.k8s_allowed is not None and acts.k8s_allowed["delete_pod"],
                           "can-i of the admin again", tries=1500)
        assert "ctx " not in _header(app)
    actions_of(app).close()
