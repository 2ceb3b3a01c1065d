"""Search for the "optimal pruning point": prune at several ratios, measure each, pick the knee.

Why: done by hand, the point is found with coarse ratios (0.7/0.8/0.9), then subdividing
around the cliff (0.88/0.89) — with a table of P, R, mAP, params, size, latency and FLOPs.
For an Ultralytics checkpoint the ratio is Torch-Pruning's channel ratio; for a Darknet cfg +
.weights it is ``cfg-prune --global-percent`` (BN-gamma slimming, optionally with
``--shortcuts`` residual units removed first), evaluated by running the generated module.
This module automates exactly that, reusing ``prune_file`` / ``finetune`` / ``evaluate`` /
``deploy`` / ``measure_inference`` for each point. Every finished point is appended as one
JSON line to ``RUN_DIR/sweep.jsonl`` so an interrupted sweep resumes where it stopped: a
point whose ratio and settings are already in the file is read back, never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from targets.bench import BenchConfig, measure_inference
from targets.ultralytics_exports import FORMATS, build_ultralytics_exports, fastest
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output, sha256_of
from toolchain.core.jsonl import append_records, read_records
from toolchain.core.progress import step
from toolchain.models.sources import TrainRequest, companion_weights, source_for
from toolchain.pipelines.bench import open_runner
from toolchain.pipelines.executors import Executor, Job, local_executor
from toolchain.pipelines.point import BENCH_FILE, measure_artifact, prune_point

SWEEP_FILE = "sweep.jsonl"
BASELINE_RATIO = 0.0


class SweepError(EdgepruneError):
    """A sweep was asked for something it cannot do (bad ratios, missing executor)."""


@dataclass(frozen=True)
class SweepConfig:
    """How every point of a sweep is produced and measured.

    Args:
        data: YOLO data.yaml; the val split is evaluated, the train split fine-tunes.
        ratios: pruning ratios of the coarse grid (0 < r < 1).
        method: channel importance (see :mod:`toolchain.models.importance`).
        global_pruning: rank channels network-wide.
        round_to: keep channel counts multiples of this (None = no rounding; small models need it).
        head_ratio: the task head's own share of every point's prune (None: the point's ratio; 0: the head
            stays whole), as ``prune --head-ratio``; a sweep after ``sparsify --head-ratio`` needs the same.
        steps: prune iteratively in this many steps (1 = one-shot).
        finetune_epochs: epochs of fine-tuning after pruning (0 = none).
        target: deploy target measured for latency (openvino, onnx or torch).
        imgsz: input size for pruning, evaluation, export and benchmarking.
        max_drop: largest accepted mAP50 drop against the unpruned model.
        refine: bisect between the last good and the first bad ratio.
        refine_steps: how many bisections ``refine`` does.
        bench_iterations: timed inferences per point.
        batch: batch size of fine-tuning and validation.
        workers: data-loader workers of fine-tuning.
        device: the runtime's device every point is deployed to and measured on (``cpu``, ``GPU``...).
        train_device: torch device of fine-tuning (``auto``, ``cpu``, ``cuda:N``); not part of the
            resume key, since it does not change what a point means.
        weights: Darknet .weights of a .cfg model (default: the .weights of the same name beside it).
        shortcuts: Darknet only: residual units removed at every point (``cfg-prune --shortcuts``).
        keep: Darknet only: every pruned conv keeps at least this fraction of its channels.
        shortcut_grid: Darknet only: after the percent is chosen, also measure it with each of
            these residual-unit counts removed (seed 002's layer pruning) and choose again.
        finetune_chosen: epochs of fine-tuning for the finally chosen model (0: none); its numbers
            are reported beside the point it came from.
    """

    data: str
    ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    method: str = "l1"
    global_pruning: bool = False
    round_to: int | None = 8
    head_ratio: float | None = None
    steps: int = 1
    finetune_epochs: int = 0
    target: str = "openvino"
    imgsz: int | None = None  # None: the size the checkpoint was trained at (640 when it does not say)
    max_drop: float = 0.02
    refine: bool = False
    refine_steps: int = 3
    bench_iterations: int = 50
    batch: int = 16
    workers: int = 0
    device: str = "cpu"
    train_device: str = "auto"
    weights: str | None = None
    shortcuts: int = 0
    keep: float = 0.01
    shortcut_grid: tuple[int, ...] = ()
    finetune_chosen: int = 0

    def validate(self) -> None:
        bad = [r for r in self.ratios if not 0.0 < r < 1.0]
        if not self.ratios or bad:
            raise SweepError(f"sweep ratios must lie strictly between 0 and 1, got {list(self.ratios)}")
        if self.max_drop < 0:
            raise SweepError(f"--max-drop must be at least 0, got {self.max_drop}")
        if self.head_ratio is not None and not 0.0 <= self.head_ratio < 1.0:
            raise SweepError(f"--head-ratio must be at least 0 and below 1, got {self.head_ratio}")
        if any(n < 1 for n in self.shortcut_grid):
            raise SweepError(f"--shortcut-grid counts must be at least 1, got {list(self.shortcut_grid)}")

    def settings_key(self, model_path: str) -> str:
        """Hash of everything that changes a point's numbers; resume matches on it."""
        fields = {k: v for k, v in asdict(self).items()
                  if k not in ("ratios", "refine", "refine_steps", "max_drop", "train_device", "weights",
                               "shortcut_grid", "finetune_chosen")}
        if self.head_ratio is None:  # the key of a sweep run before the option existed stays valid
            del fields["head_ratio"]
        fields["model_sha256"] = _file_sha(model_path)
        if self.weights:
            fields["weights_sha256"] = _file_sha(self.weights)
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_sha(path: str) -> str:
    return sha256_of(path)


@dataclass(frozen=True)
class SweepPoint:
    """Numbers of one model of the sweep (ratio 0 is the unpruned baseline)."""

    ratio: float
    key: str
    model: str
    precision: float
    recall: float
    map50: float
    map50_95: float
    params: int
    macs: int
    file_bytes: int
    latency_ms: float
    fps: float
    target: str
    seconds: float
    finished: str
    per_class: list = field(default_factory=list)
    shortcuts: int = 0  # Darknet: residual units removed before the channel pruning

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Choice:
    """The chosen point and why."""

    ratio: float | None
    reason: str
    shortcuts: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FinetunedChoice:
    """The chosen model after ``finetune_chosen`` epochs: where it is and what it scores now."""

    ratio: float
    shortcuts: int
    model: str
    weights: str | None
    epochs: int
    map50: float
    map50_95: float
    before_map50: float
    before_map50_95: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SweepResult:
    """All points of a run (sorted by ratio), the baseline, the chosen point, and what speed is divided by.

    ``references`` are Ultralytics' own exports of the unpruned model on the sweep's target,
    measured at the end of this run with the points' settings; the fastest is the base of every
    speedup (None for models Ultralytics cannot export, e.g. Darknet cfgs).
    """

    run_dir: str
    model: str
    config: SweepConfig
    points: list[SweepPoint]
    choice: Choice
    computed: int
    resumed: int
    references: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shortcut_points: list[SweepPoint] = field(default_factory=list)
    finetuned: FinetunedChoice | None = None

    def baseline(self) -> SweepPoint | None:
        return next((p for p in self.points if p.ratio == BASELINE_RATIO), None)

    @property
    def base(self) -> dict | None:
        """The fastest Ultralytics export of the unpruned model, as measured in this run."""

        return fastest(self.references)

    @property
    def base_fps(self) -> float | None:
        return self.base["fps"] if self.base else None

    def to_json(self) -> dict:
        return {"run_dir": self.run_dir, "model": self.model, "config": asdict(self.config),
                "points": [p.to_json() for p in self.points], "choice": self.choice.to_json(),
                "computed": self.computed, "resumed": self.resumed, "references": self.references,
                "notes": self.notes, "shortcut_points": [p.to_json() for p in self.shortcut_points],
                "finetuned": self.finetuned.to_json() if self.finetuned else None,
                "speedup_base": self.base["label"] if self.base else None}


def read_points(run_dir: str | Path, key: str | None = None) -> list[SweepPoint]:
    """Points recorded in ``RUN_DIR/sweep.jsonl`` (only those with ``key`` if given); see :mod:`toolchain.core.jsonl`."""

    points = read_records(Path(run_dir) / SWEEP_FILE, lambda data: SweepPoint(**data), "a sweep point")
    return [p for p in points if key is None or p.key == key]


def _append_point(run_dir: Path, point: SweepPoint) -> None:
    """Append one point as a single fsynced line, so a crash loses at most the current point."""

    append_records(run_dir / SWEEP_FILE, [point.to_json()])


def point_dir(run_dir: Path, key: str, ratio: float) -> Path:
    """Folder of one point; keyed by settings so a sweep with other settings never overwrites it."""
    return run_dir / "points" / key / f"r{ratio:.4f}"


def point_job(out: Path, ratio: float, cfg: SweepConfig, key: str, model: str, weights: str | None,
              data: str) -> dict:
    """One point as an executor job (:mod:`toolchain.pipelines.executors`): ``model``, ``weights`` and ``data`` are
    local paths (copies shipped to a worker, or the driver's own files); outputs go to ``out``."""
    return run_point(model, ratio, replace(cfg, data=data, weights=weights), Path(out), key).to_json()


def run_point(model_path: str, ratio: float, cfg: SweepConfig, here: Path, key: str) -> SweepPoint:
    """Prune (unless ratio is 0), fine-tune, evaluate, deploy FP32 and bench one point, in the folder ``here``."""

    started = time.perf_counter()
    point = prune_point(model_path, ratio, cfg, here)
    _exported, _scores, bench = measure_artifact(point, cfg.target, "fp32", here / cfg.target, cfg)
    scores = point.scores
    return SweepPoint(
        ratio=ratio, key=key, model=str(point.model), precision=scores.precision, recall=scores.recall,
        map50=scores.map50, map50_95=scores.map50_95, params=point.stats.params, macs=point.stats.macs,
        file_bytes=point.file_bytes, latency_ms=bench.latency.median_ms, fps=bench.throughput_fps, target=cfg.target,
        seconds=time.perf_counter() - started, finished=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        per_class=[asdict(c) for c in scores.per_class], shortcuts=cfg.shortcuts,
    )


def choose(points: list[SweepPoint], max_drop: float) -> Choice:
    """The fastest measured point whose mAP50 drop against the baseline is at most ``max_drop``.

    Never a point slower than the unpruned baseline (pruning that does not pay is no answer):
    when nothing qualifies, the reason says which ratio range to try next and whether fine-tuning
    or sparsity training is the likely fix.
    """
    base = next((p for p in points if p.ratio == BASELINE_RATIO), None)
    if base is None:
        return Choice(None, "no baseline point: nothing to compare against")
    pruned = sorted((p for p in points if p.ratio > 0), key=lambda p: p.ratio)
    accurate = [p for p in pruned if base.map50 - p.map50 <= max_drop]
    good = [p for p in accurate if p.fps > base.fps]
    if good:
        best = max(good, key=lambda p: (p.fps, -p.ratio))
        slower = [p for p in accurate if p.fps <= base.fps]
        also = (f"; ratio {', '.join(f'{p.ratio:g}' for p in slower)} kept the accuracy but ran no faster than "
                "the baseline" if slower else "")
        return Choice(best.ratio, f"fastest point within the drop: {best.fps:.1f} FPS vs {base.fps:.1f} unpruned "
                                  f"({best.fps / base.fps:.2f}x), mAP50 {best.map50:.3f} vs {base.map50:.3f} (drop "
                                  f"{base.map50 - best.map50:.3f} <= {max_drop}){also}")
    return Choice(None, _advice(base, pruned, accurate, max_drop))


def _advice(base: SweepPoint, pruned: list[SweepPoint], accurate: list[SweepPoint], max_drop: float) -> str:
    """Why no point qualifies, and what to try: a ratio range, fine-tuning, sparsity training."""
    if not pruned:
        return "only the baseline was measured; give --ratios"
    if accurate:  # accuracy held but speed did not come
        top = max(p.ratio for p in accurate)
        return (f"no pruned point ran faster than the unpruned model ({base.fps:.1f} FPS) within the drop: try "
                f"larger ratios than {top:g}, --round-to the device's channel multiple, or `prune --speedup` "
                "(latency-aware) so the removed channels are the ones that cost time")
    smallest = pruned[0]
    hint = ("add --finetune-epochs (e.g. 10) to recover accuracy" if not any("finetune" in p.model for p in pruned)
            else "run `edgeprune sparsify` first so pruning removes near-zero channels, then sweep with --method bn")
    return (f"every pruned point loses more than {max_drop} mAP50 (ratio {smallest.ratio:g} already drops "
            f"{base.map50 - smallest.map50:.3f}): try ratios below {smallest.ratio:g}, and {hint}")


def refine_ratio(points: list[SweepPoint], max_drop: float) -> float | None:
    """Midpoint between the last good and the first bad ratio, or None when there is no cliff."""
    base = next((p for p in points if p.ratio == BASELINE_RATIO), None)
    if base is None:
        return None
    ordered = sorted((p for p in points if p.ratio > 0), key=lambda p: p.ratio)
    good = BASELINE_RATIO
    for p in ordered:
        if base.map50 - p.map50 <= max_drop:
            good = p.ratio
        else:
            mid = round((good + p.ratio) / 2, 4)
            return None if mid in (good, p.ratio) else mid
    return None


def point_jobs(model_path: str, ratios: list[float], cfg: SweepConfig, run_dir: Path, key: str) -> list[Job]:
    """The executor jobs measuring ``ratios``: each ships the model, its .weights and the data set."""
    shipped = replace(cfg, data=None, weights=None)  # the files travel as the job's inputs, never as driver paths
    return [Job(point_job, {"ratio": r, "cfg": shipped, "key": key}, point_dir(run_dir, key, r),
                files={"model": model_path, "weights": cfg.weights}, data=cfg.data, trains=cfg.finetune_epochs > 0)
            for r in ratios]


def sweep(model_path: str, run_dir: str | Path, cfg: SweepConfig, executor: Executor = local_executor,
          on_point: Callable[[SweepPoint], None] | None = None, progress=None) -> SweepResult:
    """Run (or resume) a sweep of ``model_path`` into ``run_dir``.

    Args:
        model_path: Ultralytics checkpoint to prune.
        run_dir: folder for ``sweep.jsonl``, the pruned models, artifacts and bench lines.
        cfg: sweep settings.
        executor: runs a batch of points (:func:`local_executor`, or Ray's).
        on_point: called after each new point is recorded (the CLI prints it; tests interrupt).
        progress: optional ``progress(message)``.

    Raises:
        SweepError: bad ratios.
    """

    cfg.validate()
    cfg = source_for(model_path).fit_sweep(Path(model_path), cfg)
    run_dir = Path(run_dir).resolve()  # every path the run records is absolute, so it reads from anywhere
    model_path = str(Path(model_path).resolve())
    if cfg.data:
        cfg = replace(cfg, data=str(Path(cfg.data).resolve()))
    if cfg.weights:
        cfg = replace(cfg, weights=str(Path(cfg.weights).resolve()))
    run_dir.mkdir(parents=True, exist_ok=True)
    key = cfg.settings_key(model_path)
    known = {p.ratio: p for p in read_points(run_dir, key)}
    resumed = len(known)
    computed = 0

    def record(point: SweepPoint) -> None:
        nonlocal computed
        _append_point(run_dir, point)
        known[point.ratio] = point
        computed += 1
        if on_point:
            on_point(point)

    def run(ratios: list[float]) -> None:
        todo = [r for r in ratios if r not in known]
        if todo:
            if progress:
                progress(f"measuring ratios {', '.join(f'{r:g}' for r in todo)}")
            executor(point_jobs(model_path, todo, cfg, run_dir, key), lambda _job, result, _where: record(
                SweepPoint(**result)))

    run([BASELINE_RATIO] + sorted(set(cfg.ratios)))
    if cfg.refine:
        # Bisection points already in the file count, so a resumed sweep does not refine further.
        grid = {BASELINE_RATIO, *cfg.ratios}
        for _ in range(cfg.refine_steps - sum(r not in grid for r in known)):
            mid = refine_ratio(list(known.values()), cfg.max_drop)
            if mid is None or mid in known:
                break
            run([mid])
    points = sorted(known.values(), key=lambda p: p.ratio)
    choice = choose(points, cfg.max_drop)
    shortcut_points = []
    if cfg.shortcut_grid and choice.ratio is not None:
        shortcut_points, new = _shortcut_stage(model_path, cfg, run_dir, executor, choice.ratio, progress, on_point)
        computed += new
        choice = choose_with_shortcuts(points, shortcut_points, choice, cfg.max_drop)
    finetuned = None
    if cfg.finetune_chosen and choice.ratio is not None:
        chosen = next(p for p in [*points, *shortcut_points]
                      if p.ratio == choice.ratio and p.shortcuts == choice.shortcuts)
        finetuned = finetune_choice(chosen, cfg, run_dir, executor, progress)
    notes = []
    references: list[dict] = []
    try:
        executor([Job(references_job, {"cfg": replace(cfg, data=None, weights=None)}, run_dir / "references",
                      files={"model": model_path},
                      data=cfg.data)], lambda _job, result, _where: references.extend(result))
    except EdgepruneError as exc:  # the points stand; only the speedup base is missing
        notes.append(f"no speedup column: {exc}")
    result = SweepResult(str(run_dir), str(model_path), cfg, points, choice, computed, resumed,
                         references, notes, shortcut_points, finetuned)
    with atomic_output(run_dir / "sweep.json") as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2))
    return result


def _shortcut_stage(model_path: str, cfg: SweepConfig, run_dir: Path, executor, ratio: float, progress,
                    on_point) -> tuple[list[SweepPoint], int]:
    """The chosen percent again with each count of ``cfg.shortcut_grid`` residual units removed first.

    Each count is its own settings key (``shortcuts`` changes a point), so these points resume
    like the grid's and never mix with it. Returns the points and how many were computed now.
    """
    points, computed = [], 0
    for count in cfg.shortcut_grid:
        if count == cfg.shortcuts:
            continue
        variant = replace(cfg, shortcuts=count)
        key = variant.settings_key(model_path)
        have = [p for p in read_points(run_dir, key) if p.ratio == ratio]
        if not have:
            if progress:
                progress(f"measuring ratio {ratio:g} with {count} residual units removed")

            def done(_job, result, _where) -> None:
                point = SweepPoint(**result)
                _append_point(run_dir, point)
                have.append(point)
                if on_point:
                    on_point(point)
            executor(point_jobs(model_path, [ratio], variant, run_dir, key), done)
            computed += len(have)
        points.extend(have)
    return points, computed


def choose_with_shortcuts(points: list[SweepPoint], shortcut_points: list[SweepPoint], choice: Choice,
                          max_drop: float) -> Choice:
    """The fastest of the chosen point and its shortcut variants whose mAP50 drop stays within ``max_drop``."""
    base = next(p for p in points if p.ratio == BASELINE_RATIO)
    chosen = next(p for p in points if p.ratio == choice.ratio)
    good = [p for p in shortcut_points if base.map50 - p.map50 <= max_drop and p.fps > chosen.fps]
    if not good:
        tried = ", ".join(f"{p.shortcuts} (mAP50 {p.map50:.3f}, {p.fps:.1f} FPS)" for p in shortcut_points)
        return replace(choice, reason=f"{choice.reason}; removing residual units did not pay: {tried}")
    best = max(good, key=lambda p: p.fps)
    return Choice(best.ratio, f"{choice.reason}; then removing {best.shortcuts} residual units: {best.fps:.1f} FPS "
                              f"({best.fps / base.fps:.2f}x the unpruned model), mAP50 {best.map50:.3f} (drop "
                              f"{base.map50 - best.map50:.3f} <= {max_drop})", best.shortcuts)


def finetune_choice(point: SweepPoint, cfg: SweepConfig, run_dir: Path, executor: Executor,
                    progress=None) -> FinetunedChoice:
    """Fine-tune the chosen point's model for ``cfg.finetune_chosen`` epochs (an executor job) and score it.

    The point stays as measured; the fine-tuned model is reported beside it.
    """

    if progress:
        progress(f"fine-tuning the chosen model for {cfg.finetune_chosen} epochs")
    weights = companion_weights(point.model, None, "fine-tuning")
    job = Job(finetune_job, {"cfg": replace(cfg, data=None, weights=None), "ratio": point.ratio, "shortcuts": point.shortcuts,
                             "before": (point.map50, point.map50_95)},
              run_dir / "chosen-finetune" / f"r{point.ratio:.4f}-s{point.shortcuts}",
              files={"model": point.model, "weights": weights}, data=cfg.data, trains=True)
    results = []
    executor([job], lambda _job, result, _where: results.append(result))
    return FinetunedChoice(**results[0])


def finetune_job(out: Path, cfg: SweepConfig, ratio: float, shortcuts: int, before: tuple[float, float], model: str,
                 weights: str | None, data: str) -> dict:
    """Fine-tune ``model`` into ``out`` with its source's trainer (distilling where the source can) and score it."""

    source = source_for(model)
    result = source.finetune(Path(model), data, Path(out), TrainRequest(
        epochs=cfg.finetune_chosen, imgsz=cfg.imgsz, batch=cfg.batch, workers=cfg.workers, device=cfg.train_device,
        weights=weights))
    tuned, tuned_weights = (result.cfg, result.weights) if result.cfg else (result.weights, None)
    scores = source.evaluate(Path(tuned), data, imgsz=cfg.imgsz, batch=cfg.batch, weights=tuned_weights)
    return FinetunedChoice(ratio, shortcuts, tuned, tuned_weights, cfg.finetune_chosen, scores.map50,
                           scores.map50_95, *before).to_json()


def references_job(out: Path, cfg: SweepConfig, model: str, data: str) -> list[dict]:
    """:func:`measure_references` as an executor job (its exports and bench lines land in ``out``)."""

    return measure_references(model, replace(cfg, data=data), Path(out), step)


def measure_references(model_path: str, cfg: SweepConfig, out: Path, progress=None) -> list[dict]:
    """FPS of Ultralytics' FP32/FP16/INT8 exports of the unpruned model on ``cfg.target``, measured like the points.

    Their bench lines go to ``out``/bench.jsonl; the exports stay in edgeprune's cache for reuse.

    Empty when Ultralytics cannot export the model (a Darknet cfg) or to the target.
    """

    if cfg.target not in FORMATS or not source_for(model_path).exports_with_ultralytics(Path(model_path)):
        return []
    bench_cfg = BenchConfig(backend=cfg.target, device=cfg.device, duration=None, iterations=cfg.bench_iterations,
                            warmup=3)
    references = []
    for ref in build_ultralytics_exports(model_path, cfg.target, cfg.imgsz, cfg.data, progress=progress):
        if progress:
            progress(f"measuring {ref.label}")
        bench = measure_inference(open_runner(ref.artifact, bench_cfg), ref.artifact, bench_cfg)
        append_records(Path(out) / BENCH_FILE, [bench.to_json()])
        references.append({"label": ref.label, "precision": ref.precision, "artifact": ref.artifact,
                           "fps": bench.throughput_fps, "latency_ms": bench.latency.median_ms,
                           "executed_precision": bench.executed_precision})
    return references


def parse_ratios(text: str) -> tuple[float, ...]:
    """``0.1:0.9:0.1`` (start:stop:step, stop included) or ``0.5,0.7,0.9``."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise SweepError(f"--ratios {text}: the step must be positive, got {step:g}")
            if start > stop:
                raise SweepError(f"--ratios {text}: start {start:g} is above stop {stop:g} (START:STOP:STEP)")
            count = int(round((stop - start) / step)) + 1
            return tuple(round(start + i * step, 4) for i in range(count) if start + i * step <= stop + 1e-9)
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SweepError(f"--ratios must be START:STOP:STEP (e.g. 0.1:0.9:0.1) or a comma list, got {text!r}") from None
