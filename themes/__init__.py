"""Provides the theme loader: built-in theme files (TOML) plus a user's, errors listed, not raised.

A theme file holds Textual ``Theme`` fields at the top level and a ``[variables]`` table. Every
theme ends up with the same severity variables (``SEVERITY_VARS``) because a custom variable used
in CSS must exist in every theme the user can switch to.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # textual is heavy: imported only when themes are actually loaded
    from textual.theme import Theme

BUILTIN_DIR = Path(__file__).resolve().parent
DEFAULT_THEME = "dark"

_COLOUR_FIELDS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground",
                  "background", "surface", "panel", "boost")
_ALLOWED = {"name", "dark", "luminosity_spread", "text_alpha", "variables", *_COLOUR_FIELDS}

#: variable -> the Theme field it defaults to when a file leaves it out
SEVERITY_VARS = {
    "ct-ok": "success",
    "ct-info": "primary",
    "ct-warn": "warning",
    "ct-crit": "error",
    "ct-stale": "secondary",
    "ct-bar-empty": "panel",
}


def load_theme_file(path: Path) -> Theme:
    """One theme file -> Theme. Raises ValueError naming the file and the problem."""
    from textual.color import Color, ColorParseError
    from textual.theme import Theme

    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_ALLOWED))})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: 'name' must be a non-empty string")
    if not isinstance(data.get("primary"), str):
        raise ValueError(f"{path}: 'primary' colour is required")
    colours: dict[str, str] = {}
    for key in _COLOUR_FIELDS:
        if key in data:
            value = data[key]
            if not isinstance(value, str):
                raise ValueError(f"{path}: {key!r} must be a colour string, got {value!r}")
            try:
                Color.parse(value)
            except ColorParseError:
                raise ValueError(f"{path}: {key!r}: not a colour: {value!r}") from None
            colours[key] = value
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError(f"{path}: [variables] must map names to strings")
    variables = dict(variables)
    for var, field in SEVERITY_VARS.items():
        if var not in variables:
            fallback = colours.get(field) or colours["primary"]
            variables[var] = fallback
    for var in SEVERITY_VARS:
        try:
            Color.parse(variables[var])
        except ColorParseError:
            raise ValueError(f"{path}: [variables] {var}: not a colour: {variables[var]!r}") from None
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError(f"{path}: 'dark' must be true or false")
    extra: dict[str, Any] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            if not isinstance(data[key], int | float) or isinstance(data[key], bool):
                raise ValueError(f"{path}: {key!r} must be a number")
            extra[key] = float(data[key])
    return Theme(name=name, dark=dark, variables=variables, **colours, **extra)


def load_themes(extra_dir: str | None) -> tuple[dict[str, Theme], list[str]]:
    """Built-in themes plus ``extra_dir/*.toml``. Returns (themes by name, error messages).

    A broken user file is reported and skipped; a user theme with a built-in's name replaces it.
    """
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    dirs = [BUILTIN_DIR]
    if extra_dir:
        p = Path(extra_dir).expanduser()
        if p.is_dir():
            dirs.append(p)
        else:
            errors.append(f"{p}: themes directory not found")
    for d in dirs:
        for path in sorted(d.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ValueError as e:
                errors.append(str(e))
                continue
            themes[theme.name] = theme
    return themes, errors
