"""Provides sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET per message.

The protocol is a newline-separated list of KEY=VALUE in a single AF_UNIX datagram; a path that
starts with '@' is in the abstract namespace (leading NUL byte). Failures are swallowed: a
missing or broken notify socket must never take the agent down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._last_status: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        # WATCHDOG_PID, when set, names the process the watchdog is meant for (not a forked child).
        pid_ok = env.get("WATCHDOG_PID") in (None, "", str(os.getpid()))
        try:
            usec = int(env["WATCHDOG_USEC"]) if pid_ok and env.get("WATCHDOG_USEC") else None
        except ValueError:
            usec = None
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        if self.address is None or not lines:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), addr)
            return True
        except OSError:
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *self._status_lines(status))

    def watchdog(self, status: str | None = None) -> bool:
        """WATCHDOG=1 (when systemd asked for one) plus STATUS= when it changed."""
        lines = (["WATCHDOG=1"] if self.watchdog_usec else []) + self._status_lines(status)
        return self.notify(*lines) if lines else False

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *self._status_lines(status))

    def _status_lines(self, status: str | None) -> list[str]:
        if status is None or status == self._last_status:
            return []
        self._last_status = status
        return [f"STATUS={status.replace(chr(10), ' ')[:200]}"]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
