"""``edgeprune stream`` / ``edgeprune.Stream``: a deployed artifact on video sources, detections as they come.

Why a class that runs in the background: a camera application reads detections at its own pace.
:class:`Stream` runs the pipeline (:class:`targets.stream.StreamRunner`) on a thread of its own and
hands results through a queue of at most ``results`` items; when the application does not keep up,
the same drop policy as the sources' applies (``never``: the pipeline waits, so files lose no
frame; ``oldest``: the oldest undelivered result is dropped and counted), so memory never grows.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from targets.artifacts import read_metadata, resolve_artifact
from targets.bench import BenchConfig
from targets.e2e import Detector
from targets.frame_sources import open_source
from targets.stream import FrameResult, StreamRunner, StreamStats, cpu_share, describe_bound
from toolchain.core.dropqueue import DropQueue
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output, staged_folder
from toolchain.pipelines.bench import class_count, open_runner


def open_stream(artifact: str | Path, sources: list[str], splice: int | None = None, requests: int | None = None,
                device: str = "cpu", threads: int | None = None, capacity: int = 4, drop: str | None = None,
                keep_frames: bool = False, conf: float | None = None, iou: float | None = None) -> StreamRunner:
    """The runner for ``artifact`` on ``sources`` (video files, image folders, camera indices, URLs, ``synthetic``).

    With ``splice`` the artifact runs at ``splice`` x ``splice`` (a dynamic-shape artifact, or one
    built at that size) and the sources share it as tiles; without, it runs at its own size.
    """
    if splice is not None and (splice % 32 or splice < 64):
        raise EdgepruneError(f"--splice must be a multiple of 32 of at least 64, got {splice}")
    if len(sources) > 16:
        raise EdgepruneError(f"at most 16 streams, got {len(sources)}")
    cfg = BenchConfig(device=device, threads=threads, hint="latency" if requests == 1 else "throughput",
                      requests=requests)
    runner = open_runner(artifact, cfg, (splice, splice) if splice else None, input_in_graph=True)
    side = int(runner.info.input_shape[-1])
    opened = [open_source(spec, side, seed=i) for i, spec in enumerate(sources)]
    nc = class_count(artifact, runner)
    detector = Detector(runner, nc, **{k: v for k, v in (("conf", conf), ("iou", iou)) if v is not None})
    names = read_metadata(resolve_artifact(Path(artifact))).get("names") or {}
    names = {int(k): str(v) for k, v in (names.items() if isinstance(names, dict) else enumerate(names))}
    return StreamRunner(detector, opened, splice=splice, requests=requests, capacity=capacity, drop=drop,
                        keep_frames=keep_frames, names=names)


class Stream:
    """Detections of a deployed artifact on one or more sources, read as an iterator of :class:`FrameResult`.

    Example::

        with edgeprune.Stream("deploy/ov", ["cam0.mp4", "cam1.mp4", "cam2.mp4", "cam3.mp4"], splice=832) as s:
            for result in s:
                print(result.stream, result.frame, result.to_json()["detections"])
        print(s.stats)  # frames read, dropped, detected per stream, and how each ended

    Args:
        results: undelivered results held at most; ``drop`` (default: ``oldest`` when a source is
            live, else ``never``) says what happens beyond it. Other arguments: :func:`open_stream`.
    """

    def __init__(self, artifact: str | Path, sources: list[str] | str, *, splice: int | None = None,
                 requests: int | None = None, device: str = "cpu", threads: int | None = None, capacity: int = 4,
                 drop: str | None = None, results: int = 64, keep_frames: bool = False, conf: float | None = None,
                 iou: float | None = None):
        if results < 1:
            raise EdgepruneError(f"results must hold at least one item, got {results}")
        sources = [sources] if isinstance(sources, str) else list(sources)
        self.runner = open_stream(artifact, sources, splice=splice, requests=requests, device=device, threads=threads,
                                  capacity=capacity, drop=drop, keep_frames=keep_frames, conf=conf, iou=iou)
        self.drop = self.runner.drop
        self._queue = DropQueue(results, self.drop)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> list[StreamStats]:
        return self.runner.stats

    @property
    def pending(self) -> int:
        """Results produced and not yet read (never more than ``results``)."""
        return len(self._queue)

    @property
    def dropped_results(self) -> int:
        """Results dropped unread by the ``oldest`` policy."""
        return self._queue.dropped

    def start(self) -> Stream:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="edgeprune-stream")
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.runner.run(self._queue.put, should_stop=lambda: self._queue.closed)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
            self._error = exc
        finally:
            self._queue.finish()

    def __iter__(self) -> Iterator[FrameResult]:
        self.start()
        while (result := self._queue.get()) is not None:
            yield result
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the pipeline and its decoding threads (results not yet read are discarded)."""
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> Stream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class StreamReport:
    """What ``edgeprune stream`` did: per-stream counts, the wall time and where results went."""

    artifact: str
    streams: list[StreamStats]
    wall_s: float
    splice: int | None
    requests: int
    drop: str
    runner: dict
    detections_file: str | None = None
    video_dir: str | None = None
    cpu_s: float = 0.0  # the process's CPU time during the run (every thread: decode, runtime, Python)
    cores: int = 1  # the cores this process may use
    work_s: float = 0.0  # the pipeline thread's pre/post-processing seconds (emit included)

    @property
    def frames(self) -> int:
        return sum(s.frames_detected for s in self.streams)

    @property
    def fps(self) -> float:
        """Frames detected per second, all streams together (decode, pre/post-processing included)."""
        return self.frames / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_busy(self) -> float:
        """The share of the cores' time the run used: near 1, the cores bound the frame rate, not the pipeline."""
        return cpu_share(self.cpu_s, self.wall_s, self.cores)

    def bound(self) -> str:
        """What limited the frame rate, in words (:func:`targets.stream.describe_bound`)."""
        return describe_bound(self.streams, self.wall_s, self.cpu_s, self.work_s, self.cores)

    def notes(self) -> list[str]:
        return [f"stream {i} ({s.source}) ended: {s.ended}" for i, s in enumerate(self.streams)
                if s.ended and s.ended != "end of source"]

    def to_json(self) -> dict:
        return {"artifact": self.artifact, "streams": [s.to_json() for s in self.streams], "wall_s": self.wall_s,
                "fps_all_streams": self.fps, "splice": self.splice, "requests_in_flight": self.requests,
                "drop": self.drop, "runner": self.runner, "detections_file": self.detections_file,
                "video_dir": self.video_dir, "includes": "decode, letterbox/splice, inference, box decode, NMS",
                "cpu_s": self.cpu_s, "cores": self.cores, "cpu_busy": self.cpu_busy, "work_s": self.work_s,
                "bound_by": self.bound(),
                "notes": self.notes()}


def run_stream(artifact: str | Path, sources: list[str], *, out: str | Path | None = None,
               video_dir: str | Path | None = None, show: bool = False, progress=None, **options) -> StreamReport:
    """Run ``artifact`` over ``sources`` to their end: detections as JSON lines at ``out`` (one line per stream
    and frame), annotated videos in ``video_dir`` (one per stream), a window per stream with ``show``.

    ``out`` and ``video_dir`` are staged and appear whole when the run ends (Ctrl-C leaves nothing);
    ``options`` are :func:`open_stream`'s.
    """
    if show and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        raise EdgepruneError("--show needs a display and DISPLAY is not set; write --save-video DIR instead")
    runner = open_stream(artifact, sources, keep_frames=bool(video_dir or show), **options)
    with contextlib.ExitStack() as stack:
        lines = None
        if out is not None:
            staged = stack.enter_context(atomic_output(out, suffix=".jsonl"))
            lines = stack.enter_context(open(staged, "w"))
        videos = _Videos(stack.enter_context(staged_folder(video_dir)), runner) if video_dir else None
        done = [0]

        def emit(result: FrameResult) -> None:
            if lines is not None:
                lines.write(json.dumps(result.to_json()) + "\n")
            if videos is not None or show:
                image = annotate(result)
                if videos is not None:
                    videos.write(result.stream, image)
                if show:
                    _show(result.stream, image)
            done[0] += 1
            if progress is not None and done[0] % 10 == 0:
                progress(f"{done[0]} frames detected")

        stats = runner.run(emit)
        if videos is not None:
            videos.close()
        if lines is not None:
            lines.close()
    return StreamReport(str(artifact), stats, runner.wall_s, runner.splice, runner.requests, runner.drop,
                        runner.detector.runner.info.to_json(), str(out) if out else None,
                        str(video_dir) if video_dir else None, runner.cpu_s, runner.cores, runner.work_s)


def annotate(result: FrameResult) -> np.ndarray:
    """The frame with its boxes, class names and scores drawn (a copy)."""
    image = result.image.copy()
    for x0, y0, x1, y1, score, cls in result.boxes:
        colour = tuple(int(c) for c in _PALETTE[int(cls) % len(_PALETTE)])
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2)
        label = f"{result.names.get(int(cls), int(cls))} {score:.2f}"
        cv2.putText(image, label, (int(x0), max(12, int(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1,
                    cv2.LINE_AA)
    return image


_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72)]


class _Videos:
    """One annotated MJPG video per stream, at the stream's own size and frame rate (30 when it has none)."""

    def __init__(self, folder: Path, runner: StreamRunner):
        self.folder, self.runner = folder, runner
        self.writers: dict[int, cv2.VideoWriter] = {}

    def write(self, stream: int, image: np.ndarray) -> None:
        if stream not in self.writers:
            fps = getattr(self.runner.readers[stream].source, "fps", 0.0) or 30.0
            path = self.folder / f"stream{stream}.avi"
            self.writers[stream] = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                                   (image.shape[1], image.shape[0]))
        self.writers[stream].write(image)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.release()


def _show(stream: int, image: np.ndarray) -> None:
    cv2.imshow(f"edgeprune stream {stream}", image)
    cv2.waitKey(1)
