"""The drlrec package's import graph, read from the source (every import, at module level or inside a
function): what the structure tests check (test_fit_path.py, test_structure.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import drlrec

PACKAGE = Path(drlrec.__file__).resolve().parent


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every drlrec module a file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("drlrec"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drlrec"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from drlrec.rl import dqn`
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imported_modules(path) if m in files and m != name} for name, path in files.items()}


def all_imports(path: Path) -> set[str]:
    """Every module a file imports (any package), at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out
