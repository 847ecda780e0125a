"""The import graph points down: nothing imports search.cli; model/ imports nothing from search/ or storage/;
storage/ imports nothing from search/. Read from the source with ast, so a lazy import inside a function counts."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports() -> dict[str, set[str]]:
    """Module name -> every module it imports (absolute names, at any depth of the file)."""
    graph = {}
    for package in ("model", "search", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.add(node.module)
                    found |= {f"{node.module}.{a.name}" for a in node.names}
            graph[name] = found
    return graph


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_nothing_imports_search_cli():
    offenders = {
        m: sorted(i for i in found if under(i, "search.cli"))
        for m, found in imports().items()
        if not under(m, "search.cli")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_model_imports_nothing_from_search_or_storage():
    offenders = {
        m: sorted(i for i in found if under(i, "search") or under(i, "storage"))
        for m, found in imports().items()
        if under(m, "model")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_storage_imports_nothing_from_search_or_model():
    offenders = {
        m: sorted(i for i in found if under(i, "search") or under(i, "model"))
        for m, found in imports().items()
        if under(m, "storage")
    }
    assert {m: i for m, i in offenders.items() if i} == {}
