"""End-to-end and multi-stream measurements: decode → letterbox → infer → box decode → NMS, timed per stage.

Why apart from inference-only numbers: what a camera application gets is frames per second
including decode and post-processing, which can differ from inference-only FPS by a
large factor. Both are always labelled.
Multi-stream mode compares four 416x416 streams spliced into one 832x832 inference with the
same four streams run as four separate inferences, in one run, with the same sources.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from targets.bench import BenchConfig, BenchResult, _base_fields, _stop_rule
from targets.runner import Runner
from toolchain.core.latency import LatencyStats
from toolchain.core.prepost import DETECT_CONF, DETECT_IOU, fit, nms, predictions, splice, to_input, unsplice


@dataclass
class Detector:
    """A runner wrapped with the pre/post-processing a deployed detector needs (as its metadata describes)."""

    runner: Runner
    nc: int
    conf: float = DETECT_CONF
    iou: float = DETECT_IOU

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.runner.info.input_shape[-2:])

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, tuple]:
        """The network input for ``frame`` and what :meth:`finish` needs to map detections back."""
        padded, box = fit(frame, self.size, self.runner.resize)
        # an IR with the pre-processing in its graph takes the uint8 BGR canvas as it is
        x = padded[None] if self.runner.accepts_u8_bgr else to_input([padded])
        return x, (box, frame.shape[:2])

    def finish(self, outputs: list, token: tuple) -> np.ndarray:
        """Box decode + NMS of one inference's outputs, in the frame's pixels: ``(n, 6)`` xyxy, score, class."""
        box, shape = token
        raw = predictions(outputs, self.runner.head, self.size)
        dets = nms(raw[0, :4 + self.nc].T, conf=self.conf, iou=self.iou)  # the board script's NMS, too
        dets[:, :4] = box.to_original(dets[:, :4], shape)
        return dets

    def detect(self, frame: np.ndarray, timings: dict | None = None) -> np.ndarray:
        """``(n, 6)`` xyxy, score, class in frame pixels; adds stage seconds to ``timings``."""
        t0 = time.perf_counter()
        x, token = self.prepare(frame)
        t1 = time.perf_counter()
        outputs = self.runner.outputs(x)
        t2 = time.perf_counter()
        dets = self.finish(outputs, token)
        t3 = time.perf_counter()
        if timings is not None:
            for key, value in (("preprocess", t1 - t0), ("inference", t2 - t1), ("postprocess", t3 - t2)):
                timings.setdefault(key, []).append(value)
        return dets


def _median_ms(values: list[float]) -> float:
    return float(np.median(values) * 1000) if values else 0.0


# The three places a pipelined frame spends time, each on its own thread (see targets.stream).
PIPELINE_STAGES = {"decode": ("decode",), "pre/post-processing": ("preprocess", "postprocess"),
                   "inference": ("inference",)}


def bound_by(stage_ms: dict) -> str:
    """Which stage limits a pipelined frame rate: the slowest of decode (its own thread per source), the
    pre/post-processing (the main thread) and inference (the runtime), from sequential stage medians."""
    totals = {name: sum(stage_ms.get(k, 0.0) for k in keys) for name, keys in PIPELINE_STAGES.items()}
    name = max(totals, key=totals.get)
    return f"{name} ({totals[name]:.2f} ms of {sum(totals.values()):.2f} ms per frame)"


def measure_e2e(detector: Detector, artifact: str, cfg: BenchConfig, source, frame_interval: int = 1) -> BenchResult:
    """Frames per second through the whole pipeline; detection runs on every ``frame_interval``-th frame."""
    cfg.validate()
    frames = source.frames()
    t0 = time.perf_counter()
    detector.detect(next(frames))
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(cfg.warmup):
        detector.detect(next(frames))
    timings: dict = {}
    frame_latency: list[float] = []
    keep_going = _stop_rule(cfg)
    n_frames = n_detections = 0
    start = time.perf_counter()
    while keep_going(n_frames, time.perf_counter() - start):
        t_frame = time.perf_counter()
        frame = next(frames)
        timings.setdefault("decode", []).append(time.perf_counter() - t_frame)
        if n_frames % frame_interval == 0:
            detector.detect(frame, timings)
            n_detections += 1
        frame_latency.append(time.perf_counter() - t_frame)
        n_frames += 1
    wall = time.perf_counter() - start
    medians = {k: _median_ms(v) for k, v in timings.items()}
    extra = {
        "source": source.describe,
        "frame_interval": frame_interval,
        "frames": n_frames,
        "detections_run": n_detections,
        "effective_fps": n_frames / wall,
        "detection_fps": n_detections / wall,
        "stage_median_ms": medians,
        "bound_by": bound_by(medians),
        "conf": detector.conf,
        "iou": detector.iou,
    }
    notes = [f"e2e: every frame is decoded; detection runs on every {frame_interval}-th frame"] \
        if frame_interval > 1 else []
    return BenchResult(
        mode="e2e", iterations=n_frames, duration_s=wall, first_inference_ms=first_ms,
        latency=LatencyStats.of(frame_latency), throughput_fps=n_frames / wall, includes_pre_post=True,
        extra=extra, notes=notes, **_base_fields(detector.runner, artifact, cfg, 1),
    )


def measure_streams(spliced: Detector, single: Detector, artifact: str, cfg: BenchConfig, sources: list,
                    tile: int) -> BenchResult:
    """Aggregate and per-stream FPS of N spliced streams vs the same N streams run separately.

    Both modes include decode, splice/letterbox, inference and NMS (and the mapping back), and
    both run through the runner's request queue (:meth:`targets.base.Runner.pipeline`) with
    ``cfg.requests`` in flight (default: :meth:`~targets.runner.Runner.pipeline_requests` for the
    throughput hint, 1 for latency), so decoding the next frames and post-processing the last
    overlap with inference.
    """
    cfg.validate()
    iters = [s.frames() for s in sources]
    grid = int(round(len(sources) ** 0.5))
    requests = cfg.requests or (spliced.runner.pipeline_requests() if cfg.hint == "throughput" else 1)

    def spliced_produce():
        return spliced.prepare(splice([next(it) for it in iters], tile, grid))

    def spliced_consume(outputs, token):
        unsplice(spliced.finish(outputs, token), tile, grid)

    pending: list = []

    def separate_produce():  # one frame of the next stream; a round is complete every N frames
        if not pending:
            pending.extend(next(it) for it in iters)
        return single.prepare(pending.pop(0))

    def separate_consume(outputs, token):
        single.finish(outputs, token)

    t0 = time.perf_counter()
    x, token = spliced_produce()
    spliced_consume(spliced.runner.outputs(x), token)
    first_ms = (time.perf_counter() - t0) * 1000
    warm = lambda started, _elapsed: started < cfg.warmup  # noqa: E731
    spliced.runner.pipeline(spliced_produce, spliced_consume, requests, warm)
    single.runner.pipeline(separate_produce, separate_consume, requests, warm)
    stop = _stop_rule(cfg)
    lat_sp, wall_sp = spliced.runner.pipeline(spliced_produce, spliced_consume, requests, stop)
    streams = len(sources)
    lat_se, wall_se = single.runner.pipeline(separate_produce, separate_consume, requests,
                                             lambda started, elapsed: stop(started // streams, elapsed))
    n_sp, n_se = len(lat_sp), len(lat_se) / streams
    spliced_stream_fps, separate_stream_fps = n_sp / wall_sp, n_se / wall_se
    extra = {
        "streams": streams,
        "tile": tile,
        "requests_in_flight": requests,
        "spliced_input": list(spliced.size),
        "separate_input": list(single.size),
        "sources": [s.describe for s in sources],
        "spliced": {"per_stream_fps": spliced_stream_fps, "aggregate_fps": spliced_stream_fps * streams,
                    "rounds": n_sp, "round_latency_median_ms": LatencyStats.of(lat_sp).median_ms},
        "separate": {"per_stream_fps": separate_stream_fps, "aggregate_fps": separate_stream_fps * streams,
                     "rounds": n_se, "frame_latency_median_ms": LatencyStats.of(lat_se).median_ms},
        "spliced_vs_separate": spliced_stream_fps / separate_stream_fps,
    }
    return BenchResult(
        mode="streams", iterations=n_sp, duration_s=wall_sp, first_inference_ms=first_ms,
        latency=LatencyStats.of(lat_sp), throughput_fps=spliced_stream_fps * streams, includes_pre_post=True,
        extra=extra, notes=[f"a round = one frame from every stream, decoded, detected and mapped back; {requests} "
                            "request(s) in flight"],
        **_base_fields(spliced.runner, artifact, cfg, requests),
    )
