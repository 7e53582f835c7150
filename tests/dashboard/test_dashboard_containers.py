"""The dashboard's containers (issue 16), against real parts: a real Docker Engine (tests/support/dockerd.py),
the node's real command executor in a thread, a real redis-server. ``c`` on the node screen -> pick a
container -> pick stop/restart/kill -> the dialog names the container as its node signed it -> confirm ->
the agent stops it. And the kill dialog of a process in a pod offers deleting the pod (pods recorded
from the real API server, tests/fixtures/k8s/api/pods.json; the node knows the pod's uid only)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clustertop.agents.commands import CommandExecutor
from clustertop.collectors.base import Context
from clustertop.collectors.containers import ContainersCollector
from clustertop.collectors.kubernetes_parse import parse_pods
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.containers import container_section
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.wire import schema
from tests.conftest import FIXTURES
from tests.dashboard.test_dashboard_actions import (  # noqa: F401 - fixtures
    NODE,
    anyio_backend,
    app_for,
    body_text,
    key,
    open_gpu_procs,
    publish_victim,
    victim,
    wait_dialog,
)
from tests.support import builders as b
from tests.support.dockerd import IMAGE, dockerd_fixture
from tests.support.hostile import RAW_UNSAFE

dockerd = dockerd_fixture()
TEMPLATES = {"nap": {"image": IMAGE, "cmd": ["sleep", "{seconds}"], "params": {"seconds": "int"},
                     "description": "a container that sleeps"}}


@pytest.fixture
def agent(redis_server: Any, tmp_path: Any, key: tuple[str, str], dockerd: Any) -> Iterator[CommandExecutor]:  # noqa: F811
    stop = threading.Event()
    cfg = {"security": {"operator_keys": [key[1]], "allow_root": True},
           "collectors": {"containers": {"socket": dockerd.url, "control": "all", "templates": TEMPLATES}}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "state"), block_ms=100,
                         node_key=b.node_key(NODE))
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    yield ex
    stop.set()
    t.join(10)


def test_the_section_renders_hostile_names_inert() -> None:
    evil = schema.Container(id="f" * 64, name="\u202eevil\x1b[2J" + "x" * 2**20, image="[bold]img\x07",
                            state="running", cpu_pct=float("nan"), mem_bytes=2**64 - 1, restarts=-1)
    bad_id = schema.Container(id="\r\u202a\u200fz\u2068" * 10, name=None, state="\x1b[2J")  # the wire takes any str
    text = container_section(schema.Containers(engine="\x1b]0;t\x07", containers=[evil, bad_id], total=5)).plain
    assert not RAW_UNSAFE.search(text) and len(text) < 4000
    assert "3 more" in text
    assert "N/A" in container_section(None).plain


@pytest.mark.anyio
async def test_c_stops_a_real_container_through_the_agent(redis_server: Any, agent: Any, key: Any,  # noqa: F811
                                                         dockerd: Any) -> None:
    client = redis_server.client()
    cid = dockerd.run("webapp", "sleep", "1000")
    try:
        snap = b.tower(NODE, (80, 5), ts=time.time())
        snap.containers = ContainersCollector(Context(node=NODE, config={"socket": dockerd.url})).collect()
        b.publish(client, [snap], keys={NODE: b.node_key(NODE)})
        app = app_for(redis_server, operator_key=key[0])
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            app.open_node(NODE)
            await pilot.pause()
            assert isinstance(app.screen, NodeScreen)
            screen = app.screen
            await b.wait_until(pilot, lambda: "webapp" in str(screen.query_one("#containers").render()), "the section")
            assert "Docker Engine" in str(screen.query_one("#containers").render())
            await pilot.press("c")
            assert isinstance(app.screen, PickDialog)
            await pilot.press("enter")  # the only container
            assert isinstance(app.screen, PickDialog)
            await pilot.press("enter")  # the first action: stop
            dialog = await wait_dialog(pilot)
            text = body_text(dialog)
            assert "webapp" in text and cid[:12] in text and "localhost/test:1" in text and "TERM" in text, text
            assert "UNVERIFIED" not in dialog.title_text and "signed by" in text
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=3000)
            out = acts.done[0].outcome
            assert out.ok and out.verified and out.text.startswith(f"{NODE}: stopped container webapp"), out.text
        assert dockerd.inspect(cid)["State"]["Status"] == "exited"
    finally:
        dockerd.docker("rm", "-f", "webapp", check=False)


@pytest.mark.anyio
async def test_killing_a_process_in_a_pod_offers_deleting_the_pod(redis_server: Any, victim: Any,  # noqa: F811
                                                                 key: Any) -> None:  # noqa: F811
    client = redis_server.client()
    pods = parse_pods(json.loads((FIXTURES / "k8s" / "api" / "pods.json").read_text()))
    etl = next(p for p in pods if p.name.startswith("etl-"))
    proc = publish_victim(client, victim.pid)
    # What the node knows of it: the pod's uid (from its cgroup), no name; the pods come from the lease holder.
    snap = b.tower(NODE, (80, 5), ts=time.time())
    assert snap.gpus is not None and snap.system is not None
    proc.owner = schema.Owner(kind="pod", pod_uid=etl.uid)
    snap.gpus[0].procs = [proc]
    snap.system.procs = []
    k8s = schema.ClusterPayload(name="kubernetes", source_host=NODE, ts=time.time(), ok=True,
                                kubernetes=schema.Kubernetes(pods=pods))
    b.publish(client, [snap], keys={NODE: b.node_key(NODE)}, cluster=[k8s])
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the pod offer", tries=1500)
        offer = app.screen
        assert f"runs in pod {etl.namespace}/{etl.name}" in offer.title_text
        await pilot.press("down", "enter")  # the process only: the kill dialog, the pod named in it
        dialog = await wait_dialog(pilot)
        text = body_text(dialog)
        assert f"pod {etl.namespace}/{etl.name}" in text and "owned by Job etl" in text, text
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("k")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the pod offer", tries=1500)
        await pilot.press("enter")  # delete the pod: the dashboard's own Kubernetes delete (none configured here)
        await b.wait_until(pilot, lambda: any(f"cannot delete {etl.namespace}/{etl.name}" in str(n.message)
                                              for n in app._notifications), "the delete path", tries=1500)
    assert victim.poll() is None  # nothing was signalled


@pytest.mark.anyio
async def test_the_launcher_starts_a_container_from_a_node_template(redis_server: Any, agent: Any, key: Any,  # noqa: F811
                                                                   dockerd: Any) -> None:
    from textual.widgets import Input, SelectionList

    from clustertop.dashboard.dialogs.launcher import LauncherDialog

    snap = b.tower(NODE, ts=time.time())
    # The templates as the node's collector publishes them (image and cmd stay on the node), through the brief.
    snap.containers = ContainersCollector(Context(node=NODE, config={"socket": dockerd.url,
                                                                     "templates": TEMPLATES})).collect()
    b.publish(redis_server.client(), [snap], keys={NODE: b.node_key(NODE)})
    app = app_for(redis_server, operator_key=key[0])
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6", "n")
            await b.wait_until(pilot, lambda: isinstance(app.screen, LauncherDialog), "the launcher")
            dialog = app.screen
            await b.wait_until(pilot, lambda: dialog.current is not None, "the first template picked")
            assert dialog.current.kind == "ctr" and dialog.current.name == "nap"
            await pilot.pause()
            dialog.query_one("#form Input", Input).value = "300"
            dialog.query_one("#nodes", SelectionList).select_all()
            dialog.query_one("#confirm").press()
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the launch confirmation")
            assert "nap" in body_text(app.screen) and "seconds=300" in body_text(app.screen)
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the launch", tries=3000)
            out = acts.done[0].outcome
            assert out.ok and out.text.startswith(f"{NODE}: launched container ct-nap-"), out.text
        names = [n for n in dockerd.docker("ps", "--format", "{{.Names}}").split() if n.startswith("ct-nap-")]
        assert len(names) == 1 and dockerd.inspect(names[0])["Config"]["Cmd"] == ["sleep", "300"]
    finally:
        for n in dockerd.docker("ps", "-a", "--format", "{{.Names}}").split():
            if n.startswith("ct-nap-"):
                dockerd.docker("rm", "-f", n, check=False)
