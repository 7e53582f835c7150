"""A strict reader of the Prometheus text exposition format 0.0.4, for what `clustertop exporter` writes.

Stricter than Prometheus on purpose: where the format allows a choice, the exporter makes one, and a
change of it should be seen. Refused: a sample before its family's HELP and TYPE, a family's samples
split up, a series twice, a name or label name outside the format's alphabet (or a ``__`` label), an
escape other than ``\\\\``, ``\\"`` and ``\\n`` in a label value, a value that is not a finite number
(the exporter leaves NaN and ±inf out), timestamps, blank lines, a body that is not UTF-8 or does not
end with a newline. ``prometheus_client``'s own parser and ``promtool check metrics`` are run beside it
by the tests; this one says precisely what is wrong, where.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def get(self, **labels: str) -> float | None:
        """The value of the one sample whose labels include ``labels`` (None: none; two: an error)."""
        found = [v for k, v in self.samples.items() if set(labels.items()) <= set(k)]
        if len(found) > 1:
            raise AssertionError(f"{self.name}: {len(found)} samples match {labels}")
        return found[0] if found else None

    def where(self, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {k: v for k, v in self.samples.items() if set(labels.items()) <= set(k)}


def _labels(text: str, where: str) -> tuple[tuple[tuple[str, str], ...], int]:
    """Parse ``{a="x",b="y"}`` from text[0] == "{"; returns the pairs and the index after "}"."""
    i, out, names = 1, [], set()
    while True:
        if text.startswith("}", i):
            return tuple(out), i + 1
        m = LABEL_NAME.match(text, i)
        if not m:
            raise FormatError(f"{where}: bad label name at {text[i:i + 20]!r}")
        name = m.group(0)
        if name.startswith("__"):
            raise FormatError(f"{where}: reserved label name {name}")
        if name in names:
            raise FormatError(f"{where}: label {name} twice")
        names.add(name)
        i = m.end()
        if not text.startswith('="', i):
            raise FormatError(f"{where}: expected =\" after {name}")
        i += 2
        value = []
        while True:
            if i >= len(text):
                raise FormatError(f"{where}: unterminated value of {name}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise FormatError(f"{where}: escape \\{nxt} in the value of {name}")
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        out.append((name, "".join(value)))
        if text.startswith(",", i):
            i += 1
        elif not text.startswith("}", i):
            raise FormatError(f"{where}: expected , or }} after the value of {name}")


def parse(body: bytes | str) -> dict[str, Family]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body  # UnicodeDecodeError: not UTF-8
    if text and not text.endswith("\n"):
        raise FormatError("the body does not end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}"
        if not line:
            raise FormatError(f"{where}: blank line")
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            if not NAME.fullmatch(name) or name in families or pending_help is not None:
                raise FormatError(f"{where}: HELP out of place or for a family seen before: {line[:80]!r}")
            if "\\" in help_text.replace("\\\\", "").replace("\\n", ""):
                raise FormatError(f"{where}: bad escape in HELP")
            pending_help = (name, help_text)
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            if pending_help is None or pending_help[0] != name:
                raise FormatError(f"{where}: TYPE of {name} without its HELP just before")
            if kind not in TYPES:
                raise FormatError(f"{where}: type {kind!r}")
            current = families[name] = Family(name, kind, pending_help[1])
            pending_help = None
            continue
        if line.startswith("#"):
            raise FormatError(f"{where}: a comment that is neither HELP nor TYPE")
        m = NAME.match(line)
        if not m:
            raise FormatError(f"{where}: bad metric name at {line[:40]!r}")
        name = m.group(0)
        if current is None or name != current.name:
            raise FormatError(f"{where}: sample of {name} outside its family (HELP/TYPE first, samples together)")
        rest = line[m.end():]
        pairs: tuple[tuple[str, str], ...] = ()
        if rest.startswith("{"):
            pairs, end = _labels(rest, where)
            rest = rest[end:]
        if not rest.startswith(" ") or " " in rest[1:]:
            raise FormatError(f"{where}: expected one space and a value (no timestamp): {rest[:40]!r}")
        try:
            value = float(rest[1:])
        except ValueError:
            raise FormatError(f"{where}: value {rest[1:]!r}") from None
        if not math.isfinite(value):
            raise FormatError(f"{where}: non-finite value {rest[1:]!r}")
        key = tuple(sorted(pairs))
        if key in current.samples:
            raise FormatError(f"{where}: series {name}{dict(pairs)} twice")
        current.samples[key] = value
    if pending_help is not None:
        raise FormatError(f"HELP of {pending_help[0]} without a TYPE")
    return families


def client_python(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The same body read by prometheus_client's own parser: family -> labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = body.decode("utf-8")
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            # The parser names a counter family without its "_total" and every counter sample with it,
            # also where the exposition has none (dcgm-exporter's counters): keyed by the name as written.
            name = fam.name if fam.type == "counter" and f"{fam.name}_total" == s.name and \
                f"# TYPE {fam.name} counter" in text else s.name
            # float(): it keeps a value written as digits as an exact int; Prometheus stores float64.
            out.setdefault(name, {})[tuple(sorted(s.labels.items()))] = float(s.value)
    return out


def promtool(body: bytes) -> list[str]:
    """``promtool check metrics``'s findings, one per line (the Debian prometheus package's promtool)."""
    exe = shutil.which("promtool")
    if exe is None:
        raise RuntimeError("promtool not installed: run the README's test command (tests/run installs prometheus)")
    r = subprocess.run([exe, "check", "metrics"], input=body, capture_output=True, timeout=120)
    lines = (r.stdout + r.stderr).decode("utf-8", "replace").splitlines()
    if r.returncode not in (0, 3) or (r.returncode == 3) != bool(lines):  # 3: findings; anything else: it broke
        raise RuntimeError(f"promtool exited {r.returncode}: {lines[:5]}")
    return lines
