"""The proof every deploy records: run the artifact and compare it with the torch source.

Why in the pipeline, not left to the user: each step (new runtime, FP16, INT8) costs
something, and users only trust a number measured on the artifact they will ship. Fidelity
compares every raw output with the torch source at its own scale; accuracy scores the artifact
and the source through the same pre/post-processing (the source's ``resize`` and ``head``), so
a difference is the artifact's, not the pipeline's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from targets.torch_runner import TorchRunner
from toolchain.core.errors import EdgepruneError
from toolchain.core.progress import step
from toolchain.models.evaluation import evaluate_callable
from toolchain.models.loading import read_data_yaml
from toolchain.models.sources import ExportSource

_REFERENCE: dict = {}  # the last source's torch score, by (files, size, resize, head, data)


def verify_on_host(target, source: ExportSource, artifact: Path, cfg, device: str, evaluate: bool = True) -> dict:
    """Open ``artifact`` on this host and record its runner, fidelity and (with ``cfg.data``) accuracy."""

    step(f"opening the {cfg.precision} artifact on {device}")
    # the runner records the precision the runtime executed; the target says which to force, if any
    runner = target.open(artifact, device, target.verify_precision(cfg.precision))
    step(f"{cfg.precision}: fidelity against PyTorch")
    proof = {"runner": runner.info.to_json(), "fidelity": fidelity(source, runner)}
    if evaluate and cfg.data and source.task != "module":
        proof["accuracy"] = accuracy(source, runner, cfg.data, cfg.precision)
    return proof


def fidelity(source: ExportSource, runner) -> dict:
    """Max absolute and relative difference of every raw output of the artifact vs PyTorch on one input.

    Each output is compared relative to its own scale (a segment model's Proto masks are
    small next to its box coordinates); the top-level figures are the worst over outputs.
    """

    x = source.example.numpy()
    if getattr(runner, "accepts_u8_bgr", False):  # the artifact sees 8-bit pixels: so does the reference
        x = (np.rint(x * 255.0) / 255.0).astype(np.float32)
    refs = TorchRunner.of(source).outputs(x)
    outs = runner.outputs(x)
    if len(outs) != len(refs):
        raise EdgepruneError(f"artifact has {len(outs)} outputs, PyTorch's model {len(refs)}")
    per_output = []
    for i, (out, ref) in enumerate(zip(outs, refs)):
        if out.shape != ref.shape:
            raise EdgepruneError(f"artifact output {i} has shape {out.shape}, PyTorch's {ref.shape}")
        diff = float(np.abs(out.astype(np.float64) - ref).max())
        name = source.output_names[i] if i < len(source.output_names) else f"output{i}"
        per_output.append({"name": name, "shape": list(ref.shape), "max_abs_diff": diff,
                           "max_rel_diff": diff / max(float(np.abs(ref).max()), 1e-12)})
    return {"max_abs_diff": max(o["max_abs_diff"] for o in per_output),
            "max_rel_diff": max(o["max_rel_diff"] for o in per_output),
            "output_shape": per_output[0]["shape"], "outputs": per_output,
            "input": "uniform random in [0, 1], seed-free"}


def accuracy(source: ExportSource, runner, data: str, label: str = "artifact") -> dict:
    """mAP of the artifact and of the PyTorch source through the same fit/decode/NMS pipeline."""

    nc = read_data_yaml(data)["nc"]
    step(f"{label}: mAP of the artifact on the val split")
    artifact = evaluate_callable(runner.predict, data, source.input_hw, nc, resize=source.resize)
    artifact.pop("per_class")
    key = (tuple(f["sha256"] for f in source.files) or source.sha256, source.input_hw, source.resize, source.head_scope,
           str(Path(data).resolve()), Path(data).stat().st_mtime_ns)
    if key not in _REFERENCE:  # several artifacts of one source (precision candidates) share its score
        step("mAP of the PyTorch source on the val split (the reference)")
        reference = evaluate_callable(TorchRunner.of(source).predict, data, source.input_hw, nc, resize=source.resize)
        reference.pop("per_class")
        _REFERENCE.clear()
        _REFERENCE[key] = reference
    reference = dict(_REFERENCE[key])
    return {"data": str(data), "split": "val", "artifact": artifact, "torch_fp32": reference,
            "map50_drop": reference["map50"] - artifact["map50"],
            "map50_95_drop": reference["map50_95"] - artifact["map50_95"]}
