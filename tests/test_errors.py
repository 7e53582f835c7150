"""clustertop.errors.describe: the one wording of an exception for status fields, logs and notices."""

from __future__ import annotations

from clustertop.errors import MAX_CHARS, describe, root_cause


def _raised(make):  # type: ignore[no-untyped-def]
    try:
        make()
    except Exception as e:  # noqa: BLE001 - the exception is the value under test
        return e
    raise AssertionError("nothing raised")


def test_class_and_first_line_only() -> None:
    assert describe(ValueError("bad value\n  Traceback-like detail\n")) == "ValueError: bad value"
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(KeyError("")) == "KeyError: ''"
    assert describe(RuntimeError("   \n  ")) == "RuntimeError"


def test_the_root_cause_is_named_when_it_says_more() -> None:
    def wrapped() -> None:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as inner:
                raise OSError("socket layer") from inner
        except OSError as mid:
            raise RuntimeError("login failed") from mid

    e = _raised(wrapped)
    assert isinstance(root_cause(e), ConnectionRefusedError)
    assert describe(e) == "RuntimeError: login failed (caused by ConnectionRefusedError: [Errno 111] Connection refused)"


def test_a_cause_the_message_already_repeats_is_said_once() -> None:
    def wrapped() -> None:
        try:
            raise OSError("[Errno 111] Connection refused")
        except OSError as inner:
            raise ConnectionError("[Errno 111] Connection refused") from inner

    assert describe(_raised(wrapped)) == "ConnectionError: [Errno 111] Connection refused"

    def bare_cause() -> None:
        raise RuntimeError("read failed") from TimeoutError()

    assert describe(_raised(bare_cause)) == "RuntimeError: read failed (caused by TimeoutError)"


def test_implicit_context_and_from_none_are_not_causes() -> None:
    def during_handling() -> None:
        try:
            {}["k"]
        except KeyError:
            raise ValueError("no such node") from None

    def implicit() -> None:
        try:
            {}["k"]
        except KeyError:
            raise ValueError("no such node")  # noqa: B904 - the implicit context is the point

    assert describe(_raised(during_handling)) == "ValueError: no such node"
    assert describe(_raised(implicit)) == "ValueError: no such node"


def test_bounded_and_safe_on_a_cause_cycle() -> None:
    assert len(describe(ValueError("x" * 5000))) == MAX_CHARS
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert describe(a) == "ValueError: a (caused by ValueError: b)"
