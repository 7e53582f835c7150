"""Provides the agent's connection to a Sentinel-managed master (``redis+sentinel://``), for ``store.resp``.

At each (re)connect: ask the sentinels in turn (``SENTINEL get-master-addr-by-name``), connect there, and
check with ROLE that it is the master: right after a failover a sentinel may still name the old one, which
may have come back as a replica. A READONLY reply closes the connection (``resp.Connection._roundtrip``),
so the next command asks again. Nothing is retried here: the agent's loop retries at its next tick.
"""

from __future__ import annotations

from typing import Any

from clustertop.store.resp import Connection, ConnectionFailed, RedisError


class SentinelConnection(Connection):
    def __init__(self, u: Any, **kw: Any) -> None:
        super().__init__(host="", port=0, **kw)
        self.sentinels: list[tuple[str, int]] = list(u.hosts)
        self.service: str = u.service
        self.sentinel_auth = (u.sentinel_username, u.sentinel_password)

    def _where(self) -> str:
        where = f"{self.host}:{self.port}, " if self.host else ""
        return f"{where}master {self.service!r} of sentinels {','.join(f'{h}:{p}' for h, p in self.sentinels)}"

    def connect(self) -> None:
        if self.sock is not None:
            return
        self.host, self.port = self.master()
        super().connect()
        try:
            (role,) = self._roundtrip([["ROLE"]])
        except RedisError:
            self.close()
            raise
        if not (isinstance(role, list) and role and role[0] == b"master"):
            self.close()
            what = role[0].decode("utf-8", "replace") if isinstance(role, list) and role else repr(role)[:80]
            raise ConnectionFailed(f"{self.host}:{self.port}, named master {self.service!r} by a sentinel, "
                                   f"is a {what} (a failover under way)")

    def master(self) -> tuple[str, int]:
        """The master's address as the first sentinel that answers names it; that sentinel is asked first
        next time."""
        user, password = self.sentinel_auth
        problems = []
        for i, (host, port) in enumerate(self.sentinels):
            s = Connection(host=host, port=port, username=user, password=password, tls=self.tls,
                           ca_file=self.ca_file, certfile=self.certfile, keyfile=self.keyfile,
                           cert_reqs=self.cert_reqs, timeout_s=self.timeout_s,
                           connect_timeout_s=self.connect_timeout_s)
            try:
                (addr,) = s._roundtrip([["SENTINEL", "get-master-addr-by-name", self.service]])
            except RedisError as e:
                problems.append(f"{host}:{port}: {e}")
                continue
            finally:
                s.close()
            if isinstance(addr, list) and len(addr) == 2 and isinstance(addr[0], bytes) and \
                    isinstance(addr[1], bytes) and addr[1].isdigit():
                if i:
                    self.sentinels.insert(0, self.sentinels.pop(i))
                return addr[0].decode("ascii", "replace"), int(addr[1])
            problems.append(f"{host}:{port}: no master named {self.service!r} ({str(addr)[:80]})")
        raise ConnectionFailed(f"no sentinel names the master {self.service!r}: {'; '.join(problems)}")
