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

from targets.bench import measure_artifact

CANDIDATES_DIR = ".precision-candidates"
DEFAULT_MAX_DROP = 0.01  # mAP50-95, absolute: one point
FP16_FIDELITY = 1e-2  # without --data, FP16 is accepted when its raw outputs are this close (relative)
MEASURE_SECONDS = 3.0


def measure_fps(target, artifact: str, device: str) -> dict:
    """Inference-only FPS of ``artifact`` on this device (latency hint, batch 1, the runtime's precision)."""

    result = measure_artifact(target, artifact, device, MEASURE_SECONDS)
    return {"fps": result.throughput_fps, "latency_median_ms": result.latency.median_ms,
            "executed_precision": result.executed_precision, "cpu": result.cpu, "threads": result.threads,
            "hint": result.hint, "batch": result.batch, "includes_pre_post": result.includes_pre_post}


def map_drop(record: dict) -> float | None:
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
