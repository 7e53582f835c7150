"""Provides the Ceph I/O ring (client and recovery rates over time) and its text plot.

The ceph payload carries only the latest rates, so the dashboard keeps its own small ring (a
dashboard/history.py ``Ring``), fed by the app on every read (``View.ceph_io``) whatever screen is
shown. One sample per *new* payload
(its ``ts``): the lease holder publishes every 5-10 s while the dashboard reads every second, and
repeating a sample would stretch time. An unreachable Ceph is a gap, never zeros. Drawn as block
characters in one Static (cheap; see TEXTUAL-NOTES: plot few things, large; many small ones as text).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.dashboard.history import Ring
from clustertop.wire import schema

#: About an hour at Ceph's usual 10 s poll; wider than any screen row, so the plot never starves.
RING_LEN = 512
LABEL_W = 15
VALUE_W = 12


@dataclass(frozen=True)
class IoSample:
    ts: float
    read_bytes_s: float | None
    write_bytes_s: float | None
    read_ops_s: float | None
    write_ops_s: float | None
    recovering_bytes_s: float | None


class CephIoRing(Ring[IoSample]):
    def __init__(self, maxlen: int = RING_LEN) -> None:
        super().__init__(maxlen)

    def add(self, payload: schema.ClusterPayload | None) -> bool:
        """Record ``payload`` if it is new; returns whether a sample (or gap) was added."""
        last = self.last
        if payload is None or (last is not None and payload.ts == last.ts):
            return False
        c = payload.ceph if payload.ok else None
        if c is None:
            self.push(IoSample(payload.ts, None, None, None, None, None))
        else:
            self.push(IoSample(payload.ts, c.read_bytes_s, c.write_bytes_s, c.read_ops_s, c.write_ops_s,
                               c.recovering_bytes_s))
        return True


#: (label, series, formatter, style)
SERIES = (
    ("client read", "read_bytes_s", fmt.rate, "$ct-info"),
    ("client write", "write_bytes_s", fmt.rate, "$ct-info"),
    ("recovery", "recovering_bytes_s", fmt.rate, "$ct-warn"),
)


def io_lines(ring: CephIoRing, width: int, ascii: bool = False) -> list[Content]:
    """One sparkline per series, all on one scale (client and recovery bytes compare directly),
    then the current and peak values; ops/s as a line of numbers."""
    spark_w = max(8, width - LABEL_W - 1 - VALUE_W - 6 - VALUE_W)
    # The scale from the values a sparkline can draw: one NaN or 1e308 from a writer must not flatten the rest.
    peaks = [v for _, name, _, _ in SERIES for v in ring.series(name)[-spark_w:]
             if fmt.known(v, 0, fmt.MAX_RATE) is not None]
    top = max(peaks) if peaks else None
    out = []
    for label, name, f, style in SERIES:
        values = ring.series(name)
        current = values[-1] if values else None
        window = [v for v in values[-spark_w:] if fmt.known(v, 0, fmt.MAX_RATE) is not None]
        peak = max(window) if window else None
        line = fmt.sparkline(values, spark_w, top=top, ascii=ascii)
        cur = f(current)
        out.append(Content.assemble(
            (f"{label:<{LABEL_W}}", "dim"), (line, style), " ",
            (f"{cur:>{VALUE_W}}", "dim" if cur == fmt.NA else "bold"),
            (f" peak {f(peak):>{VALUE_W}}", "dim")))
    return out
