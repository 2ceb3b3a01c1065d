"""Open an artifact for benchmarking and run the requested measurements.

Why apart from the CLI: the sweep (issue 7) and the demo measure through the same calls, and
``bench compare`` runs several artifacts in one process with identical settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from targets.artifacts import read_metadata, resolve_artifact
from targets.bench import BenchConfig, BenchResult, measure_inference
from targets.e2e import Detector, measure_e2e, measure_streams
from targets.frame_sources import open_source
from targets.registry import get_target, target_for_artifact
from targets.ultralytics_exports import FORMATS, best_reference, build_ultralytics_exports
from toolchain.core.errors import EdgepruneError
from toolchain.models.loading import load_model
from toolchain.models.sources import check_weights, default_imgsz


def open_runner(artifact: str | Path, cfg: BenchConfig, input_hw: tuple[int, int] | None = None,
                weights: str | None = None, input_in_graph: bool = False):
    """The runner for ``artifact`` with the bench settings applied (``weights``: a Darknet cfg's .weights).

    ``input_in_graph``: where the runtime can (OpenVINO's PrePostProcessor), the runner takes the
    letterboxed uint8 BGR image and converts it inside the graph.
    """

    path = resolve_artifact(Path(artifact))
    target = target_for_artifact(path) if cfg.backend == "auto" else get_target(cfg.backend)
    if not target.owns(path):
        raise EdgepruneError(f"{artifact} is not a {cfg.backend} artifact")
    check_weights(path, weights)
    extra = {"weights": weights} if weights is not None else {}
    if input_in_graph and target.name == "openvino":
        extra["u8_input"] = True
    return target.open(path, cfg.device, cfg.precision, threads=cfg.threads, hint=cfg.hint, requests=cfg.requests,
                       input_hw=input_hw, batch=cfg.batch, **extra)


def class_count(artifact: str | Path, runner) -> int:
    """Classes predicted by a detector artifact (its head description, metadata names, else the output width - 4)."""
    if runner.head and "nc" in runner.head:
        return int(runner.head["nc"])
    path = resolve_artifact(Path(artifact))
    if path.suffix in (".pt", ".pth"):
        loaded = load_model(path)
        if loaded.nc:
            return loaded.nc
    names = read_metadata(path).get("names")
    if names:
        return len(names)
    import numpy as np

    out = runner.predict(np.zeros(runner.info.input_shape, np.float32))
    return int(out.shape[1]) - 4


def run_bench(artifact: str, cfg: BenchConfig, e2e: bool = False, streams: int = 0, splice: int | None = None,
              source: str = "synthetic", frame_interval: int = 1, imgsz: int | None = None,
              weights: str | None = None) -> list[BenchResult]:
    """Inference-only, then (if asked) end-to-end or multi-stream, all with the same settings."""
    size = (imgsz, imgsz) if imgsz else None
    if cfg.batch != 1 and (e2e or streams or splice):
        raise EdgepruneError(f"--batch {cfg.batch} measures inference only; end-to-end and multi-stream runs feed one "
                             "frame per inference (drop --batch, or --e2e/--streams)")
    if streams or splice:
        if streams != 4 or not splice:
            raise EdgepruneError("multi-stream mode is --streams 4 --splice SIZE (four tiles in a 2x2 grid), "
                                 f"got --streams {streams} --splice {splice}")
        if splice % 64:
            raise EdgepruneError(f"--splice must be a multiple of 64 (two tiles of a multiple of 32), got {splice}")
        tile = splice // 2
        single = open_runner(artifact, cfg, (tile, tile), weights)
        spliced = open_runner(artifact, cfg, (splice, splice), weights)
        nc = class_count(artifact, single)
        sources = [open_source(source, tile, seed=i) for i in range(streams)]
        return [
            measure_inference(single, artifact, cfg),
            measure_inference(spliced, artifact, cfg),
            measure_streams(Detector(spliced, nc), Detector(single, nc), artifact, cfg, sources, tile),
        ]
    runner = open_runner(artifact, cfg, size, weights)
    results = [measure_inference(runner, artifact, cfg)]
    if e2e:
        results.append(_measure_e2e(runner, artifact, cfg, source, frame_interval))
    return results


def _measure_e2e(runner, artifact: str, cfg: BenchConfig, source: str = "synthetic", frame_interval: int = 1):
    """End-to-end FPS of an opened runner on frames of ``source`` at its input size: one frame after another
    (with each stage's time), then pipelined as ``edgeprune stream`` runs it, for the same duration."""
    side = int(runner.info.input_shape[-1])
    detector = Detector(runner, class_count(artifact, runner))
    result = measure_e2e(detector, artifact, cfg, open_source(source, side), frame_interval)
    if frame_interval == 1:
        result.extra.update(_pipelined(detector, cfg, open_source(source, side)))
    return result


def _pipelined(detector: Detector, cfg: BenchConfig, source) -> dict:
    """Frames per second through :class:`targets.stream.StreamRunner` (decode thread, request queue)."""
    from targets.stream import StreamRunner

    stream = StreamRunner(detector, [source], requests=cfg.requests, drop="never")
    started = time.perf_counter()
    limit = (lambda: stream.stats[0].frames_detected >= cfg.iterations) if cfg.iterations else \
        (lambda: time.perf_counter() - started >= cfg.duration)
    stream.run(lambda result: None, should_stop=limit)
    return {"pipelined_fps": stream.stats[0].frames_detected / stream.wall_s, "pipelined_requests": stream.requests,
            "pipelined_bound_by": stream.bound()}


@dataclass
class Comparison:
    """Several artifacts measured in one run with the same settings, and what their speed is divided by.

    ``base`` is the index of the fastest Ultralytics export of the unpruned model when references
    were measured (what a user would pick instead), else the first artifact.
    """

    labels: list[str]
    results: list[BenchResult]
    references: list[int] = field(default_factory=list)  # indices of the Ultralytics exports
    base: int = 0
    e2e: list = field(default_factory=list)  # end-to-end results in the same order, when asked
    failed: list[tuple[str, str]] = field(default_factory=list)  # (artifact, why) of those that could not run

    def ratio(self, index: int) -> float:
        return self.results[index].throughput_fps / self.results[self.base].throughput_fps

    @property
    def base_label(self) -> str:
        return self.labels[self.base]

    def to_json(self) -> dict:
        rows = []
        for i, (label, result) in enumerate(zip(self.labels, self.results)):
            row = {"label": label, "is_reference": i in self.references, "ratio_to_base": self.ratio(i),
                   **result.to_json()}
            if self.e2e:
                row["e2e_fps"] = self.e2e[i].throughput_fps
                row["e2e_ratio_to_base"] = self.e2e[i].throughput_fps / self.e2e[self.base].throughput_fps
            rows.append(row)
        return {"base": self.base_label, "base_is_ultralytics_export": bool(self.references), "rows": rows,
                "failed": [{"artifact": a, "error": why} for a, why in self.failed]}


def compare(artifacts: list[str], cfg: BenchConfig, input_hw: tuple[int, int] | None = None,
            references: list | None = None, progress=None, e2e: bool = False) -> Comparison:
    """Measure ``references`` (Ultralytics exports, :mod:`targets.ultralytics_exports`) and ``artifacts`` alike.

    Every runner is opened and measured in this process with ``cfg``; the base of the ratios is
    the fastest reference (:func:`targets.ultralytics_exports.best_reference`), else the first
    artifact. With ``e2e`` each is also measured end to end (decode, resize, infer, box decode,
    NMS) on the same synthetic frames.

    An artifact that cannot be opened (damaged, another runtime's, a wrong size) does not lose the
    others' results: it is listed in ``Comparison.failed`` with the reason. Raises
    :class:`EdgepruneError` only when none could run.
    """

    if e2e and cfg.batch != 1:
        raise EdgepruneError(f"--batch {cfg.batch} measures inference only; end-to-end runs feed one frame per "
                             "inference (drop --batch or --e2e)")
    references = references or []
    items = [(ref.label, ref.artifact) for ref in references] + [(str(a), str(a)) for a in artifacts]
    measured, failed = [], []
    for i, (label, artifact) in enumerate(items):
        if progress:
            progress(f"benchmarking {i + 1}/{len(items)}: {label}")
        try:
            runner = open_runner(artifact, cfg, input_hw)
        except EdgepruneError as exc:
            if i < len(references):
                raise
            failed.append((label, str(exc)))
            continue
        result = measure_inference(runner, artifact, cfg)
        measured.append((label, result, _measure_e2e(runner, artifact, cfg) if e2e else None))
    if not measured:
        raise EdgepruneError("no artifact could be run: " + "; ".join(why for _, why in failed))
    results = [r for _, r, _ in measured]
    ref_indices = list(range(len(references)))
    base = results.index(best_reference([results[i] for i in ref_indices])) if references else 0
    return Comparison([label for label, _, _ in measured], results, ref_indices, base,
                      [e for _, _, e in measured if e is not None], failed)


def compare_with_ultralytics(artifacts: list[str], cfg: BenchConfig, unpruned: str | None = None,
                             data: str | None = None, imgsz: int | None = None, e2e: bool = False,
                             progress=None) -> Comparison:
    """:func:`compare`, with Ultralytics' own FP32/FP16/INT8 exports of ``unpruned`` (INT8 with ``data``) built
    for every runtime among ``artifacts`` and measured alike: every ratio is then against the fastest of them.

    The exports are built at ``imgsz``, else at the size the artifacts were built at, else at the
    unpruned checkpoint's training size.
    """

    references = []
    if unpruned:
        sizes = {tuple(read_metadata(resolve_artifact(Path(a))).get("imgsz") or ()) for a in artifacts} - {()}
        if not imgsz and len(sizes) > 1:
            raise EdgepruneError(f"the artifacts were built at different sizes ({sorted(sizes)}); give --imgsz")
        built = next(iter(sizes), None)
        size = imgsz or (int(built[0]) if built and built[0] == built[-1] else None) or default_imgsz(unpruned)[0]
        runtimes = sorted({target_for_artifact(resolve_artifact(Path(a))).name for a in artifacts} & set(FORMATS))
        for runtime in runtimes:
            references += build_ultralytics_exports(unpruned, runtime, size, data, progress=progress)
    return compare(list(artifacts), cfg, (imgsz, imgsz) if imgsz else None, references, progress, e2e)
