"""What every target exports from: a model prepared for inference, plus its metadata.

Why shared: OpenVINO and ONNX Runtime must see the *same* graph (BN folded, YOLO head in
export mode returning ``(B, 4 + nc, anchors)``) so their numbers are comparable, and the
``metadata.yaml`` they write must be the one Ultralytics reads, so ``YOLO(artifact)`` works.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml
from torch import nn

from toolchain.fileio import atomic_output, sha256_of
from toolchain.loading import LoadedModel, example_input, load_model


@dataclass
class ExportSource:
    """A model ready for export.

    Attributes:
        module: float32 eval-mode module; YOLO heads in export mode, BN fused.
        example: input used for tracing, ``1x3xSxS`` float32 in [0, 1].
        path, sha256: the source file and its hash (recorded in deploy.json).
        task: Ultralytics task or ``module``.
        names: class names (detectors).
        stride: the largest YOLO stride (for letterboxing), 32 for plain modules.
        head_scope: module path of the YOLO head (``model.22``), used to keep its decode in float.
        kpt_shape: keypoint shape for pose models.
    """

    module: nn.Module
    example: torch.Tensor
    path: str
    sha256: str
    task: str = "module"
    names: dict = field(default_factory=dict)
    stride: int = 32
    head_scope: str | None = None
    kpt_shape: list | None = None
    dynamic: bool = False

    @property
    def imgsz(self) -> int:
        return int(self.example.shape[-1])

    @property
    def stem(self) -> str:
        return Path(self.path).stem

    def metadata(self, precision: str) -> dict:
        """Ultralytics-style metadata.yaml content (what AutoBackend reads) plus edgeprune's keys."""
        import ultralytics

        meta = {
            "description": f"edgeprune export of {Path(self.path).name}",
            "author": "edgeprune",
            "date": datetime.now(timezone.utc).isoformat(),
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "stride": self.stride,
            "task": self.task if self.task != "module" else "detect",
            "batch": int(self.example.shape[0]),
            "imgsz": [int(self.example.shape[-2]), int(self.example.shape[-1])],
            "names": self.names,
            "channels": int(self.example.shape[1]),
            "args": {"batch": int(self.example.shape[0]), "half": precision == "fp16", "int8": precision == "int8",
                     "nms": False, "dynamic": self.dynamic},
            "edgeprune": {"precision": precision, "source_sha256": self.sha256},
        }
        if self.kpt_shape:
            meta["kpt_shape"] = list(self.kpt_shape)
        return meta

    def write_metadata(self, folder: Path, precision: str) -> Path:
        out = Path(folder) / "metadata.yaml"
        with atomic_output(out) as tmp:
            tmp.write_text(yaml.safe_dump(self.metadata(precision), sort_keys=False))
        return out


def _yolo_for_export(model: nn.Module, dynamic: bool) -> tuple[nn.Module, str]:
    from ultralytics.nn.modules.head import Classify, Detect

    module = copy.deepcopy(model).float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    module = module.fuse(verbose=False)
    head_scope = None
    for name, m in module.named_modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", dynamic
            head_scope = name
        elif isinstance(m, Classify):  # export mode: the probabilities alone, as Ultralytics' exports give
            m.export = True
    return module, head_scope


class RawHeadOutputs(nn.Module):
    """A YOLO model whose output is the head's raw maps ``(B, 4*reg_max + nc [+ nk], anchors)``.

    Why: the decoded output mixes pixel-scale boxes with probabilities, so "equal to 1e-4"
    means different things for its rows; the raw conv outputs are the network itself, and
    this wrapper lets a backend's numerics be checked on them.
    """

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model = model
        # The head's raw branch outputs, whatever train/eval mode exporters put the model in.
        head.forward = lambda feats: head.forward_head(feats, **head.one2many)

    def forward(self, x):
        out = self.model(x)
        return torch.cat([out[k] for k in ("boxes", "scores", "kpts") if k in out], 1)


def prepare(model_path: str | Path, imgsz: int | None, input_shape: tuple[int, ...] | None = None,
            raw_head: bool = False, dynamic: bool = False) -> ExportSource:
    """Load ``model_path`` and prepare it for export at ``imgsz`` (None: the size it was trained at).

    Args:
        raw_head: export the head's raw maps instead of decoded boxes (numerical checks only).
        dynamic: YOLO head computes its anchors from the input size at run time, so the artifact
            can be run at other sizes (multi-stream splicing runs one artifact at 416 and 832).
    """
    loaded: LoadedModel = load_model(model_path)
    example = example_input(loaded, imgsz, input_shape)
    if loaded.is_yolo:
        example = torch.rand_like(example)  # images are in [0, 1]
        module, head = _yolo_for_export(loaded.model, dynamic)
        kpt = getattr(module.model[-1], "kpt_shape", None)
        if raw_head:
            module = RawHeadOutputs(module, module.model[-1])
        with torch.inference_mode():  # dry run: the head caches its anchors, so tracing sees one code path
            module(example)
        stride = int(max(getattr(loaded.model, "stride", torch.tensor([32])).tolist()))
        return ExportSource(module, example, str(model_path), sha256_of(model_path), loaded.task, loaded.names,
                            stride, head, list(kpt) if kpt else None, dynamic)
    return ExportSource(loaded.model.eval(), example, str(model_path), sha256_of(model_path))
