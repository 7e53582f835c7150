"""Provides NodeTrust: per node, whether the key the operator enrolled for it vouches for what it published.

The nodes table and a node's screen show it ("verified", "not enrolled", "BAD SIGNATURE", ...); a kill
is never built on it (actions.py checks the node it acts on afresh, at confirm time, in a worker).

Verifying a seal costs ~66 µs (Ed25519): every node of 1,000 on every read would be 66 ms of a 100 ms
refresh. So the dashboard verifies
- the node on screen, on every read (its seal is read beside its full snapshot, in the same MGET);
- the node acted on, at confirm time (``note``);
- TRUST_PER_READ more per read, round robin, in the idle time after the repaint (``app._after_repaint``).
A seal is verified once: the signature's answer is remembered per node for exactly that seal (every
field, signature included), and only the payload's SHA-256 is compared again on the next read (µs).
A node nobody enrolled needs no crypto at all: it reads "not enrolled" from the first read.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from clustertop.control import signing, trust
from clustertop.wire import schema

#: Nodes verified per read beyond the one on screen (~1 ms of the idle time after a repaint).
TRUST_PER_READ = 16
#: Fewer enrolled hosts than 1/SPARSE_ENROLLED of the hosts read: the round robin goes over the enrolled ones.
SPARSE_ENROLLED = 4

VERIFIED, NOT_ENROLLED, BAD, UNSIGNED, NO_DATA, UNCHECKED = (
    "verified", "not enrolled", "BAD SIGNATURE", "UNSIGNED", "no data", "unchecked")


@dataclass(frozen=True)
class Trust:
    """What a screen shows of a node's trust: a word, its severity (palette name) and the verdict in words."""

    word: str
    severity: str  # "ok" | "crit" | "stale" | "na"
    text: str

    @property
    def ok(self) -> bool:
        return self.word == VERIFIED


def _not_enrolled(host: str) -> Trust:
    return Trust(NOT_ENROLLED, "stale", f"{host} is not enrolled: nothing it publishes can be checked "
                                        f"(clustertop enrol {host})")


class NodeTrust:
    """The dashboard's view of every node's trust: anchors (``known``), the last verdict per node, and the
    remembered signature checks. UI thread only, except ``note`` (called back on the UI thread too)."""

    def __init__(self, known: trust.KnownNodes, error: str | None = None) -> None:
        self.known = known
        self.error = error  # why known_nodes could not be read (then nothing is enrolled)
        self._by_host: dict[str, Trust] = {}
        self._sig: dict[str, tuple[tuple[Any, ...], str | None]] = {}
        self._next = 0  # the round robin's place in the hosts (many enrolled) ...
        self._after = ""  # ... or the last enrolled host it took (few enrolled: ``seals_wanted``)
        self.verifications = 0  # signature checks actually run (tests and the bench count them)

    @classmethod
    def from_settings(cls, settings: Any) -> NodeTrust:
        """The anchors ``settings`` name: its in-memory ``known`` (the demo), else the known_nodes file. A
        file that can't be read leaves nothing enrolled, and says why (never a dashboard that won't start)."""
        if settings.known is not None:
            return cls(settings.known)
        try:
            return cls(trust.KnownNodes.load(settings.known_nodes))
        except signing.KeyFileError as e:
            return cls(trust.KnownNodes(path=settings.known_nodes), error=f"known_nodes: {e}: nothing is verified")

    def enrolled(self, host: str) -> bool:
        return self.known.get(host) is not None

    def of(self, host: str) -> Trust:
        if not self.enrolled(host):
            return _not_enrolled(host)
        return self._by_host.get(host) or Trust(UNCHECKED, "na", f"{host}'s seal has not been checked yet")

    def seals_wanted(self, hosts: Sequence[str], focus: Iterable[str], n: int = TRUST_PER_READ) -> list[str]:
        """The hosts whose seals the next read takes: ``focus`` (the node on screen), then the next ``n``
        enrolled hosts of ``hosts`` round robin (in ``hosts``' order, or in name order where few of them are
        enrolled: ``SPARSE_ENROLLED``). Hosts nobody enrolled are never asked for."""
        out = [h for h in focus if self.enrolled(h)]
        keys = self.known.keys
        if not hosts or not keys:
            return out
        taken = set(out)
        if len(keys) * SPARSE_ENROLLED < len(hosts):
            # Few of the hosts enrolled (10,000 hosts, a summary node or two): the round robin goes over the
            # enrolled hosts present, in name order, instead of walking every host to find them (~10 ms a read).
            present = sorted(set(hosts).intersection(keys))
            if not present:
                return out
            start = bisect.bisect_right(present, self._after)
            for h in present[start:] + present[:start]:
                if n <= 0:
                    break
                if h not in taken:
                    out.append(h)
                    taken.add(h)
                    n -= 1
                    self._after = h
            return out
        i = self._next % len(hosts)
        for _ in range(len(hosts)):
            if n <= 0:
                break
            h = hosts[i]
            i = (i + 1) % len(hosts)
            if h not in taken and self.enrolled(h):
                out.append(h)
                taken.add(h)
                n -= 1
        self._next = i
        return out

    def check(self, host: str, kind: str, payload: bytes | None, seal: bytes | None) -> Trust:
        """Verify ``host``'s seal over ``payload`` (``kind``: "node", "brief" or "digest") and keep the answer."""
        if not self.enrolled(host):
            t = _not_enrolled(host)
        else:
            v = trust.seal_verdict(host, payload, seal, self.known, kind, check=self._signature)
            if v.ok:
                t = Trust(VERIFIED, "ok", v.text)
            elif payload is None:
                t = Trust(NO_DATA, "na", v.text)
            elif seal is None:
                t = Trust(UNSIGNED, "crit", v.text)
            else:
                t = Trust(BAD, "crit", v.text)
        self._by_host[host] = t
        return t

    def check_state(self, state: Any, hosts: Iterable[str]) -> None:
        """Verify the hosts of ``hosts`` whose seal ``state`` (a ClusterState) read."""
        sealed = state.sealed
        for h in hosts:
            got = sealed.get(h)
            if got is not None:
                self.check(h, *got)

    def note(self, host: str, verdict: trust.Verdict, has_data: bool = True) -> Trust:
        """The verdict of a check made elsewhere (``trust.verified_snapshot`` when acting on ``host``)."""
        if verdict.ok:
            t = Trust(VERIFIED, "ok", verdict.text)
        elif not self.enrolled(host):
            t = _not_enrolled(host)
        elif not has_data:
            t = Trust(NO_DATA, "na", verdict.text)
        elif "published no seal" in verdict.text:
            t = Trust(UNSIGNED, "crit", verdict.text)
        else:
            t = Trust(BAD, "crit", verdict.text)
        self._by_host[host] = t
        return t

    def _signature(self, seal: schema.NodeSeal, key: signing.PublicKey) -> str | None:
        # The same seal (every field, the signature included) under the same key has the same answer:
        # a node ticking every second republishes a new seal, a quiet one the same, read after read.
        memo_key = (msgspec.structs.astuple(seal), key.raw)
        memo = self._sig.get(seal.host)
        if memo is not None and memo[0] == memo_key:
            return memo[1]
        why = signing.check("seal", seal, key)
        self.verifications += 1
        self._sig[seal.host] = (memo_key, why)
        return why
