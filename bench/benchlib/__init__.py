"""Shared pieces of the bench scripts (a folder, so .ci/run's bench/*.py loop does not run it as a bench)."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen[bytes] | None, wait_s: float = 10.0) -> None:
    """Stop a process a bench started: SIGTERM, then SIGKILL if it has not gone within ``wait_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
