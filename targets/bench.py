"""The bench harness: inference-only, end-to-end and multi-stream FPS, the same way on every backend.

Modelled on OpenVINO's benchmark_app so its numbers can be trusted as much: the input is
filled once outside the timed loop; the first inference is timed and reported apart; after
warm-up, requests run until a duration or an iteration count is reached; latency is the
median (with p90/p99/min/max) of per-request latencies and throughput is finished
inferences over wall time. Every result carries the configuration actually applied
(device, precision executed, hint, requests, threads, batch) and says whether pre/post-
processing is inside the timing. Results are JSON lines, one per run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from targets.runner import Runner
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output
from toolchain.core.latency import LatencyStats, cpu_name
from toolchain.core.progress import step


@dataclass(frozen=True)
class BenchConfig:
    """What the user asked for (the applied values are in :class:`BenchResult`)."""

    backend: str = "auto"
    device: str = "cpu"
    hint: str = "latency"
    requests: int | None = None
    threads: int | None = None
    precision: str = "auto"
    duration: float | None = 10.0
    iterations: int | None = None
    warmup: int = 5
    batch: int = 1  # images per inference; FPS counts images

    def validate(self) -> None:
        if self.hint not in ("latency", "throughput"):
            raise EdgepruneError(f"--hint must be latency or throughput, got {self.hint!r}")
        if self.iterations is None and (self.duration is None or self.duration <= 0):
            raise EdgepruneError("give a positive --duration or --iterations")
        if self.batch < 1:
            raise EdgepruneError(f"--batch must be at least 1, got {self.batch}")
        if self.iterations is not None and self.iterations < 1:
            raise EdgepruneError(f"--iterations must be at least 1, got {self.iterations}")


@dataclass
class BenchResult:
    """One measurement, with the settings it was measured under."""

    mode: str  # inference | e2e | streams
    artifact: str
    backend: str
    backend_version: str
    device: str
    cpu: str
    artifact_precision: str
    executed_precision: str
    hint: str
    requests: int
    threads: int | None
    batch: int
    input_shape: tuple
    warmup: int
    iterations: int
    duration_s: float
    first_inference_ms: float
    latency: LatencyStats
    throughput_fps: float
    includes_pre_post: bool
    requested: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    def to_json(self) -> dict:
        return asdict(self)


CSV_COLUMNS = ("mode", "artifact", "backend", "backend_version", "device", "cpu", "artifact_precision",
               "executed_precision", "hint", "requests", "threads", "batch", "input_shape", "warmup", "iterations",
               "duration_s", "first_inference_ms", "median_ms", "avg_ms", "p90_ms", "p99_ms", "min_ms", "max_ms",
               "throughput_fps", "includes_pre_post", "timestamp")


def write_csv(path: str | Path, results: list) -> None:
    """Results as CSV, one row per measurement (flat columns; benchmark_app's report has the same facts)."""
    import csv

    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            row = {**asdict(result), **asdict(result.latency)}
            row["input_shape"] = "x".join(str(d) for d in result.input_shape)
            writer.writerow([row[c] for c in CSV_COLUMNS])


def _stop_rule(cfg: BenchConfig):
    if cfg.iterations is not None:
        return lambda started, _elapsed: started < cfg.iterations
    return lambda _started, elapsed: elapsed < cfg.duration


def _base_fields(runner: Runner, artifact: str, cfg: BenchConfig, requests: int) -> dict:
    info = runner.info
    return dict(
        artifact=str(artifact), backend=info.backend, backend_version=info.backend_version, device=info.device,
        cpu=cpu_name(), artifact_precision=info.artifact_precision, executed_precision=info.executed_precision,
        hint=cfg.hint, requests=requests, threads=info.threads, batch=int(info.input_shape[0]),
        input_shape=tuple(info.input_shape), warmup=cfg.warmup, requested=asdict(cfg),
    )


def measure_artifact(target, artifact: str, device: str, seconds: float) -> BenchResult:
    """Inference-only measurement of ``artifact`` opened by ``target`` on ``device``: latency hint, batch 1,
    the precision the runtime picks, ``seconds`` after 5 warm-up runs (what automatic choices compare)."""
    return measure_interleaved(target, [artifact], device, 1, seconds)[0][0]


def measure_interleaved(target, artifacts: list[str], device: str, rounds: int,
                        seconds: float) -> list[list[BenchResult]]:
    """:func:`measure_artifact` of every artifact once per round, ``rounds`` times (``[round][artifact]``).

    Why interleaved: on a shared or throttling host the speed drifts by ±20 % within a minute (measured on a
    2-core cloud EPYC); a ratio of two artifacts measured in alternation sees the same drift on both sides,
    one measured a minute after the other does not. Each artifact is compiled once, before the first round.
    """
    cfg = BenchConfig(device=device, duration=seconds, warmup=5)
    runners = [target.open(Path(artifact), device) for artifact in artifacts]
    return [[measure_inference(runner, str(artifact), cfg) for runner, artifact in zip(runners, artifacts)]
            for _ in range(rounds)]


def bench_input(shape) -> np.ndarray:
    """What the inference-only measurement feeds: seeded noise in [0, 1], the range the models take.

    Not benchmark_app's fill (noise in [0, 255]): a YOLO IR's run time depends on the values, and on
    the 2-core AMX Xeon Ultralytics' FP32 IR of yolov8n at 416 ran 25 % slower on [0, 255] than on
    [0, 1] or a real image (benchmarks/vs_ultralytics.py).
    """
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def measure_inference(runner: Runner, artifact: str, cfg: BenchConfig) -> BenchResult:
    """Inference-only throughput and latency (no pre/post-processing in the timed loop)."""

    cfg.validate()
    step(f"measuring {Path(artifact).name}: " + (f"{cfg.iterations} iterations" if cfg.iterations
                                                   else f"{cfg.duration:g} s") + f" after {cfg.warmup} warm-up runs")
    x = bench_input(runner.info.input_shape)
    t0 = time.perf_counter()
    runner(x)
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(cfg.warmup):
        runner(x)
    requests = cfg.requests or (runner.default_requests() if cfg.hint == "throughput" else 1)
    latencies, wall = runner.run_loop(x, requests, _stop_rule(cfg))
    notes = []
    if cfg.requests is None and cfg.hint == "throughput":
        notes.append(f"--requests not given: using the runtime's optimum for the throughput hint ({requests})")
    return BenchResult(
        mode="inference", iterations=len(latencies), duration_s=wall, first_inference_ms=first_ms,
        latency=LatencyStats.of(latencies), throughput_fps=len(latencies) * int(runner.info.input_shape[0]) / wall,
        includes_pre_post=False, notes=notes, **_base_fields(runner, artifact, cfg, requests),
    )
