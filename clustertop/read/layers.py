"""Provides a node's sections as the screens of every node's detail draw them, without building its overlay.

Where a read took a node's full snapshot from an earlier tick and its brief of this one (``Level.DETAIL``: the
storage, network and people screens), ``NodeView.snap`` is their overlay (``wire.brief.fresh``), built only when
first read (``NodeView.defer``). Building it for every node was ~31 ms of every such read at 1,000 nodes, most of
it GPU cards those screens do not draw. A screen that draws one section of every node takes it here instead: the
same figures ``snap`` would give for that section (made by the same functions, ``wire.brief.fresh_*``), built for
that section alone, and nothing at all for the sections it does not draw: not even the brief's GPU section, which
the read checks but leaves unbuilt (``Layers.head``; ``current`` and ``gpus`` build it, ``current_head`` and
``gpu_users`` do not). Where a node has no deferred overlay (read as one snapshot, or already built) each function
is simply that section of ``snap``.

What is current and what is not stays as ``snap`` says it: the brief's figures are this tick's, what only the full
snapshot carries is ``NodeView.detail_age_s`` old. Pure: no I/O; the returned lists may be shared with the read
(never change them).
"""

from __future__ import annotations

from typing import Any

from clustertop.read.model import NodeView
from clustertop.wire import brief as wire_brief
from clustertop.wire import schema
from clustertop.wire.brief import (
    BriefHead,
    fresh_containers,
    fresh_disks,
    fresh_filesystems,
    fresh_gpus,
    fresh_nics,
)
from clustertop.wire.digest import TOTAL_NIC_KINDS


def current(v: NodeView) -> schema.NodeSnapshot | None:
    """The snapshot that carries ``v``'s figures of this tick, without building an overlay: its brief where the
    overlay is deferred (whole there: identity, bonds, network mounts, tasks, templates), else ``snap``. For a
    section only the full snapshot has, use the functions below."""
    layers = v.layers
    if layers is not None and v.pending:
        return layers.brief
    return v.snap


def current_head(v: NodeView) -> schema.NodeSnapshot | None:
    """``current(v)`` for a screen that draws no GPUs (storage, network): every section but ``gpus`` as
    ``current`` has it, without building the brief's GPU section (``wire.brief.decode_head``: most of its cost).
    Its ``gpus`` is not to be read (a deferred brief's holds the section's bytes): for GPUs use ``current`` or
    ``gpus``."""
    layers = v.layers
    if layers is not None and v.pending:
        return layers.head
    return v.snap


def _systems(v: NodeView) -> tuple[schema.System | None, schema.System | None] | None:
    """(full's, brief's) system sections where ``v``'s overlay is deferred, else None."""
    layers = v.layers
    if layers is None or not v.pending:
        return None
    return layers.full.system, layers.head.system


def _system(v: NodeView) -> schema.System | None:
    snap = v.snap
    return snap.system if snap is not None else None


def _section(v: NodeView, name: str, merge: Any) -> Any:
    """One list of ``snap.system`` (``name``) as the overlay gives it: ``merge(full's, brief's)``; as the overlay's
    system section, none now is unknown now, and with no full section all there is is the brief's."""
    both = _systems(v)
    if both is None:
        s = _system(v)
        return getattr(s, name) if s is not None else None
    f, b = both
    if b is None or f is None:
        return getattr(b, name) if b is not None else None
    return merge(getattr(f, name), getattr(b, name))


def nics(v: NodeView) -> list[schema.Nic] | None:
    """Every NIC as ``snap.system.nics`` lists it: the counted ones' rates of this tick, the rest (state, speed,
    errors, virtual NICs) of the full snapshot."""
    return _section(v, "nics", fresh_nics)


def disks(v: NodeView) -> list[schema.DiskIO] | None:
    """Every disk as ``snap.system.disks`` lists it: read/write rates of this tick, IOPS, util, await and queue
    of the full snapshot."""
    return _section(v, "disks", fresh_disks)


def filesystems(v: NodeView) -> list[schema.Filesystem] | None:
    """Every filesystem as ``snap.system.filesystems`` lists it: space of this tick, inodes and type of the full
    snapshot."""
    return _section(v, "filesystems", fresh_filesystems)


def procs(v: NodeView) -> list[schema.Proc] | None:
    """The top processes (``snap.system.procs``): the full snapshot's (no brief carries them)."""
    both = _systems(v)
    if both is None:
        s = _system(v)
        return s.procs if s is not None else None
    f, b = both
    return f.procs if f is not None and b is not None else None


# ---------------------------------------------------------------------------------------------
# Per row: a screen that lists every disk, filesystem or NIC of every node but draws only some of them (the busiest
# disks, the fullest filesystems, the NICs in view) pairs each entry with the full snapshot's entry of the same
# name, and merges the two (``merge_*``: the overlay's own function on one entry) only for the rows it draws.
# ---------------------------------------------------------------------------------------------

#: An entry as ``snap``'s section lists it, unmerged: (the entry that says what it is and its current figures: the
#: brief's, or the full snapshot's where the brief does not carry it; the full snapshot's entry of the same name
#: whose other fields the merged entry keeps, or None where there is nothing to merge).
Pair = tuple[Any, Any]


def _by_name(entries: list[Any] | None, key: str) -> dict[Any, Any]:
    return {getattr(x, key): x for x in entries or ()}  # the last of a name, as the overlay takes it


def _paired(v: NodeView, section: str, key: str) -> list[Pair] | None:
    both = _systems(v)
    if both is None:
        s = _system(v)
        entries = getattr(s, section) if s is not None else None
        return None if entries is None else [(x, None) for x in entries]
    f, b = both
    if b is None or f is None:
        entries = getattr(b, section) if b is not None else None
        return None if entries is None else [(x, None) for x in entries]
    now, old = getattr(b, section), getattr(f, section)
    if now is None or old is None:  # as ``fresh_disks``/``fresh_filesystems``: the brief's list, unmerged
        return None if now is None else [(x, None) for x in now]
    kept = _by_name(old, key)
    get = kept.get
    return [(x, get(getattr(x, key))) for x in now]


def disk_pairs(v: NodeView) -> list[Pair] | None:
    """``disks(v)`` unmerged, in its order: (the disk as the brief has it, the full snapshot's of that name)."""
    return _paired(v, "disks", "name")


def filesystem_pairs(v: NodeView) -> list[Pair] | None:
    """``filesystems(v)`` unmerged, in its order: (the brief's filesystem, the full snapshot's of that mountpoint)."""
    return _paired(v, "filesystems", "mountpoint")


def nic_pairs(v: NodeView) -> list[Pair] | None:
    """``nics(v)`` unmerged, in its order: the full snapshot's NICs (those the brief counts paired with the
    brief's of that name; the others, virtual, loopback, bond slaves, alone), then the brief's new ones."""
    both = _systems(v)
    if both is None:
        s = _system(v)
        return None if s is None or s.nics is None else [(n, None) for n in s.nics]
    f, b = both
    if b is None or f is None:
        return None if b is None or b.nics is None else [(n, None) for n in b.nics]
    if b.nics is None or f.nics is None:
        return None if b.nics is None else [(n, None) for n in b.nics]
    new = _by_name(b.nics, "name")
    out: list[Pair] = []
    for o in f.nics:
        n = new.pop(o.name, None)
        if n is not None:
            out.append((n, o))
        elif o.kind not in TOTAL_NIC_KINDS:
            out.append((o, None))
    out += [(n, None) for n in new.values()]
    return out


def merge_disk(pair: Pair) -> schema.DiskIO:
    """The disk as ``disks(v)`` has it."""
    now, old = pair
    if old is None:
        return now
    return fresh_disks([old], [now])[0]  # type: ignore[index]


def merge_filesystem(pair: Pair) -> schema.Filesystem:
    """The filesystem as ``filesystems(v)`` has it."""
    now, old = pair
    if old is None:
        return now
    return fresh_filesystems([old], [now])[0]  # type: ignore[index]


def merge_nic(pair: Pair) -> schema.Nic:
    """The NIC as ``nics(v)`` has it."""
    now, old = pair
    if old is None:
        return now
    return fresh_nics([old], [now])[0]  # type: ignore[index]


def gpus(v: NodeView) -> list[schema.Gpu] | None:
    """Every GPU as ``snap.gpus`` lists it (this tick's figures and processes; VRAM and command lines of the
    processes the full snapshot also lists). The costly section: take it only for the nodes that need it."""
    layers = v.layers
    if layers is None or not v.pending:
        snap = v.snap
        return snap.gpus if snap is not None else None
    return fresh_gpus(layers.full.gpus, layers.brief.gpus)


def gpu_users(v: NodeView) -> set[str | None]:
    """The user names of ``v``'s GPU processes as ``gpus(v)`` lists them (None: a process whose user is unknown),
    without building the brief's GPU section where it is not built (``wire.brief.gpu_users``): the people screen
    takes ``gpus(v)`` only where its user is among them."""
    layers = v.layers
    if layers is None or not v.pending or not isinstance(layers.head, BriefHead):
        snap = current(v)
        return {p.user for g in (snap.gpus if snap is not None else None) or () for p in g.procs or ()}
    return wire_brief.gpu_users(layers.head)


def containers(v: NodeView) -> schema.Containers | None:
    """The container list (``snap.containers``): the full snapshot's, with this tick's templates."""
    layers = v.layers
    if layers is None or not v.pending:
        snap = v.snap
        return snap.containers if snap is not None else None
    return fresh_containers(layers.full.containers, layers.head.containers)
