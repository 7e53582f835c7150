"""Provides strict TOML loading and typed sections shared by the agent and the dashboard.

Every section is a msgspec Struct (``forbid_unknown_fields=True``) and goes through ``convert``, so
every mistake, whoever owns the section, reads the same way: "<file>: [section] key: problem".
``environment`` is the one CLUSTERTOP_* layer; ``overlay`` checks what flags set the same way.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import msgspec

T = TypeVar("T")


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


# ---------------------------------------------------------------------------------------------
# Typed sections: a msgspec Struct per section, one converter, one environment layer
# ---------------------------------------------------------------------------------------------

#: Seconds (and other amounts) that must be positive: the constraint travels with the type, so every
#: section says "must be > 0, got -1" the same way.
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]

ENV = "environment"  # the "file" named in errors that come from environment variables
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class Invalid(ValueError):
    """Raised in a section's ``__post_init__`` for what types cannot say (a URL's scheme, two keys
    that contradict each other); ``key`` is the field at fault, so the error still names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


def check_http_urls(key: str, urls: list[str], example: str) -> None:
    """``urls`` (the value of ``key``) is a non-empty list of http(s) URLs with a host; ``example`` completes
    "required: ..." when it is empty. One check for every section that names web endpoints."""
    from urllib.parse import urlsplit

    if not urls:
        raise Invalid(key, f"required: {example}")
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(key, f"not an http(s) URL: {u!r}")


def check_tls(ca_file: str | None, verify: bool) -> None:
    """A CA to verify with and ``verify = false`` say opposite things: refused rather than one silently won."""
    if ca_file is not None and not verify:
        raise Invalid("verify", "verify = false contradicts ca_file: remove one")


def parse_bool(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case), as people write them in environment files."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected true/false (1/0, yes/no, on/off), got {text!r}")


def convert(data: Any, kind: type[T], file: str | None, section: str = "") -> T:
    """``data`` (a TOML table) as ``kind``; every mistake a ConfigError naming ``file`` and ``[section] key``.

    ``section`` is where ``data`` sits in the file ("" for the whole file, "collectors.ceph" for one
    table of it); nested Structs extend it, so ``$.templates[...].limits.cpu_quota`` reads
    ``[templates.train.limits] cpu_quota``.
    """
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as e:
        raise _error(e, data, kind, file, section) from None


def overlay(values: Mapping[str, Any], kind: type[Any], where: str | None, name: Callable[[str], str],
            strict: bool = True) -> dict[str, Any]:
    """The fields one layer sets (flags, environment), each checked alone against ``kind``'s types
    and constraints, so an error names that layer's own spelling (``--interval``, ``CLUSTERTOP_INTERVAL``).
    ``kind`` must have a default for every field."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            one = msgspec.convert({key: value}, kind, strict=strict)
        except msgspec.ValidationError as e:
            raise ConfigError(where, name(key), _error(e, {key: value}, kind, where, "").problem) from None
        out[key] = getattr(one, key)
    return out


def environment(env: Mapping[str, str], kind: type[Any], aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The one CLUSTERTOP_* layer, for the agent's and the dashboard's sections alike.

    Every scalar field ``key`` of ``kind`` is read from ``CLUSTERTOP_<KEY>`` (``aliases`` adds older
    names: variable -> field; the CLUSTERTOP_<KEY> spelling wins when both are set). Text becomes the
    field's type; an empty variable counts as unset, as systemd's EnvironmentFile= writes them.
    """
    kinds = {f.encode_name: f.type for f in msgspec.structs.fields(kind)}
    names = dict(aliases or {})
    names.update({f"CLUSTERTOP_{key.upper()}": key for key, t in kinds.items() if _scalar(t)})
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for var, key in names.items():
        text = env.get(var)
        if not text:
            continue
        value: Any = text
        if _bare(kinds[key]) is bool:
            try:
                value = parse_bool(text)
            except ValueError as e:
                raise ConfigError(ENV, var, str(e)) from None
        values[key], source[key] = value, var
    # strict=False: "0.5" is a float here, as a flag's text is.
    return overlay(values, kind, ENV, source.__getitem__, strict=False)


def _scalar(t: Any) -> bool:
    return _bare(t) in (str, int, float, bool)


def _bare(t: Any, value: Any = None) -> Any:
    """``t`` without Annotated and Optional; of a union, the member ``value`` is shaped for."""
    while True:
        origin = typing.get_origin(t)
        if origin is Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(t) if a is not type(None)]
            shaped = [a for a in members if isinstance(value, dict) and _is_map(a)
                      or isinstance(value, list) and typing.get_origin(a) is list]
            t = (shaped or members)[0]
        else:
            return t


def _is_struct(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, msgspec.Struct)


def _is_map(t: Any) -> bool:
    t = _bare(t)
    return _is_struct(t) or typing.get_origin(t) is dict


def _is_table(t: Any) -> bool:
    """A TOML table of its own ([section]): a Struct, or a map of tables. ``labels = {...}`` is a value."""
    t = _bare(t, {})
    if _is_struct(t):
        return True
    if typing.get_origin(t) is dict:
        inner = typing.get_args(t)[1]
        return inner is Any or _is_map(inner)
    return False


_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_EXPECTED = re.compile(r"^Expected `(.+?)`, got `.+`$")
_BOUND = re.compile(r"^Expected `(.+?)` (>=|>|<=|<) (\S+)$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.+)`$")
_MISSING = re.compile(r"^Object missing required field `(.+)`$")
#: msgspec's type names in words a TOML writer knows (an int is fine where a float is expected).
_WORDS = {"float": "int or float", "array": "list", "object": "table"}


def _error(e: msgspec.ValidationError, data: Any, kind: Any, file: str | None, section: str) -> ConfigError:
    """msgspec's "problem - at `$.path`" as ConfigError(file, "[section] key", problem)."""
    m = _AT.match(str(e))
    message, path = (m.group(1), m.group(2) or "") if m else (str(e), "")
    sections = [section] if section else []
    key = ""
    t, value = kind, data
    for name, index in _SEGMENT.findall(path):
        t = _bare(t, value)
        if index and index != "...":  # a list item
            t = (typing.get_args(t) or (Any,))[0]
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
            key += f"[{index}]"
            continue
        if index:  # a map's key, which msgspec does not name: the first entry that fails is it
            t = typing.get_args(t)[1] if typing.get_origin(t) is dict else Any
            name = _failing(value, t) if isinstance(value, dict) else "?"
        else:
            t = _field_type(t, name)
        value = value.get(name) if isinstance(value, dict) else None
        if not key and _is_table(t):
            sections.append(name)
        else:
            key = f"{key}.{name}" if key else name
    t = _bare(t, value)
    problem = message[:1].lower() + message[1:]
    unknown, missing = _UNKNOWN.match(message), _MISSING.match(message)
    cause = e.__cause__
    if isinstance(cause, Invalid):
        key, problem = (f"{key}.{cause.key}" if key else cause.key), str(cause)
    elif unknown:
        # A field named "[section]" carries another table of the file (the dashboard's [history]): not a key here.
        known = ", ".join(sorted(f.encode_name for f in msgspec.structs.fields(t)
                                 if not f.encode_name.startswith("["))) if _is_struct(t) else ""
        if not sections and not key:  # at the top of a file every key is a section
            if isinstance(data, dict) and not isinstance(data.get(unknown.group(1)), dict):
                return ConfigError(file, unknown.group(1), f"unknown key: settings go in a table ([{known}])")
            return ConfigError(file, f"[{unknown.group(1)}]", f"unknown section (known: {known})")
        key = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
        problem = f"unknown key (known: {known})"
    elif missing:
        key = f"{key}.{missing.group(1)}" if key else missing.group(1)
        problem = "required"
    elif m := _EXPECTED.match(message):
        words = " or ".join(_WORDS.get(w, w) for w in m.group(1).split(" | ") if w != "null")
        problem = f"expected {words}, got {_kind(value)} {_show(value)}"
    elif m := _BOUND.match(message):
        shown = float(value) if m.group(1) == "float" and isinstance(value, int) else value
        problem = f"must be {m.group(2)} {float(m.group(3)):g}, got {_show(shown)}"
    where = f"[{'.'.join(sections)}]" if sections else ""
    return ConfigError(file, f"{where} {key}".strip() if key else (where or None), problem)


def _field_type(t: Any, name: str) -> Any:
    if _is_struct(t):
        for f in msgspec.structs.fields(t):
            if f.encode_name == name:
                return f.type
    return Any


def _failing(table: dict[str, Any], t: Any) -> str:
    for k, v in table.items():
        try:
            msgspec.convert(v, t)
        except msgspec.ValidationError:
            return str(k)
    return "?"


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "table", list: "list"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
