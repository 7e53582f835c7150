"""Provides the agent's energy ledger: joules and GPU-seconds per GPU, node, user, pod, namespace and job.

Per GPU, each new reading adds the energy since the one before:
- **counter**: the difference of NVML's total-energy counter (mJ since the driver loaded; Volta and newer).
  A counter that went down was reset (driver reload): that interval counts nothing. A difference larger
  than the card could draw (``MAX_W`` or 1.5 x its power limit, over the interval) is not believed either.
  The counter is cumulative, so the interval may be long (an agent restart): up to ``counter_gap_s``.
- **power**: where there is no counter (Pascal and older, some vGPUs), the trapezoid of the two power
  readings times the interval. Not across a gap longer than ``max_gap_s``: a missed minute is unknown,
  not "the same power all along".
Readings are timed by the gpu collector's ``last_ok_ts`` (its last successful run), so a failing collector's
kept value is never counted twice.

Attribution (``split``): a GPU's energy and its time in an interval are split among the processes on it at
the reading, by their share of the GPU memory they hold ("memory", the default: the best stand-in NVML gives
for who is using a shared card), or equally ("equal", also used where any process's memory is unknown).
Each process's share goes to its user, its pod and namespace (``collectors.owner``), and the launched task's
job where the process is a task this agent started. A GPU with no processes puts its energy under "idle";
the node gets everything. The split uses the processes seen at the reading that ends the interval.
GPU-seconds: a GPU's own and its node's count every second of the card (held or idle); a user's, pod's,
namespace's and job's count the seconds their processes held a card, split like the energy, so on one node
they add up to the held time, never more.

Windows: 5-minute buckets for the last hour and hour buckets for the last 24 h (schema.EnergyLedger), kept
in Redis (``wire.energy_key``) by the agent every ``save_every`` seconds and read back at start, so neither
a dashboard nor an agent restart loses them (what is lost on a crash: the power-integrated energy of the
last ``save_every`` seconds; counter GPUs lose nothing, their counter covers the gap).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import msgspec

from clustertop import wire
from clustertop.config import Positive
from clustertop.wire import schema

log = logging.getLogger(__name__)

RECENT_S = 300  # the hour window's buckets
HOUR_S = 3600
RECENT_KEEP_S = 3600
HOURS_KEEP_S = 24 * 3600
#: Subjects kept per bucket and kind (users, pods ...); the rest are added up under "(other)".
MAX_SUBJECTS = 64
#: No GPU draws more than this; a counter jump beyond it is a reset or garbage, not energy.
MAX_W = 2000.0
#: The key outlives the 24 h window a little, then a retired node's ledger goes away by itself.
KEY_TTL_MS = 25 * 3600 * 1000


class EnergySection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[energy]``."""

    price_per_kwh: float | None = None  # shown as cost next to kWh; None: no cost
    currency: str | None = None  # a label only ("EUR", "USD", "kr")
    split: Literal["memory", "equal"] = "memory"
    max_gap: Positive = 10.0  # seconds: power is not integrated across a longer gap between readings
    counter_gap: Positive = 3600.0  # seconds: the energy counter is trusted across gaps up to this
    save_every: Positive = 15.0  # seconds between writes of the ledger to Redis

    def __post_init__(self) -> None:
        from clustertop.config import Invalid

        if self.price_per_kwh is not None and not (math.isfinite(self.price_per_kwh) and self.price_per_kwh >= 0):
            raise Invalid("price_per_kwh", "must be a number >= 0")
        if self.currency is not None and (len(self.currency) > 8 or not self.currency.isprintable()):
            raise Invalid("currency", "at most 8 printable characters")


def gpu_key(g: schema.Gpu) -> str:
    return g.uuid or f"gpu{g.index}"


def _num(v: Any) -> float | None:
    """A reading from the wire, or None where it is no reading (NaN, inf, absurd)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) and 0 <= f < 2**63 else None


class Ledger:
    """The node's ledger in memory: ``observe`` each snapshot, ``save``/``load`` through a Redis client."""

    def __init__(self, host: str, cfg: EnergySection | None = None, now: float | None = None) -> None:
        self.cfg = cfg or EnergySection()
        self.host = host
        self.since_ts = now
        self.recent: dict[int, dict[tuple[str, str], schema.EnergyUse]] = {}
        self.hours: dict[int, dict[tuple[str, str], schema.EnergyUse]] = {}
        self.last: dict[str, schema.EnergyGpuState] = {}
        self.loaded = False
        self._saved_at: float | None = None

    # -- counting ---------------------------------------------------------------------------------

    def observe(self, snap: schema.NodeSnapshot) -> None:
        """Account the GPU readings of one snapshot (a reading already counted is skipped)."""
        if snap.gpus is None:
            return
        st = snap.collectors.get("gpu")
        ts = _num(st.last_ok_ts if st is not None and st.last_ok_ts is not None else snap.ts)
        if ts is None:
            return
        if self.since_ts is None:
            self.since_ts = ts
        jobs = {t.pid: t.job or t.id for t in snap.tasks or () if t.pid is not None}
        for g in snap.gpus:
            if g.lost:
                continue
            key = gpu_key(g)
            prev = self.last.get(key)
            if prev is not None and ts <= prev.ts:
                continue  # the same reading again (collector slower than the tick), or the clock went back
            energy, power = _num(g.energy_mj), _num(g.power_mw)
            joules, method = self._joules(g, prev, ts, energy, power)
            self.last[key] = schema.EnergyGpuState(key=key, ts=ts, energy_mj=int(energy) if energy is not None else None,
                                                   power_mw=int(power) if power is not None else None)
            if joules is None or prev is None:
                continue
            self._account(g, key, ts, ts - prev.ts, joules, method, jobs)
        self._trim(ts)

    def _joules(self, g: schema.Gpu, prev: schema.EnergyGpuState | None, ts: float, energy: float | None,
                power: float | None) -> tuple[float | None, str]:
        if prev is None:
            return None, ""
        dt = ts - prev.ts
        limit_w = _num(g.power_limit_mw)
        cap_w = max(MAX_W, 1.5 * limit_w / 1000) if limit_w else MAX_W
        if energy is not None and prev.energy_mj is not None:
            if dt > self.cfg.counter_gap:
                return None, "counter"
            delta_j = (energy - prev.energy_mj) / 1000.0
            if delta_j < 0 or delta_j > cap_w * dt:
                return None, "counter"  # reset (driver reload) or garbage: this interval is unknown
            return delta_j, "counter"
        if energy is not None:
            return None, "counter"  # the counter just appeared: measure from here
        if power is None or prev.power_mw is None or dt > self.cfg.max_gap:
            return None, "power"
        return (power + prev.power_mw) / 2.0 / 1000.0 * dt, "power"

    def _account(self, g: schema.Gpu, key: str, ts: float, dt: float, joules: float, method: str,
                 jobs: dict[int, str]) -> None:
        uses: list[tuple[str, str, float, float]] = [("gpu", key, joules, dt), ("node", self.host, joules, dt)]
        procs = list(g.procs or ())
        if not procs:
            uses.append(("idle", self.host, joules, 0.0))
        else:
            for p, share in zip(procs, self._shares(procs), strict=True):
                j, s = joules * share, dt * share
                user = p.user or (f"uid {p.uid}" if p.uid is not None else "(unknown)")
                uses.append(("user", user, j, s))
                o = p.owner
                if o is not None and o.kind == "pod" and o.name:
                    ns = o.namespace or "(no namespace)"
                    uses.append(("pod", f"{ns}/{o.name}", j, s))
                    uses.append(("namespace", ns, j, s))
                job = jobs.get(p.pid)
                if job:
                    uses.append(("job", job, j, s))
        for start, buckets in ((int(ts // RECENT_S) * RECENT_S, self.recent), (int(ts // HOUR_S) * HOUR_S, self.hours)):
            bucket = buckets.setdefault(start, {})
            for kind, name, j, s in uses:
                u = bucket.get((kind, name))
                if u is None:
                    if kind not in ("gpu", "node", "idle") and sum(1 for k in bucket if k[0] == kind) >= MAX_SUBJECTS:
                        name = "(other)"
                        u = bucket.get((kind, name))
                    if u is None:
                        u = bucket[(kind, name)] = schema.EnergyUse(kind=kind, name=name)
                u.joules += j
                u.gpu_s += s
                if kind == "gpu":
                    u.method = method if u.method in (None, method) else "mixed"

    def _shares(self, procs: list[schema.GpuProc]) -> list[float]:
        mem = [p.used_mem_bytes for p in procs]
        if self.cfg.split == "memory" and all(m is not None and m >= 0 for m in mem):
            total = float(sum(m or 0 for m in mem))
            if total > 0:
                return [(m or 0) / total for m in mem]
        return [1.0 / len(procs)] * len(procs)

    def _trim(self, now: float) -> None:
        for buckets, keep, width in ((self.recent, RECENT_KEEP_S, RECENT_S), (self.hours, HOURS_KEEP_S, HOUR_S)):
            for start in [s for s in buckets if s + width <= now - keep]:
                del buckets[start]

    # -- the payload ------------------------------------------------------------------------------

    def payload(self, now: float) -> schema.EnergyLedger:
        return schema.EnergyLedger(
            host=self.host, ts=now, since_ts=self.since_ts, price_per_kwh=self.cfg.price_per_kwh,
            currency=self.cfg.currency, split=self.cfg.split,
            recent={s: list(b.values()) for s, b in sorted(self.recent.items())},
            hours={s: list(b.values()) for s, b in sorted(self.hours.items())},
            last=list(self.last.values()))

    def merge(self, saved: schema.EnergyLedger) -> None:
        """Take a saved ledger (this node's, from before a restart) under what this run has counted."""
        if saved.since_ts is not None and (self.since_ts is None or saved.since_ts < self.since_ts):
            self.since_ts = saved.since_ts
        for mine, theirs in ((self.recent, saved.recent), (self.hours, saved.hours)):
            for start, uses in theirs.items():
                bucket = mine.setdefault(int(start), {})
                for u in uses:
                    j, s = _num(u.joules), _num(u.gpu_s)
                    if j is None or s is None:
                        continue  # garbage in our own key (someone wrote it): not energy
                    have = bucket.get((u.kind, u.name))
                    if have is None:
                        bucket[(u.kind, u.name)] = schema.EnergyUse(kind=u.kind, name=u.name, joules=j, gpu_s=s,
                                                                    method=u.method)
                    else:
                        have.joules += j
                        have.gpu_s += s
                        if u.method and have.method != u.method:
                            have.method = u.method if have.method is None else "mixed"
        for st in saved.last:
            self.last.setdefault(st.key, st)

    def step(self, snap: schema.NodeSnapshot, client: Any, now: float) -> None:
        """One tick: read the saved ledger first (once: so a restart measures from where the last run left
        each GPU), count this snapshot, save when due. Redis errors reach the caller; counting goes on."""
        try:
            if not self.loaded:
                self.load(client)
        finally:
            self.observe(snap)
        self.save(client, now)

    def load(self, client: Any) -> bool:
        """Read this node's saved ledger once (True when done: found, absent, or unreadable and ignored)."""
        raw = client.get(wire.energy_key(self.host))
        if raw is not None:
            try:
                saved = wire.decode(raw, schema.EnergyLedger)
            except wire.WireError as e:
                log.warning("energy ledger in Redis is unreadable (%s): starting a new one", e)
            else:
                if saved.host == self.host:
                    self.merge(saved)
        self.loaded = True
        return True

    def due(self, now: float) -> bool:
        return self._saved_at is None or now - self._saved_at >= self.cfg.save_every

    def saved(self, now: float) -> None:
        self._saved_at = now

    def save(self, client: Any, now: float, force: bool = False) -> bool:
        """Write the ledger when ``save_every`` has passed (or ``force``); loads the saved one first."""
        if not force and not self.due(now):
            return False
        if not self.loaded:
            self.load(client)
        if not (self.last or self.recent or self.hours):
            return False  # a node without GPUs keeps no ledger (none shows on the energy screen)
        client.set(wire.energy_key(self.host), wire.pack(wire.encode(self.payload(now)), "energy"), px=KEY_TTL_MS)
        self.saved(now)
        return True

