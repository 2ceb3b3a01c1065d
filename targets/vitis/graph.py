"""The part of a YOLO detector that goes to the DPU: everything up to the head's convolutions.

A Darknet model already ends there (its [yolo] decode is not part of the generated module's
forward), so its DPU graph is the model itself; the board decodes its maps with the anchors
of the cfg (:func:`toolchain.core.prepost.decode_darknet`).

Why cut there: the head's decode (DFL softmax, anchor arithmetic, reshapes, sigmoid) has no
DPU implementation, and leaving it in the graph splits the compiled model into DPU and CPU
subgraphs. The board script (run_kv260.py) does that decode in numpy, as the Vitis AI YOLOv8
samples do. Each scale gives one NCHW output ``[4 * reg_max box logits | nc class logits]``;
concatenating the two per scale keeps the output count at three and the outputs
distinguishable by their spatial size alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from targets.vitis.dpu_rewrite import fix_leaky_slopes
from toolchain.core.errors import UnsupportedModelError


@dataclass(frozen=True)
class HeadSpec:
    """What the board needs to decode the raw maps: strides per output, DFL bins and class count."""

    strides: tuple[int, ...]
    reg_max: int
    nc: int

    def to_json(self) -> dict:
        """The head description artifacts carry (:func:`toolchain.core.prepost.predictions`, format ``dfl``)."""
        return {"format": "dfl", "strides": list(self.strides), "reg_max": self.reg_max, "nc": self.nc}


@dataclass(frozen=True)
class DarknetHeadSpec:
    """A Darknet model's head description (format ``darknet``), as its source made it."""

    head: dict

    @property
    def nc(self) -> int:
        return int(self.head["nc"])

    def to_json(self) -> dict:
        return dict(self.head)


def head_inputs(layers, save: set, head_from, x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``layers`` as Ultralytics and both YOLO repositories route them (each layer reads ``m.f``, the
    outputs of the layers in ``save`` are kept) and return the feature maps the head reads (``head_from``)."""
    saved: list = []
    for m in layers:
        if m.f != -1:
            x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
        x = m(x)
        saved.append(x if m.i in save else None)
    return [x if j == -1 else saved[j] for j in head_from]


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
        yolo: fused, eval-mode Ultralytics ``DetectionModel`` (``toolchain.models.sources.prepare`` gives one).
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
        return self.head(head_inputs(self.model[:-1], self.save, self.model[-1].f, x))


class RepoHeadMaps(nn.Module):
    """A YOLOv5/YOLOv7 head's prediction convs as plain convs: raw maps ``anchors x (5 + nc)`` per scale, no decode.

    YOLOv7's ``IDetect`` adds a learnt constant before each conv (``ImplicitA``) and scales its output
    (``ImplicitM``); both fold into the 1x1 conv exactly (bias += W a; W, bias *= m), as the repository's
    own ``IDetect.fuse`` does, so the DPU sees one conv per scale. A head whose ``fuse`` already ran
    (its forward is ``fuseforward``) has nothing left to fold.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        ia, im = getattr(head, "ia", None), getattr(head, "im", None)
        folded = getattr(getattr(head, "forward", None), "__name__", "") == "fuseforward"
        convs = []
        for i, conv in enumerate(head.m):
            if conv.kernel_size != (1, 1) or conv.groups != 1:
                raise UnsupportedModelError(f"the DPU export folds the head's implicit layers into 1x1 prediction "
                                            f"convs; head conv {i} is {conv.kernel_size[0]}x{conv.kernel_size[1]}")
            weight = conv.weight.detach().clone()
            bias = conv.bias.detach().clone() if conv.bias is not None else weight.new_zeros(weight.shape[0])
            if ia is not None and not folded:
                bias = bias + weight[:, :, 0, 0] @ ia[i].implicit.detach().reshape(-1)
            if im is not None and not folded:
                scale = im[i].implicit.detach().reshape(-1)
                weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale
            plain = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
            plain.weight.data.copy_(weight)
            plain.bias.data.copy_(bias)
            convs.append(plain)
        self.m = nn.ModuleList(convs)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(conv(f) for conv, f in zip(self.m, feats))


def repo_anchors(head: nn.Module) -> list[list[list[float]]]:
    """Each scale's anchors in input pixels: ``anchors`` (grid units, as both repositories keep them after
    building the model) times the stride, else a pixel ``anchor_grid`` buffer."""
    strides = head.stride.reshape(-1).tolist()
    if isinstance(getattr(head, "anchors", None), torch.Tensor):
        pixels = head.anchors.reshape(head.nl, head.na, 2) * head.stride.reshape(-1, 1, 1)
    elif isinstance(getattr(head, "anchor_grid", None), torch.Tensor):
        pixels = head.anchor_grid.reshape(head.nl, head.na, 2)
    else:
        raise UnsupportedModelError(f"the {type(head).__name__} head keeps no anchors the board could decode with")
    if len(strides) != head.nl:
        raise UnsupportedModelError(f"the {type(head).__name__} head has {head.nl} scales but {len(strides)} strides")
    return [[[round(float(v), 4) for v in pair] for pair in scale] for scale in pixels.tolist()]


class RepoDPUGraph(nn.Module):
    """A YOLOv5/YOLOv7 repository model run up to its prediction convs; the board decodes as the repositories do.

    The repositories' decode is Darknet's ``new_coords`` [yolo] maths with ``scale_x_y`` 2 (xy =
    2 sigmoid(t) - 0.5 + cell, wh = (2 sigmoid(t))^2 anchor; score = objectness x class), so the
    artifact carries a ``darknet`` head description with the logistic on the board (``host_logistic``):
    one decoder, already verified against OpenCV, serves both.

    Args:
        model: the repository's ``Model``/``DetectionModel`` (eval mode; fused or not).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        head = model.model[-1]
        if not hasattr(head, "m") or not hasattr(head, "na"):
            raise UnsupportedModelError(f"the DPU export supports the repositories' Detect/IDetect heads, got "
                                        f"{type(head).__name__}")
        self.model = copy.deepcopy(model.model[:-1])  # the slope fix below must not change the source
        self.leaky_slopes_fixed = fix_leaky_slopes(self.model)  # YOLOv7-tiny's LeakyReLU(0.1)
        self.head_from = head.f
        self.head = RepoHeadMaps(head)
        self.save = set(int(i) for i in model.save)
        strides = [int(s) for s in head.stride.reshape(-1).tolist()]
        heads = [{"anchors": anchors, "stride": [s, s], "scale_x_y": 2.0, "new_coords": True, "host_logistic": True}
                 for anchors, s in zip(repo_anchors(head), strides)]
        self.spec = DarknetHeadSpec({"format": "darknet", "nc": int(head.nc), "heads": heads})

    @property
    def adaptations(self) -> list[str]:
        notes = ["the head's logistic and decode run on the board (the repositories' decode, as Darknet's "
                 "new_coords with scale_x_y 2)"]
        if self.leaky_slopes_fixed:
            notes.append(f"{self.leaky_slopes_fixed} LeakyReLU(0.1) run as the DPU's LeakyReLU(26/256)")
        return notes

    @property
    def head_scopes(self) -> tuple[str, ...]:
        return ("head",)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(head_inputs(self.model, self.save, self.head_from, x))


class DarknetDPUGraph(nn.Module):
    """A Darknet model's generated module, as the DPU runs it: it returns the maps feeding its [yolo] layers.

    BatchNorm is folded into each conv (as Ultralytics' fuse() does for its models). Two
    adaptations change the maths, both recorded: Darknet's LeakyReLU(0.1) becomes the DPU's LeakyReLU(26/256)
    (the only slope it implements; the quantizer would make the same change), and a logistic
    activation on a conv feeding a [yolo] layer (``new_coords`` heads) moves to the board's
    decode (``host_logistic``), since the DPU has no sigmoid.
    """

    def __init__(self, model: nn.Module, head: dict):
        super().__init__()
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.model = copy.deepcopy(model).eval()
        head = copy.deepcopy(head)
        for block in self.model.modules():
            if isinstance(getattr(block, "conv", None), nn.Conv2d) and isinstance(getattr(block, "bn", None),
                                                                                 nn.BatchNorm2d):
                block.conv, block.bn = fuse_conv_bn_eval(block.conv, block.bn), nn.Identity()

        self.leaky_slopes_fixed = fix_leaky_slopes(self.model)
        for entry in head["heads"]:
            conv = getattr(self.model, f"l{entry['layer'] - 1}", None)
            if conv is not None and isinstance(getattr(conv, "act", None), nn.Sigmoid):
                conv.act = nn.Identity()
                entry["host_logistic"] = True
        self.spec = DarknetHeadSpec(head)

    @property
    def adaptations(self) -> list[str]:
        """What differs from the cfg's own maths (deploy.json notes)."""
        notes = []
        if self.leaky_slopes_fixed:
            notes.append(f"{self.leaky_slopes_fixed} LeakyReLU(0.1) run as the DPU's LeakyReLU(26/256)")
        moved = sum(bool(h.get("host_logistic")) for h in self.spec.head["heads"])
        if moved:
            notes.append(f"the logistic of {moved} head conv(s) runs in the board's decode, not on the DPU")
        return notes

    @property
    def head_scopes(self) -> tuple[str, ...]:
        """The convs feeding the [yolo] layers (``model.l29``...), for preflight's backbone/neck vs head split."""
        return tuple(f"model.l{h['layer'] - 1}" for h in self.spec.head["heads"])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(x))


def dpu_graph(source) -> nn.Module:
    """The DPU part of ``source`` (a :class:`toolchain.models.sources.ExportSource`): DPUGraph or DarknetDPUGraph."""
    head_format = (source.head or {}).get("format", "ultralytics")
    if head_format.startswith("darknet"):  # outputs decoded as Darknet's [yolo] layers
        if head_format != "darknet":
            raise UnsupportedModelError(f"{source.path}: the DPU runs the raw head maps; deploy without --decode")
        return DarknetDPUGraph(source.module, source.head).eval()
    if head_format == "yolo-rows":  # a YOLOv5/YOLOv7 repository model (RowsOutput around it)
        return RepoDPUGraph(getattr(source.module, "model", source.module)).eval()
    if source.task == "module":
        raise UnsupportedModelError(f"{source.path} is a plain nn.Module; the DPU export takes Ultralytics YOLO "
                                    "detection checkpoints")
    if source.task != "detect":
        raise UnsupportedModelError(f"{source.path} is an Ultralytics {source.task} model; the DPU export supports "
                                    "detect models")
    return DPUGraph(source.module).eval()
