"""What every target exports from (:class:`ExportSource`) and the interface that makes one (:class:`ModelSource`).

Why one interface: deploy, eval, bench, sweep and preflight must treat an Ultralytics
checkpoint, a pickled torch module and a Darknet cfg + .weights alike. A source turns a model
file into a float32 eval-mode module plus what the pipelines need to feed it and read it:
the input size, how images are fitted into it (``resize``), and how its outputs become
boxes (``head``, see :func:`toolchain.core.prepost.predictions`). Targets then export that
module without knowing where it came from, and every artifact carries ``head`` and
``resize`` in its metadata, so evaluation and the board script decode it the same way.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml
from torch import nn

from toolchain.core.fileio import atomic_output


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

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.example.shape[-2]), int(self.example.shape[-1])

    @property
    def imgsz(self) -> int | list[int]:
        """The input side (square inputs), else ``[height, width]``."""
        h, w = self.input_hw
        return w if h == w else [h, w]

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
            "task": self.task if self.task != "module" else "detect",
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


class ModelSource(abc.ABC):
    """A kind of model file edgeprune takes, registered with :func:`toolchain.models.sources.register_source`.

    Attributes:
        name: registry key.
        summary: one line for help texts.
        suffixes: file suffixes it claims (lower case, with the dot).
    """

    name: str = ""
    summary: str = ""
    suffixes: tuple[str, ...] = ()

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
