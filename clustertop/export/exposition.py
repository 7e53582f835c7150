"""Provides the Prometheus text exposition format 0.0.4: families, label values, numbers, one sample per series.

Everything a node writes is data here too: its hostname, a GPU's model string, a mountpoint or a NIC
name ends up inside a label value, and one unescaped quote or newline there would make Prometheus
refuse the whole scrape (every node's series gone, not just the odd one's). So:

- a label value goes through ``wire.text.inert`` first (control, bidi and zero-width characters shown
  as ``\\x1b``/``\\u202e``, as the dashboard shows them: a Grafana legend must not be repainted by a
  node either), then the format's own escapes (backslash, double quote, newline);
- it is bounded (``LABEL_MAX`` characters): a longer one keeps its head and ends in "…" and 8 hex
  digits of the SHA-256 of the whole value, so two long names that share a head stay two series;
- a series (name and labels) is written once: a second sample of it (two GPUs reporting the same
  index, two names that bound to the same text) is left out and counted, since Prometheus rejects a
  scrape that repeats a series;
- values: ``None`` (unknown) writes no sample, never 0; NaN and ±inf are a node's broken arithmetic,
  not a measurement, and are left out the same way; everything else is written exactly (ints as
  digits, floats by ``repr``, both of which Prometheus parses back to the same float64).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from clustertop.wire.text import inert

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Label values longer than this (after escaping control characters) are cut; see the module docstring.
LABEL_MAX = 128
#: Values up to this length are memoised (hostnames, models, indices repeat on every render).
_CACHE_UP_TO = 96

_FORMAT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


class Family(NamedTuple):
    """One metric family: its name, TYPE, HELP, and ``borrowed``: the exporter whose name and unit it
    keeps ("node_exporter", "dcgm-exporter", "client_python"), or None for clustertop's own names."""

    name: str
    type: str  # "gauge" | "counter"
    help: str
    borrowed: str | None = None


def _bounded(s: str) -> str:
    if len(s) <= LABEL_MAX and s.isprintable():  # the common case: nothing to escape, nothing to cut
        return s.translate(_FORMAT_ESCAPES)
    # Escape only the head that can survive the cut (a 1 MB hostname is not run through a regex whole),
    # and name the whole value by its hash where it is cut.
    head = inert(s[: LABEL_MAX + 1])
    if len(head) > LABEL_MAX or len(s) > LABEL_MAX:
        digest = hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        head = head[: LABEL_MAX - 9] + "…" + digest
    return head.translate(_FORMAT_ESCAPES)


@lru_cache(maxsize=1 << 16)
def _cached(s: str) -> str:
    return _bounded(s)


def label_value(v: object) -> str:
    """``v`` as the inside of a label value's quotes: inert, bounded, escaped."""
    s = v if type(v) is str else str(v)
    return _cached(s) if len(s) <= _CACHE_UP_TO else _bounded(s)


def labels(pairs: Iterable[tuple[str, object]]) -> str:
    """``name="value",…`` for the pairs whose value is known (None: the label is left out, which
    Prometheus reads the same as an empty value)."""
    return ",".join(f'{k}="{label_value(v)}"' for k, v in pairs if v is not None)


def number(v: object) -> str | None:
    """A sample value as the format writes it, or None where no sample must be written."""
    t = type(v)
    if t is int:
        return str(v)
    if t is float:
        return repr(v) if math.isfinite(v) else None  # type: ignore[arg-type]
    if t is bool:
        return "1" if v else "0"
    if v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return repr(f) if math.isfinite(f) else None


def _help_text(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n")


class Exposition:
    """Samples gathered per family, written in the families' declared order (each family's HELP and
    TYPE once, its samples together, as the format requires)."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = families
        # family -> label text -> the sample's whole line (formatted once, here: at 1,000 nodes x 8 GPUs
        # a page is ~320,000 lines, and a second pass over them cost a third of the render).
        self.samples: dict[str, dict[str, str]] = {f.name: {} for f in families}
        self.duplicates = 0

    def add(self, name: str, label_text: str, value: object) -> None:
        """One sample of ``name`` with labels already rendered (``labels()``, or pieces of it joined by
        the caller: per GPU the label text is built once and shared by every family)."""
        t = type(value)  # number()'s two common cases inline: this runs once per sample
        if t is int:
            text: str | None = str(value)
        elif t is float:
            text = repr(value) if math.isfinite(value) else None  # type: ignore[arg-type]
        else:
            text = number(value)
        if text is None:
            return
        series = self.samples[name]
        if label_text in series:
            self.duplicates += 1
            return
        series[label_text] = f"{name}{{{label_text}}} {text}\n" if label_text else f"{name} {text}\n"

    def count(self) -> int:
        return sum(len(s) for s in self.samples.values())

    def text(self) -> str:
        out: list[str] = []
        for f in self.families:
            series = self.samples[f.name]
            if series:
                out.append(f"# HELP {f.name} {_help_text(f.help)}\n# TYPE {f.name} {f.type}\n")
                out.extend(series.values())
        return "".join(out)
