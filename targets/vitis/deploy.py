"""The Vitis AI build: trace → workspace → quantize and compile in Docker → check → board bundle.

Why every check is here: each failure of this flow otherwise surfaces minutes later, inside
a container, as a wall of log. Docker and the image are checked before any work (by the
target's ``check_config``); the rebuilt graph is compared with the model before anything is
mounted; the compiler's "DPU subgraph number" decides success (1, unless
``--allow-cpu-subgraphs``). The host has no DPU, so deploy.json records no speed: FPS comes
from ``edgeprune board bench``, measured on the board.

The build is one step of the one deploy pipeline (:func:`toolchain.pipelines.deploy.deploy`): it receives
a prepared model source (an Ultralytics detector or a Darknet cfg + .weights) and returns the
board folder plus the facts deploy.json records for it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from targets.vitis.accuracy import quantized_accuracy
from targets.vitis.bundle import board_metadata, write_bundle
from targets.vitis.compile_log import parse_compile_log, require_single_subgraph
from targets.vitis.docker import DEFAULT_IMAGE, DockerError, deploy_steps, keep_log, run_step
from targets.vitis.dpu import BOARDS
from targets.vitis.graph import dpu_graph
from targets.vitis.preflight import analyse
from targets.vitis.program import build_program
from targets.vitis.trace import trace_ops
from targets.vitis.workspace import write_workspace
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output

BOARD_ONLY = ("a Vitis AI xmodel runs only on the board's DPU; measure it with `edgeprune board bench --host "
              "USER@IP --bundle DIR/board`")


@dataclass(frozen=True)
class VitisConfig:
    """The Vitis target's own deploy options (``ExportConfig.options``), validated.

    Args:
        board: target board (``kv260``), which fixes the DPU and its arch.json.
        eval_images: validation images the quantised model is scored on (0 = none).
        fast_finetune: vai_q_pytorch fast fine-tuning (AdaQuant) during calibration.
        image: Vitis AI PyTorch Docker image.
        dry_run: write the workspace and print the docker commands, run nothing.
        allow_cpu_subgraphs: accept a compiled model with more than one DPU subgraph.
    """

    board: str = "kv260"
    eval_images: int = 100
    fast_finetune: bool = False
    image: str = DEFAULT_IMAGE
    dry_run: bool = False
    allow_cpu_subgraphs: bool = False

    @classmethod
    def from_options(cls, options: dict) -> "VitisConfig":
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__ and v is not None}
        cfg = cls(**known)
        if cfg.board not in BOARDS:
            raise EdgepruneError(f"unknown --board {cfg.board!r}; known boards: {', '.join(BOARDS)}")
        if cfg.eval_images < 0:
            raise EdgepruneError(f"--eval-images must be at least 0, got {cfg.eval_images}")
        return cfg


@dataclass
class VitisBuild:
    """What was written and run: the workspace, the docker commands, and deploy.json's Vitis facts."""

    out: str
    workspace: str
    commands: list[str]
    dry_run: bool
    preflight: dict
    board_dir: str | None = None
    facts: dict = field(default_factory=dict)
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


def build_for_board(source, out_dir: str | Path, data: str, calib_images: int, cfg: VitisConfig,
                    final_dir: str | Path | None = None) -> VitisBuild:
    """Build the KV260 board bundle for a prepared ``source`` under ``out_dir``.

    ``out_dir`` may be a staging folder that becomes ``final_dir`` when the deploy completes: the
    containers run on the staged workspace, while docker_commands.sh and the record name the final
    one, so the user can rerun them.

    Raises:
        DockerError: a container step failed or wrote nothing.
        CompileLogError: no subgraph count in the compile log, or more than one DPU subgraph.
        EdgepruneError: unsupported model or op.
    """

    out_dir = Path(out_dir)
    arch = BOARDS[cfg.board]
    module = dpu_graph(source)
    graph = trace_ops(module, source.example)
    rows, expected = analyse(graph, arch, module.head_scopes)
    fallbacks = [r for r in rows if r.device != "DPU"]
    preflight = {"expected_dpu_subgraphs": expected, "cpu_fallbacks": len(fallbacks),
                 "cpu_fallback_ops": sorted({r.op for r in fallbacks})}
    notes = list(getattr(module, "adaptations", []))
    if expected > 1:
        notes.append(f"preflight expects {expected} DPU subgraphs ({len(fallbacks)} CPU ops, e.g. "
                     f"{', '.join(preflight['cpu_fallback_ops'][:3])}); `edgeprune dpu-rewrite` fixes activations")
    program, weights = build_program(graph)
    name = _xmodel_name(source.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    ws = write_workspace(out_dir / "workspace", name=name, board=cfg.board, arch_json=arch.arch_json,
                         program=program, weights=weights, module=module, example=source.example, data=data,
                         calib_images=calib_images, eval_images=cfg.eval_images, names=source.names,
                         head=module.spec.to_json(), resize=source.resize)
    final = Path(final_dir) if final_dir else out_dir
    steps = deploy_steps(cfg.image, ws.root, cfg.fast_finetune)
    shown = deploy_steps(cfg.image, final / ws.root.relative_to(out_dir), cfg.fast_finetune)
    _write_commands(out_dir / "docker_commands.sh", shown)
    build = VitisBuild(str(final), str(ws.root), [s.shell for s in shown], cfg.dry_run, preflight, notes=notes)
    if cfg.dry_run:
        return build
    for step in steps:
        run_step(step, out_dir / "logs" / f"{step.name}.log")
        if step.name == "quantize" and not ws.quantized_xmodel.is_file():
            raise DockerError(f"the quantize step finished but wrote no {ws.quantized_xmodel}; see "
                              f"{out_dir / 'logs' / 'quantize.log'}")
    summary = parse_compile_log(ws.compile_log)
    if summary.dpu_subgraphs > 1 and not cfg.allow_cpu_subgraphs:  # keep what the compiler said for the user
        from dataclasses import replace as _replace

        summary = _replace(summary, log=str(keep_log(ws.compile_log, "compile")))
    require_single_subgraph(summary, cfg.allow_cpu_subgraphs)
    if not ws.compiled_xmodel.is_file():
        raise DockerError(f"the compiler reported success but wrote no {ws.compiled_xmodel}")
    if summary.dpu_subgraphs > 1:
        notes.append(f"{summary.dpu_subgraphs} DPU subgraphs accepted (--allow-cpu-subgraphs): run_kv260.py runs "
                     "single-subgraph models only")
    meta = board_metadata(source, module.spec, arch.name, cfg.board, f"{name}.xmodel")
    board_dir = write_bundle(out_dir / "board", ws.compiled_xmodel, meta)
    build.board_dir = str(board_dir)
    build.facts = {
        "board": cfg.board,
        "dpu": arch.name,
        "image": cfg.image,
        "docker_commands": build.commands,
        "calibration": {"data": str(data), "split": "train", "images": ws.calib_images, "resize": source.resize,
                        "fast_finetune": cfg.fast_finetune},
        "compile": {"dpu_subgraphs": summary.dpu_subgraphs, "total_subgraphs": summary.total_subgraphs,
                    "target_architecture": summary.target_architecture,
                    "log": str(final / Path(summary.log).relative_to(out_dir)) if summary.log else None},
        "preflight": preflight,
        "graph": {"ops": len(program["nodes"]), "outputs": program["output_shapes"], **module.spec.to_json()},
        "runner": None,
        "fidelity": {"max_abs_diff": ws.interpreter_max_abs_diff,
                     "what": "the DPU graph rebuilt by the container's dpu_graph.py vs the same graph in torch "
                             "(float; the source cut at its head convolutions, with the DPU adaptations in the "
                             "notes); the int8 xmodel runs only on the board"},
        "speed": BOARD_ONLY,
    }
    accuracy = quantized_accuracy(ws, module, module.spec, data, source.input_hw, source.resize)
    if accuracy:
        build.facts["accuracy"] = accuracy
    return build
