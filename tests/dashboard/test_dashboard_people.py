"""The people screen (w): a user typed after `/`, their work listed from the read (clustertop.read.people),
Enter on a row opens its node; driven with Pilot against a real redis-server, snapshots published by the
agent's own Publisher; hostile names render escaped."""

from __future__ import annotations

from typing import Any

import pytest

from clustertop.dashboard.app import make_app
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.people import PeopleScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.wire import schema
from tests.support import builders as b

pytestmark = pytest.mark.anyio
UID = "4f1c2a9e-0b7d-4c3e-9a55-2d6b8e1f0c77"
EVIL = "\u202eevil\x1b[31m"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def publish(redis_server: Any) -> None:
    in_pod = schema.Owner(kind="pod", pod_uid=UID)
    a = b.node("gpu-a", gpus=[b.gpu(0, procs=[schema.GpuProc(pid=10, used_mem_bytes=6 * b.GIB, user="alice",
                                                             cmdline="python train.py", owner=in_pod)])],
               procs=[schema.Proc(pid=10, user="alice", cmdline="python train.py", cpu_pct=200.0, owner=in_pod)])
    h = b.node("gpu-h", gpus=[b.gpu(0, procs=[schema.GpuProc(pid=66, used_mem_bytes=2**64 - 1, user=EVIL,
                                                             cmdline="\x1b]0;owned\x07" + "y" * 50_000)])], procs=[])
    pod = schema.K8sPod(namespace="ml", name="train-a-x2", node="gpu-a", phase="Running", gpus=1,
                        owner_kind="ReplicaSet", owner="train-a", uid=UID)
    k8s = schema.ClusterPayload(name="kubernetes", source_host="gpu-a", ts=b.NOW, ok=True,
                                kubernetes=schema.Kubernetes(pods=[pod]))
    b.publish(redis_server.client(), [a, h], cluster=[k8s])


def rows(app: Any) -> list[str]:
    t = app.screen.query_one("#who-table", LiveTable)
    return [" | ".join(str(c) for c in t.get_row_at(i)) for i in range(t.row_count)]


async def test_who_screen_lists_a_users_work_and_opens_the_node(redis_server: Any) -> None:
    publish(redis_server)
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)
    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("w")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PeopleScreen), "the people screen")
        await pilot.pause()
        assert "press / and type a user" in str(app.screen.query_one("#who-summary").render())
        await pilot.press(*"alice", "enter")
        await b.wait_until(pilot, lambda: len(rows(app)) == 3, "alice's rows")
        got = rows(app)
        assert got[0].startswith("GPU proc | gpu-a | 10 | 0 | 6.0 GiB") and "pod ml/train-a-x2" in got[0]
        assert got[1].startswith("process | gpu-a | 10")
        assert got[2].startswith("pod | gpu-a |") and "ml/train-a-x2" in got[2] and "via gpu-a pid 10" in got[2]
        summary = str(app.screen.query_one("#who-summary").render())
        assert "1 GPU processes" in summary and "GPUs held now: 1 on 1 nodes" in summary
        await pilot.press("enter")  # the cursor row: alice's GPU process on gpu-a
        await b.wait_until(pilot, lambda: isinstance(app.screen, NodeScreen), "the node screen")
        assert app.screen.host == "gpu-a"


async def test_who_screen_escapes_a_hostile_user(redis_server: Any) -> None:
    publish(redis_server)
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("w")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PeopleScreen), "the people screen")
        app.screen.query_one("#who-input").value = EVIL  # typed or pasted: the same string
        await pilot.press("enter")
        await b.wait_until(pilot, lambda: len(rows(app)) == 1, "the hostile user's row")
        row = rows(app)[0]
        assert "\x1b" not in row and "\u202e" not in row and "\\x1b]0;owned\\x07" in row
        assert "N/A" in row  # 2**64 - 1 bytes of VRAM: unknown
        summary = str(app.screen.query_one("#who-summary").render())
        assert "\\u202eevil\\x1b[31m" in summary and "\x1b" not in summary and "(+1 unknown)" in summary


async def test_ns_narrows_the_people_screen_and_all_restores(redis_server: Any) -> None:
    """``:ns ml`` (dashboard/k8s_scope.py): only alice's processes in ml's pods; her process outside any pod is
    hidden and counted in the summary; ``:ns all`` brings it back."""
    from tests.dashboard.test_k8s_scope import _command, _header

    in_pod = schema.Owner(kind="pod", pod_uid=UID)
    a = b.node("gpu-a", gpus=[b.gpu(0, procs=[schema.GpuProc(pid=10, used_mem_bytes=6 * b.GIB, user="alice",
                                                             cmdline="python train.py", owner=in_pod)])],
               procs=[schema.Proc(pid=10, user="alice", cmdline="python train.py", cpu_pct=200.0, owner=in_pod),
                      schema.Proc(pid=77, user="alice", cmdline="jupyter lab", cpu_pct=3.0)])
    pod = schema.K8sPod(namespace="ml", name="train-a-x2", node="gpu-a", phase="Running", gpus=1, uid=UID)
    k8s = schema.ClusterPayload(name="kubernetes", source_host="gpu-a", ts=b.NOW, ok=True,
                                kubernetes=schema.Kubernetes(pods=[pod]))
    b.publish(redis_server.client(), [a], cluster=[k8s])
    app = make_app(Settings(frozen_time=b.NOW + 0.5, refresh_s=3600, source_label="test"), redis_server.client)

    def summary() -> str:
        return str(app.screen.query_one("#who-summary").render())

    async with app.run_test(size=(160, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("w")
        await b.wait_until(pilot, lambda: isinstance(app.screen, PeopleScreen), "the people screen")
        await pilot.press(*"alice", "enter")
        await b.wait_until(pilot, lambda: len(rows(app)) == 4, "all of alice's rows")
        assert any("jupyter lab" in r for r in rows(app)) and "ns " not in summary()
        await _command(pilot, "ns ml")
        await b.wait_until(pilot, lambda: len(rows(app)) == 3, "ml's rows")
        assert not any("jupyter lab" in r for r in rows(app))
        assert [r.split(" | ")[0] for r in rows(app)] == ["GPU proc", "process", "pod"]
        assert "ns ml: only processes in its pods; hidden: 1 process outside pods (:ns all shows them)" in summary()
        assert "GPUs held now: 1 on 1 nodes" in summary()
        assert "ns ml (1 of 1 pods)" in _header(app)  # the header says the scope, as on every screen
        await _command(pilot, "ns team-b")
        await b.wait_until(pilot, lambda: len(rows(app)) == 0, "nothing of alice's in team-b")
        assert "hidden: 1 process outside pods, 1 process in other namespaces' pods" in summary()
        assert "GPUs held now: 0 on 0 nodes" in summary()
        await _command(pilot, "ns all")
        await b.wait_until(pilot, lambda: len(rows(app)) == 4, "all of alice's rows again")
        assert "ns " not in summary() and "hidden" not in summary() and "ns ml" not in _header(app)
