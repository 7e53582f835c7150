"""``l`` on the Work screen's pod row: the log follows, through the real kube-apiserver 1.20
(tests/support/k8s_cluster.py) proxying the stand-in kubelet log endpoint ``LogKubelet``
(tests/support/k8s_logs.py: no kubelet can run here). A two-container pod asks which container; lines
printed while the viewer is open appear; scrolling up pauses, End resumes, ``f`` toggles; hostile lines
are inert; closing the viewer closes the stream (no follower thread, no open stream at the kubelet).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from textual.widgets import Log

from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.dialogs.logs import LogsViewer
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.wire import schema
from tests.dashboard.test_dashboard_actions import app_for
from tests.support import builders as b
from tests.support.k8s_cluster import k8s_cluster  # noqa: F401 - the session fixture
from tests.support.k8s_logs import logpod  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_l_follows_the_log_pauses_resumes_and_closes(redis_server: Any, logpod: dict[str, Any]  # noqa: F811
                                                            ) -> None:
    from clustertop.collectors import kubernetes_parse as k8s_parse

    ns, kubelet, core = logpod["ns"], logpod["kubelet"], logpod["core"]
    for i in range(3):
        kubelet.emit(ns, "train", "main", f"old {i}")
    raw = core.list_namespaced_pod(ns, _preload_content=False)
    pods = k8s_parse.parse_pods(json.loads(raw.data))
    payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True, kubernetes=schema.Kubernetes(pods=pods))
    b.publish(redis_server.client(), [b.tower("gpu-01", ts=time.time())], cluster=[payload])
    app = app_for(redis_server, kubeconfig=str(logpod["cluster"].kubeconfigs["admin"]), operator="alice@ops")
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await b.work_tab(pilot, "pods", lambda n: n == 1, "the pod row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            await pilot.press("l")
            # Two containers: which one, first (over the viewer).
            await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the container picker", tries=1500)
            viewer = app.screen_stack[-2]
            assert isinstance(viewer, LogsViewer)
            await pilot.press("enter")  # the first: main
            await b.wait_until(pilot, lambda: app.screen is viewer and viewer.follower is not None, "following",
                               tries=1500)
            assert "container main" in viewer.title_text
            log = viewer.query_one(Log)
            await b.wait_until(pilot, lambda: list(log.lines) == ["old 0", "old 1", "old 2"], "the tail", tries=1500)
            kubelet.emit(ns, "train", "main", "new while open")
            await b.wait_until(pilot, lambda: log.lines[-1:] == ["new while open"], "a followed line", tries=1500)
            status = str(viewer.query_one("#status").render())
            assert "following" in status and "4 line(s)" in status, status

            # Hostile output, escaped on the way in; a 1 MB line cut.
            kubelet.emit(ns, "train", "main", b"\x1b]0;pwned\x07\x1b[2J red\xe2\x80\xae")
            kubelet.emit(ns, "train", "main", b"y" * (1 << 20))
            await b.wait_until(pilot, lambda: len(log.lines) == 6, "the hostile lines", tries=1500)
            assert not any(c in log.lines[4] for c in "\x1b\x07\u202e") and "pwned" in log.lines[4]
            assert len(log.lines[5]) <= 4000 and log.lines[5].endswith("…")

            # Scrolling up pauses; new lines still arrive (below); End resumes; f toggles.
            for i in range(40):
                kubelet.emit(ns, "train", "main", f"fill {i}")
            await b.wait_until(pilot, lambda: len(log.lines) == 46, "the fill", tries=1500)
            await pilot.press("pageup")
            assert viewer.following is False
            kubelet.emit(ns, "train", "main", "while paused")
            await b.wait_until(pilot, lambda: log.lines[-1:] == ["while paused"], "a line while paused", tries=1500)
            await pilot.pause()
            assert not log.is_vertical_scroll_end  # not dragged to the end
            assert "PAUSED, 1 new below" in str(viewer.query_one("#status").render())
            await pilot.press("end")
            assert viewer.following is True
            await pilot.press("f")
            assert viewer.following is False
            await pilot.press("f")
            assert viewer.following is True

            # p: the container's previous instance, over the following viewer. None yet (never restarted):
            # the kubelet's answer, said; after a restart, what the old instance printed.
            await pilot.press("p")
            await b.wait_until(pilot, lambda: isinstance(app.screen, LogsViewer) and app.screen is not viewer and
                               app.screen.error is not None, "no previous log yet", tries=1500)
            assert "no previous log" in app.screen.error and "not found" in app.screen.error, app.screen.error  # type: ignore[attr-defined]
            await pilot.press("escape")
            await b.wait_until(pilot, lambda: app.screen is viewer, "back to the following viewer")
            kubelet.restart(ns, "train", "main")
            await pilot.press("p")
            await b.wait_until(pilot, lambda: app.screen is not viewer and isinstance(app.screen, LogsViewer) and
                               app.screen.text is not None, "the previous instance's log", tries=1500)
            prev = app.screen
            assert "previous instance" in prev.title_text and "container main" in prev.title_text  # type: ignore[attr-defined]
            plines = list(prev.query_one(Log).lines)
            assert plines[:3] == ["old 0", "old 1", "old 2"] and plines[-1] == "while paused", plines[-3:]
            assert not any(c in "".join(plines) for c in "\x1b\x07\u202e")  # inert here too
            await pilot.press("escape")
            await b.wait_until(pilot, lambda: app.screen is viewer, "back to the following viewer")
            assert viewer.follower is not None

            follower = viewer.follower
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is screen
            follower.thread.join(10)
            assert not follower.thread.is_alive()
            kubelet.wait_streams(0)  # the API server closed its kubelet connection: nothing left open
    finally:
        actions_of(app).close()


async def test_in_the_demo_l_says_simulated_pods_write_no_logs_and_ctx_is_refused() -> None:
    """The real demo (simulated cluster): ``l`` keeps the demo's own answer (no stream, no kubeconfig), and
    ``:ctx`` is refused without opening a kubeconfig."""
    from clustertop.cli import modes
    from clustertop.dashboard import k8s_scope
    from tests.support.demo import demo_app

    backend = modes.start_demo(seed=4, nodes=None, interval_s=0.5, prefill_s=60)
    try:
        app = demo_app(backend)
        async with app.run_test(size=(160, 40)) as pilot:
            await b.work_tab(pilot, "pods", lambda n: n > 0, "the simulated pods", tries=1500)
            await pilot.press("l")
            await b.wait_until(pilot, lambda: isinstance(app.screen, LogsViewer) and app.screen.error is not None,
                               "the demo's answer", tries=1500)
            viewer = app.screen
            assert isinstance(viewer, LogsViewer)
            assert "simulated pods write no logs" in (viewer.error or "") and viewer.follower is None
            await pilot.press("escape")
            k8s_scope.run(app, "ctx anything")
            assert app.settings.k8s_context is None
    finally:
        backend.close()
