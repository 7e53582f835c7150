"""Provides pure parsers from ceph-mgr dashboard API answers (decoded JSON) to schema structs.

No I/O here: ``collectors/ceph.py`` fetches, these functions only read dicts and lists, so every
field can be checked against the captured answers in ``tests/fixtures/ceph/``. Anything missing
or of an unexpected type becomes None (N/A), never 0: Ceph's answers change shape between
releases (``checks`` was a dict keyed by code before it became a list, pool
``application_metadata`` was a dict before it became a list).
"""

from __future__ import annotations

import json
import math
from typing import Any

from clustertop.wire import schema

# ---------------------------------------------------------------------------------------------
# Tolerant accessors: a wrong type is "unknown", not a crash and not 0
# ---------------------------------------------------------------------------------------------


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int | None:
    # bool is an int in Python; Ceph never means a count when it says true/false.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None  # json.loads accepts NaN and Infinity; int() of them raises
    n = int(v)
    return n if n in schema.WIRE_INTS else None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:  # an int of 309+ digits
        return None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v != "" else None


def _flag(v: Any) -> bool | None:
    """Ceph's up/in are 0/1 integers (and booleans in some endpoints)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    return None


def _latest(stats: dict[str, Any], key: str) -> Any:
    """Pool stats are time series: ``{"latest": value, "rate": per_second, "rates": [...]}``."""
    return _dict(stats.get(key)).get("latest")


def _rate(stats: dict[str, Any], key: str) -> float | None:
    return _float(_dict(stats.get(key)).get("rate"))


# ---------------------------------------------------------------------------------------------
# /api/health/minimal: the cheap poll
# ---------------------------------------------------------------------------------------------


def parse_checks(raw: Any) -> list[schema.HealthCheck]:
    """Health checks: a list of ``{"type", "severity", "summary", "detail", "muted"}`` (Ceph 15+),
    or the older/CLI dict form keyed by code."""
    items: list[tuple[Any, Any]]
    if isinstance(raw, dict):
        items = list(raw.items())
    else:
        items = [(_dict(c).get("type"), c) for c in _list(raw)]
    out = []
    for code, c in items:
        c = _dict(c)
        if not isinstance(code, str) or not code:
            continue
        summary = _dict(c.get("summary"))
        detail = [m for m in (_dict(d).get("message") for d in _list(c.get("detail"))) if isinstance(m, str)]
        out.append(schema.HealthCheck(
            code=code,
            severity=_str(c.get("severity")),
            message=_str(summary.get("message")),
            count=_int(summary.get("count")),
            detail=detail if "detail" in c else None,
            muted=bool(c.get("muted")),
        ))
    return out


def parse_health(d: Any) -> schema.Ceph:
    """GET /api/health/minimal -> the fast part of ``schema.Ceph`` (detail fields stay None)."""
    d = _dict(d)
    health = _dict(d.get("health"))
    c = schema.Ceph(status=_str(health.get("status")))
    if "checks" in health:
        c.checks = parse_checks(health.get("checks"))

    mon = _dict(d.get("mon_status"))
    if isinstance(_dict(mon.get("monmap")).get("mons"), list):
        c.mons = len(mon["monmap"]["mons"])
    if isinstance(mon.get("quorum"), list):
        c.mons_quorum = len(mon["quorum"])

    mgr = _dict(d.get("mgr_map"))
    c.mgr_active = _str(mgr.get("active_name"))
    if isinstance(mgr.get("standbys"), list):
        c.mgr_standbys = len(mgr["standbys"])

    osds = _dict(d.get("osd_map")).get("osds")
    if isinstance(osds, list):
        c.osds_total = len(osds)
        ups = [_flag(_dict(o).get("up")) for o in osds]
        ins = [_flag(_dict(o).get("in")) for o in osds]
        # One OSD of unknown state makes the count unknown rather than quietly low.
        c.osds_up = None if None in ups else sum(1 for u in ups if u)
        c.osds_in = None if None in ins else sum(1 for i in ins if i)

    pg = _dict(d.get("pg_info"))
    statuses = pg.get("statuses")
    if isinstance(statuses, dict):
        c.pg_states = {k: n for k, v in statuses.items() if (n := _int(v)) is not None}
        c.pgs_total = _int(sum(c.pg_states.values()))  # a sum can outgrow 64 bits even when its parts fit
    obj = _dict(pg.get("object_stats"))
    c.objects = _int(obj.get("num_objects"))
    c.objects_degraded = _int(obj.get("num_objects_degraded"))
    c.objects_misplaced = _int(obj.get("num_objects_misplaced"))
    c.objects_unfound = _int(obj.get("num_objects_unfound"))

    df = _dict(_dict(d.get("df")).get("stats"))
    c.total_bytes = _int(df.get("total_bytes"))
    c.used_bytes = _int(df.get("total_used_raw_bytes"))
    c.avail_bytes = _int(df.get("total_avail_bytes"))

    perf = _dict(d.get("client_perf"))
    c.read_bytes_s = _float(perf.get("read_bytes_sec"))
    c.write_bytes_s = _float(perf.get("write_bytes_sec"))
    c.read_ops_s = _float(perf.get("read_op_per_sec"))
    c.write_ops_s = _float(perf.get("write_op_per_sec"))
    c.recovering_bytes_s = _float(perf.get("recovering_bytes_per_sec"))
    return c


# ---------------------------------------------------------------------------------------------
# Detail endpoints: /api/osd, /api/pool?stats=true, /api/block/image, /api/monitor
# ---------------------------------------------------------------------------------------------


def parse_osd(o: Any) -> schema.CephOsd | None:
    o = _dict(o)
    oid = _int(o.get("osd", o.get("id")))
    if oid is None:
        return None
    stats = _dict(o.get("stats"))
    osd_stats = _dict(o.get("osd_stats"))
    statfs = _dict(osd_stats.get("statfs"))
    perf = _dict(osd_stats.get("perf_stat"))
    kb, kb_used = _int(osd_stats.get("kb")), _int(osd_stats.get("kb_used"))
    total = _int(stats.get("stat_bytes"))
    if total is None:
        total = _int(statfs.get("total"))
    if total is None and kb is not None:
        total = _int(kb * 1024)  # may outgrow 64 bits
    used = _int(stats.get("stat_bytes_used"))
    if used is None and kb_used is not None:
        used = _int(kb_used * 1024)
    pgs = _int(stats.get("numpg"))
    state = o.get("state")
    return schema.CephOsd(
        id=oid,
        host=_str(_dict(o.get("host")).get("name")),
        up=_flag(o.get("up")),
        in_=_flag(o.get("in")),
        state=[s for s in state if isinstance(s, str)] if isinstance(state, list) else None,
        device_class=_str(_dict(o.get("tree")).get("device_class")),
        total_bytes=total,
        used_bytes=used,
        pgs=pgs if pgs is not None else _int(osd_stats.get("num_pgs")),
        commit_latency_ms=_float(perf.get("commit_latency_ms")),
        apply_latency_ms=_float(perf.get("apply_latency_ms")),
        # The mgr's per-OSD rates (ops/s over its last stats period), not cumulative counters.
        read_ops_s=_float(stats.get("op_r")),
        write_ops_s=_float(stats.get("op_w")),
    )


def parse_osds(raw: Any) -> list[schema.CephOsd]:
    """GET /api/osd -> OSDs sorted by id."""
    out = [x for x in (parse_osd(o) for o in _list(raw)) if x is not None]
    return sorted(out, key=lambda x: x.id)


def parse_pool(p: Any) -> schema.CephPool | None:
    p = _dict(p)
    pid, name = _int(p.get("pool")), _str(p.get("pool_name"))
    if pid is None or name is None:
        return None
    apps = p.get("application_metadata")
    # A list of names on Ceph 16; a dict name -> settings on older releases.
    # Names only, before sorting: sorted() of [1, "rbd"] or [None, None] raises TypeError.
    applications = sorted(a for a in apps if isinstance(a, str)) if isinstance(apps, (list, dict)) else None
    pool = schema.CephPool(
        id=pid, name=name, type=_str(p.get("type")),
        size=_int(p.get("size")), min_size=_int(p.get("min_size")), pg_num=_int(p.get("pg_num")),
        applications=applications,
    )
    stats = p.get("stats")
    if isinstance(stats, dict):  # only with ?stats=true
        pool.stored_bytes = _int(_latest(stats, "stored"))
        pool.used_bytes = _int(_latest(stats, "bytes_used"))
        pool.avail_bytes = _int(_latest(stats, "max_avail"))
        frac = _float(_latest(stats, "percent_used"))
        # Despite its name Ceph's percent_used is a fraction (0..1), as in `ceph df`.
        pool.percent_used = frac * 100 if frac is not None else None
        pool.objects = _int(_latest(stats, "objects"))
        pool.read_bytes_s = _rate(stats, "rd_bytes")
        pool.write_bytes_s = _rate(stats, "wr_bytes")
        pool.read_ops_s = _rate(stats, "rd")
        pool.write_ops_s = _rate(stats, "wr")
    return pool


def parse_pools(raw: Any) -> list[schema.CephPool]:
    """GET /api/pool?stats=true -> pools sorted by id."""
    out = [x for x in (parse_pool(p) for p in _list(raw)) if x is not None]
    return sorted(out, key=lambda x: x.id)


def _spec(pool: Any, namespace: Any, image: Any) -> str | None:
    """"pool/image", or "pool/namespace/image" as the rbd CLI writes it."""
    pool, image = _str(pool), _str(image)
    if pool is None or image is None:
        return None
    ns = _str(namespace)
    return f"{pool}/{ns}/{image}" if ns else f"{pool}/{image}"


def parse_image(im: Any) -> schema.RbdImage | None:
    im = _dict(im)
    pool, name = _str(im.get("pool_name")), _str(im.get("name"))
    if pool is None or name is None:
        return None
    ns = _str(im.get("namespace"))
    parent = None
    par = im.get("parent")
    if isinstance(par, dict):
        spec = _spec(par.get("pool_name"), par.get("pool_namespace"), par.get("image_name"))
        snap = _str(par.get("snap_name"))
        parent = f"{spec}@{snap}" if spec and snap else spec
    snaps = None
    if isinstance(im.get("snapshots"), list):
        snaps = []
        for s in im["snapshots"]:
            s = _dict(s)
            sname = _str(s.get("name"))
            if sname is None:
                continue
            children = None
            if isinstance(s.get("children"), list):
                children = [c for c in (_spec(_dict(ch).get("pool_name"), _dict(ch).get("pool_namespace"),
                                              _dict(ch).get("image_name")) for ch in s["children"]) if c]
            protected = s.get("is_protected")
            snaps.append(schema.RbdSnap(
                name=sname, id=_int(s.get("id")), size_bytes=_int(s.get("size")),
                protected=protected if isinstance(protected, bool) else None,
                ts=_str(s.get("timestamp")), children=children,
            ))
    features = im.get("features_name")
    return schema.RbdImage(
        pool=f"{pool}/{ns}" if ns else pool,
        name=name,
        size_bytes=_int(im.get("size")),
        # disk_usage needs the fast-diff feature; without it Ceph sends null: unknown, not 0.
        used_bytes=_int(im.get("disk_usage")),
        parent=parent,
        snapshots=snaps,
        features=[f for f in features if isinstance(f, str)] if isinstance(features, list) else None,
    )


def image_entries(raw: Any) -> list[Any]:
    """The image dicts of one /api/block/image page: v2.0 groups them per pool
    (``[{"pool_name": "rbd", "value": [...]}]``); a flat list is accepted too."""
    out: list[Any] = []
    for item in _list(raw):
        item = _dict(item)
        if isinstance(item.get("value"), list):
            out.extend(item["value"])
        elif "name" in item:
            out.append(item)
    return out


def parse_images(entries: list[Any]) -> list[schema.RbdImage]:
    """Image dicts (see ``image_entries``) -> images sorted by pool and name."""
    out = [x for x in (parse_image(im) for im in entries) if x is not None]
    return sorted(out, key=lambda x: (x.pool, x.name))


def parse_fsid(d: Any) -> str | None:
    """GET /api/monitor -> the cluster's fsid (the cheap answers do not carry it)."""
    return _str(_dict(_dict(_dict(d).get("mon_status")).get("monmap")).get("fsid"))


def error_detail(body: str | bytes, limit: int = 160) -> str:
    """The words of an error answer: ``{"status","detail","request_id"}`` or, from /api/auth,
    ``{"detail","code","component"}``; anything else (an HTML page from a proxy) is cut short."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        d = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
        d = None
    if isinstance(d, dict) and isinstance(d.get("detail"), str):
        text = d["detail"]
    else:
        text = " ".join(body.split())
    return text[:limit]
