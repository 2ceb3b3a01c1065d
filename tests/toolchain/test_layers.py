"""The bottom layer imports nothing above it, so anything (the board script included) can build on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("toolchain", "targets", "cfg_codegen")
# module -> project modules it may import
BOTTOM = {
    "toolchain/errors.py": set(),
    "toolchain/fileio.py": {"toolchain.errors"},
    "toolchain/prepost.py": set(),
    "toolchain/latency.py": set(),
    "toolchain/registry.py": {"toolchain.errors"},
}


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {n for n in names if n.split(".")[0] in PROJECT}


@pytest.mark.parametrize("module", sorted(BOTTOM))
def test_bottom_layer_modules_import_nothing_above_them(module):
    assert _project_imports(REPO / module) <= BOTTOM[module]


def test_the_check_sees_project_imports():
    assert "toolchain.prepost" in _project_imports(REPO / "targets" / "e2e.py")
