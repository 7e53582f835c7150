"""Logs that follow (control/k8s_logs.py) through the real kube-apiserver 1.20 of tests/support/k8s_cluster.py.

No kubelet can run here: ``LogKubelet`` (tests/support/k8s_logs.py) stands in for the node's kubelet
log endpoint only. The API server really resolves the pod's Node, connects to its kubelet port over
HTTPS and proxies the chunked stream; ``FakeKubelet`` marks the pod Running as a kubelet reports.
Waiting is for a state, never timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from clustertop.wire.text import inert
from tests.support import waiting
from tests.support.k8s_cluster import k8s_cluster  # noqa: F401 - the session fixture
from tests.support.k8s_logs import logpod  # noqa: F401 - the fixture

T = TypeVar("T")


def until(what: str, fn: Callable[[], T], ok: Callable[[T], bool], limit_s: float = 30.0) -> T:
    """A follower's thread acts within milliseconds: every 0.05 s, up to 30 s."""
    return waiting.wait_for(what, fn, ok, limit_s, step_s=0.05)


class Collect:
    """Takes from a follower until a condition holds; keeps everything taken."""

    def __init__(self, f: Any) -> None:
        self.f, self.lines, self.last = f, [], None

    def until(self, what: str, ok: Callable[[list[str]], bool], limit_s: float = 30.0) -> list[str]:
        def take() -> list[str]:
            t = self.f.take()
            self.lines += t.lines
            self.last = t
            return self.lines
        try:
            return until(what, take, ok, limit_s)
        except AssertionError as e:
            raise AssertionError(f"{e}; follower: {self.last}; requests: {self.f.requests}") from None


def test_follow_streams_resumes_without_duplicates_and_closes(logpod: dict[str, Any]) -> None:  # noqa: F811
    from clustertop.control import k8s_logs
    from clustertop.control.kubernetes import K8sControl

    ns, kubelet = logpod["ns"], logpod["kubelet"]
    ctl = K8sControl(str(logpod["cluster"].kubeconfigs["admin"]))
    assert ctl.can_i("get", "pods/log", ns)
    assert k8s_logs.containers(ctl, ns, "train") == ["main", "side"]
    # Printed before the viewer opened: the tail comes first.
    for i in range(3):
        kubelet.emit(ns, "train", "main", f"epoch {i} loss 0.{9 - i}")
    kubelet.emit(ns, "train", "side", "the sidecar's line")
    threads_before = {t.ident for t in threading.enumerate()}
    f = k8s_logs.LogFollower(ctl, ns, "train", container="main").start()
    got = Collect(f)
    try:
        got.until("the tail", lambda ls: len(ls) >= 3)
        assert got.lines == ["epoch 0 loss 0.9", "epoch 1 loss 0.8", "epoch 2 loss 0.7"]
        assert got.last.state == "following"
        assert f.requests[0] == [("follow", "true"), ("timestamps", "true"), ("container", "main"),
                                 ("tailLines", "200")]
        # A line printed while following arrives while the stream stays open (the same request).
        kubelet.emit(ns, "train", "main", "epoch 3 loss 0.6")
        got.until("a line while following", lambda ls: len(ls) >= 4)
        assert got.lines[-1] == "epoch 3 loss 0.6" and len(f.requests) == 1

        # Hostile output: escapes, bidi, NUL, invalid UTF-8, one 1 MB line without a break in it.
        kubelet.emit(ns, "train", "main", b"\x1b[2J\x1b]0;pwned\x07 \xe2\x80\xaeevil\x00 \xff\xfe")
        kubelet.emit(ns, "train", "main", b"x" * (1 << 20))
        got.until("the hostile lines", lambda ls: len(ls) >= 6)
        hostile, huge = got.lines[4], got.lines[5]
        assert "\ufffd" in hostile  # invalid UTF-8 replaced, not raised
        shown = inert(hostile, limit=4000)
        assert not any(c in shown for c in "\x1b\x07\x00\u202e"), repr(shown)
        assert len(huge.encode()) <= k8s_logs.LINE_MAX + 3 and huge.endswith("…")

        # Several lines in the same second, then the stream drops: the resume asks from that second
        # (sinceTime, whole seconds) and the repeated lines are skipped: none doubled, none lost.
        base = time.time_ns()
        for i in range(3):
            kubelet.emit(ns, "train", "main", f"burst {i}", ts_ns=base + i)
        got.until("the burst", lambda ls: len(ls) >= 9)
        kubelet.drop()
        got.until("the reconnect", lambda ls: f.reconnects >= 1 and len(f.requests) >= 2)
        assert ("sinceTime", k8s_logs.since_time(base + 2)) in f.requests[1], f.requests
        kubelet.emit(ns, "train", "main", "after the drop")
        got.until("the line after the drop", lambda ls: ls[-1:] == ["after the drop"])
        kubelet.emit(ns, "train", "main", "and one more")
        got.until("one more", lambda ls: ls[-1:] == ["and one more"])
        assert got.lines[6:] == ["burst 0", "burst 1", "burst 2", "after the drop", "and one more"], got.lines[6:]
        assert got.last.dropped == 0 and got.last.received == len(got.lines)
    finally:
        f.close()
    # Closed: the thread ends, and the API server closed its connection to the kubelet (no stream left).
    f.thread.join(10)
    assert not f.thread.is_alive()
    kubelet.wait_streams(0)
    assert f.take().state == "closed"
    extra = [t.name for t in threading.enumerate() if t.is_alive() and t.ident not in threads_before]
    assert not [n for n in extra if n.startswith("logs ")], extra  # (the stand-in kubelet's own handler threads aside)
    ctl.close()


def test_follow_says_stream_ended_and_pod_gone(logpod: dict[str, Any]) -> None:  # noqa: F811
    from clustertop.control import k8s_logs
    from clustertop.control.kubernetes import K8sControl

    ns, kubelet, core = logpod["ns"], logpod["kubelet"], logpod["core"]
    ctl = K8sControl(str(logpod["cluster"].kubeconfigs["admin"]))
    # Two containers and none named: the API server's own refusal, said once, not retried.
    f = k8s_logs.LogFollower(ctl, ns, "train").start()
    t = until("the refusal", f.take, lambda t: t.ended)
    assert "container name must be specified" in t.state and f.reconnects == 0, t.state

    # The sidecar exits: its stream ends, the pod says terminated -> "stream ended", no reconnect.
    kubelet.emit(ns, "train", "side", "bye")
    f = k8s_logs.LogFollower(ctl, ns, "train", container="side").start()
    got = Collect(f)
    got.until("the sidecar's line", lambda ls: ls == ["bye"])
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pod = core.read_namespaced_pod("train", ns)
    statuses = [{"name": c.name, "image": c.image, "imageID": "", "ready": c.name == "main", "restartCount": 0,
                 "state": {"running": {"startedAt": now}} if c.name == "main" else
                 {"terminated": {"exitCode": 3, "reason": "Error", "startedAt": now, "finishedAt": now}}}
                for c in pod.spec.containers]
    core.patch_namespaced_pod_status("train", ns, {"status": {"containerStatuses": statuses}})
    kubelet.end(ns, "train", "side")
    t = until("stream ended", f.take, lambda t: t.ended)
    assert t.state == "stream ended (container exited with 3)" and f.reconnects == 0, t.state
    f.thread.join(10)
    assert not f.thread.is_alive()

    # The pod is deleted while followed: the stream ends (the kubelet stops the container), the pod is
    # not there any more -> "pod gone".
    f = k8s_logs.LogFollower(ctl, ns, "train", container="main").start()
    until("following", f.take, lambda t: t.state == "following")
    core.delete_namespaced_pod("train", ns, grace_period_seconds=0)
    kubelet.end(ns, "train", "main")
    t = until("pod gone", f.take, lambda t: t.ended)
    assert t.state == "pod gone", t.state
    f.thread.join(10)
    assert not f.thread.is_alive()
    kubelet.wait_streams(0)

    # The reader identity may read logs; the namespace viewer only its own namespace: refused, said, ended.
    viewer = K8sControl(str(logpod["cluster"].kubeconfigs["nsviewer"]))
    assert viewer.can_i("get", "pods/log", ns) is False
    ctl.close()
    viewer.close()


def test_cli_logs_follow(logpod: dict[str, Any]) -> None:  # noqa: F811
    """``clustertop k8s logs -n NS POD -f`` as a real subprocess: the tail, then lines as they come (escaped),
    and the end said on stderr with exit 0 when the container exits."""
    import os
    import subprocess
    import sys

    from tests.cli.test_steer_cli import ROOT

    ns, kubelet, core = logpod["ns"], logpod["kubelet"], logpod["core"]
    kubelet.emit(ns, "train", "main", "before")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_") and k != "KUBECONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "clustertop", "k8s", "logs", "train", "-n", ns, "-c", "main", "-f",
                             "--kubeconfig", str(logpod["cluster"].kubeconfigs["admin"])], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        until("the tail", lambda: list(out), lambda o: o == ["before\n"])
        kubelet.emit(ns, "train", "main", "\x1b[31mafter\u202e")
        until("a followed line", lambda: list(out), lambda o: len(o) == 2)
        assert out[1] == "\\x1b[31mafter\\u202e\n", out  # shown escaped, never obeyed
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        core.patch_namespaced_pod_status("train", ns, {"status": {"containerStatuses": [
            {"name": "main", "image": "i", "imageID": "", "ready": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}]}})
        kubelet.end(ns, "train", "main")
        assert proc.wait(30) == 0
        assert "stream ended (container exited with 0)" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_logs_previous(logpod: dict[str, Any]) -> None:  # noqa: F811
    """``clustertop k8s logs NS/POD -c C --previous``: before any restart the kubelet's answer, said, exit 1;
    after one, what the old instance printed (escaped); with --follow, refused as a usage error."""
    import os
    import subprocess
    import sys

    from tests.cli.test_steer_cli import ROOT

    ns, kubelet = logpod["ns"], logpod["kubelet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERTOP_") and k != "KUBECONFIG"}

    def logs(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clustertop", "k8s", "logs", f"{ns}/train", "-c", "main", *extra,
                               "--kubeconfig", str(logpod["cluster"].kubeconfigs["admin"])], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    kubelet.emit(ns, "train", "main", "first life")
    r = logs("--previous")
    assert r.returncode == 1 and "no previous log" in r.stderr and "not found" in r.stderr, r.stderr
    kubelet.emit(ns, "train", "main", "\x1b[31mlast words\u202e")
    kubelet.restart(ns, "train", "main")
    kubelet.emit(ns, "train", "main", "second life")
    r = logs("-p")
    assert r.returncode == 0 and r.stdout == "first life\n\\x1b[31mlast words\\u202e\n", (r.stdout, r.stderr)
    assert logs().stdout == "second life\n"  # without -p: the running instance
    r = logs("-p", "-f")
    assert r.returncode == 2 and "--follow and --previous" in r.stderr, r.stderr
