"""Provides KeptFiles: the per-tick /proc and /sys files opened once and re-read with pread at offset 0.

procfs and sysfs build a file's text when it is read at offset 0 (seq_file resets its iterator there), so a
kept descriptor gives the same bytes as a fresh open, without the path walk, open and close that cost more
than the read itself for small files (measured on this machine: /proc/uptime 8 us open+read vs 1 us pread;
a NIC's operstate in sysfs 12 us vs 1 us). That is a regular file's behaviour too, except when a file is
replaced (a fixture tree edited by rename): so descriptors are kept only under roots that ARE procfs and
sysfs mounts (``pseudo_roots``), and a fixture tree reads as before, one open per read.

A kept descriptor whose file went away (a NIC deleted: sysfs answers ENODEV) is closed and the path opened
afresh once; if that fails too the read is None, exactly as a plain open would say. Descriptors are opened
close-on-exec (os.open's default), and at most ``limit`` are kept: a Kubernetes node's 200 veths read the
old way past it.
"""

from __future__ import annotations

import os
import weakref

from clustertop.collectors import procfs

#: The first read's buffer; a file that fills it is read on in chunks, and the next read starts larger.
FIRST_SIZE = 16384
DEFAULT_LIMIT = 64


def pseudo_roots(proc_root: str, sys_root: str, mounts_path: str = "/proc/self/mounts") -> tuple[bool, bool]:
    """Whether ``proc_root`` is a procfs mount and ``sys_root`` a sysfs one, in this process's mount table."""
    try:
        with open(mounts_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return False, False
    kinds = {m.mountpoint: m.fstype for m in procfs.parse_mounts(text)}
    return (kinds.get(os.path.realpath(proc_root)) == "proc",
            kinds.get(os.path.realpath(sys_root)) == "sysfs")


class KeptFiles:
    """``keep(path)`` says which paths may be kept open (the rest are opened per read)."""

    def __init__(self, keep_prefixes: tuple[str, ...] = (), limit: int = DEFAULT_LIMIT) -> None:
        self._prefixes = tuple(p.rstrip("/") + "/" for p in keep_prefixes)
        self._fds: dict[str, int] = {}
        self._size: dict[str, int] = {}
        self._used: set[str] = set()  # kept paths read since the last sweep()
        self.limit = limit
        # A collector dropped without close() (a test, a --once run) must not leak what it kept: closed when
        # this object is collected (the finalizer holds the dict, not the object).
        weakref.finalize(self, _close_all, self._fds)

    def read(self, path: str) -> str | None:
        """The file's text (UTF-8, undecodable bytes replaced), or None when it cannot be read."""
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def read_bytes(self, path: str) -> bytes | None:
        fd = self._fds.get(path)
        if fd is not None:
            self._used.add(path)
            try:
                return self._pread(path, fd)
            except OSError:  # gone (ENODEV, ESRCH) or unreadable now: open it afresh below
                self.forget(path)
        if len(self._fds) < self.limit and path.startswith(self._prefixes):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                data = self._pread(path, fd)
            except OSError:
                os.close(fd)
                return None
            self._fds[path] = fd
            self._used.add(path)
            return data
        # Not kept: opened for this read. os.open and pread, not open(): the buffered file object cost as much
        # as the syscalls on a /proc/<pid>/stat (the process walk past its limit, a fixture tree).
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # absent on this kernel, permission, or a NIC that just went away
            return None
        try:
            return self._pread(path, fd, remember=False)
        except OSError:
            return None
        finally:
            os.close(fd)

    def _pread(self, path: str, fd: int, remember: bool = True) -> bytes:
        size = self._size.get(path, FIRST_SIZE)
        data = os.pread(fd, size, 0)
        if len(data) < size:
            return data
        chunks = [data]
        offset = len(data)
        while True:  # a big mount table: read on to the end, and start with room for it next time
            more = os.pread(fd, size, offset)
            if not more:
                break
            chunks.append(more)
            offset += len(more)
        if remember:  # (only for kept paths: the sizes of paths read once must not pile up)
            self._size[path] = 2 * offset
        return b"".join(chunks)

    def forget(self, path: str) -> None:
        self._size.pop(path, None)
        fd = self._fds.pop(path, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def sweep(self) -> None:
        """Close what was not read since the last sweep (a slave that left its bond, a NIC that went away)."""
        for path in [p for p in self._fds if p not in self._used]:
            self.forget(path)
        self._used.clear()

    def forget_under(self, prefix: str) -> None:
        for path in [p for p in self._fds if p.startswith(prefix)]:
            self.forget(path)

    def close(self) -> None:
        for path in list(self._fds):
            self.forget(path)

    def __len__(self) -> int:
        return len(self._fds)


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
