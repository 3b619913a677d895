"""The plugins keep no module-level mutable state: no ``global`` statements, no caches, no module-level or
class-level containers that the code mutates. Each loaded model holds its own state (`Domain.with_encoder`);
the plugin manager's process-wide registry is the one exception."""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "trajdiff" / "plugins"
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "add", "pop", "popitem", "remove", "discard",
            "clear"}
CONTAINERS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    containers = set()
    problems = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, CONTAINERS):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            containers |= {t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__"}
        if isinstance(node, ast.ClassDef):
            problems += [f"class {node.name} keeps a shared container: {ast.unparse(item)}" for item in node.body
                         if isinstance(item, (ast.Assign, ast.AnnAssign)) and isinstance(item.value, CONTAINERS)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            problems.append(f"{type(node).__name__.lower()} {', '.join(node.names)}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            problems += [f"{node.name} is cached: {ast.unparse(d)}" for d in node.decorator_list
                         if "cache" in ast.unparse(d)]
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        problems += [f"mutates {ast.unparse(node)}" for t in targets
                     if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in containers]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in containers):
            problems.append(f"mutates {ast.unparse(node)}")
    return problems


def test_plugins_keep_no_module_level_mutable_state() -> None:
    found = {str(path.relative_to(PLUGINS)): _problems(path) for path in sorted(PLUGINS.rglob("*.py"))
             if path.name != "manager.py"}  # the manager holds the process's one registry
    assert {path: problems for path, problems in found.items() if problems} == {}


def test_the_check_finds_module_level_state(tmp_path: Path) -> None:
    module = tmp_path / "stateful.py"
    module.write_text("import functools\n_CACHE = {}\n_loaded = False\n\n"
                      "def load(key):\n    global _loaded\n    _loaded = True\n    _CACHE[key] = 1\n\n"
                      "@functools.lru_cache\ndef f():\n    return 1\n\n"
                      "class Registry:\n    seen = []\n")
    problems = _problems(module)
    assert len(problems) == 4 and any(p.startswith("global") for p in problems)
