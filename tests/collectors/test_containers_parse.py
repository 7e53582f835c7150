"""The containers parser on captured Docker Engine 20.10 answers (tests/fixtures/docker/: list, inspect,
one-shot stats, version, captured from the real engine of tests/support/dockerd.py), and on hostile ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clustertop.collectors import containers_parse as p
from clustertop.collectors.containers import ContainersConfig, socket_path
from clustertop.config import ConfigError, convert
from clustertop.wire import schema
from clustertop.wire.text import inert
from tests.support.hostile import RAW_UNSAFE

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "docker"


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def test_list_inspect_and_stats_of_a_real_engine() -> None:
    listed = p.parse_list(load("containers_json.json"))
    assert [(c.name, c.state, c.image) for c in listed] == [
        ("exited1", "exited", "localhost/test:1"), ("burn", "running", "localhost/test:1"),
        ("d1", "running", "localhost/test:1")]
    assert all(p.is_container_id(c.id) for c in listed)
    assert listed[2].created_ts == 1796614127 and listed[2].status and listed[2].status.startswith("Up ")
    d1 = listed[2]
    p.apply_inspect(d1, load("inspect_d1.json"))
    assert (d1.pid, d1.restarts, d1.exit_code) == (25436, 0, None)
    assert d1.started_ts == pytest.approx(1796614127.212290, abs=1e-5)
    cur = p.apply_stats(d1, load("stats_d1_oneshot.json"), None)
    # memory_stats.usage less total_inactive_file (0 here), the limit the container was given (64m)
    assert (d1.mem_bytes, d1.mem_limit_bytes, d1.pids) == (319488, 64 * 2**20, 1)
    assert d1.cpu_pct is None and cur is not None  # one sample: no rate yet


def test_cpu_percent_between_two_samples_is_docker_stats_formula() -> None:
    # stats?stream=false (no one-shot) carries the engine's own previous sample: the same formula on the
    # pair must give what `docker stats` printed from it (CPU 99.9 %: a busy loop on 2 CPUs).
    s = load("stats_burn.json")
    prev = p.cpu_sample({"cpu_stats": s["precpu_stats"]})
    cur = p.cpu_sample(s)
    assert prev is not None and cur is not None
    pct = p.cpu_pct(prev, cur)
    assert pct == pytest.approx((5831615124 - 4837025781) / (20858420000000 - 20856430000000) * 2 * 100)
    assert 95 < pct < 105
    # A restarted container's counter goes back: unknown, not a negative or a zero.
    assert p.cpu_pct(cur, prev) is None
    assert p.cpu_pct(None, cur) is None


def test_a_stopped_containers_stats_say_nothing() -> None:
    c = schema.Container(id="c" * 64)
    assert p.apply_stats(c, load("stats_exited.json"), None) is None
    assert (c.cpu_pct, c.mem_limit_bytes, c.pids) == (None, None, None)


def test_engine_names() -> None:
    assert p.engine_name(load("version.json")) == "Docker Engine 20.10.24+dfsg1"
    assert p.engine_name({"Version": "4.3.1", "Components": [{"Name": "Podman Engine"}]}) == "Podman Engine 4.3.1"
    assert p.engine_name("garbage") == "Docker Engine"


def test_times() -> None:
    assert p.parse_time("0001-01-01T00:00:00Z") is None
    assert p.parse_time("2026-12-07T03:28:47Z") == pytest.approx(1796614127.0)
    assert p.parse_time("2026-12-07T03:28:47.212290473+00:00") == pytest.approx(1796614127.21229)
    for bad in ("", "yesterday", 5, None, "9" * 1000, "2026-13-40T00:00:00Z"):
        assert p.parse_time(bad) is None


def test_hostile_answers_become_unknown_never_a_crash() -> None:
    raw = load("containers_json.json")
    evil = copy.deepcopy(raw[2])
    evil["Names"] = ["/\u202egpu-01\x1b[2J" + "x" * 2**20]
    evil["Image"] = "[bold]img\x07"
    evil["Created"] = 2**70
    evil["Labels"] = {p.TEMPLATE_LABEL: "\u202e" * 1000, p.POD_UID_LABEL: 5}
    junk = [None, 5, "x", {"Id": "short"}, {"Id": "Z" * 64}, {"Id": 7}]
    listed = p.parse_list([evil, *junk])
    assert len(listed) == 1
    c = listed[0]
    assert c.name is not None and len(c.name) == p.TEXT_MAX  # bounded before the wire
    assert c.created_ts is None and c.pod_uid is None
    assert not RAW_UNSAFE.search(inert(c.name)) and not RAW_UNSAFE.search(inert(c.image))
    p.apply_inspect(c, {"State": {"Pid": float("nan"), "StartedAt": 5, "ExitCode": 2**64}, "RestartCount": -1})
    assert (c.pid, c.started_ts) == (None, None)
    p.apply_stats(c, {"memory_stats": {"usage": 2**65, "limit": "lots"}, "cpu_stats": {"cpu_usage": []}}, None)
    assert (c.mem_bytes, c.mem_limit_bytes, c.cpu_pct) == (None, None, None)
    assert p.parse_list({"message": "not a list"}) == []
    # what is kept fits the wire
    msgspec.msgpack.encode(schema.Containers(containers=listed))


def test_config_errors_name_the_key() -> None:
    assert socket_path("unix:///run/podman/podman.sock") == "/run/podman/podman.sock"
    cases = [({"socket": "tcp://1.2.3.4:2375"}, r"\[collectors.containers\] socket: expected unix:///"),
             ({"control": "some"}, r"\[collectors.containers\] control: expected"),
             ({"templates": {"t": {"cmd": ["x"]}}}, r"\[collectors.containers.templates.t\] image"),
             ({"sockett": "x"}, r"\[collectors.containers\] sockett: unknown key")]
    for options, words in cases:
        with pytest.raises(ConfigError, match=words):
            convert(options, ContainersConfig, "agent.toml", "collectors.containers")
