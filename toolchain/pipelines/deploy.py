"""``deploy``: the one pipeline from any model source to any target, and the proof that the artifact works.

prepare the source (:mod:`toolchain.models.sources`: Ultralytics checkpoint, torch module, Darknet
cfg + .weights) → the target's export (with its quantization, if asked) → verify by running the
artifact (raw-output fidelity against the torch source; mAP of artifact and source through
the same pre/post-processing with ``--data``) → one ``deploy.json`` schema for every source
and target, written last, so a folder with deploy.json is a finished one.

Why the proof is part of deploy: each step (new runtime, FP16, INT8) costs something, and
users only trust a number measured on the artifact they will ship. Every deploy writes
``deploy.json`` with the source hash, the precision, the calibration set, the sizes, the
raw-output fidelity against PyTorch and (with ``--data``) the artifact's own mAP beside the
PyTorch model's mAP through the same pipeline.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from targets.artifacts import DEPLOY_JSON, folder_bytes, write_deploy_record
from targets.base import ExportConfig, ExportResult
from targets.registry import get_target
from toolchain.core.errors import EdgepruneError, InputFileError, ModelMismatchError
from toolchain.core.fileio import require_space, staged_folder
from toolchain.core.progress import step
from toolchain.models.datasets import prepare_dataset
from toolchain.models.loading import read_data_yaml
from toolchain.models.sources import ExportSource, prepare
from toolchain.pipelines.precision_choice import CANDIDATES_DIR, DEFAULT_MAX_DROP, choose, map_drop, measure_fps


def deploy(target_name: str, model_path: str, out_dir: str | Path, cfg: ExportConfig,
           input_shape: tuple[int, ...] | None = None, evaluate: bool = True) -> ExportResult:
    """Export ``model_path`` (any model source) with ``target_name`` into ``out_dir`` and record the proof.

    ``cfg.precision`` ``auto`` builds every precision the target supports and keeps the fastest
    on this device within ``cfg.max_drop`` (:mod:`toolchain.pipelines.precision_choice`).

    Everything is built in a staging folder beside ``out_dir`` and moved into place when complete,
    so ``out_dir`` appears whole (with deploy.json) or not at all, also after an error or Ctrl-C.
    An existing ``out_dir`` is replaced only when it is an earlier deploy (or empty).

    Raises:
        EdgepruneError: unknown target or device, bad precision, missing calibration data, a
            model whose class count differs from the data set's, an ``out_dir`` holding other files.
    """
    target = get_target(target_name)
    if cfg.precision == "auto" and not target.runs_on_host:  # nothing to measure here: its one precision
        if len(target.precisions) != 1:
            raise EdgepruneError(f"target {target_name} runs elsewhere, so --precision auto cannot measure its "
                                 f"candidates; choose one of {', '.join(target.precisions)}")
        cfg = replace(cfg, precision=target.precisions[0])
    if cfg.precision != "auto" and cfg.precision not in target.precisions:
        what = ", ".join(target.precisions) or "nothing (it is a reference runner)"
        raise EdgepruneError(f"target {target_name} builds {what}; got --precision {cfg.precision!r}")
    if cfg.precision == "int8" and not cfg.data:  # before any work: calibration needs real images
        raise EdgepruneError("INT8 needs calibration images: pass --data DATA (a YOLO data.yaml)")
    if cfg.precision != "auto":
        target.check_config(cfg)
    target.check_device(cfg.device)
    out_dir = Path(out_dir)
    if out_dir.resolve() in {Path(p).resolve() for p in (model_path, cfg.weights) if p}:
        raise InputFileError(f"--out {out_dir} is an input file; choose a folder")
    _check_replaceable(out_dir)
    # where the folder ends up; candidates of --precision auto (deployed below it) keep the top-level one
    cfg = replace(cfg, final_dir=cfg.final_dir or str(out_dir.resolve()))
    with staged_folder(out_dir) as stage:
        if cfg.precision == "auto":
            result = deploy_auto(target_name, model_path, stage, cfg, input_shape, evaluate=evaluate)
        else:
            result = _deploy_into(target, model_path, stage, cfg, input_shape, evaluate)
    moved = ExportResult(str(out_dir / Path(result.artifact).relative_to(stage)),
                         result.deploy_json and str(out_dir / Path(result.deploy_json).relative_to(stage)),
                         result.record)
    return moved


def _check_replaceable(out_dir: Path) -> None:
    """Refuse an existing ``--out`` that is not an earlier deploy: replacing it would delete the user's files."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if (out_dir / DEPLOY_JSON).is_file() or (out_dir / "docker_commands.sh").is_file():  # a deploy, a dry run
        return
    raise InputFileError(f"--out {out_dir} is a folder holding other files (no {DEPLOY_JSON}); "
                         "choose a new or empty folder, it would be replaced")


def _deploy_into(target, model_path: str, out_dir: Path, cfg: ExportConfig, input_shape, evaluate: bool
                 ) -> ExportResult:
    """Export, verify and record one precision into ``out_dir`` (a staging folder)."""

    device = target.check_device(cfg.device)
    target_name = target.name
    step(f"preparing {Path(model_path).name}")
    source = prepare_for_data(model_path, cfg, input_shape)
    weights = sum(p.numel() for p in source.module.parameters()) * {"int8": 1, "fp16": 2}.get(cfg.precision, 4)
    require_space(Path(cfg.final_dir or out_dir) / "model", weights, f"the {target_name} {cfg.precision} model in")
    step(f"exporting to {target_name} ({cfg.precision})")
    artifact = Path(target.export(source, out_dir, cfg))
    proof = target.verify(source, artifact, cfg, device, evaluate=evaluate)
    if proof.get("dry_run"):  # the target only wrote its plan (e.g. the Docker commands): nothing to record
        return ExportResult(str(artifact), None, proof)
    record = {
        "target": target_name,
        "artifact": "." if artifact == out_dir else artifact.name,  # "." = the deploy folder is the model folder
        "created": datetime.now(timezone.utc).isoformat(),
        "source": source_record(source),
        "precision": cfg.precision,
        "imgsz": source.imgsz,
        "dynamic_shape": cfg.dynamic,
        "calibration": ({"data": str(cfg.data), "split": "train", "images": cfg.calib_images,
                         "resize": source.resize, "max_drop": cfg.max_drop} if cfg.precision == "int8" else None),
        "artifact_bytes": folder_bytes(artifact),
        "graph": target.describe(artifact),
        "host": {"machine": platform.machine(), "python": platform.python_version()},
    }
    record.update(proof)  # runner, fidelity, accuracy, and a target's own facts
    record["notes"] = list(source.notes) + list(proof.get("notes", []))
    path = write_deploy_record(out_dir, record)
    return ExportResult(str(artifact), str(path), record)


def prepare_for_data(model_path: str, cfg: ExportConfig, input_shape: tuple[int, ...] | None = None) -> ExportSource:
    """The source of ``model_path`` for an export, checked against (and named from) ``cfg.data``."""
    darknet_only = {"bn_eps": cfg.bn_eps} if cfg.bn_eps is not None else {}
    source = prepare(model_path, cfg.imgsz, input_shape, weights=cfg.weights, dynamic=cfg.dynamic,
                     decode=cfg.decode, **darknet_only)
    if cfg.data and source.task != "module":
        data = read_data_yaml(cfg.data)
        prepare_dataset(cfg.data, ("train", "val"), task=source.task)
        if data["nc"] != source.nc:
            raise ModelMismatchError(f"{model_path} predicts nc={source.nc} classes but {cfg.data} has nc={data['nc']}")
        if source.names_from_data:  # a cfg names no classes; the data set does
            source.with_names(data["names"])
    return source


def source_record(source: ExportSource) -> dict:
    """deploy.json's ``source``: the model file(s), their hashes, and how the model is fed and decoded."""
    first = source.files[0] if source.files else {"path": source.path, "sha256": source.sha256, "bytes": None}
    return {"path": first["path"], "sha256": first["sha256"], "bytes": first["bytes"], "kind": source.kind,
            "task": source.task, "files": source.files, "input_hw": list(source.input_hw), "resize": source.resize,
            "head": source.head}


def deploy_auto(target_name: str, model_path: str, out_dir: str | Path, cfg: ExportConfig,
                input_shape: tuple[int, ...] | None = None, measure: Callable | None = None,
                evaluate: bool = True) -> ExportResult:
    """Deploy every candidate precision under ``out_dir``/.precision-candidates, keep the winner in ``out_dir``.

    Args:
        measure: ``(target, artifact, device) -> {"fps": ...}``; :func:`measure_fps` by default
            (tests pass a fake to decide the winner).
    """

    target = get_target(target_name)
    measure = measure or measure_fps
    max_drop = DEFAULT_MAX_DROP if cfg.max_drop is None else cfg.max_drop
    precisions = [p for p in target.precisions if p != "int8" or cfg.data]
    skipped = [p for p in target.precisions if p not in precisions]
    out_dir = Path(out_dir)
    staging = out_dir / CANDIDATES_DIR
    if staging.exists():
        shutil.rmtree(staging)
    candidates, results = [], {}
    try:
        for n, precision in enumerate(precisions, 1):
            step(f"candidate {n}/{len(precisions)} ({precision}): deploy and verify")
            result = deploy(target_name, model_path, staging / precision, replace(cfg, precision=precision,
                                                                                   max_drop=None), input_shape,
                            evaluate=evaluate)
            step(f"candidate {n}/{len(precisions)} ({precision}): measuring FPS on this device")
            speed = measure(target, result.artifact, target.check_device(cfg.device))
            record = result.record
            candidates.append({"precision": precision, **speed, "map50_95_drop": map_drop(record),
                               "map50_95": (record.get("accuracy") or {}).get("artifact", {}).get("map50_95"),
                               "max_rel_diff": record["fidelity"].get("max_rel_diff")})
            results[precision] = result
        winner, why = choose(candidates, max_drop)
        chosen = results[winner["precision"]]
        built = staging / winner["precision"]
        for entry in built.iterdir():  # the artifact first; deploy.json is written last, below
            if entry.name == DEPLOY_JSON:
                continue
            dest = out_dir / entry.name
            if dest.is_dir():
                shutil.rmtree(dest)
            entry.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = dict(chosen.record)
    record["precision_choice"] = {"asked": "auto", "max_drop": max_drop, "winner": winner["precision"], "why": why,
                                  "candidates": candidates,
                                  "not_built": {p: "INT8 needs calibration images (--data)" for p in skipped},
                                  "measured": "inference only, latency hint, batch 1, on this device, one run each"}
    path = write_deploy_record(out_dir, record)
    return ExportResult(str(out_dir / Path(chosen.artifact).relative_to(built)), str(path), record)
