"""The code base stays lint-clean (ruff, configured in pyproject.toml) and layered as DESIGN.md says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    proc = subprocess.run([ruff, "check", "trajdiff", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_core_never_imports_higher_layers() -> None:
    upward = re.compile(r"^\s*(from|import)\s+trajdiff\.(plugins|api|cli|demo)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "trajdiff" / "core").rglob("*.py")
                 if upward.search(p.read_text())]
    assert offenders == []
