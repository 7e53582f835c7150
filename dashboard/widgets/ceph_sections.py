"""Provides the Ceph parts of the Storage screen as Content lines: health checks in words, capacity,
PG states, client/recovery I/O, the OSD table and the pools.

Pure functions of a ``schema.Ceph`` (plus width and ASCII mode), so tests read exactly what a person
reads. Every unknown is "N/A" (dim), never 0: a Ceph that did not send its OSD list shows
"OSDs: N/A", not an empty table. Names (hosts, pools, check messages) go in as plain text only.
"""

from __future__ import annotations

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.dashboard.widgets.capacity import CEPH_FULL_PCT, CEPH_NEARFULL_PCT, count, fraction, usage_bar
from clustertop.dashboard.widgets.cephio import CephIoRing, io_lines
from clustertop.wire import schema

Part = str | tuple[str, str]

CHECK_DETAIL_LINES = 3
CHECK_ORDER = {"HEALTH_ERR": 0, "HEALTH_WARN": 1}
CHECK_LABEL = {"HEALTH_ERR": ("ERR ", "$ct-crit bold"), "HEALTH_WARN": ("WARN", "$ct-warn bold")}
STATUS_STYLE = {"HEALTH_OK": "$ct-ok bold", "HEALTH_WARN": "$ct-warn bold", "HEALTH_ERR": "$ct-crit bold"}
#: PG state words by how worried to be (a PG's state is the worst of its words).
PG_CRIT = ("down", "incomplete", "stale", "inconsistent", "unknown", "peering", "snaptrim_error", "unfound",
           "backfill_toofull", "recovery_toofull")
PG_WARN = ("degraded", "undersized", "remapped", "misplaced", "peered", "backfill_unfound")
PG_INFO = ("recovering", "backfilling", "backfill_wait", "recovery_wait", "scrubbing", "deep", "repair",
           "activating", "creating")
OSD_BAR_W = 10
POOL_BAR_W = 10


def title(text: str) -> Content:
    return Content.assemble((text, "bold $primary"))


def na(s: str, style: str = "") -> Part:
    """Unknown shows dim (padded or not), so it never reads as a value."""
    return (s, "dim") if s.strip() == fmt.NA else (s, style)


def pad(s: str, w: int, right: bool = False) -> str:
    s = s if len(s) <= w else s[: max(0, w - 1)] + "…"
    return f"{s:>{w}}" if right else f"{s:<{w}}"


# ---------------------------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------------------------


def status_parts(c: schema.Ceph) -> list[Part]:
    status = c.status
    parts: list[Part] = [(fmt.node_text(status, 20), STATUS_STYLE.get(status, "$ct-crit bold"))
                         if status else (fmt.NA, "dim")]
    mons = f"{fmt.num(c.mons_quorum)}/{fmt.num(c.mons)}" if c.mons is not None else fmt.NA
    mon_style = "$ct-warn" if c.mons is not None and c.mons_quorum is not None and c.mons_quorum < c.mons else ""
    parts += [("  mons ", "dim"), na(mons, mon_style), (" in quorum", "dim"),
              ("  mgr ", "dim"), na(fmt.node_text(c.mgr_active, 40))]
    if c.mgr_standbys is not None:
        parts.append((f" +{fmt.num(c.mgr_standbys)} standby", "dim"))
    osd_style = "$ct-warn" if c.osds_up is not None and c.osds_total is not None and c.osds_up < c.osds_total \
        else ""
    parts += [("  OSDs ", "dim"), na(fmt.num(c.osds_up), osd_style), (" up / ", "dim"),
              na(fmt.num(c.osds_in), osd_style if c.osds_in != c.osds_total else ""), (" in / ", "dim"),
              na(fmt.num(c.osds_total)), ("  PGs ", "dim"), na(fmt.num(c.pgs_total))]
    return parts


def health_lines(c: schema.Ceph, detail_lines: int = CHECK_DETAIL_LINES) -> list[Content]:
    """The cluster status, then every health check in words: severity, code, message, count and the
    first lines of its detail (which names the OSDs, PGs and pools)."""
    lines = [title("Health"), Content.assemble(*status_parts(c))]
    if c.checks is None:
        lines.append(Content.assemble(("health checks: N/A", "dim")))
        return lines
    if not c.checks:
        lines.append(Content.assemble(("no health checks raised", "$ct-ok")))
        return lines
    text_w = 400  # the section wraps: a check's message is the one thing worth the extra lines
    for chk in sorted(c.checks, key=lambda k: (CHECK_ORDER.get(k.severity or "", 2), k.code)):
        label, style = CHECK_LABEL.get(chk.severity or "", ("INFO", "$ct-info"))
        if chk.muted:
            style = "dim"
        parts: list[Part] = [(label, style), " ", (pad(fmt.node_text(chk.code, 40), 18), "bold"), " ",
                             fmt.node_text(chk.message or "", text_w)]
        if chk.count is not None:
            parts.append((f"  ({fmt.num(chk.count)})", "dim"))
        if chk.muted:
            parts.append(("  muted", "dim"))
        lines.append(Content.assemble(*parts))
        detail = chk.detail or []
        for d in detail[:detail_lines]:
            lines.append(Content.assemble(("       ", ""), (fmt.node_text(d, text_w), "dim")))
        if len(detail) > detail_lines:
            lines.append(Content.assemble((f"       … {len(detail) - detail_lines} more", "dim")))
    return lines


# ---------------------------------------------------------------------------------------------
# Capacity, objects, PG states, I/O
# ---------------------------------------------------------------------------------------------


def capacity_lines(c: schema.Ceph, width: int, ascii: bool) -> list[Content]:
    bar_w = max(10, min(40, width - 60))
    frac = fraction(c.used_bytes, c.total_bytes)
    lines = [title("Capacity"), Content.assemble(
        ("raw ", "dim"), *usage_bar(frac, bar_w, ascii), "  ", na(fmt.bytes_(c.used_bytes)), (" used of ", "dim"),
        na(fmt.bytes_(c.total_bytes)), ("  ", ""), na(fmt.bytes_(c.avail_bytes)), (" avail", "dim"))]
    parts: list[Part] = [("objects ", "dim"), na(count(c.objects))]
    for label, n, sev in (("degraded", c.objects_degraded, "$ct-warn"), ("misplaced", c.objects_misplaced, "$ct-info"),
                          ("unfound", c.objects_unfound, "$ct-crit")):
        # Ceph counts degraded/misplaced object *copies* (against objects x replicas): shown as Ceph says.
        parts += [(f"  {label} ", "dim"), na(count(n), sev if n else "")]
    lines.append(Content.assemble(*parts))
    return lines


def pg_severity(state: str) -> str:
    words = state.split("+")
    if any(w in PG_CRIT for w in words):
        return "$ct-crit"
    if any(w in PG_WARN for w in words):
        return "$ct-warn"
    if any(w in PG_INFO for w in words):
        return "$ct-info"
    if "active" in words and "clean" in words:
        return "$ct-ok"
    return "$ct-warn"  # a state this dashboard does not know is worth a look


def pg_lines(c: schema.Ceph, max_states: int = 12) -> list[Content]:
    lines = [title("Placement groups")]
    if c.pg_states is None:
        lines.append(Content.assemble(("PG states: N/A", "dim")))
        return lines
    states = sorted(c.pg_states.items(), key=lambda kv: (-kv[1], kv[0]))
    w = max((len(fmt.num(n)) for _, n in states), default=1)
    for state, n in states[:max_states]:
        lines.append(Content.assemble((f"{fmt.num(n):>{w}} ", "bold"), (fmt.node_text(state, 80), pg_severity(state))))
    if len(states) > max_states:
        rest = sum(n for _, n in states[max_states:])
        lines.append(Content.assemble((f"{fmt.num(rest):>{w}} in {len(states) - max_states} other states", "dim")))
    return lines


def io_section(c: schema.Ceph, ring: CephIoRing, width: int, ascii: bool) -> list[Content]:
    ops = [("client ", "dim"), na(fmt.num(c.read_ops_s)), (" rd op/s  ", "dim"), na(fmt.num(c.write_ops_s)),
           (" wr op/s", "dim")]
    lines = [title("I/O"), *io_lines(ring, width, ascii), Content.assemble(*ops)]
    if len(ring) < 2:
        lines.append(Content.assemble(("the plot fills as new Ceph data arrives", "dim")))
    return lines


# ---------------------------------------------------------------------------------------------
# OSDs and pools
# ---------------------------------------------------------------------------------------------


def osd_rank(o: schema.CephOsd) -> tuple[int, int]:
    """Down first, then out, then by id: problems on top."""
    if o.up is False:
        return (0, o.id)
    if o.in_ is False:
        return (1, o.id)
    return (2, o.id)


def osd_lines(osds: list[schema.CephOsd] | None, width: int, ascii: bool, max_rows: int = 500) -> list[Content]:
    if osds is None:
        return [title("OSDs"), Content.assemble(("OSD list: N/A (not polled)", "dim"))]
    if not osds:
        return [title("OSDs"), Content.assemble(("no OSDs", "dim"))]
    down = sum(1 for o in osds if o.up is False)
    out = sum(1 for o in osds if o.in_ is False)
    head: list[Part] = [("OSDs", "bold $primary"), (f"  {len(osds)}", "")]
    if down:
        head.append((f"  {down} down", "$ct-crit bold"))
    if out:
        head.append((f"  {out} out", "$ct-warn"))
    host_w = min(16, max(4, *(len(o.host or fmt.NA) for o in osds)))
    id_w = max(len(f"osd.{fmt.num(o.id)}") for o in osds)
    lines = [Content.assemble(*head), Content.assemble((
        f"{'':<{id_w}} {'host':<{host_w}} {'up/in':<8} {'usage':<{OSD_BAR_W + 6}} {'PGs':>5} "
        f"{'commit/apply':>13} {'ops r/w':>11}  state", "dim"))]
    for o in sorted(osds, key=osd_rank)[:max_rows]:
        up = {True: ("up", ""), False: ("DOWN", "$ct-crit bold"), None: (fmt.NA, "dim")}[o.up]
        inn = {True: ("in", ""), False: ("OUT", "$ct-warn bold"), None: (fmt.NA, "dim")}[o.in_]
        lat = f"{fmt.num(o.commit_latency_ms, 1)}/{fmt.num(o.apply_latency_ms, 1)} ms" \
            if o.commit_latency_ms is not None or o.apply_latency_ms is not None else fmt.NA
        ops = f"{fmt.num(o.read_ops_s)}/{fmt.num(o.write_ops_s)}" \
            if o.read_ops_s is not None or o.write_ops_s is not None else fmt.NA
        flags = [s for s in o.state or () if s not in ("exists", "up")]
        flag_style = "$ct-crit" if any(f in ("full", "failsafe_full") for f in flags) else "$ct-warn"
        row_style = "" if o.up is not False else "$ct-stale"
        lines.append(Content.assemble(
            (f"{pad(f'osd.{fmt.num(o.id)}', id_w)} ", "bold" if o.up is not False else "$ct-crit bold"),
            (f"{pad(fmt.node_text(o.host), host_w)} ", row_style or ("dim" if o.host is None else "")),
            (pad(up[0], 4), up[1]), " ", (pad(inn[0], 3), inn[1]), " ",
            *usage_bar(fraction(o.used_bytes, o.total_bytes), OSD_BAR_W, ascii, CEPH_NEARFULL_PCT, CEPH_FULL_PCT),
            " ", na(pad(fmt.num(o.pgs), 5, True), row_style),
            " ", na(pad(lat, 13, True), row_style), " ", na(pad(ops, 11, True), row_style),
            ("  " + " ".join(fmt.node_text(f, 20) for f in flags), flag_style) if flags else ""))
    if len(osds) > max_rows:
        lines.append(Content.assemble((f"… and {len(osds) - max_rows} more OSDs", "dim")))
    return lines


def pool_lines(pools: list[schema.CephPool] | None, width: int, ascii: bool) -> list[Content]:
    if pools is None:
        return [title("Pools"), Content.assemble(("pool list: N/A (not polled)", "dim"))]
    if not pools:
        return [title("Pools"), Content.assemble(("no pools", "dim"))]
    name_w = min(20, max(4, *(len(p.name) for p in pools)))
    lines = [title("Pools"), Content.assemble((
        f"{'pool':<{name_w}} {'usage':<{POOL_BAR_W + 6}} {'stored':>10} {'objects':>9} {'read':>12} {'write':>12}"
        f" {'op/s r/w':>11}", "dim"))]
    for p in pools:
        frac = None if p.percent_used is None else p.percent_used / 100
        ops = f"{fmt.num(p.read_ops_s)}/{fmt.num(p.write_ops_s)}" \
            if p.read_ops_s is not None or p.write_ops_s is not None else fmt.NA
        lines.append(Content.assemble(
            (f"{pad(fmt.node_text(p.name), name_w)} ", "bold"),
            *usage_bar(frac, POOL_BAR_W, ascii, CEPH_NEARFULL_PCT, CEPH_FULL_PCT), " ",
            na(pad(fmt.bytes_(p.stored_bytes), 10, True)), " ", na(pad(count(p.objects), 9, True)), " ",
            na(pad(fmt.rate(p.read_bytes_s), 12, True)), " ", na(pad(fmt.rate(p.write_bytes_s), 12, True)), " ",
            na(pad(ops, 11, True))))
    return lines
