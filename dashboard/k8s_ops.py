"""Provides the Work screen's Kubernetes depth keys: logs that follow (``l``), describe (``i``), rollout history (``H``),
rollout undo (``u``) and rollout restart (``R``) of the selected pod, Job or Deployment; cordon or
uncordon (``C``) and drain (``D``) of the Kubernetes node on the selected GPU-ledger row.

Reads (describe with events, history) open a viewer, fetched in a worker; text from the API server is
made inert (``wire.text.inert``) before it is shown. Changes ask Kubernetes ``can_i`` first, show what
will happen (the undo's target revision, its change-cause and the images before and after; the drain's
evict / ignore / refuse list with PodDisruptionBudgets), ask in a confirm dialog, then run through
``Actions.execute``: read-only re-checked, audited (``k8s.rollout_undo``, ``k8s.rollout_restart``,
``k8s.cordon``, ``k8s.uncordon``, ``k8s.drain``), the outcome notified. The actions themselves are
clustertop/control/k8s_rollout.py, k8s_nodes.py and k8s_describe.py, the same ones ``clustertop k8s`` uses.
"""

from __future__ import annotations

import time
from typing import Any

from clustertop.dashboard import fmt
from clustertop.dashboard.actions import Actions, Outcome, fields
from clustertop.errors import describe as describe_error
from clustertop.wire.text import inert


def _name(namespace: str, name: str) -> str:
    return f"{fmt.node_text(namespace, 60)}/{fmt.node_text(name, 80)}"


def _error(e: Exception) -> str:
    return str(e) if type(e).__name__ in ("K8sControlError", "TemplateError") else describe_error(e)


def _viewer(acts: Actions, title: str, fetch: Any, what: str) -> Any:
    """A LogsViewer filled by ``fetch()`` (lines) in a worker; errors shown in it."""
    from clustertop.dashboard.dialogs.logs import LogsViewer

    viewer = LogsViewer(title)
    acts.app.push_screen(viewer)

    def run() -> None:
        try:
            lines = fetch()
        except Exception as e:  # noqa: BLE001 - no permission, API down, gone: said in the viewer
            acts.app.call_from_thread(viewer.show_error, inert(_error(e), limit=500))
            return
        acts.app.call_from_thread(viewer.show_text, inert("\n".join(lines), lines=True))

    acts.background(run, what)
    return viewer


def ask_previous_logs(acts: Actions, namespace: str, name: str, container: str | None) -> None:
    """p in a pod's log: the log its container's previous instance wrote before the last restart
    (``kubectl logs --previous``), fixed text in a viewer over the following one. A read: no audit."""
    from clustertop.dashboard.dialogs.logs import RING

    what = f"logs of pod {_name(namespace, name)}" + (f", container {fmt.node_text(container, 60)}" if container else "")
    _viewer(acts, f"{what}, previous instance (before its last restart)",
            lambda: acts.k8s().pod_logs(namespace, name, container=container, tail_lines=RING,
                                        previous=True).splitlines(), f"previous {what}")


def ask_logs(acts: Actions, namespace: str, name: str) -> None:
    """l on a pod: its log, following (control/k8s_logs.py), in a LogsViewer; a pod with several
    containers asks which one first. A read: can_i (get pods/log) decided whether ``l`` shows; no audit."""
    from clustertop.control.k8s_logs import LogFollower, containers
    from clustertop.dashboard.dialogs.logs import LogsViewer

    if not acts.allowed("pod logs"):
        return
    if acts._demo() is not None:  # the simulated cluster writes no logs: its own words, through the tail path
        acts.ask_logs(namespace, name)
        return
    viewer = LogsViewer(f"logs of pod {_name(namespace, name)}")
    acts.app.push_screen(viewer)

    def attach(container: str | None) -> None:
        if viewer not in acts.app.screen_stack:
            return  # closed before the stream could start: none is opened
        if container:
            viewer.set_title(f"logs of pod {_name(namespace, name)}, container {fmt.node_text(container, 60)}")
        viewer.previous = lambda: ask_previous_logs(acts, namespace, name, container)
        try:
            viewer.follow(LogFollower(acts.k8s(), namespace, name, container=container).start())
        except Exception as e:  # noqa: BLE001 - a name the API would refuse: said in the viewer
            viewer.show_error(inert(_error(e), limit=500))

    def pick(names: list[str]) -> None:
        from textual.content import Content

        from clustertop.dashboard.dialogs.pick import PickDialog

        def chosen(c: str | None) -> None:
            if c is None:
                viewer.dismiss(None)
            else:
                attach(c)

        acts.app.push_screen(PickDialog(f"container of pod {_name(namespace, name)}",
                                        [(c, Content(inert(c, limit=100))) for c in names]), chosen)

    def prepare() -> None:
        try:
            names = containers(acts.k8s(), namespace, name)
        except Exception as e:  # noqa: BLE001 - no permission, API down, gone: said in the viewer
            acts.app.call_from_thread(viewer.show_error, inert(_error(e), limit=500))
            return
        if len(names) > 1:
            acts.app.call_from_thread(pick, names)
        else:
            acts.app.call_from_thread(attach, names[0] if names else None)

    acts.background(prepare, f"logs {namespace}/{name}")


def ask_describe(acts: Actions, kind: str, namespace: str, name: str) -> None:
    from clustertop.control import k8s_describe as kd

    def fetch() -> list[str]:
        ctl = acts.k8s()
        return kd.describe(ctl, kind, namespace, name, with_events=ctl.can_i("list", "events", namespace))

    _viewer(acts, f"describe {kind.lower()} {_name(namespace, name)}", fetch, f"describe {namespace}/{name}")


def ask_history(acts: Actions, namespace: str, name: str) -> None:
    from clustertop.control import k8s_rollout as ro

    def fetch() -> list[str]:
        revs = ro.rollout_history(acts.k8s(), namespace, name)
        status = ro.rollout_status(acts.k8s(), namespace, name)
        return [f"status: {status.text}", f"{len(revs)} revision(s), newest last:", *[r.text() for r in revs]]

    _viewer(acts, f"rollout history of deployment {_name(namespace, name)}", fetch, f"history {namespace}/{name}")


def _may_patch(acts: Actions, namespace: str, what: str) -> bool:
    """In a worker: can_i first; a refusal is notified."""
    if acts.k8s().can_i("patch", "deployments", namespace):
        return True
    acts._notify_from_thread(f"Kubernetes says you may not {what} deployments in {namespace}", "error")
    return False


def ask_undo(acts: Actions, namespace: str, name: str) -> None:
    """u: the plan from the API server first (which revision, which images), then the dialog."""
    from clustertop.control import k8s_rollout as ro

    if not acts.allowed("rollout undo") or not acts.k8s_may("rollout"):
        if acts.allowed("rollout undo"):
            acts.notify("Kubernetes says you may not change deployments here", "error")
        return

    def plan() -> None:
        try:
            if not _may_patch(acts, namespace, "undo"):
                return
            p = ro.plan_undo(acts.k8s(), namespace, name)
        except Exception as e:  # noqa: BLE001
            acts._notify_from_thread(f"cannot undo {namespace}/{name}: {_error(e)}", "error")
            return
        acts.app.call_from_thread(_confirm_undo, acts, p)

    acts.background(plan, f"plan undo {namespace}/{name}")


def _confirm_undo(acts: Actions, p: Any) -> None:
    cur = "N/A" if p.current is None else str(p.current)
    body = fields([("deployment", f"{p.namespace}/{p.name}"), ("revision now", cur),
                   ("back to", f"revision {p.target.number}: {p.target.change_cause or '<no change-cause>'}"),
                   ("images now", ", ".join(p.images_before) or fmt.NA),
                   ("images then", ", ".join(p.target.images) or fmt.NA),
                   ("impact", "every pod is replaced in a rolling update; the result is a new revision")])
    target = f"{p.namespace}/{p.name} to revision {p.target.number}"

    def run() -> Outcome:
        from clustertop.control import k8s_rollout as ro

        ro.undo(acts.k8s(), p)
        return Outcome(True, f"rolled back deployment {p.namespace}/{p.name} to the template of revision "
                             f"{p.target.number}")

    acts.confirm(f"Undo deployment {_name(p.namespace, p.name)} to revision {p.target.number}?", body, "Undo",
                 lambda: acts.execute("k8s.rollout_undo", target, run))


def ask_restart(acts: Actions, namespace: str, name: str, replicas: int | None) -> None:
    """R: can_i first (in a worker), then the dialog."""
    if not acts.allowed("rollout restart") or not acts.k8s_may("rollout"):
        if acts.allowed("rollout restart"):
            acts.notify("Kubernetes says you may not change deployments here", "error")
        return

    def check() -> None:
        try:
            if not _may_patch(acts, namespace, "restart"):
                return
        except Exception as e:  # noqa: BLE001
            acts._notify_from_thread(f"cannot restart {namespace}/{name}: {_error(e)}", "error")
            return
        acts.app.call_from_thread(_confirm_restart, acts, namespace, name, replicas)

    acts.background(check, f"can-i restart {namespace}/{name}")


def _confirm_restart(acts: Actions, namespace: str, name: str, replicas: int | None) -> None:
    from clustertop.control import k8s_rollout as ro

    body = fields([("deployment", f"{namespace}/{name}"), ("replicas", fmt.num(replicas)),
                   ("impact", "every pod is replaced in a rolling update (new pods, new names); the result is a "
                              "new revision")])

    def run() -> Outcome:
        stamp = ro.restart(acts.k8s(), namespace, name)
        return Outcome(True, f"restarted deployment {namespace}/{name} at {stamp}")

    acts.confirm(f"Restart deployment {_name(namespace, name)}?", body, "Restart",
                 lambda: acts.execute("k8s.rollout_restart", f"{namespace}/{name}", run))


# -- nodes: cordon / uncordon (C) and drain (D) on a GPU-ledger row of a Kubernetes node ------------


def _may_nodes(acts: Actions, what: str, evict: bool = False) -> bool:
    """In a worker: can_i (patch nodes; for a drain also create pods/eviction) first; a refusal is notified."""
    ctl = acts.k8s()
    if ctl.can_i("patch", "nodes") and (not evict or ctl.can_i("create", "pods/eviction")):
        return True
    acts._notify_from_thread(f"Kubernetes says you may not {what} nodes", "error")
    return False


def ask_cordon(acts: Actions, node: str, cordon: bool) -> None:
    """C: cordon a schedulable node, uncordon a cordoned one (as the ledger row shows it); can_i, then ask."""
    from clustertop.control import k8s_nodes as kn

    what = "cordon" if cordon else "uncordon"
    if not acts.allowed(what):
        return

    def check() -> None:
        try:
            if not _may_nodes(acts, what):
                return
        except Exception as e:  # noqa: BLE001
            acts._notify_from_thread(f"cannot {what} {node}: {_error(e)}", "error")
            return
        acts.app.call_from_thread(confirm)

    def confirm() -> None:
        impact = ("no new pod is scheduled on it; its running pods stay" if cordon
                  else "the scheduler may place pods on it again")
        body = fields([("node", node), ("impact", impact)])

        def run() -> Outcome:
            before = kn.set_unschedulable(acts.k8s(), node, cordon)
            return Outcome(True, f"{what}ed node {node} ({'was' if before else 'was not'} cordoned before)")

        acts.confirm(f"{what.capitalize()} node {fmt.node_text(node, 80)}?", body, what.capitalize(),
                     lambda: acts.execute(f"k8s.{what}", node, run))

    acts.background(check, f"can-i {what} {node}")


def ask_drain(acts: Actions, node: str) -> None:
    """D: what would be evicted, ignored and refused (with the PodDisruptionBudgets) first, then the dialog."""
    from clustertop.control import k8s_nodes as kn

    if not acts.allowed("drain") or not acts.k8s_may("nodes"):
        if acts.allowed("drain"):
            acts.notify("Kubernetes says you may not change nodes", "error")
        return

    def plan() -> None:
        try:
            if not _may_nodes(acts, "drain", evict=True):
                return
            p = kn.plan_drain(acts.k8s(), node)
        except Exception as e:  # noqa: BLE001
            acts._notify_from_thread(f"cannot drain {node}: {_error(e)}", "error")
            return
        acts.app.call_from_thread(ceph_first, p)

    def ceph_first(p: Any) -> None:
        # A node that carries Ceph OSDs without noout set: said, and noout offered first (dashboard/ceph_ops.py).
        from clustertop.dashboard.ceph_ops import offer_noout

        state = acts.app.view.state
        offer_noout(acts, state.cluster.get("ceph") if state is not None else None, node, lambda note: confirm(p, note))

    def confirm(p: Any, ceph_note: str | None = None) -> None:
        from textual.content import Content

        lines = p.lines()
        shown = lines[1:41] + ([f"… and {len(lines) - 41} more"] if len(lines) > 41 else [])
        body = Content("\n").join([
            fields([("node", node), ("plan", lines[0]),
                    ("impact", "evicted pods are recreated elsewhere by their controllers; a pod whose "
                               "PodDisruptionBudget allows no disruption is refused and stays; the drain then "
                               f"waits up to {acts.settings.drain_timeout_s:g} s for the evicted pods to go "
                               "([dashboard] drain_timeout)")]),
            *[Content(inert(line, limit=300)) for line in shown]])
        if ceph_note:  # first, where it cannot scroll out of sight: what the drain means for Ceph
            body = Content("\n").join([fields([("ceph", ceph_note)]), body])

        def run() -> Outcome:
            results = kn.drain(acts.k8s(), p)
            bad = [r for r in results if not r.ok]
            text = (f"drained node {node}: {len(results) - len(bad)} evicted, {len(bad)} not evicted, "
                    f"{len(p.refused)} refused, {len(p.ignored)} ignored")
            if bad:
                text += "; not evicted: " + "; ".join(f"{r.namespace}/{r.name}: {r.text}" for r in bad[:5])
            # Then wait (bounded) for the evicted pods to leave the node, saying how many are gone (at most
            # every 5 s: a node of 100 pods is not 100 toasts).
            evicted = kn.evicted_pods(p, results)
            said = [0.0]

            def progress(gone: int, total: int) -> None:
                if gone == total or time.monotonic() - said[0] >= 5.0:
                    said[0] = time.monotonic()
                    acts._notify_from_thread(f"{gone} of {total} pod(s) gone", title=f"drain {node}")

            try:
                waited = kn.wait_gone(acts.k8s(), node, evicted, acts.settings.drain_timeout_s, progress=progress,
                                      stop=lambda: not acts.app.is_running) if evicted else None
            except Exception as e:  # noqa: BLE001 - the evictions happened: say them, and that the wait failed
                return Outcome(False, f"{text}; could not watch the pods go: {_error(e)}")
            if waited is not None:
                text += f"; {waited.text()}"
            return Outcome(not bad and not p.refused and not (waited and waited.left), text)

        acts.confirm(f"Drain node {fmt.node_text(node, 80)}: evict {len(p.evict)} pod(s)?", body, "Drain",
                     lambda: acts.execute("k8s.drain", node, run))

    acts.background(plan, f"plan drain {node}")
