"""``deploy vitis``: trace → workspace → quantize and compile in Docker → check → board bundle + deploy.json.

Why every check is here: each failure of this flow otherwise surfaces minutes later, inside
a container, as a wall of log. Docker and the image are checked before any work; the
rebuilt graph is compared with the model before anything is mounted; the compiler's
"DPU subgraph number" decides success (1, unless ``--allow-cpu-subgraphs``). The host has
no DPU, so deploy.json records no speed: FPS comes from ``edgeprune board bench``, measured
on the board.
"""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from targets.artifacts import folder_bytes, write_deploy_record
from targets.vitis.docker import DEFAULT_IMAGE, DockerError, check_docker, deploy_steps, run_step
from targets.vitis.dpu import BOARDS
from toolchain.errors import EdgepruneError, InputFileError, ModelMismatchError
from toolchain.fileio import atomic_output

BOARD_ONLY = ("a Vitis AI xmodel runs only on the board's DPU; measure it with `edgeprune board bench --host "
              "USER@IP --bundle DIR/board`")


@dataclass(frozen=True)
class VitisConfig:
    """What ``deploy vitis`` builds.

    Args:
        board: target board (``kv260``), which fixes the DPU and its arch.json.
        data: YOLO data.yaml; calibration images from ``train``, evaluation images from ``val``.
        imgsz: square input size compiled into the xmodel (832 for 4 x 416 splicing); None = the size
            the checkpoint was trained at.
        calib_images: calibration images (the vai_q_pytorch README suggests 100-1000).
        eval_images: validation images the quantised model is scored on (0 = none).
        fast_finetune: vai_q_pytorch fast fine-tuning (AdaQuant) during calibration.
        image: Vitis AI PyTorch Docker image.
        dry_run: write the workspace and print the docker commands, run nothing.
        allow_cpu_subgraphs: accept a compiled model with more than one DPU subgraph.
    """

    board: str = "kv260"
    data: str | None = None
    imgsz: int | None = None
    calib_images: int = 200
    eval_images: int = 100
    fast_finetune: bool = False
    image: str = DEFAULT_IMAGE
    dry_run: bool = False
    allow_cpu_subgraphs: bool = False

    def validate(self) -> None:
        if self.board not in BOARDS:
            raise EdgepruneError(f"unknown --board {self.board!r}; known boards: {', '.join(BOARDS)}")
        if not self.data:
            raise EdgepruneError("deploy vitis needs calibration images: pass --data DATA (a YOLO data.yaml)")
        if self.calib_images < 1 or self.eval_images < 0:
            raise EdgepruneError(f"--calib-images must be at least 1 and --eval-images at least 0, got "
                                 f"{self.calib_images} and {self.eval_images}")


@dataclass
class VitisDeployResult:
    """What was written and run; ``record`` is deploy.json's content (empty for a dry run)."""

    out: str
    workspace: str
    commands: list[str]
    dry_run: bool
    preflight: dict
    board_dir: str | None = None
    deploy_json: str | None = None
    record: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _xmodel_name(model_path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(model_path).stem)
    return name if name[:1].isalpha() else f"m_{name}"


def _write_commands(path: Path, steps) -> None:
    lines = ["#!/bin/bash", "# The docker commands `edgeprune deploy vitis` runs, in order.", "set -euo pipefail"]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines + [s.shell for s in steps]) + "\n")
    path.chmod(0o755)


def deploy_vitis(model_path: str | Path, out_dir: str | Path, cfg: VitisConfig) -> VitisDeployResult:
    """Build the KV260 board bundle for ``model_path`` under ``out_dir``.

    Raises:
        DockerError: docker missing, daemon down, image absent, a container step failed.
        CompileLogError: no subgraph count in the compile log, or more than one DPU subgraph.
        EdgepruneError: bad configuration, unsupported model or op.
    """
    from targets.export_source import prepare
    from targets.vitis.accuracy import quantized_accuracy
    from targets.vitis.bundle import board_metadata, write_bundle
    from targets.vitis.compile_log import parse_compile_log, require_single_subgraph
    from targets.vitis.graph import dpu_graph
    from targets.vitis.program import build_program
    from targets.vitis.trace import trace_ops
    from targets.vitis.workspace import write_workspace
    from toolchain.loading import read_data_yaml
    from targets.vitis.preflight import analyse

    cfg.validate()
    model_path, out_dir = str(model_path), Path(out_dir)
    if out_dir.resolve() == Path(model_path).resolve():
        raise InputFileError(f"--out {out_dir} is the input model; choose a folder")
    if not cfg.dry_run:
        check_docker(cfg.image)  # before minutes of work
    arch = BOARDS[cfg.board]
    source = prepare(model_path, cfg.imgsz)
    nc = read_data_yaml(cfg.data)["nc"]
    if source.task != "module" and nc != len(source.names):
        raise ModelMismatchError(f"{model_path} predicts nc={len(source.names)} classes but {cfg.data} has nc={nc}")
    module = dpu_graph(source)
    graph = trace_ops(module, source.example)
    rows, expected = analyse(graph, arch, module.head_scopes)
    fallbacks = [r for r in rows if r.device != "DPU"]
    preflight = {"expected_dpu_subgraphs": expected, "cpu_fallbacks": len(fallbacks),
                 "cpu_fallback_ops": sorted({r.op for r in fallbacks})}
    notes = []
    if expected > 1:
        notes.append(f"preflight expects {expected} DPU subgraphs ({len(fallbacks)} CPU ops, e.g. "
                     f"{', '.join(preflight['cpu_fallback_ops'][:3])}); `edgeprune dpu-rewrite` fixes activations")
    program, weights = build_program(graph)
    name = _xmodel_name(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    ws = write_workspace(out_dir / "workspace", name=name, board=cfg.board, arch_json=arch.arch_json,
                         program=program, weights=weights, module=module, example=source.example, data=cfg.data,
                         calib_images=cfg.calib_images, eval_images=cfg.eval_images, names=source.names,
                         head=module.spec.to_json())
    steps = deploy_steps(cfg.image, ws.root, cfg.fast_finetune)
    _write_commands(out_dir / "docker_commands.sh", steps)
    result = VitisDeployResult(str(out_dir), str(ws.root), [s.shell for s in steps], cfg.dry_run, preflight,
                               notes=notes)
    if cfg.dry_run:
        return result
    for step in steps:
        run_step(step, out_dir / "logs" / f"{step.name}.log")
        if step.name == "quantize" and not ws.quantized_xmodel.is_file():
            raise DockerError(f"the quantize step finished but wrote no {ws.quantized_xmodel}; see "
                              f"{out_dir / 'logs' / 'quantize.log'}")
    summary = parse_compile_log(ws.compile_log)
    require_single_subgraph(summary, cfg.allow_cpu_subgraphs)
    if not ws.compiled_xmodel.is_file():
        raise DockerError(f"the compiler reported success but wrote no {ws.compiled_xmodel}")
    if summary.dpu_subgraphs > 1:
        notes.append(f"{summary.dpu_subgraphs} DPU subgraphs accepted (--allow-cpu-subgraphs): run_kv260.py runs "
                     "single-subgraph models only")
    meta = board_metadata(source, module.spec, arch.name, cfg.board, f"{name}.xmodel")
    board_dir = write_bundle(out_dir / "board", ws.compiled_xmodel, meta)
    record = {
        "target": "vitis",
        "artifact": "board",
        "created": datetime.now(timezone.utc).isoformat(),
        "source": {"path": model_path, "sha256": source.sha256, "bytes": Path(model_path).stat().st_size,
                   "task": source.task},
        "precision": "int8",
        "imgsz": source.imgsz,
        "board": cfg.board,
        "dpu": arch.name,
        "image": cfg.image,
        "docker_commands": result.commands,
        "calibration": {"data": str(cfg.data), "split": "train", "images": ws.calib_images,
                        "fast_finetune": cfg.fast_finetune},
        "compile": {"dpu_subgraphs": summary.dpu_subgraphs, "total_subgraphs": summary.total_subgraphs,
                    "target_architecture": summary.target_architecture, "log": summary.log},
        "preflight": preflight,
        "graph": {"ops": len(program["nodes"]), "outputs": program["output_shapes"],
                  "rebuild_max_abs_diff": ws.interpreter_max_abs_diff, **module.spec.to_json()},
        "artifact_bytes": folder_bytes(board_dir),
        "runner": None,
        "speed": BOARD_ONLY,
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "notes": notes,
    }
    accuracy = quantized_accuracy(ws, module, module.spec, cfg.data, source.imgsz)
    if accuracy:
        record["accuracy"] = accuracy
    result.board_dir = str(board_dir)
    result.deploy_json = str(write_deploy_record(out_dir, record))
    result.record = record
    return result
