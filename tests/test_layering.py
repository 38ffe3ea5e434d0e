"""Imports run one way (STYLE.md): api -> turns -> store, api -> providers, turns -> providers.
The store knows nothing of HTTP or generation; providers know nothing of chatkeep's storage;
problems, metrics and settings are leaves everyone may use. The SDK (client/) and the CLI's
client commands talk to a server over HTTP only: they import no server module, directly or
through another module."""

from __future__ import annotations

import ast
import subprocess
import sys
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
    "client": {"api", "turns", "store", "providers", "web", "cli", "settings", "problems"},
}
SERVER = ("api", "turns", "store", "providers", "web", "settings", "problems", "metrics")
# The CLI's client commands (SPEC 6.2) and what they share; the admin commands use the store.
CLI_CLIENT = ("_connect", "chat", "sessions", "search", "importing", "import_formats")


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


def test_client_commands_import_no_server_module() -> None:
    broken = []
    for name in CLI_CLIENT:
        path = PACKAGE / "cli" / f"{name}.py"
        wrong = chatkeep_imports(path) & set(SERVER)
        tree = ast.parse(path.read_text())
        cli_modules = {
            node.module.split(".")[2]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("chatkeep.cli.")
        }
        wrong |= {f"cli.{m}" for m in cli_modules - set(CLI_CLIENT)}
        if wrong:
            broken.append(f"cli/{name}.py imports {sorted(wrong)}")
    assert not broken, broken


def test_sdk_and_client_commands_load_no_server_module_transitively() -> None:
    """The import graph as Python sees it: ``import chatkeep`` and the client commands."""
    modules = ", ".join(f"chatkeep.cli.{name}" for name in CLI_CLIENT)
    code = (
        f"import sys, chatkeep, {modules}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        f"[['chatkeep', s] for s in {SERVER!r}]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", loaded
