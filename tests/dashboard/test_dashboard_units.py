"""Units of the dashboard: the one formatter (N/A never 0) and the theme loader (errors listed)."""

from __future__ import annotations

from pathlib import Path

from clustertop.dashboard import fmt
from clustertop.themes import SEVERITY_VARS, load_themes


def test_unknown_is_na_never_zero() -> None:
    for f in (fmt.bytes_, fmt.rate, fmt.pct, fmt.num, fmt.watts, fmt.temp, fmt.age, fmt.duration, fmt.clock):
        assert f(None) == fmt.NA
    assert fmt.pct(0) == "0 %" and fmt.bytes_(0) == "0 B"  # a real zero stays a zero
    assert fmt.cell(fmt.NA).style == "dim"


def test_units() -> None:
    assert fmt.bytes_(1536) == "1.5 KiB"
    assert fmt.bytes_(11 * 1024**3) == "11.0 GiB"
    assert fmt.rate(10 * 1024**2) == "10.0 MiB/s"
    assert fmt.watts(1_250_000) == "1.2 kW" and fmt.watts(250_000) == "250 W"
    assert [fmt.age(s) for s in (3, 300, 7200, 3 * 86400)] == ["3s", "5m", "2h", "3d"]
    assert fmt.duration(86400 * 3 + 3600) == "3d 1h"


def test_node_text_shows_control_characters_literally() -> None:
    assert fmt.node_text("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert fmt.node_text("[bold]x[/]") == "[bold]x[/]"  # markup is left as data, for Text/Content
    assert fmt.node_text("abcdef", 4) == "abc…"


def test_bars_and_sparklines() -> None:
    assert fmt.bar(None, 4) == ("", "····")
    filled, empty = fmt.bar(0.5, 10)
    assert filled == "█████" and empty == " " * 5
    assert fmt.bar(1.0, 4, ascii=True) == ("####", "")
    assert fmt.sparkline([0, 50, 100, None], 5, top=100) == " ▁▅█ "


def test_builtin_themes_define_every_severity_variable() -> None:
    themes, errors = load_themes(None)
    assert errors == []
    assert {"dark", "light"} <= set(themes)
    for t in themes.values():
        assert set(SEVERITY_VARS) <= set(t.variables)


def test_broken_user_themes_are_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text('name = "mine"\nprimary = "#336699"\ndark = false\n')
    (tmp_path / "bad_toml.toml").write_text("name = [unclosed\n")
    (tmp_path / "bad_colour.toml").write_text('name = "x"\nprimary = "not-a-colour"\n')
    (tmp_path / "typo.toml").write_text('name = "y"\nprimary = "#123456"\nprimery = "#000"\n')
    themes, errors = load_themes(str(tmp_path))
    assert "mine" in themes and "dark" in themes
    # A user theme without [variables] still gets the whole severity scale (from its own colours).
    assert set(SEVERITY_VARS) <= set(themes["mine"].variables)
    assert len(errors) == 3
    joined = "\n".join(errors)
    assert "bad_toml.toml: not valid TOML" in joined
    assert "bad_colour.toml: 'primary': not a colour" in joined
    assert "typo.toml: unknown key 'primery'" in joined
    _, missing = load_themes(str(tmp_path / "nope"))
    assert missing and "not found" in missing[0]


def test_pack_keeps_every_part_whole() -> None:
    from textual.content import Content

    from clustertop.dashboard.widgets.pack import pack

    parts = [Content(t) for t in ("queues 3 (34 queued)", "workers 15/15 online", "pods 15 (4 pending)",
                                  "GPUs capacity 10 allocated 4 busy 6", "tasks 0 running")]
    wide = pack(parts, 200)
    assert [c.plain for c in wide] == ["  ".join(p.plain for p in parts)]
    narrow = [c.plain for c in pack(parts, 78)]
    assert narrow == ["queues 3 (34 queued)  workers 15/15 online  pods 15 (4 pending)",
                      "GPUs capacity 10 allocated 4 busy 6  tasks 0 running"]
    assert all(len(line) <= 78 for line in narrow)
    # A part wider than the line gets a line of its own (the Static crops it), never an empty line.
    assert [c.plain for c in pack([Content("x" * 10), Content("y" * 30)], 20)] == ["x" * 10, "y" * 30]
