"""What an opened artifact is: a :class:`Runner` on one device, and :class:`RunnerInfo`, what it really runs.

Why apart from :mod:`targets.base`: runners are what the bench, evaluation and verification
use, and the torch reference runner is one too; keeping them below the :class:`~targets.base.Target`
interface lets verification (which needs the torch runner) sit under the targets without a cycle.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from toolchain.core.errors import ModelMismatchError
from toolchain.core.prepost import predictions


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner actually runs: reported beside every number it produces."""

    backend: str
    backend_version: str
    device: str
    artifact_precision: str  # precision of the stored weights: fp32, fp16, int8
    executed_precision: str  # what the runtime computes in (e.g. OpenVINO "bf16" for an fp32 IR)
    threads: int | None
    input_name: str
    input_shape: tuple[int, ...]  # the float NCHW shape callers feed
    input_format: str = "float32 NCHW RGB"  # what the artifact's own input takes

    def to_json(self) -> dict:
        return asdict(self)


class Runner(abc.ABC):
    """A compiled artifact on one device, ready to infer.

    Input is a float32 NCHW array in [0, 1]. :meth:`outputs` returns every output in the
    artifact's order (a segment model's second one is its Proto masks); calling the runner
    returns the first, which is what the benchmarks time. :meth:`predict` turns the outputs
    into ``(batch, 4 + nc, anchors)`` (xywh boxes in input pixels, class scores) with the
    artifact's ``head`` description, and ``resize`` says how images are fitted into the input;
    both come from the artifact's metadata (:func:`targets.artifacts.read_decoding`), so
    evaluation and the e2e bench handle every model source alike.
    """

    info: RunnerInfo
    head: dict | None = None
    resize: str = "letterbox"
    accepts_u8_bgr: bool = False  # the artifact also takes the letterboxed uint8 BGR image itself (NHWC)

    @abc.abstractmethod
    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one synchronous inference; every output, in the artifact's output order."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run one synchronous inference; the first output."""
        return self.outputs(x)[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One inference as detections before NMS: ``(batch, 4 + nc, anchors)``."""

        try:
            return predictions(self.outputs(x), self.head, tuple(x.shape[-2:]))
        except ValueError as exc:  # the board-safe decoder says what it expected; the user gets one sentence
            raise ModelMismatchError(f"the artifact's outputs do not fit the decode its metadata declares ({exc})"
                                     ) from None

    def default_requests(self) -> int:
        """How many inferences to keep in flight when the user does not say (the runtime's optimum)."""
        return 1

    def pipeline_requests(self) -> int:
        """Inferences :meth:`pipeline` keeps in flight by default: two per slot the runtime computes at once.

        Why two and not the runtime's optimum (OpenVINO's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, one per
        CPU stream): in a pipeline a finished request waits while Python post-processes it and prepares
        the next frame, and its CPU stream idles meanwhile; a second request per stream keeps it fed.
        Measured (``edgeprune stream``, 2-core Xeon with AMX, yolov8n at 416, 40 s video, 3 interleaved
        rounds): 2 requests 219 FPS, 4 requests 237 FPS (the pruned model 333 -> 345); 6 gained nothing.
        """
        return 2 * max(1, self.default_requests())

    def pipeline(self, produce: Callable[[], tuple], consume: Callable[[list, object], None], requests: int,
                 keep_going: Callable[[int, float], bool]) -> tuple[list[float], float]:
        """Keep ``requests`` inferences in flight on inputs ``produce()`` makes; ``consume`` each one's outputs.

        ``produce() -> (x, token)`` prepares one input (decode, letterbox...); ``consume(outputs,
        token)`` post-processes it. With more than one request, preparing the next input and
        post-processing the previous overlap with inference (runtimes release the GIL while they
        compute). Returns each item's latency (produce start to consume end, seconds) and the
        wall time. This default runs one item at a time; runtimes with async requests override it.
        """
        latencies: list[float] = []
        started = 0
        t0 = time.perf_counter()
        while keep_going(started, time.perf_counter() - t0):
            begin = time.perf_counter()
            x, token = produce()
            started += 1
            consume(self.outputs(x), token)
            latencies.append(time.perf_counter() - begin)
        return latencies, time.perf_counter() - t0

    def run_loop(self, x: np.ndarray, requests: int, keep_going: Callable[[int, float], bool]) -> tuple[list, float]:
        """Keep ``requests`` inferences in flight on ``x`` while ``keep_going(started, elapsed_s)``.

        The input is filled once, before timing (as benchmark_app does). Returns the latency of
        every finished inference (seconds) and the wall time from the first start to the last
        finish. This default runs ``requests`` threads calling :meth:`__call__`; runtimes with
        an async API (OpenVINO) override it.
        """
        latencies: list[float] = []
        lock = threading.Lock()
        started = [0]
        t0 = time.perf_counter()

        def worker():
            while True:
                with lock:
                    if not keep_going(started[0], time.perf_counter() - t0):
                        return
                    started[0] += 1
                begin = time.perf_counter()
                self(x)
                end = time.perf_counter()
                with lock:
                    latencies.append(end - begin)

        threads = [threading.Thread(target=worker) for _ in range(max(1, requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies, time.perf_counter() - t0
