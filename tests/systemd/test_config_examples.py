"""The sample config files are the documentation of every key: they load with the real loaders, every
field of every config Struct has a line in them, and the defaults they show are the Structs' own.
A new key without a line in the sample, or a default changed in one place only, fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from clustertop.agents.commands import SecurityConfig
from clustertop.agents.config import AgentSection, load_config
from clustertop.agents.summaries import SummariesSection
from clustertop.agents.tasks import LimitsConfig, ParamConfig, TemplateConfig
from clustertop.collectors import base
from clustertop.dashboard import settings as dashboard_settings
from tests.conftest import ROOT

AGENT = ROOT / "systemd" / "agent.toml.example"
DASHBOARD = ROOT / "systemd" / "dashboard.toml.example"
#: "# key = value" and "# [section]" lines; "## ..." lines are prose and stay comments.
LIVE = re.compile(r"(?m)^(\s*)#\s+(\[[^\]]+\]|[a-z0-9_]+ = .*)$")
#: Keys that cannot all be set at once (one excludes another, or the key exists only to be refused
#: with a clear message): the samples name them in prose instead of a "# key = value" line.
PROSE = {("collectors.ceph", "token_file"), ("collectors.ceph", "password"), ("collectors.ceph", "token"),
         ("collectors.celery", "management_password"), ("ceph", "password")}


def live(path: Path, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The sample with every setting uncommented, written to a file: (its path, its TOML)."""
    text = LIVE.sub(r"\1\2", path.read_text())
    out = tmp_path / path.name.removesuffix(".example")
    out.write_text(text)
    return str(out), tomllib.loads(text)


def gaps(kind: type[msgspec.Struct], table: dict[str, Any], section: str, text: str,
         skip: tuple[str, ...] = (), defaults: bool = True) -> list[str]:
    """Fields of ``kind`` the sample leaves out, and shown values that are not the field's default
    (where the field has one: None, "", [] and {} mean "no default", so the sample shows an example)."""
    out = []
    for f in msgspec.structs.fields(kind):
        if f.name in skip:
            continue
        if f.name not in table:
            if not ((section, f.name) in PROSE and re.search(rf"\b{f.name}\b", text)):
                out.append(f"[{section}] {f.name}: not in the sample")
            continue
        default = f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
        if defaults and default not in (None, "", [], {}, msgspec.NODEFAULT) and table[f.name] != default:
            out.append(f"[{section}] {f.name}: the sample shows {table[f.name]!r}, the default is {default!r}")
    return out


def test_agent_sample_loads_and_documents_every_key(tmp_path: Path) -> None:
    assert load_config(str(AGENT), env={}, overrides={"node": "n"}).collectors == {}  # as shipped: all defaults
    path, data = live(AGENT, tmp_path)
    cfg = load_config(path, env={})  # the real loader: every section through its Struct, templates parsed
    assert set(cfg.collectors) == set(base.REGISTRY) and cfg.templates and cfg.security.operator_keys
    text = AGENT.read_text()
    common = set(base.Section.__struct_fields__)
    missing = gaps(AgentSection, data["agent"], "agent", text)
    shown_common: set[str] = set()
    for name in base.REGISTRY:
        table = data["collectors"][name]
        shown_common |= common & set(table)
        missing += gaps(base.config_type(name), table, f"collectors.{name}", text, skip=tuple(common))
    # enabled, interval and timeout are every collector's: documented once, not in every section
    missing += [f"[collectors.*] {k}: not in the sample" for k in sorted(common - shown_common)]
    # A template has no defaults worth showing: its lines are an example, checked for presence only.
    tpl = data["templates"]["train"]
    missing += gaps(TemplateConfig, tpl, "templates.train", text, defaults=False)
    missing += gaps(LimitsConfig, tpl["limits"], "templates.train.limits", text, defaults=False)
    shown = {k: v for p in tpl["params"].values() if isinstance(p, dict) for k, v in p.items()}
    missing += gaps(ParamConfig, shown, "templates.train.params.*", text, defaults=False)
    missing += gaps(SecurityConfig, data["security"], "security", text)
    missing += gaps(SummariesSection, data["summaries"], "summaries", text)
    assert cfg.summaries is not None and cfg.summaries.max_buckets == 64
    assert not missing, "\n".join(missing)


def test_dashboard_sample_loads_and_documents_every_key(tmp_path: Path) -> None:
    assert dashboard_settings.load_config(str(DASHBOARD), {}) == dashboard_settings.DashboardConfig(
        config_file=str(DASHBOARD))  # as shipped: all defaults (and the file it came from)
    path, data = live(DASHBOARD, tmp_path)
    cfg = dashboard_settings.load_config(path, {})
    assert cfg.redis == "redis://clustertop@redis.lab:6379/0" and cfg.theme == "dark"
    missing = gaps(dashboard_settings.DashboardConfig, data["dashboard"], "dashboard", DASHBOARD.read_text(),
                   skip=("history", "ceph", "config_file"))  # the file's own [history] and [ceph], below
    assert cfg.history.prometheus == "http://prometheus.lab:9090"
    missing += gaps(dashboard_settings.HistoryConfig, data["history"], "history", DASHBOARD.read_text())
    assert cfg.ceph is not None and cfg.ceph.username == "alice"
    missing += gaps(dashboard_settings.CephAccess, data["ceph"], "ceph", DASHBOARD.read_text())
    assert not missing, "\n".join(missing)


def test_the_check_finds_an_undocumented_key() -> None:
    """The gaps above are not vacuous: a field without a line, and a wrong default, are reported."""

    class Probe(msgspec.Struct):
        shown: float = 1.0
        hidden: bool = False

    assert gaps(Probe, {"shown": 2.0}, "probe", "") == [
        "[probe] shown: the sample shows 2.0, the default is 1.0", "[probe] hidden: not in the sample"]
