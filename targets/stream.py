"""The stream runner: detections for one or more video sources, at the frame rate an application gets.

Why a pipeline and not a loop: at ~2 ms of inference, decoding, letterboxing, box decoding and
NMS run one after another on one thread cost more than the network (the demo's 2.7x inference
gain was 1.5x end to end). Here each source is decoded on its own thread (OpenCV releases the
GIL while it decodes) into a bounded queue; inference goes through the runtime's request queue
(:meth:`targets.runner.Runner.pipeline`: OpenVINO's async requests), so the next input is
prepared and the previous result post-processed while the network runs; the pre/post-processing
is :class:`targets.e2e.Detector`'s, the one ``bench --e2e`` measures and the board script runs
(an OpenVINO runner opened for streaming converts the letterboxed uint8 image inside the graph,
with PrePostProcessor, so that work leaves the Python thread too).

Memory is bounded everywhere. Each source holds at most ``capacity`` decoded frames; when its
queue is full the reader either waits (``drop="never"``: files and folders, every frame is
detected) or drops the oldest frame (``drop="oldest"``: cameras and network streams, which do
not wait; the newest frames are the ones worth detecting). Dropped frames are counted per stream.

With ``splice`` the streams are fitted into the tiles of one square frame (four 416 streams in
one 832 frame: one large inference uses the cores better than four small ones); every box is
mapped back to its own stream's pixels. Streams are read in lockstep, one frame each per round;
a stream that ends (or fails) leaves its tile grey, says why, and the others go on.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from targets.e2e import Detector
from toolchain.core.device import cpu_threads
from toolchain.core.errors import EdgepruneError, library_reason
from toolchain.core.dropqueue import DROP_POLICIES, DropQueue
from toolchain.core.prepost import splice_fit, unsplice_to_frames


def cpu_share(cpu_s: float, wall_s: float, cores: int) -> float:
    """The share of ``cores`` a process kept busy: its CPU seconds over the wall seconds times the cores."""
    return cpu_s / (wall_s * cores) if wall_s else 0.0


def describe_bound(streams: list, wall_s: float, cpu_s: float, work_s: float, cores: int) -> str:
    """What limited a pipelined run's frame rate, in words.

    Why not from stage times: a pipeline's stages overlap, so their sequential medians (what
    ``bench --e2e`` reports) cannot say which one holds the others up. Here each serial stage's
    thread says how much of the run it was busy: a source's reader (decode, or a camera's pace)
    or the pipeline thread (letterbox, box decoding, NMS, the consumer); one busy for 90 % of the
    run or more is the bound. Beside it, the CPU the whole process used: near all the cores,
    only less work per frame makes it faster.
    """
    frames = sum(s.frames_detected for s in streams) or 1
    busy = cpu_share(cpu_s, wall_s, cores)
    used = f"{busy:.0%} of {cores} core(s) busy, {cpu_s * 1000 / frames:.2f} ms of CPU per frame"
    wall = wall_s or float("inf")
    reading = max(range(len(streams)), key=lambda i: streams[i].read_s, default=0)
    read_share = streams[reading].read_s / wall if streams else 0.0
    work_share = work_s / wall
    if read_share >= 0.9:
        stage = f"reading stream {reading} ({read_share:.0%} of the run on its thread)"
    elif work_share >= 0.9:
        stage = f"pre/post-processing on the pipeline thread ({work_share:.0%} of the run)"
    elif busy >= 0.9:
        return f"the CPU ({used}): only less work per frame makes it faster"
    else:
        return (f"waiting on the runtime or the device ({used}; reading {read_share:.0%}, pre/post-processing "
                f"{work_share:.0%} of the run)")
    return f"{stage}, on a saturated CPU ({used})" if busy >= 0.9 else f"{stage}, with {used}"


@dataclass
class StreamStats:
    """What happened to one source: frames read, dropped by the policy, detected, and how it ended."""

    source: str
    frames_read: int = 0
    frames_dropped: int = 0
    frames_detected: int = 0
    detections: int = 0
    read_s: float = 0.0  # seconds its thread spent reading and decoding (a live source's wait for a frame included)
    ended: str | None = None  # "end of source", "failed: ...", or None (stopped while running)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FrameResult:
    """The detections of one frame of one stream, boxes ``(n, 6)`` xyxy/score/class in that stream's pixels."""

    stream: int
    frame: int
    time_s: float | None  # the frame's time in its source (video position; seconds since opening when live)
    boxes: np.ndarray
    names: dict = field(default_factory=dict)
    image: np.ndarray | None = None  # the decoded frame, when the runner was asked to keep frames

    def to_json(self) -> dict:
        return {
            "stream": self.stream, "frame": self.frame,
            "time_s": None if self.time_s is None else round(float(self.time_s), 4),
            "detections": [{"box": [round(float(v), 2) for v in b[:4]], "score": round(float(b[4]), 4),
                            "class": int(b[5]), "name": self.names.get(int(b[5]), str(int(b[5])))}
                           for b in self.boxes],
        }


class _Reader:
    """Decodes one source on its own thread into a :class:`DropQueue` of at most ``capacity`` frames."""

    def __init__(self, index: int, source, capacity: int, drop: str):
        self.index, self.source = index, source
        self.stats = StreamStats(source.describe)
        self.queue = DropQueue(capacity, drop)
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"edgeprune-decode-{index}")

    def _run(self) -> None:
        try:
            frames = iter(self.source.play())
            while True:
                began = time.perf_counter()
                item = next(frames, None)
                self.stats.read_s += time.perf_counter() - began
                if item is None:
                    break
                when, frame = item
                if not self.queue.put((self.stats.frames_read, when, frame)):
                    return
                self.stats.frames_read += 1
                self.stats.frames_dropped = self.queue.dropped
            self.stats.ended = "end of source"
        except Exception as exc:  # noqa: BLE001 - a source that fails ends its stream, not the others
            self.stats.ended = f"failed: {library_reason(exc)}"
        finally:
            self.stats.frames_dropped = self.queue.dropped
            self.queue.finish()

    def take(self) -> tuple | None:
        """The next ``(frame number, time, image)``, waiting for it; None once the source has ended."""
        return self.queue.get()

    def stop(self) -> None:
        self.queue.close()
        self.thread.join(timeout=5)


class StreamRunner:
    """Runs ``detector`` over ``sources`` (objects with ``play()``, ``live`` and ``describe``).

    Args:
        detector: the artifact's runner with its pre/post-processing; with ``splice`` its input is
            the spliced frame (``splice`` x ``splice``).
        splice: side of the square frame the streams are tiled into (None: one inference per frame).
        requests: inferences in flight (the runtime's queue); 1 runs one at a time; None: the
            runner's :meth:`~targets.runner.Runner.pipeline_requests`.
        capacity: decoded frames each source may hold.
        drop: ``never`` or ``oldest`` (see the module); None: ``oldest`` when any source is live.
        keep_frames: hand each result its decoded frame (for an annotated video).
    """

    def __init__(self, detector: Detector, sources: list, splice: int | None = None, requests: int | None = None,
                 capacity: int = 4, drop: str | None = None, keep_frames: bool = False, names: dict | None = None):
        if not sources:
            raise EdgepruneError("give at least one source")
        drop = drop or ("oldest" if any(getattr(s, "live", False) for s in sources) else "never")
        if drop not in DROP_POLICIES:
            raise EdgepruneError(f"--drop must be one of {', '.join(DROP_POLICIES)}, got {drop!r}")
        if capacity < 1:
            raise EdgepruneError(f"a source's queue holds at least one frame, got {capacity}")
        self.detector, self.splice, self.keep = detector, splice, keep_frames
        self.requests = max(1, requests) if requests else detector.runner.pipeline_requests()
        self.names = names or {}
        self.grid = math.ceil(math.sqrt(len(sources))) if splice else 1
        if splice and detector.size != (splice, splice):
            raise EdgepruneError(f"the runner's input is {detector.size[0]}x{detector.size[1]}, the splice "
                                 f"{splice}x{splice}")
        self.tile = splice // self.grid if splice else None
        self.drop = drop
        self.readers = [_Reader(i, s, capacity, drop) for i, s in enumerate(sources)]
        self._active: collections.deque = collections.deque()
        self._next: list | None = None
        self.wall_s = 0.0
        self.cpu_s = 0.0  # CPU time of the whole process (decode threads and the runtime's included) during run()
        self.work_s = 0.0  # this thread's seconds preparing inputs, post-processing and handing results to emit
        self.cores = cpu_threads()

    @property
    def stats(self) -> list[StreamStats]:
        return [r.stats for r in self.readers]

    def bound(self) -> str:
        """What limited the last :meth:`run` (:func:`describe_bound`)."""
        return describe_bound(self.stats, self.wall_s, self.cpu_s, self.work_s, self.cores)

    def run(self, emit: Callable[[FrameResult], None], should_stop: Callable[[], bool] = lambda: False,
            ) -> list[StreamStats]:
        """Detect every frame the sources give (or until ``should_stop()``), handing each result to ``emit``.

        ``emit`` runs on this thread, between inferences: a slow one slows the pipeline (and, with
        ``drop="oldest"``, makes live sources drop frames); it must not keep the results' arrays
        it does not own.
        """
        self._active = collections.deque(self.readers)
        for reader in self.readers:
            reader.thread.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            def keep_going(_started: int, _elapsed: float) -> bool:
                if should_stop():
                    return False
                self._next = self._gather()
                return self._next is not None

            def produce():
                began = time.perf_counter()
                try:
                    return self._produce()
                finally:
                    self.work_s += time.perf_counter() - began

            def consume(outputs, token) -> None:
                began = time.perf_counter()
                for result in self._finish(outputs, token):
                    emit(result)
                self.work_s += time.perf_counter() - began

            self.work_s = 0.0
            self.detector.runner.pipeline(produce, consume, self.requests, keep_going)
        finally:
            for reader in self.readers:
                reader.stop()
            self.wall_s = time.perf_counter() - started
            self.cpu_s = time.process_time() - cpu_started
        return self.stats

    def _gather(self) -> list | None:
        """The next inference's frames: one from the next stream in turn, or (splice) one from each."""
        if not self.splice:
            while self._active:
                reader = self._active.popleft()
                item = reader.take()
                if item is not None:
                    self._active.append(reader)
                    return [(reader, item)]
            return None
        items = []
        for reader in list(self._active):
            item = reader.take()
            if item is None:
                self._active.remove(reader)
            else:
                items.append((reader, item))
        return items or None

    def _produce(self):
        items = self._next
        if not self.splice:
            x, token = self.detector.prepare(items[0][1][2])
            return x, (token, items, None)
        frames = [None] * (self.grid * self.grid)
        for reader, (_, _, image) in items:
            frames[reader.index] = image
        canvas, fits = splice_fit(frames, self.tile, self.grid, self.detector.runner.resize)
        x, token = self.detector.prepare(canvas)
        return x, (token, items, fits)

    def _finish(self, outputs, token) -> list[FrameResult]:
        inner, items, fits = token
        boxes = self.detector.finish(outputs, inner)
        if fits is None:
            per_stream = [boxes]
        else:
            shapes = [None] * len(fits)
            for reader, (_, _, image) in items:
                shapes[reader.index] = image.shape[:2]
            mapped = unsplice_to_frames(boxes, fits, shapes, self.tile, self.grid)
            per_stream = [mapped[reader.index] for reader, _ in items]
        results = []
        for (reader, (number, when, image)), dets in zip(items, per_stream):
            reader.stats.frames_detected += 1
            reader.stats.detections += len(dets)
            results.append(FrameResult(reader.index, number, when, dets, self.names, image if self.keep else None))
        return results
