"""Provides the Work screen: queues, workers, pods, workloads, the GPU ledger and launched tasks.

One tab per kind of work, each a LiveTable fed whole rows (only changed cells are written); only
the visible tab is synced on a refresh, the one-line summary above the tabs always. The keys act
on the selected row of the visible tab, through dashboard/actions.py (which re-checks read-only
mode, audits, and runs the blocking call in a worker); a key that does not fit the row (scale on
a Job, logs on a queue) or that Kubernetes refused (can_i, asked once) is hidden from the footer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Input, Static, TabbedContent, TabPane

from clustertop.dashboard import fmt, k8s_scope
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.pack import FactLines
from clustertop.dashboard.widgets.table import LiveTable, SortCell, num_cell, text_cell
from clustertop.read.ledger import Ledger, LedgerRow, LedgerTracker, update_from_state
from clustertop.read.plan import Level
from clustertop.read.reader import ClusterState
from clustertop.wire import schema
from clustertop.wire.text import inert

SEP = "\x1f"  # in row keys: no host, pod or queue name contains it
PANES = ["queues", "workers", "pods", "workloads", "ledger", "tasks", "history"]
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "queues": [("broker", "broker"), ("name", "queue"), ("kind", "kind"), ("depth", "depth"), ("ready", "ready"),
               ("unacked", "unacked"), ("consumers", "consumers"), ("in", "in/s"), ("out", "out/s"), ("flag", "flag")],
    "workers": [("kind", "kind"), ("name", "worker / task"), ("host", "host"), ("online", "online"),
                ("pool", "pool"), ("active", "active"), ("runtime", "runtime"), ("mem", "memory")],
    "pods": [("ns", "namespace"), ("name", "name"), ("node", "node"), ("phase", "phase"), ("restarts", "restarts"),
             ("gpus", "GPUs"), ("age", "age"), ("owner", "owner")],
    "workloads": [("kind", "kind"), ("ns", "namespace"), ("name", "name"), ("replicas", "replicas"),
                  ("ready", "ready"), ("active", "active"), ("succeeded", "succeeded"), ("failed", "failed")],
    "ledger": [("node", "node"), ("capacity", "capacity"), ("allocatable", "allocatable"),
               ("allocated", "allocated"), ("seen", "agent GPUs"), ("busy", "busy"), ("idle", "idle-allocated"),
               ("unowned", "unowned-busy"), ("note", "note")],
    "tasks": [("group", "job / task"), ("node", "node"), ("template", "template"), ("state", "state"),
              ("runtime", "runtime"), ("rank", "rank"), ("pid", "pid"), ("exit", "exit"), ("note", "note")],
    "history": [("name", "task name / id"), ("state", "state"), ("worker", "worker"), ("ok", "ok"),
                ("failed", "failed"), ("retried", "retried"), ("revoked", "revoked"), ("p50", "p50"),
                ("p95", "p95 / runtime"), ("detail", "args / error")],
}
#: Per pane, the columns folded away first in a narrow terminal (the flags and notes stay).
FOLD: dict[str, tuple[str, ...]] = {
    "queues": ("kind", "out", "in", "ready", "broker"), "workers": ("mem", "online", "host"),
    "pods": ("owner", "age", "restarts"), "workloads": ("succeeded", "active"),
    "ledger": ("allocatable", "seen"), "tasks": ("rank", "exit", "pid"),
    "history": ("revoked", "retried", "p50", "worker"),
}
TITLES = {"queues": "Queues", "workers": "Workers", "pods": "Pods", "workloads": "Workloads",
          "ledger": "GPU ledger", "tasks": "Tasks", "history": "Task history"}
#: Dask task states that count as done (``memory``: computed, result held; ``forgotten``: computed and
#: dropped). ``released`` is not: it holds tasks not yet run as well as results let go.
DASK_DONE = ("memory", "forgotten")
#: The Kubernetes depth keys (dashboard/k8s_ops.py) and which rows they fit (``_k8s_depth_applies``).
K8S_DEPTH = ("k8s_describe", "k8s_history", "k8s_undo", "k8s_restart", "k8s_cordon", "k8s_drain")


def _k8s_depth_applies(action: str, pane: str, obj: Any, acts: Any) -> bool:
    """describe: a pod, or a Deployment / Job row; history, undo, restart: a Deployment row (undo and
    restart hidden when Kubernetes said no to patching deployments); cordon, drain: a GPU-ledger row of a
    Kubernetes node (hidden when Kubernetes said no to patching nodes)."""
    if action in ("k8s_cordon", "k8s_drain"):
        return pane == "ledger" and isinstance(obj, LedgerRow) and obj.in_kubernetes and acts.k8s_may("nodes")
    if pane == "pods":
        return action == "k8s_describe" and isinstance(obj, schema.K8sPod)
    if pane != "workloads" or not isinstance(obj, schema.K8sWorkload):
        return False
    if action == "k8s_describe":
        return obj.kind in ("Deployment", "Job")
    if obj.kind != "Deployment":
        return False
    return action == "k8s_history" or acts.k8s_may("rollout")


#: Celery task states a revoke still acts on (an ended task has nothing left to stop).
REVOCABLE = {"PENDING", "RECEIVED", "STARTED", "RETRY"}


def _n(v: float | None, digits: int = 0) -> SortCell:
    return num_cell(fmt.num(v, digits), v)


def _since(now: float, ts: float | None) -> float | None:
    # A NaN or absurd timestamp from a node is no time at all: unknown, not "0s" (max(0.0, nan) is 0.0).
    return None if fmt.known(ts) is None else max(0.0, now - ts)  # type: ignore[operator]


def _runtime(s: float | None) -> str:
    """Runtimes: "42s" under a minute, "5m", "2h 3m" from there (fmt.duration); NaN, negative: N/A."""
    if fmt.known(s, 0) is None:
        return fmt.NA
    assert s is not None
    return fmt.duration(s) if s >= 60 else f"{s:.0f}s"


# ---------------------------------------------------------------------------------------------
# Rows (pure: a state in, key -> cells out)
# ---------------------------------------------------------------------------------------------


def queues_of(state: ClusterState) -> schema.Queues:
    """Every queue payload (celery, dask) merged: queues and workers from all sources."""
    out = schema.Queues(queues=None, workers=None)
    for name in sorted(state.cluster):
        q = state.cluster[name].queues
        if q is None:
            continue
        if q.queues is not None:
            out.queues = (out.queues or []) + q.queues
        if q.workers is not None:
            out.workers = (out.workers or []) + q.workers
        if q.task_history is not None:
            out.task_history = (out.task_history or []) + q.task_history
        if q.dask_computations is not None:
            out.dask_computations = (out.dask_computations or []) + q.dask_computations
        if q.dask_task_stream is not None:
            out.dask_task_stream = (out.dask_task_stream or []) + q.dask_task_stream
        if q.dask_stream is not None:  # the folded stream (widgets/taskstream.bucket_lines): one window for all
            out.dask_stream = (out.dask_stream or []) + q.dask_stream
            out.dask_stream_bucket_s = max(out.dask_stream_bucket_s or 0.0, q.dask_stream_bucket_s or 0.0) or None
            froms = [x for x in (out.dask_stream_from_ts, q.dask_stream_from_ts) if x is not None]
            out.dask_stream_from_ts = min(froms) if froms else None
            out.dask_stream_to_ts = max(out.dask_stream_to_ts or 0.0, q.dask_stream_to_ts or 0.0) or None
            out.dask_stream_other_workers = (out.dask_stream_other_workers or 0) + (q.dask_stream_other_workers or 0)
    return out


def queue_rows(queues: list[schema.Queue] | None, crit: str) -> dict[str, list[Text]]:
    rows: dict[str, list[Text]] = {}
    for q in queues or ():
        flag = SortCell("growing, no consumer", crit, 1) if q.growing_unconsumed else SortCell("", "", 0)
        rows[f"{q.broker}{SEP}{q.name}"] = [
            text_cell(q.broker, "dim", 40), text_cell(q.name, "bold", 40), text_cell(q.kind), _n(q.depth),
            _n(q.ready), _n(q.unacked), _n(q.consumers), _n(q.publish_rate, 1), _n(q.deliver_rate, 1), flag]
    return rows


def worker_rows(workers: list[schema.Worker] | None, now: float, ok: str, crit: str) -> dict[str, list[Text]]:
    """A row per worker, then a row per task it runs (key ``t<SEP>worker<SEP>task id``)."""
    rows: dict[str, list[Text]] = {}
    for w in workers or ():
        online = SortCell(fmt.NA, "dim", None) if w.online is None else (
            SortCell("online", ok, 1) if w.online else SortCell("OFFLINE", crit, 0))
        active = len(w.active) if w.active is not None else w.processing
        mem = (f"{fmt.bytes_(w.mem_bytes)}/{fmt.bytes_(w.mem_limit_bytes)}" if w.mem_limit_bytes
               else fmt.bytes_(w.mem_bytes))
        rows[f"w{SEP}{w.name}"] = [
            text_cell(w.kind), text_cell(w.name, "bold", 60), text_cell(w.host, "", 30), online,
            _n(w.pool_size if w.pool_size is not None else w.nthreads), _n(active), SortCell("", "", None),
            num_cell(mem, w.mem_bytes)]
        for t in w.active or ():
            runtime = t.runtime_s if t.runtime_s is not None else _since(now, t.started_ts)
            rows[f"t{SEP}{w.name}{SEP}{t.id}"] = [
                SortCell("  task", "dim", None), text_cell(f"  ↳ {t.name or '?'} {t.id}", "", 80),
                text_cell(w.host, "dim", 30), SortCell("", "", None), SortCell("", "", None), SortCell("", "", None),
                num_cell(_runtime(runtime), runtime), SortCell("", "", None)]
    return rows


def _secs(v: float | None) -> SortCell:
    """A task runtime in seconds, to the millisecond under 10 s (Celery tasks are often that short)."""
    if fmt.known(v, 0) is None:
        return num_cell(fmt.NA, None)
    assert v is not None
    return num_cell(f"{v:.3f}s" if v < 10 else _runtime(v), v)


def history_rows(histories: list[schema.CeleryHistory] | None, ok: str, crit: str) -> dict[str, list[Text]]:
    """Per broker: a header row (events on/off in words), a row per task name with its counts and
    runtime percentiles, then the recent tasks newest first (key ``r<SEP>broker<SEP>id``)."""
    rows: dict[str, list[Text]] = {}
    blank = SortCell("", "", None)
    for h in histories or ():
        if h.events is False:
            head = SortCell(fmt.node_text(h.note, 200) if h.note else "no worker sends events", crit, None)
        elif h.note:
            head = SortCell(fmt.node_text(h.note, 200), crit, None)
        elif h.events is None:
            head = SortCell("waiting for events", "dim", None)
        else:
            head = SortCell(f"events on; percentiles over {fmt.duration(h.window_s)}"
                            + (f"; {fmt.num(h.dropped)} events dropped" if h.dropped else ""), "dim", None)
        rows[f"b{SEP}{h.broker}"] = [text_cell(h.broker, "bold", 60), *[blank] * 8, head]
        for st in h.stats or ():
            rows[f"s{SEP}{h.broker}{SEP}{st.name}"] = [
                text_cell(f"  {st.name}", "bold", 60), blank, blank, _n(st.succeeded),
                num_cell(fmt.num(st.failed), st.failed, crit if st.failed else ""), _n(st.retried), _n(st.revoked),
                _secs(st.runtime_p50_s), _secs(st.runtime_p95_s), blank]
        for t in h.recent or ():
            style = ok if t.state == "SUCCESS" else (crit if t.state in ("FAILURE", "REVOKED") else "")
            detail = t.exception if t.exception else " ".join(x for x in (t.args, t.kwargs) if x)
            rows[f"r{SEP}{h.broker}{SEP}{t.id}"] = [
                text_cell(f"  ↳ {t.name or '?'} {t.id}", "", 80), text_cell(t.state, style, 12),
                text_cell(t.worker, "", 40), blank, blank, blank, blank, blank, _secs(t.runtime_s),
                text_cell(detail, crit if t.exception else "dim", 120)]
    return rows


def history_task(t: schema.CeleryTask) -> schema.WorkerTask:
    """What the revoke dialog shows of a task from the history."""
    return schema.WorkerTask(id=t.id, name=t.name, runtime_s=t.runtime_s, args=t.args)


#: Ended Celery states a retry (a new task with the same arguments) fits.
RETRIABLE = {"FAILURE", "SUCCESS", "REVOKED", "REJECTED"}
NO_BACKEND = ("groups and chords: not available: set result_backend in [collectors.celery] "
              "(a Redis result backend; task events carry no group id)")


def celery_groups_of(state: ClusterState) -> list[schema.CeleryGroups] | None:
    """Each Celery payload's result backend groups; None where no payload carries task history or groups."""
    out: list[schema.CeleryGroups] | None = None
    for name in sorted(state.cluster):
        q = state.cluster[name].queues
        if q is not None and q.celery_groups is not None:
            out = (out or []) + [q.celery_groups]
    return out


def group_rows(backends: list[schema.CeleryGroups] | None, history: bool, ok: str, crit: str
               ) -> dict[str, list[Text]]:
    """A row per Celery group or chord, newest first: "N of M done, K failed" and a bar of the ended share
    (key ``g<SEP>backend<SEP>id``); a backend's note in its own row; with task history but no backend, a
    row saying groups need one (never an empty list that reads as "no groups")."""
    rows: dict[str, list[Text]] = {}
    blank = SortCell("", "", None)
    if backends is None:
        if history:
            rows["G"] = [text_cell("celery groups", "bold", 60), *[blank] * 8, SortCell(NO_BACKEND, "dim", None)]
        return rows
    for be in backends:
        head = (SortCell(fmt.node_text(be.note, 200), crit, None) if be.note else
                SortCell("groups and chords of the result backend", "dim", None))
        rows[f"G{SEP}{be.backend}"] = [text_cell(be.backend, "bold", 60), *[blank] * 8, head]
        for g in be.groups or ():
            total, done, failed = fmt.known(g.total, 0), fmt.known(g.done, 0), fmt.known(g.failed, 0)
            revoked = fmt.known(g.revoked, 0)
            bad = bool(failed)
            if total and done is not None:
                text = f"{fmt.num(done)} of {fmt.num(total)} done" + (f", {fmt.num(failed)} failed" if failed is not None
                                                                      else ", failed N/A")
                state = SortCell(text, crit if bad else (ok if done >= total else ""), done / total)
                filled, empty = fmt.bar(done / total, 20)
                detail = Text.assemble((filled, crit if bad else ok), (empty, "dim"),
                                       ("  " + (fmt.node_text(g.note, 120) if g.note else
                                                "ended" if g.ended else "running"), "dim"))
            else:
                state = SortCell(fmt.NA if total is None else "no members", "dim", None)
                detail = text_cell(g.note or ("ended" if g.ended else None), "dim", 120)
            # "chord 3f2a… ct.grid": ids are uuids, the first 8 characters tell groups apart on a narrow screen
            short = g.id if len(g.id) <= 12 else g.id[:8] + "…"
            label = f"{g.kind or 'group'} {fmt.node_text(short, 40)}" + (f" {g.name}" if g.name else "")
            rows[f"g{SEP}{be.backend}{SEP}{g.id}"] = [
                # Succeeded: what ended less what failed or was revoked; any of them unknown, unknown.
                text_cell(label, "bold", 60), state, blank, _n(None if done is None or failed is None or revoked is None
                                                              else done - failed - revoked),
                num_cell(fmt.num(failed), failed, crit if bad else ""), blank, _n(revoked),
                blank, blank, detail]
    return rows


def dask_rows(comps: list[schema.DaskComputation] | None, ok: str, crit: str) -> dict[str, list[Text]]:
    """A row per Dask computation, newest first: "N of M done, K erred", a bar of the ended share (done or
    erred) and the count per state."""
    rows: dict[str, list[Text]] = {}
    blank = SortCell("", "", None)
    for c in reversed(comps or ()):
        st = c.states or {}
        total = sum(st.values()) if c.states is not None else None
        done = sum(st.get(k, 0) for k in DASK_DONE)
        erred = st.get("erred", 0)
        if total:
            filled, empty = fmt.bar((done + erred) / total, 20)
            state = SortCell(f"{fmt.num(done)} of {fmt.num(total)} done"
                             + (f", {fmt.num(erred)} erred" if erred else ""), crit if erred else ok, done / total)
            detail = Text.assemble((filled, crit if erred else ok), (empty, "dim"),
                                   ("  " + " ".join(f"{fmt.node_text(k, 20)} {fmt.num(v)}" for k, v in sorted(st.items())
                                                    if v), "dim"))
        else:
            state, detail = SortCell(fmt.NA if total is None else "no tasks", "dim", None), blank
        name = ", ".join(c.groups or ()) or "?"
        rows[f"d{SEP}{c.id}"] = [text_cell(f"dask {name} {c.id}", "bold", 80), state, blank, blank,
                                 num_cell(fmt.num(erred), erred, crit if erred else ""), blank, blank, blank, blank,
                                 detail]
    return rows


def pod_rows(pods: list[schema.K8sPod] | None, now: float, needle: str, warn: str, crit: str
             ) -> dict[str, list[Text]]:
    rows: dict[str, list[Text]] = {}
    needle = needle.lower()
    for p in pods or ():
        if needle and needle not in f"{p.namespace}/{p.name} {p.node or ''} {p.phase or ''}".lower():
            continue
        phase = p.reason or p.phase
        style = "" if p.phase in ("Running", "Succeeded") and not p.reason else (
            crit if p.phase == "Failed" or p.reason else warn)
        owner = f"{p.owner_kind} {p.owner}" if p.owner_kind else None
        age = _since(now, p.created_ts)
        rows[f"{p.namespace}/{p.name}"] = [
            text_cell(p.namespace, "dim", 30), text_cell(p.name, "bold", 60), text_cell(p.node, "", 30),
            text_cell(phase, style, 24), num_cell(fmt.num(p.restarts), p.restarts, warn if p.restarts else ""),
            _n(p.gpus), num_cell(fmt.age(age), age), text_cell(owner, "dim", 50)]
    return rows


def in_namespace(objs: list[Any] | None, namespace: str | None) -> list[Any] | None:
    """``:ns NAME`` (dashboard/k8s_scope.py): only that namespace's pods or workloads; None: all of them."""
    if objs is None or namespace is None:
        return objs
    return [o for o in objs if o.namespace == namespace]


def workload_rows(workloads: list[schema.K8sWorkload] | None) -> dict[str, list[Text]]:
    return {f"{w.kind}{SEP}{w.namespace}/{w.name}": [
        text_cell(w.kind), text_cell(w.namespace, "dim", 30), text_cell(w.name, "bold", 60), _n(w.replicas),
        _n(w.ready), _n(w.active), _n(w.succeeded), _n(w.failed)] for w in workloads or ()}


def _ledger_cells(r: LedgerRow, warn: str, crit: str) -> list[Text]:
    notes = [n for n, on_ in (("cordoned", r.cordoned), ("no agent", not r.has_agent and r.in_kubernetes),
                              ("not in Kubernetes", r.has_agent and not r.in_kubernetes and r.node != "cluster"))
             if on_]
    bold = "bold" if r.node == "cluster" else ""
    return [text_cell(r.node, bold or "", 40), _n(r.capacity), _n(r.allocatable), _n(r.allocated), _n(r.gpus_seen),
            _n(r.busy), num_cell(fmt.num(r.idle_allocated), r.idle_allocated, warn if r.idle_allocated else ""),
            num_cell(fmt.num(r.unowned_busy), r.unowned_busy, crit if r.unowned_busy else ""),
            SortCell(", ".join(notes), "dim", None)]


def ledger_rows(ledger: Ledger, warn: str, crit: str) -> dict[str, list[Text]]:
    rows: dict[str, list[Text]] = {r.node: list(_ledger_cells(r, warn, crit)) for r in ledger.nodes}
    rows[f"{SEP}cluster"] = _ledger_cells(ledger.cluster, warn, crit)
    return rows


def flags_text(ledger: Ledger, warn: str) -> Content:
    if not ledger.flags:
        return Content.assemble(("no GPU flags: every allocated GPU is in use, every busy GPU has an owner", "dim"))
    return Content("\n").join([Content.assemble((f"{f.kind:>14}  ", f"bold {warn}"), fmt.node_text(f.message, 300))
                               for f in ledger.flags])


def tasks_of(state: ClusterState) -> list[tuple[str, schema.Task]]:
    return [(v.host, t) for v in state.nodes if v.snap is not None for t in v.snap.tasks or ()]


def task_rows(tasks: list[tuple[str, schema.Task]], now: float, ok: str, crit: str) -> dict[str, list[Text]]:
    """A multi-node job is one row group: a header row, then its ranks (sorted together by job)."""
    rows: dict[str, list[Text]] = {}
    jobs: dict[str, list[schema.Task]] = {}
    for node, t in tasks:
        if t.job:
            jobs.setdefault(t.job, []).append(t)
        end = t.ended_ts if t.ended_ts is not None else (now if t.state == "running" else None)
        runtime = None if fmt.known(end) is None else _since(end, t.started_ts)  # type: ignore[arg-type]
        group = (t.job, t.rank if t.rank is not None else 0) if t.job else (f"~{t.id}", 0)
        style = ok if t.state == "running" else (crit if t.state in ("failed", "killed") else "dim")
        label = f"  rank {fmt.num(t.rank)}: {t.id}" if t.job else t.id
        rows[f"{node}{SEP}{t.id}"] = [
            SortCell(fmt.node_text(label, 40), "", group), text_cell(node, "", 30), text_cell(t.template, "bold", 30),
            SortCell(fmt.node_text(t.state, 20), style, t.state), num_cell(_runtime(runtime), runtime),
            _n(t.rank), _n(t.pid), _n(t.exit_code), text_cell(t.note, "dim", 60)]
    for job, members in jobs.items():
        running = sum(1 for t in members if t.state == "running")
        rows[f"job{SEP}{job}"] = [
            SortCell(f"job {fmt.node_text(job, 30)}", "bold", (job, -1)), SortCell(f"{len(members)} node(s)", "dim"),
            text_cell(members[0].template, "bold", 30),
            SortCell(f"{running}/{len(members)} running", ok if running == len(members) else crit, running),
            SortCell("", "", None), SortCell("", "", None), SortCell("", "", None), SortCell("", "", None),
            SortCell("", "", None)]
    return rows


def summary(state: ClusterState, ledger: Ledger | None) -> list[Content]:
    """The work at a glance, as parts that are never cut in two: "queues 3 (41 queued)", "workers
    15/15 online", "pods 14 (4 pending)", "GPUs capacity 10 allocated 4 busy 6", "tasks 2 running"."""
    q = queues_of(state)
    parts: list[Content] = []
    if q.queues is not None:
        growing = sum(1 for x in q.queues if x.growing_unconsumed)
        depth = sum(x.depth or 0 for x in q.queues)
        parts.append(Content.assemble(f"queues {len(q.queues)} ({fmt.num(depth)} queued)",
                                      *([(f" {growing} growing, no consumer", "$ct-crit")] if growing else [])))
    else:
        parts.append(Content.assemble(("queues N/A", "dim")))
    if q.workers is not None:
        online = sum(1 for w in q.workers if w.online)
        parts.append(Content(f"workers {online}/{len(q.workers)} online"))
    k8s = state.cluster.get("kubernetes")
    pods = k8s.kubernetes.pods if k8s is not None and k8s.kubernetes is not None else None
    if pods is not None:
        pending = sum(1 for p in pods if p.phase == "Pending")
        parts.append(Content(f"pods {len(pods)}" + (f" ({pending} pending)" if pending else "")))
    if ledger is not None and ledger.cluster.gpus_seen is not None or ledger is not None and ledger.cluster.capacity:
        c = ledger.cluster
        parts.append(Content.assemble(
            f"GPUs capacity {fmt.num(c.capacity)} allocated {fmt.num(c.allocated)} busy {fmt.num(c.busy)}",
            *([(f" {len(ledger.flags)} flag(s)", "$ct-warn")] if ledger.flags else [])))
    running = sum(1 for _n_, t in tasks_of(state) if t.state == "running")
    parts.append(Content(f"tasks {running} running"))
    return parts


# ---------------------------------------------------------------------------------------------
# The screen
# ---------------------------------------------------------------------------------------------


class WorkScreen(DataScreen):
    screen_name = "work"
    plan_level = Level.BRIEFS  # tasks and cluster payloads: briefs are all it draws

    BINDINGS = [
        Binding("left_square_bracket", "tab(-1)", "Prev tab", show=False),
        Binding("right_square_bracket", "tab(1)", "Next tab", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Back", show=False),
        Binding("ctrl+d", "job_delete", "Delete"),
        Binding("ctrl+k", "job_kill", "Terminate"),
        Binding("ctrl+r", "job_retry", "Retry"),
        Binding("l", "job_logs", "Logs"),
        Binding("s", "job_scale", "Scale"),
        Binding("plus", "job_pool(1)", "Pool+"),
        Binding("minus", "job_pool(-1)", "Pool-"),
        Binding("n", "job_launch", "Launch"),
        # Kubernetes depth (dashboard/k8s_ops.py): describe, rollout history / undo / restart.
        Binding("i", "k8s_describe", "Describe"),
        Binding("H", "k8s_history", "History"),
        Binding("u", "k8s_undo", "Undo"),
        Binding("R", "k8s_restart", "Restart"),
        Binding("C", "k8s_cordon", "Cordon/uncordon"),
        Binding("D", "k8s_drain", "Drain"),
    ]

    DEFAULT_CSS = """
    WorkScreen #work-summary { height: auto; max-height: 3; padding: 0 1; background: $panel; }
    WorkScreen TabbedContent { height: 1fr; }
    WorkScreen TabPane { padding: 0; }
    WorkScreen LiveTable { height: 1fr; }
    WorkScreen #pod-filter { display: none; height: 3; }
    WorkScreen #pod-filter.-on { display: block; }
    WorkScreen #ledger-table { height: 2fr; }
    WorkScreen #ledger-flags { height: auto; max-height: 40%; padding: 0 1; }
    WorkScreen #dask-stream { height: auto; padding: 0 1; display: none; text-wrap: nowrap; }
    WorkScreen #dask-stream.-on { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.pod_filter = ""
        self.tracker = LedgerTracker()
        self.ledger: Ledger | None = None
        self._last: View | None = None
        self._binding_sig: tuple[object, ...] = ()
        self.rows: dict[str, dict[str, Any]] = {p: {} for p in PANES}  # pane -> key -> object behind the row

    def compose_body(self) -> Iterable[Widget]:
        yield FactLines(id="work-summary")
        with TabbedContent(initial="queues", id="work-tabs"):
            for pane in PANES:
                with TabPane(TITLES[pane], id=pane):
                    if pane == "pods":
                        yield Input(placeholder="filter pods (namespace/name, node, phase)", id="pod-filter")
                    yield LiveTable(COLUMNS[pane], id=f"{pane}-table", fold=FOLD[pane])
                    if pane == "ledger":
                        yield Static("", id="ledger-flags")
                    if pane == "history":  # the Dask task stream's timeline (widgets/taskstream.py)
                        yield Static("", id="dask-stream")

    def on_mount(self) -> None:
        self.query_one("#tasks-table", LiveTable).sort_column = "group"
        self.query_one("#queues-table", LiveTable).focus()

    @property
    def pane(self) -> str:
        return self.query_one("#work-tabs", TabbedContent).active or "queues"

    def table(self, pane: str | None = None) -> LiveTable:
        return self.query_one(f"#{pane or self.pane}-table", LiveTable)

    def selected(self) -> tuple[str, str | None]:
        pane = self.pane
        return pane, self.table(pane).cursor_key

    # -- drawing ----------------------------------------------------------------------------------

    def draw(self, view: View) -> None:
        assert view.state is not None
        self._last = view
        state = view.state
        app_ledger = getattr(self.app, "ledger", None)
        if app_ledger is not None and app_ledger.ts == state.ts:
            self.ledger = app_ledger  # tracked on every read by the app, so flags keep their age
        else:
            self.ledger = update_from_state(self.tracker, state)
        self.query_one("#work-summary", FactLines).show_facts(summary(state, self.ledger) + k8s_scope.parts(self.app))
        self._draw_pane(self.pane)
        if "kubernetes" in state.cluster and self.app.settings.kubeconfig is not None:  # type: ignore[attr-defined]
            actions_of(self.app).check_k8s(self._sync_bindings)
        self._sync_bindings()

    def _draw_pane(self, pane: str) -> None:
        view = self._last
        if view is None or view.state is None:
            return
        state, now, p = view.state, view.state.ts, self.app.palette  # type: ignore[attr-defined]
        ok, warn, crit = p.text_style("ok"), p.text_style("warn"), p.text_style("crit")
        k8s_payload = state.cluster.get("kubernetes")
        k8s = k8s_payload.kubernetes if k8s_payload is not None else None
        objs: dict[str, Any] = {}
        if pane == "queues":
            q = queues_of(state)
            rows = queue_rows(q.queues, crit)
        elif pane == "workers":
            workers = queues_of(state).workers
            rows = worker_rows(workers, now, ok, crit)
            for w in workers or ():
                objs[f"w{SEP}{w.name}"] = w
                for t in w.active or ():
                    objs[f"t{SEP}{w.name}{SEP}{t.id}"] = (w, t)
        elif pane == "pods":
            pods = in_namespace(k8s.pods if k8s is not None else None, k8s_scope.namespace_of(self.app))
            rows = pod_rows(pods, now, self.pod_filter, warn, crit)
            objs = {f"{x.namespace}/{x.name}": x for x in pods or ()}
        elif pane == "workloads":
            wl = in_namespace(k8s.workloads if k8s is not None else None, k8s_scope.namespace_of(self.app))
            rows = workload_rows(wl)
            objs = {f"{w.kind}{SEP}{w.namespace}/{w.name}": w for w in wl or ()}
        elif pane == "ledger":
            assert self.ledger is not None
            rows = ledger_rows(self.ledger, warn, crit)
            objs = {r.node: r for r in self.ledger.nodes}  # cordon / drain (C / D) act on a Kubernetes node row
            self.query_one("#ledger-flags", Static).update(flags_text(self.ledger, warn))
        elif pane == "history":
            merged = queues_of(state)
            histories = merged.task_history
            rows = (history_rows(histories, ok, crit)
                    | group_rows(celery_groups_of(state), histories is not None, ok, crit)
                    | dask_rows(merged.dask_computations, ok, crit))
            self._draw_stream(merged, view.now)
            objs = {f"r{SEP}{h.broker}{SEP}{t.id}": t for h in histories or () for t in h.recent or ()}
        else:
            tasks = tasks_of(state)
            rows = task_rows(tasks, now, ok, crit)
            objs = {f"{node}{SEP}{t.id}": (node, t) for node, t in tasks}
        self.rows[pane] = objs
        self.table(pane).sync(rows)

    def _draw_stream(self, merged: schema.Queues, now: float) -> None:
        """Below the history table, where a Dask scheduler is polled: its task stream as a timeline, taking
        at most ~40 % of the screen's height (a few rows at 80x24, dozens on a wall)."""
        from clustertop.dashboard.widgets.taskstream import bucket_lines, stream_lines

        box = self.query_one("#dask-stream", Static)
        shown = merged.dask_computations is not None or merged.dask_task_stream is not None \
            or merged.dask_stream is not None
        box.set_class(shown, "-on")
        if not shown:
            return
        rows = max(2, self.size.height * 2 // 5 - 4)
        ascii = self.app.settings.ascii  # type: ignore[attr-defined]
        if merged.dask_stream is not None:  # folded over the poll's window (today's agents)
            lines = bucket_lines(merged, now, self.size.width - 2, rows, ascii)
        else:  # an older agent's last entries
            lines = stream_lines(merged.dask_task_stream, now, self.size.width - 2, rows, ascii)
        box.update(Content("\n").join(lines))

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or ""
        if pane in PANES:
            self._draw_pane(pane)
            self.table(pane).focus()
            self._sync_bindings()

    @on(LiveTable.RowHighlighted)
    def _row(self, event: LiveTable.RowHighlighted) -> None:
        self._sync_bindings()

    @on(LiveTable.RowSelected)
    def _chosen(self, event: LiveTable.RowSelected) -> None:
        """Enter on a Celery task that failed (or was retried): its exception and traceback, escaped."""
        pane, obj = self._obj()
        if pane != "history" or not isinstance(obj, schema.CeleryTask) or not (obj.exception or obj.traceback):
            return
        from clustertop.dashboard.dialogs.logs import LogsViewer

        viewer = LogsViewer(inert(f"{obj.state or '?'}: {obj.name or '?'} {obj.id} on {obj.worker or fmt.NA}", limit=200))
        self.app.push_screen(viewer)
        text = "\n".join(x for x in (obj.exception, obj.traceback or "(no traceback: over the payload's budget)") if x)
        self.call_after_refresh(viewer.show_text, inert(text, lines=True))

    def _sync_bindings(self) -> None:
        # The footer is rebuilt only when the set of usable keys changes, not on every tick.
        sig = tuple(self._applies(a) for a in ("job_delete", "job_kill", "job_retry", "job_logs", "job_scale",
                                               "job_pool", "filter", *K8S_DEPTH))
        acts = actions_of(self.app)
        sig += (acts.k8s_allowed is not None,)
        if sig != self._binding_sig:
            self._binding_sig = sig
            self.refresh_bindings()

    # -- which key fits which row ---------------------------------------------------------------

    def _applies(self, action: str) -> bool:
        pane, key = self.selected()
        obj = self.rows.get(pane, {}).get(key) if key is not None else None
        acts = actions_of(self.app)
        if action == "filter":
            return pane == "pods"
        if obj is None:
            return False
        if action == "job_delete":
            if pane == "pods":
                return acts.k8s_may("delete_pod")
            if pane == "workloads":
                return obj.kind == "Job" and acts.k8s_may("delete_job")
            if pane == "workers":
                return isinstance(obj, tuple) and obj[0].kind == "celery" or (
                    isinstance(obj, schema.Worker) and obj.kind == "dask")
            if pane == "tasks":
                return isinstance(obj, tuple) and obj[1].state == "running"
            if pane == "history":
                return isinstance(obj, schema.CeleryTask) and obj.state in REVOCABLE
            return False
        if action == "job_retry":
            return pane == "history" and isinstance(obj, schema.CeleryTask) and obj.state in RETRIABLE
        if action == "job_kill":
            if pane == "history":
                return isinstance(obj, schema.CeleryTask) and obj.state == "STARTED"
            return pane == "workers" and isinstance(obj, tuple) and obj[0].kind == "celery"
        if action == "job_logs":
            return pane == "pods" and acts.k8s_may("pod_logs")
        if action == "job_scale":
            return pane == "workloads" and obj.kind == "Deployment" and acts.k8s_may("scale_deployment")
        if action in K8S_DEPTH:
            return _k8s_depth_applies(action, pane, obj, acts)
        if action == "job_pool":
            return pane == "workers" and isinstance(obj, schema.Worker) and obj.kind == "celery"
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.app.check_action(action, parameters):
            return False  # read-only: hidden and refused
        if action in ("job_delete", "job_kill", "job_retry", "job_logs", "job_scale", "job_pool", "filter", *K8S_DEPTH):
            return self._applies(action)
        return True

    def _obj(self) -> tuple[str, Any]:
        pane, key = self.selected()
        return pane, self.rows.get(pane, {}).get(key) if key is not None else None

    # -- actions --------------------------------------------------------------------------------

    def action_tab(self, step: int) -> None:
        tabs = self.query_one("#work-tabs", TabbedContent)
        i = PANES.index(self.pane) if self.pane in PANES else 0
        tabs.active = PANES[(i + step) % len(PANES)]

    def action_filter(self) -> None:
        if self.pane != "pods":
            return
        inp = self.query_one("#pod-filter", Input)
        inp.add_class("-on")
        inp.focus()

    @on(Input.Changed, "#pod-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.pod_filter = event.value.strip()
        self._draw_pane("pods")

    @on(Input.Submitted, "#pod-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.table("pods").focus()

    def action_clear_filter(self) -> None:
        inp = self.query_one("#pod-filter", Input)
        if self.pane == "pods" and (self.pod_filter or inp.has_class("-on")):
            inp.value = ""
            inp.remove_class("-on")
            self.pod_filter = ""
            self._draw_pane("pods")
            self.table("pods").focus()
            return
        back: Any = self.app.action_back  # ClusterTop.action_back is a plain method: escape means "back" here too
        back()

    def action_job_delete(self) -> None:
        if not actions_of(self.app).allowed("delete"):  # a direct call is refused too
            return
        acts = actions_of(self.app)
        pane, obj = self._obj()
        if pane == "pods" and isinstance(obj, schema.K8sPod):
            acts.ask_delete("Pod", obj.namespace, obj.name)
        elif pane == "workloads" and isinstance(obj, schema.K8sWorkload) and obj.kind == "Job":
            acts.ask_delete("Job", obj.namespace, obj.name)
        elif pane == "workers" and isinstance(obj, tuple):
            acts.ask_revoke(obj[0].name, obj[1], terminate=False)
        elif pane == "workers" and isinstance(obj, schema.Worker) and obj.kind == "dask":
            acts.ask_retire(obj.name, obj.processing)
        elif pane == "tasks" and isinstance(obj, tuple):
            acts.ask_stop_task(obj[0], obj[1])
        elif pane == "history" and isinstance(obj, schema.CeleryTask) and obj.state in REVOCABLE:
            acts.ask_revoke(obj.worker or fmt.NA, history_task(obj), terminate=False)
        elif acts.allowed("delete"):
            acts.notify("ctrl+d: select a pod, a Job, a Celery task, a Dask worker or a running task", "warning")

    def action_job_kill(self) -> None:
        if not actions_of(self.app).allowed("terminate task"):  # a direct call is refused too
            return
        acts = actions_of(self.app)
        pane, obj = self._obj()
        if pane == "workers" and isinstance(obj, tuple):
            acts.ask_revoke(obj[0].name, obj[1], terminate=True)
        elif pane == "history" and isinstance(obj, schema.CeleryTask) and obj.state == "STARTED":
            acts.ask_revoke(obj.worker or fmt.NA, history_task(obj), terminate=True)
        elif acts.allowed("terminate task"):
            acts.notify("ctrl+k: select a Celery task (Workers tab, the rows under a worker)", "warning")

    def action_job_retry(self) -> None:
        if not actions_of(self.app).allowed("retry task"):  # a direct call is refused too
            return
        pane, obj = self._obj()
        if pane == "history" and isinstance(obj, schema.CeleryTask) and obj.state in RETRIABLE:
            actions_of(self.app).ask_retry(obj)
        else:
            actions_of(self.app).notify("ctrl+r: select an ended Celery task on the Task history tab", "warning")

    def action_job_logs(self) -> None:
        if not actions_of(self.app).allowed("pod logs"):  # a direct call is refused too
            return
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if pane == "pods" and isinstance(obj, schema.K8sPod):
            k8s_ops.ask_logs(actions_of(self.app), obj.namespace, obj.name)  # follows (f toggles)

    def action_job_scale(self) -> None:
        if not actions_of(self.app).allowed("scale"):  # a direct call is refused too
            return
        pane, obj = self._obj()
        if pane == "workloads" and isinstance(obj, schema.K8sWorkload) and obj.kind == "Deployment":
            actions_of(self.app).ask_scale(obj.namespace, obj.name, obj.replicas)

    def action_job_pool(self, delta: int) -> None:
        if not actions_of(self.app).allowed("pool resize"):  # a direct call is refused too
            return
        pane, obj = self._obj()
        if pane == "workers" and isinstance(obj, schema.Worker) and obj.kind == "celery":
            actions_of(self.app).ask_pool(obj.name, delta, obj.pool_size)

    def action_k8s_describe(self) -> None:
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if _k8s_depth_applies("k8s_describe", pane, obj, actions_of(self.app)):
            k8s_ops.ask_describe(actions_of(self.app), "Pod" if pane == "pods" else obj.kind, obj.namespace, obj.name)

    def action_k8s_history(self) -> None:
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if _k8s_depth_applies("k8s_history", pane, obj, actions_of(self.app)):
            k8s_ops.ask_history(actions_of(self.app), obj.namespace, obj.name)

    def action_k8s_undo(self) -> None:
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if _k8s_depth_applies("k8s_undo", pane, obj, actions_of(self.app)):
            k8s_ops.ask_undo(actions_of(self.app), obj.namespace, obj.name)  # read-only: refused inside

    def action_k8s_restart(self) -> None:
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if _k8s_depth_applies("k8s_restart", pane, obj, actions_of(self.app)):
            k8s_ops.ask_restart(actions_of(self.app), obj.namespace, obj.name, obj.replicas)

    def action_k8s_cordon(self) -> None:
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if _k8s_depth_applies("k8s_cordon", pane, obj, actions_of(self.app)):
            k8s_ops.ask_cordon(actions_of(self.app), obj.node, not obj.cordoned)

    def action_k8s_drain(self) -> None:
        from clustertop.dashboard import k8s_ops

        pane, obj = self._obj()
        if _k8s_depth_applies("k8s_drain", pane, obj, actions_of(self.app)):
            k8s_ops.ask_drain(actions_of(self.app), obj.node)

    def action_job_launch(self) -> None:
        actions_of(self.app).ask_launch()
