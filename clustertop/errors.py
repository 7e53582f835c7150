"""Provides describe(): any exception as the one line a status field, a log line or a notice shows.

A room of its own that imports nothing, so every room (collectors, agents, control, dashboard) words
errors the same way. Source-specific wording (a URL, urllib3's wrapped reason) stays with the source,
around this.
"""

from __future__ import annotations

#: Errors travel in payloads and land in one status line: the runner has always cut them here.
MAX_CHARS = 300


def first_line(e: BaseException) -> str:
    """The first line of ``str(e)``, stripped; "" when the message is empty."""
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else ""


def root_cause(e: BaseException) -> BaseException:
    """The end of ``e``'s explicit cause chain (``raise ... from cause``); ``e`` itself if it has none.

    Only ``__cause__``: an implicit ``__context__`` is whatever was being handled when ``e`` was raised,
    often unrelated to it.
    """
    seen = {id(e)}
    while e.__cause__ is not None and id(e.__cause__) not in seen:
        e = e.__cause__
        seen.add(id(e))
    return e


def describe(e: BaseException) -> str:
    """``Class: first line of the message``, and the root cause's reason when it says more.

    One line, no traceback, at most MAX_CHARS characters:
    ``ReadTimeout: timed out``, ``CephError: login failed (caused by ConnectionResetError: [Errno 104] ...)``.
    """
    msg = first_line(e)
    text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    root = root_cause(e)
    if root is not e:
        why = first_line(root)
        # a wrapper usually repeats its cause's message (httpx, redis-py): say it once
        if why and why not in msg:
            text += f" (caused by {type(root).__name__}: {why})"
        elif not why and type(root).__name__ not in text:
            text += f" (caused by {type(root).__name__})"
    return text[:MAX_CHARS]
