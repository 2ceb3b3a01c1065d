"""The interface every kind of model file implements (:class:`ModelSource`), and what it hands the targets.

Why one interface: deploy, eval, bench, train, fine-tune, sparsify, sweep and autotune must treat
an Ultralytics checkpoint, a pickled torch module and a Darknet cfg + .weights alike, and a new
kind (a YOLOv5 repository checkpoint) must be one new module, not a branch in every caller. So
the source owns everything that differs: loading, the input size, pruning, training, evaluation
and preparing the model for export. For export a source turns a model file into a float32
eval-mode module plus what the pipelines need to feed it and read it (:class:`ExportSource`): the
input size, how images are fitted into it (``resize``), and how its outputs become boxes
(``head``, see :func:`toolchain.core.prepost.predictions`). Targets then export that module
without knowing where it came from, and every artifact carries ``head`` and ``resize`` in its
metadata, so evaluation and the board script decode it the same way. Options a source cannot
honour are refused by the source, in one sentence naming the option.
"""

from __future__ import annotations

import abc
import io
import pickletools
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml
from torch import nn

from toolchain.core.errors import EdgepruneError, UnsupportedModelError
from toolchain.core.fileio import atomic_output
from toolchain.models.pruning import PruneConfig


@dataclass(frozen=True)
class SourceRequest:
    """How to prepare a model file.

    Args:
        imgsz: square input size; None = the model's own (a checkpoint's training size, a cfg's [net] size).
        input_shape: full input shape; plain modules need it, Darknet cfgs take it for non-square sizes.
        weights: Darknet .weights for a .cfg (default: ``<cfg stem>.weights`` beside it, if present).
        dynamic: leave the input height/width dynamic in exported artifacts.
        raw_head: Ultralytics only: export the head's raw maps instead of decoded boxes.
        decode: Darknet only: the artifact outputs OpenCV's decoded yolo rows instead of the raw maps.
        bn_eps: Darknet only: BatchNorm epsilon (Darknet folds with 1e-5; OpenCV's importer uses 1e-6).
    """

    imgsz: int | None = None
    input_shape: tuple[int, ...] | None = None
    weights: str | None = None
    dynamic: bool = False
    raw_head: bool = False
    decode: bool = False
    bn_eps: float = 1e-5


@dataclass
class ExportSource:
    """A model ready for export, evaluation and benchmarking.

    Attributes:
        module: float32 eval-mode module (YOLO heads in export mode, BN fused).
        example: input used for tracing, ``1xCxHxW`` float32 in [0, 1].
        path, sha256: the model file and its hash (recorded in deploy.json).
        kind: which source made it: ``ultralytics``, ``torch`` or ``darknet``.
        task: Ultralytics task, ``detect`` for Darknet detectors, or ``module``.
        names: class names (detectors).
        stride: the largest stride (for letterboxing), 32 for plain modules.
        head_scope: module path of the part that decodes boxes (``model.22``), kept in float by INT8.
        kpt_shape: keypoint shape for pose models.
        dynamic: exported with dynamic input height/width.
        head: how the outputs become boxes (:func:`toolchain.core.prepost.predictions`); None = output 0
            is already ``(batch, 4 + nc, anchors)``.
        resize: how images are fitted into the input (:func:`toolchain.core.prepost.fit`).
        output_names: names of the exported outputs, in order.
        files: every input file with its hash (a cfg and its .weights).
        notes: what the user should know (random weights...).
        names_from_data: the model names no classes of its own (a Darknet cfg): a data set's names apply.
        runs_in_ultralytics: ``YOLO(artifact)`` can run what is exported (an Ultralytics model's layout).
    """

    module: nn.Module
    example: torch.Tensor
    path: str
    sha256: str
    kind: str = "torch"
    task: str = "module"
    names: dict = field(default_factory=dict)
    stride: int = 32
    head_scope: str | None = None
    kpt_shape: list | None = None
    dynamic: bool = False
    head: dict | None = None
    resize: str = "letterbox"
    output_names: tuple[str, ...] = ("output0",)
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    names_from_data: bool = False
    runs_in_ultralytics: bool = False

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.example.shape[-2]), int(self.example.shape[-1])

    @property
    def imgsz(self) -> int | list[int]:
        """The input side (square inputs), else ``[height, width]``."""
        h, w = self.input_hw
        return w if h == w else [h, w]

    @property
    def dynamic_batch(self) -> bool:
        """A dynamic export leaves the batch free too, as Ultralytics' own do (its predictor then batches a
        list of images); not for a head that emits one image's rows (OpenCV's Darknet decode)."""
        return self.dynamic and not (self.head and self.head.get("format") == "darknet-rows")

    @property
    def stem(self) -> str:
        return Path(self.path).stem

    @property
    def nc(self) -> int | None:
        if self.head and "nc" in self.head:
            return int(self.head["nc"])
        return len(self.names) if self.names else None

    def with_names(self, names: dict) -> None:
        """Take class names from a data set (Darknet cfgs have none of their own)."""
        self.names = dict(names)

    def metadata(self, precision: str, **edgeprune_extra) -> dict:
        """Ultralytics-style metadata.yaml content (what AutoBackend reads) plus edgeprune's keys.

        ``edgeprune.head`` and ``edgeprune.resize`` say how to feed the artifact and decode its
        outputs, so ``eval``, ``bench --e2e`` and the board script need nothing else.
        """
        import ultralytics

        batch, channels = int(self.example.shape[0]), int(self.example.shape[1])
        meta = {
            "description": f"edgeprune export of {Path(self.path).name}",
            "author": "edgeprune",
            "date": datetime.now(timezone.utc).isoformat(),
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "stride": self.stride,
            "task": self.task,  # "module" for a plain torch module: no Ultralytics task claimed
            "batch": batch,
            "imgsz": list(self.input_hw),
            "names": self.names,
            "channels": channels,
            "args": {"batch": batch, "half": precision == "fp16", "int8": precision == "int8",
                     "nms": False, "dynamic": self.dynamic},
            "edgeprune": {"precision": precision, "source_sha256": self.sha256, "source_kind": self.kind,
                          "head": self.head, "resize": self.resize, "outputs": list(self.output_names),
                          **edgeprune_extra},
        }
        if self.kpt_shape:
            meta["kpt_shape"] = list(self.kpt_shape)
        return meta

    def write_metadata(self, folder: Path, precision: str, **edgeprune_extra) -> Path:
        out = Path(folder) / "metadata.yaml"
        with atomic_output(out) as tmp:
            tmp.write_text(yaml.safe_dump(self.metadata(precision, **edgeprune_extra), sort_keys=False))
        return out


@dataclass(frozen=True)
class TrainRequest:
    """Training settings as the user gave them; None (or False, or 0) means "not given".

    Shared fields apply to every source; the others are refused by sources they do not apply to.

    Args:
        epochs, imgsz, batch, workers, seed, lr0, device: as the ``train``/``finetune`` options.
        cache: keep decoded images in RAM (the Ultralytics trainer).
        warmup_epochs: the Ultralytics trainer's warm-up.
        burn_in: a Darknet cfg's warm-up iterations.
        weights: a Darknet cfg's starting .weights.
        converge: stop once mAP50-95 gained < 0.3 points over this many epochs (training from a yaml or checkpoint).
        from_scratch: train a checkpoint's architecture from fresh weights.
        teacher: fine-tuning: ``"auto"`` (the model it was pruned from), a checkpoint, or None (labels only).
        distill_weight: fine-tuning: the distillation loss's scale.
        images: fine-tuning without labels: a folder of images the model learns its teacher's outputs on.
        resume: continue the run a killed process left staged for the same output.
    """

    epochs: int = 15
    imgsz: int | None = None
    batch: int = 16
    workers: int = 2
    seed: int = 0
    lr0: float | None = None
    device: str = "auto"
    cache: bool = False
    warmup_epochs: float | None = None
    burn_in: int | None = None
    weights: str | None = None
    converge: int = 0
    from_scratch: bool = False
    teacher: str | None = "auto"
    distill_weight: float = 1.0
    images: str | None = None
    resume: bool = False

    def given(self, *names: str) -> list[str]:
        """Which of ``names`` the user set (differ from the defaults)."""
        defaults = TrainRequest()
        return [n for n in names if getattr(self, n) != getattr(defaults, n)]


@dataclass(frozen=True)
class SparsifyRequest:
    """Sparsity-training settings: the prune to prepare for (Ultralytics) or the L1 strength (Darknet).

    None means "not given"; each source refuses what it cannot use.
    """

    train: TrainRequest = field(default_factory=TrainRequest)
    ratio: float | None = None
    method: str | None = None
    global_pruning: bool = False
    round_to: int | None = None
    head_ratio: float | None = None
    hold: float | None = None
    strength: float | None = None
    layers: int = 0  # residual units the prune also removes (Ultralytics)


REPO_MODULE = "models.yolo"  # the module every YOLOv5/YOLOv7 repository checkpoint pickles its model class from


def pickled_modules(pickled: bytes) -> set[str]:
    """The modules whose classes a pickle references (read with pickletools, nothing is unpickled).

    Why not a substring search: an Ultralytics checkpoint also stores the git commit message of the
    folder it was trained in, which may name any module.
    """
    modules: set[str] = set()
    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(pickled)):
            if op.name == "GLOBAL":  # protocols 0-3: "module name"
                modules.add(str(arg).split(" ", 1)[0])
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:  # protocol 4+: module and name pushed before
                modules.add(strings[-2])
            elif isinstance(arg, str):
                strings = (strings + [arg])[-2:]
    except (ValueError, EOFError):
        pass  # a truncated pickle: what was read so far
    return modules


def is_repo_checkpoint(path: Path) -> bool:
    """True when ``path`` pickles the repositories' ``models.yolo`` classes (read without unpickling)."""
    path = Path(path)
    if path.suffix.lower() not in (".pt", ".pth") or not path.is_file():
        return False
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                return pickled is not None and REPO_MODULE in pickled_modules(archive.read(pickled))
        with open(path, "rb") as fh:  # torch's legacy format: protocol-2 GLOBAL opcodes among the first bytes
            return b"c" + REPO_MODULE.encode() + b"\n" in fh.read(4 << 20)
    except (OSError, zipfile.BadZipFile):
        return False


def refuse(path, source: str, given: list[str], why: str) -> None:
    """One sentence refusing options (``given``, field names) a source cannot honour."""
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise EdgepruneError(f"{options} {'does' if len(given) == 1 else 'do'} not apply to {path} ({source}): {why}")


class ModelSource(abc.ABC):
    """A kind of model file edgeprune takes, registered with :func:`toolchain.models.sources.register_source`.

    Attributes:
        name: registry key.
        summary: one line for help texts.
        suffixes: file suffixes it claims (lower case, with the dot).
        separate_weights: the model comes in two files (a structure and its ``--weights``).
        native_validator: its :meth:`evaluate` is its framework's own validator (the number users compare
            with their training logs); otherwise ``eval`` runs it through edgeprune's pipeline.
    """

    name: str = ""
    summary: str = ""
    suffixes: tuple[str, ...] = ()
    separate_weights: bool = False
    native_validator: bool = False

    def claims(self, path: Path) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    @abc.abstractmethod
    def prepare(self, path: Path, request: SourceRequest) -> ExportSource:
        """Load ``path`` and prepare it as the request says.

        Raises:
            EdgepruneError: unreadable file, unsupported model, bad size.
        """

    def default_imgsz(self, path: Path) -> tuple[int | None, str]:
        """The input size used when the user gives none, and why (for the CLI's announcement)."""
        return None, ""

    def default_weights(self, path: Path) -> Path | None:
        """The weights file beside ``path`` (sources with :attr:`separate_weights`), None when there is none."""
        return None

    def check_request(self, path: Path, request: SourceRequest, bn_eps_given: bool = False) -> None:
        """Refuse export options this source cannot honour (before any work)."""

    def _cannot(self, path: Path, what: str):
        return UnsupportedModelError(f"{path} is a {self.name} model ({self.summary}); edgeprune cannot {what} it")

    def train(self, path: Path, data: str, out: Path, request: TrainRequest, on_epoch=None):
        """Train ``path`` on ``data`` into the run folder ``out``; returns a :class:`toolchain.models.training.TrainResult`."""
        raise self._cannot(path, "train")

    def finetune(self, path: Path, data: str, out: Path, request: TrainRequest, on_epoch=None):
        """Fine-tune ``path`` keeping its architecture; returns a :class:`toolchain.models.training.TrainResult`."""
        raise self._cannot(path, "fine-tune")

    def sparsify(self, path: Path, data: str, out: Path, request: SparsifyRequest, on_epoch=None):
        """Sparsity-train ``path``; returns a :class:`toolchain.models.sparsity.SparsityResult`."""
        raise self._cannot(path, "sparsity-train")

    def evaluate(self, path: Path, data: str, imgsz: int | None = None, batch: int = 16, split: str = "val",
                 weights: str | None = None):
        """Score ``path`` on ``data``: a :class:`toolchain.models.validator.EvalResult`."""
        raise self._cannot(path, "evaluate")

    def prune(self, path: Path, out: Path, cfg, **options):
        """Prune ``path`` into ``out`` as ``edgeprune prune`` does; returns a :class:`toolchain.models.prune_job.PruneReport`."""
        raise self._cannot(path, "prune")

    def bn_gammas(self, path: Path, weights: str | None = None):
        """Every |BatchNorm gamma| of the model (a float tensor), or None when it has no BatchNorm to read."""
        return None

    def stats(self, path: Path, imgsz: int, weights: str | None = None):
        """Parameters and MACs of ``path`` at ``imgsz`` (:class:`toolchain.models.model_stats.ModelStats`)."""
        raise self._cannot(path, "measure")

    def exports_with_ultralytics(self, path: Path) -> bool:
        """True when Ultralytics' own exporter takes ``path`` (so its exports are the speed reference)."""
        return False

    def fit_sweep(self, path: Path, settings):
        """``settings`` (a sweep's) checked against ``path`` and its data, with the size fixed; refuses what
        does not apply to this source, in one sentence."""
        raise self._cannot(path, "sweep")

    def prune_point(self, path: Path, out_dir: Path, ratio: float, settings, weights: str | None = None
                    ) -> tuple[Path, str | None]:
        """Prune ``path`` at ``ratio`` into ``out_dir`` as a sweep point (``settings``: the sweep's); ratio 0 copies it.

        Returns the point's model file and its weights file (None when the model carries its own).
        This default serves sources whose :meth:`prune` writes one file.
        """
        model = out_dir / "model.pt"
        if ratio == 0:
            shutil.copyfile(path, model)
            return model, None
        self.prune(path, model, PruneConfig(ratio=ratio, method=settings.method, global_pruning=settings.global_pruning,
                                            round_to=settings.round_to, steps=settings.steps, imgsz=settings.imgsz,
                                            data=settings.data, head_ratio=settings.head_ratio), evaluate=False)
        return model, None
