"""The pure halves of control/k8s_logs.py: stamps, line cutting, the resume's duplicate skipping
(the real API server runs them in test_k8s_logs_follow.py)."""

from __future__ import annotations

from clustertop.control import k8s_logs as kl
from tests.support.k8s_logs import _stamp


def test_stamps_parse_as_numbers_not_text() -> None:
    a, b = kl.parse_ts("2026-12-07T06:48:32.5Z"), kl.parse_ts("2026-12-07T06:48:32.50001Z")
    assert a is not None and b is not None and a < b  # as text ".5Z" sorts after ".50001Z"
    assert kl.parse_ts("2026-12-07T06:48:32Z") == 1796626112 * 1_000_000_000
    assert kl.parse_ts("2026-12-07T08:48:32+02:00") == kl.parse_ts("2026-12-07T06:48:32Z")
    for bad in ("", "yesterday", "2026-13-07T06:48:32Z", "2026-12-07T06:48:32.1234567890Z", "2026-12-07 06:48:32Z"):
        assert kl.parse_ts(bad) is None, bad
    # The stand-in kubelet's format round-trips (trailing zeros dropped, none on a whole second).
    for ns in (1796626112 * 10**9, 1796626112 * 10**9 + 500_000_000, 1796626112 * 10**9 + 1):
        assert kl.parse_ts(_stamp(ns)) == ns
    assert kl.since_time(1796626112 * 10**9 + 999_999_999) == "2026-12-07T06:48:32Z"


def test_split_ts_keeps_unstamped_lines_whole() -> None:
    assert kl.split_ts("2026-12-07T06:48:32.1Z hello world") == (1796626112_100_000_000, "hello world")
    assert kl.split_ts("hello world") == (None, "hello world")
    assert kl.split_ts("2026-12-07T06:48:32.1Z") == (None, "2026-12-07T06:48:32.1Z")  # no text after: not a stamp
    assert kl.split_ts("2026-12-07T06:48:32.1Z ") == (1796626112_100_000_000, "")


def test_line_splitter_cuts_long_lines_and_joins_chunks() -> None:
    s = kl.LineSplitter(limit=8)
    assert s.feed(b"ab") == []
    assert s.feed(b"c\r\nde") == [(b"abc", False)]
    assert s.feed(b"f" * 100) == []  # past the limit: dropped as it comes, not buffered
    assert len(s.buf) == 8
    assert s.feed(b"ggg\nh\n\n") == [(b"deffffff", True), (b"h", False), (b"", False)]
    assert s.feed(b"tail") == [] and s.flush() == [(b"tail", False)] and s.flush() == []
    big = kl.LineSplitter(limit=16)
    assert big.feed(b"x" * (1 << 20) + b"\n") == [(b"x" * 16, True)]


def test_resume_skips_exactly_what_a_resumed_stream_repeats() -> None:
    r = kl.Resume()
    t = 10**18
    seen = [r.fresh(ts) for ts in (t, t + 1, t + 1, None)]
    assert seen == [True, True, True, True]
    # The resumed stream starts at the second: repeats t, t+1, t+1, then new lines, one at t+1 too.
    r.restart()
    again = [r.fresh(ts) for ts in (t - 5, t, t + 1, t + 1, t + 1, t + 2, t + 2)]
    assert again == [False, False, False, False, True, True, True]
    r.restart()
    assert [r.fresh(ts) for ts in (t + 2, t + 2, t + 2)] == [False, False, True]


def test_the_ring_is_bounded_and_counts_what_fell_out() -> None:
    """No stream here: the follower's ring itself (``_add`` is what the reading thread calls)."""
    f = kl.LogFollower(None, "ns", "pod", container="main", ring=5)  # type: ignore[arg-type]  # not started
    f._add([f"l{i}" for i in range(3)])
    f._add([f"l{i}" for i in range(3, 20)])
    t = f.take()
    assert t.lines == ["l15", "l16", "l17", "l18", "l19"] and t.dropped == 15 and t.received == 20
    f._add(["l20"])
    t = f.take()
    assert t.lines == ["l20"] and t.dropped == 15 and t.received == 21 and not t.ended
    f.close()
    assert f.take().ended and f.take().state == "closed"
    for bad in ("Bad_Name", "x" * 300, "a/b"):
        try:
            kl.LogFollower(None, "ns", bad)  # type: ignore[arg-type]
        except kl.K8sControlError as e:
            assert "not a valid Kubernetes name" in str(e)
        else:
            raise AssertionError(bad)
