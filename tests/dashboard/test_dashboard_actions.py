"""Job control from the dashboard's keys, against real parts: a real redis-server, a real
``agents.commands.CommandExecutor`` thread (as the agent runs it) and real ``sleep`` processes,
the real Kubernetes control plane of tests/support/k8s_cluster.py, a real Celery worker.

What is proven: read-only hides and refuses every action (the footer's check AND a direct
``action_*`` call); ``k`` on a process row -> dialog -> confirm really terminates the process, the
operator's signed entry and the node's land in their own streams, and the audit screen shows both
verified; Enter on a fresh dialog cancels; markup in a process name shows literally; no key -> an
explanation, no dialog; a real pod deleted through the dashboard with the operator's signed entry.

And the trust review's attacks, played for real: a process relabelled after its node sealed the
snapshot makes the dialog say UNVERIFIED and ask for the pid typed; the dialog shows the identity the
node signed, never the screen's copy; a forged "done" is reported unverified and the process lives;
a forged audit entry is marked on the audit screen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from clustertop import wire
from clustertop.agents.commands import CommandExecutor
from clustertop.control import commands as cc
from clustertop.control import signing
from clustertop.dashboard import fmt
from clustertop.dashboard.actions import Actions, actions_of, kill_loss
from clustertop.dashboard.app import WRITE_ACTIONS, make_app
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.logs import LogsViewer
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.screens.audit import AuditScreen
from clustertop.dashboard.screens.gpus import GpusScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.work import WorkScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.widgets.table import LiveTable
from clustertop.wire import schema
from tests.support import builders as b
from tests.support.k8s_cluster import VIEW_NAMESPACE, K8sCluster, k8s_cluster  # noqa: F401 - the session fixture

pytestmark = pytest.mark.anyio
NODE = "gpu-01"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def key(tmp_path: Any) -> tuple[str, str]:
    kp, pub, _ = signing.generate(str(tmp_path / "keys"), "ops")
    return kp, pub


@pytest.fixture
def agent(redis_server: Any, tmp_path: Any, key: tuple[str, str]) -> Iterator[CommandExecutor]:
    """The node's command executor in its own thread, as ``clustertop agent`` runs it."""
    stop = threading.Event()
    cfg = {"security": {"operator_keys": [key[1]], "allow_root": True}, "templates": {}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "state"), block_ms=100,
                         node_key=b.node_key(NODE))
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    yield ex
    stop.set()
    t.join(10)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["sleep", "300"])
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


def _start_ticks(pid: int) -> int:
    """The kernel's start of ``pid`` in clock ticks (/proc/<pid>/stat field 22): what a kill names."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[19])


def publish_victim(client: Any, pid: int, cmdline: str = "sleep 300", name: str = "sleep") -> schema.GpuProc:
    """gpu-01 with the real process on GPU 0 (the GPU collector cannot run here: no GPU; the
    process itself, its pid and its start time are real)."""
    proc = schema.GpuProc(pid=pid, used_mem_bytes=3 * b.GIB, user="root", name=name, cmdline=cmdline,
                          start_ts=psutil.Process(pid).create_time(), start_ticks=_start_ticks(pid), uid=os.getuid(),
                          owner=schema.Owner(kind="user", name="root"))
    snap = b.tower(NODE, (80, 5), ts=time.time())
    assert snap.gpus is not None
    snap.gpus[0].procs = [proc]
    assert snap.system is not None
    snap.system.procs = [schema.Proc(pid=pid, user="root", name=name, cmdline=cmdline, start_ts=proc.start_ts,
                                     start_ticks=proc.start_ticks, uid=proc.uid, cpu_pct=1.0)]
    b.publish(client, [snap], keys={NODE: b.node_key(NODE)})  # sealed by the node's key, as its agent does
    return proc


def app_for(redis_server: Any, **kw: Any) -> Any:
    """The dashboard with gpu-01 enrolled (its key in the trust anchors, as known_nodes would have it)."""
    kw.setdefault("known", b.known_nodes(NODE))
    settings = Settings(refresh_s=kw.pop("refresh_s", 0.3), source_label="test", action_timeout_s=20, **kw)
    return make_app(settings, redis_server.client)


async def wait_dialog(pilot: Any) -> ConfirmDialog:
    """The confirm dialog opens once a worker has read and checked the node's snapshot."""
    await b.wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
    await pilot.pause()
    return pilot.app.screen  # type: ignore[no-any-return]


async def open_gpu_procs(pilot: Any) -> GpusScreen:
    await b.wait_reads(pilot)
    await pilot.press("3")
    screen = pilot.app.screen
    assert isinstance(screen, GpusScreen)
    procs = screen.query_one("#procs-table", LiveTable)
    await b.wait_until(pilot, lambda: procs.row_count == 1, "the process row")
    return screen


def audit_entries(client: Any, stream: str = wire.operator_audit_key("ops")) -> list[schema.AuditEntry]:
    """The operator's own stream (ops.key: operator "ops"), or another writer's."""
    return [wire.decode(f[b"a"], schema.AuditEntry) for _id, f in client.xrange(stream)]


def body_text(dialog: ConfirmDialog) -> str:
    return str(dialog.query_one("#body-text").render())


# ---------------------------------------------------------------------------------------------
# Read-only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["read_only", "wall"])
async def test_read_only_hides_and_refuses_every_action(redis_server: Any, victim: Any, key: Any,
                                                        how: str) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0], **{how: True})
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        # Hidden: the app's check, and every screen that binds a job-control key.
        for action in WRITE_ACTIONS:
            assert app.check_action(action, ()) is False, action
        gpus, work = GpusScreen(), WorkScreen()
        app.install_screen(gpus, "t-gpus")
        app.install_screen(work, "t-work")
        for action in ("signal_process",):
            assert gpus.check_action(action, ("TERM",)) is False
        for action in ("job_delete", "job_kill", "job_logs", "job_scale", "job_pool", "job_launch"):
            assert work.check_action(action, ()) is False, action
        # Refused: direct calls reach the guard and stop there (no dialog, no command, no audit).
        acts = actions_of(app)
        proc = schema.Proc(pid=victim.pid, user="root", cmdline="sleep 300", start_ts=psutil.Process(victim.pid).create_time())
        acts.ask_signal(NODE, proc, "KILL")
        acts.ask_pick_process(NODE, "TERM")
        acts.ask_delete("Pod", "ml", "x")
        acts.ask_logs("ml", "x")
        acts.ask_scale("ml", "x", 1)
        acts.ask_revoke("celery@w1", schema.WorkerTask(id="t1"), terminate=True)
        acts.ask_pool("celery@w1", 1, 2)
        acts.ask_retire("tcp://1.2.3.4:1", 0)
        acts.ask_launch()
        work.action_job_delete()
        work.action_job_kill()
        work.action_job_launch()
        # The execution-time guard too: a stale dialog's callback calling execute() directly.
        called: list[int] = []
        acts.execute("signal", "x", lambda: called.append(1))  # type: ignore[arg-type,return-value]
        await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmDialog, PickDialog, LogsViewer))
        assert called == []
        assert client.xlen(wire.cmd_key(NODE)) == 0 and client.xlen(wire.operator_audit_key("ops")) == 0
        assert victim.poll() is None
        msgs = [n.message for n in app._notifications]
        assert any("read-only" in m and "refused" in m for m in msgs), msgs


# ---------------------------------------------------------------------------------------------
# k / K on a real process
# ---------------------------------------------------------------------------------------------


async def test_k_terminates_a_real_process_and_the_agent_audits_it(redis_server: Any, agent: Any, victim: Any,
                                                                   key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0], operator="alice@ops", operator_keys=[key[1]])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        dialog = await wait_dialog(pilot)
        text = body_text(dialog)
        fp = signing.fingerprint(b.node_key(NODE).public())
        # The identity as the node signed it, and whose key vouches for it; then the details.
        assert f"{NODE} pid {victim.pid} sleep 300, user root (uid {os.getuid()}), started " in text, text
        assert f"— signed by {NODE}'s enrolled key {fp}" in text and "UNVERIFIED" not in text
        for want in (NODE, str(victim.pid), "root", "sleep 300", "user root", "SIGTERM",
                     f"(tick {_start_ticks(victim.pid)})", "frees 3.0 GiB of VRAM on GPU 0", "TERM lets it clean up"):
            assert want in text, (want, text)
        assert not dialog.query("#require")  # verified: one confirmation
        assert dialog.focused is not None and dialog.focused.id == "cancel"  # Cancel is the default
        await pilot.press("tab")
        assert dialog.focused is not None and dialog.focused.id == "confirm"
        await pilot.press("enter")
        assert victim.wait(20) == -signal.SIGTERM  # really terminated, by the agent
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
        out = acts.done[0].outcome
        assert out.ok and out.audited and out.text == f"{NODE}: sent TERM to pid {victim.pid} (user root)"
        assert out.verified and any(n.title == "signal · verified" for n in app._notifications)
        # The agent's entry, in the node's own stream, signed by the node (the actor that counts); the
        # operator's name is the text its command carried.
        entries = audit_entries(client, wire.node_audit_key(NODE))
        assert len(entries) == 1
        e = entries[0]
        assert (e.actor, e.action, e.result, e.where) == (f"node:{NODE}", "signal", "ok", f"agent:{NODE}")
        assert str(victim.pid) in e.target and "operator 'alice@ops'" in e.target and e.command_id == out.command_id
        # The operator's entry, in its own stream, signed with ops.key, written with the command.
        (o,) = audit_entries(client)
        assert (o.actor, o.action, o.result, o.where, o.command_id) == ("ops", "signal", "sent", "dashboard",
                                                                         out.command_id)
        # The audit screen shows both writers' entries, newest (the node's) first, both verified.
        await pilot.press("7")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        await b.wait_until(pilot, lambda: screen.query_one(LiveTable).row_count == 2, "audit rows")
        rows = [[c.plain for c in screen.query_one(LiveTable).get_row_at(i)] for i in range(2)]
        assert rows[0][1:6] == [f"node:{NODE}", "signal", fmt.node_text(e.target, 60), "ok", "verified"]
        assert rows[1][1:6] == ["ops", "signal", fmt.node_text(o.target, 60), "sent", "verified"]
        status = str(screen.query_one("#audit-status").render())
        assert "the 2 newest entries of 2 writers' streams" in status and "every one verified" in status


async def test_shift_k_on_the_node_screen_picks_then_kills(redis_server: Any, agent: Any, victim: Any,
                                                           key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        app.open_node(NODE)
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        await pilot.press("K")
        assert isinstance(app.screen, PickDialog)
        await pilot.press("enter")  # picking only selects: the confirm dialog comes next
        dialog = await wait_dialog(pilot)
        assert "SIGKILL" in body_text(dialog)
        await pilot.press("tab", "enter")
        assert victim.wait(20) == -signal.SIGKILL


async def test_enter_on_a_fresh_dialog_cancels(redis_server: Any, agent: Any, victim: Any, key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("K")
        await wait_dialog(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, GpusScreen)
        await pilot.press("k")
        await wait_dialog(pilot)
        await pilot.press("escape")
        assert isinstance(app.screen, GpusScreen)
        await pilot.pause(0.5)
        assert client.xlen(wire.cmd_key(NODE)) == 0  # nothing was sent
        assert victim.poll() is None and actions_of(app).done == []


async def test_markup_in_a_process_name_shows_literally(redis_server: Any, victim: Any, key: Any) -> None:
    client = redis_server.client()
    evil = "[b]python[/b] [$accent]x[/] [@click=app.quit]y[/]"
    publish_victim(client, victim.pid, cmdline=evil, name="[red]sleep")
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        dialog = await wait_dialog(pilot)
        assert evil in body_text(dialog)
        await pilot.press("escape")


async def test_without_a_key_it_explains_how_to_get_one(redis_server: Any, victim: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server)  # no operator key
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        await pilot.pause(0.3)
        assert isinstance(app.screen, GpusScreen)  # no dialog that could only fail
        msgs = [n.message for n in app._notifications]
        assert any("clustertop keygen" in m and "--key" in m for m in msgs), msgs
        assert client.xlen(wire.cmd_key(NODE)) == 0


async def test_an_agent_that_never_answers_is_in_the_operators_trail(redis_server: Any, victim: Any,
                                                                      key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    app.settings.action_timeout_s = 1.0
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        acts = actions_of(app)
        ident = cc.process_identity(client, NODE, victim.pid, b.known_nodes(NODE))
        assert ident.verified
        acts.execute("signal", f"{NODE} pid {victim.pid}", lambda: acts.signal(ident, "TERM"))
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the timeout", tries=1500)
        out = acts.done[0].outcome
        assert not out.ok and out.audited and "no answer within 1 s" in out.text
        # Written with the command, in the same MULTI: the operator's trail says it was sent.
        (e,) = audit_entries(client)
        assert (e.where, e.result, e.command_id, e.actor) == ("dashboard", "sent", out.command_id, "ops")
        assert client.xlen(wire.cmd_key(NODE)) == 1  # it was sent, signed, and is waiting for an agent
        assert victim.poll() is None


# ---------------------------------------------------------------------------------------------
# The trust review's attacks, through the dashboard
# ---------------------------------------------------------------------------------------------


def relabel(client: Any, pid: int) -> None:
    """A Redis writer rewrites gpu-01's snapshot after the node sealed it: the real process, same pid and
    start, shown as a miner at 398 %."""
    snap = wire.decode(client.get(wire.node_key(NODE)), schema.NodeSnapshot)
    assert snap.system is not None and snap.gpus is not None
    for p in [*(snap.system.procs or ()), *(snap.gpus[0].procs or ())]:
        if p.pid == pid:
            p.cmdline, p.name = "/tmp/.x/xmrig --donate-level 0", "xmrig"
    snap.system.procs[0].cpu_pct = 398.0  # type: ignore[index]
    client.set(wire.node_key(NODE), wire.encode(snap), keepttl=True)


async def test_a_relabelled_process_shows_unverified_and_needs_the_pid_typed(redis_server: Any, agent: Any,
                                                                             victim: Any, key: Any) -> None:
    from textual.widgets import Button, Input

    client = redis_server.client()
    publish_victim(client, victim.pid)
    relabel(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await open_gpu_procs(pilot)
        await pilot.press("k")
        dialog = await wait_dialog(pilot)
        text = body_text(dialog)
        assert f"UNVERIFIED: {NODE}'s node payload does not match its seal" in text, text
        assert "/tmp/.x/xmrig" in text and "signed by" not in text
        assert str(dialog.query_one("#title").render()).startswith("UNVERIFIED: Terminate pid")
        confirm = dialog.query_one("#confirm", Button)
        assert confirm.disabled
        confirm.press()  # disabled: nothing happens
        await pilot.pause()
        assert app.screen is dialog
        typed = dialog.query_one("#require", Input)
        typed.value = str(victim.pid + 1)
        await pilot.pause()
        assert confirm.disabled  # not the pid
        typed.value = str(victim.pid)
        await pilot.pause()
        assert not confirm.disabled
        assert app.trust.of(NODE).word == "BAD SIGNATURE"  # the node acted on, checked at confirm time
        confirm.press()  # enabled now
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
        out = acts.done[0].outcome
        # The prefix came from the forged label: the node refuses (its own, verified word) and the
        # process lives.
        assert not out.ok and f"{NODE}: refused: pid reused: command line of pid {victim.pid}" in out.text, out.text
        assert victim.poll() is None


async def test_the_dialog_shows_what_the_node_signed_not_the_screens_copy(redis_server: Any, agent: Any,
                                                                          victim: Any, key: Any) -> None:
    client = redis_server.client()
    publish_victim(client, victim.pid)
    app = app_for(redis_server, operator_key=key[0])
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        # A row drawn from a stale or forged copy: same pid, another process.
        shown = schema.Proc(pid=victim.pid, user="nobody", cmdline="harmless --dry-run", start_ticks=1, uid=65534)
        actions_of(app).ask_signal(NODE, shown, "TERM")
        dialog = await wait_dialog(pilot)
        text = body_text(dialog)
        assert "sleep 300" in text and "harmless" not in text and "nobody" not in text
        assert f"(tick {_start_ticks(victim.pid)})" in text and "signed by" in text
        await pilot.press("tab", "enter")
        assert victim.wait(20) == -signal.SIGTERM  # the signed identity, not start tick 1
        (cmd,) = [wire.decode(f[b"c"], schema.Command) for _, f in client.xrange(wire.cmd_key(NODE))]
        assert cmd.args["start_ticks"] == _start_ticks_of(cmd) and cmd.args["uid"] == os.getuid()


def _start_ticks_of(cmd: schema.Command) -> int:
    value = cmd.args["start_ticks"]
    assert isinstance(value, int) and value > 1
    return value


async def test_a_forged_done_is_shown_unverified(redis_server: Any, victim: Any, key: Any) -> None:
    """No agent runs for gpu-01; another Redis writer answers its commands with "done", signed by its own
    (another node's) key. The dashboard must not say the process was terminated: it still runs."""
    client = redis_server.client()
    publish_victim(client, victim.pid)
    impostor = b.node_key("gpu-02")
    stop = threading.Event()

    def forge() -> None:
        import redis

        c = redis_server.client()
        last = "0-0"
        while not stop.is_set():
            try:
                got = c.xread({wire.cmd_key(NODE): last}, block=100) or []
            except redis.RedisError:
                return
            for _s, entries in got:
                for eid, fields in entries:
                    last = eid
                    cmd = wire.decode(fields[b"c"], schema.Command)
                    res = schema.CommandResult(id=cmd.id, node=NODE, verb=cmd.verb, ok=True, status="done",
                                               ts=time.time(), data={"pid": victim.pid, "signal": "TERM", "user": "root"})
                    c.xadd(wire.results_key(NODE), {"r": wire.encode(signing.sign_struct("result", res, impostor))})

    t = threading.Thread(target=forge, daemon=True)
    t.start()
    app = app_for(redis_server, operator_key=key[0], known=b.known_nodes(NODE, "gpu-02"))
    app.settings.action_timeout_s = 2.0
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await open_gpu_procs(pilot)
            await pilot.press("k")
            await wait_dialog(pilot)
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the action's outcome", tries=1500)
            out = acts.done[0].outcome
            assert not out.ok and out.verified is False, out.text
            assert out.text.startswith(f"unverified answer from {NODE}: sent TERM to pid {victim.pid}"), out.text
            assert any(n.title == "signal · UNVERIFIED" for n in app._notifications)
            assert "not the enrolled" in out.text
            msgs = [n.message for n in app._notifications]
            assert any(m.startswith(f"unverified answer from {NODE}") for m in msgs), msgs
    finally:
        stop.set()
        t.join(5)
    assert victim.poll() is None


async def test_the_audit_screen_marks_a_forged_entry(redis_server: Any, key: Any) -> None:
    """Every writer's stream, merged newest first: the node's signed entries verified, one an attacker
    added to it UNVERIFIED, and an operator's stream nobody configured a key for, UNVERIFIED too."""
    from clustertop.control import trust

    client = redis_server.client()
    b.publish(client, [b.tower(NODE, ts=time.time())], keys={NODE: b.node_key(NODE)})
    stream = wire.node_audit_key(NODE)
    for i in range(2):
        trust.append_audit(client, stream, schema.AuditEntry(ts=time.time(), actor=f"node:{NODE}", action="signal",
                                                             target=f"{NODE} pid {100 + i}", result="ok"),
                           b.node_key(NODE))
    forged = schema.AuditEntry(ts=time.time(), actor=f"node:{NODE}", action="signal", target=f"{NODE} pid 666",
                               result="ok", seq=3)
    client.xadd(stream, {"a": wire.encode(forged)})
    time.sleep(0.01)  # stream ids order streams by Redis's millisecond: the next one is newer
    mallory = signing.load_private(key[0])  # an operator key the dashboard was not told about
    trust.append_audit(client, wire.operator_audit_key("mallory"),
                       schema.AuditEntry(ts=time.time(), actor="mallory", action="launch", target="x", result="sent"),
                       mallory)
    app = app_for(redis_server)
    async with app.run_test(size=(200, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("7")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        table = screen.query_one(LiveTable)
        await b.wait_until(pilot, lambda: table.row_count == 4, "audit rows", tries=1500)
        rows = [[c.plain for c in table.get_row_at(i)] for i in range(4)]
        by_target = {r[3]: r[5] for r in rows}
        assert by_target[f"{NODE} pid 100"] == "verified" and by_target[f"{NODE} pid 101"] == "verified"
        assert by_target[f"{NODE} pid 666"] == "UNVERIFIED: (seq 3): signed by key '', which may not write here"
        assert by_target["x"].startswith("UNVERIFIED: no key for operator mallory")
        assert [r[3] for r in rows][:2] == ["x", f"{NODE} pid 666"]  # newest first, by stream id
        assert "2 UNVERIFIED" in str(screen.query_one("#audit-status").render())


def test_kill_loss_names_what_is_lost() -> None:
    gp = b.gpu_proc(7001, "python", "alice", 9.0, pod="train-resnet-0")
    snap = b.tower("gpu-06", (99, 97))
    assert snap.gpus is not None
    snap.gpus[1].procs = [gp]
    pods = [schema.K8sPod(namespace="ml", name="train-resnet-0", owner_kind="Job", owner="train-resnet")]
    text = kill_loss(gp, snap, "TERM", pods)
    assert "training job in pod ml/train-resnet-0: unsaved progress since the last checkpoint" in text
    assert "owned by Job train-resnet" in text and "frees 9.0 GiB of VRAM on GPU 1" in text
    snap.tasks = [schema.Task(id="t9", template="train", pid=7001, job="j1", rank=1)]
    assert "task t9 from template train (job j1, rank 1: the other ranks may stall or fail)" in kill_loss(
        gp, snap, "KILL", pods)
    assert "KILL gives it no chance" in kill_loss(gp, snap, "KILL")
    plain = schema.Proc(pid=5, user="bob")
    assert kill_loss(plain, None, "TERM").startswith("work of user bob")
    assert isinstance(Actions, type)


# ---------------------------------------------------------------------------------------------
# Kubernetes: a real control plane (tests/support/k8s_cluster.py), the pod deleted through the dashboard
# ---------------------------------------------------------------------------------------------


async def test_ctrl_d_deletes_a_real_pod_with_the_impact_shown_first(redis_server: Any, key: Any,
                                                                    k8s_cluster: K8sCluster) -> None:  # noqa: F811
    import json

    from kubernetes import client as kc

    from clustertop.collectors import kubernetes_parse as k8s_parse
    from tests.collectors.test_k8s_real import node_body, pod_body, wait_for

    cluster = k8s_cluster

    api = cluster.client("admin")
    core = kc.CoreV1Api(api)
    tag = str(int(time.time() * 1000) % 10**8)
    ns, node, pod = f"dash-{tag}", f"fake-dash-{tag}", "scratch"
    core.create_namespace({"metadata": {"name": ns}})
    body = node_body(node, 2)
    core.create_node(body)
    core.patch_node_status(node, {"status": body["status"]})
    core.create_namespaced_pod(ns, pod_body(pod, 1, node))

    def phase() -> str | None:
        try:
            return str(core.read_namespaced_pod(pod, ns).status.phase)
        except kc.exceptions.ApiException as e:
            if e.status == 404:
                return None
            raise

    wait_for("pod running", phase, lambda p: p == "Running")
    raw = core.list_namespaced_pod(ns, _preload_content=False)
    pods = k8s_parse.parse_pods(json.loads(raw.data))
    payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True,
                                    kubernetes=schema.Kubernetes(pods=pods))
    rc = redis_server.client()
    b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
    app = app_for(redis_server, kubeconfig=str(cluster.kubeconfigs["admin"]), operator="alice@ops",
                  operator_key=key[0])  # the key signs the operator's audit entry
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await b.work_tab(pilot, "pods", lambda n: n == 1, "the pod row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            assert acts.k8s_allowed == {"delete_pod": True, "delete_job": True, "create_job": True,
                                        "scale_deployment": True, "pod_logs": True, "rollout": True,
                                        "nodes": True}
            # l: logs come from a kubelet; none serves here -> a clear error in the viewer.
            await pilot.press("l")
            viewer = app.screen
            assert isinstance(viewer, LogsViewer)
            await b.wait_until(pilot, lambda: viewer.error is not None, "the logs answer", tries=1500)
            assert "kubelet did not serve" in viewer.error
            await pilot.press("escape")
            await pilot.press("ctrl+d")
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the impact preview", tries=1500)
            dialog = app.screen
            assert "not managed: gone for good; its running processes are killed" in body_text(dialog)
            assert phase() == "Running"  # the preview changed nothing
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the delete", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            wait_for("pod deleted", phase, lambda p: p is None)
            (e,) = audit_entries(rc)  # the operator's own stream, signed with ops.key
            assert (e.actor, e.action, e.target, e.result, e.where) == (
                "ops", "k8s.delete_pod", f"{ns}/{pod}", "ok", "dashboard")
    finally:
        actions_of(app).close()
        api.close()


async def test_can_i_hides_kubernetes_keys_the_operator_may_not_use(redis_server: Any,
                                                                     k8s_cluster: K8sCluster) -> None:  # noqa: F811
    cluster = k8s_cluster
    pods = [schema.K8sPod(namespace=VIEW_NAMESPACE, name="p1", node="n1", phase="Running")]
    payload = schema.ClusterPayload(name="kubernetes", ts=time.time(), ok=True,
                                    kubernetes=schema.Kubernetes(pods=pods))
    b.publish(redis_server.client(), [b.tower("gpu-01", ts=time.time())], cluster=[payload])
    app = app_for(redis_server, kubeconfig=str(cluster.kubeconfigs["reader"]))
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            screen = await b.work_tab(pilot, "pods", lambda n: n == 1, "the pod row")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: acts.k8s_allowed is not None, "can-i answers", tries=1500)
            assert acts.k8s_allowed is not None and not acts.k8s_allowed["delete_pod"]
            assert screen.check_action("job_delete", ()) is False  # hidden: Kubernetes said no
            assert screen.check_action("job_launch", ()) is True
    finally:
        actions_of(app).close()


# ---------------------------------------------------------------------------------------------
# Celery: a real worker (tests/collectors/test_celery.py's harness) on the same real redis-server
# ---------------------------------------------------------------------------------------------


@pytest.mark.heavy  # a real Celery worker / Dask cluster
async def test_ctrl_k_terminates_a_real_celery_task_and_plus_grows_the_pool(redis_server: Any, tmp_path: Any,
                                                                            key: Any) -> None:
    import os
    from pathlib import Path

    pytest.importorskip("celery")
    from tests.collectors.test_celery import CeleryWorker, wait_for

    worker = CeleryWorker(redis_server.url)
    app = None
    try:
        worker.wait_ready()
        marker = tmp_path / "victim"
        res = worker.control.app.send_task("ct.touch_after", args=(str(marker), 60), queue="work")
        started = Path(str(marker) + ".started")
        pid = int(wait_for("the task to start", lambda: started.exists() and started.read_text()))
        payload = schema.ClusterPayload(name="celery", ts=time.time(), ok=True, queues=schema.Queues(workers=[
            schema.Worker(name=worker.name, host="ct-test", online=True, pool_size=2,
                          active=[schema.WorkerTask(id=res.id, name="ct.touch_after", runtime_s=1.0)])]))
        rc = redis_server.client()
        b.publish(rc, [b.tower("gpu-01", ts=time.time())], cluster=[payload])
        app = app_for(redis_server, celery_broker=redis_server.url, operator="alice@ops", refresh_s=5,
                      operator_key=key[0])
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6", "right_square_bracket")
            screen = app.screen
            assert isinstance(screen, WorkScreen) and screen.pane == "workers"
            await b.wait_until(pilot, lambda: screen.table().row_count == 2, "worker and task rows")
            await pilot.press("plus")  # on the worker row: grow its pool by one (cheap to undo: no dialog)
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "pool grow", tries=1500)
            assert acts.done[0].outcome.ok, acts.done[0].outcome.text
            from clustertop.collectors import queues_parse

            def size() -> int | None:
                stats = worker.control.app.control.inspect(timeout=1, destination=[worker.name]).stats() or {}
                return queues_parse.pool_size(stats.get(worker.name, {}))

            wait_for("the pool to have 3 processes", lambda: size() == 3)
            await pilot.press("down", "ctrl+k")
            dialog = app.screen
            assert isinstance(dialog, ConfirmDialog) and res.id in body_text(dialog)
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: len(acts.done) == 2, "revoke+terminate", tries=1500)
            assert acts.done[1].outcome.ok, acts.done[1].outcome.text

            def gone() -> bool:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                try:
                    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
                except OSError:
                    return True

            wait_for("the pool process running the task to be terminated", gone)
            assert not marker.exists()
            entries = audit_entries(rc)
            assert [(e.action, e.result, e.where, e.actor) for e in entries] == [
                ("celery.pool_grow", "ok", "dashboard", "ops"),
                ("celery.terminate", "ok", "dashboard", "ops")]
            assert res.id in entries[1].target
    finally:
        if app is not None:
            actions_of(app).close()
        worker.stop()


async def test_n_launches_a_template_on_a_real_agent(redis_server: Any, tmp_path: Any, key: Any) -> None:
    from textual.widgets import Input, SelectionList

    from clustertop.dashboard.dialogs.launcher import LauncherDialog

    stop = threading.Event()
    cfg = {"security": {"operator_keys": [key[1]], "allow_root": True},
           "templates": {"nap": {"argv": ["sleep", "{s}"], "params": {"s": "int"}, "description": "sleep a while"}}}
    ex = CommandExecutor(redis_server.client, NODE, cfg, state_dir=str(tmp_path / "state"), block_ms=100,
                         node_key=b.node_key(NODE))
    t = threading.Thread(target=ex.run, args=(stop,), daemon=True)
    t.start()
    try:
        snap = b.tower(NODE, ts=time.time())
        snap.templates = [schema.TemplateInfo(name="nap", description="sleep a while", params={"s": "int"})]
        b.publish(redis_server.client(), [snap], keys={NODE: b.node_key(NODE)})
        app = app_for(redis_server, operator_key=key[0])
        async with app.run_test(size=(160, 50)) as pilot:
            await b.wait_reads(pilot)
            await pilot.press("6", "n")
            await b.wait_until(pilot, lambda: isinstance(app.screen, LauncherDialog), "the launcher")
            dialog = app.screen
            await b.wait_until(pilot, lambda: dialog.current is not None, "the first template picked")
            await pilot.pause()
            dialog.query_one("#form Input", Input).value = "300"
            dialog.query_one("#nodes", SelectionList).select_all()
            dialog.query_one("#confirm").press()
            await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the launch confirmation")
            assert "nap" in body_text(app.screen) and "s=300" in body_text(app.screen)
            await pilot.press("tab", "enter")
            acts = actions_of(app)
            await b.wait_until(pilot, lambda: len(acts.done) == 1, "the launch", tries=1500)
            out = acts.done[0].outcome
            assert out.ok and out.text.startswith(f"{NODE}: launched nap as task"), out.text  # the node's signed word
            (task,) = ex.tasks()
            assert task.state == "running" and task.argv == ["sleep", "300"]
            ex.task_mgr.stop(task.id)
    finally:
        stop.set()
        t.join(10)
