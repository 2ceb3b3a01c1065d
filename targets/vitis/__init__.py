"""Vitis AI target: YOLO detectors on the Kria KV260's DPU (DPUCZDX8G_ISA1_B4096).

The flow, one module per job:

* :mod:`targets.vitis.trace` records the ops a model executes; :mod:`targets.vitis.dpu` says
  which the DPU runs (``edgeprune preflight``, :mod:`targets.vitis.preflight`);
* :mod:`targets.vitis.graph` cuts the detector at its head convolutions;
  :mod:`targets.vitis.program` writes that graph as JSON + weights for the quantizer;
* :mod:`targets.vitis.workspace` fills the folder mounted into the Vitis AI image,
  :mod:`targets.vitis.docker` runs ``quantize.py`` and ``compile.sh`` there,
  :mod:`targets.vitis.compile_log` reads the DPU subgraph count;
* :mod:`targets.vitis.bundle` writes the board folder (xmodel, metadata, ``run_kv260.py``),
  :mod:`targets.vitis.board` runs it over SSH (``edgeprune board bench``);
* :mod:`targets.vitis.deploy` ties it together (``edgeprune deploy vitis``).

This host has no DPU, so the target exports but never opens an artifact for inference.
"""

from __future__ import annotations

from pathlib import Path

from targets.artifacts import read_deploy_record
from targets.base import ExportConfig, Runner, Target
from targets.registry import register_target
from toolchain.errors import EdgepruneError


@register_target
class VitisTarget(Target):
    """Compiled xmodels for the KV260 DPU, built in the Vitis AI Docker image."""

    name = "vitis"
    summary = "Kria KV260 DPU: quantise (vai_q_pytorch) and compile (vai_c_xir) in the Vitis AI Docker image."
    precisions = ("int8",)
    compute_precisions = ("auto",)
    runs_on_host = False  # artifacts run on the board: `edgeprune board bench`

    def devices(self) -> list[str]:
        return []  # the DPU is on the board, never on the host running edgeprune

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        from targets.vitis.deploy import VitisConfig, deploy_vitis

        result = deploy_vitis(source.path, out_dir, VitisConfig(data=cfg.data, imgsz=source.imgsz,
                                                                calib_images=cfg.calib_images))
        return str(result.board_dir)

    def owns(self, artifact: Path) -> bool:
        artifact = Path(artifact)
        if artifact.suffix == ".xmodel" or (artifact.is_dir() and (artifact / "run_kv260.py").is_file()):
            return True
        record = read_deploy_record(artifact) if artifact.is_dir() else None
        return bool(record and record.get("target") == self.name)

    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None) -> Runner:
        from targets.vitis.deploy import BOARD_ONLY

        raise EdgepruneError(BOARD_ONLY)
