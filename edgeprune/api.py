"""The functions behind every ``edgeprune`` command; the CLI parses options, calls one of these, and prints.

Each takes the command's options as keyword arguments with the command's defaults and returns
the result object the command prints (its ``--json`` is ``result.to_json()``). ``progress`` is
any object with ``update(message)`` and ``advance(done, total)`` (see :mod:`toolchain.core.progress`);
phases deep inside (export, calibration, evaluation, measurement) report to it.
Errors caused by the input raise :class:`toolchain.core.errors.EdgepruneError` with one sentence.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from toolchain.core.errors import EdgepruneError
from toolchain.core.progress import reporting_to

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TRAIN_SPLITS = ("train", "val")


def _check_inputs(imgsz: int | None = None, data: str | None = None, splits: tuple[str, ...] = TRAIN_SPLITS,
                  strict: bool = False) -> None:
    """The checks every function makes before any work: the input size, and the data set's splits read whole
    (``strict``: any unreadable image or label refuses the set instead of being skipped with a note)."""
    from toolchain.models.loading import check_stride

    check_stride(imgsz)
    if data:
        from toolchain.models.datasets import prepare_dataset

        prepare_dataset(data, splits, strict=strict)


def use_repository(path: str):
    """Make the YOLOv5/YOLOv7 repository at ``path`` (the folder holding ``models/yolo.py``) importable, so the
    checkpoints its ``train.py`` saved load. Returns the resolved folder."""
    from toolchain.models.sources.yolo_repo import use_repository as use

    return use(path)


def load(path: str, weights: str | None = None, imgsz: int | None = None):
    """Open any model source (Ultralytics checkpoint, pickled nn.Module, Darknet cfg + .weights).

    Returns the prepared :class:`toolchain.models.sources.ExportSource`: ``.module`` (a torch module),
    ``.input_hw``, ``.task``, ``.names``, ``.head`` (how to decode it) and ``.files`` (with sha256).
    """
    from toolchain.models.sources import prepare

    return prepare(path, imgsz, weights=weights)


def prune(model: str, out: str, ratio: float | None = None, *, layers: int = 0, method: str = "l1",
          global_pruning: bool = False, round_to: int | None = 8, steps: int = 1, imgsz: int | None = None,
          data: str | None = None, unstructured: bool = False, input_shape: tuple[int, ...] | None = None,
          latency_iters: int = 30, latency_target: float | None = None, speedup: float | None = None,
          target: str = "openvino", device: str = "CPU", dpu_friendly: bool = False, dpu_act: str = "hardswish",
          head_ratio: float | None = None, progress=None):
    """Structured (default), layer (``layers=K``) or unstructured pruning of ``model`` into ``out``.

    With ``latency_target`` (ms) or ``speedup`` (x the fastest Ultralytics export of the unpruned
    model) the per-block ratios are searched from latencies measured on ``target``/``device``
    instead of one ``ratio``. The saved checkpoint loads in plain Ultralytics. ``imgsz`` None =
    the size the checkpoint was trained at. ``head_ratio``: the task head's inner convs get this ratio
    instead (0: they keep their width). Returns :class:`toolchain.models.prune_job.PruneReport`.
    """
    from toolchain.models.pruning import PruneConfig
    from toolchain.models.sources import source_for
    from toolchain.pipelines.prune import torch_latency

    for_device = latency_target is not None or speedup is not None
    if for_device and (ratio is not None or layers or global_pruning or unstructured):
        raise EdgepruneError("--latency-target/--speedup choose the ratios themselves: drop --ratio, --layers, "
                             "--global and --unstructured")
    if head_ratio is not None and (unstructured or layers and not for_device):
        raise EdgepruneError("--head-ratio sets the head's share of a channel prune (--ratio, --speedup, "
                             "--latency-target); drop it with --layers and --unstructured")
    if not for_device and (ratio is None) == (not layers):
        raise EdgepruneError("give exactly one of --ratio (channels) and --layers (residual units)")
    cfg = PruneConfig(ratio=ratio or 0.0, method=method, global_pruning=global_pruning,
                      round_to=None if round_to == 1 else round_to, steps=steps, imgsz=imgsz, data=data,
                      head_ratio=head_ratio)
    found = None
    with reporting_to(progress):
        if for_device:
            from toolchain.pipelines.latency_aware import DeviceGoal, search

            found = search(model, DeviceGoal(target, device, latency_target, speedup, data), cfg,
                           progress.update if progress else None)
            cfg = dataclasses.replace(cfg, ratio=0.0, layer_ratios=found.layer_ratios, round_to=found.round_to)
            layers = found.depth  # residual units the search chose to remove first (0: width only)
        report = source_for(model).prune(Path(model), Path(out), cfg, unstructured=unstructured,
                                         input_shape=input_shape,
                                         latency=torch_latency(latency_iters) if latency_iters else None,
                                         progress=progress.advance if progress else None, layers=layers or 0)
        if dpu_friendly:
            from targets.vitis.dpu_rewrite import rewrite_saved_model

            rewrite = rewrite_saved_model(out, dpu_act)  # rewrites the saved pruned model in place, atomically
            report.notes += [f"dpu-friendly: {rewrite.describe()}", *rewrite.warnings]
    if found is not None:
        report.device_search = found.to_json()
        report.notes.append(f"pruned for {target} {device}: {found.describe()}")
    return report


def _train_request(**fields):
    from toolchain.models.sources import TrainRequest

    return TrainRequest(**fields)


def train(data: str, out: str, *, model: str = "yolov8n.yaml", epochs: int = 15, imgsz: int | None = None,
          batch: int = 16, workers: int = 2, seed: int = 0, lr0: float | None = None, device: str = "auto",
          weights: str | None = None, burn_in: int | None = None, converge: int = 0, from_scratch: bool = False,
          cache: bool = False, resume: bool = False, strict: bool = False, on_epoch: Callable | None = None):
    """Train ``model`` on ``data`` into ``out``: an Ultralytics yaml (offline, from scratch) or checkpoint, or
    a Darknet ``.cfg`` (from scratch, or from ``weights``; ``lr0``/``burn_in`` override its [net] keys).

    ``converge`` = N stops once mAP50-95 gained < 0.3 points over N epochs (``epochs`` is the cap);
    ``from_scratch`` trains a checkpoint's own (e.g. pruned) architecture from fresh weights. Options
    the model's source cannot honour are refused. ``resume`` continues the run a killed process
    (``kill -9``, the OOM killer) left staged beside ``out``, from its last completed epoch. Returns
    :class:`toolchain.models.training.TrainResult` (``.weights``: the best epoch; a cfg's ``.cfg``
    beside it and the per-epoch ``.history``).
    """
    _check_inputs(imgsz, data, strict=strict)
    from toolchain.models.sources import source_for

    request = _train_request(epochs=epochs, imgsz=imgsz, batch=batch, workers=workers, seed=seed, lr0=lr0,
                             device=device, cache=cache, burn_in=burn_in, weights=weights, converge=converge,
                             from_scratch=from_scratch, resume=resume)
    return source_for(model).train(Path(model), data, Path(out), request, on_epoch=on_epoch)


def finetune(checkpoint: str, data: str | None, out: str, *, epochs: int = 15, imgsz: int | None = None,
             batch: int = 16, teacher: str | None = "auto", distill_weight: float = 1.0, device: str = "auto",
             workers: int = 2, seed: int = 0, lr0: float | None = None, weights: str | None = None,
             burn_in: int | None = None, cache: bool = False, images: str | None = None, resume: bool = False,
             strict: bool = False, on_epoch: Callable | None = None):
    """Fine-tune a (pruned) model keeping its architecture; ``teacher="auto"`` distils from the
    unpruned model ``prune`` recorded, a path distils from that checkpoint, ``None`` trains on labels
    alone. A Darknet ``.cfg`` (e.g. ``cfg-prune``'s output) starts from ``weights`` (default: the
    .weights beside it) and learns from no teacher on labels.

    With ``images`` (any folder of images, no labels) the model learns its teacher's outputs instead
    (label-free distillation, every model source; a Darknet cfg's teacher is the cfg it was pruned
    from, its .weights beside it); ``data`` is then optional and, given, scores the
    result. ``resume`` as in :func:`train`. Returns :class:`toolchain.models.training.TrainResult`.
    """
    from dataclasses import replace

    from toolchain.models.sources import source_for

    if data is None and images is None:
        raise EdgepruneError("give --data DATA.yaml (labels) or --images DIR (label-free distillation)")
    _check_inputs(imgsz, data, TRAIN_SPLITS if images is None else ("val",), strict)
    request = _train_request(epochs=epochs, imgsz=imgsz, batch=batch, workers=workers, seed=seed, lr0=lr0,
                             device=device, cache=cache, burn_in=burn_in, weights=weights, teacher=teacher,
                             distill_weight=distill_weight, images=images, resume=resume)
    source = source_for(checkpoint)
    result = source.finetune(Path(checkpoint), data, Path(out), request, on_epoch=on_epoch)
    if images and data:  # no labels trained it; the data set scores it
        scores = source.evaluate(Path(result.cfg or result.weights), data, imgsz=imgsz,
                                 weights=result.weights if result.cfg else None)
        result = replace(result, map50=scores.map50, map50_95=scores.map50_95)
    return result

def sparsify(model: str, data: str, out: str, *, ratio: float | None = None, method: str | None = None,
             global_pruning: bool = False, round_to: int | None = None, head_ratio: float | None = None,
             hold: float | None = None, strength: float | None = None, layers: int = 0, epochs: int = 10,
             imgsz: int | None = None, batch: int = 16, workers: int = 2, lr0: float | None = None,
             warmup_epochs: float | None = None, device: str = "auto",
             weights: str | None = None, burn_in: int | None = None, seed: int = 0, cache: bool = False,
             resume: bool = False, strict: bool = False, on_epoch: Callable | None = None):
    """Sparsity-train ``model`` so that the prune that follows removes only dead channels.

    An Ultralytics checkpoint is prepared for the prune ``ratio`` (default 0.5) / ``method`` (``bn``) /
    ``global_pruning`` / ``round_to`` (8) / ``head_ratio`` (as ``prune``'s) describe: the BatchNorm scale
    and shift of exactly the channels that prune removes are ramped to zero while the rest trains, and
    held there for the last ``hold`` (0.4) of the run; with ``layers`` the ``layers`` residual units
    ``prune --layers`` removes are driven to identity the same way. A Darknet ``.cfg`` is trained from
    ``weights`` (default: beside it) with the L1 penalty ``strength`` (default 1e-3) as a proximal step. Returns
    :class:`toolchain.models.sparsity.SparsityResult` (γ snapshots and mAP per epoch, histograms);
    ``on_epoch`` gets each epoch's record; ``resume`` as in :func:`train` (the γ record then starts
    at the resumed epoch).
    """
    _check_inputs(imgsz, data, strict=strict)
    from toolchain.models.sources import SparsifyRequest, source_for

    request = SparsifyRequest(
        train=_train_request(epochs=epochs, imgsz=imgsz, batch=batch, workers=workers, seed=seed, lr0=lr0,
                             device=device, cache=cache, warmup_epochs=warmup_epochs, burn_in=burn_in,
                             weights=weights, resume=resume),
        ratio=ratio, method=method, global_pruning=global_pruning, round_to=round_to, head_ratio=head_ratio, hold=hold,
        strength=strength, layers=layers)
    return source_for(model).sparsify(Path(model), data, Path(out), request, on_epoch=on_epoch)


def optimize(model: str, data: str, out: str, *, ratio: float | None = None, speedup: float | None = None,
             budget_epochs: int = 40, method: str = "bn", global_pruning: bool = False, round_to: int | None = 8,
             head_ratio: float | None = None, teacher: str | None = "unpruned", target: str = "openvino",
             device: str = "CPU", train_device: str = "auto", imgsz: int | None = None, batch: int = 16,
             workers: int = 2, cache: bool = False, bench_seconds: float = 10.0, strict: bool = False, progress=None,
             log: Callable[[str], None] | None = None):
    """The whole recipe on an Ultralytics checkpoint: sparsify → prune (``ratio``, or the per-block ratios that
    reach ``speedup`` × the fastest Ultralytics export on ``target``/``device``) → fine-tune distilled from
    ``teacher`` → FP32 and INT8 artifacts → compared with Ultralytics' own exports of ``model`` in one run.
    ``budget_epochs`` is the training added in all; the task head's inner convs lose ``head_ratio`` (None:
    the recipe's :data:`toolchain.pipelines.optimize.HEAD_RATIO`). Resumable: rerun with the same ``out``.
    Returns :class:`toolchain.pipelines.optimize.OptimizeResult` (every step's result and the final table).
    """
    _check_inputs(imgsz, data, strict=strict)
    from toolchain.pipelines.optimize import HEAD_RATIO, OptimizeConfig
    from toolchain.pipelines.optimize import optimize as run_optimize

    cfg = OptimizeConfig(data=data, ratio=ratio, speedup=speedup, budget_epochs=budget_epochs, method=method,
                         global_pruning=global_pruning, round_to=None if round_to == 1 else round_to,
                         head_ratio=HEAD_RATIO if head_ratio is None else head_ratio, teacher=teacher,
                         target=target, device=device, train_device=train_device, imgsz=imgsz, batch=batch,
                         workers=workers, cache=cache, bench_seconds=bench_seconds)
    with reporting_to(progress):
        return run_optimize(model, out, cfg, log=log or (progress.update if progress else print))


def deploy(model: str, target: str, out: str, *, precision: str = "auto", data: str | None = None,
           imgsz: int | None = None, input_shape: tuple[int, ...] | None = None, max_drop: float | None = None,
           calib_images: int = 300, device: str | None = None, weights: str | None = None, dynamic: bool = False,
           decode: bool = False, bn_eps: float | None = None, evaluate: bool = True, strict: bool = False, progress=None,
           **target_options):
    """Export ``model`` for ``target`` (``openvino``, ``onnx``, ``vitis``) into the folder ``out``.

    ``precision="auto"`` builds every precision the target has, measures each on this device and
    keeps the fastest within ``max_drop``. The folder gets deploy.json: fidelity against PyTorch and,
    with ``data``, the artifact's own mAP. ``device`` None = the target's default. Other keyword
    arguments are the target's own options (``u8_input=True``, ``arch=...``). Returns
    :class:`targets.base.ExportResult`.
    """
    _check_inputs(imgsz, data, strict=strict)
    from targets.base import ExportConfig
    from targets.registry import get_target
    from toolchain.pipelines.deploy import deploy as run_deploy

    device = device or get_target(target).default_device
    fields = {f.name for f in dataclasses.fields(ExportConfig)}
    direct = {k: v for k, v in target_options.items() if k in fields}
    cfg = ExportConfig(precision=precision, imgsz=imgsz, data=data, calib_images=calib_images, max_drop=max_drop,
                       device=device, dynamic=dynamic, weights=weights, decode=decode, bn_eps=bn_eps,
                       options={k: v for k, v in target_options.items() if k not in fields}, **direct)
    with reporting_to(progress):
        return run_deploy(target, model, out, cfg, input_shape=input_shape, evaluate=evaluate)


def _bench_config(**fields):
    from targets.bench import BenchConfig

    iterations = fields.pop("iterations")
    duration = fields.pop("duration")
    cfg = BenchConfig(duration=None if iterations else duration, iterations=iterations, **fields)
    cfg.validate()
    return cfg


def stream(artifact: str, sources: list[str], *, out: str | None = None, video_dir: str | None = None,
           show: bool = False, splice: int | None = None, requests: int | None = None, device: str = "cpu",
           threads: int | None = None, capacity: int = 4, drop: str | None = None, conf: float | None = None,
           iou: float | None = None, progress: Callable | None = None):
    """Run a deployed ``artifact`` over video ``sources`` (files, image folders, camera indices, RTSP/HTTP URLs)
    to their end: detections per stream and frame as JSON lines at ``out``, annotated videos in
    ``video_dir``, windows with ``show``. ``splice`` tiles the streams into one square frame of that
    side. Returns :class:`toolchain.pipelines.stream.StreamReport`; for detections as they come,
    iterate :class:`edgeprune.Stream`.
    """
    from toolchain.pipelines.stream import run_stream

    return run_stream(artifact, sources, out=out, video_dir=video_dir, show=show, splice=splice, requests=requests,
                      device=device, threads=threads, capacity=capacity, drop=drop, conf=conf, iou=iou,
                      progress=progress)


def bench(artifact: str, *, device: str = "cpu", hint: str = "latency", batch: int = 1, iterations: int | None = None,
          duration: float = 10.0, threads: int | None = None, requests: int | None = None,
          infer_precision: str = "auto", warmup: int = 5, e2e: bool = False, streams: int = 0, splice: int | None = None, source: str = "synthetic",
          frame_interval: int = 1, imgsz: int | None = None, backend: str = "auto", weights: str | None = None,
          progress=None):
    """Latency percentiles and throughput of ``artifact`` on this device, benchmark_app's way.

    ``batch`` images per inference (FPS counts images); ``e2e`` adds decode+letterbox+NMS;
    ``streams=4, splice=832`` measures four streams tiled into one input. Every result names the
    CPU, threads, runtime version and the precision executed. Returns a list of
    :class:`targets.bench.BenchResult`.
    """
    _check_inputs(imgsz)
    from toolchain.pipelines.bench import run_bench

    cfg = _bench_config(backend=backend, device=device, hint=hint, requests=requests, threads=threads,
                        precision=infer_precision, duration=duration, iterations=iterations, warmup=warmup, batch=batch)
    with reporting_to(progress):
        return run_bench(artifact, cfg, e2e=e2e, streams=streams, splice=splice, source=source,
                         frame_interval=frame_interval, imgsz=imgsz, weights=weights)


def compare(artifacts: Sequence[str], *, unpruned: str | None = None, data: str | None = None, device: str = "cpu",
            hint: str = "latency", batch: int = 1, iterations: int | None = None, duration: float = 10.0,
            threads: int | None = None, requests: int | None = None, infer_precision: str = "auto", warmup: int = 5,
            e2e: bool = False, imgsz: int | None = None, backend: str = "auto", progress=None):
    """Measure several artifacts in one process with the same settings.

    With ``unpruned`` (the unpruned .pt), Ultralytics' own FP32/FP16/INT8 exports of it (INT8 with
    ``data``) are built for each runtime compared and measured alike, and every ratio is against
    the fastest of them. Returns :class:`toolchain.pipelines.bench.Comparison`.
    """
    _check_inputs(imgsz)
    from toolchain.pipelines.bench import compare_with_ultralytics

    cfg = _bench_config(backend=backend, device=device, hint=hint, requests=requests, threads=threads,
                        precision=infer_precision, duration=duration, iterations=iterations, warmup=warmup, batch=batch)
    with reporting_to(progress):
        return compare_with_ultralytics(list(artifacts), cfg, unpruned=unpruned, data=data, imgsz=imgsz, e2e=e2e,
                                        progress=progress.update if progress else None)


def evaluate(model: str, data: str, *, imgsz: int | None = None, batch: int = 16, split: str = "val",
             backend: str = "auto", device: str = "cpu", infer_precision: str = "auto", weights: str | None = None,
             strict: bool = False, progress=None):
    """mAP of a checkpoint or of a deployed artifact run by its own runtime.

    ``backend="auto"``: the Ultralytics validator for .pt checkpoints; artifacts (and
    ``backend="torch"``) go through edgeprune's pipeline, and Ultralytics-loadable artifacts are
    also run through the Ultralytics validator, with the difference and its reason. Returns
    :class:`toolchain.models.validator.EvalResult` or :class:`toolchain.pipelines.artifact_eval.ArtifactEval`.
    """
    _check_inputs(imgsz, data, (split,), strict)
    from toolchain.core.errors import InputFileError
    from toolchain.models.sources import check_weights, source_for

    try:
        source = source_for(model)
    except InputFileError:  # a deployed artifact: no model source claims it
        source = None
    validated = source is not None and source.native_validator
    use_validator = backend == "ultralytics" or (backend == "auto" and validated)
    if use_validator and not validated:
        raise EdgepruneError(f"the Ultralytics validator runs .pt checkpoints; {model} is evaluated with "
                             "--backend auto")
    check_weights(model, weights)
    with reporting_to(progress):
        if use_validator:
            return source.evaluate(Path(model), data, imgsz=imgsz, batch=batch, split=split)
        from toolchain.pipelines.artifact_eval import evaluate_artifact

        return evaluate_artifact(model, data, device=device, precision=infer_precision, imgsz=imgsz, split=split,
                                 weights=weights, validate=True)


def sweep(model: str, data: str, out: str, *, ratios: Sequence[float] = DEFAULT_RATIOS, target: str = "openvino",
          max_drop: float = 0.02, finetune_epochs: int = 0, method: str = "l1", global_pruning: bool = False,
          round_to: int | None = 8, head_ratio: float | None = None, steps: int = 1, imgsz: int | None = None,
          refine: bool = False, refine_steps: int = 3, bench_iterations: int = 50, device: str = "cpu",
          train_device: str = "auto",
          weights: str | None = None,
          shortcuts: int = 0, keep: float = 0.01, shortcut_grid: Sequence[int] = (), finetune_chosen: int = 0,
          executor: str = "local", ray_address: str | None = None,
          strict: bool = False, on_point: Callable | None = None, progress=None):
    """Prune at each ratio, evaluate and benchmark every point on ``target``, and choose the fastest
    point within ``max_drop`` that beats the unpruned model (resumable: rerun with the same ``out``).
    A Darknet cfg's chosen percent is then tried with each ``shortcut_grid`` count of residual
    units removed; ``finetune_chosen`` epochs fine-tune the final choice (``result.finetuned``).
    ``head_ratio`` (as ``prune``'s) gives the task head its own share at every point: a sweep of a model
    sparsified with ``sparsify --head-ratio`` must cut the head as that did.

    ``on_point(point)`` is called as each point is measured. Returns :class:`toolchain.pipelines.sweep.SweepResult`.
    """
    _check_inputs(imgsz, data, TRAIN_SPLITS if finetune_epochs or finetune_chosen else ("val",), strict)
    from toolchain.pipelines.executors import local_executor, ray_executor
    from toolchain.pipelines.sweep import SweepConfig
    from toolchain.pipelines.sweep import sweep as run_sweep

    cfg = SweepConfig(data=data, ratios=tuple(ratios), method=method, global_pruning=global_pruning,
                      round_to=None if round_to == 1 else round_to, head_ratio=head_ratio, steps=steps,
                      finetune_epochs=finetune_epochs,
                      target=target, imgsz=imgsz, max_drop=max_drop, refine=refine, refine_steps=refine_steps,
                      bench_iterations=bench_iterations, device=device, train_device=train_device, weights=weights,
                      shortcuts=shortcuts, keep=keep,
                      shortcut_grid=tuple(shortcut_grid), finetune_chosen=finetune_chosen)
    if ray_address and executor != "ray":
        raise EdgepruneError("--ray-address is ignored without --executor ray; drop it")
    run = ray_executor(ray_address) if executor == "ray" else local_executor
    with reporting_to(progress):
        return run_sweep(model, out, cfg, executor=run, progress=progress.update if progress else None,
                         on_point=on_point)


def autotune(model: str, data: str, out: str, *, ratios: Sequence[float] = (0.3, 0.5, 0.7),
             precisions: Sequence[str] = ("fp32", "fp16", "int8"), targets: Sequence[str] = ("openvino", "onnx"),
             max_drop: float = 0.02, finetune_epochs: int = 0, method: str = "l1", round_to: int | None = 8,
             imgsz: int | None = None, bench_iterations: int = 50, calib_images: int = 300, references: bool = True,
             device: str = "cpu", train_device: str = "auto", weights: str | None = None, executor: str = "local",
             ray_address: str | None = None, strict: bool = False, on_points: Callable | None = None,
             progress=None):
    """Prune at each ratio (once), deploy every (target, precision), evaluate each artifact by running it and
    benchmark it; returns :class:`toolchain.pipelines.autotune.AutotuneResult` with the Pareto front per target and the
    recommended point (fastest within ``max_drop`` mAP50 of its target's unpruned FP32 artifact).
    Resumable: rerun with the same ``out``. ``executor="ray"`` ships files to the cluster at ``ray_address``."""
    _check_inputs(imgsz, data, strict=strict)
    from toolchain.pipelines.autotune import AutotuneConfig
    from toolchain.pipelines.autotune import autotune as run_autotune
    from toolchain.pipelines.executors import local_executor, ray_executor
    from toolchain.pipelines.sweep import SweepConfig

    sweep_cfg = SweepConfig(data=data, ratios=tuple(ratios), method=method, round_to=None if round_to == 1 else round_to,
                            finetune_epochs=finetune_epochs, imgsz=imgsz, max_drop=max_drop,
                            bench_iterations=bench_iterations, device=device, train_device=train_device,
                            weights=weights)
    config = AutotuneConfig(sweep_cfg, tuple(precisions), tuple(targets), calib_images, references)
    run = ray_executor(ray_address) if executor == "ray" else local_executor
    with reporting_to(progress):
        return run_autotune(model, out, config, executor=run, on_points=on_points,
                            progress=progress.update if progress else None)


def synth(out: str, *, train: int = 400, val: int = 100, imgsz: int = 256, classes: int = 3, seed: int = 0,
          progress=None):
    """Write a deterministic synthetic detection data set in YOLO format to ``out`` (what the demo and tests use).
    Returns :class:`toolchain.core.synth.SynthResult` (its ``data_yaml``, image and object counts)."""
    from toolchain.core.synth import SynthConfig, generate

    with reporting_to(progress):
        return generate(out, SynthConfig(train=train, val=val, imgsz=imgsz, classes=classes, seed=seed))


def cfg2py(cfg: str, out: str, *, weights: str | None = None, bn_eps: float | None = None):
    """Write a standalone PyTorch module (it imports only torch) for the Darknet ``cfg``; with ``weights`` also its
    state dict beside it. Returns :class:`cfg_codegen.build.CodegenResult`."""
    from cfg_codegen.build import write_model_py

    return write_model_py(cfg, out, weights, *([] if bn_eps is None else [bn_eps]))


def cfg_prune(cfg: str, weights: str, out: str, *, global_percent: float | None = None, keep: float = 0.01,
              shortcuts: int = 0):
    """Prune a Darknet cfg + .weights by global BN-gamma percent and/or remove ``shortcuts`` residual units;
    writes OUT/pruned.cfg + pruned.weights. Returns :class:`cfg_codegen.prune.PruneReport`."""
    from cfg_codegen.prune import PruneConfig, prune_darknet

    if global_percent is None and shortcuts == 0:
        raise EdgepruneError("nothing to prune: give --global-percent P and/or --shortcuts N")
    return prune_darknet(cfg, weights, out, PruneConfig(global_percent, keep, shortcuts))


def preflight(model: str, *, target: str = "kv260", imgsz: int | None = None,
              input_shape: tuple[int, ...] | None = None, weights: str | None = None, progress=None):
    """Which layers of ``model`` the DPU of ``target`` runs, why the others fall back to the CPU, and the fixes
    (no Docker needed). Returns :class:`targets.vitis.preflight.PreflightReport`."""
    from targets.vitis.preflight import preflight as run_preflight

    with reporting_to(progress):
        return run_preflight(model, target, imgsz, input_shape, weights)


def board_bench(host: str, bundle: str, *, remote_dir: str = "edgeprune_kv260", mode: str = "inference",
                sources: Sequence[str] = (), threads: int = 1, iterations: int | None = None, duration: float = 10.0,
                warmup: int = 5, port: int | None = None, progress=None):
    """Run a ``deploy vitis`` bundle on the board at ``host`` over SSH and return its own measurement."""
    from targets.vitis.board import BoardBenchConfig
    from targets.vitis.board import board_bench as run_board_bench

    cfg = BoardBenchConfig(host=host, bundle=Path(bundle), remote_dir=remote_dir, mode=mode, threads=threads,
                           iterations=iterations, duration=duration, warmup=warmup, sources=tuple(sources), port=port)
    with reporting_to(progress):
        return run_board_bench(cfg)


def dpu_rewrite(model: str, out: str, *, act: str | None = None, weights: str | None = None):
    """Replace activations the DPU lacks in ``model`` (a .pt also gets its head's decode moved to post-processing),
    saved to ``out`` in the model's own format. ``act`` None: hardswish for .pt models, leaky for Darknet cfgs.
    Returns :class:`targets.vitis.dpu_rewrite.RewriteReport`."""
    from targets.vitis.dpu_rewrite import dpu_rewrite as run_rewrite

    return run_rewrite(model, out, act, weights)


def report(run_dir: str, curves: bool = True, progress=None):
    """Write ``report.html`` and ``report.md`` for a sweep run folder.

    Returns :class:`toolchain.pipelines.report.ReportResult`."""
    from toolchain.pipelines.report import build_report

    with reporting_to(progress):
        return build_report(run_dir, curves=curves, progress=progress.update if progress else None)
