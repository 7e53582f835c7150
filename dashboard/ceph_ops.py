"""Provides the dashboard's Ceph keys: RBD snapshots and clones from the storage screen (``r``), noout /
norebalance and OSD out/in from a node's screen (``o``), and noout offered before a Kubernetes drain.

Each key picks what to act on from what the screen draws (the RBD tree's lines, the node's OSDs from the
Ceph payload), asks for a name where one is needed (checked as ``clustertop ceph`` checks it), shows a
confirm dialog saying exactly what will happen (the CLI's words, ``control.ceph.WARNINGS``), then runs
``control.ceph.CephControl`` through ``Actions.execute``: read-only re-checked, audited in the operator's
stream under the CLI's action names (``ceph.snap_create``, ``ceph.clone``, ``ceph.flag_set_noout``,
``ceph.osd_out``...), the outcome notified in Ceph's own (escaped) words, the screen re-read. The access
is the operator's own (``[ceph]`` of the dashboard's config, or CLUSTERTOP_CEPH_*); without it every key
says so. In the demo the same calls go to the simulated Ceph (``sim.control.SimCeph``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.dashboard.actions import Actions, Outcome, fields
from clustertop.dashboard.widgets.ceph_maint import data_of, flag_set, node_osds
from clustertop.dashboard.widgets.rbdtree import rbd_rows
from clustertop.wire import schema

SEP = "\x1f"  # between the parts of an option id: no pool, image or snapshot name contains it
#: RBD tree lines offered at most (the tree itself is cut at the same length).
PICK_MAX = 200


def _warning(what: str) -> str:
    from clustertop.control.ceph import WARNINGS

    return WARNINGS.get(what, "")


def _ready(acts: Actions, what: str) -> bool:
    """The checks at the key: read-only, and the operator's Ceph access configured (else said, not ignored)."""
    if not acts.allowed(what):
        return False
    why = acts.ceph_missing()
    if why:
        acts.notify(why, "error", title="Ceph")
        return False
    return True


def _outcome(r: Any) -> Outcome:
    return Outcome(bool(r.ok), str(r.text))


def _mgr(acts: Actions) -> str:
    """Where the action goes, for the dialog: the mgr URLs, or the simulated cluster."""
    if acts._demo() is not None:
        return "the demo's simulated Ceph"
    a = acts.settings.ceph
    return ", ".join(a.urls) + f" as {a.username}" if a is not None else fmt.NA


def _run(acts: Actions, action: str, target: str, call: Callable[[Any], Any],
         then: Callable[[Outcome], None] | None = None) -> None:
    acts.execute(action, target, lambda: _outcome(call(acts.ceph())), then)


def _confirm(acts: Actions, title: str, rows: list[tuple[str, str]], label: str, action: str, target: str,
             call: Callable[[Any], Any], then: Callable[[Outcome], None] | None = None) -> None:
    from clustertop.dashboard.dialogs.confirm import ConfirmDialog

    body = fields([*rows, ("via", _mgr(acts)), ("audited as", f"{action} {target}")])

    def answered(yes: bool | None) -> None:
        if yes:
            _run(acts, action, target, call, then)

    acts.app.push_screen(ConfirmDialog(title, body, label), answered)


# -- RBD: the storage screen's r ---------------------------------------------------------------------


def ask_rbd(acts: Actions, payload: schema.ClusterPayload | None) -> None:
    """r: pick an image or a snapshot from the RBD tree, then what to do with it."""
    from clustertop.dashboard.dialogs.pick import PickDialog

    if not _ready(acts, "Ceph RBD action"):
        return
    c = payload.ceph if payload is not None else None
    images = c.images if c is not None else None
    if not images:
        acts.notify("no RBD images listed in the Ceph payload" if images is not None else
                    "RBD images: N/A (Ceph not polled, or its images not read yet)", "warning")
        return
    ascii = bool(getattr(acts.settings, "ascii", False))
    # The names come from the Ceph payload (data any lease holder wrote): only those the CLI would take are
    # offered ("..", separators, controls would make another path of the request).
    options = [(SEP.join(t), line) for t, line in rbd_rows(images, ascii, PICK_MAX) if actionable(t)]
    if not options:
        acts.notify("no RBD image or snapshot with a name Ceph actions can take", "warning")
        return

    def picked(oid: str | None) -> None:
        if oid is not None:
            ask_rbd_action(acts, images, tuple(oid.split(SEP)))

    acts.app.push_screen(PickDialog("Which RBD image or snapshot?", options), picked)


def actionable(target: tuple[str, ...] | None) -> bool:
    """Whether a line of the RBD tree names an image or snapshot as ``clustertop ceph`` would take it (pure)."""
    from clustertop.control.ceph import SpecError, parse_spec

    if target is None or len(target) not in (2, 3) or SEP in "".join(target):
        return False
    try:
        parse_spec(target[1] + (f"@{target[2]}" if len(target) == 3 else ""), snap=len(target) == 3)
    except SpecError:
        return False
    return True


def _image(images: list[schema.RbdImage], spec: str) -> schema.RbdImage | None:
    return next((im for im in images if f"{im.pool}/{im.name}" == spec), None)


def rbd_choices(images: list[schema.RbdImage], target: tuple[str, ...]) -> list[tuple[str, str]]:
    """What can be done with an image or a snapshot, as the payload shows it (pure): (id, words)."""
    im = _image(images, target[1]) if len(target) >= 2 else None
    if im is None:
        return []
    if target[0] == "image":
        out = [("snap create", "Create a snapshot (you name it)")]
        if im.parent:
            out.append(("flatten", f"Flatten: copy {im.parent}'s data in, so it has no parent"))
        return out
    snap = next((s for s in im.snapshots or () if s.name == target[2]), None) if len(target) == 3 else None
    if snap is None:
        return []
    kids = len(snap.children or ())
    if snap.protected:
        out = [("clone", "Clone into a new image (you name it: POOL/NAME)")]
        out.append(("snap unprotect", "Unprotect" + (f" (Ceph refuses: {kids} clone(s) use it)" if kids else "")))
    else:
        out = [("snap protect", "Protect (needed before cloning it)"),
               ("snap rm", "Delete the snapshot")]
    return out


def ask_rbd_action(acts: Actions, images: list[schema.RbdImage], target: tuple[str, ...]) -> None:
    from clustertop.dashboard.dialogs.pick import PickDialog

    choices = rbd_choices(images, target)
    if not choices:
        acts.notify("that image or snapshot is no longer listed", "warning")
        return
    spec = target[1]
    name = f"{spec}@{target[2]}" if target[0] == "snap" else spec
    options = [(oid, Content(words)) for oid, words in choices]

    def picked(oid: str | None) -> None:
        if oid is None:
            return
        if oid == "snap create":
            ask_snap_create(acts, images, spec)
        elif oid == "clone":
            ask_clone(acts, images, spec, target[2])
        elif oid == "flatten":
            im = _image(images, spec)
            ask_flatten(acts, spec, im.parent if im is not None else None)
        else:
            ask_snap(acts, oid.split()[1], spec, target[2])

    acts.app.push_screen(PickDialog(f"{'Snapshot' if target[0] == 'snap' else 'Image'} "
                                    f"{fmt.node_text(name, 100)}: what to do?", options), picked)


def snap_name_problem(images: list[schema.RbdImage], spec: str, name: str) -> str | None:
    """Why ``name`` cannot be a new snapshot of ``spec`` (pure; None: it can)."""
    from clustertop.control.ceph import name_problem

    why = name_problem(name)
    if why:
        return f"not a snapshot name: {why}"
    im = _image(images, spec)
    if im is not None and any(s.name == name for s in im.snapshots or ()):
        return f"{fmt.node_text(spec, 80)} already has a snapshot of that name"
    return None


def clone_problem(images: list[schema.RbdImage], child: str) -> str | None:
    """Why ``child`` cannot be the new image (pure; None: it can): POOL/NAME or POOL/NAMESPACE/NAME, not taken."""
    from clustertop.control.ceph import SpecError, parse_spec

    try:
        parse_spec(child, snap=False)
    except SpecError:
        return "expected POOL/NAME (or POOL/NAMESPACE/NAME): no '@', blanks or control characters"
    if _image(images, child) is not None:
        return "an image of that name exists"
    return None


def ask_snap_create(acts: Actions, images: list[schema.RbdImage], spec: str) -> None:
    from clustertop.dashboard.dialogs.prompt import TextPrompt

    im = _image(images, spec)
    body = fields([("image", spec), ("size", fmt.bytes_(im.size_bytes if im else None)),
                   ("snapshots now", ", ".join(s.name for s in (im.snapshots or [])) if im and im.snapshots else "none")])

    def named(name: str | None) -> None:
        if name is None:
            return
        target = f"{spec}@{name}"
        _confirm(acts, f"Create snapshot {fmt.node_text(target, 100)}?",
                 [("image", spec), ("snapshot", name), ("does", _warning("snap create"))], "Create snapshot",
                 "ceph.snap_create", target, lambda ctl: ctl.snap_create(spec, name))

    acts.app.push_screen(TextPrompt(f"New snapshot of {fmt.node_text(spec, 100)}", body, "snapshot name",
                                    "Next", lambda text: snap_name_problem(images, spec, text)), named)


def ask_snap(acts: Actions, op: str, spec: str, snap: str) -> None:
    """protect / unprotect / rm of ``spec@snap``: the dialog, then the call."""
    target = f"{spec}@{snap}"
    verb = {"protect": "Protect", "unprotect": "Unprotect", "rm": "Delete"}[op]
    if op == "rm":
        call: Callable[[Any], Any] = lambda ctl: ctl.snap_remove(spec, snap)  # noqa: E731
    else:
        call = lambda ctl: ctl.snap_protect(spec, snap, op == "protect")  # noqa: E731
    _confirm(acts, f"{verb} snapshot {fmt.node_text(target, 100)}?",
             [("snapshot", target), ("does", _warning(f"snap {op}"))], f"{verb} snapshot",
             f"ceph.snap_{op}", target, call)


def ask_clone(acts: Actions, images: list[schema.RbdImage], spec: str, snap: str) -> None:
    from clustertop.dashboard.dialogs.prompt import TextPrompt

    source = f"{spec}@{snap}"
    pool = spec.split("/", 1)[0]
    body = fields([("from", f"{source} (protected)"), ("new image", f"POOL/NAME, e.g. {pool}/{spec.split('/')[-1]}-copy")])

    def named(child: str | None) -> None:
        if child is None:
            return
        _confirm(acts, f"Clone {fmt.node_text(source, 80)} into {fmt.node_text(child, 80)}?",
                 [("from", source), ("new image", child), ("does", _warning("clone"))], "Clone",
                 "ceph.clone", f"{source} -> {child}", lambda ctl: ctl.clone(spec, snap, child))

    acts.app.push_screen(TextPrompt(f"Clone {fmt.node_text(source, 100)}", body, "POOL/NAME of the new image",
                                    "Next", lambda text: clone_problem(images, text)), named)


def ask_flatten(acts: Actions, spec: str, parent: str | None) -> None:
    _confirm(acts, f"Flatten {fmt.node_text(spec, 100)}?",
             [("image", spec), ("parent now", parent or fmt.NA), ("does", _warning("flatten"))], "Flatten",
             "ceph.flatten", spec, lambda ctl: ctl.flatten(spec))


# -- maintenance: a node's screen's o ------------------------------------------------------------------


def maint_choices(payload: schema.ClusterPayload | None, node: str) -> list[tuple[str, str]]:
    """The flags to set or unset (as health shows them; both ways when unknown) and this node's OSDs to mark
    out or in (pure): (id, words)."""
    c = payload.ceph if payload is not None else None
    out: list[tuple[str, str]] = []
    for flag in ("noout", "norebalance"):
        now = flag_set(c, flag) if c is not None else None
        if now is not True:
            out.append((f"flag{SEP}{flag}{SEP}set", f"Set {flag}" + (" (now: N/A)" if now is None else "")))
        if now is not False:
            out.append((f"flag{SEP}{flag}{SEP}unset", f"Unset {flag}" + (" (now: N/A)" if now is None else "")))
    for o in node_osds(payload, node):
        state = f"{'up' if o.up else 'down' if o.up is False else fmt.NA}/" \
                f"{'in' if o.in_ else 'out' if o.in_ is False else fmt.NA}"
        used = f"{state}, used {fmt.bytes_(o.used_bytes)} of {fmt.bytes_(o.total_bytes)}"
        if o.in_ is not False:
            out.append((f"osd{SEP}{o.id}{SEP}out", f"Mark osd.{o.id} out ({used})"))
        if o.in_ is not True:
            out.append((f"osd{SEP}{o.id}{SEP}in", f"Mark osd.{o.id} in ({used})"))
    return out


def ask_maint(acts: Actions, payload: schema.ClusterPayload | None, node: str) -> None:
    """o: noout / norebalance, and this node's OSDs out / in."""
    from clustertop.dashboard.dialogs.pick import PickDialog

    if not _ready(acts, "Ceph maintenance"):
        return
    if payload is None or payload.ceph is None:
        acts.notify("Ceph: no data (no agent polls it, or not yet): nothing to show the flags or OSDs from",
                    "warning")
        return
    osds = node_osds(payload, node)
    head = (f"{fmt.node_text(node, 60)}: {len(osds)} Ceph OSD(s), {data_of(osds)} of data" if osds else
            f"{fmt.node_text(node, 60)}: Ceph places no OSD here; the cluster flags")
    options = [(oid, Content(words)) for oid, words in maint_choices(payload, node)]

    def picked(oid: str | None) -> None:
        if oid is None:
            return
        kind, what, op = oid.split(SEP)
        if kind == "flag":
            ask_flag(acts, what, op == "set")
        else:
            ask_osd(acts, int(what), op)

    acts.app.push_screen(PickDialog(head, options), picked)


def ask_flag(acts: Actions, flag: str, on: bool, then: Callable[[Outcome], None] | None = None,
             why: str | None = None) -> None:
    verb = "set" if on else "unset"
    rows = [("flag", f"{flag} (cluster-wide)"), ("does", _warning(f"flag {verb} {flag}"))]
    if why:
        rows.insert(0, ("why", why))
    _confirm(acts, f"{verb.capitalize()} the cluster flag {flag}?", rows, f"{verb.capitalize()} {flag}",
             f"ceph.flag_{verb}_{flag}", flag, lambda ctl: ctl.set_flag(flag, on), then)


def ask_osd(acts: Actions, osd: int, op: str) -> None:
    _confirm(acts, f"Mark osd.{osd} {op}?", [("OSD", f"osd.{osd}"), ("does", _warning(f"osd {op}"))],
             f"Mark {op}", f"ceph.osd_{op}", f"osd.{osd}", lambda ctl: ctl.osd_mark(osd, op))


# -- before a drain ---------------------------------------------------------------------------------


def drain_note(payload: schema.ClusterPayload | None, node: str) -> tuple[str | None, bool]:
    """What a drain's dialog says about Ceph on ``node`` (pure): (the line, whether to offer noout first).
    (None, False) when Ceph places no OSD there."""
    osds = node_osds(payload, node)
    if not osds or payload is None or payload.ceph is None:
        return None, False
    carries = f"{len(osds)} Ceph OSD(s) with {data_of(osds)} of data"
    noout = flag_set(payload.ceph, "noout")
    if noout:
        return f"{carries}; noout is set: they stay in while the node is away", False
    if noout is None:
        return f"{carries}; whether noout is set is unknown (no health checks)", False
    return (f"{carries}; noout is NOT set: if the node is down longer than mon_osd_down_out_interval its OSDs "
            "are marked out and their data moves"), True


def offer_noout(acts: Actions, payload: schema.ClusterPayload | None, node: str,
                drain: Callable[[str | None], None]) -> None:
    """Before a drain's dialog: when ``node`` carries OSDs and noout is not set, say so and offer to set it
    first; ``drain(note)`` then shows the drain's dialog with what Ceph will do (``note``). Cancelling the noout
    dialog cancels the drain too."""
    from clustertop.dashboard.dialogs.pick import PickDialog

    note, offer = drain_note(payload, node)
    if not offer:
        drain(note)
        return
    if acts.ceph_missing():  # said in the drain's dialog; nothing to set noout with from here
        drain(f"{note} (setting it from here needs [ceph] access: {acts.ceph_missing()})")
        return
    options = [("noout", Content("Set noout first (asks to confirm), then drain")),
               ("drain", Content("Drain without noout"))]

    def after_noout(out: Outcome) -> None:
        drain(f"{note.split(';')[0]}; noout set just now" if out.ok else f"{note} (setting noout failed: {out.text})")

    def picked(oid: str | None) -> None:
        if oid == "noout":
            ask_flag(acts, "noout", True, then=after_noout, why=f"before draining {node}, which carries Ceph OSDs")
        elif oid == "drain":
            drain(note)

    assert note is not None
    acts.app.push_screen(PickDialog(f"{fmt.node_text(node, 60)} carries {note.split(' with ')[0]}, and noout is "
                                    "not set", options), picked)
