"""The package's shape: imports go one way through the layers (import-linter's contracts in pyproject.toml), and an
import inside a function is there only to defer a heavy import, saying so on its line."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HANG_S

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "src" / "digitlab").rglob("*.py"))


def function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import statement inside a function of `path`."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append((inner.lineno, lines[inner.lineno - 1]))
    return sorted(set(found))


def test_imports_inside_functions_only_defer_heavy_imports_and_say_so():
    unexplained = [f"{path.relative_to(ROOT)}:{line}: {text.strip()}" for path in SOURCES
                   for line, text in function_imports(path) if "# deferred:" not in text]
    assert not unexplained, "imports inside functions without a `# deferred: why` comment:\n" + "\n".join(unexplained)


def test_the_check_sees_an_unexplained_import(tmp_path):
    """The check above is not vacuous: it finds an import inside a function, and accepts one that says why."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import json\n\n\ndef g():\n    import csv  # deferred: only g needs it\n")
    assert [text.strip() for _, text in function_imports(module)] == ["import json", "import csv  # deferred: only g needs it"]


def test_layers_contract_holds():
    """`lint-imports` (import-linter) keeps the layers and finds no cycle between sibling modules."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: `pip install -e .[test]` installs import-linter.")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
