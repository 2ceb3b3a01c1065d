"""PyTorch files: Ultralytics YOLO checkpoints and pickled ``nn.Module`` objects (``.pt``/``.pth``).

Why one source for both: they share a suffix and a loader (:func:`toolchain.models.loading.load_model`),
which tells them apart by content. YOLO models are prepared as Ultralytics' exporter does (BN
fused, head in export mode returning ``(B, 4 + nc, anchors)``), so OpenVINO and ONNX Runtime
see the same graph and ``YOLO(artifact)`` reads the metadata.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from toolchain.core.fileio import sha256_of
from toolchain.models.loading import DEFAULT_IMGSZ, example_input, load_model, read_checkpoint, trained_imgsz
from toolchain.models.sources import register_source
from toolchain.models.sources.base import ExportSource, ModelSource, SourceRequest


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


@register_source
class PyTorchSource(ModelSource):
    name = "pytorch"
    summary = "Ultralytics checkpoints and pickled torch modules, .pt/.pth"
    suffixes = (".pt", ".pth")

    def default_imgsz(self, path: Path) -> tuple[int | None, str]:
        ckpt = read_checkpoint(path)
        if not isinstance(ckpt, dict):  # a pickled nn.Module: its size comes from --input-shape
            return None, ""
        said = trained_imgsz(ckpt)
        why = f"the size {path} was trained at" if said else "Ultralytics default: the checkpoint does not say"
        return said or DEFAULT_IMGSZ, why

    def prepare(self, path: Path, request: SourceRequest) -> ExportSource:
        loaded = load_model(path)
        example = example_input(loaded, request.imgsz, request.input_shape)
        files = [{"path": str(path), "sha256": sha256_of(path), "bytes": Path(path).stat().st_size}]
        if not loaded.is_yolo:
            return ExportSource(loaded.model.eval(), example, str(path), files[0]["sha256"], kind="torch", files=files)
        example = torch.rand_like(example)  # images are in [0, 1]
        module, head_scope = _yolo_for_export(loaded.model, request.dynamic)
        kpt = getattr(module.model[-1], "kpt_shape", None)
        if request.raw_head:
            module = RawHeadOutputs(module, module.model[-1])
        with torch.inference_mode():  # dry run: the head caches its anchors, so tracing sees one code path
            module(example)
        stride = int(max(getattr(loaded.model, "stride", torch.tensor([32])).tolist()))
        return ExportSource(module, example, str(path), files[0]["sha256"], kind="ultralytics", task=loaded.task,
                            names=loaded.names, stride=stride, head_scope=head_scope,
                            kpt_shape=list(kpt) if kpt else None, dynamic=request.dynamic, files=files)
