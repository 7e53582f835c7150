"""Provides the alert state in Redis: written signed by the evaluating node, read and checked by everyone else.

Any agent allowed the "alerts" lease can write ``ct:v1:alerts`` (Redis cannot tell one lease holder from
another), so the state is signed with the writer's node key and a reader believes it only when a node it
enrolled (known_nodes) signed it. It names the signer, so a compromised node that rewrites the timeline
shows as the writer; it cannot pass its words off as another node's. docs/security.md has the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustertop import wire
from clustertop.control import signing
from clustertop.control.trust import KnownNodes
from clustertop.wire.alerts import ALERTS_KEY, AlertState
from clustertop.wire.text import inert

#: A state older than this many of its own intervals means nobody evaluates alerts any more.
STALE_AFTER_INTERVALS = 5.0


def fit(state: AlertState, limit: int = wire.MAX_PAYLOAD_BYTES) -> bytes:
    """The state encoded within what a reader decodes (``wire.MAX_PAYLOAD_BYTES``): on a huge, troubled
    cluster the oldest events go first, then resolved alerts, then the least severe (``left_out`` counts
    the alerts left out, so a reader says "and N more"). Records arrive most important first."""
    data = wire.encode(state)
    while len(data) > limit and state.events:
        state.events = state.events[len(state.events) // 2:] if len(state.events) > 1 else []
        data = wire.encode(state)
    while len(data) > limit and state.alerts:
        keep = len(state.alerts) * 3 // 4
        state.left_out += len(state.alerts) - keep
        state.alerts = state.alerts[:keep]
        data = wire.encode(state)
    return data


def write(client: Any, state: AlertState, key: signing.PrivateKey | None) -> int:
    """Sign and write the state, packed (``wire.pack``: the alert words repeat from node to node, so a
    troubled cluster's state, rewritten every evaluation, is a tenth of its encoded size or less); the
    signature covers the state, not its packing. Returns the bytes written."""
    fit(state, wire.MAX_PAYLOAD_BYTES - 1024)  # room for the signature
    if key is not None:
        signing.sign_struct("alerts", state, key)
    data = wire.pack(wire.encode(state), None)
    client.set(ALERTS_KEY, data)
    return len(data)


def load_unverified(client: Any) -> AlertState | None:
    """The last state, for the next lease holder to carry on from (agents hold no known_nodes)."""
    raw = client.get(ALERTS_KEY)
    if raw is None:
        return None
    try:
        return wire.decode(raw, AlertState)
    except wire.WireError:
        return None


@dataclass
class Read:
    """What a reader may show: the state (None when there is none or it is not to be believed) and why."""

    state: AlertState | None
    verified: bool
    text: str  # "evaluated by gpu01 (verified), 1 s ago" or why it is not shown
    stale: bool = False
    present: bool = True  # False: no key at all (nothing evaluates alerts: not an error)


def read(client: Any, known: KnownNodes, now: float, trust_unverified: bool = False) -> Read:
    """``ct:v1:alerts`` checked against ``known``. Unsigned or wrongly signed state is refused unless
    ``trust_unverified`` (a demo with no enrolled nodes), and then said to be unverified."""
    raw = client.get(ALERTS_KEY)
    if raw is None:
        return Read(None, False, "no alert state in Redis: no agent evaluates alerts ([alerts] in an agent's config)",
                    present=False)
    try:
        state = wire.decode(raw, AlertState)
    except wire.WireError as e:
        return Read(None, False, f"unreadable alert state: {e}")
    host = inert(state.host, limit=64)
    pub = known.get(state.host)
    why = "not enrolled" if pub is None else signing.check("alerts", state, pub)
    age = now - state.ts
    stale = not age < STALE_AFTER_INTERVALS * max(state.interval_s, 0.5)
    when = f"{age:.0f} s ago" if -1e9 < age < 1e9 else "at an absurd time"
    if why is None:
        return Read(state, True, f"evaluated by {host} (verified), {when}", stale)
    if trust_unverified:
        return Read(state, False, f"evaluated by {host} (NOT verified: {why}), {when}", stale)
    return Read(None, False, f"alert state from {host} refused: {why}")
