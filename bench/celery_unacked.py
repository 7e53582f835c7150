"""What counting unacknowledged messages costs the ``celery`` collector on a Redis broker.

A private redis-server holds 20 Celery queues (kombu's lists and binding sets) and ``--unacked``
entries in kombu's ``unacked`` hash (~1 KiB messages, as kombu writes them). Prints the collector's
poll time (medians over 5 interleaved rounds, worker inspection left out: it is a broadcast, the same either way)
with an empty hash (the baseline), the first poll that reads every entry once, and the polls after it
(entries known: only HLEN and HKEYS), with the ratios to the baseline. Informational: exits 0.

    python bench/celery_unacked.py --unacked 5000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchlib.redis_server import start_redis  # noqa: E402
from clustertop.collectors import queues_parse  # noqa: E402
from clustertop.collectors.base import Context  # noqa: E402
from clustertop.collectors.celery import CeleryCollector  # noqa: E402

QUEUES = [f"q{i:02d}" for i in range(20)]


def poll_ms(c: CeleryCollector) -> float:
    t = time.perf_counter()
    q = c.collect()
    assert q.queues and q.errors is None, q.errors
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unacked", type=int, default=5000)
    ap.add_argument("--polls", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 1,000 unacked, 5 polls")
    a = ap.parse_args()
    if a.quick:
        a.unacked, a.polls = 1000, 5
    proc, url, data = start_redis()
    try:
        import redis

        r = redis.Redis.from_url(url)
        sep = queues_parse.SEP
        for q in QUEUES:
            r.sadd(queues_parse.BINDING_PREFIX + q, f"{q}{sep}{sep}{q}")
            r.lpush(q, *[b"m" * 1000] * 50)
        def fresh() -> CeleryCollector:
            c = CeleryCollector(Context(node="bench", config={"brokers": [url], "request_timeout": 2},
                                        config_file="bench"))
            c.inspectors = []  # the broadcast is not what is measured
            poll_ms(c)  # discovery (SCAN of the bindings) happens here, once per inspect_interval
            return c

        body = "x" * 1000
        pipe = r.pipeline(transaction=False)
        for i in range(a.unacked):
            q = QUEUES[i % len(QUEUES)]
            pipe.hset("filled", f"{i:08x}-tag", f'[{{"body": "{body}"}}, "{q}", "{q}"]')
        pipe.execute()
        bases, firsts, afters = [], [], []
        for _ in range(5):  # interleaved rounds: the machine's load falls on all three alike
            r.delete(queues_parse.UNACKED_KEY)
            c = fresh()
            bases += [poll_ms(c) for _ in range(a.polls)]
            r.copy("filled", queues_parse.UNACKED_KEY, replace=True)
            firsts.append(poll_ms(c))
            afters += [poll_ms(c) for _ in range(a.polls)]
            c.close()
        base, first, after = (statistics.median(x) for x in (bases, firsts, afters))
        print(f"celery collector, 20 queues, {a.unacked} unacked messages of ~1 KiB")
        print(f"  empty unacked hash (baseline)  {base:8.2f} ms")
        print(f"  first poll: every entry read   {first:8.2f} ms  x{first / base:.1f}")
        print(f"  later polls: entries known     {after:8.2f} ms  x{after / base:.1f}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
