"""Benchmark: alert delivery time, from the event written on a node to the webhook that pages someone.

Real parts: a redis-server, the alert evaluator (``clustertop.alerting.service.AlertService``, as the lease
holding agent runs it, on the agent's RESP client and lease), a real Alertmanager (Debian
prometheus-alertmanager) routing to a webhook receiver in this process. Each round a node publishes a
degraded bond (through the agent's Publisher) on a fresh node name, so every round is a new alert; the
clock starts just before that write. Two figures per round:

- ``to Alertmanager``: until Alertmanager lists the alert (GET /api/v2/alerts): our part (the evaluation
  interval, the read, the rule, the POST);
- ``to webhook``: until the webhook receives the notification: the above plus Alertmanager's
  ``group_wait`` (set here to 1 s, a real route's is usually 10-30 s: add the difference).

p50/p95 over the rounds, with the evaluation interval and group_wait they were measured with.

    python bench/alert_delivery.py            # 30 rounds, interval 1 s
    python bench/alert_delivery.py --quick    # CI smoke: 5 rounds
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.redis_server import start_redis  # noqa: E402  (bench/benchlib/)

from clustertop.agents.lease import Lease  # noqa: E402
from clustertop.agents.publisher import Publisher  # noqa: E402
from clustertop.alerting.config import AlertsSection  # noqa: E402
from clustertop.alerting.service import AlertService  # noqa: E402
from clustertop.store.resp import Client  # noqa: E402
from clustertop.wire import schema  # noqa: E402
from clustertop.wire.alerts import ALERTS_LEASE  # noqa: E402
from tests.support import builders as b  # noqa: E402
from tests.support.alertmanager import Alertmanager, Webhook  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def degraded(host: str) -> schema.NodeSnapshot:
    s = b.tower(host, ts=time.time())
    s.bonds = [schema.Bond(name="bond0", degraded=True, problems=["eth1 down"],
                           slaves=[schema.BondSlave(name="eth0", ok=True), schema.BondSlave(name="eth1", ok=False)])]
    return s


def in_alertmanager(url: str, node: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?filter=node%3D%22{node}%22", timeout=2) as r:
        return bool(json.load(r))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 rounds (CI smoke)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--interval", type=float, default=1.0, help="evaluation interval, seconds")
    args = ap.parse_args()
    rounds = 5 if args.quick else args.rounds
    if shutil.which("prometheus-alertmanager") is None:
        print("prometheus-alertmanager not installed (tests/run installs it)", file=sys.stderr)
        return 2
    proc, url, tmp = start_redis()
    hook = Webhook()
    am = Alertmanager(hook.url, group_wait="1s", group_interval="1s")
    section = AlertsSection(alertmanager=[am.url], interval=args.interval, resend=30.0, cluster="bench")
    svc = AlertService(section, "bench-eval", lambda: Client.from_url(url),
                       lambda c: Lease(c, ALERTS_LEASE, "bench-eval", section.interval), b.node_key("bench-eval"))
    stop = threading.Event()
    th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    writer = Client.from_url(url)
    to_am: list[float] = []
    to_hook: list[float] = []
    try:
        th.start()
        deadline = time.monotonic() + 10
        while svc.evaluations < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(rounds):
            host = f"node-{i:03d}"
            pub = Publisher(writer, host, 600.0, key=b.node_key(host))
            # start each round at a random phase of the evaluation interval, as events do
            time.sleep((i * 0.37) % args.interval)
            t0 = time.time()
            pub.publish(degraded(host))
            got_am = got_hook = None
            while (got_am is None or got_hook is None) and time.time() - t0 < 30:
                now = time.time()
                if got_am is None and in_alertmanager(am.url, host):
                    got_am = now - t0
                if got_hook is None:
                    arrived = [t for t, a in hook.alerts("firing") if a["labels"].get("node") == host]
                    if arrived:
                        got_hook = arrived[0] - t0
                time.sleep(0.01)
            if got_am is None or got_hook is None:
                print(f"round {i}: not delivered within 30 s", file=sys.stderr)
                return 1
            to_am.append(got_am)
            to_hook.append(got_hook)
    finally:
        stop.set()
        th.join(10)
        writer.close()
        am.stop()
        hook.stop()
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"alert delivery, {rounds} rounds, evaluation every {args.interval:g} s, Alertmanager group_wait 1 s")
    for name, xs in (("event -> Alertmanager", to_am), ("event -> webhook", to_hook)):
        print(f"  {name:<22} p50 {statistics.median(xs):.2f} s   p95 {pct(xs, 95):.2f} s   max {max(xs):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
