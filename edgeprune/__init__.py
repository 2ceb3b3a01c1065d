"""edgeprune's Python API: prune a detector so it really gets faster, prove it, deploy it.

Each function does what the CLI command of the same name does, with the same defaults, and
returns the result object the command prints (``--json`` is its ``to_json()``)::

    import edgeprune

    report = edgeprune.prune("yolov8n.pt", "pruned.pt", ratio=0.3)
    trained = edgeprune.finetune("pruned.pt", "data.yaml", "runs/ft", epochs=10)
    built = edgeprune.deploy(trained.weights, "openvino", "ir", data="data.yaml")
    [speed] = edgeprune.bench(built.artifact, iterations=100)

Errors caused by the input (a damaged file, a wrong option) are :class:`EdgepruneError` with one
sentence naming the file or option; the CLI prints that sentence and exits 2.
"""

from __future__ import annotations

import os

from toolchain.errors import EdgepruneError

os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing is downloaded at run time

__all__ = ["EdgepruneError", "bench", "deploy", "evaluate", "finetune", "load", "prune", "report", "sweep"]


def load(path: str, weights: str | None = None, imgsz: int | None = None):
    """Open any model source (Ultralytics checkpoint, pickled nn.Module, Darknet cfg + .weights).

    Returns the prepared :class:`toolchain.sources.ExportSource`: ``.module`` (a torch module),
    ``.input_hw``, ``.task``, ``.names``, ``.head`` (how to decode it) and ``.files`` (with sha256).
    """
    from toolchain.sources import prepare

    return prepare(path, imgsz, weights=weights)


def prune(model: str, out: str, ratio: float | None = None, *, layers: int = 0, method: str = "l1",
          global_pruning: bool = False, round_to: int | None = 8, steps: int = 1, imgsz: int | None = None,
          data: str | None = None, unstructured: bool = False, input_shape: tuple[int, ...] | None = None,
          latency_iters: int = 50, progress=None):
    """Structured (default), layer (``layers=K``) or unstructured pruning of ``model`` into ``out``.

    The saved checkpoint loads in plain Ultralytics. ``imgsz`` None = the size the checkpoint was
    trained at. Returns :class:`toolchain.prune_run.PruneReport` (params, MACs, sizes, latency
    before and after).
    """
    from toolchain.prune_run import prune_file
    from toolchain.pruning import PruneConfig

    if ratio is None and not layers:
        raise EdgepruneError("give ratio= (channels) or layers= (residual units)")
    cfg = PruneConfig(ratio=ratio or 0.0, method=method, global_pruning=global_pruning,
                      round_to=None if round_to == 1 else round_to, steps=steps, imgsz=imgsz, data=data)
    return prune_file(model, out, cfg, unstructured=unstructured, input_shape=input_shape,
                      latency_iters=latency_iters, progress=progress, layers=layers)


def finetune(checkpoint: str, data: str, out: str, *, epochs: int = 15, imgsz: int | None = None, batch: int = 16,
             teacher: str | None = "auto", distill_weight: float = 1.0, device: str = "auto", workers: int = 2,
             seed: int = 0, lr0: float | None = None):
    """Fine-tune a (pruned) checkpoint keeping its architecture; ``teacher="auto"`` distils from the
    unpruned model ``prune`` recorded, ``None`` trains on labels alone. Returns
    :class:`toolchain.training.TrainResult` (``.weights`` is the best checkpoint)."""
    from toolchain.loading import load_model
    from toolchain.training import AUTO_TEACHER, TrainConfig, finetune as run_finetune

    imgsz = imgsz or load_model(checkpoint).train_imgsz or 640
    cfg = TrainConfig(epochs=epochs, imgsz=imgsz, batch=batch, workers=workers, seed=seed, lr0=lr0, device=device)
    return run_finetune(checkpoint, data, out, cfg, AUTO_TEACHER if teacher == "auto" else teacher, distill_weight)


def deploy(model: str, target: str, out: str, *, precision: str = "auto", data: str | None = None,
           imgsz: int | None = None, max_drop: float | None = None, calib_images: int = 300, device: str = "cpu",
           weights: str | None = None, dynamic: bool = False, evaluate: bool = True, **target_options):
    """Export ``model`` for ``target`` (``openvino``, ``onnx``, ``vitis``) into the folder ``out``.

    ``precision="auto"`` builds every precision the target has, measures each on this device and
    keeps the fastest within ``max_drop``. The folder gets deploy.json: fidelity against PyTorch and,
    with ``data``, the artifact's own mAP. Returns :class:`targets.base.ExportResult`.
    """
    from targets.base import ExportConfig
    from targets.deploy import deploy as run_deploy

    cfg = ExportConfig(precision=precision, imgsz=imgsz, data=data, calib_images=calib_images, max_drop=max_drop,
                       device=device, dynamic=dynamic, weights=weights, options=target_options)
    return run_deploy(target, model, out, cfg, evaluate=evaluate)


def bench(artifact: str, *, device: str = "cpu", hint: str = "latency", iterations: int | None = None,
          duration: float = 10.0, threads: int | None = None, requests: int | None = None, precision: str = "auto",
          warmup: int = 5, e2e: bool = False, imgsz: int | None = None, backend: str = "auto", batch: int = 1):
    """Latency percentiles and throughput of ``artifact`` on this device (the precision it executed
    is reported). Returns a list of :class:`targets.bench.BenchResult` (inference only, then end
    to end with ``e2e``)."""
    from targets.bench import BenchConfig
    from targets.bench_run import run_bench

    cfg = BenchConfig(backend=backend, device=device, hint=hint, requests=requests, threads=threads,
                      precision=precision, duration=None if iterations else duration, iterations=iterations,
                      warmup=warmup, batch=batch)
    cfg.validate()
    return run_bench(artifact, cfg, e2e=e2e, imgsz=imgsz)


def evaluate(model: str, data: str, *, imgsz: int | None = None, split: str = "val", device: str = "cpu",
             weights: str | None = None):
    """mAP of a checkpoint (Ultralytics validator) or of a deployed artifact (run by its runtime).

    Returns :class:`toolchain.validator.EvalResult` or :class:`toolchain.artifact_eval.ArtifactEval`.
    """
    from pathlib import Path

    if Path(model).suffix.lower() in (".pt", ".pth"):
        from toolchain.validator import evaluate as run_validator

        return run_validator(model, data, imgsz=imgsz, split=split)
    from toolchain.artifact_eval import evaluate_artifact

    return evaluate_artifact(model, data, device=device, imgsz=imgsz, split=split, weights=weights)


def sweep(model: str, data: str, out: str, *, ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
          target: str = "openvino", max_drop: float = 0.02, finetune_epochs: int = 0, method: str = "l1",
          imgsz: int | None = None, **options):
    """Prune at each ratio, evaluate and benchmark every point on ``target``, and choose the fastest
    point within ``max_drop`` (resumable: rerun with the same ``out``). Returns
    :class:`toolchain.sweep.SweepResult`; other :class:`toolchain.sweep.SweepConfig` fields go in ``options``."""
    from toolchain.sweep import SweepConfig, sweep as run_sweep

    cfg = SweepConfig(data=data, ratios=tuple(ratios), target=target, max_drop=max_drop,
                      finetune_epochs=finetune_epochs, method=method, imgsz=imgsz, **options)
    return run_sweep(model, out, cfg)


def report(run_dir: str, curves: bool = True):
    """Write ``report.html`` and ``report.md`` for a sweep run folder; returns :class:`toolchain.report.ReportResult`."""
    from toolchain.report import build_report

    return build_report(run_dir, curves=curves)
