"""``deploy``: export a model with one target, then prove the artifact works by running it.

Why the proof is part of deploy: each step (new runtime, FP16, INT8) costs something, and
users only trust a number measured on the artifact they will ship. Every deploy writes
``deploy.json`` with the source hash, the precision, the calibration set, the sizes, the
raw-output fidelity against PyTorch and (with ``--data``) the artifact's own mAP beside the
PyTorch model's mAP through the same pipeline.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from targets.artifacts import folder_bytes, write_deploy_record
from targets.base import ExportConfig, ExportResult
from targets.registry import get_target
from targets.export_source import ExportSource, prepare
from toolchain.errors import EdgepruneError, InputFileError
from toolchain.loading import read_data_yaml


def _fidelity(source: ExportSource, runner) -> dict:
    """Max absolute and relative difference of every raw output of the artifact vs PyTorch on one input.

    Each output is compared relative to its own scale (a segment model's Proto masks are
    small next to its box coordinates); the top-level figures are the worst over outputs.
    """
    from targets.torch_ref import TorchRunner

    x = source.example.numpy()
    refs = TorchRunner(source.module, tuple(source.example.shape)).outputs(x)
    outs = runner.outputs(x)
    if len(outs) != len(refs):
        raise EdgepruneError(f"artifact has {len(outs)} outputs, PyTorch's model {len(refs)}")
    per_output = []
    for i, (out, ref) in enumerate(zip(outs, refs)):
        if out.shape != ref.shape:
            raise EdgepruneError(f"artifact output {i} has shape {out.shape}, PyTorch's {ref.shape}")
        diff = float(np.abs(out.astype(np.float64) - ref).max())
        per_output.append({"shape": list(ref.shape), "max_abs_diff": diff,
                           "max_rel_diff": diff / max(float(np.abs(ref).max()), 1e-12)})
    return {"max_abs_diff": max(o["max_abs_diff"] for o in per_output),
            "max_rel_diff": max(o["max_rel_diff"] for o in per_output),
            "output_shape": per_output[0]["shape"], "outputs": per_output,
            "input": "uniform random in [0, 1], seed-free"}


def _accuracy(source: ExportSource, runner, data: str) -> dict:
    """mAP of the artifact and of the PyTorch source through the same letterbox/NMS pipeline."""
    from targets.torch_ref import TorchRunner
    from toolchain.artifact_eval import evaluate_callable

    data_cfg = read_data_yaml(data)
    nc = data_cfg["nc"]
    artifact = evaluate_callable(runner, data, source.imgsz, nc)
    reference = evaluate_callable(TorchRunner(source.module, tuple(source.example.shape)), data, source.imgsz, nc)
    for res in (artifact, reference):
        res.pop("per_class")
    return {"data": str(data), "split": "val", "artifact": artifact, "torch_fp32": reference,
            "map50_drop": reference["map50"] - artifact["map50"],
            "map50_95_drop": reference["map50_95"] - artifact["map50_95"]}


def deploy(target_name: str, model_path: str, out_dir: str | Path, cfg: ExportConfig,
           input_shape: tuple[int, ...] | None = None, evaluate: bool = True) -> ExportResult:
    """Export ``model_path`` with ``target_name`` into ``out_dir`` and record the proof.

    Raises:
        EdgepruneError: unknown target or device, bad precision, missing calibration data.
    """
    target = get_target(target_name)
    if cfg.precision not in target.precisions:
        what = ", ".join(target.precisions) or "nothing (it is a reference runner)"
        raise EdgepruneError(f"target {target_name} builds {what}; got --precision {cfg.precision!r}")
    target.check_config(cfg)
    device = target.check_device(cfg.device)
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(model_path).resolve():
        raise InputFileError(f"--out {out_dir} is the input model; choose a folder")
    source = prepare(model_path, cfg.imgsz, input_shape, dynamic=cfg.dynamic)
    if cfg.data and source.task != "module":
        nc = read_data_yaml(cfg.data)["nc"]
        if nc != len(source.names):
            raise EdgepruneError(f"{model_path} predicts nc={len(source.names)} classes but {cfg.data} has nc={nc}")
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = Path(target.export(source, out_dir, cfg))
    # the runner records the precision the runtime executed; the target says which to force, if any
    runner = target.open(artifact, device, target.verify_precision(cfg.precision))
    record = {
        "target": target_name,
        "artifact": artifact.name,
        "created": datetime.now(timezone.utc).isoformat(),
        "source": {"path": str(model_path), "sha256": source.sha256, "bytes": Path(model_path).stat().st_size,
                   "task": source.task},
        "precision": cfg.precision,
        "imgsz": source.imgsz,
        "dynamic_shape": cfg.dynamic,
        "calibration": ({"data": str(cfg.data), "split": "train", "images": cfg.calib_images,
                         "max_drop": cfg.max_drop} if cfg.precision == "int8" else None),
        "artifact_bytes": folder_bytes(artifact),
        "graph": target.describe(artifact),
        "runner": runner.info.to_json(),
        "fidelity": _fidelity(source, runner),
        "host": {"machine": platform.machine(), "python": platform.python_version()},
    }
    if evaluate and cfg.data and source.task != "module":
        record["accuracy"] = _accuracy(source, runner, cfg.data)
    path = write_deploy_record(out_dir, record)
    return ExportResult(str(artifact), str(path), record)
