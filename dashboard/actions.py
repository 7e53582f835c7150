"""Provides the one guarded place where the dashboard acts on the cluster.

Keys and dialogs only *ask*; everything that changes something runs through ``Actions.execute``:
it re-checks read-only mode at the moment of execution (a binding hidden in the footer is not a
guarantee: a command palette entry, a test, or a stale dialog could still call in), runs the
blocking call in a thread worker (the UI never waits on Redis, the API server or a broker), writes
the audit entry for what the dashboard does itself (Kubernetes, Celery, Dask) and reports the
outcome as a notification.

The audit trail is the operator's own stream, ``audit:op:NAME`` (NAME: the key file's stem), each
entry signed with the operator's key and chained (``trust.append_audit``): a signed command's entry
is written in the same MULTI as the command (control/commands.py), the node audits what it did in
its own stream, and what the dashboard does itself is appended here after the fact.

Trust: a kill is built on the process as its node signed it, read afresh at confirm time in a
worker (``commands.process_identity``), never on the screen's copy; the dialog says whose key
vouches for it, or, loudly, that nothing does (then the pid must be typed to confirm). An answer is
"done" only when the node's enrolled key signed it.

Heavy clients (kubernetes, celery, httpx) are imported only when an action needs them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.content import Content

from clustertop import wire
from clustertop.control import commands as cc
from clustertop.control import trust
from clustertop.dashboard import fmt
from clustertop.errors import describe
from clustertop.wire import schema

#: How to get an operator key, for anyone who pressed a process key without one.
NO_KEY_HELP = ("No operator key: commands to agents must be signed. Create one with "
               "`clustertop keygen --out DIR --name NAME`, list DIR/NAME.pub in each agent's [security] "
               "operator_keys, then start the dashboard with --key DIR/NAME.key (or CLUSTERTOP_KEY).")
#: Audit entries the audit screen reads (XREVRANGE COUNT): the tail, never the whole stream.
AUDIT_TAIL = 200


@dataclass
class Outcome:
    ok: bool
    text: str  # one line, for the notification and the audit trail
    audited: bool = False  # the entry is already in the operator's stream (signed commands: sent with it)
    command_id: str | None = None
    #: Answers from nodes: True when every one was signed by its node's enrolled key, False when any was
    #: not (forged, or a node nobody enrolled), None when no node answered or none was asked.
    verified: bool | None = None


@dataclass
class Done:
    """One finished action, kept for the audit screen's "this session" note and for tests."""

    action: str
    target: str
    outcome: Outcome
    ts: float


class Actions:
    """Job control for one app. ``actions_of(app)`` makes it on first use."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.done: list[Done] = []
        self._client: Any = None
        self._k8s: Any = None
        self._celery: Any = None
        self._ceph: Any = None
        self._lock = threading.Lock()
        #: can_i answers (action -> allowed), None until asked; asked once per session in a worker.
        self.k8s_allowed: dict[str, bool] | None = None
        self.k8s_allowed_error: str | None = None
        self._asked_k8s = False

    # -- policy ---------------------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        return self.app.settings

    @property
    def read_only(self) -> bool:
        return bool(self.settings.effective_read_only)

    def allowed(self, what: str) -> bool:
        """The check at the key: False (and a notification saying so) in read-only mode."""
        if self.read_only:
            self.notify(f"read-only: {what} refused", "error")
            return False
        return True

    def operator(self) -> str:
        return self.settings.operator or cc.default_operator()

    def notify(self, text: str, severity: str = "information", title: str = "") -> None:
        # markup=False: the text carries node and pod names (data, never markup).
        self.app.notify(fmt.node_text(text, 600), title=title, severity=severity, markup=False,
                        timeout=8 if severity == "error" else 5)

    def _notify_from_thread(self, text: str, severity: str = "information", title: str = "") -> None:
        self.app.call_from_thread(self.notify, text, severity, title)

    # -- execution ------------------------------------------------------------------------------

    def execute(self, action: str, target: str, fn: Callable[[], Outcome],
                then: Callable[[Outcome], None] | None = None) -> None:
        """Run ``fn`` in a thread worker; re-check read-only there; audit; notify; then ``then(outcome)`` on the
        UI thread (the next step of a sequence: noout set, then the drain's dialog)."""
        def run() -> None:
            if self.read_only:  # the guard at the point of execution
                self._notify_from_thread(f"read-only: {action} {target} refused", "error", "refused")
                return
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - the operator gets the reason, never a traceback
                out = Outcome(False, f"failed: {describe(e)}")
            if not out.audited:
                try:
                    self.write_audit(action, target, out)
                except Exception as e:  # noqa: BLE001 - the action happened; say the trail did not
                    out.text += f" (audit entry not written: {describe(e)})"
            self.app.call_from_thread(self._finished, action, target, out, then)

        self.app.run_worker(run, thread=True, group="actions", exit_on_error=False, name=f"{action} {target}")

    def _finished(self, action: str, target: str, out: Outcome,
                  then: Callable[[Outcome], None] | None = None) -> None:
        self.done.append(Done(action, target, out, time.time()))
        # The verdict rides in the title: "signal · verified" reads differently from "signal · UNVERIFIED".
        title = action + {True: " · verified", False: " · UNVERIFIED", None: ""}[out.verified]
        self.notify(out.text, "information" if out.ok else "error", title=title)
        refresh = getattr(self.app, "refresh_now", None)
        if refresh is not None:
            refresh()  # show the effect on the next read instead of a second later
        if then is not None:
            then(out)

    def background(self, fn: Callable[[], None], name: str) -> None:
        """A read-only helper call (previews, logs, permission checks) in a thread worker."""
        self.app.run_worker(fn, thread=True, group="action-reads", exit_on_error=False, name=name)

    # -- clients (worker threads only) ------------------------------------------------------------

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self.app.source.client_factory()
            return self._client

    def key(self) -> Any:
        from clustertop.control import signing

        path = self.settings.operator_key
        if not path:
            raise KeyError(NO_KEY_HELP)
        return signing.load_private(os.path.expanduser(path))

    def _external(self) -> None:
        """The demo's guard: no Kubernetes, Celery or Dask client is made (none reads ~/.kube/config)."""
        why = getattr(self.settings, "external_control_refused", None)
        if why:
            raise RuntimeError(why)

    def _demo(self) -> Any:
        """The demo's simulated Kubernetes/Celery/Dask (settings.demo_control), else None."""
        return getattr(self.settings, "demo_control", None)

    def k8s(self) -> Any:
        if self._demo() is not None:
            return self._demo().k8s  # the simulated cluster: no client, no kubeconfig
        self._external()
        with self._lock:
            if self._k8s is None:
                from clustertop.control.kubernetes import K8sControl

                self._k8s = K8sControl(self.settings.kubeconfig, self.settings.k8s_context)
            return self._k8s

    def celery(self) -> Any:
        if self._demo() is not None:
            return self._demo().celery
        self._external()
        with self._lock:
            if self._celery is None:
                if not self.settings.celery_broker:
                    raise RuntimeError("no Celery broker configured (--celery-broker URL or CLUSTERTOP_CELERY_BROKER)")
                from clustertop.control.celery import CeleryControl

                s = self.settings
                self._celery = CeleryControl(s.celery_broker, backend=getattr(s, "celery_backend", None),
                                             broker_keyprefix=getattr(s, "celery_broker_keyprefix", ""),
                                             backend_keyprefix=getattr(s, "celery_backend_keyprefix", ""))
            return self._celery

    def ceph_missing(self) -> str | None:
        """Why Ceph actions cannot run here (no [ceph] access configured), said at the key; None: they can."""
        if self._demo() is not None or getattr(self.settings, "ceph", None) is not None:
            return None
        from clustertop.dashboard.settings import config_file

        where = config_file(getattr(self.settings, "config_file", None), os.environ)
        return (f"Ceph actions need [ceph] in {where} (urls, username, password_file: your own ceph-mgr "
                "dashboard user) or CLUSTERTOP_CEPH_URL, _USER, _PASSWORD_FILE")

    def ceph(self) -> Any:
        """The operator's ``control.ceph.CephControl`` (the demo's ``SimCeph``), made on first use."""
        if self._demo() is not None:
            return self._demo().ceph
        self._external()
        with self._lock:
            if self._ceph is None:
                why = self.ceph_missing()
                if why:
                    raise RuntimeError(why)
                from clustertop.config import ConfigError
                from clustertop.control.ceph import CephControl, settings_from

                a = self.settings.ceph
                where = self.settings.config_file or "config"
                try:
                    access = settings_from(list(a.urls), a.username, a.password_file, a.ca_file, verify=a.verify,
                                           timeout_s=min(30.0, a.timeout), where=where)
                except ConfigError as e:  # checked as the collector's section: name the dashboard's key
                    key = (e.key or "").rpartition(" ")[2]
                    raise RuntimeError(f"{where}: [ceph] {key}: {e.problem}") from None
                self._ceph = CephControl(access, task_wait_s=a.timeout)
            return self._ceph

    def close(self) -> None:
        for c in (self._k8s, self._celery, self._ceph):
            if c is not None:
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - closing on the way out
                    pass

    # -- audit ------------------------------------------------------------------------------------

    def write_audit(self, action: str, target: str, out: Outcome) -> None:
        """What the dashboard did itself (Kubernetes, Celery, Dask; a command it could not send), appended
        to the operator's own stream, signed with the operator's key. No key: no entry anyone could trust,
        so none; the outcome says so."""
        if not self.settings.operator_key:
            raise RuntimeError("no operator key to sign it (--key)")
        key = self.key()
        name = cc.operator_name(key)
        result = "ok" if out.ok else (out.text if out.text.startswith(("refused", "failed")) else f"failed: {out.text}")
        entry = schema.AuditEntry(ts=time.time(), actor=name, action=action[:40], target=target[:300],
                                  result=result[:500], where="dashboard", command_id=out.command_id)
        trust.append_audit(self.client(), wire.operator_audit_key(name), entry, key)

    def known(self) -> trust.KnownNodes:
        """The enrolled node keys (the app's anchors: the known_nodes file, or the demo's nodes)."""
        return self.app.trust.known  # type: ignore[no-any-return]

    # -- signed commands to agents ------------------------------------------------------------------

    def _send(self, cmds: list[schema.Command]) -> dict[str, cc.Answer | None]:
        """Sign and send ``cmds`` (each with its entry in the operator's stream), await the nodes' answers."""
        return cc.submit(self.client(), self.key(), cmds, self.settings.action_timeout_s, known=self.known(),
                         where="dashboard")

    def _answers(self, cmds: list[schema.Command]) -> Outcome:
        """Send ``cmds``; the outcome in the nodes' words, each answer with its verdict. The operator's
        stream has the entry of every command sent, so the outcome is audited whatever came back."""
        first = cmds[0].id if cmds else None
        try:
            got = self._send(cmds)
        except cc.NotAwaited as e:
            return Outcome(False, str(e), audited=True, command_id=first)
        lines, ok = [], True
        verdicts = []
        for c in cmds:
            ans = got[c.id]
            if ans is None:
                ok = False
                lines.append(f"{fmt.node_text(c.node, 64)}: no answer within {self.settings.action_timeout_s:g} s "
                             "(agent down, or not reading commands)")
            else:
                ok = ok and ans.ok  # done, and signed by the node: an unverified "done" is no success
                verdicts.append(ans.verdict.ok)
                lines.append(cc.answer_line(ans, c.node))
        return Outcome(ok, "; ".join(lines), audited=True, command_id=first,
                       verified=all(verdicts) if verdicts else None)

    def signal(self, ident: cc.Identity, sig: str) -> Outcome:
        """Signal the process exactly as ``ident`` names it (its node's snapshot, checked at confirm time)."""
        cmd = cc.build(ident.node, "signal", ident.signal_args(sig), operator=self.operator())
        return self._answers([cmd])

    def launch(self, template: str, nodes: list[str], params: dict[str, Any]) -> Outcome:
        return self._answers(cc.launch_commands(template, nodes, params, operator=self.operator()))

    def stop_task(self, node: str, task_id: str) -> Outcome:
        return self._answers([cc.build(node, "stop", {"task": task_id}, operator=self.operator())])

    def container(self, node: str, c: schema.Container, action: str) -> Outcome:
        """stop / restart / kill of the container its node signed (full id and creation time)."""
        args = cc.container_args(c, signal="KILL" if action == "kill" else None,
                                 grace=None if action == "kill" else 10)
        return self._answers([cc.build(node, f"container.{action}", args, operator=self.operator())])

    # -- Kubernetes ---------------------------------------------------------------------------------

    def check_k8s(self, on_done: Callable[[], None] | None = None) -> None:
        """Ask can_i once per session (cached): keys the operator may not use are hidden."""
        if self._asked_k8s:
            return
        self._asked_k8s = True

        def ask() -> None:
            try:
                allowed = self.k8s().allowed_actions()
                err = None
            except Exception as e:  # noqa: BLE001 - unknown permissions: keys stay, the action says why
                allowed, err = None, describe(e)
            def store() -> None:
                self.k8s_allowed, self.k8s_allowed_error = allowed, err
                if on_done is not None:
                    on_done()
            self.app.call_from_thread(store)

        self.background(ask, "kubernetes can-i")

    def k8s_may(self, action: str) -> bool:
        """False only when Kubernetes said no; unknown (not asked yet, API down) is not a refusal."""
        return self.k8s_allowed is None or self.k8s_allowed.get(action, True)

    def delete_pod(self, namespace: str, name: str) -> Outcome:
        imp = self.k8s().delete_pod(namespace, name)
        return Outcome(True, f"deleted pod {namespace}/{name}: {imp.consequence}")

    def delete_job(self, namespace: str, name: str) -> Outcome:
        imp = self.k8s().delete_job(namespace, name)
        return Outcome(True, f"deleted job {namespace}/{name}: {imp.consequence}")

    def scale(self, namespace: str, name: str, replicas: int) -> Outcome:
        before, after = self.k8s().scale_deployment(namespace, name, replicas)
        return Outcome(True, f"scaled deployment {namespace}/{name} from {fmt.num(before)} to {after}")

    def create_job(self, plan: Any) -> Outcome:
        made = self.k8s().create_job(plan)
        return Outcome(True, f"created job {made.namespace}/{made.name}")

    # -- Celery and Dask ------------------------------------------------------------------------------

    def revoke(self, task_id: str, terminate: bool) -> Outcome:
        r = self.celery().revoke(task_id, terminate=terminate)
        return Outcome(r.ok, r.text)

    def retry(self, plan: Any) -> Outcome:
        r = self.celery().retry(plan)
        return Outcome(r.ok, r.text)

    def pool(self, worker: str, delta: int) -> Outcome:
        c = self.celery()
        r = c.pool_grow(worker, delta) if delta > 0 else c.pool_shrink(worker, -delta)
        return Outcome(r.ok, r.text)

    def retire(self, worker: str) -> Outcome:
        if self._demo() is not None:
            r = self._demo().retire_worker(worker)
            return Outcome(r.ok, r.text)
        self._external()
        if not self.settings.dask_scheduler:
            raise RuntimeError("no Dask scheduler configured (--dask-scheduler URL or CLUSTERTOP_DASK_SCHEDULER)")
        from clustertop.control.dask import retire_worker

        r = retire_worker(self.settings.dask_scheduler, worker)
        return Outcome(r.ok, r.text)


    # -- asking (UI thread): dialogs first, then ``execute`` ------------------------------------------

    def confirm(self, title: str, body: Content, label: str, then: Callable[[], None],
                require: str | None = None) -> None:
        """Ask; ``then()`` only on an explicit yes. ``require``: text the operator must type first (the
        second confirmation of an action on data nothing vouches for)."""
        from clustertop.dashboard.dialogs.confirm import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmDialog(title, body, label, require=require), answered)

    def ask_signal(self, node: str, proc: schema.Proc | schema.GpuProc | None, sig: str) -> None:
        what = "terminate" if sig == "TERM" else "kill"
        if not self.allowed(f"{what} process"):
            return
        if proc is None:
            self.notify("no process selected", "warning")
            return
        if not self.settings.operator_key:
            self.notify(NO_KEY_HELP, "error", title="no operator key")
            return
        # The row only says which pid was pointed at. Who that process is comes from the node's own
        # snapshot, read now with its seal (a worker: Redis and ~66 µs of Ed25519 stay off the UI thread).
        pid = proc.pid

        def verify() -> None:
            try:
                ident = cc.process_identity(self.client(), node, pid, self.known())
            except Exception as e:  # noqa: BLE001 - the store: said, and nothing is signalled
                self._notify_from_thread(f"cannot read {node}'s snapshot to check pid {pid}: {describe(e)}",
                                         "error", "not signalled")
                return
            self.app.call_from_thread(self._confirm_signal, ident, sig)

        self.background(verify, f"verify {node} pid {pid}")

    def _confirm_signal(self, ident: cc.Identity, sig: str, pod_offered: bool = False) -> None:
        """The dialog for a kill, from the identity its node signed (or, unverified, with a second step).
        A process in a pod the Kubernetes payload knows: first the choice of deleting the pod instead (its
        controller or kubelet would restart a killed process's container anyway)."""
        from clustertop.read import owners

        self.app.trust.note(ident.node, ident.verdict, ident.snap is not None)
        problem = ident.problem()
        if problem is not None:
            self.notify(f"{problem}: not signalled", "error", title="not signalled")
            return
        proc = ident.proc
        assert proc is not None
        what = "terminate" if sig == "TERM" else "kill"
        state = self.app.view.state
        k8s = state.cluster.get("kubernetes") if state is not None else None
        pods = k8s.kubernetes.pods if k8s is not None and k8s.kubernetes is not None else None
        index = owners.pod_index(state.cluster) if state is not None else {}
        proc.owner = owners.named(proc.owner, index)  # the node knows the pod's uid only (read/owners.py)
        pod = owners.pod_of(proc.owner, index)
        if pod is not None and not pod_offered:
            self._offer_pod_delete(ident, sig, pod)
            return
        loss = kill_loss(proc, ident.snap, sig, pods)
        body = signal_body(ident, sig, loss)
        target = f"{ident.node} pid {ident.pid}"
        title = f"{what.capitalize()} pid {ident.pid} on {fmt.node_text(ident.node, 60)}?"
        if not ident.verified:
            title = f"UNVERIFIED: {title}"
        self.confirm(title, body, "Terminate" if sig == "TERM" else "Kill (SIGKILL)",
                     lambda: self.execute("signal", target, lambda: self.signal(ident, sig)),
                     require=None if ident.verified else str(ident.pid))

    def ask_pick_process(self, node: str, sig: str) -> None:
        """k / K on the node screen: choose one of the node's processes (top by CPU, then GPU ones)."""
        from clustertop.dashboard.dialogs.pick import PickDialog

        if not self.allowed("terminate process" if sig == "TERM" else "kill process"):
            return
        state = self.app.view.state
        nv = state.node(node) if state is not None else None
        if nv is not None and not state.plan.in_full(node):  # its screen just opened: the full read is on its way
            self.notify(f"{node}: reading its processes, try again in a moment", "warning")
            self.app.refresh_now()
            return
        procs = node_processes(state, node)
        if not procs:
            self.notify(f"{node}: no processes in its latest snapshot", "warning")
            return
        options = [(str(p.pid), Content.assemble((f"{p.pid:>8} ", "bold"), f"{fmt.node_text(p.user, 12):<12} ",
                                                  (f"{owner_words(p.owner)[:30]:<30} ", "dim"),
                                                  fmt.node_text(p.cmdline or p.name, 60))) for p in procs]
        by_pid = {str(p.pid): p for p in procs}

        def picked(pid: str | None) -> None:
            if pid is not None:
                self.ask_signal(node, by_pid.get(pid), sig)

        what = "terminate (TERM)" if sig == "TERM" else "kill (KILL)"
        self.app.push_screen(PickDialog(f"Which process on {fmt.node_text(node, 60)} to {what}?", options), picked)

    def _offer_pod_delete(self, ident: cc.Identity, sig: str, pod: schema.K8sPod) -> None:
        from clustertop.dashboard.dialogs.pick import PickDialog

        ns, name = pod.namespace, pod.name
        owner = f" (owned by {pod.owner_kind} {pod.owner}: it makes a new pod)" if pod.owner_kind else ""
        what = "Terminate" if sig == "TERM" else "Kill"
        options = [("pod", Content.assemble(("Delete pod ", "bold"), fmt.node_text(f"{ns}/{name}", 100),
                                            (fmt.node_text(owner, 120), "dim"))),
                   ("signal", Content.assemble((f"{what} pid {ident.pid} only", "bold"),
                                               (" (kubelet restarts the container per its restartPolicy)", "dim")))]

        def picked(choice: str | None) -> None:
            if choice == "pod":
                self.ask_delete("Pod", ns, name)
            elif choice == "signal":
                self._confirm_signal(ident, sig, pod_offered=True)

        self.app.push_screen(PickDialog(f"pid {ident.pid} runs in pod {fmt.node_text(ns, 60)}/{fmt.node_text(name, 80)}",
                                        options), picked)

    def ask_pick_container(self, node: str) -> None:
        """c on the node screen: choose one of the node's containers, then what to do with it."""
        from clustertop.dashboard.containers import ACTIONS, option_words
        from clustertop.dashboard.dialogs.pick import PickDialog

        if not self.allowed("container action"):
            return
        state = self.app.view.state
        nv = state.node(node) if state is not None else None
        if nv is not None and not state.plan.in_full(node):  # its screen just opened: the full read is on its way
            self.notify(f"{node}: reading its containers, try again in a moment", "warning")
            self.app.refresh_now()
            return
        snap = nv.snap if nv is not None else None
        listed = (snap.containers.containers if snap is not None and snap.containers is not None else None) or []
        if not listed:
            self.notify(f"{node}: no containers in its latest snapshot", "warning")
            return
        options = [(c.id, Content(option_words(c))) for c in listed]

        def picked(cid: str | None) -> None:
            if cid is None:
                return
            acts = [(a, Content(words)) for a, words in ACTIONS.items()]
            self.app.push_screen(PickDialog("What to do with the container?", acts),
                                 lambda a: self.ask_container(node, cid, a) if a else None)

        self.app.push_screen(PickDialog(f"Which container on {fmt.node_text(node, 60)}?", options), picked)

    def ask_container(self, node: str, cid: str, action: str) -> None:
        """Confirm a container action on the container as its node signed it, read afresh in a worker (as a kill)."""
        if not self.allowed(f"{action} container"):
            return
        if not self.settings.operator_key:
            self.notify(NO_KEY_HELP, "error", title="no operator key")
            return

        def verify() -> None:
            try:
                snap, verdict = trust.verified_snapshot(self.client(), node, self.known())
            except Exception as e:  # noqa: BLE001 - the store: said, and nothing is done
                self._notify_from_thread(f"cannot read {node}'s snapshot: {describe(e)}", "error", "not done")
                return
            found = [c for c in ((snap.containers.containers if snap and snap.containers else None) or [])
                     if c.id == cid]
            self.app.call_from_thread(self._confirm_container, node, found[0] if found else None, action, verdict)

        self.background(verify, f"verify {node} container {cid[:12]}")

    def _confirm_container(self, node: str, c: schema.Container | None, action: str, verdict: trust.Verdict) -> None:
        from clustertop.dashboard.containers import action_rows

        if c is None or c.created_ts is None:
            self.notify(f"the container is not in {node}'s latest snapshot (with its creation time): not done",
                        "error", title="not done")
            return
        rows = action_rows(node, c, action)
        if verdict.ok:
            head = Content.assemble(("— ", "$ct-ok"), (fmt.node_text(verdict.text, 200), "$ct-ok"))
        else:
            head = Content.assemble(("UNVERIFIED: ", "bold $ct-warn"), (fmt.node_text(verdict.text, 300), "$ct-warn"),
                                    (" Type the container's id (12 characters) to confirm anyway.", "$ct-warn"))
        title = f"{action.capitalize()} container {fmt.node_text(c.name, 60)} on {fmt.node_text(node, 60)}?"
        target = f"{node} container {fmt.node_text(c.id[:12])}"
        self.confirm(title if verdict.ok else f"UNVERIFIED: {title}", Content("\n").join([head, Content(""), fields(rows)]),
                     action.capitalize(),
                     lambda: self.execute(f"container.{action}", target, lambda: self.container(node, c, action)),
                     require=None if verdict.ok else c.id[:12])

    def ask_stop_task(self, node: str, task: schema.Task) -> None:
        if not self.allowed("stop task"):
            return
        if not self.settings.operator_key:
            self.notify(NO_KEY_HELP, "error", title="no operator key")
            return
        job = f" (job {task.job} rank {task.rank}: the other ranks keep running)" if task.job else ""
        body = fields([("node", node), ("task", task.id), ("template", task.template),
                       ("command", " ".join(task.argv or []) or fmt.NA),
                       ("loses", f"TERM to its process group, KILL after a grace period{job}")])
        self.confirm(f"Stop task {task.id} on {fmt.node_text(node, 60)}?", body, "Stop task",
                     lambda: self.execute("stop", f"{node} task {task.id}", lambda: self.stop_task(node, task.id)))

    def ask_delete(self, kind: str, namespace: str, name: str) -> None:
        """ctrl+d on a pod or a Job: the impact from the API server first, then the dialog."""
        key = "delete_pod" if kind == "Pod" else "delete_job"
        if not self.allowed(f"delete {kind.lower()}"):
            return
        if not self.k8s_may(key):
            self.notify(f"Kubernetes says you may not delete {kind.lower()}s here", "error")
            return

        def preview() -> None:
            try:
                ctl = self.k8s()
                imp = (ctl.preview_delete_pod if kind == "Pod" else ctl.preview_delete_job)(namespace, name)
            except Exception as e:  # noqa: BLE001
                self._notify_from_thread(f"cannot delete {namespace}/{name}: {describe(e)}", "error")
                return
            self.app.call_from_thread(self._confirm_delete, kind, namespace, name, imp.text())

        self.background(preview, f"preview delete {namespace}/{name}")

    def _confirm_delete(self, kind: str, namespace: str, name: str, impact: str) -> None:
        body = fields([("kind", kind), ("name", f"{namespace}/{name}"), ("impact", impact)])
        action = "k8s.delete_pod" if kind == "Pod" else "k8s.delete_job"
        fn = (lambda: self.delete_pod(namespace, name)) if kind == "Pod" else (lambda: self.delete_job(namespace, name))
        self.confirm(f"Delete {kind.lower()} {fmt.node_text(namespace, 60)}/{fmt.node_text(name, 80)}?", body,
                     f"Delete {kind.lower()}", lambda: self.execute(action, f"{namespace}/{name}", fn))

    def ask_logs(self, namespace: str, name: str) -> None:
        from clustertop.dashboard.dialogs.logs import LogsViewer

        if not self.allowed("pod logs"):
            return
        viewer = LogsViewer(f"logs of pod {fmt.node_text(namespace, 60)}/{fmt.node_text(name, 80)} (last 200 lines)")
        self.app.push_screen(viewer)

        def fetch() -> None:
            try:
                text = self.k8s().pod_logs(namespace, name)
            except Exception as e:  # noqa: BLE001 - no kubelet, no permission, API down: said in the viewer
                msg = str(e) if type(e).__name__ == "K8sControlError" else describe(e)
                self.app.call_from_thread(viewer.show_error, msg)
                return
            self.app.call_from_thread(viewer.show_text, text)

        self.background(fetch, f"logs {namespace}/{name}")

    def ask_scale(self, namespace: str, name: str, current: int | None) -> None:
        from clustertop.dashboard.dialogs.prompt import ScalePrompt

        if not self.allowed("scale"):
            return
        if not self.k8s_may("scale_deployment"):
            self.notify("Kubernetes says you may not scale deployments here", "error")
            return
        body = fields([("deployment", f"{namespace}/{name}"), ("replicas now", fmt.num(current))])

        def answered(n: int | None) -> None:
            if n is not None:
                self.execute("k8s.scale", f"{namespace}/{name} to {n}", lambda: self.scale(namespace, name, n))

        self.app.push_screen(ScalePrompt(f"Scale {fmt.node_text(namespace, 60)}/{fmt.node_text(name, 80)}", body,
                                         current), answered)

    def ask_revoke(self, worker: str, task: schema.WorkerTask, terminate: bool) -> None:
        if not self.allowed("revoke task"):
            return
        what = "revoke and terminate" if terminate else "revoke"
        loses = ("the running task is killed (SIGTERM to its pool process): its work so far is lost" if terminate
                 else "queued copies are dropped; a copy already running finishes")
        body = fields([("worker", worker), ("task", task.id), ("name", task.name or fmt.NA),
                       ("running", fmt.duration(task.runtime_s)), ("args", task.args or fmt.NA), ("loses", loses)])
        self.confirm(f"{what.capitalize()} task {fmt.node_text(task.id, 60)}?", body,
                     "Terminate" if terminate else "Revoke",
                     lambda: self.execute("celery.terminate" if terminate else "celery.revoke", f"{worker} {task.id}",
                                          lambda: self.revoke(task.id, terminate)))

    def ask_retry(self, task: schema.CeleryTask) -> None:
        """ctrl+r on an ended task of the history: its name, args, kwargs and queue are read from the result
        backend (a worker, off the UI thread), shown in full and escaped, and sent again only on a yes."""
        if not self.allowed("retry task"):
            return
        tid = task.id

        def plan() -> None:
            try:
                got = self.celery().retry_plan(tid)
            except Exception as e:  # noqa: BLE001 - no broker configured, the demo's refusal: said, not raised
                got = e
            self.app.call_from_thread(shown, got)

        def shown(got: Any) -> None:
            from clustertop.control.celery import RetryPlan

            if not isinstance(got, RetryPlan):
                # Refused before anything was sent (no backend, no extended result, truncated args only):
                # audited like an action that failed, so the trail says it was tried.
                text = str(got) if isinstance(got, Exception) else got.text
                self.execute("celery.retry", tid, lambda: Outcome(False, f"refused: {text}"))
                return
            import json

            def full(v: Any) -> str:
                try:
                    return json.dumps(v, ensure_ascii=False, default=repr)
                except (TypeError, ValueError):
                    return repr(v)

            head = fields([("task", tid), ("name", got.name), ("queue", got.queue or "(default routing)"),
                           ("state", got.state or fmt.NA),
                           ("sends", "a new task with these arguments, by your broker credentials"),
                           ("source", "the result backend: whoever can write it chose these")])
            # The arguments in full (the body scrolls), escaped: nothing from the backend reaches the terminal raw.
            body = Content("\n").join([head, Content.assemble(("args", "bold")),
                                       Content(fmt.node_text(full(got.args), 1_000_000)),
                                       Content.assemble(("kwargs", "bold")),
                                       Content(fmt.node_text(full(got.kwargs), 1_000_000))])
            self.confirm(f"Retry {fmt.node_text(got.name, 60)} {fmt.node_text(tid, 40)}?", body, "Retry",
                         lambda: self.execute("celery.retry", f"{got.name} {tid}", lambda: self.retry(got)))

        self.background(plan, f"retry {tid}")

    def ask_pool(self, worker: str, delta: int, size: int | None) -> None:
        if not self.allowed("pool resize"):
            return
        # Growing or shrinking by one is cheap to undo: no dialog, but audited like everything else.
        self.execute("celery.pool_grow" if delta > 0 else "celery.pool_shrink",
                     f"{worker} (pool {fmt.num(size)})", lambda: self.pool(worker, delta))

    def ask_retire(self, worker: str, processing: int | None) -> None:
        if not self.allowed("retire worker"):
            return
        body = fields([("worker", worker), ("processing", fmt.num(processing)),
                       ("loses", "its data moves to the other workers, then it closes; "
                                 "tasks it is processing are rescheduled")])
        self.confirm(f"Retire Dask worker {fmt.node_text(worker, 60)}?", body, "Retire",
                     lambda: self.execute("dask.retire", worker, lambda: self.retire(worker)))

    def ask_launch(self) -> None:
        from clustertop.dashboard.dialogs.launcher import LauncherDialog

        if not self.allowed("launch"):
            return
        choices, notes = node_choices(self.app.view.state), []
        if not self.settings.operator_key:
            notes.append("no operator key: node templates cannot be launched (" + NO_KEY_HELP + ")")
        directory = self.settings.k8s_templates

        def collect() -> None:
            more, errs = k8s_choices(directory) if directory else ([], [])
            self.app.call_from_thread(lambda: self.app.push_screen(
                LauncherDialog(choices + more, notes + errs), self._launch_requested))

        self.background(collect, "launcher templates")

    def _launch_requested(self, req: Any) -> None:
        if req is None:
            return
        c = req.choice
        if c.kind == "ctr":
            if not self.settings.operator_key:
                self.notify(NO_KEY_HELP, "error", title="no operator key")
                return
            body = fields([("container template", c.name), ("nodes", ", ".join(req.nodes) + " (one container on each)"),
                           ("params", ", ".join(f"{k}={v}" for k, v in req.params.items()) or "defaults")])
            cmds = lambda: [cc.build(n, "container.launch", {"template": c.name}, dict(req.params),  # noqa: E731
                                     operator=self.operator()) for n in req.nodes]
            self.confirm(f"Launch container {fmt.node_text(c.name, 60)}?", body, "Launch",
                         lambda: self.execute("container.launch", f"{c.name} on {','.join(req.nodes)}",
                                              lambda: self._answers(cmds())))
            return
        if c.kind == "node":
            if not self.settings.operator_key:
                self.notify(NO_KEY_HELP, "error", title="no operator key")
                return
            job = "one job, ranks in this order" if len(req.nodes) > 1 else "one task"
            body = fields([("template", c.name), ("nodes", ", ".join(req.nodes) + f" ({job})"),
                           ("params", ", ".join(f"{k}={v}" for k, v in req.params.items()) or "defaults")])
            self.confirm(f"Launch {fmt.node_text(c.name, 60)}?", body, "Launch",
                         lambda: self.execute("launch", f"{c.name} on {','.join(req.nodes)}",
                                              lambda: self.launch(c.name, req.nodes, req.params)))
            return

        def dry_run() -> None:
            from clustertop.control.kubernetes import parse_param_text

            try:
                params = {k: parse_param_text(v) for k, v in req.params.items()}
                plan = self.k8s().prepare_job(c.path, params)
            except Exception as e:  # noqa: BLE001
                msg = str(e) if "K8sControlError" in type(e).__name__ or "TemplateError" in type(e).__name__ else \
                    describe(e)
                self._notify_from_thread(f"dry run refused: {msg}", "error", "launch")
                return
            self.app.call_from_thread(self._confirm_job, plan)

        self.background(dry_run, f"dry run {c.name}")

    def _confirm_job(self, plan: Any) -> None:
        spec = (plan.preview.get("spec") or {}).get("template", {}).get("spec", {})
        containers = spec.get("containers") or []
        images = ", ".join(str(c.get("image")) for c in containers) or fmt.NA
        gpus = sum(_gpu_limit(c) for c in containers)
        body = fields([("job", f"{plan.namespace}/{plan.name}"), ("dry run", "accepted by the API server"),
                       ("images", images), ("GPUs", str(gpus)),
                       ("params", ", ".join(f"{k}={v}" for k, v in plan.params.items()) or "none")])
        self.confirm(f"Create job {fmt.node_text(plan.namespace, 60)}/{fmt.node_text(plan.name, 80)}?", body,
                     "Create job", lambda: self.execute("k8s.create_job", f"{plan.namespace}/{plan.name}",
                                                        lambda: self.create_job(plan)))


def _gpu_limit(container: dict[str, Any]) -> int:
    value = str(((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
    return int(value) if value.isdigit() else 0


def node_processes(state: Any, node: str) -> list[schema.Proc | schema.GpuProc]:
    """A node's processes as its snapshot shows them: top ones by CPU, then GPU ones not among them."""
    v = state.node(node) if state is not None else None
    snap = v.snap if v is not None else None
    if snap is None:
        return []
    out: list[schema.Proc | schema.GpuProc] = sorted((snap.system.procs if snap.system else None) or [],
                                                     key=lambda p: -(p.cpu_pct or 0))
    seen = {p.pid for p in out}
    for g in snap.gpus or ():
        for gp in g.procs or ():
            if gp.pid not in seen:
                seen.add(gp.pid)
                out.append(gp)
    return out


def node_choices(state: Any) -> list[Any]:
    """Launcher entries from the agents' snapshots: one per template name, with the nodes offering it."""
    from clustertop.dashboard.dialogs.launcher import Choice

    out: dict[str, Choice] = {}
    for v in state.nodes if state is not None else ():
        if v.state != "up" or v.snap is None:
            continue
        for t in v.snap.templates or ():
            c = out.setdefault(t.name, Choice("node", t.name, t.description, dict(t.params)))
            c.nodes.append(v.host)
        for t in (v.snap.containers.templates if v.snap.containers is not None else None) or ():
            c = out.setdefault(f"ctr:{t.name}", Choice("ctr", t.name, t.description, dict(t.params)))
            c.nodes.append(v.host)
    return [out[k] for k in sorted(out)]


def k8s_choices(directory: str) -> tuple[list[Any], list[str]]:
    """Job templates (*.yaml, *.yml) in ``directory`` with their placeholders; unreadable ones as notes."""
    from clustertop.control.kubernetes import load_template, placeholders
    from clustertop.dashboard.dialogs.launcher import Choice

    out, errs = [], []
    try:
        names = sorted(n for n in os.listdir(os.path.expanduser(directory)) if n.endswith((".yaml", ".yml")))
    except OSError as e:
        return [], [f"Job templates {directory}: {e.strerror}"]
    for n in names:
        path = os.path.join(os.path.expanduser(directory), n)
        try:
            tpl = load_template(path)
        except Exception as e:  # noqa: BLE001 - one bad file is listed, the rest still offered
            errs.append(str(e))
            continue
        out.append(Choice("k8s", n.rsplit(".", 1)[0], f"Kubernetes Job ({n})",
                          {p: "text" for p in sorted(placeholders(tpl))}, path=path))
    return out, errs


def actions_of(app: Any) -> Actions:
    """The app's Actions, made on first use (tests build apps without any job control)."""
    acts = app.__dict__.get("_ct_actions")
    if acts is None:
        acts = app.__dict__["_ct_actions"] = Actions(app)
    return acts  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# What a kill loses, in words (pure: tested without an app)
# ---------------------------------------------------------------------------------------------


def kill_loss(proc: schema.Proc | schema.GpuProc, snap: schema.NodeSnapshot | None, sig: str,
              pods: list[schema.K8sPod] | None = None) -> str:
    """What terminating (TERM) or killing (KILL) ``proc`` costs, from what the snapshot says about it."""
    o = proc.owner
    parts: list[str] = []
    task = _task_of(proc.pid, snap)
    if task is not None:
        job = f" (job {task.job}, rank {task.rank}: the other ranks may stall or fail)" if task.job else ""
        parts.append(f"task {task.id} from template {task.template}{job}: its output so far stays in the log")
    if o is not None and o.kind == "pod":
        pod = f"{o.namespace}/{o.name}" if o.namespace else (o.name or "?")
        what = "training job" if _gpu_of(proc.pid, snap) is not None else "container process"
        parts.append(f"{what} in pod {pod}: unsaved progress since the last checkpoint")
        k = next((p for p in pods or () if p.name == o.name and p.namespace == o.namespace), None)
        if k is not None and k.owner_kind:
            parts.append(f"the pod is owned by {k.owner_kind} {k.owner}; the container restarts per its restartPolicy")
    elif o is not None and o.kind == "celery":
        parts.append(f"Celery worker {o.name or ''}: the tasks it runs now are lost (or retried with acks_late)")
    elif o is not None and o.kind == "container":
        parts.append("a container's process: the container may exit with it")
    elif task is None:
        parts.append(f"work of user {proc.user or 'N/A'}: anything it has not saved")
    gpu = _gpu_of(proc.pid, snap)
    if gpu is not None:
        idx, mem = gpu
        parts.append(f"frees {fmt.bytes_(mem)} of VRAM on GPU {idx}")
    parts.append("TERM lets it clean up (save a checkpoint if it handles SIGTERM)" if sig == "TERM"
                 else "KILL gives it no chance to clean up or save")
    return "; ".join(parts)


def _task_of(pid: int, snap: schema.NodeSnapshot | None) -> schema.Task | None:
    for t in (snap.tasks if snap else None) or ():
        if t.state == "running" and pid in (t.pid, t.pgid):
            return t
    return None


def _gpu_of(pid: int, snap: schema.NodeSnapshot | None) -> tuple[int, int | None] | None:
    for g in (snap.gpus if snap else None) or ():
        for p in g.procs or ():
            if p.pid == pid:
                return g.index, p.used_mem_bytes
    return None


def owner_words(o: schema.Owner | None) -> str:
    if o is None:
        return fmt.NA
    ns = f"{o.namespace}/" if o.namespace else ""
    return f"{o.kind} {ns}{o.name or ''}".strip()


def signal_body(ident: cc.Identity, sig: str, loss: str) -> Content:
    """The confirm dialog's text. First the process as its node's snapshot names it ("gpu01 pid 4242 sleep
    60, user alice (uid 1001), started … (tick …)") and whose key vouches for that ("— signed by gpu01's
    enrolled key SHA256:…"), or, in the warning colour, that nothing does and why; then its owner, the
    signal and what the signal loses."""
    proc = ident.proc
    assert proc is not None
    who = fmt.node_text(ident.words(), 400)
    if ident.verified:
        head = Content("\n").join([Content.assemble((who, "bold")),
                                   Content.assemble(("— ", "$ct-ok"), (fmt.node_text(ident.verdict.text, 200), "$ct-ok"))])
    else:
        head = Content("\n").join([
            Content.assemble(("UNVERIFIED: ", "bold $ct-warn"), (fmt.node_text(ident.verdict.text, 300), "$ct-warn")),
            Content.assemble(("What Redis claims, and nothing proves the node said: ", "$ct-warn"), (who, "bold")),
            Content.assemble(("Anyone who can write to Redis could have written it. Type the pid to confirm anyway.",
                              "$ct-warn"))])
    rows = [("owner", owner_words(proc.owner)), ("signal", "SIGTERM (terminate)" if sig == "TERM" else "SIGKILL (kill)"),
            ("loses", loss)]
    return Content("\n").join([head, Content(""), fields(rows)])


def fields(rows: list[tuple[str, str]]) -> Content:
    """Label/value lines; values are node text, shown literally (never parsed as markup)."""
    width = max(len(k) for k, _ in rows)
    return Content("\n").join([Content.assemble((f"{k:>{width}}  ", "bold"), fmt.node_text(v, 400))
                               for k, v in rows])
