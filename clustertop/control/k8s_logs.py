"""Provides pod logs that follow: ``LogFollower`` streams ``pods/log?follow=true`` in its own thread.

What it keeps, and why:

- **Bounded memory**: the lines not yet taken by the viewer sit in a ring of ``ring`` lines; what fell
  out is counted (``dropped``), never silently lost. One line is cut at ``line_max`` bytes while it is
  read (``LineSplitter``): a pod printing 1 MB without a newline costs ``line_max``, not 1 MB.
- **No doubled lines across reconnects**: lines are asked for with ``timestamps=true`` (the kubelet's
  RFC 3339 nanosecond stamp in front of each line); a dropped stream is resumed with ``sinceTime`` (the
  API takes whole seconds) and what the new stream repeats up to the last line seen is skipped
  (``Resume``: by timestamp, and by count for several lines with the same stamp).
- **Reconnect with backoff** (0.5 s doubling to 10 s) on a dropped connection or an API error; the state
  says so ("stream dropped: reconnecting in 2 s").
- **It ends when it should**: when the stream ends the pod is read again: gone (404, or the name now
  has another uid) -> "pod gone"; the container terminated -> "stream ended (container exited)"; still
  running -> a dropped stream, resumed. ``close()`` shuts the socket down (the blocked read returns at
  once) and the thread ends: no thread or connection outlives the viewer.

The text is the pod's bytes, decoded with replacement: the viewer and the CLI make it inert before
showing it. ``split_ts``, ``parse_ts``, ``LineSplitter`` and ``Resume`` are pure.
"""

from __future__ import annotations

import calendar
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clustertop.control.kubernetes import K8sControl, K8sControlError, _check_name

RING = 5000  # lines held for the viewer between two takes (and the viewer's own scrollback)
LINE_MAX = 16384  # bytes of one line kept; the rest up to its newline is dropped ("…" marks the cut)
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_last_secs: tuple[str, int] = ("", 0)  # the last stamp's whole seconds (one tuple: safe across threads)


# ---------------------------------------------------------------------------------------------
# Pure
# ---------------------------------------------------------------------------------------------


def parse_ts(text: str) -> int | None:
    """An RFC 3339 stamp as the kubelet writes it (``2026-12-07T06:48:32.123456789Z``, trailing zeros of
    the fraction dropped) as nanoseconds since the epoch; None if it is not one. Compared as numbers:
    the strings do not sort (``.5Z`` is after ``.50001Z`` as text)."""
    global _last_secs
    m = _TS.match(text)
    if not m:
        return None
    if m.group(1) == _last_secs[0]:
        secs = _last_secs[1]  # lines of one second share it: strptime is most of a line's cost
    else:
        try:
            secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        _last_secs = (m.group(1), secs)
    zone = m.group(3)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


def since_time(ns: int) -> str:
    """``sinceTime`` for a resume: the API takes whole seconds, so the second the last line was in."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def split_ts(line: str) -> tuple[int | None, str]:
    """``"<stamp> <text>"`` -> (nanoseconds, text); a line without a stamp is (None, line)."""
    stamp, sep, rest = line.partition(" ")
    ts = parse_ts(stamp) if sep else None
    return (ts, rest) if ts is not None else (None, line)


class LineSplitter:
    """Bytes as they arrive -> whole lines, each at most ``limit`` bytes (a longer one is cut, marked)."""

    def __init__(self, limit: int = LINE_MAX) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.cutting = False  # past ``limit`` in the current line: drop bytes until its newline

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        parts = data.split(b"\n")  # the last part is the start of a line still to come
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i < last and not self.buf and not self.cutting and len(part) <= self.limit:
                out.append((part.rstrip(b"\r"), False))  # a whole line in this chunk: no copy
                continue
            if not self.cutting:
                room = self.limit - len(self.buf)
                self.buf += part[:room]
                self.cutting = len(part) > room
            if i < last:
                out.append((bytes(self.buf).rstrip(b"\r"), self.cutting))
                self.buf.clear()
                self.cutting = False
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        """The last line when the stream ends without a newline."""
        if not self.buf and not self.cutting:
            return []
        out = [(bytes(self.buf), self.cutting)]
        self.buf.clear()
        self.cutting = False
        return out


@dataclass
class Resume:
    """Where the lines seen so far end: the last stamp and how many lines carried exactly that stamp."""

    last: int | None = None
    at_last: int = 0
    _skip: int = 0  # during a resumed stream: lines at ``last`` still to skip

    def restart(self) -> None:
        self._skip = self.at_last

    def fresh(self, ts: int | None) -> bool:
        """Is this line new? (Lines without a stamp cannot be matched: always new.)"""
        if ts is None:
            return True
        if self.last is not None and ts < self.last:
            return False
        if self.last is not None and ts == self.last:
            if self._skip > 0:
                self._skip -= 1
                return False
            self.at_last += 1
            return True
        self.last, self.at_last, self._skip = ts, 1, 0
        return True


# ---------------------------------------------------------------------------------------------
# The follower
# ---------------------------------------------------------------------------------------------


@dataclass
class Taken:
    """What the viewer gets on each take: new lines, the state in words, and the counts."""

    lines: list[str]
    state: str
    dropped: int  # lines that fell out of the ring before they were taken (in all)
    received: int  # lines received in all
    ended: bool  # the follower stopped for good (pod gone, stream ended, closed, refused)


@dataclass
class _Shared:
    ring: deque[str] = field(default_factory=lambda: deque(maxlen=RING))
    dropped: int = 0
    received: int = 0
    state: str = "connecting…"
    ended: bool = False


def containers(ctl: K8sControl, namespace: str, name: str) -> list[str]:
    """The pod's container names (init containers left out), for the picker of a multi-container pod."""
    _check_name("namespace", namespace)
    _check_name("pod", name)
    pod = ctl._call(f"pod {namespace}/{name}", ctl.core.read_namespaced_pod, name, namespace) or {}
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]


class LogFollower:
    """Follows one container's log in a daemon thread; ``take()`` from any thread, ``close()`` to stop."""

    def __init__(self, ctl: K8sControl, namespace: str, name: str, container: str | None = None,
                 tail_lines: int = 200, ring: int = RING, line_max: int = LINE_MAX,
                 read_timeout_s: float = 300.0, sleep: Callable[[float], bool] | None = None) -> None:
        _check_name("namespace", namespace)
        _check_name("pod", name)
        if container is not None:
            _check_name("container", container)
        self.ctl, self.namespace, self.name, self.container = ctl, namespace, name, container
        self.tail_lines = tail_lines
        self.line_max = line_max
        # A quiet pod sends nothing for long: past this the read gives up and resumes (no line lost).
        self.read_timeout_s = read_timeout_s
        self.resume = Resume()
        self.requests: list[list[tuple[str, str]]] = []  # the query of every stream opened (for tests)
        self.reconnects = 0
        self._shared = _Shared(ring=deque(maxlen=ring))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resp: Any = None
        self._uid: str | None = None
        self._sleep = sleep or (lambda s: self._stop.wait(s))
        self.thread = threading.Thread(target=self._run, name=f"logs {namespace}/{name}", daemon=True)

    def start(self) -> LogFollower:
        self.thread.start()
        return self

    # -- from any thread ------------------------------------------------------------------------

    def take(self) -> Taken:
        with self._lock:
            sh = self._shared
            lines = list(sh.ring)
            sh.ring.clear()
            return Taken(lines, sh.state, sh.dropped, sh.received, sh.ended)

    def close(self) -> None:
        """Stop: the socket is shut down so a blocked read returns now; the thread then ends."""
        self._stop.set()
        self._shutdown()
        self._set_state("closed", ended=True)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    # -- the thread ------------------------------------------------------------------------------

    def _set_state(self, text: str, ended: bool = False) -> None:
        with self._lock:
            if self._shared.ended:
                return  # the first end is the one said
            self._shared.state = text
            self._shared.ended = ended

    def _add(self, lines: list[str]) -> None:
        with self._lock:
            sh = self._shared
            over = len(sh.ring) + len(lines) - (sh.ring.maxlen or 0)
            if over > 0:
                sh.dropped += over
            sh.ring.extend(lines)
            sh.received += len(lines)

    def _shutdown(self) -> None:
        resp = self._resp
        if resp is None:
            return
        try:
            resp.shutdown()  # urllib3 2: shuts the socket's read side; the blocked read returns at once
        except Exception:  # noqa: BLE001 - already closed or released: nothing left to stop
            pass
        try:
            resp.release_conn()
            resp.close()
        except Exception:  # noqa: BLE001
            pass

    def _query(self) -> list[tuple[str, str]]:
        q = [("follow", "true"), ("timestamps", "true")]
        if self.container:
            q.append(("container", self.container))
        if self.resume.last is not None:
            q.append(("sinceTime", since_time(self.resume.last)))
        elif self.tail_lines is not None:
            q.append(("tailLines", str(self.tail_lines)))
        return q

    def _open(self) -> Any:
        """One follow request; the urllib3 response, its body not read yet."""
        api, path = self.ctl.api, f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/log"
        query = self._query()
        self.requests.append(query)
        req = api.param_serialize("GET", path, query_params=query, auth_settings=["BearerToken"],
                                  header_params={"Accept": "application/json, */*"})  # the log is text; errors JSON
        resp = api.call_api(*req, _request_timeout=(self.ctl.timeout_s, self.read_timeout_s))
        raw = resp.response
        if not 200 <= resp.status <= 299:
            from clustertop.collectors.kubernetes import api_status_message

            body = raw.read(65536)
            raw.release_conn()
            msg = api_status_message(body) or f"HTTP {resp.status}"
            raise K8sControlError(f"logs of {self.namespace}/{self.name}: {msg}", status=resp.status)
        return raw

    def _pod_state(self) -> str | None:
        """After a stream ended: "pod gone", "stream ended (...)", or None (still running: resume)."""
        try:
            pod = self.ctl._call(f"pod {self.namespace}/{self.name}", self.ctl.core.read_namespaced_pod,
                                 self.name, self.namespace) or {}
        except K8sControlError as e:
            if e.status == 404:
                return "pod gone"
            return None  # cannot tell: try the stream again (with backoff)
        md, st = pod.get("metadata") or {}, pod.get("status") or {}
        if self._uid and md.get("uid") != self._uid:
            return "pod gone (the name is now another pod)"
        if md.get("deletionTimestamp") and st.get("phase") not in ("Running", "Pending"):
            return "pod gone"
        for cs in st.get("containerStatuses") or []:
            if not isinstance(cs, dict):
                continue
            if self.container in (None, cs.get("name")) and "terminated" in (cs.get("state") or {}):
                code = (cs.get("state") or {}).get("terminated", {}).get("exitCode")
                return f"stream ended (container exited{'' if code is None else f' with {code}'})"
        if st.get("phase") in ("Succeeded", "Failed"):
            return f"stream ended (pod {st.get('phase')})"
        return None

    def _run(self) -> None:
        try:
            pod = self.ctl._call(f"pod {self.namespace}/{self.name}", self.ctl.core.read_namespaced_pod,
                                 self.name, self.namespace) or {}
            self._uid = (pod.get("metadata") or {}).get("uid")
        except K8sControlError as e:
            self._set_state("pod gone" if e.status == 404 else str(e), ended=True)
            return
        attempt = 0
        streamed = False  # a stream was open once: a later 5xx is a kubelet restarting, worth retrying
        while not self._stop.is_set():
            why = ""
            try:
                self._resp = self._open()
                if self._stop.is_set():
                    break
                streamed = True
                self._set_state("following")
                got = self._read(self._resp)
                if got:
                    attempt = 0
            except K8sControlError as e:
                if e.status in (401, 403, 404) or (e.status == 400 and "container" in str(e)):
                    # Refused, the pod gone, or no such container: another try says the same.
                    self._set_state("pod gone" if e.status == 404 else str(e), ended=True)
                    return
                if not streamed and e.status is not None and (e.status >= 500 or e.status == 400):
                    # The API server proxies logs from the node's kubelet: on the first try a 5xx (or
                    # "container not running") means it did not or cannot serve them (as pod_logs says).
                    self._set_state(f"logs unavailable for {self.namespace}/{self.name}: the node's kubelet did "
                                    f"not serve them ({e})", ended=True)
                    return
                why = str(e)
            except Exception as e:  # noqa: BLE001 - a dropped connection, a timeout: resumed below
                from clustertop.errors import describe

                why = describe(e)
            finally:
                resp, self._resp = self._resp, None
                if resp is not None:
                    try:
                        resp.release_conn()
                        resp.close()
                    except Exception:  # noqa: BLE001
                        pass
            if self._stop.is_set():
                break
            end = self._pod_state()
            if end is not None:
                self._set_state(end, ended=True)
                return
            delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            attempt += 1
            self.reconnects += 1
            self._set_state(f"stream dropped{': ' + why if why else ''}; reconnecting in {delay:g} s")
            self.resume.restart()
            if self._sleep(delay):
                break

    def _read(self, resp: Any) -> int:
        """Read the stream until it ends; the number of new lines."""
        split = LineSplitter(self.line_max)
        new = 0
        for chunk in resp.stream(65536, decode_content=True):
            if self._stop.is_set():
                return new
            new += self._lines(split.feed(chunk))
        new += self._lines(split.flush())
        return new

    def _lines(self, raw: list[tuple[bytes, bool]]) -> int:
        out = []
        for data, cut in raw:
            ts, text = split_ts(data.decode("utf-8", "replace"))
            if self.resume.fresh(ts):
                out.append(text + ("…" if cut else ""))
        if out:
            self._add(out)
        return len(out)
