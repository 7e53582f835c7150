"""Provides pure parsers and the health rules for Linux bonds: /proc/net/bonding text and sysfs values.

Nothing here touches the filesystem; ``clustertop.collectors.bonds`` reads the files and calls these.
The procfs format is whatever ``bond_info_show_master``/``bond_info_show_slave`` printed on the
kernel at hand: lines come and go between versions (Peer Notification Delay, LACP active, Min links,
Slave queue ID), the aggregator block is indented with tabs on some kernels and spaces on others,
and old drivers omit Speed/Duplex. So the parser keys on line labels, never on position or indent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from clustertop.wire import schema

#: procfs "Bonding Mode:" text (kernel bond_mode_name()) -> the sysfs/iproute2 name the schema uses.
MODE_NAMES = {
    "load balancing (round-robin)": "balance-rr",
    "fault-tolerance (active-backup)": "active-backup",
    "load balancing (xor)": "balance-xor",
    "fault-tolerance (broadcast)": "broadcast",
    "IEEE 802.3ad Dynamic link aggregation": "802.3ad",
    "transmit load balancing": "balance-tlb",
    "adaptive load balancing": "balance-alb",
}

# LACP port state bits (IEEE 802.1AX): a port passes traffic only with all three of these set.
LACP_SYNC = 0x08
LACP_COLLECTING = 0x10
LACP_DISTRIBUTING = 0x20
LACP_WORKING = LACP_SYNC | LACP_COLLECTING | LACP_DISTRIBUTING

NO_MAC = "00:00:00:00:00:00"
HASH_MODES = ("balance-xor", "802.3ad", "balance-tlb")

_T = TypeVar("_T", schema.Bond, schema.BondSlave)


@dataclass
class Parsed:
    """A bond as one source saw it, plus facts that judge health but do not travel on the wire."""

    bond: schema.Bond
    partner_macs: dict[str, str | None] = field(default_factory=dict)  # slave -> LACP partner system MAC
    no_active_aggregator: bool = False  # procfs "has no active aggregator", sysfs ad_aggregator 0


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def mode_name(text: str | None) -> str | None:
    """procfs mode text -> "balance-alb" etc. Active-backup may carry " (fail_over_mac active)" after it."""
    text = (text or "").strip()
    if not text:
        return None
    for long, short in MODE_NAMES.items():
        if text.startswith(long):
            return short
    return text  # a mode this table does not know: show the kernel's words rather than nothing


def first_word(text: str | None) -> str | None:
    """sysfs "balance-alb 6", "layer2 0", "slow 0" and procfs "layer2 (0)" -> the name alone."""
    words = (text or "").split()
    return words[0] if words else None


def known(text: str | None) -> str | None:
    """Empty, "None", "N/A" and "Unknown" all mean the kernel does not know (or there is none)."""
    text = (text or "").strip()
    return None if text.lower() in ("", "none", "n/a", "unknown") else text


def to_int(text: str | None) -> int | None:
    value = known(text)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def speed_mbps(text: str | None) -> int | None:
    """"1000 Mbps" (procfs) or "1000" (sysfs) -> 1000. "Unknown", -1 and the old unsigned
    SPEED_UNKNOWN values (65535, 4294967295) are a link the driver cannot rate: None, never 0."""
    value = to_int(first_word(text))
    if value is None or value <= 0 or value in (0xFFFF, 0xFFFFFFFF):
        return None
    return value


def duplex(text: str | None) -> str | None:
    value = known(text)
    return value.lower() if value else None


def split_names(text: str | None) -> list[str]:
    """sysfs "bonding_masters" and "slaves": names separated by spaces, empty when there are none."""
    return list(dict.fromkeys((text or "").split()))


# ---------------------------------------------------------------------------------------------
# /proc/net/bonding/<bond>
# ---------------------------------------------------------------------------------------------


def parse_procfs(name: str, text: str) -> Parsed:
    """One /proc/net/bonding/<bond> file -> the bond and its slaves (health not judged yet)."""
    bond = schema.Bond(name=name, source="procfs", slaves=[])
    out = Parsed(bond)
    slave: schema.BondSlave | None = None
    section = "master"  # master | agg (Active Aggregator Info) | slave | actor | partner
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if slave is None:
                section = "master"  # a blank line closes the aggregator block
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            if "has no active aggregator" in key:
                out.no_active_aggregator = True
            continue
        if key == "slave interface":
            slave = schema.BondSlave(name=value)
            bond.slaves.append(slave)  # type: ignore[union-attr]
            section = "slave"
        elif key == "active aggregator info":
            section = "agg"
        elif key == "details actor lacp pdu":
            section = "actor"
        elif key == "details partner lacp pdu":
            section = "partner"
        elif slave is None:
            _master_line(bond, section, key, value)
        elif section == "actor":
            if key == "port state":
                slave.actor_port_state = to_int(value)
        elif section == "partner":
            if key == "port state":
                slave.partner_port_state = to_int(value)
            elif key == "system mac address":
                out.partner_macs[slave.name] = known(value)
        else:
            _slave_line(slave, key, value)
    return out


def _master_line(bond: schema.Bond, section: str, key: str, value: str) -> None:
    if section == "agg":
        if key == "aggregator id":
            bond.active_aggregator_id = to_int(value)
        elif key == "partner mac address":
            bond.partner_mac = known(value)
    elif key == "bonding mode":
        bond.mode = mode_name(value)
    elif key == "mii status":
        bond.mii_status = known(value)
    elif key == "currently active slave":
        bond.active_slave = known(value)
    elif key == "primary slave":
        bond.primary_slave = first_word(known(value))  # "eth2 (primary_reselect always)"
    elif key == "transmit hash policy":
        bond.xmit_hash_policy = first_word(value)  # "layer3+4 (1)"
    elif key == "lacp rate":
        bond.lacp_rate = first_word(value)


def _slave_line(slave: schema.BondSlave, key: str, value: str) -> None:
    if key == "mii status":
        slave.mii_status = known(value)
    elif key == "speed":
        slave.speed_mbps = speed_mbps(value)
    elif key == "duplex":
        slave.duplex = duplex(value)
    elif key == "link failure count":
        slave.link_failures = to_int(value)
    elif key == "permanent hw addr":
        slave.perm_hwaddr = known(value)
    elif key == "aggregator id":
        slave.aggregator_id = to_int(value)
    elif key == "actor churn state":
        slave.actor_churn = value or None  # "none" is a state here (not churned), keep it
    elif key == "partner churn state":
        slave.partner_churn = value or None
    elif key == "actor churned count":
        slave.actor_churned = to_int(value)
    elif key == "partner churned count":
        slave.partner_churned = to_int(value)


# ---------------------------------------------------------------------------------------------
# sysfs: /sys/class/net/<bond>/bonding/* and <bond>/lower_<if>/bonding_slave/* (values already read)
# ---------------------------------------------------------------------------------------------


def from_sysfs(name: str, master: dict[str, str | None], slaves: dict[str, dict[str, str | None]]) -> Parsed:
    """Raw sysfs file contents (None = unreadable) -> the bond. ``master`` holds bonding/<file>;
    ``slaves`` maps each slave to its bonding_slave/<file> values plus its own speed and duplex."""
    mode = first_word(master.get("mode"))  # "802.3ad 4"
    agg = to_int(master.get("ad_aggregator"))  # empty outside 802.3ad; 0 = no active aggregator
    bond = schema.Bond(
        name=name,
        source="sysfs",
        mode=mode,
        mii_status=known(master.get("mii_status")),
        active_slave=known(master.get("active_slave")),
        primary_slave=known(master.get("primary")),
        # sysfs prints a hash policy in every mode; it only steers traffic in these (procfs agrees).
        xmit_hash_policy=first_word(master.get("xmit_hash_policy")) if mode in HASH_MODES else None,
        # ad_partner_mac reads empty without CAP_NET_ADMIN on current kernels: unknown, not "no partner".
        partner_mac=known(master.get("ad_partner_mac")) if mode == "802.3ad" else None,
        active_aggregator_id=agg or None,
        slaves=[],
    )
    if mode == "802.3ad":
        bond.lacp_rate = first_word(master.get("lacp_rate"))
    for sname, v in slaves.items():
        bond.slaves.append(schema.BondSlave(  # type: ignore[union-attr]
            name=sname,
            mii_status=known(v.get("mii_status")),
            state=known(v.get("state")),
            link_failures=to_int(v.get("link_failure_count")),
            perm_hwaddr=known(v.get("perm_hwaddr")),
            aggregator_id=to_int(v.get("ad_aggregator_id")),
            actor_port_state=to_int(v.get("ad_actor_oper_port_state")),
            partner_port_state=to_int(v.get("ad_partner_oper_port_state")),
            speed_mbps=speed_mbps(v.get("speed")),
            duplex=duplex(v.get("duplex")),
        ))
    return Parsed(bond, no_active_aggregator=(mode == "802.3ad" and agg == 0))


def merge(proc: Parsed | None, sys: Parsed | None) -> Parsed | None:
    """procfs first (one consistent print of the driver's state), sysfs fills what procfs lacks
    (slave state active/backup, speeds on old drivers). Slaves are the union, procfs order first:
    a slave can be added or removed between the two reads."""
    if proc is None or sys is None:
        return proc or sys
    bond = _fill(proc.bond, sys.bond)
    bond.source = "procfs+sysfs"
    by_name = {s.name: s for s in sys.bond.slaves or ()}
    slaves = [_fill(s, by_name.pop(s.name)) if s.name in by_name else s for s in proc.bond.slaves or ()]
    bond.slaves = slaves + list(by_name.values())
    return Parsed(bond, dict(proc.partner_macs), proc.no_active_aggregator or sys.no_active_aggregator)


def _fill(a: _T, b: _T) -> _T:
    values = {f: getattr(a, f) if getattr(a, f) is not None else getattr(b, f) for f in a.__struct_fields__}
    return type(a)(**values)


# ---------------------------------------------------------------------------------------------
# Health: what each mode makes meaningful
# ---------------------------------------------------------------------------------------------


def lacp_problem(state: int | None, who: str) -> str | None:
    """who is "actor" or "partner"; None when the state is unknown or carries traffic."""
    if state is None:
        return None
    prefix = "LACP" if who == "actor" else "LACP partner"
    if not state & LACP_SYNC:
        return f"{prefix} not in sync ({who} state {state})"
    if state & LACP_WORKING != LACP_WORKING:
        return f"{prefix} not distributing ({who} state {state})"
    return None


def slave_problem(p: Parsed, slave: schema.BondSlave) -> str | None:
    """Why this slave carries no traffic, in words; None when it does (unknowns are not faults).
    One reason only, the most fundamental first, so alerts stay short."""
    bond = p.bond
    if slave.mii_status is not None and slave.mii_status != "up":
        return f"MII {slave.mii_status}"  # "down", "going down" (downdelay), "going back" (updelay)
    if bond.mode != "802.3ad":
        return None
    # 802.3ad: MII up is not enough; the port must be in the active aggregator and LACP must agree.
    if p.no_active_aggregator:
        return "no active aggregator"
    active = bond.active_aggregator_id
    if active is not None and slave.aggregator_id is not None and slave.aggregator_id != active:
        return f"not in active aggregator {active}"
    partner = p.partner_macs.get(slave.name)
    if partner is None and slave.aggregator_id is not None and slave.aggregator_id == active:
        partner = bond.partner_mac  # sysfs knows only the active aggregator's partner
    if partner == NO_MAC:
        return "no LACP partner"
    return lacp_problem(slave.actor_port_state, "actor") or lacp_problem(slave.partner_port_state, "partner")


def judge(p: Parsed) -> schema.Bond:
    """Fill slave ok/problem and the bond's degraded/problems/speed_mbps; return the bond."""
    bond = p.bond
    problems: list[str] = []
    for s in bond.slaves or ():
        s.problem = slave_problem(p, s)
        s.ok = s.problem is None
        if s.problem:
            problems.append(f"{s.name}: {s.problem}")
    if not bond.slaves:
        problems.append("no slaves")
    bond.problems = problems or None
    bond.degraded = bool(problems)
    bond.speed_mbps = bond_speed(bond)
    return bond


def bond_speed(bond: schema.Bond) -> int | None:
    """What the bond can carry, counted as the kernel's own ethtool speed does (bond_slave_can_tx):
    the sum of working slaves, except active-backup where only the active slave carries traffic.
    No working slave is a known 0 (the bond passes nothing); an unknown speed among the working
    slaves makes the sum unknown rather than silently low."""
    working = [s for s in bond.slaves or () if s.ok]
    if bond.mode == "active-backup" and bond.active_slave:
        working = [s for s in working if s.name == bond.active_slave]
    if not working:
        return 0
    total = 0
    for s in working:
        if s.speed_mbps is None:
            return None
        total += s.speed_mbps
    return total
