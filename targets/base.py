"""The one interface every deployment backend implements.

Why: the deploy command, ``edgeprune eval`` on artifacts and the bench harness must treat
OpenVINO, ONNX Runtime and the rest alike, so a new target is one new file: a
:class:`Target` (export a model, open an artifact as a :class:`~targets.runner.Runner`, list devices) that
registers itself with :func:`targets.registry.register_target`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

from targets.runner import Runner
from targets.verify import verify_on_host

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
        compute_precisions: what ``bench``/``eval --infer-precision`` may force when running an artifact.
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
        """Write the artifact for ``source`` (a :class:`toolchain.models.sources.ExportSource`) under ``out_dir``.

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
