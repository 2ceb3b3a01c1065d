"""The bottom layer imports nothing above it, so anything (the board script included) can build on it.

``make test`` runs ``lint-imports`` with the full contracts (pyproject.toml); this test is the same
rule for the bottom layer, in the test suite, with function-level imports counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("toolchain", "targets", "cfg_codegen", "edgeprune")
CORE = sorted((REPO / "toolchain" / "core").glob("*.py"))
# pasted verbatim into the KV260 board script, which has only numpy and OpenCV: nothing of ours at all
EMBEDDED = ("prepost.py", "latency.py")


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return {n for n in names if n.split(".")[0] in PROJECT}


@pytest.mark.parametrize("module", CORE, ids=lambda p: p.name)
def test_bottom_layer_modules_import_only_the_bottom_layer(module):
    above = {name for name in _project_imports(module) if not name.startswith("toolchain.core")}
    assert not above, f"{module.relative_to(REPO)} imports {sorted(above)}"
    if module.name in EMBEDDED:
        assert not _project_imports(module)


def test_the_check_sees_project_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def later():\n    from toolchain.pipelines import sweep\n")
    assert _project_imports(probe) == {"toolchain.pipelines"}
    assert "toolchain.core.prepost" in _project_imports(REPO / "targets" / "e2e.py")
    assert len(CORE) >= 10
