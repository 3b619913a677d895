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


LEAVES = {"trajdiff", "trajdiff.errors", "trajdiff.memory", "trajdiff.plotting"}  # shared by every layer, import
# nothing above


def _layer(module: str) -> str:
    """The layer a trajdiff module belongs to: core, plugins, registry (the plugin manager), api, cli or a leaf."""
    parts = module.split(".")
    if module in LEAVES or module.startswith("trajdiff.errors.") or module.startswith("trajdiff.plotting."):
        return "leaf"
    if parts[:2] == ["trajdiff", "core"]:
        return "core"
    if parts[:3] == ["trajdiff", "plugins", "manager"]:
        return "registry"
    if parts[:2] == ["trajdiff", "plugins"]:
        return "plugins"
    if parts[:2] == ["trajdiff", "api"]:
        return "api"
    if parts[:2] in (["trajdiff", "cli"], ["trajdiff", "demo"]) or parts[1].startswith("cli_"):
        return "cli"
    raise AssertionError(f"module {module} belongs to no layer; add it to the style test's layers")


# Which layers each layer may import: cli -> api -> registry -> plugins -> core; nothing imports upwards,
# and no domain plugin reaches for the process-wide plugin registry.
ALLOWED = {
    "leaf": {"leaf"},
    "core": {"core", "leaf"},
    "plugins": {"plugins", "core", "leaf"},
    "registry": {"registry", "plugins", "core", "leaf"},
    "api": {"api", "registry", "plugins", "core", "leaf"},
    "cli": {"cli", "api", "registry", "plugins", "core", "leaf"},
}


def test_every_layer_edge_points_downwards() -> None:
    offenders = []
    for path in (ROOT / "trajdiff").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        own = _layer(module)
        for imported in _imported_modules(path):
            if not imported.startswith("trajdiff"):
                continue
            target = imported
            while target not in LEAVES and _module_file(target) is None:  # a name imported from a module
                target = target.rsplit(".", 1)[0]
            if _layer(target) not in ALLOWED[own]:
                offenders.append(f"{module} ({own}) imports {target} ({_layer(target)})")
    assert offenders == []


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_modules_stay_small() -> None:
    """One job per module: none over about 400 lines."""
    large = {str(p.relative_to(ROOT)): n for p in (ROOT / "trajdiff").rglob("*.py")
             if (n := len(p.read_text().splitlines())) > 420}
    assert large == {}
