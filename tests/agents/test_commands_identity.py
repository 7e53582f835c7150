"""A kill names its process exactly: pid, the kernel's start ticks (/proc/<pid>/stat field 22) and the real
uid, compared with == on real ``sleep`` processes through the executor on a real redis-server.

Found in review: ``start_ts="nan"`` passed the old float check (``abs(x - nan) > 1`` is False) and killed
an unrelated process that reused the pid, and the 1 s tolerance let a kill hit a process that took the
pid 0.05 s later. Pid reuse itself is impractical to provoke in a test; a live process named with the
start ticks of another real process is the same lie, and must be refused the same way.
"""

from __future__ import annotations

import math
import os
import subprocess
import time

import pytest

from clustertop import wire
from clustertop.control import commands as cc
from clustertop.control import signing
from tests.agents.test_commands import (  # noqa: F401 - fixtures
    NODE,
    _refused,
    keys,
    make,
    results,
    run_one,
    send,
    sleeper,
    start_ticks,
    wait_dead,
)


def test_exact_ticks_and_uid_are_accepted(redis_server, make, keys, sleeper):  # noqa: F811
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), "KILL", uid=os.getuid(),
                                                  cmdline="sleep 300"))
    run_one(ex)
    assert results(client)[-1].ok, results(client)[-1].reason
    assert wait_dead(p) is not None


@pytest.mark.parametrize("delta", [-1, 1])
def test_ticks_one_off_are_refused(redis_server, make, keys, sleeper, delta):  # noqa: F811
    client, ex, p = redis_server.client(), make(), sleeper()
    ticks = start_ticks(p.pid)
    send(client, keys["ops"], args=cc.signal_args(p.pid, ticks + delta, "KILL"))
    res = _refused(client, ex, p, "pid reused")
    assert f"started at tick {ticks}, not {ticks + delta}" in res.reason


def test_ticks_of_another_real_process_are_refused(redis_server, make, keys, sleeper):  # noqa: F811
    """The pid-reuse lie: a live process, named with the start ticks another real process has (it started
    a few ticks apart: that is all that tells a reused pid's new owner from the old one)."""
    client, ex = redis_server.client(), make()
    first = sleeper()
    deadline = time.monotonic() + 10
    while True:  # a second process that started at another tick than the first
        other = sleeper()
        if start_ticks(other.pid) != start_ticks(first.pid) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert start_ticks(other.pid) != start_ticks(first.pid)
    send(client, keys["ops"], args=cc.signal_args(other.pid, start_ticks(first.pid), "KILL"))
    _refused(client, ex, other, "pid reused")
    assert first.poll() is None


def test_uid_mismatch_is_refused(redis_server, make, keys, sleeper):  # noqa: F811
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), "KILL", uid=os.getuid() + 1))
    res = _refused(client, ex, p, "pid reused")
    assert f"belongs to uid {os.getuid()}, not {os.getuid() + 1}" in res.reason


@pytest.mark.parametrize("value,why", [
    ("nan", "start_ticks must be an int >= 0, got str 'nan'"),
    ("inf", "start_ticks must be an int >= 0, got str 'inf'"),
    ("12", "start_ticks must be an int >= 0, got str '12'"),  # text is never parsed into an identity
    (-1, "start_ticks must be an int >= 0, got -1"),
    (True, "start_ticks must be an int >= 0, got bool True"),
])
def test_garbage_ticks_are_refused(redis_server, make, keys, sleeper, value, why):  # noqa: F811
    client, ex, p = redis_server.client(), make(), sleeper()
    args = cc.signal_args(p.pid, start_ticks(p.pid), "KILL")
    args["start_ticks"] = value
    send(client, keys["ops"], args=args)
    _refused(client, ex, p, why)


@pytest.mark.parametrize("value", [-5, "0", False])
def test_garbage_uid_is_refused(redis_server, make, keys, sleeper, value):  # noqa: F811
    client, ex, p = redis_server.client(), make(), sleeper()
    send(client, keys["ops"], args=cc.signal_args(p.pid, start_ticks(p.pid), "KILL", uid=value))
    _refused(client, ex, p, "uid must be an int >= 0")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_float_ticks_never_decode(redis_server, make, keys, sleeper, value):  # noqa: F811
    """The args map has no float type: a NaN or inf start_ticks makes the entry unreadable, and refused."""
    client, ex, p = redis_server.client(), make(), sleeper()
    cmd = cc.build(NODE, "signal", cc.signal_args(p.pid, 0, "KILL"), operator="tester")
    cmd.args["start_ticks"] = value
    signing.sign(cmd, keys["ops"])
    client.xadd(wire.cmd_key(NODE), {"c": wire.encode(cmd)})
    run_one(ex)
    res = results(client)[-1]
    assert res.status == "refused" and "unreadable command" in res.reason, res.reason
    assert p.poll() is None


@pytest.mark.parametrize("start_ts", ["nan", "inf", "-1", None])
def test_legacy_start_ts_alone_is_refused(redis_server, make, keys, sleeper, start_ts):  # noqa: F811
    """What an older dashboard or CLI sends: a float start time as text, no ticks. "nan" killed before."""
    client, ex, p = redis_server.client(), make(), sleeper()
    ts = start_ts if start_ts is not None else repr(time.time())
    send(client, keys["ops"], args={"pid": p.pid, "start_ts": ts, "signal": "KILL", "group": False})
    _refused(client, ex, p, "start_ticks required (an older dashboard/CLI: update it)")


def test_ticks_are_checked_before_the_cmdline_and_after_the_pidfd(redis_server, make, keys):  # noqa: F811
    """A process that exec()s keeps its pid and start ticks: the command-line prefix still tells them apart."""
    client, ex = redis_server.client(), make()
    p = subprocess.Popen(["python3", "-c", "import os,time; time.sleep(0.3); os.execvp('sleep', ['sleep', '300'])"])
    try:
        ticks = start_ticks(p.pid)
        deadline = time.monotonic() + 10
        while open(f"/proc/{p.pid}/cmdline", "rb").read() != b"sleep\x00300\x00" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert start_ticks(p.pid) == ticks  # same process, same identity after exec
        send(client, keys["ops"], args=cc.signal_args(p.pid, ticks, "KILL", cmdline="python3 -c"))
        _refused(client, ex, p, "command line of pid")
    finally:
        p.kill()
        p.wait()
