"""Provides strict TOML loading shared by the agent and the dashboard: errors name file, key, problem."""

from __future__ import annotations

import tomllib
from typing import Any


class ConfigError(Exception):
    """Bad configuration. str() reads: "<file>: [section] key: problem"."""

    def __init__(self, file: str | None, key: str | None, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = file or "<config>"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except PermissionError:
        raise ConfigError(path, None, "permission denied") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from None


def check_keys(table: dict[str, Any], allowed: set[str], file: str | None, section: str) -> None:
    """Unknown keys are errors: a typo must not silently fall back to a default."""
    for key in table:
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            raise ConfigError(file, f"[{section}] {key}", f"unknown key (known: {hint})")


def get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, file: str | None,
        section: str) -> Any:
    """One typed value; a wrong type names the key and what was expected."""
    if key not in table:
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a number where a bool belongs (or the reverse) is a mistake.
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(file, f"[{section}] {key}", f"expected {names}, got {type(value).__name__} {value!r}")
    return value
