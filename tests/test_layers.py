"""The package's layers point one way, as the import-linter contract in pyproject.toml states."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contract_is_kept():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_is_over_600_lines():
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "src").rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}


def test_no_import_cycle():
    grimp = pytest.importorskip("grimp")  # import-linter's graph builder
    graph = grimp.build_graph("digitnet")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = []
    done: set[str] = set()

    def visit(module: str, path: list[str], on_path: set[str]) -> None:
        for target in sorted(edges.get(module, ())):
            if target in on_path:
                cycles.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target, [*path, target], on_path | {target})
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module, [module], {module})
    assert cycles == []
