"""The dictionary builder (clustertop/sim/wire_dicts.py): what goes in, in which order, and what never does."""

from __future__ import annotations

from pathlib import Path

from clustertop import wire
from clustertop.sim import wire_dicts
from clustertop.wire import compress, schema


def test_a_shipped_id_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    shipped = tmp_path / "dicts"
    shipped.mkdir()
    (shipped / compress.DICTS[3]).write_bytes(b"x")
    assert wire_dicts.main(["digest", "3", "--out", str(shipped)]) == 2
    assert wire_dicts.main(["digest", "0", "--out", str(shipped)]) == 2  # 0 means "no dictionary"
    assert wire_dicts.main(["digest", "256", "--out", str(shipped)]) == 2
    assert sorted(p.name for p in shipped.iterdir()) == [compress.DICTS[3]]


def test_rounds_of_every_shape_end_in_an_8_gpu_tower_within_32_kib() -> None:
    samples = wire_dicts.simulated(24, 9, 8) + wire_dicts.simulated(22, 6, 2)
    here = wire_dicts.simulated(21, 3, 0)[:1]
    for kind in ("node", "brief", "digest"):
        d = wire_dicts.build(kind, samples, here)
        assert 0 < len(d) <= 32 * 1024
        enc = wire_dicts.ENCODERS[kind]
        first_tower8 = enc(*next(x for x in samples if x[0].gpus and len(x[0].gpus) == 8))
        assert d.endswith(first_tower8), kind
        if len(d) < 32 * 1024:  # all of it fits: every shape is in
            assert enc(*here[0]) in d


def test_this_machines_command_lines_and_users_never_reach_a_dictionary() -> None:
    snap = schema.NodeSnapshot(host="dev-box", system=schema.System(procs=[
        schema.Proc(pid=1, name="python", user="alice", cmdline="python train.py --token=s3cr3t")]))
    clean = wire_dicts.scrubbed(snap)
    data = wire.encode(clean)
    assert b"s3cr3t" not in data and b"alice" not in data
    assert clean.system is not None and clean.system.procs is not None and clean.system.procs[0].name == "python"
