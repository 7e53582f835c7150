"""The rule set, pure: for-durations (pending -> firing -> resolved), severities, silences, thresholds,
the timeline's cap, carrying on after a lease hand-over, and ``[alerts]`` errors that name file and key.
Time is an argument: "fires after 30 s" is a sequence of steps, not a wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustertop.agents.config import load_config
from clustertop.alerting.config import AlertsSection, RuleConfig, seconds
from clustertop.alerting.rules import RULES, Evaluator, Settings
from clustertop.config import ConfigError
from clustertop.read import cluster
from clustertop.read.cluster import Alert, digest_rule
from clustertop.read.ledger import Flag
from clustertop.read.model import NodeView
from clustertop.wire import schema
from clustertop.wire.digest import node_alerts
from tests.support import builders as b

T0 = 1_750_000_000.0


def osd(node: str = "n1") -> Alert:
    return Alert("warning", "ceph", node, "osd.3", "Ceph OSD_DOWN: osd.3 is down", "CephOsdDown")


def ev(section: AlertsSection | None = None, **kw: object) -> Evaluator:
    return Evaluator(Settings.of(section), **kw)  # type: ignore[arg-type]


def test_an_alert_fires_only_after_its_for_duration_and_resolves_once() -> None:
    e = ev(AlertsSection(rules={"CephOsdDown": RuleConfig(for_="30s")}))
    assert e.step([osd()], T0) == []
    (r,) = e.records.values()
    assert r.state == "pending" and r.since_ts == T0
    assert e.step([osd()], T0 + 29) == []
    (fired,) = e.step([osd()], T0 + 30)
    assert (fired.kind, fired.rule, fired.node, fired.subject) == ("fired", "CephOsdDown", "n1", "osd.3")
    assert e.step([osd()], T0 + 31) == []  # still firing: no second event
    (resolved,) = e.step([], T0 + 40)
    assert resolved.kind == "resolved" and next(iter(e.records.values())).resolved_ts == T0 + 40
    assert e.step([], T0 + 41) == []
    assert [x.kind for x in e.events] == ["fired", "resolved"]


def test_a_blip_shorter_than_for_never_fires_and_leaves_nothing() -> None:
    e = ev(AlertsSection(rules={"CephOsdDown": RuleConfig(for_=60)}))
    e.step([osd()], T0)
    assert e.step([], T0 + 10) == [] and not e.records and not e.events


def test_identity_is_rule_node_subject_not_the_changing_message() -> None:
    e = ev()
    a1 = Alert("critical", "node", "n1", "n1", "down, last seen 2m ago", "NodeSilent")
    a2 = Alert("critical", "node", "n1", "n1", "down, last seen 3m ago", "NodeSilent")
    assert [x.kind for x in e.step([a1], T0)] == ["fired"]  # NodeSilent: for 0 by default
    assert e.step([a2], T0 + 60) == []
    assert next(iter(e.records.values())).message == "down, last seen 3m ago"


def test_node_silent_is_one_alert_from_stale_to_down() -> None:
    """A node going silent is stale, then down: one alert (the rule's severity), not two notices."""
    e = ev()
    stale = cluster.alerts([NodeView("n1", "stale", age_s=10)])
    down = cluster.alerts([NodeView("n1", "down", age_s=120)])
    assert [x.kind for x in e.step(stale, T0)] == ["fired"]
    assert e.step(down, T0 + 60) == []
    (r,) = e.records.values()
    assert r.severity == "critical" and r.message.startswith("down")


def test_severity_override_and_lock_while_firing() -> None:
    e = ev(AlertsSection(rules={"BondDegraded": RuleConfig(severity="info")}))
    e.step([Alert("critical", "bond", "n1", "bond0", "bond bond0 degraded", "BondDegraded")], T0)
    assert next(iter(e.records.values())).severity == "info"
    e2 = ev()
    e2.step([Alert("warning", "bond", "n1", "bond0", "one slave down", "BondDegraded")], T0)
    e2.step([Alert("critical", "bond", "n1", "bond0", "no slave left", "BondDegraded")], T0 + 1)
    # Alertmanager's labels (severity among them) must stay the same while it fires
    assert next(iter(e2.records.values())).severity == "warning"


def test_silenced_rules_never_fire() -> None:
    e = ev(AlertsSection(silenced=["CephOsdDown"], rules={"GpuHot": RuleConfig(silenced=True)}))
    hot = Alert("warning", "gpu", "n1", "gpu0", "GPU 0 hot: 90 °C", "GpuHot")
    assert e.step([osd(), hot], T0) == [] and e.step([osd(), hot], T0 + 3600) == [] and not e.records


def test_resolved_are_kept_a_while_then_dropped_and_a_return_fires_again() -> None:
    e = ev(AlertsSection(keep_resolved=100))
    e.step([osd()], T0)
    e.step([], T0 + 1)
    e.step([], T0 + 100)
    assert next(iter(e.records.values())).state == "resolved"
    e.step([], T0 + 102)
    assert not e.records
    assert [x.kind for x in e.step([osd()], T0 + 200)] == ["fired"]


def test_timeline_is_capped() -> None:
    e = ev(events_max=10)
    for i in range(20):
        e.step([osd()], T0 + 2 * i)
        e.step([], T0 + 2 * i + 1)
    assert len(e.events) == 10 and e.events[-1].kind == "resolved" and e.events[-1].ts == T0 + 39


def test_a_new_evaluator_carries_on_from_the_written_state() -> None:
    """A lease hand-over: what fires keeps firing, with no second notice; what clears resolves."""
    e = ev()
    e.step([osd()], T0)
    e2 = ev()
    e2.adopt(e.sorted_records(), list(e.events))
    assert e2.step([osd()], T0 + 5) == []
    (r,) = e2.step([], T0 + 6)
    assert r.kind == "resolved" and [x.kind for x in e2.events] == ["fired", "resolved"]


def test_unknown_rules_in_adopted_state_are_ignored() -> None:
    e = ev()
    rec = ev()
    rec.step([osd()], T0)
    bad = rec.sorted_records()[0]
    bad.rule = "NoSuchRule"
    e.adopt([bad], [])
    assert not e.records


def test_every_digest_alert_template_has_its_own_rule() -> None:
    g_lost = b.gpu(0, None, lost=True, error="fell off the bus: hot")
    g_hot = b.gpu(1, 99, temp=95)
    g_ecc, g_thr = b.gpu(2, 10), b.gpu(3, 10)
    g_ecc.ecc_uncorrected, g_thr.throttle_reasons = 4, ["hw_slowdown"]
    snap = b.node("n1", gpus=[g_lost, g_hot, g_ecc, g_thr])
    snap.collectors = {"nfs": schema.CollectorStatus(ok=False, error="boom")}
    snap.bonds = [schema.Bond(name="bond0", degraded=True, problems=["eth1 down"],
                              slaves=[schema.BondSlave(name="eth0", ok=True)])]
    snap.netmounts = [schema.NetMount(mountpoint="/data", fstype="nfs4", state="hung"),
                      schema.NetMount(mountpoint="/scratch", fstype="nfs4", state="slow", latency_ms=900.0),
                      schema.NetMount(mountpoint="/home", fstype="nfs4", state="ok", error="stale handle")]
    assert snap.system is not None and snap.system.filesystems
    snap.system.filesystems[0].used_bytes = snap.system.filesystems[0].total_bytes
    got = {(a.subject, digest_rule(a.source, a.message)) for a in node_alerts(snap)}
    assert got >= {("gpu0", "GpuLost"), ("gpu1", "GpuHot"), ("gpu2", "GpuEccErrors"), ("gpu3", "GpuThrottled"),
                   ("nfs", "CollectorFailing"), ("bond0", "BondDegraded"), ("/data", "MountHung"),
                   ("/scratch", "MountSlow"), ("/home", "MountError"), ("/", "FilesystemFull")}
    assert digest_rule("gpu", "GPU 7 something new") == "GpuProblem"
    assert digest_rule("psu", "PSU 2 failed") == "NodeProblem"  # a newer agent's source
    assert all(rule in RULES for _, rule in got)


def test_every_alert_the_reader_makes_names_a_known_rule() -> None:
    ceph = b.ceph("HEALTH_WARN")
    assert ceph.ceph is not None
    ceph.ceph.checks = [schema.HealthCheck(code="OSD_DOWN", severity="HEALTH_WARN", message="1 osds down")]
    ceph.ceph.osds = [schema.CephOsd(id=3, up=False, host="n1")]
    q = b.queues(50)
    assert q.queues is not None and q.queues.queues
    q.queues.queues[0].growing_unconsumed = True
    q.queues.errors = ["broker x: refused"]
    nodes = [NodeView("n1", "down", age_s=100), NodeView("n2", "bad", error="bad data from node n2: x")]
    got = cluster.alerts(nodes, {"ceph": ceph, "celery": q}, T0)
    assert {a.rule for a in got} == {"NodeSilent", "NodeBadData", "CephOsdDown", "QueueGrowingNoConsumer",
                                     "QueueSourceError"}
    unreachable = schema.ClusterPayload(name="ceph", ok=False, error="Ceph unreachable: x")
    assert [a.rule for a in cluster.alerts([], {"ceph": unreachable}, T0)] == ["CephUnreachable"]


def kube(pods: list[schema.K8sPod], nodes: list[schema.K8sNode], ok: bool = True) -> dict[str, schema.ClusterPayload]:
    return {"kubernetes": schema.ClusterPayload(name="kubernetes", ok=ok,
                                                kubernetes=schema.Kubernetes(nodes=nodes, pods=pods))}


def test_kubernetes_alerts_notready_pending_gpu_pods_past_grace_crashloop() -> None:
    nodes = [schema.K8sNode(name="tower-1.lab", ready=False), schema.K8sNode(name="tower-2", ready=True)]
    pods = [schema.K8sPod(namespace="ml", name="big", gpus=4, phase="Pending", reason="Unschedulable",
                          created_ts=T0 - 600),
            schema.K8sPod(namespace="ml", name="new", gpus=1, phase="Pending", created_ts=T0 - 10),
            schema.K8sPod(namespace="ml", name="cpu", gpus=0, phase="Pending", created_ts=T0 - 9999),
            schema.K8sPod(namespace="web", name="loop", node="tower-2", phase="Running", reason="CrashLoopBackOff",
                          restarts=12)]
    got = cluster.alerts([NodeView("tower-1", "up"), NodeView("tower-2", "up")], kube(pods, nodes), T0)
    by_rule = {a.rule: a for a in got}
    assert set(by_rule) == {"KubeNodeNotReady", "KubeGpuPodPending", "KubePodCrashLooping"}
    assert by_rule["KubeNodeNotReady"].node == "tower-1"  # the agent's host, matched by short name
    assert by_rule["KubeGpuPodPending"].subject == "ml/big" and "Unschedulable" in by_rule["KubeGpuPodPending"].message
    assert by_rule["KubePodCrashLooping"].node == "tower-2" and "12 restarts" in by_rule["KubePodCrashLooping"].message
    # the grace is the rule's threshold: at 5 s the new pod is late too
    later = cluster.alerts([], kube(pods, nodes), T0, pending_grace_s=5)
    assert {a.subject for a in later if a.rule == "KubeGpuPodPending"} == {"ml/big", "ml/new"}
    # an API that does not answer: its last good data is not a node's state now
    assert cluster.alerts([], kube(pods, nodes, ok=False), T0) == []


@pytest.mark.parametrize("memo", [cluster.HostMatchMemo(), None], ids=["memo", "no-memo"])
def test_kubernetes_alerts_follow_the_hosts_and_node_names_of_each_call(memo: cluster.HostMatchMemo | None) -> None:
    """The name match is reused (the caller's ``HostMatchMemo``) only while both the Kubernetes node names and the
    hosts are the same as the last call's: a host that appears, goes, or a node renamed is matched afresh.
    Without a memo (the CLI, the exporter) every call matches anew, with the same answers."""
    down = [schema.K8sNode(name="tower-1.lab", ready=False)]

    def where(hosts: list[str], nodes: list[schema.K8sNode]) -> str | None:
        got = [a for a in cluster.alerts([NodeView(h, "up") for h in hosts], kube([], nodes), T0, host_memo=memo)
               if a.rule == "KubeNodeNotReady"]
        assert len(got) == 1
        return got[0].node

    assert where(["tower-1", "tower-2"], down) == "tower-1"
    kept = memo.last[2] if memo is not None and memo.last is not None else None
    assert where(["tower-1", "tower-2"], down) == "tower-1"  # the same call again: the same answer
    if memo is not None:
        assert memo.last is not None and memo.last[2] is kept  # reused, not matched again
    assert where(["tower-2"], down) == "tower-1.lab"  # its host gone: the node's own name
    assert where(["tower-1.lab", "tower-1"], down) == "tower-1.lab"  # an exact match wins over the short name
    assert where(["tower-1", "tower-9"], [schema.K8sNode(name="tower-9", ready=False)]) == "tower-9"
    # Another caller's memo is its own: its first call matches for itself, whatever this memo last matched.
    other = cluster.HostMatchMemo()
    assert cluster.kube_alerts(kube([], down), ["tower-1"], T0, memo=other)[0].node == "tower-1"


def test_ledger_flags_become_alerts() -> None:
    flags = [Flag(kind="idle-allocated", node="tower-1", since_ts=T0, duration_s=999, message="pod ml/a idle",
                  pod="ml/a"),
             Flag(kind="unowned-busy", node="tower-2", since_ts=T0, duration_s=99, message="GPU 1 busy",
                  gpu_indices=[1])]
    got = cluster.alerts([], {}, T0, flags=flags)
    assert {(a.rule, a.node, a.subject) for a in got} == {("GpuIdleAllocated", "tower-1", "ml/a"),
                                                          ("GpuUnownedBusy", "tower-2", "gpu1")}


def test_threshold_from_config_reaches_the_settings() -> None:
    s = Settings.of(AlertsSection(rules={"KubeGpuPodPending": RuleConfig(threshold=900, for_="2m")}))
    assert s.pending_grace_s() == 900 and s.for_s["KubeGpuPodPending"] == 120
    assert Settings.of().pending_grace_s() == cluster.PENDING_GRACE_S


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('[alerts.rules.NoSuch]\nfor = "1m"\n', "[alerts] rules.NoSuch", "unknown rule"),
    ("[alerts.rules.GpuLost]\nthreshold = 3\n", "[alerts] rules.GpuLost.threshold", "has no threshold"),
    ('[alerts.rules.GpuLost]\nfor = "soon"\n', "[alerts.rules.GpuLost] for", "expected like"),
    ('[alerts.rules.GpuLost]\nseverity = "page"\n', "[alerts.rules.GpuLost] severity", "page"),
    ('[alerts]\nalertmanager = ["am:9093"]\n', "[alerts] alertmanager[0]", "http://"),
    ('[alerts]\nsilenced = ["Nope"]\n', "[alerts] silenced", "unknown rule"),
    ("[alerts]\nresend = 0\n", "[alerts] resend", "must be"),
    ("[alerts]\nbogus = 1\n", "[alerts] bogus", "unknown key"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, env_no_store: None, text: str, key: str,
                                         problem: str) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(str(f), env={})
    msg = str(ei.value)
    assert str(f) in msg and key in msg and problem in msg, msg


def test_agent_config_carries_the_section(tmp_path: Path, env_no_store: None) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('[alerts]\nalertmanager = ["http://127.0.0.1:9093"]\nsilenced = ["GpuHot"]\n'
                 '[alerts.rules.NodeSilent]\nfor = "45s"\n')
    cfg = load_config(str(f), env={})
    assert cfg.alerts is not None and cfg.alerts.alertmanager == ["http://127.0.0.1:9093"]
    assert Settings.of(cfg.alerts).for_s["NodeSilent"] == 45 and "GpuHot" in Settings.of(cfg.alerts).silenced
    assert load_config(None, env={}).alerts is None  # no section: this agent does not evaluate


def test_durations() -> None:
    assert (seconds("90s"), seconds("5m"), seconds("1.5h"), seconds(30), seconds("250ms")) == (90, 300, 5400, 30, 0.25)
    for bad in ("", "5 minutes", "-1s", True, float("nan"), 1e12):
        with pytest.raises(ValueError):
            seconds(bad)  # type: ignore[arg-type]


def test_the_agent_sample_documents_every_alerts_key(tmp_path: Path, env_no_store: None) -> None:
    from tests.systemd.test_config_examples import AGENT, gaps, live

    path, data = live(AGENT, tmp_path)
    cfg = load_config(path, env={})  # the real loader takes the sample's [alerts] as written
    assert cfg.alerts is not None and cfg.alerts.alertmanager and "NodeSilent" in cfg.alerts.rules
    text = AGENT.read_text()
    missing = gaps(AlertsSection, data["alerts"], "alerts", text, skip=("rules",))
    rule = {k: v for r in data["alerts"]["rules"].values() for k, v in r.items()}
    missing += gaps(RuleConfig, {("for_" if k == "for" else k): v for k, v in rule.items()}, "alerts.rules.*", text,
                    defaults=False)
    assert not missing, "\n".join(missing)


def test_a_huge_troubled_cluster_still_fits_one_readable_key() -> None:
    """1,000 nodes down with 1 MB error strings: the state stays decodable, the most important kept."""
    from clustertop import wire
    from clustertop.alerting import store
    from clustertop.wire.alerts import AlertState

    e = ev(events_max=500)
    crit = [Alert("critical", "node", f"n{i:04d}", f"n{i:04d}", "down " + "x" * 1_000_000, "NodeSilent")
            for i in range(1000)]
    warn = [Alert("warning", "gpu", f"n{i:04d}", "gpu0", "GPU 0 hot: 95 °C", "GpuHot") for i in range(3000)]
    e.step(crit + warn, T0)
    e.step(crit + warn, T0 + 3600)
    st = AlertState(host="eval", ts=T0, alerts=e.sorted_records(), events=list(e.events))
    data = store.fit(st)
    back = wire.decode(data, AlertState)
    assert len(data) <= wire.MAX_PAYLOAD_BYTES and back.left_out > 0
    assert back.alerts[0].severity == "critical" and len(back.alerts) + back.left_out == 4000
    assert all(len(r.message) <= 300 for r in back.alerts)
