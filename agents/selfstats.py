"""Provides the agent's own cost: CPU per tick, resident memory, tick time.

Reads the real procfs of this process (``/proc/self``), never the ``--proc-root`` under test:
those are the agent's own numbers, not the observed node's.
"""

from __future__ import annotations

import os
import resource
import time

from clustertop import __version__
from clustertop.collectors.kept import KeptFiles
from clustertop.wire import schema

SELF_PROC = "/proc"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def parse_statm_rss(text: str, page_size: int) -> int | None:
    """Resident bytes from /proc/<pid>/statm ("size resident shared ...", in pages)."""
    parts = text.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1]) * page_size


def read_rss(proc_root: str = SELF_PROC, files: KeptFiles | None = None) -> int | None:
    """``files``: where /proc/self/statm stays open between ticks (collectors/kept.py): a third of the cost."""
    path = os.path.join(proc_root, "self", "statm")
    text = files.read(path) if files is not None else KeptFiles().read(path)
    return parse_statm_rss(text, PAGE_SIZE) if text is not None else None


class SelfStats:
    def __init__(self, read_only: bool) -> None:
        self.started_ts = time.time()
        self.read_only = read_only
        self.publish_errors = 0
        self.last_tick_ms: float | None = None
        self._last_cpu = self._cpu_s()
        self._last_wall = time.monotonic()
        self._ticks = 0
        self._files = KeptFiles((SELF_PROC,), limit=1)  # /proc here is this process's own procfs

    @staticmethod
    def _cpu_s() -> float:
        t = os.times()
        return t.user + t.system

    def sample(self) -> schema.AgentStats:
        """Stats since the previous sample (the previous tick)."""
        cpu, wall = self._cpu_s(), time.monotonic()
        d_cpu, d_wall = cpu - self._last_cpu, wall - self._last_wall
        first = self._ticks == 0
        self._last_cpu, self._last_wall = cpu, wall
        self._ticks += 1
        rss = read_rss(files=self._files)
        if rss is None:  # no procfs: peak RSS is the best we have (ru_maxrss is KiB on Linux)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return schema.AgentStats(
            version=__version__,
            pid=os.getpid(),
            # The first tick includes start-up (imports): not representative, so unknown.
            cpu_pct=None if first or d_wall <= 0 else round(100.0 * d_cpu / d_wall, 2),
            cpu_ms_per_tick=None if first else round(d_cpu * 1000, 2),
            rss_bytes=rss,
            tick_ms=self.last_tick_ms,
            started_ts=self.started_ts,
            read_only=self.read_only,
            publish_errors=self.publish_errors,
        )
