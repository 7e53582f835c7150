"""Provides the node-local parts of the Storage screen as Content lines: block devices, filesystems
and network mounts (NFS, CephFS, sshfs) per node.

Down nodes are left out (their last report says nothing about now); stale ones are greyed and
marked. Mounts with a problem come first, a hung one says since when. Every list is bounded: on a
big cluster the busiest disks, the fullest filesystems and every problem mount are shown, the rest
counted.
"""

from __future__ import annotations

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets.capacity import fraction, usage_bar
from clustertop.dashboard.widgets.ceph_sections import na, pad, title
from clustertop.read import layers
from clustertop.read.reader import NodeView
from clustertop.wire import schema

Part = str | tuple[str, str]

MAX_DISK_ROWS = 120
MAX_FS_ROWS = 120
MAX_OK_MOUNTS = 100
FS_WARN_PCT, FS_CRIT_PCT = 85.0, 95.0  # the cluster alert fires at 95 %
MOUNT_RANK = {"hung": 0, "slow": 1, "unknown": 2, "ok": 3}


def _host_w(nodes: list[NodeView]) -> int:
    return min(16, max([4, *(len(v.host) for v in nodes)]))


def _node_style(v: NodeView) -> str:
    return "bold" if v.state == "up" else "$ct-stale"


def _host_label(v: NodeView) -> str:
    return v.host if v.state == "up" else f"{v.host} ({v.state})"


def disk_lines(nodes: list[NodeView], max_rows: int = MAX_DISK_ROWS) -> list[Content]:
    """Per node, every block device: throughput, utilisation, await, queue depth."""
    # Each disk as the node's snapshot lists it, unmerged (``read.layers``): this tick's read/write rates from
    # the brief beside the full snapshot's entry (IOPS, util, await, queue), merged only for the rows drawn.
    paired: list[tuple[NodeView, layers.Pair | None]] = []
    for v in nodes:
        pairs = layers.disk_pairs(v)
        if pairs is None:
            paired.append((v, None))
        else:
            paired.extend((v, pr) for pr in pairs)
    lines = [title("Local disks")]
    if not paired:
        return lines + [Content.assemble(("no nodes", "dim"))]
    hidden = 0
    if len(paired) > max_rows:
        # The busiest devices matter on a big cluster (util is the full snapshot's figure, as the merged disk's);
        # node order within what is kept.
        busiest = sorted(paired, key=_busy)[:max_rows]
        keep = {id(r) for r in busiest}
        hidden = len(paired) - max_rows
        paired = [r for r in paired if id(r) in keep]
    rows = [(v, layers.merge_disk(pr) if pr is not None else None) for v, pr in paired]
    hw = _host_w([v for v, _ in rows]) + 8
    lines.append(Content.assemble((
        f"{'node':<{hw}} {'device':<10} {'read':>12} {'write':>12} {'IOPS r/w':>11} {'util':>6} {'await':>9} "
        f"{'queue':>6}", "dim")))
    last_host = None
    for v, d in rows:
        host = pad(fmt.node_text(_host_label(v)), hw) if v.host != last_host else " " * hw
        last_host = v.host
        if d is None:
            lines.append(Content.assemble((host, _node_style(v)), " ", ("disks: N/A (not reported)", "dim")))
            continue
        grey = "$ct-stale" if v.state != "up" else ""
        util_sev = {"ok": "", "warn": "$ct-warn", "crit": "$ct-crit", "na": "dim"}[
            fmt.severity_of_pct(d.util_pct, 80, 95)]
        iops = f"{fmt.num(d.read_iops)}/{fmt.num(d.write_iops)}" \
            if d.read_iops is not None or d.write_iops is not None else fmt.NA
        aw = fmt.num(d.await_ms, 1)  # NaN, inf, 1e308: N/A, not "inf ms"
        aw = aw if aw == fmt.NA else f"{aw} ms"
        lines.append(Content.assemble(
            (host, _node_style(v)), " ", (pad(fmt.node_text(d.name), 10), grey), " ",
            na(pad(fmt.rate(d.read_bytes_s), 12, True), grey), " ", na(pad(fmt.rate(d.write_bytes_s), 12, True), grey),
            " ", na(pad(iops, 11, True), grey), " ", na(pad(fmt.pct(d.util_pct), 6, True), grey or util_sev),
            " ", na(pad(aw, 9, True), grey), " ", na(pad(fmt.num(d.queue_depth, 2), 6, True), grey)))
    if hidden:
        lines.append(Content.assemble((f"… and {hidden} more devices (the busiest are shown)", "dim")))
    return lines


def _busy(row: tuple[NodeView, layers.Pair | None]) -> float:
    pair = row[1]
    if pair is None:
        return 1.0
    d = pair[1] if pair[1] is not None else pair[0]  # util: the full snapshot's where it has the disk
    return -(d.util_pct or 0.0)


def fs_lines(nodes: list[NodeView], ascii: bool, max_rows: int = MAX_FS_ROWS) -> list[Content]:
    """Per node, every filesystem: space and inodes (a full inode table stops writes as surely as space)."""
    # As the disks: space is the brief's (current), inodes and type the full snapshot's, merged for rows drawn.
    paired: list[tuple[NodeView, layers.Pair | None]] = []
    for v in nodes:
        pairs = layers.filesystem_pairs(v)
        if pairs is None:
            paired.append((v, None))
        else:
            paired.extend((v, pr) for pr in pairs)
    lines = [title("Filesystems")]
    if not paired:
        return lines + [Content.assemble(("no nodes", "dim"))]
    hidden = 0
    if len(paired) > max_rows:
        def fullest(r: tuple[NodeView, layers.Pair | None]) -> float:
            f = r[1][0] if r[1] is not None else None  # space: the brief's figures, as the merged entry's
            return -(fraction(f.used_bytes, f.total_bytes) or 0.0) if f is not None else 1.0

        keep = {id(r) for r in sorted(paired, key=fullest)[:max_rows]}
        hidden = len(paired) - max_rows
        paired = [r for r in paired if id(r) in keep]
    rows = [(v, layers.merge_filesystem(pr) if pr is not None else None) for v, pr in paired]
    hw = _host_w([v for v, _ in rows]) + 8
    mw = min(24, max([5, *(len(f.mountpoint) for _, f in rows if f is not None)]))
    lines.append(Content.assemble((
        f"{'node':<{hw}} {'mount':<{mw}} {'usage':<16} {'used':>10} {'of':>10} {'inodes':>7}  type", "dim")))
    last_host = None
    for v, f in rows:
        host = pad(fmt.node_text(_host_label(v)), hw) if v.host != last_host else " " * hw
        last_host = v.host
        if f is None:
            lines.append(Content.assemble((host, _node_style(v)), " ", ("filesystems: N/A (not reported)", "dim")))
            continue
        grey = "$ct-stale" if v.state != "up" else ""
        ino = fraction(f.inodes_used, f.inodes_total)
        ino_pct = None if ino is None else 100 * ino
        ino_sev = {"ok": "", "warn": "$ct-warn", "crit": "$ct-crit", "na": "dim"}[
            fmt.severity_of_pct(ino_pct, FS_WARN_PCT, FS_CRIT_PCT)]
        lines.append(Content.assemble(
            (host, _node_style(v)), " ", (pad(fmt.node_text(f.mountpoint), mw), grey), " ",
            *usage_bar(fraction(f.used_bytes, f.total_bytes), 10, ascii, FS_WARN_PCT, FS_CRIT_PCT), " ",
            na(pad(fmt.bytes_(f.used_bytes), 10, True), grey), " ", na(pad(fmt.bytes_(f.total_bytes), 10, True), grey),
            " ", na(pad(fmt.pct(ino_pct), 7, True), grey or ino_sev), "  ",
            (fmt.node_text(f.fstype or "", 12), "dim")))
    if hidden:
        lines.append(Content.assemble((f"… and {hidden} more filesystems (the fullest are shown)", "dim")))
    return lines


def mount_state(m: schema.NetMount, now: float) -> list[Part]:
    if m.state == "hung":
        since = ""
        if m.hung_since_ts is not None:
            since = f" since {fmt.clock(m.hung_since_ts)} ({fmt.age(now - m.hung_since_ts)})"
        return [(f"HUNG{since}", "$ct-crit bold")]
    if m.state == "slow":
        return [("SLOW", "$ct-warn bold")]
    if m.state == "ok":
        return [("ok", "$ct-ok")]
    return [(fmt.node_text(m.state, 12), "dim")]


def mount_rank(m: schema.NetMount) -> int:
    """Hung, slow, unknown or answering with an error, then healthy."""
    if m.state == "ok" and m.error:
        return MOUNT_RANK["unknown"]
    return MOUNT_RANK.get(m.state, MOUNT_RANK["unknown"])


def mount_lines(nodes: list[NodeView], now: float, max_ok: int = MAX_OK_MOUNTS) -> list[Content]:
    """Every network mount with a problem, hung ones first; healthy ones after, bounded."""
    rows: list[tuple[NodeView, schema.NetMount]] = []
    silent = []
    for v in nodes:
        cur = layers.current_head(v)  # network mounts are whole in a brief
        if cur is None or cur.netmounts is None:
            silent.append(v.host)
            continue
        rows.extend((v, m) for m in cur.netmounts)
    lines = [title("Network mounts")]
    if not rows:
        what = "no network mounts" if len(silent) < len(nodes) else "network mounts: N/A (no node reports them)"
        return lines + [Content.assemble((what, "dim"))]
    # Each mount's rank once (thousands of mounts at 1,000 nodes: it was computed three times per mount).
    ranked = sorted(((mount_rank(m), v.host, m.mountpoint, i) for i, (v, m) in enumerate(rows)))
    ok_rank = MOUNT_RANK["ok"]
    bad = [rows[r[3]] for r in ranked if r[0] < ok_rank]
    ok = [rows[r[3]] for r in ranked if r[0] == ok_rank]
    shown = bad + ok[:max_ok]
    hw = _host_w([v for v, _ in shown]) + 8
    mw = min(24, max([5, *(len(m.mountpoint) for _, m in shown)]))
    sw = min(28, max([6, *(len(m.source or "") for _, m in shown)]))
    lines.append(Content.assemble((
        f"{'node':<{hw}} {'mount':<{mw}} {'type':<7} {'source':<{sw}} {'latency':>9}  state", "dim")))
    for v, m in shown:
        grey = "$ct-stale" if v.state != "up" else ""
        lat = fmt.num(m.latency_ms, 1)
        lat = lat if lat == fmt.NA else f"{lat} ms"
        parts: list[Part] = [
            (pad(fmt.node_text(_host_label(v)), hw), _node_style(v)), " ",
            (pad(fmt.node_text(m.mountpoint), mw), grey), " ", (pad(fmt.node_text(m.fstype or fmt.NA), 7), "dim"),
            " ", (pad(fmt.node_text(m.source or fmt.NA), sw), "dim"), " ", na(pad(lat, 9, True), grey), "  ",
            *mount_state(m, now)]
        if m.error:
            parts += ["  ", (fmt.node_text(m.error, 80), "$ct-warn")]
        lines.append(Content.assemble(*parts))
    if len(ok) > max_ok:
        lines.append(Content.assemble((f"… and {len(ok) - max_ok} more mounts, all ok", "dim")))
    if silent and len(silent) < len(nodes):
        names = ", ".join(fmt.node_text(h, 30) for h in silent[:5]) + (" …" if len(silent) > 5 else "")
        lines.append(Content.assemble((f"not reported by {len(silent)} node{'s' if len(silent) != 1 else ''}: ",
                                       "dim"), (names, "dim")))
    return lines
