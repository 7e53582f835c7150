"""The exposition writer on its own: label values, numbers, one sample per series, the families' names."""

from __future__ import annotations

import math
import re

import pytest

from clustertop.export import metrics
from clustertop.export.exposition import LABEL_MAX, Exposition, Family, label_value, labels, number
from tests.support import promtext


def one(value: object) -> str:
    """``value`` written as a label and read back by the strict parser."""
    x = Exposition([Family("t_x", "gauge", "t")])
    x.add("t_x", f'v="{label_value(value)}"', 1)
    fam = promtext.parse(x.text())["t_x"]
    ((key, _),) = fam.samples.items()
    return dict(key)["v"]


@pytest.mark.parametrize("raw, shown", [
    ("gpu01", "gpu01"),
    ('a"b', 'a"b'),
    ("back\\slash", "back\\slash"),
    ("two\nlines", "two\\x0alines"),  # a node's newline is data: shown escaped, as the dashboard shows it
    ("gpu-\u202e10", "gpu-\\u202e10"),  # a bidi override would make a legend read "01-upg"
    ("\x1b[31mred", "\\x1b[31mred"),
    ("界-node", "界-node"),
    ("", ""),
    (3, "3"),
])
def test_label_values_are_escaped_and_read_back(raw: object, shown: str) -> None:
    assert one(raw) == shown


def test_a_long_label_value_is_bounded_and_still_names_its_whole_value() -> None:
    a, b = "h" * (1 << 20), "h" * ((1 << 20) - 1) + "x"  # a 1 MB name, and one that differs only at the end
    va, vb = one(a), one(b)
    assert len(va) == len(vb) == LABEL_MAX
    assert va.startswith("h" * 100) and "…" in va
    assert va != vb  # the hash of the whole value keeps two long names two series
    assert one("h" * LABEL_MAX) == "h" * LABEL_MAX  # at the bound: kept whole
    # Escaping that makes a short value long (each bidi character becomes 6) is bounded the same way.
    assert len(one("\u202e" * 100)) == LABEL_MAX


@pytest.mark.parametrize("value, text", [
    (None, None), (math.nan, None), (math.inf, None), (-math.inf, None),
    (0, "0"), (7, "7"), (2**64 - 1, "18446744073709551615"), (-(2**63), "-9223372036854775808"),
    (True, "1"), (False, "0"), (0.5, "0.5"), (1e308, "1e+308"), (5e-324, "5e-324"),
])
def test_numbers_unknown_and_non_finite_write_no_sample(value: object, text: str | None) -> None:
    assert number(value) == text
    if text is not None:  # what is written reads back as the same float64
        assert float(text) == float(value)  # type: ignore[arg-type]


def test_a_series_is_written_once_and_unknown_writes_nothing() -> None:
    x = Exposition([Family("t_a", "gauge", "a"), Family("t_b", "counter", "b\nwith a \\ in it")])
    x.add("t_b", 'i="0"', 1)
    x.add("t_a", "", None)
    x.add("t_b", 'i="0"', 2)  # the same series again: left out, counted
    x.add("t_b", 'i="1"', math.nan)
    assert x.duplicates == 1
    text = x.text()
    assert text == '# HELP t_b b\\nwith a \\\\ in it\n# TYPE t_b counter\nt_b{i="0"} 1\n'
    assert promtext.parse(text)["t_b"].samples == {(("i", "0"),): 1.0}


def test_labels_leave_unknown_ones_out() -> None:
    assert labels((("a", "x"), ("b", None), ("c", 1))) == 'a="x",c="1"'


def test_every_family_is_named_and_documented_as_the_format_and_prometheus_want() -> None:
    names = [f.name for f in metrics.FAMILIES]
    assert len(names) == len(set(names))
    for f in metrics.FAMILIES:
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", f.name), f.name
        assert f.type in ("gauge", "counter") and f.help.strip()
        if f.borrowed is None:
            # clustertop's own: snake_case, counters end in _total, no unit but a base one.
            assert f.name.startswith("clustertop_") and f.name == f.name.lower(), f.name
            assert (f.type == "counter") == f.name.endswith("_total"), f.name
            assert not re.search(r"_(ms|milliseconds|mhz|percent|pct|mib|kib|kb|mb|gb|mw|celsius_ms)(_|$)", f.name)
        else:
            assert f.borrowed in ("node_exporter", "dcgm-exporter", "client_python"), f
            assert f.name.startswith({"node_exporter": "node_", "dcgm-exporter": "DCGM_FI_",
                                      "client_python": "process_"}[f.borrowed])
