"""Provides the reader's fetch on a Redis Cluster: every command of a read sent to its shard's master in one
write per shard, every shard written before any reply is read: one round trip per shard, the shards
working in parallel.

Why not redis-py's cluster pipeline, which does the same: its per-command bookkeeping (a command object,
its slot from the parsed arguments, a node lookup under a lock, a reply callback) costs ~12 µs a command, and
a read on a cluster sends one MGET per node (a node's keys share one slot, its host being their hash tag;
an MGET may not span slots): 10,000 nodes, ~120 ms before a byte is decoded. Here a command is packed by
hand once, with its slot (the commands of a read are the same read after read), the slot looked up in
redis-py's own slot map at every read, and each reply read with redis-py's connection (its hiredis parser):
~3 µs a command (``bench/scale_10k.py``).

Anything this path does not handle itself hands the read back to redis-py's pipeline (``fetch`` returns
None), which follows MOVED/ASK, retries and refreshes its slot map as it always did: an error reply of any
kind (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, WRONGTYPE), a connection that fails, a slot the map does not cover,
a client that is not redis-py's ``RedisCluster`` speaking RESP2. Every reply of a shard is read before its
connection goes back to the pool; a connection that failed is dropped, never pooled half-read.

Duck-typed on redis-py (``read`` imports no client); redis-py is imported here only when a cluster is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (command name, key, *more args): the first key routes the command; every key of one command must share
#: its slot (the caller's job: a node's keys are tagged with its host).
Command = Sequence[str | bytes | int]

#: Commands memoised at most (a read of 10,000 nodes is 10,000 commands; a plan change makes new ones).
MEMO_MAX = 100_000


class ShardFetch:
    """One per Reader: the command memo lives as long as the reader does."""

    def __init__(self) -> None:
        #: command -> (its slot, its RESP bytes)
        self._packed: dict[tuple[str | bytes | int, ...], tuple[int, bytes]] = {}
        #: Why the last ``fetch`` handed the read back (None: it did not); for tests and the bench.
        self.fell_back: str | None = None

    def fetch(self, client: Any, commands: Sequence[Command]) -> list[Any] | None:
        """The raw replies (RESP2, bytes, undecoded) of ``commands`` in order, or None: redis-py's pipeline
        must do this read (``fell_back`` says why)."""
        cluster = _redis_py_cluster(client)
        if cluster is None:
            self.fell_back = "not redis-py's RedisCluster on RESP2"
            return None
        from redis.crc import key_slot
        from redis.exceptions import RedisError, ResponseError

        slots_cache = cluster.nodes_manager.slots_cache  # replaced whole on a refresh, never edited in place
        memo = self._packed
        if len(memo) > MEMO_MAX:
            memo.clear()
        groups: dict[str, tuple[Any, list[int], list[bytes]]] = {}
        for i, cmd in enumerate(commands):
            # A read's commands are the same read after read: each one's slot and bytes are worked out once.
            t = tuple(cmd)
            known = memo.get(t)
            if known is None:
                known = memo[t] = (key_slot(_b(cmd[1])), _pack(cmd))
            slot, packed = known
            owners = slots_cache.get(slot)
            if not owners:
                self.fell_back = f"slot {slot} not in the slot map"
                return None
            node = owners[0]
            g = groups.get(node.name)
            if g is None:
                g = groups[node.name] = (node, [], [])
            g[1].append(i)
            g[2].append(packed)
        out: list[Any] = [None] * len(commands)
        taken: list[tuple[Any, Any, list[int]]] = []  # (pool, connection, command indexes) written to
        problem: str | None = None
        whole = False  # every reply of every connection written to was read
        try:
            for node, idxs, writes in groups.values():
                pool = cluster.get_redis_connection(node).connection_pool
                conn = pool.get_connection()
                taken.append((pool, conn, idxs))
                conn.send_packed_command([b"".join(writes)])
            for _, conn, idxs in taken:
                for i in idxs:
                    try:
                        out[i] = conn.read_response(disable_decoding=True)
                    except ResponseError as e:  # read on: the replies after it belong to this connection
                        problem = problem or f"{conn.host}:{conn.port}: {type(e).__name__}: {e}"
            whole = True
        except (RedisError, OSError) as e:
            self.fell_back = f"{type(e).__name__}: {e}"
            return None
        finally:
            for pool, conn, _ in taken:
                if not whole:
                    conn.disconnect()  # replies may be left unread on it: never back into the pool like that
                pool.release(conn)
        self.fell_back = problem
        return None if problem else out


def _redis_py_cluster(client: Any) -> Any:
    """redis-py's RedisCluster behind ``client`` (``store.Detected`` resolves to it), or None."""
    if getattr(client, "bounded_reads", False):  # the agent's own client: its pipeline splits by shard itself
        return None
    resolve = getattr(client, "resolve", None)
    target = resolve() if callable(resolve) else client
    if getattr(target, "nodes_manager", None) is None or not callable(getattr(target, "get_redis_connection", None)):
        return None
    protocol = target.nodes_manager.connection_kwargs.get("protocol")
    if protocol not in (None, 2, "2"):  # RESP3 replies (ZRANGE's pairs, maps) are shaped otherwise
        return None
    return target


def _b(a: str | bytes | int) -> bytes:
    if isinstance(a, bytes):
        return a
    return str(a).encode()


def _pack(cmd: Command) -> bytes:
    parts = [b"*%d\r\n" % len(cmd)]
    for a in cmd:
        b = _b(a)
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)
