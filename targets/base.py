"""The one interface every deployment backend implements.

Why: the deploy command, ``edgeprune eval`` on artifacts and the bench harness must treat
OpenVINO, ONNX Runtime and the rest alike, so a new target is one new file: a
:class:`Target` (export a model, open an artifact as a :class:`Runner`, list devices) that
registers itself with :func:`targets.registry.register_target`.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportConfig:
    """What to build.

    Args:
        precision: weights/compute precision of the artifact: fp32, fp16, int8, or auto (build the
            target's precisions, measure each on this device, keep the fastest within ``max_drop``).
        imgsz: square input size the artifact is built for; None = the size the checkpoint was trained at.
        data: YOLO data.yaml; INT8 calibrates on its training images.
        calib_images: number of calibration images for INT8.
        max_drop: largest accepted mAP50-95 drop (absolute, e.g. 0.01): with ``auto`` the budget a
            candidate must stay within (default 0.01); with INT8, accuracy-aware quantisation
            where the backend supports it (OpenVINO).
        device: device the artifact is checked on after export.
        dynamic: input height/width left dynamic, so the artifact runs at other sizes.
        weights: Darknet .weights of a .cfg model (default: the .weights of the same name beside it).
        decode: Darknet only: the artifact outputs OpenCV's decoded yolo rows instead of the raw maps.
        bn_eps: Darknet only: BatchNorm epsilon (None = Darknet's 1e-5; 1e-6 reproduces OpenCV's importer).
        final_dir: where ``deploy`` moves the staged output folder when it is complete; targets
            that write paths for later use (the Vitis docker commands) name this one.
    """

    precision: str = "fp32"
    imgsz: int | None = None
    data: str | None = None
    calib_images: int = 300
    max_drop: float | None = None
    device: str = "cpu"
    dynamic: bool = False
    weights: str | None = None
    decode: bool = False
    bn_eps: float | None = None
    final_dir: str | None = None
    options: dict = field(default_factory=dict)  # a target's own options (:attr:`Target.options`), by key


@dataclass(frozen=True)
class TargetOption:
    """A deploy option one target adds to the common ones; the CLI turns it into a click option.

    Declared as data, not as click objects, so a target module knows nothing of the CLI and the
    CLI needs no edit when a target is added. ``key`` is the ExportConfig field it sets, or
    else the key under ``ExportConfig.options``.
    """

    flag: str  # e.g. "--max-drop"
    help: str
    type: type = str  # str, int or float
    default: object = None
    choices: tuple[str, ...] | None = None
    is_flag: bool = False
    min: float | None = None  # exclusive lower bound for numbers
    dest: str | None = None  # the key, when the flag's own name would clash with a common option

    @property
    def key(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")


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
        from toolchain.prepost import predictions

        return predictions(self.outputs(x), self.head, tuple(x.shape[-2:]))

    def default_requests(self) -> int:
        """How many inferences to keep in flight when the user does not say (the runtime's optimum)."""
        return 1

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


@dataclass
class ExportResult:
    """Where the artifact is and what ``deploy.json`` records about it."""

    artifact: str
    deploy_json: str
    record: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"artifact": self.artifact, "deploy_json": self.deploy_json, **self.record}


class Target(abc.ABC):
    """A deployment backend, and everything the CLI needs to offer it (the registry is the truth).

    Attributes:
        name: registry key, ``deploy`` subcommand and ``--backend``/``--target`` choice.
        summary: one line for ``edgeprune deploy --help``.
        precisions: artifact precisions ``deploy`` builds; empty for runners that build
            nothing (the torch reference).
        compute_precisions: what ``bench``/``eval --precision`` may force when running an artifact.
        default_device / device_help: the ``--device`` option of its deploy subcommand.
        options: extra deploy options (:class:`TargetOption`).
        runs_on_host: False when its artifacts run only on another machine (a board).
    """

    name: str = ""
    summary: str = ""
    precisions: tuple[str, ...] = ()
    compute_precisions: tuple[str, ...] = ("auto", "f32")
    default_device: str = "cpu"
    device_help: str = "Device the artifact is checked on."
    options: tuple[TargetOption, ...] = ()
    runs_on_host: bool = True

    def check_config(self, cfg: ExportConfig) -> None:
        """Refuse option combinations this target cannot build, with one sentence (before any work)."""

    def verify_precision(self, precision: str) -> str:
        """Compute precision to check a ``precision`` artifact in (``auto``: as the runtime chooses)."""
        return "auto"

    @abc.abstractmethod
    def devices(self) -> list[str]:
        """Device names present on this machine, as the user would pass them to ``--device``."""

    @abc.abstractmethod
    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        """Write the artifact for ``source`` (a :class:`toolchain.sources.ExportSource`) under ``out_dir``.

        Returns the artifact's path (file or folder).
        """

    @abc.abstractmethod
    def owns(self, artifact: Path) -> bool:
        """True when ``artifact`` is something this target can open."""

    def describe(self, artifact: Path) -> dict:
        """Backend-specific facts about an artifact for deploy.json (opset, op counts...)."""
        return {}

    def verify(self, source, artifact: Path, cfg: ExportConfig, device: str, evaluate: bool = True) -> dict:
        """deploy.json's proof that ``artifact`` works: ``runner``, ``fidelity``, ``accuracy`` (with ``cfg.data``).

        The default runs the artifact on this host (:func:`targets.verify.verify_on_host`). A
        target whose artifacts run elsewhere overrides it with the checks it can make here; a
        result with ``dry_run`` set means only a plan was written, and no deploy.json is.
        """
        from targets.verify import verify_on_host

        return verify_on_host(self, source, artifact, cfg, device, evaluate)

    def check_device(self, device: str) -> str:
        """Normalise ``device``; raise listing the present devices when it is not one of them."""
        return device

    @abc.abstractmethod
    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None,
             batch: int = 1) -> Runner:
        """Compile/load ``artifact`` for ``device``.

        Args:
            precision: ``auto`` lets the runtime choose (reported in ``info.executed_precision``);
                ``f32``/``bf16``/``f16`` force the compute precision where the runtime allows.
            hint: ``latency`` or ``throughput``, for runtimes that tune themselves to it.
            requests: inferences the caller will keep in flight (a tuning hint).
            input_hw: run at this input size (needs a dynamic artifact, or a torch model).
            batch: images per inference (OpenVINO reshapes any IR; ONNX needs a dynamic batch).
        """
