"""Imports run one way (STYLE.md): api -> turns -> store, api -> providers, turns -> providers.
The store knows nothing of HTTP or generation; providers know nothing of chatkeep's storage;
problems, metrics and settings are leaves everyone may use."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "chatkeep"
FORBIDDEN = {
    "store": {"api", "turns", "providers", "web", "cli"},
    "providers": {"api", "turns", "store", "web", "cli"},
    "turns": {"api", "web", "cli"},
    "web": {"api", "turns", "store", "providers", "cli"},
    "problems": {"api", "turns", "store", "providers", "web", "cli"},
    "metrics": {"api", "turns", "store", "providers", "web", "cli"},
    "settings": {"api", "turns", "store", "providers", "web", "cli"},
}


def chatkeep_imports(path: Path) -> set[str]:
    """The first component after ``chatkeep.`` of every module this file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "chatkeep" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_run_one_way() -> None:
    broken = []
    for layer, forbidden in FORBIDDEN.items():
        files = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else []
        files += sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else []
        assert files, f"no module for layer {layer}"
        for path in files:
            wrong = chatkeep_imports(path) & forbidden
            if wrong:
                broken.append(f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}")
    assert not broken, broken
