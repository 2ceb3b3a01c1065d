"""``deploy --precision auto``: build every precision the target supports, measure each here, keep the fastest good one.

Why measured, not assumed: the fastest precision is device-specific. On a 2-core Xeon with AMX
OpenVINO's INT8 ran 1.5-2.5x slower than an FP32 IR executed in bf16; on an AMD EPYC with
avx512_bf16 INT8 was faster. So each candidate is deployed (and verified) like any artifact,
its inference FPS measured on this device with the same settings, its accuracy taken from its
own deploy.json (artifact vs torch source through the same pipeline), and the winner is the
fastest whose mAP50-95 drop is within ``max_drop``. deploy.json records every candidate and why
the winner won.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from targets.artifacts import DEPLOY_JSON, write_deploy_record
from targets.base import ExportConfig, ExportResult

CANDIDATES_DIR = ".precision-candidates"
DEFAULT_MAX_DROP = 0.01  # mAP50-95, absolute: one point
FP16_FIDELITY = 1e-2  # without --data, FP16 is accepted when its raw outputs are this close (relative)
MEASURE_SECONDS = 3.0


def measure_fps(target, artifact: str, device: str) -> dict:
    """Inference-only FPS of ``artifact`` on this device (latency hint, batch 1, the runtime's precision)."""
    from targets.bench import measure_artifact

    result = measure_artifact(target, artifact, device, MEASURE_SECONDS)
    return {"fps": result.throughput_fps, "latency_median_ms": result.latency.median_ms,
            "executed_precision": result.executed_precision, "cpu": result.cpu, "threads": result.threads,
            "hint": result.hint, "batch": result.batch, "includes_pre_post": result.includes_pre_post}


def _drop(record: dict) -> float | None:
    acc = record.get("accuracy")
    return None if not acc else float(acc["map50_95_drop"])


def choose(candidates: list[dict], max_drop: float) -> tuple[dict, str]:
    """The fastest candidate within ``max_drop`` (FP32 always qualifies), and one sentence saying why."""
    def good(c):
        if c["precision"] == "fp32":
            return True
        if c["map50_95_drop"] is not None:
            return c["map50_95_drop"] <= max_drop
        return c["precision"] == "fp16" and c["max_rel_diff"] <= FP16_FIDELITY

    eligible = [c for c in candidates if good(c)]
    winner = max(eligible, key=lambda c: c["fps"])
    speeds = " / ".join(f"{c['precision']} {c['fps']:.1f}" for c in candidates)
    excluded = [c for c in candidates if c not in eligible]
    why = f"{winner['precision']}: the fastest within the accuracy budget (FPS {speeds})"
    for c in excluded:
        if c["map50_95_drop"] is not None:
            why += f"; {c['precision']} lost {c['map50_95_drop']:.4f} mAP50-95 > --max-drop {max_drop:g}"
        elif c["precision"] == "fp16":
            why += (f"; fp16 has no mAP measurement and its outputs differ by {c['max_rel_diff']:.2g} of their scale "
                    f"(> {FP16_FIDELITY:g})")
        else:
            why += f"; {c['precision']} has no mAP measurement (needs --data and a detector)"
    return winner, why


def deploy_auto(target_name: str, model_path: str, out_dir: str | Path, cfg: ExportConfig,
                input_shape: tuple[int, ...] | None = None, measure: Callable | None = None,
                evaluate: bool = True) -> ExportResult:
    """Deploy every candidate precision under ``out_dir``/.precision-candidates, keep the winner in ``out_dir``.

    Args:
        measure: ``(target, artifact, device) -> {"fps": ...}``; :func:`measure_fps` by default
            (tests pass a fake to decide the winner).
    """
    from targets.deploy import deploy
    from targets.registry import get_target
    from toolchain.progress import step

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
            candidates.append({"precision": precision, **speed, "map50_95_drop": _drop(record),
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
