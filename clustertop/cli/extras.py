"""Provides the answer for a command whose extra is not installed: which one to install, not a traceback.

`pip install clustertop` brings msgspec only; each role's libraries come with an extra (pyproject.toml):
a node installs clustertop[agent], a desk clustertop[dashboard], a wall clustertop[serve]. Two checks,
both at the subcommand boundary in main.py:

- before a command runs, the modules it cannot start without are looked up (``find_spec``: found, not
  imported, so `clustertop agent` still loads nothing it does not use) — `clustertop k8s ...` on a node
  says "needs the k8s extra" before it complains about a missing kubeconfig;
- while it runs, a ModuleNotFoundError for a library listed here (a lazy import on a path the first
  check does not cover, e.g. `snapshot --demo` needing fakeredis) becomes the same answer. Any other
  ModuleNotFoundError is a bug and keeps its traceback.

tests/cli/test_extras.py checks this table against pyproject.toml's extras and against every
third-party import in the package, and runs the commands in a fresh venv with only the agent extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

#: Import name -> (its distribution, the extras that bring it; the first is the one to suggest
#: when the command's own extra does not bring it).
PROVIDED_BY: dict[str, tuple[str, tuple[str, ...]]] = {
    "textual": ("textual", ("dashboard",)),
    "rich": ("rich", ("dashboard",)),
    "plotext": ("plotext", ("dashboard",)),
    "redis": ("redis", ("dashboard", "celery", "exporter")),
    "hiredis": ("hiredis", ("dashboard", "exporter")),
    "fakeredis": ("fakeredis", ("dashboard",)),
    "cryptography": ("cryptography", ("dashboard", "agent")),
    "pynvml": ("nvidia-ml-py", ("agent", "dashboard")),
    "httpx": ("httpx", ("agent", "dask")),
    "textual_serve": ("textual-serve", ("serve",)),
    "aiohttp": ("aiohttp", ("serve",)),
    "psutil": ("psutil", ("serve",)),
    "kubernetes": ("kubernetes", ("k8s",)),
    "yaml": ("PyYAML", ("k8s",)),
    "urllib3": ("urllib3", ("k8s",)),
    "celery": ("celery", ("celery",)),
    "packaging": ("packaging", ("celery",)),
    "distributed": ("distributed", ("dask",)),
}

#: Extras that include others (pyproject.toml's "clustertop[dashboard]" inside [serve]): what [serve]
#: brings, it brings with the dashboard's libraries too.
INCLUDES: dict[str, tuple[str, ...]] = {"serve": ("dashboard",)}

#: Command -> (its extra, the modules it cannot start without). Commands not listed need the base only.
#: Optional paths stay out of the second column: the dask fallback client (`distributed`) or
#: NVML on a node without GPUs are reported by the code that uses them.
NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dashboard": ("dashboard", ("textual", "rich", "plotext", "redis", "fakeredis")),
    "demo": ("dashboard", ("textual", "rich", "plotext", "redis", "fakeredis")),
    "snapshot": ("dashboard", ("redis",)),
    "who": ("dashboard", ("redis",)),
    "simulate": ("dashboard", ("redis",)),
    "serve": ("serve", ("textual_serve", "aiohttp", "psutil", "textual", "redis", "fakeredis")),
    "agent": ("agent", ("httpx", "pynvml", "cryptography")),
    "keygen": ("dashboard", ("cryptography",)),
    "kill": ("dashboard", ("cryptography", "redis")),
    "launch": ("dashboard", ("cryptography", "redis")),
    "tasks": ("dashboard", ("cryptography", "redis")),
    "enrol": ("dashboard", ("cryptography", "redis")),
    "audit": ("dashboard", ("cryptography", "redis")),
    "k8s": ("k8s", ("kubernetes", "yaml", "urllib3")),
    "celery": ("celery", ("celery", "redis")),
    "dask": ("dask", ("httpx",)),
    "exporter": ("exporter", ("redis",)),
    "alerts": ("dashboard", ("cryptography", "redis")),
}

#: The exit code of "install an extra first": a setup problem, like a bad config (2), not a failure (1).
EXIT_MISSING = 2


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed package counts as missing
        return False


def hint(command: str, missing: Iterable[str]) -> str:
    """What to install so ``command`` finds ``missing`` (import names), as one line for stderr."""
    missing = list(missing)
    own = NEEDS.get(command, (None, ()))[0]
    extras: list[str] = []
    for module in missing:
        bringers = PROVIDED_BY[module][1]
        extra = bringers[0]
        if own is not None and any(b in bringers for b in (own, *INCLUDES.get(own, ()))):
            extra = own
        if extra not in extras:
            extras.append(extra)
    dists = ", ".join(PROVIDED_BY[m][0] for m in missing)
    spec = ",".join(extras)
    what = f"the {extras[0]} extra" if len(extras) == 1 else f"the {' and '.join(extras)} extras"
    return (f"clustertop {command} needs {what}: pip install 'clustertop[{spec}]' "
            f"({dists} {'is' if len(missing) == 1 else 'are'} not installed)")


def check(command: str) -> str | None:
    """The hint if ``command`` cannot start here, else None."""
    missing = [m for m in NEEDS.get(command, (None, ()))[1] if not installed(m)]
    return hint(command, missing) if missing else None


def known_missing(e: ModuleNotFoundError) -> str | None:
    """The import name if ``e`` is about a library an extra brings and that is really absent (else None:
    a bug, or a broken install of a present library; either keeps its traceback)."""
    top = (e.name or "").split(".")[0]
    return top if top in PROVIDED_BY and not installed(top) else None
