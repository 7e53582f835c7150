"""Provides the dashboard's ``:`` command line, k9s style: ``:ns NAME`` / ``:ns all`` / ``:ns`` (pick one)
narrows the Work screen's pods and workloads to a namespace; ``:ctx NAME`` / ``:ctx`` (pick one) changes
the kubeconfig context the Kubernetes *actions* talk to (logs, describe, delete, scale, rollout, drain).

Why the context is said so loudly: the Work screen's lists come from the agents' Kubernetes collector (its
own kubeconfig, one cluster); only the operator's actions follow ``:ctx``. While the context is not the
default one (``[dashboard] k8s_context``, else the kubeconfig's current-context) the header and the Work
summary say "ctx NAME -> server" in the warning colour. A context missing from the kubeconfig is refused
with the file and key named; switching drops the Kubernetes client and the cached can_i answers, so the
keys are asked for again against the new cluster. The namespace is a view filter (as ``/`` is), kept for
the session; ``:ns all`` clears it.

``parse`` and ``contexts_in`` are pure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input

from clustertop.control.k8s_names import is_namespace
from clustertop.dashboard import fmt

USAGE = ":ns NAME | :ns all | :ns (pick) | :ctx NAME | :ctx (pick)"


@dataclass
class Scope:
    namespace: str | None = None  # None: every namespace
    default_context: str | None = None  # what the session started with (resolved on first :ctx)
    server: str | None = None  # the API server of a non-default context, as the kubeconfig names it


@dataclass
class Parsed:
    verb: str  # "ns" | "ctx" | "error"
    arg: str | None = None  # None: pick from a list
    error: str = ""


def parse(text: str) -> Parsed:
    """``ns team-a`` / ``:ns all`` / ``ctx prod`` / ``ns`` -> what to do; anything else an error in words."""
    words = text.strip().lstrip(":").split()
    if not words:
        return Parsed("error", error=f"empty command: {USAGE}")
    verb = {"ns": "ns", "namespace": "ns", "namespaces": "ns", "ctx": "ctx", "context": "ctx"}.get(words[0].lower())
    if verb is None or len(words) > 2:
        return Parsed("error", error=f"unknown command '{fmt.node_text(text.strip(), 40)}': {USAGE}")
    arg = words[1] if len(words) == 2 else None
    if verb == "ns" and arg is not None and arg != "all" and not is_namespace(arg):
        return Parsed("error", error=f"'{fmt.node_text(arg, 60)}' is not a namespace name (RFC 1123 label)")
    return Parsed(verb, arg)


def kubeconfig_path(setting: str | None) -> str:
    """The file the client reads: the setting, else the first of $KUBECONFIG, else ~/.kube/config."""
    if setting:
        return os.path.expanduser(setting)
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return os.path.expanduser(first or "~/.kube/config")


def contexts_in(doc: Any, path: str) -> tuple[dict[str, str | None], str | None]:
    """A parsed kubeconfig -> ({context: its cluster's server}, current-context). ValueError names the key."""
    if not isinstance(doc, dict):
        raise ValueError(f"kubeconfig {path}: not a YAML mapping")
    ctxs, clusters = doc.get("contexts") or [], doc.get("clusters") or []
    if not isinstance(ctxs, list):
        raise ValueError(f"kubeconfig {path}: contexts: not a list")
    servers = {c.get("name"): (c.get("cluster") or {}).get("server") for c in clusters
               if isinstance(c, dict) and isinstance(c.get("cluster") or {}, dict)} if isinstance(clusters, list) else {}
    out: dict[str, str | None] = {}
    for i, c in enumerate(ctxs):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise ValueError(f"kubeconfig {path}: contexts[{i}].name: missing or not a string")
        cluster = (c.get("context") or {}).get("cluster") if isinstance(c.get("context") or {}, dict) else None
        server = servers.get(cluster)
        out[c["name"]] = str(server) if server is not None else None
    current = doc.get("current-context")
    return out, current if isinstance(current, str) and current else None


def read_contexts(setting: str | None) -> tuple[str, dict[str, str | None], str | None]:
    """(path, contexts, current-context) of the operator's kubeconfig; ValueError with file and key."""
    path = kubeconfig_path(setting)
    try:
        import yaml  # type: ignore[import-untyped]  # PyYAML comes with the k8s extra
    except ImportError:
        raise ValueError("reading kubeconfig contexts needs the k8s extra (pip install 'clustertop[k8s]')") from None
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"kubeconfig {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"kubeconfig {path}: not valid YAML: {str(e).splitlines()[0]}") from None
    ctxs, current = contexts_in(doc, path)
    return path, ctxs, current


# ---------------------------------------------------------------------------------------------
# The app's side
# ---------------------------------------------------------------------------------------------


def scope_of(app: Any) -> Scope:
    s = getattr(app, "_k8s_scope", None)
    if s is None:
        s = Scope()
        app._k8s_scope = s
    return s  # type: ignore[no-any-return]


def namespace_of(app: Any) -> str | None:
    return scope_of(app).namespace


def switched_context(app: Any) -> str | None:
    """The context the actions use when it is not the session's default one, else None."""
    s = scope_of(app)
    cur = getattr(app.settings, "k8s_context", None)
    return cur if s.default_context is not None and cur != s.default_context else None


def parts(app: Any) -> list[Content]:
    """For the header and the Work summary: "ns team-a", and "ctx prod -> https://..." while switched."""
    out: list[Content] = []
    ns = namespace_of(app)
    if ns is not None:
        pods = _pods(app)
        count = "" if pods is None else f" ({sum(1 for p in pods if p.namespace == ns)} of {len(pods)} pods)"
        out.append(Content.assemble(("ns ", "bold"), fmt.node_text(ns, 63), count))
    ctx = switched_context(app)
    if ctx is not None:
        server = scope_of(app).server
        out.append(Content.assemble((f"ctx {fmt.node_text(ctx, 60)}", "$ct-warn bold"),
                                    (f" -> {fmt.node_text(server or 'N/A', 80)}: actions go there, the lists "
                                     "are the agents' cluster", "$ct-warn")))
    return out


class CommandLine(ModalScreen[str | None]):
    """One line at the bottom: what was typed (enter), or None (escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    CommandLine { align: left bottom; background: $background 0%; }
    CommandLine > Input { width: 100%; height: 3; border: tall $primary; }
    """

    def compose(self) -> ComposeResult:
        yield Input(placeholder=USAGE.replace(":", ""), id="command")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_command_line(app: Any) -> None:
    app.push_screen(CommandLine(), lambda text: run(app, text) if text else None)


def run(app: Any, text: str) -> None:
    p = parse(text)
    if p.verb == "error":
        app.notify(p.error, severity="error", title=":")
    elif p.verb == "ns":
        if p.arg is None:
            _pick_namespace(app)
        else:
            set_namespace(app, None if p.arg == "all" else p.arg)
    elif p.arg is None:
        _pick_context(app)
    else:
        set_context(app, p.arg)


def _redraw(app: Any) -> None:
    refresh = getattr(app, "refresh_now", None)
    if refresh is not None:
        refresh()
    screen = app.screen
    show, view = getattr(screen, "show", None), getattr(app, "view", None)
    if show is not None and view is not None:
        show(view, force=True)  # at once, not on the next read


def set_namespace(app: Any, ns: str | None) -> None:
    scope_of(app).namespace = ns
    app.notify("every namespace" if ns is None else f"namespace {fmt.node_text(ns, 63)} (:ns all clears it)",
               title=":ns")
    _redraw(app)


def _k8s(app: Any) -> Any:
    """The Kubernetes payload of the last read (schema.Kubernetes), or None."""
    state = getattr(getattr(app, "view", None), "state", None)
    payload = state.cluster.get("kubernetes") if state is not None else None
    return payload.kubernetes if payload is not None else None


def _pods(app: Any) -> list[Any] | None:
    k8s = _k8s(app)
    return k8s.pods if k8s is not None else None


def namespaces_seen(app: Any) -> list[str]:
    """The namespaces in the Kubernetes payload the dashboard read (pods and workloads)."""
    k8s = _k8s(app)
    if k8s is None:
        return []
    return sorted({x.namespace for x in (k8s.pods or []) + (k8s.workloads or []) if isinstance(x.namespace, str)})


def _pick_namespace(app: Any) -> None:
    from clustertop.dashboard.actions import actions_of
    from clustertop.wire.text import inert

    seen = namespaces_seen(app)
    acts = actions_of(app)

    def ask_api() -> None:
        # The API's list adds namespaces with nothing in them yet, where the operator may list them.
        names, note = set(seen), ""
        try:
            if app.settings.kubeconfig is not None and not _refused(app):
                ctl = acts.k8s()
                if ctl.can_i("list", "namespaces"):
                    raw = ctl._call("namespaces", ctl.core.list_namespace) or {}
                    names |= {str((n.get("metadata") or {}).get("name")) for n in raw.get("items") or []
                              if isinstance(n, dict)}
        except Exception as e:  # noqa: BLE001 - the payload's namespaces are still offered
            from clustertop.errors import describe

            note = f" (API: {describe(e)})"
        app.call_from_thread(show, sorted(n for n in names if is_namespace(n)), note)

    def show(names: list[str], note: str) -> None:
        from clustertop.dashboard.dialogs.pick import PickDialog

        opts = [("\x00all", Content("all namespaces"))] + [(n, Content(inert(n, limit=63))) for n in names]
        app.push_screen(PickDialog(f"namespace{fmt.node_text(note, 120)}", opts),
                        lambda c: None if c is None else set_namespace(app, None if c == "\x00all" else c))

    acts.background(ask_api, "namespaces")


def _refused(app: Any) -> str | None:
    """The demo never opens a kubeconfig (its Kubernetes is simulated): no context to switch to."""
    if getattr(app.settings, "demo_control", None) is not None:
        return "the demo's Kubernetes is simulated: it has no kubeconfig contexts"
    return getattr(app.settings, "external_control_refused", None) or None


def _contexts(app: Any) -> tuple[str, dict[str, str | None], str | None]:
    why = _refused(app)
    if why:
        raise ValueError(why)
    path, ctxs, current = read_contexts(app.settings.kubeconfig)
    s = scope_of(app)
    if s.default_context is None:
        s.default_context = app.settings.k8s_context or current or ""
    return path, ctxs, current


def set_context(app: Any, name: str) -> bool:
    """Switch the actions to ``name`` (refused, with the file and key, if the kubeconfig lacks it)."""
    from clustertop.dashboard.actions import actions_of

    try:
        path, ctxs, _current = _contexts(app)
    except ValueError as e:
        app.notify(f":ctx refused: {e}", severity="error", title=":ctx")
        return False
    if name not in ctxs:
        known = ", ".join(fmt.node_text(c, 40) for c in sorted(ctxs)[:10]) or "none"
        app.notify(f":ctx refused: no context '{fmt.node_text(name, 60)}' in kubeconfig {path} "
                   f"(contexts[].name: {known})", severity="error", title=":ctx")
        return False
    scope = scope_of(app)
    scope.server = ctxs[name]
    app.settings.k8s_context = name
    acts = actions_of(app)
    with acts._lock:
        old, acts._k8s = acts._k8s, None  # the next action builds a client for the new context
    if old is not None:
        try:
            old.close()
        except Exception:  # noqa: BLE001 - closing the old cluster's client
            pass
    # can_i was the old cluster's answer: ask the new one (keys hidden or shown again accordingly).
    acts.k8s_allowed, acts.k8s_allowed_error, acts._asked_k8s = None, None, False
    where = fmt.node_text(ctxs[name] or "N/A", 80)
    default = name == scope.default_context
    app.notify(f"Kubernetes actions now use context {fmt.node_text(name, 60)} ({where})"
               + ("" if default else "; not the default: the header says so"),
               severity="information" if default else "warning", title=":ctx")
    _redraw(app)
    return True


def _pick_context(app: Any) -> None:
    from clustertop.dashboard.dialogs.pick import PickDialog
    from clustertop.wire.text import inert

    try:
        path, ctxs, _current = _contexts(app)
    except ValueError as e:
        app.notify(f":ctx: {e}", severity="error", title=":ctx")
        return
    now = app.settings.k8s_context or scope_of(app).default_context
    opts = [(c, Content(inert(f"{c}{' (in use)' if c == now else ''}  {ctxs[c] or ''}", limit=160)))
            for c in sorted(ctxs)]
    app.push_screen(PickDialog(f"kubeconfig context ({fmt.node_text(path, 100)})", opts),
                    lambda c: None if c is None else set_context(app, c))
