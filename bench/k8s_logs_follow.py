"""What following a pod's log costs (control/k8s_logs.py), through the real kube-apiserver 1.20.

The control plane of tests/support/k8s_cluster.py (cached binaries, private ports and dirs) and the
stand-in kubelet log endpoint ``LogKubelet`` (tests/support/k8s_logs.py; no kubelet can run here), whose
stream the API server itself proxies. Printed:

- latency: a line printed (``emit``) -> taken from the follower, median and p95 over ``--lines`` lines;
- throughput: ``--burst`` lines printed at once, the time until the follower has all of them, against the
  same-run baseline of one plain ``GET .../log`` (no follow: the API server's and kubelet's share alone),
  and the ratio; this process's CPU per 1,000 lines in both (it includes the stand-in kubelet, in this
  process, serving the lines: the same in both).

Informational: exits 0. Give the load (``uptime``) with any figure: the machine is shared.

    python bench/k8s_logs_follow.py            # 200 latency lines, a burst of 50,000
    python bench/k8s_logs_follow.py --quick    # 50 and 10,000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clustertop.control.k8s_logs import LogFollower  # noqa: E402
from clustertop.control.kubernetes import K8sControl  # noqa: E402
from tests.support.k8s_cluster import K8sCluster, missing_binaries  # noqa: E402
from tests.support.k8s_logs import LogKubelet, node_body  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--burst", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.lines, args.burst = 50, 10_000
    if missing_binaries():
        print(f"Kubernetes binaries missing ({', '.join(missing_binaries())}): run the k8s tests once to build them")
        return 0
    from kubernetes import client as kc

    with tempfile.TemporaryDirectory(prefix="ct-bench-logs-") as tmp:
        cluster = K8sCluster(Path(tmp) / "k8s")
        kubelet = LogKubelet(Path(tmp))
        try:
            cluster.start()
            api = cluster.client("admin")
            core = kc.CoreV1Api(api)
            ns, node = f"bench-{uuid.uuid4().hex[:6]}", f"fake-bench-{uuid.uuid4().hex[:6]}"
            body = node_body(node, kubelet.port)
            core.create_namespace({"metadata": {"name": ns}})
            core.create_node(body)
            core.patch_node_status(node, {"status": body["status"]})
            core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {
                "nodeName": node, "containers": [{"name": "main", "image": "registry.local/x:1"}]}})
            while core.read_namespaced_pod("p", ns).status.phase != "Running":
                time.sleep(0.1)
            ctl = K8sControl(str(cluster.kubeconfigs["admin"]))

            # Latency: one line at a time, taken as soon as it is there.
            f = LogFollower(ctl, ns, "p", container="main", tail_lines=0, ring=args.burst + 10).start()
            while f.take().state != "following":
                time.sleep(0.01)
            lat = []
            for i in range(args.lines):
                t0 = time.perf_counter()
                kubelet.emit(ns, "p", "main", f"latency {i}")
                while not f.take().lines:
                    time.sleep(0.0005)
                lat.append(time.perf_counter() - t0)
            # Throughput: a burst, followed. Printed while the stream's thread waits (the lock held), so the
            # clock measures following, not printing.
            with kubelet.cond:
                for i in range(args.burst):
                    kubelet.emit(ns, "p", "main", f"burst line {i} " + "x" * 80)
                cpu0, t0 = time.process_time(), time.perf_counter()
            got = 0
            while got < args.burst:
                got += len(f.take().lines)
                time.sleep(0.01)
            follow_s, follow_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            f.close()
            f.thread.join(10)
            # Baseline: the whole log in one plain GET (no follow), same run, same lines and more.
            cpu0, t0 = time.process_time(), time.perf_counter()
            text = ctl.pod_logs(ns, "p", container="main", tail_lines=args.burst)
            base_s, base_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            assert text.count("\n") >= args.burst - 1, "the baseline read fewer lines"
            ctl.close()
            core.delete_namespace(ns)
            core.delete_node(node)
            api.close()
        finally:
            kubelet.close()
            cluster.stop()
    lat.sort()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores, shared)")
    print(f"latency, print -> taken ({args.lines} lines): median {statistics.median(lat) * 1000:.1f} ms, "
          f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.1f} ms")
    print(f"burst of {args.burst} lines: followed in {follow_s:.2f} s ({args.burst / follow_s:,.0f} lines/s), "
          f"CPU {follow_cpu * 1000 / args.burst * 1000:.0f} ms per 1,000 lines")
    print(f"baseline, one plain GET of the same lines: {base_s:.2f} s, CPU {base_cpu * 1000 / args.burst * 1000:.0f} ms "
          f"per 1,000 lines")
    print(f"ratio follow / plain GET: wall {follow_s / base_s:.2f}x, CPU {follow_cpu / max(base_cpu, 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
