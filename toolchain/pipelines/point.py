"""One point of a search: prune → fine-tune → evaluate, then deploy → evaluate the artifact → bench.

Why one module: ``sweep`` (one FP32 artifact per ratio) and ``autotune`` (every target and
precision per ratio) measure the same thing at each ratio, and must measure it the same way for
any model source: the source prunes, fine-tunes and scores the model (:class:`~toolchain.models.sources.ModelSource`),
the targets build and run the artifact. Neither caller asks which kind of model it holds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from targets.base import ExportConfig
from targets.bench import BenchConfig, measure_inference
from targets.registry import get_target
from toolchain.core.jsonl import append_records
from toolchain.models.sources import TrainRequest, source_for
from toolchain.pipelines.artifact_eval import evaluate_artifact
from toolchain.pipelines.bench import open_runner
from toolchain.pipelines.deploy import deploy

BENCH_FILE = "bench.jsonl"


@dataclass
class PrunedModel:
    """What one ratio produced: the model file (and its weights file, for sources that keep them apart),
    the source's scores of it on the data, and its size."""

    model: Path
    weights: str | None
    scores: object  # toolchain.models.validator.EvalResult
    stats: object  # toolchain.models.model_stats.ModelStats

    @property
    def file_bytes(self) -> int:
        return sum(Path(f).stat().st_size for f in (self.model, self.weights) if f)


def prune_point(model_path: str, ratio: float, settings, here: Path) -> PrunedModel:
    """Prune ``model_path`` at ``ratio`` into ``here`` (a copy at ratio 0), fine-tune it ``settings.finetune_epochs``
    epochs, and score it with its source; ``settings`` is a :class:`toolchain.pipelines.sweep.SweepConfig`."""

    source = source_for(model_path)
    model, weights = source.prune_point(Path(model_path), here, ratio, settings, weights=settings.weights)
    if ratio and settings.finetune_epochs:
        tuned = source.finetune(model, settings.data, here / "finetune", TrainRequest(
            epochs=settings.finetune_epochs, imgsz=settings.imgsz, batch=settings.batch, workers=settings.workers,
            device=settings.train_device, weights=weights))
        shutil.copyfile(tuned.weights, weights or model)  # the fine-tuned weights become the point's
    scores = source.evaluate(model, settings.data, imgsz=settings.imgsz, batch=settings.batch, weights=weights)
    return PrunedModel(model, weights, scores, source.stats(model, settings.imgsz, weights))


def measure_artifact(point: PrunedModel, target: str, precision: str, folder: Path, settings, data: str | None = None,
                     calib_images: int = 300, evaluate: bool = False):
    """Deploy ``point`` for ``target`` at ``precision`` into ``folder``, score the artifact by running it
    (``evaluate``), and bench it (inference only, ``settings.bench_iterations`` after 3 warm-up runs).

    Returns ``(export result, artifact scores or None, bench result)``; the bench line is appended to
    ``folder``/bench.jsonl.
    """

    device = get_target(target).check_device(settings.device)
    exported = deploy(target, str(point.model), folder,
                      ExportConfig(precision=precision, imgsz=settings.imgsz, data=data, weights=point.weights,
                                   calib_images=calib_images, device=device), evaluate=False)
    scores = evaluate_artifact(exported.artifact, data, device=device, imgsz=settings.imgsz) if evaluate else None
    bench_cfg = BenchConfig(backend=target, device=device, duration=None, iterations=settings.bench_iterations,
                            warmup=3)
    bench = measure_inference(open_runner(exported.artifact, bench_cfg), exported.artifact, bench_cfg)
    append_records(Path(folder) / BENCH_FILE, [bench.to_json()])
    return exported, scores, bench
