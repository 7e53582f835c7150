"""The node screen's Ceph maintenance lines (dashboard/widgets/ceph_maint.py): a node's OSDs from the Ceph
payload's OSD -> host mapping, the data they hold, whether noout is set. Pure: read as a person reads it."""

from __future__ import annotations

from clustertop.dashboard.widgets.ceph_maint import maintenance_section
from clustertop.wire import schema

GIB = 1 << 30


def payload(osds: list[schema.CephOsd] | None, checks: list[schema.HealthCheck] | None = None) -> schema.ClusterPayload:
    return schema.ClusterPayload(name="ceph", source_host="node-01", ts=1.0, seq=1, ok=True, last_ok_ts=1.0,
                                 ceph=schema.Ceph(status="HEALTH_OK", osds=osds, checks=checks))


OSDS = [schema.CephOsd(id=3, host="gpu-06", up=True, in_=True, used_bytes=300 * GIB, total_bytes=1024 * GIB),
        schema.CephOsd(id=1, host="gpu-06", up=False, in_=True, used_bytes=100 * GIB, total_bytes=1024 * GIB),
        schema.CephOsd(id=2, host="gpu-07", up=True, in_=True, used_bytes=5 * GIB, total_bytes=1024 * GIB)]


def test_lists_the_nodes_osds_and_their_data_and_offers_noout() -> None:
    text = maintenance_section(payload(OSDS, checks=[]), "gpu-06.lab.example").plain  # type: ignore[union-attr]
    assert text.splitlines() == [
        "Ceph maintenance  2 OSDs on this node, 400.0 GiB of data",
        "  osd.1     down/in   used 100.0 GiB of 1.0 TiB",
        "  osd.3     up/in     used 300.0 GiB of 1.0 TiB",
        "  noout is not set: before a drain or reboot: o sets it (clustertop ceph flag set noout)",
    ]


def test_says_when_noout_is_set_and_unknowns_as_na() -> None:
    osds = [schema.CephOsd(id=0, host="gpu-06"), schema.CephOsd(id=4, host="gpu-06", used_bytes=GIB)]
    flags = [schema.HealthCheck(code="OSDMAP_FLAGS", severity="HEALTH_WARN", message="noout flag(s) set")]
    lines = maintenance_section(payload(osds, flags), "gpu-06").plain.splitlines()  # type: ignore[union-attr]
    assert lines[0] == "Ceph maintenance  2 OSDs on this node, N/A of data"  # one unknown: the sum is unknown
    assert lines[1] == "  osd.0     N/A/N/A   used N/A of N/A"
    assert lines[-1].startswith("  noout is set: its OSDs stay in while it is down")
    unknown = maintenance_section(payload(osds, None), "gpu-06").plain  # type: ignore[union-attr]
    assert unknown.splitlines()[-1] == "  noout: N/A"  # health checks not known: not "not set"


def test_hidden_where_ceph_places_no_osd_or_is_not_there() -> None:
    assert maintenance_section(payload(OSDS), "gpu-08") is None
    assert maintenance_section(payload(None), "gpu-06") is None
    assert maintenance_section(None, "gpu-06") is None
    hostile = [schema.CephOsd(id=9, host="\x1b[2Jgpu-06\u202e")]  # a host name is never shown, only matched
    assert maintenance_section(payload(hostile), "gpu-06") is None
