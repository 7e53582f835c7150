"""Property-based fuzzing of every pure parser that reads data from outside the agent.

What stands in for what: nothing is faked. The parsers are pure functions (text, bytes or decoded
JSON in, values out), so hypothesis calls them directly with

- the real captured files (``tests/fixtures/host``, ``nfs``, ``bonds``, ``ceph``, ``k8s``, ``queues``),
  truncated at a random point, spliced with noise, with fields swapped for garbage (mostly the numeric
  ones), or followed by lines of a key the parser reads with garbage after it ("Uid: ²"); JSON answers
  with nested values replaced by NaN, 10**400, a wrong type or random JSON, or dropped: a read racing
  the kernel, a proxy cutting an answer short, a new Ceph or Kubernetes release changing a field;
- generated text: control characters, Unicode digits ("²" passes ``str.isdigit`` but not ``int``),
  numbers beyond 64 bits and beyond ``int``'s 4300-digit limit, "nan"/"inf", lines up to 10k chars;
- generated JSON-like values (None/bool/int/float/str in lists and dicts), keyed mostly with the field
  names of the real answers so the parsers reach their deep branches. Floats include NaN and
  infinities and ints exceed 64 bits because ``json.loads`` (httpx, the Kubernetes client) yields both;
- signed command maps, forged or damaged byte by byte, as the command executor hands them to verify().

The product rule: bad input from a node or a source never crashes the agent or the dashboard. A
parser returns a value of its declared shape (None for what it cannot tell) or raises the one error
it documents and its caller catches; nothing else. Parsers of network answers (Ceph, RabbitMQ, Celery,
Dask, Kubernetes) must also return structs the wire can carry, checked the way they travel: encoded
as the publisher does (an int beyond 64 bits raises there and fails the agent's whole tick) and decoded
typed as the dashboard does (a str where the schema says int makes it drop the whole payload).
Kernel-written text (/proc, /sys) is held to types only: the kernel prints fixed-width integers.

Every crash the fuzzer found is pinned with ``@example``, so it is checked on every run, not only when
the random search happens to find it again.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from clustertop import wire
from clustertop.collectors import bonds, ceph_parse, gpu, kubernetes, nfs, owner, procfs
from clustertop.collectors import bonds_parse as bonding
from clustertop.collectors import kubernetes_parse as k8s_parse
from clustertop.collectors import queues_parse as qp
from clustertop.collectors.base import Roots
from clustertop.control import signing
from clustertop.wire import schema
from tests.conftest import FIXTURES

HOST = FIXTURES / "host"
CEPH = FIXTURES / "ceph"  # where tests/collectors/test_ceph.py finds the captured ceph-mgr answers
K8S = FIXTURES / "k8s"
QUEUES = FIXTURES / "queues"

#: Example counts follow what hypothesis costs to generate: 300 text inputs, 200 nested ones (decoded JSON
#: answers, sysfs views, command maps: about twice the cost), 150 whole pod and node lists. The module
#: runs in under a minute on 2 cores.
fuzz = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
fuzz_nested = settings(fuzz, max_examples=200)
fuzz_lists = settings(fuzz, max_examples=150)


# ---------------------------------------------------------------------------------------------
# Fixtures as data
# ---------------------------------------------------------------------------------------------


def _texts(pattern: str, root: Path = HOST) -> list[str]:
    """Every real file matching ``pattern`` under the fixture trees (there is at least one)."""
    out = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(root.glob(pattern)) if p.is_file()]
    assert out, f"no fixture matches {root}/{pattern}"
    return out


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _tokens(texts: list[str]) -> list[str]:
    return sorted({t for text in texts for t in text.split()})[:400]


def _walk(doc: Any) -> Iterator[Any]:
    yield doc
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _walk(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _walk(v)


def _vocabulary(docs: list[Any]) -> list[str]:
    """Field names and short string values of real answers: random keys alone would never reach
    ``status.capacity["nvidia.com/gpu"]`` or ``stats.rd_bytes.rate``."""
    words: set[str] = set()
    for doc in docs:
        for node in _walk(doc):
            if isinstance(node, dict):
                words.update(k for k in node if isinstance(k, str))
            elif isinstance(node, str) and len(node) <= 40:
                words.add(node)
    return sorted(words)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path to every nested value, the root's () included."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

#: Strings that break naive parsers: floats that do not convert to int, line breaks only splitlines()
#: knows, characters str.split() takes for blanks, escapes, quotes.
ODD = ["", "-", "(", ")", ":", "=", "\0", "\x1b[31m", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\ufeff",
       "é", "\x7f", "\xa0", "\u3000", "N/A", "none", "Unknown", "\\040", "\\134", "\\", '"', "'"]
#: Where a number belongs: Unicode digits that pass str.isdigit() but not int() ("²", "①") or pass both
#: ("١٢"), a number past int()'s 4300-digit limit, past 64 bits, past float, and the float spellings.
NUMERIC_ODD = ["²", "³", "①", "¹²", "9" * 5000, "١٢", "٣", "-1", "+5", "0", "1_000", "0x1f", "1 2", "",
               "18446744073709551616", "-9223372036854775809", "nan", "NaN", "inf", "+Inf", "-inf", "1e999", "1e-999"]
EDGE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30,
             -(10**30), 10**400]

#: JSON values that json.loads returns and a parser expecting a count, a name or an object must survive:
#: NaN, the infinities, ints past 64 bits and past float (10**400: float() raises), each wrong type.
SPECIAL_JSON = [math.nan, math.inf, -math.inf, 1e300, -0.0, 10**400, -(10**400), 2**64, 2**64 - 1, 2**63,
                -(2**63) - 1, True, False, None, "", "x", [], {}, [1, "a"], [None, None], {"a": 1}, *EDGE_INTS]

special = st.sampled_from(SPECIAL_JSON)
numberish = st.one_of(st.sampled_from(NUMERIC_ODD), st.integers(-(2**70), 2**70).map(str),
                      st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4))
token = st.one_of(numberish, st.sampled_from(ODD), st.sampled_from(EDGE_INTS).map(str), st.floats().map(repr),
                  st.text(max_size=12))
separator = st.sampled_from([" ", "\t", ":", "", "  ", "=", ",", "-", "\0"])


def _splice(text: str, cut: int, at: int, noise: str) -> str:
    """``text`` cut short at ``cut``, with ``noise`` written in at ``at``: a torn or corrupted read."""
    text = text[: cut % (len(text) + 1)]
    at %= len(text) + 1
    return text[:at] + noise + text[at:]


_FIELD_SEP = re.compile(r"([\s:=,()]+)")


def _swap_fields(text: str, swaps: list[tuple[bool, int, str]]) -> str:
    """Fields of ``text`` (between blanks, ":", "=", "," and parentheses) replaced, layout kept: the uid
    of a passwd line, one counter of a diskstats line, the value of "Uid:". A swap with ``numeric`` set
    picks among the fields that hold a number in the real file, which is where parsers call int()."""
    parts = _FIELD_SEP.split(text)
    fields = range(0, len(parts), 2)  # re.split puts the separators at the odd indexes
    numbers = [i for i in fields if parts[i].isdecimal()]
    for numeric, index, new in swaps:
        pool = numbers if numeric and numbers else fields
        parts[pool[index % len(pool)]] = new
    return "".join(parts)


def _repeat(piece: str, n: int) -> str:
    return (piece * n)[:10_000]


#: Up to 10k characters: one very long line when the piece has no line break, a flood of lines when it has.
huge = st.builds(_repeat, st.text(min_size=1, max_size=16), st.integers(1, 10_000))


def kernel_text(real: list[str], keys: list[str] | None = None) -> st.SearchStrategy[str]:
    """Text shaped like the real files (their own tokens in random lines), the real files damaged,
    a real file followed by lines of a key the parser looks for with garbage after it ("Uid: ²",
    "btime", "cpu3 1 x"), and plain garbage. ``keys`` defaults to the first word of each real line."""
    tok = st.sampled_from(_tokens(real)) | token
    line = st.builds(str.join, separator, st.lists(tok, max_size=16))
    lines = st.builds(str.join, st.sampled_from(["\n", "\n\n", "\r\n"]), st.lists(line, max_size=12))
    damaged = st.builds(_splice, st.sampled_from(real), st.integers(0, 2**16), st.integers(0, 2**16),
                        st.text(max_size=40) | tok)
    swapped = st.builds(_swap_fields, st.sampled_from(real),
                        st.lists(st.tuples(st.booleans(), st.integers(0, 2**16), numberish | tok), min_size=1,
                                 max_size=3))
    firsts = sorted({ln.split()[0] for text in real for ln in text.splitlines() if ln.split()})
    keyed_line = st.builds(lambda k, sep, vals: k + sep + " ".join(vals), st.sampled_from(keys or firsts),
                           st.sampled_from(["", " ", "\t", ":", ": ", ":\t", "="]), st.lists(numberish | tok, max_size=4))
    keyed = st.builds(lambda text, extra: text + "\n".join(extra), st.sampled_from(["", *real]),
                      st.lists(keyed_line, min_size=1, max_size=6))
    repeated = st.builds(_repeat, st.sampled_from(real), st.integers(2, 200))
    # keyed and swapped twice: they are the ones that put garbage where a parser converts numbers
    return st.one_of(st.text(max_size=200), lines, damaged, swapped, swapped, keyed, keyed, huge, repeated)


def json_values(vocab: list[str]) -> st.SearchStrategy[Any]:
    """What json.loads can return, with keys and strings mostly from the real answers."""
    words = st.sampled_from(vocab)
    keys = words | st.text(max_size=8)
    scalars = st.one_of(st.sampled_from(SPECIAL_JSON), st.none(), st.booleans(), st.integers(), st.floats(),
                        words, st.text(max_size=30), st.sampled_from(ODD + NUMERIC_ODD))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
                        max_leaves=12)


_DROP = object()  # the value of a path to delete


def _edited(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``doc`` with the value at ``path`` replaced (or dropped, for _DROP), copying only the containers
    on the way: the real answer stays untouched for the next example, and nothing is deep-copied."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict) and head in doc or isinstance(doc, list) and isinstance(head, int) and head < len(doc):
        out = copy.copy(doc)
        if not rest and value is _DROP:
            del out[head]  # a field a newer (or older) release no longer sends
        else:
            out[head] = _edited(doc[head], rest, value)
        return out
    return doc  # an earlier edit removed this path: nothing to do


_Paths = list[tuple[Any, ...]]
_PATH_GROUPS: dict[int, tuple[Any, list[_Paths], _Paths, _Paths]] = {}  # id -> (the answer itself, groups)


def _path_groups(doc: Any) -> tuple[list[_Paths], _Paths, _Paths]:
    """The paths of a real answer to pick from: grouped by depth, then those to its numbers and those
    to its strings (computed once per answer). Picking a group first gets the few fields a parser
    reads (``status.capacity``, ``df.stats.total_bytes``) hit far more often than a uniform pick over
    thousands of leaves would, and a number is where NaN, 10**400 and 2**64 do damage."""
    if id(doc) not in _PATH_GROUPS or _PATH_GROUPS[id(doc)][0] is not doc:  # the answer held: its id stays its own
        by_depth: dict[int, list[tuple[Any, ...]]] = {}
        numbers, strings = [], []
        for p in _paths(doc):
            by_depth.setdefault(len(p), []).append(p)
            leaf = _at(doc, p)
            if isinstance(leaf, int | float) and not isinstance(leaf, bool):
                numbers.append(p)
            elif isinstance(leaf, str):
                strings.append(p)
        groups = [by_depth[d] for d in sorted(by_depth)]
        _PATH_GROUPS[id(doc)] = (doc, groups, numbers or groups[-1], strings or groups[-1])
    return _PATH_GROUPS[id(doc)][1:]


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn, docs: list[Any], values: st.SearchStrategy[Any]) -> Any:
    """A real answer with one to four nested values replaced, by a special value or random JSON, or dropped."""
    original = draw(st.sampled_from(docs))
    by_depth, numbers, strings = _path_groups(original)
    doc = original
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.integers(0, 4))  # 2 in 5 by depth, 2 in 5 a number, 1 in 5 a string
        group = by_depth[draw(st.integers(0, len(by_depth) - 1))] if target < 2 else numbers if target < 4 else strings
        path = group[draw(st.integers(0, len(group) - 1))]  # indexes: cheaper than a new sampled_from
        how = draw(st.integers(0, 4))  # 1 in 5 dropped, 2 in 5 a special value, 2 in 5 random JSON
        doc = _edited(doc, path, _DROP if path and how == 0 else draw(special if how < 3 else values))
    return doc


def answers(docs: list[Any], vocab: list[str]) -> st.SearchStrategy[Any]:
    values = json_values(vocab)
    return st.one_of(mutated(docs, values), values)


#: The integers msgpack carries (int64 and uint64): what a parser may put in an int field.
WIRE_INTS = range(-(2**63), 2**64)


def wire_ok(*objs: msgspec.Struct) -> None:
    """The struct survives the trip the dashboard sees: the publisher's encode, then the reader's typed
    decode (a WireError or OverflowError out of here is the bug this module hunts)."""
    for obj in objs:
        back = wire.decode(wire.encode(obj), type(obj))
        assert type(back) is type(obj)


def all_of(values: Any, kind: type | tuple[type, ...]) -> bool:
    return all(isinstance(v, kind) for v in values)


def opt(value: Any, kind: type | tuple[type, ...]) -> bool:
    """None, or a ``kind`` that is not a bool posing as an int."""
    return value is None or (isinstance(value, kind) and not (isinstance(value, bool) and kind is int))


# ---------------------------------------------------------------------------------------------
# /proc and /sys (collectors/procfs.py). These raise ValueError for a number they cannot read
# (int()/float() of the field): the collector runner reports it as that collector's error.
# ---------------------------------------------------------------------------------------------

STAT = _texts("*/proc/stat")
MEMINFO = _texts("*/proc/meminfo")
CPUINFO = _texts("*/proc/cpuinfo")
DISKSTATS = _texts("*/proc/diskstats")
NETDEV = _texts("*/proc/net/dev")
MOUNTS = _texts("*/proc/self/mounts") + _texts("*/proc/self/mounts", FIXTURES / "nfs")
PID_STAT = _texts("*/proc/[0-9]*/stat")
PID_STATUS = _texts("*/proc/[0-9]*/status")
CMDLINES = [p.read_bytes() for p in sorted(HOST.glob("*/proc/[0-9]*/cmdline"))]
CGROUPS = _texts("*/proc/[0-9]*/cgroup")
SMALL = _texts("*/proc/loadavg") + _texts("*/proc/uptime")
CPU_LISTS = _texts("*/sys/devices/system/cpu/*/topology/*_list")
OS_RELEASE = _texts("*/etc/os-release")
PASSWD = _texts("*/etc/passwd")
SYSFS_NET = _texts("*/sys/devices/**/net/*/*")


def _ticks_ok(t: procfs.CpuTicks) -> bool:
    return all_of((t.user, t.nice, t.system, t.idle, t.iowait, t.irq, t.softirq, t.steal), int)


@fuzz
@given(kernel_text(STAT, ["cpu", "cpu0", "cpu7", "cpu²", "btime", "procs_running", "procs_blocked", "intr"]),
       kernel_text(STAT))
@example("cpu  10628 0 4263 99184\n", "cpu  1" + "0" * 400 + " 0 4263 99184\n")  # OverflowError in cpu_pct
def test_parse_stat(a: str, b: str) -> None:
    try:
        prev, cur = procfs.parse_stat(a), procfs.parse_stat(b)
    except ValueError:
        return
    for s in (prev, cur):
        assert s.cpu is None or _ticks_ok(s.cpu)
        assert isinstance(s.per_cpu, dict) and all_of(s.per_cpu, int) and all(_ticks_ok(t) for t in s.per_cpu.values())
        assert opt(s.btime, int) and opt(s.procs_running, int) and opt(s.procs_blocked, int)
    if prev.cpu and cur.cpu:
        # deltas are clamped at 0, so whatever the counters did the shares stay percentages
        pct = procfs.cpu_pct(prev.cpu, cur.cpu)
        assert pct is None or all(0.0 <= v <= 100.0 for v in (pct.util, pct.user, pct.system, pct.iowait, pct.steal))


@fuzz
@given(kernel_text(MEMINFO))
def test_parse_meminfo_never_raises(text: str) -> None:
    out = procfs.parse_meminfo(text)
    assert all_of(out, str) and all_of(out.values(), int)


@fuzz
@given(kernel_text(SMALL))
def test_parse_loadavg_and_uptime(text: str) -> None:
    try:
        la = procfs.parse_loadavg(text)
    except ValueError:
        la = None
    assert la is None or (len(la) == 3 and all_of(la, float))
    try:
        up = procfs.parse_uptime(text)
    except ValueError:
        return
    assert opt(up, float)


@fuzz
@given(kernel_text(CPUINFO, ["processor\t", "model name\t", "physical id\t", "core id\t", "cpu MHz\t",
                             "CPU implementer\t", "CPU part\t", "Hardware\t", "Model\t"]))
def test_parse_cpuinfo_never_raises(text: str) -> None:
    info = procfs.parse_cpuinfo(text)
    assert opt(info.model, str) and opt(info.board, str) and opt(info.mhz, float)
    assert info.logical is None or (isinstance(info.logical, int) and info.logical > 0)
    assert info.physical is None or (isinstance(info.physical, int) and info.physical > 0)


# Well-formed chunks only (garbage comes from kernel_text): a bad one would raise before a huge range is read.
chunk = st.one_of(st.integers(0, 2**40).map(str), st.builds("{}-{}".format, st.integers(0, 2**40), st.integers(0, 2**40)))


@fuzz
@given(kernel_text(CPU_LISTS) | st.lists(chunk, max_size=8).map(",".join))
@example("0-1099511627776")  # was expanded into a list of 2**40 ints
@example("0-9223372036854775809")  # len() of that range raised OverflowError
def test_parse_cpu_list(text: str) -> None:
    # A range as wide as "0-1099511627776" must be refused, not expanded into memory.
    try:
        cpus = procfs.parse_cpu_list(text)
    except ValueError:
        return
    assert all_of(cpus, int)


@fuzz
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 8)), min_size=1, max_size=8))
def test_parse_cpu_list_reads_what_sysfs_writes(ranges: list[tuple[int, int]]) -> None:
    text = ",".join(f"{lo}-{lo + n}" if n else str(lo) for lo, n in ranges) + "\n"
    assert procfs.parse_cpu_list(text) == [c for lo, n in ranges for c in range(lo, lo + n + 1)]


@fuzz
@given(kernel_text(DISKSTATS))
def test_parse_diskstats(text: str) -> None:
    try:
        out = procfs.parse_diskstats(text)
    except ValueError:
        return
    assert all_of(out, str) and all_of(out.values(), procfs.DiskCounters)
    assert all(all_of(c._asdict().values(), int) for c in out.values())


@fuzz
@given(kernel_text(NETDEV))
def test_parse_net_dev(text: str) -> None:
    try:
        out = procfs.parse_net_dev(text)
    except ValueError:
        return
    assert all_of(out, str) and all(all_of(c._asdict().values(), int) for c in out.values())


@fuzz
@given(kernel_text(MOUNTS))
def test_parse_mounts_never_raises(text: str) -> None:
    for m in procfs.parse_mounts(text):
        assert all_of((m.device, m.mountpoint, m.fstype, m.options), str)
    for n in nfs.parse_mounts(text):
        assert all_of((n.source, n.mountpoint, n.fstype), str)
    assert all(m.fstype in nfs.NET_FSTYPES for m in nfs.network_mounts(text))


def _kernel_escape(path: str) -> str:
    """How the kernel writes a path into /proc/self/mounts (fs/proc_namespace.c, mangle())."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@fuzz
@given(st.text(min_size=1, max_size=60), st.text(max_size=20))
@example("/mnt/共有\u3000フォルダ", "nas:/share")  # split() cut the path at the ideographic space
@example("/srv/a\xa0b", "")
@example("\x1f", "")  # found by the fuzzer: str.split() takes U+001F for a blank too
@example("/x\x85y\u2028z", "srv:/x")  # splitlines() broke the line there
def test_mount_paths_unescape_to_what_was_mounted(path: str, src: str) -> None:
    # The kernel escapes only space, tab, newline and backslash; every other character (a no-break or
    # ideographic space, U+0085, U+2028) is written as is and must stay part of the path.
    assert procfs.unescape(_kernel_escape(path)) == path
    line = f"{_kernel_escape(src) or 'none'} {_kernel_escape(path)} nfs4 rw 0 0\n"
    assert [m.mountpoint for m in procfs.parse_mounts(line)] == [path]
    assert [m.mountpoint for m in nfs.network_mounts(line)] == [path]


@fuzz
@given(kernel_text(PID_STAT))
def test_parse_pid_stat(text: str) -> None:
    # ValueError is the one error of the /proc/<pid> readers' contract: every caller (host and GPU
    # collectors, command executor, task manager) catches exactly that for a corrupt line.
    try:
        ps = procfs.parse_pid_stat(text)
    except ValueError:
        return
    assert isinstance(ps.comm, str) and isinstance(ps.state, str)
    assert all_of((ps.pid, ps.ppid, ps.pgrp, ps.utime, ps.stime, ps.threads, ps.starttime, ps.rss_pages), int)


@fuzz
@given(kernel_text(PID_STATUS, ["Name:", "Uid:", "VmRSS:", "Threads:", "State:"]))
def test_parse_pid_status(text: str) -> None:
    try:
        st_ = procfs.parse_pid_status(text)
    except ValueError:
        return
    assert opt(st_.name, str) and opt(st_.uid, int) and opt(st_.rss_bytes, int) and opt(st_.threads, int)


@fuzz
@given(st.one_of(st.binary(max_size=600), st.sampled_from(CMDLINES),
                 st.builds(lambda b, n: b[:n], st.sampled_from(CMDLINES), st.integers(0, 200))))
def test_parse_cmdline_never_raises(raw: bytes) -> None:
    argv = procfs.parse_cmdline(raw)
    assert all_of(argv, str)
    line = gpu.one_line(argv, limit=80)
    assert line is None or (isinstance(line, str) and 0 < len(line) <= 80)


@fuzz
@given(st.lists(st.text(st.characters(exclude_characters="\0", exclude_categories=("Cs",)), min_size=1),
                min_size=1, max_size=8))
def test_parse_cmdline_gives_back_argv(argv: list[str]) -> None:
    assert procfs.parse_cmdline(b"\0".join(a.encode() for a in argv) + b"\0") == argv


@fuzz
@given(kernel_text(OS_RELEASE, ["NAME", "PRETTY_NAME", "ID", "VERSION_ID", "#NAME", " NAME"]))
def test_parse_os_release_never_raises(text: str) -> None:
    rel = procfs.parse_os_release(text)
    assert all_of(rel, str) and all_of(rel.values(), str)


@fuzz
@given(kernel_text(PASSWD))
@example("root:x:²:0:root:/root:/bin/bash\n")  # isdigit() let "²" through to int(), which raised
@example("big:x:" + "9" * 5000 + ":0::/:/bin/sh\n")  # past int()'s 4300-digit limit
def test_parse_passwd_never_raises(text: str) -> None:
    users = procfs.parse_passwd(text)
    assert all_of(users, int) and all_of(users.values(), str)


@fuzz
@given(kernel_text(SYSFS_NET) | st.none(), kernel_text(SYSFS_NET) | st.none())
def test_parse_speed_and_operstate_never_raise(a: str | None, b: str | None) -> None:
    speed = procfs.parse_speed(a or "")
    assert speed is None or (isinstance(speed, int) and speed > 0)
    assert procfs.parse_operstate(a, b) in (True, False, None)


# The same /proc files as read through procfs's /proc/<pid> reader (host and GPU collectors, command executor).


@fuzz
@given(kernel_text(PID_STAT + STAT + PID_STATUS, ["Uid:", "btime", "Name:"]))
@example("Uid:\t²\t0\t0\t0\n")  # isdigit() let "²" through to int(), which raised
@example("btime \n")  # IndexError
@example("btime x\n")  # ValueError, from a parser documented to return None
@example("1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " + "9" * 400 + " 0 0\n")  # overflowed ticks -> seconds
def test_proc_pid_reader(text: str) -> None:
    assert opt(procfs.parse_btime(text), int)  # documented: None for what it cannot read
    with tempfile.TemporaryDirectory() as d:
        raw = text.encode("utf-8", "replace")
        Path(d, "stat").write_bytes(raw)
        Path(d, "7").mkdir()
        for name in ("stat", "status", "cmdline"):
            Path(d, "7", name).write_bytes(raw)
        roots = Roots(proc=d)
        btime = procfs.read_btime(roots)
        assert opt(btime, int)
        # the readers' contract: a process, or ValueError for a corrupt file, nothing else (None is for
        # a process that is gone, which an empty stat file reads like: it exited while being read)
        try:
            info = procfs.read_pid(roots, 7, btime)
        except ValueError:
            return
    if info is None:
        assert raw == b""
        return
    assert isinstance(info.stat.comm, str) and opt(info.uid, int)
    assert all_of(info.argv, str) and opt(info.start_ts, float)


# ---------------------------------------------------------------------------------------------
# cgroup attribution (collectors/owner.py): never raises, whatever the runtime wrote
# ---------------------------------------------------------------------------------------------

UUID = "0b2b2c4e-5d62-4a4b-9f36-2a3c7d9e1f10"
CID = "8e3f1c2a9b7d4e6f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef0"
COMPONENTS = ["", ".", "..", " ", "kubepods", "kubepods.slice", "burstable", "besteffort", f"pod{UUID}",
              f"kubepods-burstable-pod{UUID.replace('-', '_')}.slice", f"pod{UUID.upper()}", CID, CID[:63],
              f"docker-{CID}.scope", f"cri-containerd-{CID}.scope", f"crio-conmon-{CID}.scope", "system.slice",
              "user.slice", "user-1000.slice", "user@1000.service", "session-3.scope", "init.scope",
              "foo.service", ".service", "lxc.payload.c1", "lxc", "slurm", "uid_1000", "job_42", "job_",
              "slurmstepd.scope", "process_api", ":", "\n"]
cgroup_path = st.lists(st.sampled_from(COMPONENTS) | st.text(max_size=10), max_size=8).map("/".join)
cgroup_line = st.builds("{}:{}:{}".format, token, st.sampled_from(["", "cpu,cpuacct", "name=systemd", "memory"]),
                        cgroup_path)
argv_word = st.sampled_from(["celery", "/usr/bin/celery", "-m", "worker", "-A", "proj", "-n", "--hostname",
                             "--hostname=w1@h", "-nw2@h", "-n", "python3", "[celeryd: w1@h:MainProcess]",
                             "[celeryd: ", ""]) | st.text(max_size=12)
HEX64 = re.compile(r"[0-9a-f]{64}")


@fuzz
@given(kernel_text(CGROUPS) | st.lists(cgroup_line, max_size=12).map("\n".join),
       st.lists(argv_word, max_size=10))
def test_cgroup_attribution_never_raises(text: str, argv: list[str]) -> None:
    found = owner.parse_cgroup(text)
    assert isinstance(found, schema.Owner) and found.kind in ("pod", "container", "user", "system")
    if found.kind == "pod":
        assert found.pod_uid is not None and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", found.pod_uid)
    assert found.container_id is None or HEX64.fullmatch(found.container_id)
    is_celery, name = owner.celery_worker(argv)
    assert isinstance(is_celery, bool) and opt(name, str) and (is_celery or name is None)
    final = owner.apply_cmdline(found, argv)
    if found.kind == "pod":
        assert final is found  # in a pod the pod is what people act on, whatever the command line says
    else:
        assert final.kind in (found.kind, "celery")
    wire_ok(found, final)


@fuzz
@given(cgroup_path)
def test_classify_path_never_raises(path: str) -> None:
    rank, found = owner.classify_path(path)
    assert rank in owner._RANK and isinstance(found, schema.Owner)


# ---------------------------------------------------------------------------------------------
# Bonds from sysfs (collectors/bonding.py; the /proc/net/bonding side is fuzzed in test_bonds.py)
# ---------------------------------------------------------------------------------------------


def _sysfs_bonds() -> list[tuple[dict[str, str | None], dict[str, dict[str, str | None]]]]:
    """(master, slaves) exactly as clustertop.collectors.bonds.read_sysfs hands them to from_sysfs, per real tree."""
    out = []
    for tree in sorted((FIXTURES / "bonds" / "sysfs").iterdir()):
        roots = Roots(proc=str(tree / "proc"), sys=str(tree / "sys"))
        for name in bonding.split_names(bonds.read_text(roots.sysfs("class", "net", "bonding_masters"))):
            bdir = Path(roots.sysfs("class", "net", name, "bonding"))
            master = {f: bonds.read_text(str(bdir / f)) for f in bonds.MASTER_FILES}
            names = (bonding.split_names(master["slaves"]) if master["slaves"] is not None
                     else bonds._linked_slaves(roots.sysfs("class", "net", name)))
            slaves = {}
            for s in names:
                sdir = Path(bonds.slave_dir(roots, name, s))
                values = {f: bonds.read_text(str(sdir / "bonding_slave" / f)) for f in bonds.SLAVE_FILES}
                values["speed"] = bonds.read_text(roots.sysfs("class", "net", s, "speed"))
                values["duplex"] = bonds.read_text(roots.sysfs("class", "net", s, "duplex"))
                slaves[s] = values
            out.append((master, slaves))
    assert out
    return out


SYSFS_BONDS = _sysfs_bonds()
_bond_values = [v for m, s in SYSFS_BONDS for v in [*m.values(), *(x for d in s.values() for x in d.values())] if v]
sysfs_value = st.one_of(st.none(), st.sampled_from(_bond_values), token, huge)  # one file's contents
slave_keys = st.sampled_from([*bonds.SLAVE_FILES, "speed", "duplex"])


master_changes = st.dictionaries(st.sampled_from(bonds.MASTER_FILES), sysfs_value, max_size=4)
slave_changes = st.dictionaries(slave_keys, sysfs_value, max_size=4)
new_slaves = st.dictionaries(st.text(max_size=8), slave_changes, max_size=2)


@st.composite
def sysfs_bond(draw: st.DrawFn) -> tuple[dict[str, str | None], dict[str, dict[str, str | None]]]:
    """A real bond's sysfs values with some replaced, and maybe slaves it never had."""
    master, slaves = copy.deepcopy(draw(st.sampled_from(SYSFS_BONDS)))
    master.update(draw(master_changes))
    for name in list(slaves):
        slaves[name].update(draw(slave_changes))
    slaves.update(draw(new_slaves))
    return master, slaves


@fuzz_nested
@given(sysfs_bond(), st.sampled_from(sorted((FIXTURES / "bonds" / "procfs").iterdir(), key=str)))
def test_bond_from_sysfs_never_raises(view: tuple[dict[str, str | None], dict[str, dict[str, str | None]]],
                                      procfs_file: Path) -> None:
    master, slaves = view
    parsed = bonding.from_sysfs("bond0", master, slaves)
    assert isinstance(parsed, bonding.Parsed) and [s.name for s in parsed.bond.slaves or ()] == list(slaves)
    merged = bonding.merge(bonding.parse_procfs("bond0", procfs_file.read_text()), parsed)
    assert merged is not None
    for p in (parsed, merged):
        bond = bonding.judge(p)
        assert isinstance(bond.degraded, bool) and opt(bond.speed_mbps, int)
        for s in bond.slaves or ():
            assert opt(s.speed_mbps, int) and opt(s.aggregator_id, int) and opt(s.actor_port_state, int)
            assert opt(s.link_failures, int) and opt(s.mii_status, str) and opt(s.duplex, str)


@fuzz
@given(st.none() | kernel_text(_bond_values))
def test_bonding_value_parsers_never_raise(text: str | None) -> None:
    assert opt(bonding.mode_name(text), str) and opt(bonding.first_word(text), str) and opt(bonding.known(text), str)
    assert opt(bonding.to_int(text), int) and opt(bonding.duplex(text), str)
    speed = bonding.speed_mbps(text)
    assert speed is None or (isinstance(speed, int) and speed > 0)
    assert all_of(bonding.split_names(text), str)


# ---------------------------------------------------------------------------------------------
# ceph-mgr dashboard answers (collectors/ceph_parse.py): a wrong type is None, never an exception
# ---------------------------------------------------------------------------------------------

CEPH_DOCS = {p.stem: _json(p) for p in sorted(CEPH.glob("api_*.json"))}
CEPH_VOCAB = _vocabulary(list(CEPH_DOCS.values()))


def _ceph(*stems: str, items: bool = False) -> list[Any]:
    """The captured answers whose name starts with one of ``stems``, and (``items``) each list element alone."""
    docs = [d for name, d in CEPH_DOCS.items() if name.startswith(stems)]
    assert docs
    if items:
        docs += [x for d in docs if isinstance(d, list) for x in d]
    return docs


ceph_health = answers(_ceph("api_health_minimal", "api_monitor"), CEPH_VOCAB)
ceph_osds = answers(_ceph("api_osd", items=True), CEPH_VOCAB)
ceph_pools = answers(_ceph("api_pool", items=True), CEPH_VOCAB)
ceph_images = answers(_ceph("api_block_image", items=True)
                      + [img for d in _ceph("api_block_image") for g in d if isinstance(g, dict)
                         for img in g.get("value", [])], CEPH_VOCAB)


@fuzz_nested
@given(ceph_health)
# Crashes the fuzzer found, kept as regressions:
@example({"pg_info": {"object_stats": {"num_objects": math.nan}}})  # int(NaN) raised ValueError
@example({"df": {"stats": {"total_bytes": math.inf}}})  # int(inf) raised OverflowError
@example({"client_perf": {"read_bytes_sec": 10**400}})  # float() of a 401-digit int raised OverflowError
@example({"df": {"stats": {"total_bytes": 2**64}}})  # past 64 bits: the publisher's encode raised
@example({"pg_info": {"statuses": {"active+clean": 2**64 - 1, "peering": 2**64 - 1}}})  # the sum, likewise
def test_ceph_parse_health_and_fsid(d: Any) -> None:
    # /api/monitor carries mon_status too: both parsers read both answers
    c = ceph_parse.parse_health(d)
    assert isinstance(c, schema.Ceph) and all_of(c.checks or (), schema.HealthCheck)
    wire_ok(c)
    assert opt(ceph_parse.parse_fsid(d), str)


@fuzz_nested
@given(ceph_health)
def test_ceph_parse_checks(d: Any) -> None:
    # both shapes: the list (Ceph 15+) and the dict keyed by code
    raw = ceph_parse._dict(ceph_parse._dict(d).get("health")).get("checks", d)
    checks = ceph_parse.parse_checks(raw)
    assert all_of(checks, schema.HealthCheck) and all(c.code for c in checks)
    wire_ok(*checks)


@fuzz_nested
@given(ceph_osds)
@example([{"osd": 0, "osd_stats": {"kb": 2**60}}])  # kb * 1024 past 64 bits
@example({"osd": math.nan})
def test_ceph_parse_osds(raw: Any) -> None:
    osds = ceph_parse.parse_osds(raw)
    assert all_of(osds, schema.CephOsd) and [o.id for o in osds] == sorted(o.id for o in osds)
    one = ceph_parse.parse_osd(raw)
    assert one is None or isinstance(one, schema.CephOsd)
    wire_ok(*osds, *([one] if one else []))


@fuzz_nested
@given(ceph_pools)
@example([{"pool": 1, "pool_name": "rbd", "application_metadata": [1, "rbd"]}])  # sorted() raised TypeError
@example({"pool": 1, "pool_name": "rbd", "application_metadata": [None, None]})
@example([{"pool": 1, "pool_name": "rbd", "stats": {"rd_bytes": {"rate": 10**400}}}])
def test_ceph_parse_pools(raw: Any) -> None:
    pools = ceph_parse.parse_pools(raw)
    assert all_of(pools, schema.CephPool)
    one = ceph_parse.parse_pool(raw)
    assert one is None or isinstance(one, schema.CephPool)
    wire_ok(*pools, *([one] if one else []))


@fuzz_nested
@given(ceph_images)
@example([{"pool_name": "rbd", "name": "big", "size": 2**64, "snapshots": [{"name": "s", "size": 10**30}]}])
def test_ceph_parse_images(raw: Any) -> None:
    entries = ceph_parse.image_entries(raw)
    assert isinstance(entries, list)
    images = ceph_parse.parse_images(entries)
    assert all_of(images, schema.RbdImage) and all(all_of(i.snapshots or (), schema.RbdSnap) for i in images)
    one = ceph_parse.parse_image(raw)
    assert one is None or isinstance(one, schema.RbdImage)
    wire_ok(*images, *([one] if one else []))



#: JSON nested past the recursion limit, at the top or inside the object a parser expects.
nested = st.builds(lambda head, depth, tail: head + "[" * depth + tail,
                   st.sampled_from(["", '{"detail": ', '{"workers": {"a": {"metrics": ', '{"message": ']),
                   st.integers(1, 200_000), st.sampled_from(["", "]", "{"]))
error_body = st.one_of(st.text(max_size=300), huge, nested,
                       st.builds(json.dumps, json_values(CEPH_VOCAB + ["detail", "message", "status"])),
                       st.sampled_from([(CEPH / "api_auth-bad-password.json").read_text(),
                                        (CEPH / "api_health_minimal-unauthenticated.json").read_text()]))


@fuzz
@given(error_body, st.booleans(), st.integers(0, 400))
@example("[" * 100_000, False, 160)  # json.loads raised RecursionError
@example('{"message": ' + "[" * 100_000, True, 80)
def test_error_bodies_never_raise(body: str, as_bytes: bool, limit: int) -> None:
    """A proxy's HTML page, a truncated JSON error, or JSON nested past the recursion limit."""
    raw: str | bytes = body.encode("utf-8", "surrogatepass") if as_bytes else body
    text = ceph_parse.error_detail(raw, limit)
    assert isinstance(text, str) and len(text) <= limit
    msg = kubernetes.api_status_message(raw)
    assert isinstance(msg, str) and len(msg) <= 300


# ---------------------------------------------------------------------------------------------
# RabbitMQ, Celery and Dask answers (collectors/queues_parse.py). Documented error: ValueError for a
# document of the wrong kind (the collectors turn it into that broker's or scheduler's error).
# ---------------------------------------------------------------------------------------------

RABBIT = _json(QUEUES / "rabbit_queues.json")
DASK_IDENTITY = _json(QUEUES / "dask_identity.json")
DASK_COUNTS = _json(QUEUES / "dask_counts.json")
DASK_METRICS = (QUEUES / "dask_metrics.txt").read_text()
#: An inspect() round as Celery 5 answers it (stats / active / active_queues, keyed by worker name).
CELERY_STATS = {"w1@gpu01": {"pool": {"max-concurrency": 2, "processes": [101, 102], "timeouts": [0, 0]},
                             "pid": 100, "total": {"proj.train": 3}}}
CELERY_ACTIVE = {"w1@gpu01": [{"id": "5e1c0c4e-1f2a-4b0e-9f55-1a2b3c4d5e6f", "name": "proj.train",
                               "args": [1, "x"], "kwargs": {}, "time_start": 1795356976.8, "worker_pid": 101,
                               "hostname": "w1@gpu01", "delivery_info": {"routing_key": "work"}}]}
CELERY_QUEUES = {"w1@gpu01": [{"name": "work", "exchange": {"name": "work", "type": "direct"},
                               "routing_key": "work", "durable": True}]}
QUEUE_VOCAB = _vocabulary([RABBIT, DASK_IDENTITY, DASK_COUNTS, CELERY_STATS, CELERY_ACTIVE, CELERY_QUEUES])
queue_json = json_values(QUEUE_VOCAB)


@fuzz_nested
@given(answers([RABBIT, *([q] for q in RABBIT)], QUEUE_VOCAB), st.none() | st.lists(st.sampled_from(QUEUE_VOCAB) | st.text(max_size=8),
                                                                        max_size=5))
@example([{"name": "q", "messages": 2**64}], None)  # past 64 bits: the publisher's encode raised
@example([{"name": "q", "message_stats": {"publish_details": {"rate": 10**400}}}], ["q"])  # float() raised
def test_parse_rabbit_queues(data: Any, names: list[str] | None) -> None:
    try:
        out = qp.parse_rabbit_queues(data, "amqp://broker", names)
    except ValueError:
        assert not isinstance(data, list)  # the one documented refusal: not a list of queues
        return
    assert all_of(out, schema.Queue)
    if names is not None:
        assert [q.name for q in out] == names
    wire_ok(*out)


def _replies(template: dict[str, Any]) -> st.SearchStrategy[Any]:
    """inspect() replies: the real round damaged, or worker names mapped to random values."""
    return st.one_of(st.none(), mutated([template], queue_json),
                     st.dictionaries(st.sampled_from(sorted(template)) | st.text(max_size=10), queue_json, max_size=4))


@fuzz_nested
@given(_replies(CELERY_STATS), _replies(CELERY_ACTIVE), _replies(CELERY_QUEUES),
       st.floats(allow_nan=False, allow_infinity=False))
@example({"w1@h": {"pool": {"max-concurrency": 2**64}}}, None, None, 0.0)
@example(None, {"w1@h": [{"id": "t1", "time_start": 10**400}]}, None, 0.0)  # float() raised OverflowError
def test_parse_celery_workers(stats: Any, active: Any, active_queues: Any, now: float) -> None:
    # The documented inputs are mappings or None: Celery's inspect() calls return a dict of replies
    # keyed by worker, or None when nobody answered. Only the replies themselves are arbitrary.
    stats, active, active_queues = (x if isinstance(x, dict) or x is None else {} for x in (stats, active, active_queues))
    consumed = qp.consumed_queues(active_queues)
    assert all(isinstance(qs, set) and all_of(qs, str) for qs in consumed.values())
    workers = qp.parse_celery_workers(stats, active, now, now)
    assert all_of(workers, schema.Worker) and all(all_of(w.active or (), schema.WorkerTask) for w in workers)
    assert all(w.pool_size is None or w.pool_size >= 0 for w in workers)
    assert all(t.runtime_s is None or not t.runtime_s < 0 for w in workers for t in w.active or ())
    for st_ in (stats or {}).values():
        if isinstance(st_, dict):
            assert opt(qp.pool_size(st_), int)
    wire_ok(*workers)



binding = st.builds(lambda parts, sep: sep.join(parts), st.lists(st.sampled_from(["work", "", "x.pidbox", "celeryev.1"])
                                                                 | st.text(max_size=8), max_size=4),
                    st.sampled_from([qp.SEP, "\x06", " "]))


@fuzz
@given(st.lists(binding | st.binary(max_size=30) | binding.map(lambda s: s.encode("utf-8", "surrogatepass")),
                max_size=10), binding | st.binary(max_size=40))
def test_kombu_bindings_never_raise(members: list[bytes | str], key: bytes | str) -> None:
    names = qp.queues_from_bindings(members)
    assert all_of(names, str) and not any(qp.is_internal_queue(n) for n in names)
    assert isinstance(qp.exchange_of_binding_key(key), str)


def _identity_docs() -> st.SearchStrategy[bytes | str]:
    docs = st.one_of(mutated([DASK_IDENTITY, *DASK_IDENTITY["workers"].values()], queue_json),
                     st.fixed_dictionaries({"workers": st.dictionaries(st.text(max_size=10), queue_json, max_size=3)}),
                     queue_json)
    encoded = docs.map(lambda d: json.dumps(d, allow_nan=True))
    real = json.dumps(DASK_IDENTITY)
    return st.one_of(encoded, encoded.map(str.encode), st.binary(max_size=200), nested,
                     st.builds(_splice, st.just(real), st.integers(0, len(real)), st.integers(0, len(real)),
                               st.text(max_size=20)))


@fuzz_nested
@given(_identity_docs())
@example('{"x": ' + "[" * 100_000)  # msgspec raised RecursionError, not the documented ValueError
@example('{"workers": {"tcp://a:1": {"nthreads": ' + "9" * 30 + "}}}")  # msgspec keeps ints of any size
@example('{"workers": {"a": {"metrics": {"task_counts": {"executing": 9223372036854775807, '
         '"ready": 9223372036854775807, "waiting": 9223372036854775807}}}}}')  # the sum past 64 bits
def test_parse_dask_identity(raw: bytes | str) -> None:
    try:
        ident = qp.parse_dask_identity(raw, 1.0)
    except ValueError:
        return
    assert opt(ident.address, str) and all_of(ident.workers, schema.Worker)
    wire_ok(*ident.workers)


@fuzz_nested
@given(answers([DASK_COUNTS], QUEUE_VOCAB))
@example({"waiting": 2**64 - 1, "unrunnable": 1})
def test_parse_dask_counts(data: Any) -> None:
    try:
        counts = qp.parse_dask_counts(data)
    except ValueError:
        assert not isinstance(data, dict)
        return
    # They land in schema.Queues.dask_tasks_*: the same wire rules as any struct field.
    wire_ok(schema.Queues(dask_tasks_processing=counts.processing, dask_tasks_waiting=counts.waiting))
    assert opt(counts.workers, int)


@fuzz
@given(kernel_text([DASK_METRICS]) | st.lists(st.builds('dask_scheduler_tasks{{state="{}"}} {}'.format,
                                                         st.text(max_size=8), token), max_size=6).map("\n".join))
@example('dask_scheduler_tasks{state="processing"} +Inf')  # int(float()) raised OverflowError
@example('dask_scheduler_tasks{state="queued"} 1e300')
def test_parse_dask_task_states(text: str) -> None:
    # Prometheus' text format allows "+Inf", "-Inf" and "NaN" as sample values.
    states = qp.parse_dask_task_states(text)
    assert states is None or (all_of(states, str) and all(v in WIRE_INTS for v in states.values()))


# ---------------------------------------------------------------------------------------------
# Kubernetes API objects (collectors/k8s_parse.py): list objects or single items, never an exception
# ---------------------------------------------------------------------------------------------

K8S_DOCS = {p.stem: _json(p) for p in sorted((K8S / "api").glob("*.json"))}
K8S_DOCS["kubelet-states"] = _json(K8S / "kubelet-states.json")
K8S_VOCAB = _vocabulary(list(K8S_DOCS.values()))
k8s_json = json_values(K8S_VOCAB)


def _k8s(*stems: str) -> st.SearchStrategy[Any]:
    """A list object damaged, one damaged item alone, damaged items in a fresh list, or random JSON."""
    lists = [K8S_DOCS[s] for s in stems]
    items = [i for d in lists for i in d.get("items", [])]
    item = mutated(items, k8s_json)
    return st.one_of(mutated(lists, k8s_json), item,
                     st.fixed_dictionaries({"kind": st.just("List"), "items": st.lists(item, max_size=4)}),
                     k8s_json)


quantity = st.one_of(st.sampled_from(["7800m", "32Gi", "2", "1e3", "0.5", ".5", "1E", "16Ei", "1e18Ei", "1e999999",
                                      "1e999999999Ki", "-1", "+3", " 4 ", "1.", "1e", "Ki", "٣", "²", "nan"]),
                     st.builds("{}{}".format, st.integers() | st.floats(), st.sampled_from(sorted(k8s_parse._SUFFIX))),
                     k8s_json)


@fuzz_nested
@given(quantity, st.integers(1, 1000))
@example("1e999999999Ki", 1)  # decimal.Overflow
@example(math.nan, 1)  # int(Decimal("NaN")) raised ValueError
@example(math.inf, 1000)  # OverflowError
@example(10**5000, 1)  # str() of the int raised ValueError
@example("16Ei", 1)  # 2**64: past the wire, and past the API's own 2**63-1
@example("9E", 1000)  # fits as a quantity, not as millicores
def test_parse_quantity(value: Any, scale: int) -> None:
    q = k8s_parse.parse_quantity(value)
    assert q is None or q.is_finite()  # NaN or Infinity is not a quantity
    n = k8s_parse._int(value, scale)
    assert n is None or (isinstance(n, int) and n in WIRE_INTS)


@fuzz_nested
@given(st.one_of(k8s_json, st.datetimes().map(lambda d: d.isoformat() + "Z"), st.sampled_from(["0001-01-01T00:00:00",
       "9999-12-31T23:59:59-23:59", "2025-11-22T14:03:07Z", "2025-11-22T14:03:07.123456789Z", "Z"])))
def test_parse_ts(text: Any) -> None:
    ts = k8s_parse.parse_ts(text)
    assert opt(ts, float)


@fuzz_lists
@given(_k8s("nodes"))
@example({"items": [{"status": {"capacity": {}, "allocatable": ["cpu"]}}]})  # ["cpu"].get raised AttributeError
@example({"items": 5})  # iterating an int raised TypeError
def test_parse_nodes(obj: Any) -> None:
    nodes = k8s_parse.parse_nodes(obj)
    assert all_of(nodes, schema.K8sNode) and len(nodes) == len(k8s_parse.items(obj))
    for item in k8s_parse.items(obj):
        assert all_of(k8s_parse.abnormal_conditions(k8s_parse._d(item, "status", "conditions")).values(), str)
    wire_ok(*nodes)


@fuzz_lists
@given(_k8s("pods", "kubelet-states"))
@example({"items": [{"metadata": ["x"], "spec": {"containers": 3}}]})  # AttributeError, then TypeError
@example({"items": [{"spec": {"nodeName": 5}, "status": {"phase": ["Running"]}}]})  # the dashboard refused the payload
@example({"items": [{"spec": {"nodeName": "n1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "4Ei"}}}] * 4},
                     "status": {"containerStatuses": [{"restartCount": 2**63}, {"restartCount": 2**63}]}}]})  # sums
@example({"items": [{"spec": {"nodeName": "n1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": -1}}}]}}]})  # gpus=-1
def test_parse_pods(obj: Any) -> None:
    pods = k8s_parse.parse_pods(obj)
    assert all_of(pods, schema.K8sPod) and all(p.gpus >= 0 for p in pods)
    nodes = k8s_parse.parse_nodes({"items": [{"metadata": {"name": p.node}} for p in pods if p.node]})
    k8s_parse.allocate(nodes, pods)  # what the collector does next with them
    assert len(k8s_parse.select_pods(pods, 2)) == min(2, len(pods))
    wire_ok(*pods, *nodes)


@fuzz_nested
@given(_k8s("jobs", "deployments"))
@example({"items": [{"metadata": "x", "spec": {"parallelism": 2**64}, "status": 1.5}]})  # "x".get raised
def test_parse_workloads(obj: Any) -> None:
    workloads = k8s_parse.parse_jobs(obj) + k8s_parse.parse_deployments(obj)
    assert all_of(workloads, schema.K8sWorkload)
    wire_ok(*workloads)


@fuzz_nested
@given(answers([K8S_DOCS["version"]], K8S_VOCAB))
def test_parse_version(obj: Any) -> None:
    v = k8s_parse.parse_version(obj)
    assert v is None or (isinstance(v, str) and v)


# ---------------------------------------------------------------------------------------------
# Signed commands (collectors/signing.py verify, fed the way CommandExecutor.handle feeds it: the
# msgpack map as it arrived). Anything but an intact signature by a known key is a reason, in words.
# ---------------------------------------------------------------------------------------------

OPERATOR = signing.PrivateKey(key_id="", raw=bytes(range(32)))
OPERATOR = signing.PrivateKey(key_id=OPERATOR.public().key_id, raw=OPERATOR.raw)
KEYS = {OPERATOR.key_id: OPERATOR.public()}
SIGNED = signing.sign(schema.Command(id="c1", node="gpu01", verb="signal", args={"pid": 4242, "signal": "TERM"},
                                     issued_ts=1795356976.0, expires_ts=1795357036.0, operator="ops"), OPERATOR)
SIGNED_BYTES = wire.encode(SIGNED)
SIGNED_FIELDS = msgspec.msgpack.decode(SIGNED_BYTES)

msgpack_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
sig_text = st.one_of(st.sampled_from(["", "é" * 88, "=" * 88, SIGNED.sig, SIGNED.sig[:-4], SIGNED.sig + "AA==",
                                      SIGNED.sig.replace("A", "B", 1)]),
                     st.binary(min_size=60, max_size=68).map(lambda b: base64.b64encode(b).decode()),
                     st.text(max_size=100), msgpack_value)


def _intact(fields: dict[Any, Any]) -> bool:
    """Same signature and same signed bytes as the command the operator signed."""
    try:
        return fields.get("sig") == SIGNED.sig and signing.signing_bytes(fields) == signing.signing_bytes(SIGNED_FIELDS)
    except (TypeError, msgspec.EncodeError):
        return False


field_changes = st.dictionaries(st.sampled_from(sorted(SIGNED_FIELDS)) | st.text(max_size=8), msgpack_value, max_size=3)
key_ids = st.sampled_from([OPERATOR.key_id, "", "0" * 16]) | msgpack_value


@st.composite
def command_fields(draw: st.DrawFn) -> dict[Any, Any]:
    """The real signed command with fields replaced (a forged or tampered one), or random fields."""
    fields = copy.deepcopy(SIGNED_FIELDS) if draw(st.booleans()) else {}
    fields.update(draw(field_changes))
    if draw(st.booleans()):
        fields["key_id"] = draw(key_ids)
    if draw(st.booleans()):
        fields["sig"] = draw(sig_text)
    return fields


@fuzz_nested
@given(command_fields())
@example({**SIGNED_FIELDS, "sig": "é" * 88})  # b64decode raised ValueError, not binascii.Error: verify crashed
def test_verify_refuses_all_but_the_signed_command(fields: dict[Any, Any]) -> None:
    reason = signing.verify(fields, KEYS)
    assert (reason is None) == _intact(fields), reason
    assert reason is None or (isinstance(reason, str) and reason)


@fuzz
@given(st.integers(0, len(SIGNED_BYTES) - 1), st.integers(1, 255), st.integers(0, len(SIGNED_BYTES)))
def test_verify_refuses_damaged_command_bytes(pos: int, xor: int, cut: int) -> None:
    """One byte flipped and the tail cut, decoded as handle() decodes it: refused, or still intact."""
    raw = bytearray(SIGNED_BYTES)
    raw[pos] ^= xor
    raw = raw[:cut] if cut > pos else raw
    try:
        wire.decode(bytes(raw), schema.Command)
        plain = msgspec.msgpack.decode(bytes(raw))
    except (wire.WireError, msgspec.DecodeError):
        return  # handle() refuses it as "unreadable command"
    assume(isinstance(plain, dict))
    reason = signing.verify(plain, KEYS)
    assert (reason is None) == _intact(plain), reason


def test_the_signed_command_itself_verifies() -> None:
    """Without this the refusals above could pass by refusing everything."""
    assert signing.verify(SIGNED_FIELDS, KEYS) is None
    assert signing.verify(msgspec.msgpack.decode(SIGNED_BYTES), {}) == f"unknown key id {OPERATOR.key_id!r}"



# ---------------------------------------------------------------------------------------------
# Docker Engine API answers (collectors/containers_parse.py, captured in tests/fixtures/docker/): never an
# exception, only containers with a usable id, every struct fit for the wire
# ---------------------------------------------------------------------------------------------

DOCKER_DOCS = {p.stem: _json(p) for p in sorted((FIXTURES / "docker").glob("*.json"))}
DOCKER_VOCAB = _vocabulary(list(DOCKER_DOCS.values()))


@fuzz_lists
@given(answers([DOCKER_DOCS["containers_json"]], DOCKER_VOCAB),
       answers([DOCKER_DOCS["inspect_d1"]], DOCKER_VOCAB),
       answers([DOCKER_DOCS["stats_burn"], DOCKER_DOCS["stats_d1_oneshot"], DOCKER_DOCS["stats_exited"]], DOCKER_VOCAB))
def test_docker_answers(listed: Any, inspect: Any, stats: Any) -> None:
    from clustertop.collectors import containers_parse as dp

    cs = dp.parse_list(listed)
    assert all(dp.is_container_id(c.id) for c in cs)
    for c in cs[:3]:
        dp.apply_inspect(c, inspect)
        prev = dp.apply_stats(c, stats, (1, 1, 1))
        assert prev is None or all_of(prev, int)
        assert opt(c.cpu_pct, float) and (c.cpu_pct is None or math.isfinite(c.cpu_pct))
        assert opt(c.mem_bytes, int) and opt(c.started_ts, float)
    assert opt(dp.engine_name(DOCKER_DOCS["version"] if not cs else stats), str)
    wire_ok(schema.Containers(containers=cs))
