"""Darknet models: a ``.cfg`` and its ``.weights``, run as the PyTorch module cfg_codegen generates.

Why through the generated module: it is the code checked against OpenCV's Darknet importer, so
every artifact built from it (OpenVINO, ONNX, the DPU) inherits that parity, and deploy's
fidelity check compares against it. The module returns the raw maps feeding each ``[yolo]``
layer (named as OpenCV names them, ``conv_N``); the anchors, ``scale_x_y`` and ``new_coords``
of each head go into the artifact's metadata (``edgeprune.head``), so evaluation, the bench
and the board decode them with :func:`toolchain.core.prepost.decode_darknet`. Images are stretched
to the input size, as Darknet does, unless the cfg says ``letter_box=1``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from toolchain.core.errors import InputFileError, ModelMismatchError
from toolchain.core.fileio import sha256_of
from toolchain.models.sources import register_source
from toolchain.models.sources.base import ExportSource, ModelSource, SourceRequest

DECODE_SCOPE = "decode"  # module path of the decode appended with ``decode=True`` (kept in float by INT8)


class DarknetRows(nn.Module):
    """The generated model followed by its decode: OpenCV DNN's yolo rows per head.

    The decode is a submodule of its own (:data:`DECODE_SCOPE`), so quantizers can leave its
    box arithmetic in float, as they do for an Ultralytics head.
    """

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.model = model
        self.decode = _Decode(model, height, width)

    def forward(self, x):
        return self.decode(*self.model(x))


class _Decode(nn.Module):
    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.heads = nn.ModuleList(getattr(model, f"l{index}") for index in model.HEAD_LAYERS)
        self.height, self.width = height, width

    def forward(self, *maps):
        return tuple(head.decode(m, self.height, self.width) for head, m in zip(self.heads, maps, strict=True))


def output_names(network, decode: bool) -> tuple[str, ...]:
    """OpenCV's names for what each head outputs: ``yolo_N`` (rows) or the layer feeding it (``conv_N``)."""
    from cfg_codegen.layers import Convolutional

    names = []
    for yolo in network.yolo_layers:
        if decode:
            names.append(f"yolo_{yolo.index}")
        else:
            feeding = network.layers[yolo.index - 1]
            names.append(f"conv_{feeding.index}" if isinstance(feeding, Convolutional)
                         else f"{feeding.kind}_{feeding.index}")
    return tuple(names)


def head_description(network, shapes, height: int, width: int, decode: bool) -> dict:
    """The metadata that turns the outputs into boxes (:func:`toolchain.core.prepost.predictions`)."""
    classes = {y.classes for y in network.yolo_layers}
    if len(classes) != 1:
        raise ModelMismatchError(f"{network.path}: the [yolo] layers disagree on the class count "
                                 f"({', '.join(map(str, sorted(classes)))})")
    heads = []
    for yolo in network.yolo_layers:
        shape = shapes[yolo.index]
        heads.append({"layer": yolo.index, "anchors": [[_plain(a) for a in pair] for pair in yolo.head_anchors],
                      "mask": list(yolo.mask), "stride": [_plain(width / shape.width), _plain(height / shape.height)],
                      "scale_x_y": yolo.scale_x_y, "new_coords": yolo.new_coords, "thresh": yolo.thresh})
    return {"format": "darknet-rows" if decode else "darknet", "nc": classes.pop(), "heads": heads}


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def default_weights(cfg: Path) -> Path | None:
    """``<cfg stem>.weights`` beside the cfg (cfg-prune writes pruned.cfg + pruned.weights), if present."""
    candidate = Path(cfg).with_suffix(".weights")
    return candidate if candidate.is_file() else None


@register_source
class DarknetSource(ModelSource):
    name = "darknet"
    summary = "Darknet .cfg with --weights (default: the .weights of the same name beside it)"
    suffixes = (".cfg",)

    def default_imgsz(self, path: Path) -> tuple[int | None, str]:
        from cfg_codegen.parser import parse_cfg

        net = parse_cfg(path).net
        if net.width != net.height:
            return None, ""
        return net.width, f"the [net] size of {path}"

    def prepare(self, path: Path, request: SourceRequest) -> ExportSource:
        from cfg_codegen.build import build_model, random_model
        from cfg_codegen.parser import parse_cfg
        from cfg_codegen.shapes import infer_shapes
        from cfg_codegen.weights import read_weights

        from cfg_codegen.errors import UnsupportedCfgError

        network = parse_cfg(path)
        net = network.net
        if not network.yolo_layers:
            raise UnsupportedCfgError(f"unsupported: {path} has no [yolo] layer; edgeprune deploys YOLO detectors")
        if request.decode and request.dynamic:
            raise ModelMismatchError("--decode computes box sizes for the input size it is built at; deploy it with a "
                                     "fixed size (no --dynamic-shape), or without --decode")
        height, width = _input_hw(network, request)
        shapes = infer_shapes(network, height, width)  # a clear error when the net cannot run at this size
        head = head_description(network, shapes, height, width, request.decode)
        weights = Path(request.weights) if request.weights else default_weights(path)
        notes = list(network.warnings)
        files = [{"path": str(path), "sha256": sha256_of(path), "bytes": path.stat().st_size}]
        if weights is not None:
            if not weights.is_file():
                raise InputFileError(f"weights file {weights} does not exist")
            model = build_model(network, read_weights(weights, network), request.bn_eps)
            files.append({"path": str(weights), "sha256": sha256_of(weights), "bytes": weights.stat().st_size})
        else:
            model, _ = random_model(network, height, width, 0, request.bn_eps)
            notes.append(f"no weights for {path} (give --weights): random parameters, good for testing the "
                         "pipeline only")
        module = model.eval()
        head_scope = None
        if request.decode:
            module, head_scope = DarknetRows(model, height, width).eval(), DECODE_SCOPE
        for p in module.parameters():
            p.requires_grad_(False)
        example = torch.rand(1, net.channels, height, width)
        stride = max(max(h["stride"]) for h in head["heads"])
        return ExportSource(
            module, example, str(path), files[0]["sha256"], kind="darknet", task="detect",
            names={i: f"class{i}" for i in range(head["nc"])}, stride=int(round(stride)), head_scope=head_scope,
            dynamic=request.dynamic, head=head, resize="letterbox-grey" if net.letter_box else "stretch",
            output_names=output_names(network, request.decode), files=files, notes=notes)


def _input_hw(network, request: SourceRequest) -> tuple[int, int]:
    if request.input_shape is not None:
        shape = tuple(request.input_shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != network.net.channels:
            raise ModelMismatchError(f"{network.path} takes 1x{network.net.channels}xHxW inputs; got --input-shape "
                                     f"{','.join(map(str, shape))}")
        return int(shape[2]), int(shape[3])
    if request.imgsz:
        return int(request.imgsz), int(request.imgsz)
    return network.net.height, network.net.width
