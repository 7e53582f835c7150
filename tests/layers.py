"""The import graph of clustertop as its files say it (ast), for the layer contracts in test_layers.py.

Every import statement counts, at module top, inside a function (a lazy import is still a dependency)
or under ``if TYPE_CHECKING`` (kept apart: it costs nothing at run time but still couples the rooms).
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[str, Path]:
    """clustertop.X -> its folder, from pyproject's package-dir (the one source of truth)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in conf["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module of the installed tree: dotted name -> file."""
    dirs = package_dirs()
    out: dict[str, Path] = {}
    for pkg, folder in sorted(dirs.items(), key=lambda kv: -len(kv[0])):
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            # a folder mapped on its own (clustertop.collectors) is not part of clustertop's own tree
            if any((folder / Path(*parts[:i])).resolve() in {d.resolve() for d in dirs.values()} and i > 0
                   for i in range(1, len(parts))):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            out.setdefault(name, path)
    return out


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a dotted name as written (``from a import b`` -> "a.b" when a.b is a module, else "a")
    line: int
    lazy: bool  # inside a function
    typing_only: bool  # under ``if TYPE_CHECKING``


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:
                    visit_one(sub, lazy, True)
                for sub in child.orelse:
                    visit_one(sub, lazy, typing_only)
                continue
            visit_one(child, lazy, typing_only)

    def visit_one(child: ast.AST, lazy: bool, typing_only: bool) -> None:
        if isinstance(child, ast.Import):
            for a in child.names:
                out.append(Import(name, a.name, child.lineno, lazy, typing_only))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = name if is_pkg else name.rpartition(".")[0]
                for _ in range(child.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{child.module}" if child.module else base
            else:
                mod = child.module or ""
            for a in child.names:
                full = f"{mod}.{a.name}"
                out.append(Import(name, full if full in known else mod, child.lineno, lazy, typing_only))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            visit(child, True, typing_only)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            visit(ast.Module(body=child.body, type_ignores=[]), lazy, True)
            visit(ast.Module(body=child.orelse, type_ignores=[]), lazy, typing_only)
        else:
            visit(child, lazy, typing_only)

    visit(tree, False, False)
    return out


def graph() -> tuple[dict[str, Path], list[Import]]:
    mods = modules()
    known = set(mods)
    edges: list[Import] = []
    for name, path in mods.items():
        edges.extend(imports_of(name, path, known))
    return mods, edges


def room(module: str) -> str | None:
    """clustertop.read.reader -> "read"; clustertop itself (the version) -> ""; outside -> None."""
    if module == "clustertop":
        return ""
    if not module.startswith("clustertop."):
        return None
    return module.split(".")[1]
