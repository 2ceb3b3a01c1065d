"""Hardware-aware autotune: prune ratio × precision × target, each point run as its artifact on the device.

Why: the FPS a user gets on an edge CPU is decided jointly by how much is pruned, which precision
the device executes fastest (OpenVINO INT8 measured 2.5× slower than bf16 on one Xeon and faster on
an EPYC) and which runtime runs it. Autotune measures that space instead of assuming it: every
ratio is pruned once (and fine-tuned if asked), then deployed with every (target, precision),
evaluated by running the artifact and benchmarked. It is the sweep engine widened: the same
pruning of a point (:func:`toolchain.pipelines.sweep.run_point`'s producers), the same executors (local, or
Ray tasks that receive the files as bytes, :mod:`toolchain.pipelines.executors`), the same resumable JSONL
(``autotune.jsonl``, one line per measured artifact). The result names, per target, the Pareto
front of (mAP50, FPS) and the recommended point: the fastest artifact whose mAP50 drop against
the unpruned FP32 artifact on the same target stays within ``max_drop``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from targets.registry import get_target
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output
from toolchain.core.jsonl import append_records, read_records
from toolchain.models.sources import source_for
from toolchain.pipelines.executors import Executor, Job, local_executor
from toolchain.pipelines.point import measure_artifact, prune_point
from toolchain.pipelines.sweep import BASELINE_RATIO, SweepConfig, references_job

AUTOTUNE_FILE = "autotune.jsonl"
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("openvino", "onnx")


class AutotuneError(EdgepruneError):
    """An autotune was asked for something it cannot do."""


@dataclass(frozen=True)
class AutotuneConfig:
    """The space to search and how each point is made.

    Args:
        sweep: pruning, fine-tuning, data, image size, max_drop (mAP50) and bench settings, as for ``sweep``
            (its ``ratios`` are the ratios tried; its ``target`` is unused).
        precisions: precisions deployed per ratio and target (each target builds those it supports).
        targets: runtimes measured (``openvino``, ``onnx``).
        calib_images: INT8 calibration images.
        references: also measure Ultralytics' own exports of the unpruned model per target (the speedup base).
    """

    sweep: SweepConfig
    precisions: tuple[str, ...] = PRECISIONS
    targets: tuple[str, ...] = TARGETS
    calib_images: int = 300
    references: bool = True

    def validate(self) -> None:
        self.sweep.validate()
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise AutotuneError(f"--precisions must be a comma list of {', '.join(PRECISIONS)}, got {list(self.precisions)}")
        for name in self.targets:
            target = get_target(name)  # a clear error for an unknown target
            if not target.runs_on_host:
                raise AutotuneError(f"target {name} runs on another device; autotune measures targets on this host "
                                    f"({', '.join(TARGETS)})")
        if not set(self.precisions) & {p for t in self.targets for p in get_target(t).precisions}:
            raise AutotuneError(f"none of the targets {', '.join(self.targets)} builds {', '.join(self.precisions)}")

    def key(self, model_path: str) -> str:
        """The sweep's settings key plus the calibration size: what changes a point's numbers."""
        return f"{self.sweep.settings_key(model_path)}-c{self.calib_images}"


@dataclass(frozen=True)
class AutotunePoint:
    """One artifact: a ratio deployed to a target at a precision, scored by running it, and timed."""

    ratio: float
    target: str
    precision: str
    executed_precision: str
    map50: float
    map50_95: float
    fps: float
    latency_ms: float
    params: int
    macs: int
    artifact: str
    artifact_bytes: int
    cpu: str
    threads: int | None
    key: str
    seconds: float
    finished: str
    node: str = "local"  # the Ray node that built and measured it ("local": the driver's machine)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    """The recommended point (None when nothing qualifies) and why."""

    point: AutotunePoint | None
    reason: str

    def to_json(self) -> dict:
        return {"point": self.point.to_json() if self.point else None, "reason": self.reason}


@dataclass(frozen=True)
class AutotuneResult:
    """Every point, the Pareto front per target, the recommendation and the speedup base per target."""

    run_dir: str
    model: str
    config: AutotuneConfig
    points: list[AutotunePoint]
    fronts: dict
    recommendation: Recommendation
    references: dict = field(default_factory=dict)
    computed: int = 0
    resumed: int = 0

    def base_fps(self, target: str) -> float | None:
        refs = self.references.get(target) or []
        return max(r["fps"] for r in refs) if refs else None

    def to_json(self) -> dict:
        return {"run_dir": self.run_dir, "model": self.model, "config": asdict(self.config),
                "points": [p.to_json() for p in self.points],
                "fronts": {t: [p.to_json() for p in front] for t, front in self.fronts.items()},
                "recommendation": self.recommendation.to_json(), "references": self.references,
                "computed": self.computed, "resumed": self.resumed}


def ratio_job(out: Path, ratio: float, config: AutotuneConfig, key: str, model: str, weights: str | None,
              data: str) -> list[dict]:
    """Prune ``model`` at ``ratio`` once (fine-tune if asked), then deploy, evaluate and time every
    (target, precision) of ``config`` in ``out``; returns the points as dicts (an executor job)."""

    out = Path(out)
    cfg = replace(config.sweep, data=data, weights=weights)
    point = prune_point(model, ratio, cfg, out)
    points = []
    for target_name in config.targets:
        supported = get_target(target_name).precisions
        for precision in (p for p in config.precisions if p in supported):
            started = time.perf_counter()
            folder = out / f"{target_name}-{precision}"
            exported, scores, bench = measure_artifact(point, target_name, precision, folder, cfg, data=data,
                                                       calib_images=config.calib_images, evaluate=True)
            size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
            points.append(AutotunePoint(
                ratio, target_name, precision, bench.executed_precision, scores.map50, scores.map50_95,
                bench.throughput_fps, bench.latency.median_ms, point.stats.params, point.stats.macs,
                str(exported.artifact), size, bench.cpu, bench.threads, key, time.perf_counter() - started,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())).to_json())
    return points


def read_autotune_points(run_dir: Path, key: str | None = None) -> list[AutotunePoint]:
    """Points in ``RUN_DIR/autotune.jsonl`` (with ``key`` if given); see :mod:`toolchain.core.jsonl`."""

    points = read_records(Path(run_dir) / AUTOTUNE_FILE, lambda data: AutotunePoint(**data), "an autotune point")
    return [p for p in points if key is None or p.key == key]


def _append(run_dir: Path, points: list[AutotunePoint]) -> None:
    append_records(run_dir / AUTOTUNE_FILE, [p.to_json() for p in points])


def pareto(points: list[AutotunePoint]) -> list[AutotunePoint]:
    """Points no other point beats on both mAP50 and FPS, fastest first."""
    front = [p for p in points
             if not any(q.map50 >= p.map50 and q.fps >= p.fps and (q.map50 > p.map50 or q.fps > p.fps) for q in points)]
    return sorted(front, key=lambda p: -p.fps)


def recommend(points: list[AutotunePoint], max_drop: float) -> Recommendation:
    """The fastest point whose mAP50 is within ``max_drop`` of the unpruned FP32 artifact on its own target.

    Each target's accuracy reference is its own unpruned FP32 artifact (what that runtime scores
    before anything is traded); a target without one is not recommended from.
    """
    refs = {p.target: p for p in points if p.ratio == BASELINE_RATIO and p.precision == "fp32"}
    within = [p for p in points if p.target in refs and refs[p.target].map50 - p.map50 <= max_drop]
    if not within:
        return Recommendation(None, f"no artifact stays within a mAP50 drop of {max_drop} of its target's unpruned "
                                    "FP32 artifact: lower the ratios, fine-tune (--finetune-epochs) or raise --max-drop")
    best = max(within, key=lambda p: p.fps)
    ref = refs[best.target]
    # what the user would deploy without pruning: the fastest unpruned artifact, any target, within the drop
    unpruned_best = max((p for p in within if p.ratio == BASELINE_RATIO), key=lambda p: p.fps)
    return Recommendation(best, (
        f"{best.target} {best.precision} (executed {best.executed_precision}) at ratio {best.ratio:g}: "
        f"{best.fps:.1f} FPS, {best.fps / ref.fps:.2f}x its unpruned FP32 artifact and {best.fps / unpruned_best.fps:.2f}x "
        f"the fastest unpruned artifact within the drop ({unpruned_best.target} {unpruned_best.precision}); mAP50 "
        f"{best.map50:.3f} vs {ref.map50:.3f} (drop {ref.map50 - best.map50:.3f} <= {max_drop})"))


def autotune(model_path: str, run_dir: str | Path, config: AutotuneConfig, executor: Executor = local_executor,
             on_points: Callable[[list[AutotunePoint]], None] | None = None, progress=None) -> AutotuneResult:
    """Run (or resume) an autotune of ``model_path`` into ``run_dir``.

    Every ratio of ``config.sweep.ratios`` plus the unpruned model (ratio 0) is one executor job;
    its points are appended to ``autotune.jsonl`` by the driver as the job returns, so a rerun with
    the same settings skips the ratios already measured.
    """

    config.validate()
    config = replace(config, sweep=source_for(model_path).fit_sweep(Path(model_path), config.sweep))
    run_dir = Path(run_dir).resolve()
    model_path = str(Path(model_path).resolve())
    sweep_cfg = config.sweep
    if sweep_cfg.data:
        sweep_cfg = replace(sweep_cfg, data=str(Path(sweep_cfg.data).resolve()))
    if sweep_cfg.weights:
        sweep_cfg = replace(sweep_cfg, weights=str(Path(sweep_cfg.weights).resolve()))
    config = replace(config, sweep=sweep_cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = config.key(model_path)
    known = read_autotune_points(run_dir, key)
    wanted = {(t, p) for t in config.targets for p in config.precisions}

    def complete(ratio: float) -> bool:
        have = {(p.target, p.precision) for p in known if p.ratio == ratio}

        return all((t, p) in have for t, p in wanted if p in get_target(t).precisions)

    ratios = [r for r in [BASELINE_RATIO, *sorted(set(sweep_cfg.ratios))] if not complete(r)]
    resumed = len(known)
    computed = 0

    def record(_job, result, where) -> None:
        nonlocal computed
        points = [AutotunePoint(**{**p, "node": where["node"] if where else "local"}) for p in result]
        _append(run_dir, points)
        known.extend(points)
        computed += len(points)
        if on_points:
            on_points(points)

    if ratios:
        if progress:
            progress(f"measuring ratios {', '.join(f'{r:g}' for r in ratios)}")
        shipped = replace(config, sweep=replace(sweep_cfg, data=None, weights=None))  # files travel as Job inputs
        executor([Job(ratio_job, {"ratio": r, "config": shipped, "key": key},
                      run_dir / "points" / key / f"r{r:.4f}", files={"model": model_path, "weights": sweep_cfg.weights},
                      data=sweep_cfg.data, trains=sweep_cfg.finetune_epochs > 0) for r in ratios], record)
    references = _references(model_path, config, run_dir, executor, progress) if config.references else {}
    points = sorted({(p.ratio, p.target, p.precision): p for p in known}.values(),
                    key=lambda p: (p.target, p.ratio, p.precision))
    fronts = {t: pareto([p for p in points if p.target == t]) for t in config.targets}
    result = AutotuneResult(str(run_dir), model_path, config, points, fronts, recommend(points, sweep_cfg.max_drop),
                            references, computed, resumed)
    with atomic_output(run_dir / "autotune.json") as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result


def _references(model_path: str, config: AutotuneConfig, run_dir: Path, executor: Executor, progress) -> dict:
    """Per target, Ultralytics' own exports of the unpruned model measured on the cluster (cached in the run)."""

    if not source_for(model_path).exports_with_ultralytics(Path(model_path)):
        return {}
    cache = run_dir / "references.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [t for t in config.targets if t not in known]
    if todo:
        if progress:
            progress(f"measuring Ultralytics' exports of the unpruned model on {', '.join(todo)}")
        executor([Job(references_job, {"cfg": replace(config.sweep, target=t, data=None, weights=None)},
                      run_dir / "references" / t,
                      files={"model": model_path}, data=config.sweep.data) for t in todo],
                 lambda job, result, _where: known.__setitem__(job.kwargs["cfg"].target, result))

        with atomic_output(cache) as tmp:
            tmp.write_text(json.dumps(known, indent=2))
    return known
