"""Provides MountTable: /proc/self/mounts read again only when the kernel says the table changed.

The kernel builds the whole mount table's text on every read: on a Kubernetes node (a few mounts per pod:
secrets, config maps, volumes, overlay roots) that is hundreds of lines, generated every second for the host
collector and every two for the network-mount collector, for a table that changes a few times an hour.
``/proc/<pid>/mounts`` can be polled instead (proc(5): "POLLPRI and POLLERR ... when a filesystem is mounted
or unmounted"): the open file remembers the mount namespace's event count when it was opened and last polled,
and a poll reports POLLPRI once the count has moved. So the text is kept with the descriptor and read again
(pread at offset 0: seq_file rebuilds it there) only after such a poll; a change between the open and the
first read costs one extra read later, never a missed one.

Only where the path is in a real procfs (``kept.pseudo_roots``): a fixture tree's regular file never reports
POLLPRI, so there the text is read every time, as before.
"""

from __future__ import annotations

import os
import select
import weakref

#: The first read's buffer; a bigger table is read on in chunks, and the next read starts with room for it.
FIRST_SIZE = 65536
_CHANGED = select.POLLPRI | select.POLLERR


class MountTable:
    def __init__(self, path: str, live: bool) -> None:
        self.path = path
        self.live = live
        self.reads = 0  # the table's text built and read (for tests and self-diagnosis)
        self._fd: int | None = None
        self._poll: select.poll | None = None
        self._text: str | None = None
        self._size = FIRST_SIZE
        self._fds: list[int] = []  # the finalizer's view: closed when this object is collected
        weakref.finalize(self, _close_all, self._fds)

    def text(self) -> str | None:
        """The mount table's text (UTF-8, undecodable bytes replaced), or None when it cannot be read."""
        if not self.live:
            return self._read_once()
        if self._fd is not None and self._text is not None and self._poll is not None:
            try:
                changed = any(ev & _CHANGED for _, ev in self._poll.poll(0))
            except OSError:
                changed = True
            if not changed:
                return self._text
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            self._fds.append(self._fd)
            self._poll = select.poll()
            self._poll.register(self._fd, _CHANGED)
        try:
            self._text = self._pread(self._fd)
        except OSError:
            self.close()
            return None
        return self._text

    def _read_once(self) -> str | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return self._pread(fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    def _pread(self, fd: int) -> str:
        self.reads += 1
        chunks = []
        offset = 0
        while True:
            more = os.pread(fd, self._size, offset)
            if not more:
                break
            chunks.append(more)
            offset += len(more)
        self._size = max(self._size, 2 * offset)
        return b"".join(chunks).decode("utf-8", "replace")

    def close(self) -> None:
        _close_all(self._fds)
        self._fd, self._poll, self._text = None, None, None


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass
