"""Read what ``vai_c_xir`` says about the compiled model.

The compiler prints, e.g.::

    [UNILOG][INFO] Target architecture: DPUCZDX8G_ISA1_B4096
    [UNILOG][INFO] Total device subgraph number 3, DPU subgraph number 1

"DPU subgraph number" is the number of separate DPU programs; every extra one means a CPU
op between DPU regions and a round trip through DDR and the ARM cores (a YOLO split this way
has been reported at 7 FPS on a KV260).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from toolchain.core.errors import EdgepruneError

_DPU = re.compile(r"DPU subgraph number\s+(\d+)")
_TOTAL = re.compile(r"Total device subgraph number\s+(\d+)")
_ARCH = re.compile(r"Target architecture:\s*(\S+)")


class CompileLogError(EdgepruneError):
    """The compile log is missing its subgraph count, or the count is not acceptable."""


@dataclass(frozen=True)
class CompileSummary:
    dpu_subgraphs: int
    total_subgraphs: int | None
    target_architecture: str | None
    log: str


def parse_compile_log(path: Path) -> CompileSummary:
    """The subgraph counts in ``path``; the last match wins (the log may hold several compiles)."""
    path = Path(path)
    if not path.is_file():
        raise CompileLogError(f"the compiler wrote no log at {path}; the compile step did not run vai_c_xir")
    text = path.read_text(errors="replace")
    dpu = _DPU.findall(text)
    if not dpu:
        raise CompileLogError(f"{path} has no 'DPU subgraph number' line; the compile did not finish")
    total, arch = _TOTAL.findall(text), _ARCH.findall(text)
    return CompileSummary(int(dpu[-1]), int(total[-1]) if total else None, arch[-1] if arch else None, str(path))


def require_single_subgraph(summary: CompileSummary, allow_cpu_subgraphs: bool) -> None:
    """Raise unless the model compiled to one DPU subgraph (or the user accepted more)."""
    if summary.dpu_subgraphs == 1 or allow_cpu_subgraphs:
        return
    raise CompileLogError(
        f"the compiled model has {summary.dpu_subgraphs} DPU subgraphs, expected 1 ({summary.log}): CPU ops split "
        "it, so run `edgeprune preflight` to see which, fix them (e.g. `edgeprune dpu-rewrite`), or pass "
        "--allow-cpu-subgraphs")
