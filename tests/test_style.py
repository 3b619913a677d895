"""The code base stays lint-clean (ruff, configured in pyproject.toml) and layered as DESIGN.md says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).is_file():
        pytest.skip("needs ruff (trajdiff[dev]); the minimal-install run in .ci/run has none")
    proc = subprocess.run([ruff, "check", "trajdiff", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_core_never_imports_higher_layers() -> None:
    upward = re.compile(r"^\s*(from|import)\s+trajdiff\.(plugins|api|cli|demo)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "trajdiff" / "core").rglob("*.py")
                 if upward.search(p.read_text())]
    assert offenders == []


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports (real import statements, docstring examples aside)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_plugins_never_import_the_api_or_cli_layers() -> None:
    higher = {"trajdiff.api", "trajdiff.cli", "trajdiff.demo"}
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "trajdiff" / "plugins").rglob("*.py")
                 if _imported_modules(p) & higher]
    assert offenders == []


def test_the_cli_knows_no_domain() -> None:
    """Domain commands (rl's ``plan``, motion's ``sample``) come from plugins through ``trajdiff_commands``; the
    CLI imports only the plugin manager and contract, and probes no domain for optional methods."""
    cli = ROOT / "trajdiff" / "cli.py"
    plugin_imports = {name for name in _imported_modules(cli) if name.startswith("trajdiff.plugins.")}
    assert plugin_imports <= {"trajdiff.plugins.manager", "trajdiff.plugins.manager.get_plugins",
                              "trajdiff.plugins.manager.Plugins", "trajdiff.plugins.spec",
                              "trajdiff.plugins.spec.CommandContext"}
    assert "getattr(" not in cli.read_text()
