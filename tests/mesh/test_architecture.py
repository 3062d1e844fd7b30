"""The architecture's rules hold: the import contracts pass, and no library module imports a
command module (checked here from the source itself, so a new `*_cli` module is covered even
before anyone lists it in pyproject.toml)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from mesh import cli

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in ("mesh", "tui")
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_command_module(name: str) -> bool:
    """`massive` itself, a top-level `mesh.*_cli` module, or a service's `mesh.<service>.cli`."""
    parts = name.split(".")
    return parts[0] == "mesh" and (
        name == "mesh.cli"
        or (len(parts) == 2 and parts[1].endswith("_cli"))
        or (len(parts) == 3 and parts[2] == "cli")
    )


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every mesh/tui module `path` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from mesh import x`
    return found & known


def test_the_import_contracts_in_pyproject_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = str(lint_imports) if lint_imports.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install -e '.[dev]')"
    result = subprocess.run(
        [command, "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "0 broken" in result.stdout


def test_no_library_module_imports_a_command_module() -> None:
    modules = _modules()
    known = set(modules)
    offending = sorted(
        f"{name} imports {imported}"
        for name, path in modules.items()
        if name != "mesh.cli"
        for imported in _imports(path, name, known)
        if _is_command_module(imported) and imported != name
    )
    assert not offending, "only mesh.cli may import a command module:\n" + "\n".join(offending)


def test_only_command_modules_use_what_commands_share() -> None:
    modules = _modules()
    users = sorted(
        name
        for name, path in modules.items()
        if "mesh.commandline" in _imports(path, name, set(modules))
    )
    assert users and all(_is_command_module(name) for name in users), users


def test_every_command_module_is_registered_and_protected_by_the_contracts() -> None:
    command_modules = {name for name in _modules() if _is_command_module(name)} - {"mesh.cli"}
    registered = {module.__name__ for module in cli.COMMANDS}
    assert command_modules == registered, (
        "a command module must be listed in mesh.cli.COMMANDS, and only command modules are"
    )
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    (protected,) = [
        c["protected_modules"]
        for c in contracts
        if c["name"] == "library code never imports a command module"
    ]
    unprotected = sorted(
        name
        for name in command_modules
        if name not in protected and not (name.count(".") == 2 and "mesh.*.cli" in protected)
    )
    assert not unprotected, f"add these to the contract's protected_modules: {unprotected}"
