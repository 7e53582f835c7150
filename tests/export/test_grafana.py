"""The Grafana dashboard shipped for the exporter (clustertop/export/grafana.json): importable as it is (uid,
title, a datasource variable every panel uses, a node variable), every query parses (promtool here; the real
Prometheus's query API in the heavy test, over a simulated cluster scraped through the exporter), and every
metric it names is one the exporter serves (clustertop/export/metrics.py).

Grafana itself cannot run here (not in the Debian mirror, nor on PyPI or npm as a server).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clustertop.export import metrics
from clustertop.sim.simulate import SimCluster, make_publishers, publish
from tests.conftest import ROOT, RedisServer
from tests.support.exporter_process import ExporterProcess
from tests.support.prometheus import Prometheus

DASHBOARD = ROOT / "clustertop" / "export" / "grafana.json"
#: What Grafana puts in place of the template variables when "All" is picked.
VARS = {"$node": ".*", "${node}": ".*", "$gpu": ".*", "${gpu}": ".*", "$__rate_interval": "1m", "$__interval": "1m"}
#: Names PromQL uses that are not metrics: functions, aggregations, keywords, label names.
NOT_METRICS = {"sum", "by", "avg_over_time", "increase", "unless", "on", "node", "gpu", "device", "kind",
               "state", "severity", "source", "label_values"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def exprs(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression with the variables substituted) of every target, and the variables' queries."""
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            e = t["expr"]
            for k, v in VARS.items():
                e = e.replace(k, v)
            out.append((p["title"], e))
    return out


def metric_names(expr: str) -> set[str]:
    no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_strings)
    found = {m for m in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", no_ranges)}
    labels = set(re.findall(r"([a-zA-Z_]\w*)\s*[=!]~?", no_strings))
    return {m for m in found - NOT_METRICS - labels if not m.isdigit()}


def test_the_dashboard_is_importable_as_it_is() -> None:
    d = dashboard()
    assert d["uid"] == "clustertop" and d["title"] and d["schemaVersion"] >= 30
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["node"]["query"]["query"] == "label_values(clustertop_node_up, node)"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    titles = " ".join(p["title"] for p in d["panels"])
    for what in ("Cluster", "Nodes", "GPUs", "Bonds", "Ceph", "Queues", "Liveness"):
        assert what in titles


def test_every_metric_it_names_is_one_the_exporter_serves() -> None:
    served = set(metrics.names(metrics.FAMILIES))
    used: set[str] = set()
    for title, e in exprs(dashboard()):
        names = metric_names(e)
        assert names, (title, e)
        assert names <= served, (title, names - served)
        used |= names
    for needed in ("clustertop_cluster_gpu_utilization_ratio", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED",
                   "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "clustertop_bond_degraded",
                   "clustertop_ceph_health_status", "clustertop_queue_depth", "clustertop_node_up"):
        assert needed in used


def test_the_name_check_is_not_vacuous() -> None:
    assert metric_names('sum by (node) (foo_bar{node=~".*"} unless on (node) baz{kind!~"x"}) * 100') == {
        "foo_bar", "baz"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (tests/run installs it)")
def test_every_query_parses_for_promtool(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "grafana", "rules": [
        {"record": f"ct:check:{i}", "expr": e} for i, (_t, e) in enumerate(exprs(dashboard()))]}]}
    (tmp_path / "rules.json").write_text(json.dumps(rules))  # YAML is a superset of JSON
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def scraped(redis_server: RedisServer) -> Iterator[Prometheus]:
    client = redis_server.client()
    sim = SimCluster(seed=5, nodes=6, gpus_per_node=2)
    pubs = make_publishers(sim, client, 600.0)
    stop = threading.Event()

    def run() -> None:  # live, as agents are: the cluster sources go stale after a few of their intervals
        while not stop.is_set():
            publish(client, sim, time.time(), pubs)
            stop.wait(1.0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    exporter = ExporterProcess("--redis", redis_server.url)
    prom = Prometheus({"clustertop": exporter.address})
    try:
        prom.wait_for(lambda: prom.value("count(clustertop_node_up)") == 6, "the first scrape")
        prom.wait_for(lambda: prom.value("count(clustertop_source_up == 1)") == 4, "every cluster source fresh")
        yield prom
    finally:
        stop.set()
        t.join(5)
        prom.stop()
        exporter.stop()


@pytest.mark.heavy
def test_every_query_runs_on_a_real_prometheus_scraping_the_exporter(scraped: Prometheus) -> None:
    empty = []
    for title, e in exprs(dashboard()):
        try:
            res = scraped.query(e)  # raises on anything but status "success"
        except Exception as err:  # noqa: BLE001 - the query's text is the useful part of the failure
            raise AssertionError(f"{title}: {e}: {err}") from None
        if not res:
            empty.append((title, e))
    # The simulated cluster has GPUs, bonds, Ceph and queues: a query with no answer there names a series
    # wrongly (a label, a unit). Only filters that are empty on a healthy cluster may answer nothing.
    allowed = re.compile(r"== 1|== 0|> 0")
    assert not [x for x in empty if not allowed.search(x[1])], empty
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"].replace("$node", ".*")
            selector = re.fullmatch(r"label_values\((.+), (\w+)\)", q)
            assert selector, q
            assert {labels.get(selector.group(2)) for labels, _ in scraped.query(selector.group(1))} - {None}
