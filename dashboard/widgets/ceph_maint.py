"""Provides the node screen's Ceph maintenance lines: which OSDs Ceph places on this node, how much data they
hold, and whether ``noout`` is set - what an operator must know before draining or rebooting it.

A pure function of the cluster's Ceph payload (its OSD -> host mapping) and the node's name, so tests read
exactly what a person reads. None when Ceph places no OSD on the node (the section is hidden), or when the
payload has no OSD list. Unknown numbers are "N/A", never 0. Setting noout is offered as the node screen's key ``o``
(dashboard/ceph_ops.py) and as the command ``clustertop ceph flag set noout``, both with the operator's own
Ceph credentials, confirmed and audited.
"""

from __future__ import annotations

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.wire import schema

#: OSDs listed one per line up to this many; the rest are counted.
MAX_LINES = 12


def same_host(ceph_host: str | None, node: str) -> bool:
    """Ceph names a host by its short name ("gpu-06"); a node may publish its FQDN ("gpu-06.lab")."""
    if not ceph_host:
        return False
    return ceph_host == node or ceph_host.split(".")[0] == node.split(".")[0]


def flag_set(c: schema.Ceph, flag: str) -> bool | None:
    """From health: OSDMAP_FLAGS says "noout,norebalance flag(s) set". None when the health checks are unknown."""
    if c.checks is None:
        return None
    for k in c.checks:
        if k.code == "OSDMAP_FLAGS" and isinstance(k.message, str):
            named = k.message.split(" ", 1)[0].split(",")  # "noout,norebalance flag(s) set"
            if flag in named:
                return True
    return False


def noout_set(c: schema.Ceph) -> bool | None:
    """From health: OSDMAP_FLAGS says "noout flag(s) set". None when the health checks are unknown."""
    return flag_set(c, "noout")


def node_osds(payload: schema.ClusterPayload | None, node: str) -> list[schema.CephOsd]:
    """The OSDs Ceph places on ``node`` (by id), from the cluster's Ceph payload; [] when none or unknown."""
    c = payload.ceph if payload is not None else None
    if c is None or not c.osds:
        return []
    return sorted((o for o in c.osds if same_host(o.host, node)), key=lambda o: o.id)


def data_of(osds: list[schema.CephOsd]) -> str:
    """The data the OSDs hold ("1.2 TiB"), N/A if any one's is unknown."""
    used = [o.used_bytes for o in osds]
    return fmt.NA if any(u is None for u in used) else fmt.bytes_(sum(u for u in used if u is not None))


def maintenance_section(payload: schema.ClusterPayload | None, node: str) -> Content | None:
    c = payload.ceph if payload is not None else None
    mine = node_osds(payload, node)
    if c is None or not mine:
        return None
    total = data_of(mine)
    lines = [Content.assemble(("Ceph maintenance", "bold $primary"),
                              (f"  {len(mine)} OSD{'s' if len(mine) != 1 else ''} on this node, ", ""),
                              (total, "dim" if total == fmt.NA else "bold"), (" of data", ""))]
    for o in mine[:MAX_LINES]:
        up = "up" if o.up else "down" if o.up is False else fmt.NA
        in_ = "in" if o.in_ else "out" if o.in_ is False else fmt.NA
        style = "$ct-crit" if o.up is False else "$ct-warn" if o.in_ is False else ""
        lines.append(Content.assemble((f"  osd.{o.id:<5} ", ""), (f"{up}/{in_}".ljust(9), style),
                                      (f" used {fmt.bytes_(o.used_bytes)} of {fmt.bytes_(o.total_bytes)}", "")))
    if len(mine) > MAX_LINES:
        lines.append(Content(f"  … and {len(mine) - MAX_LINES} more"))
    flag = noout_set(c)
    if flag is None:
        lines.append(Content.assemble(("  noout: ", "dim"), (fmt.NA, "dim")))
    elif flag:
        lines.append(Content.assemble(("  noout is set", "$ct-warn bold"),
                                      (": its OSDs stay in while it is down; afterwards: o unsets it "
                                       "(clustertop ceph flag unset noout)", "dim")))
    else:
        lines.append(Content.assemble(("  noout is not set", "bold"),
                                      (": before a drain or reboot: o sets it (clustertop ceph flag set noout)",
                                       "dim")))
    if flag_set(c, "norebalance"):
        lines.append(Content.assemble(("  norebalance is set", "$ct-warn bold"),
                                      (": no rebalancing moves until it is unset (o)", "dim")))
    return Content("\n").join(lines)
