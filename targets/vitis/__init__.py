"""Vitis AI target: YOLO detectors (Ultralytics or Darknet) on the Kria KV260's DPU (DPUCZDX8G_ISA1_B4096).

The flow, one module per job:
* :mod:`targets.vitis.trace` records the ops a model executes; :mod:`targets.vitis.dpu` says
  which the DPU runs (``edgeprune preflight``, :mod:`targets.vitis.preflight`);
* :mod:`targets.vitis.graph` cuts the detector at its head convolutions (a Darknet model ends there);
  :mod:`targets.vitis.program` writes that graph as JSON + weights for the quantizer;
* :mod:`targets.vitis.workspace` fills the folder mounted into the Vitis AI image,
  :mod:`targets.vitis.docker` runs ``quantize.py`` and ``compile.sh`` there,
  :mod:`targets.vitis.compile_log` reads the DPU subgraph count;
* :mod:`targets.vitis.bundle` writes the board folder (xmodel, metadata, ``run_kv260.py``),
  :mod:`targets.vitis.board` runs it over SSH (``edgeprune board bench``);
* :mod:`targets.vitis.deploy` ties it together as the export step of the one deploy pipeline
  (:func:`toolchain.pipelines.deploy.deploy`, ``edgeprune deploy vitis``).

This host has no DPU, so the target exports but never opens an artifact for inference.
"""

from __future__ import annotations

from pathlib import Path

from targets.artifacts import read_deploy_record
from targets.base import ExportConfig, Target, TargetOption
from targets.registry import register_target
from targets.runner import Runner
from targets.vitis.deploy import BOARD_ONLY, VitisConfig, build_for_board
from targets.vitis.docker import check_docker
from toolchain.core.errors import EdgepruneError


@register_target
class VitisTarget(Target):
    """Compiled xmodels for the KV260 DPU, built in the Vitis AI Docker image.

    ``export`` runs the whole Docker flow (:func:`targets.vitis.deploy.build_for_board`) and
    ``verify`` returns what it checked on the host, since the xmodel itself runs only on the board.
    """

    name = "vitis"
    summary = "Kria KV260 DPU: quantise (vai_q_pytorch) and compile (vai_c_xir) in the Vitis AI Docker image."
    precisions = ("int8",)
    compute_precisions = ("auto",)
    device_help = "Unused: the DPU is on the board (measure with `edgeprune board bench`)."
    runs_on_host = False  # artifacts run on the board: `edgeprune board bench`
    options = (
        TargetOption("--board", "Target board (KV260: DPUCZDX8G_ISA1_B4096).", choices=("kv260",), default="kv260"),
        TargetOption("--eval-images", "Validation images the quantised model is scored on in the container (0 = skip).",
                     type=int, default=100, min=-1),
        TargetOption("--fast-finetune", "vai_q_pytorch fast fine-tuning (AdaQuant) while calibrating.", is_flag=True,
                     default=False),
        TargetOption("--image", "Vitis AI PyTorch Docker image (or one built from docker/vitis-ai/Dockerfile).",
                     default="xilinx/vitis-ai-pytorch-cpu:latest"),
        TargetOption("--dry-run", "Write the workspace and print the docker commands; run nothing.", is_flag=True,
                     default=False),
        TargetOption("--allow-cpu-subgraphs", "Accept a compiled model with more than one DPU subgraph.",
                     is_flag=True, default=False),
    )

    def __init__(self):
        self._build = None

    def check_config(self, cfg: ExportConfig) -> None:
        vitis = VitisConfig.from_options(cfg.options)  # INT8 without --data is refused by the pipeline itself
        if cfg.dynamic:
            raise EdgepruneError("the DPU runs a fixed input size: deploy vitis takes no --dynamic-shape "
                                 "(compile at the splice size, e.g. --imgsz 832)")
        if not vitis.dry_run:
            check_docker(vitis.image)  # before minutes of work

    def devices(self) -> list[str]:
        return []  # the DPU is on the board, never on the host running edgeprune

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        self._build = build_for_board(source, out_dir, cfg.data, cfg.calib_images, VitisConfig.from_options(cfg.options),
                                      final_dir=cfg.final_dir)
        return self._build.workspace if self._build.dry_run else self._build.board_dir

    def verify(self, source, artifact: Path, cfg: ExportConfig, device: str, evaluate: bool = True) -> dict:
        build = self._build
        if build is None:
            raise EdgepruneError("vitis verify runs after its export, in the same deploy")
        if build.dry_run:
            return {"dry_run": True, "workspace": str(Path(build.out) / "workspace"), "docker_commands": build.commands,
                    "preflight": build.preflight, "notes": build.notes}
        facts = dict(build.facts)
        if not evaluate:
            facts.pop("accuracy", None)
        return {**facts, "notes": build.notes}

    def owns(self, artifact: Path) -> bool:
        artifact = Path(artifact)
        if artifact.suffix == ".xmodel" or (artifact.is_dir() and (artifact / "run_kv260.py").is_file()):
            return True
        record = read_deploy_record(artifact) if artifact.is_dir() else None
        return bool(record and record.get("target") == self.name)

    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None,
             batch: int = 1) -> Runner:
        raise EdgepruneError(BOARD_ONLY)
