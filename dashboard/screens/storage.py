"""Provides the Storage screen: Ceph (health in words, capacity, PGs, I/O over time, OSDs, pools, the
RBD clone tree), then each node's local disks, filesystems and network mounts.

Ceph is a cluster fact published by whichever agent holds its lease (``ct:v1:cluster:ceph``):
- no payload at all: "Ceph not configured (no agent polls it)", never zeros;
- a payload with ``ok=False``: a banner "Ceph unreachable: <why> - last good data N ago" and the
  last good data below it, dimmed;
- a payload that stopped changing (the lease holder died): its age, in the warning colour.
Each section is a Static updated only when its text changes; the Ceph part is rebuilt only when a
new payload (or a new width) arrives, the local part on every read (it changes every second).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.containers import Container, VerticalGroup, VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets import ceph_sections as cs
from clustertop.dashboard.widgets.header import aged, oldest_detail
from clustertop.dashboard.widgets.local_storage import disk_lines, fs_lines, mount_lines
from clustertop.dashboard.widgets.rbdtree import rbd_tree
from clustertop.dashboard.widgets.steady import Shape, steady_update
from clustertop.read import layers
from clustertop.wire import schema

CEPH_SECTIONS = ("health", "capacity", "pgs", "io", "osds", "pools", "rbd")
LOCAL_SECTIONS = ("disks", "filesystems", "mounts")
#: A payload older than this many of its intervals is called stale (its publisher stopped).
STALE_INTERVALS = 3


def ceph_reason(error: str | None) -> str:
    """The words after "Ceph unreachable: ". The runner reports "<ExceptionType>: <message>" and the
    collector's messages already start with "Ceph unreachable: ...": both prefixes are dropped, so
    the banner never reads "Ceph unreachable: CephUnreachable: Ceph unreachable: ..."."""
    if not error:
        return "no answer"
    text = error
    head, sep, rest = text.partition(": ")
    if sep and head.isidentifier() and " " not in head:
        text = rest
    prefix = "Ceph unreachable: "
    return text[len(prefix):] if text.startswith(prefix) else text


def banner(payload: schema.ClusterPayload | None, decode_error: str | None, now: float) -> list[Content]:
    """What Ceph is doing in one or two lines, before any data."""
    if payload is None:
        if decode_error:
            return [Content.assemble(("Ceph payload unreadable: ", "$ct-crit bold"),
                                     (fmt.node_text(decode_error, 200), "$ct-crit"))]
        return [Content.assemble(("Ceph not configured", "bold"), (" (no agent polls it)", "dim"))]
    src = fmt.node_text(payload.source_host or "?", 40)
    if not payload.ok:
        if payload.last_ok_ts is not None and payload.ceph is not None:
            age = f"last good data {fmt.age(now - payload.last_ok_ts)} ago (shown dimmed)"
        else:
            age = "no good data yet"
        return [Content.assemble(("Ceph unreachable: ", "$ct-crit bold"),
                                 (fmt.node_text(ceph_reason(payload.error), 240), "$ct-crit"),
                                 (f" - {age}", "$ct-crit")),
                Content.assemble((f"reported by {src} at {fmt.clock(payload.ts)}", "dim"))]
    c = payload.ceph
    age_s = now - payload.ts
    stale = age_s > STALE_INTERVALS * max(1.0, payload.interval_s)
    age_part = (f"data {fmt.age(age_s)} old: its publisher ({src}) stopped reporting", "$ct-warn bold") if stale \
        else (f"data {fmt.age(age_s)} old", "dim")
    if c is None:
        return [Content.assemble(("Ceph: no data", "$ct-warn"), "  ", age_part)]
    status = c.status
    lines = [Content.assemble(
        ("Ceph ", "bold"), (fmt.node_text(status, 20), cs.STATUS_STYLE.get(status, "$ct-crit bold"))
        if status else (fmt.NA, "dim"), "  ", age_part,
        (f"  polled by {src}", "dim"), (f" from {fmt.node_text(c.url, 60)}" if c.url else "", "dim"))]
    for err in (c.errors or ())[:3]:
        lines.append(Content.assemble(("partial: ", "$ct-warn"), (fmt.node_text(err, 200), "$ct-warn")))
    return lines


class IoSection(Static):
    """The I/O plot: its width is only known once laid out, so a resize redraws the Ceph part."""

    def on_resize(self) -> None:
        screen = self.screen
        if isinstance(screen, StorageScreen):
            screen.check_width()


class StorageScreen(DataScreen):
    screen_name = "storage"
    # RBD snapshots and clones (dashboard/ceph_ops.py): pick a line of the tree, then what to do with it.
    BINDINGS = [Binding("r", "ceph_rbd", "RBD")]

    DEFAULT_CSS = """
    StorageScreen #storage { padding: 0 1; }
    StorageScreen .section { height: auto; margin-bottom: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    StorageScreen #ceph-banner { height: auto; margin-bottom: 1; }
    StorageScreen #ceph { height: auto; layout: vertical; }
    StorageScreen.-wide #ceph { layout: horizontal; }
    StorageScreen #ceph-left, StorageScreen #ceph-right { height: auto; width: 1fr; }
    StorageScreen.-wide #ceph-left { margin-right: 2; }
    StorageScreen #ceph.-stale .section { text-opacity: 55%; }  /* text-opacity is not inherited */
    StorageScreen #ceph.-hidden { display: none; }
    StorageScreen #health { text-wrap: wrap; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, tuple[str, list[Any]]] = {}  # per section, its text and styles as drawn
        self._ceph_sig: tuple[object, ...] = ()
        self._ceph_width = 0
        self._plain: dict[str, str] = {}
        self._shapes: dict[str, Shape] = {}  # per section, the shape it was drawn at (steady_update)

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="storage"):
            yield Static("", id="ceph-banner")
            with Container(id="ceph"):
                with VerticalGroup(id="ceph-left"):
                    for name in ("health", "capacity", "pgs"):
                        yield Static("", id=name, classes="section")
                    yield IoSection("", id="io", classes="section")
                with VerticalGroup(id="ceph-right"):
                    for name in ("osds", "pools", "rbd"):
                        yield Static("", id=name, classes="section")
            for name in LOCAL_SECTIONS:
                yield Static("", id=name, classes="section")

    def on_mount(self) -> None:
        self.query_one("#storage").focus()

    def on_resize(self) -> None:
        view = getattr(self.app, "view", None)
        if view is not None and view.state is not None:
            self.show(view, force=True)

    # -- drawing --------------------------------------------------------------------------------

    def draw(self, view: View) -> None:
        assert view.state is not None
        ascii = self.app.settings.ascii  # type: ignore[attr-defined]
        state = view.state
        payload = state.cluster.get("ceph")
        self._set("ceph-banner", banner(payload, state.cluster_errors.get("ceph"), view.now))
        self._draw_ceph(payload, view, ascii)
        nodes = [v for v in state.nodes if v.state != "down" and layers.current_head(v) is not None]
        # Read/write rates and space are this tick's (briefs); the rest, where a node's full snapshot is older,
        # is that snapshot's, and said so (read.plan.Level.DETAIL: this screen asks no node for a fresh one).
        old = oldest_detail(nodes)
        disks = disk_lines(nodes)
        disks[0] = aged(disks[0], "read/write current; IOPS, util, await, queue", old)
        self._set("disks", disks)
        fss = fs_lines(nodes, ascii)
        fss[0] = aged(fss[0], "space current; inodes", old)
        self._set("filesystems", fss)
        self._set("mounts", mount_lines(nodes, view.now))

    def _draw_ceph(self, payload: schema.ClusterPayload | None, view: View, ascii: bool) -> None:
        box = self.query_one("#ceph", Container)
        c = payload.ceph if payload is not None else None
        box.set_class(c is None, "-hidden")
        box.set_class(payload is not None and not payload.ok, "-stale")
        if c is None or payload is None:
            return
        # The column's real width once laid out; before that, the screen's share of it.
        width = self.query_one("#io", Static).content_size.width or \
            (self.size.width or 80) // (2 if self.has_class("-wide") else 1) - 4
        width = max(40, width)
        # A new payload has a new ts (each read decodes a new object, so identity says nothing).
        sig = (payload.source_host, payload.seq, payload.ts, payload.ok, width, len(view.ceph_io), ascii,
               self.app.palette.version)  # type: ignore[attr-defined]
        if sig == self._ceph_sig:
            return
        self._ceph_sig = sig
        self._ceph_width = width
        self._set("health", cs.health_lines(c))
        self._set("capacity", cs.capacity_lines(c, width, ascii))
        self._set("pgs", cs.pg_lines(c))
        self._set("io", cs.io_section(c, view.ceph_io, width, ascii))
        osds = cs.osd_lines(c.osds, width, ascii)
        if c.detail_ts is not None and c.osds is not None and payload.ts - c.detail_ts > payload.interval_s:
            # Detail endpoints are polled less often than health: say so when it shows.
            osds[0] = Content.assemble(osds[0], (f"  detail {fmt.age(payload.ts - c.detail_ts)} older than health", "dim"))
        self._set("osds", osds)
        self._set("pools", cs.pool_lines(c.pools, width, ascii))
        self._set("rbd", [cs.title("RBD images"), *rbd_tree(c.images, ascii)])

    def action_ceph_rbd(self) -> None:
        from clustertop.dashboard.actions import actions_of
        from clustertop.dashboard.ceph_ops import ask_rbd

        state = self.app.view.state  # type: ignore[attr-defined]
        ask_rbd(actions_of(self.app), state.cluster.get("ceph") if state is not None else None)

    def check_width(self) -> None:
        """Before the first layout the width is a guess: draw again at the real one."""
        width = self.query_one("#io", Static).content_size.width
        view = getattr(self.app, "view", None)
        if width and width != self._ceph_width and view is not None and view.state is not None:
            self.show(view, force=True)

    def _set(self, wid: str, lines: list[Content]) -> None:
        content = Content("\n").join(lines)
        # Text and styles, compared as they are: building the markup to compare cost ~1 ms per 120-line section.
        shown = (content.plain, content.spans)
        if self._shown.get(wid) == shown:
            return
        self._shown[wid] = shown
        self._plain[wid] = content.plain
        # Rates change every read: a new layout only when the section's height may change (steady.py).
        self._shapes[wid] = steady_update(self.query_one(f"#{wid}", Static), content, self._shapes.get(wid))

    def section_text(self, wid: str) -> str:
        """What a section says, as plain text (tests read the screen in words)."""
        return self._plain.get(wid, "")
