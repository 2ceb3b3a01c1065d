"""The part of a YOLO detector that goes to the DPU: everything up to the head's convolutions.

Why cut there: the head's decode (DFL softmax, anchor arithmetic, reshapes, sigmoid) has no
DPU implementation, and leaving it in the graph splits the compiled model into DPU and CPU
subgraphs. The board script (run_kv260.py) does that decode in numpy, as the Vitis AI YOLOv8
samples do. Each scale gives one NCHW output ``[4 * reg_max box logits | nc class logits]``;
concatenating the two per scale keeps the output count at three and the outputs
distinguishable by their spatial size alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from toolchain.errors import UnsupportedModelError


@dataclass(frozen=True)
class HeadSpec:
    """What the board needs to decode the raw maps: strides per output, DFL bins and class count."""

    strides: tuple[int, ...]
    reg_max: int
    nc: int

    def to_json(self) -> dict:
        return {"strides": list(self.strides), "reg_max": self.reg_max, "nc": self.nc}


class HeadMaps(nn.Module):
    """The head's box and class branches per scale, concatenated: ``[4 * reg_max box logits | nc class logits]``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.cv2, self.cv3 = head.cv2, head.cv3

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.cat((self.cv2[i](f), self.cv3[i](f)), 1) for i, f in enumerate(feats))


class DPUGraph(nn.Module):
    """A fused Ultralytics detection model, run up to (and including) its head's convolutions.

    Args:
        yolo: fused, eval-mode Ultralytics ``DetectionModel`` (``targets.export_source.prepare`` gives one).
    """

    def __init__(self, yolo: nn.Module):
        super().__init__()
        from ultralytics.nn.modules.head import Detect

        head = yolo.model[-1]
        if type(head) is not Detect:
            raise UnsupportedModelError(f"the DPU export supports plain Detect heads, got {type(head).__name__} "
                                        "(pose, segmentation and OBB heads are not supported)")
        if head.end2end or head.cv2 is None:
            raise UnsupportedModelError("the DPU export supports one-to-many YOLO heads (v5u/v8/v9/11); "
                                        "end-to-end heads (YOLOv10, YOLO26) are not supported")
        self.model = yolo.model  # same attribute name as Ultralytics, so op paths read "model.22.cv2..."
        self.head = HeadMaps(head)
        self.save = set(int(i) for i in yolo.save)
        self.spec = HeadSpec(tuple(int(s) for s in head.stride.tolist()), int(head.reg_max), int(head.nc))

    @property
    def head_scopes(self) -> tuple[str, ...]:
        """Module paths of head ops in a trace of this graph (for preflight's backbone/neck vs head split)."""
        return (f"model.{len(self.model) - 1}", "head")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        saved: list = []
        for m in self.model[:-1]:
            if m.f != -1:
                x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
            x = m(x)
            saved.append(x if m.i in self.save else None)
        return self.head([x if j == -1 else saved[j] for j in self.model[-1].f])


def dpu_graph(source) -> DPUGraph:
    """The DPU part of ``source`` (a YOLO :class:`targets.export_source.ExportSource`)."""
    if source.task == "module":
        raise UnsupportedModelError(f"{source.path} is a plain nn.Module; the DPU export takes Ultralytics YOLO "
                                    "detection checkpoints")
    if source.task != "detect":
        raise UnsupportedModelError(f"{source.path} is an Ultralytics {source.task} model; the DPU export supports "
                                    "detect models")
    return DPUGraph(source.module).eval()
