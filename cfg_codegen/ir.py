"""Darknet cfg (+ weights) -> OpenVINO IR directory with a metadata.yaml.

Why through the generated PyTorch model: it is the model checked against OpenCV, so the IR
inherits that parity; :func:`torch.export.export` gives OpenVINO a static graph at the chosen
input size. fp16 halves the weights on disk (``compress_to_fp16``); int8 runs NNCF
post-training quantization on images of a YOLO data.yaml preprocessed as Darknet does (see
:mod:`cfg_codegen.calib`). ``--decode`` appends the yolo maths *after* quantization, as a
separately converted graph spliced onto the head outputs: NNCF would otherwise put
FakeQuantize nodes into the box/score arithmetic, and existing OpenCV post-processing expects
float rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cfg_codegen.codegen import DARKNET_BN_EPS
from cfg_codegen.errors import CfgError
from cfg_codegen.layers import Convolutional, Network

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "images"
XML_NAME, BIN_NAME, METADATA_NAME = "model.xml", "model.bin", "metadata.yaml"


@dataclass(frozen=True)
class IrConfig:
    """How to build the IR.

    Args:
        width, height: input size in pixels (default: the cfg's [net] size).
        precision: fp32, fp16 (weights stored as fp16) or int8 (NNCF, needs ``data``).
        data: YOLO data.yaml; calibration images for int8, class names for the metadata.
        decode: outputs are OpenCV-style rows instead of the raw head maps.
        calibration_images: at most this many images feed int8 calibration.
        bn_eps: BatchNorm epsilon (Darknet 1e-5; OpenCV's importer 1e-6).
        seed: seed of the random parameters used when no weights are given.
    """

    width: int | None = None
    height: int | None = None
    precision: str = "fp32"
    data: str | None = None
    decode: bool = False
    calibration_images: int = 300
    bn_eps: float = DARKNET_BN_EPS
    seed: int = 0

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise CfgError(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.precision == "int8" and not self.data:
            raise CfgError("int8 needs calibration images: pass a YOLO data.yaml with --data")


@dataclass(frozen=True)
class HeadInfo:
    layer: int  # index of the [yolo] layer
    output: str  # IR output name
    grid: tuple[int, int]  # (width, height) in cells
    stride: tuple[float, float]  # input pixels per cell (x, y)
    anchors: tuple[tuple[float, float], ...]
    mask: tuple[int, ...]
    scale_x_y: float
    new_coords: bool
    thresh: float


@dataclass(frozen=True)
class IrResult:
    xml: str
    bin: str
    metadata: str
    precision: str
    decode: bool
    imgsz: tuple[int, int]  # (width, height)
    heads: tuple[HeadInfo, ...]
    weights: str | None
    calibration_images: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {
            "xml": self.xml, "bin": self.bin, "metadata": self.metadata, "precision": self.precision,
            "decode": self.decode, "imgsz": list(self.imgsz), "outputs": [h.output for h in self.heads],
            "weights": self.weights, "random_init": self.weights is None,
            "calibration_images": self.calibration_images, "notes": list(self.notes),
        }


def output_name(network: Network, yolo_index: int, decode: bool) -> str:
    """IR output names follow OpenCV's layer names: ``yolo_82`` (rows) or ``conv_81`` (map)."""
    if decode:
        return f"yolo_{yolo_index}"
    feeding = network.layers[yolo_index - 1]
    return f"conv_{feeding.index}" if isinstance(feeding, Convolutional) else f"{feeding.kind}_{feeding.index}"


def convert_to_ir(cfg: str | os.PathLike, weights: str | os.PathLike | None, out_dir: str | os.PathLike,
                  config: IrConfig = IrConfig()) -> IrResult:
    """Build the model of ``cfg``, load ``weights`` (random when None), write ``out_dir``/model.xml+bin+metadata.yaml.

    Files are written to a temporary folder inside ``out_dir`` and moved in place at the end, so a
    failure leaves no half-written IR; inputs are never overwritten.

    Raises:
        CfgError / UnsupportedCfgError / WeightsError: from parsing, loading or the input size.
        DataError: unusable data.yaml for int8 or class names.

    Example:
        >>> convert_to_ir("yolov4-tiny.cfg", "yolov4-tiny.weights", "ir", IrConfig(precision="fp16"))  # doctest: +SKIP
    """
    import openvino as ov

    from cfg_codegen.build import build_model, random_model
    from cfg_codegen.parser import parse_cfg
    from cfg_codegen.shapes import infer_shapes
    from cfg_codegen.weights import read_weights
    from toolchain.fileio import ensure_not_input

    network = parse_cfg(cfg)
    width, height = config.width or network.net.width, config.height or network.net.height
    shapes = infer_shapes(network, height, width)
    names = _class_names(network, config.data)
    notes = list(network.warnings)
    out = Path(out_dir)
    for name in (XML_NAME, BIN_NAME, METADATA_NAME):
        ensure_not_input(out / name, cfg, weights, config.data)

    if weights is not None:
        model = build_model(network, read_weights(weights, network), config.bn_eps)
    else:
        model, _ = random_model(network, height, width, config.seed, config.bn_eps)
        notes.append("no weights given: the IR has random parameters (good for testing the pipeline only)")
    ov_model = _convert(model, (torch.zeros(1, network.net.channels, height, width),))
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})

    used_images = 0
    if config.precision == "int8":
        import nncf

        from cfg_codegen.calib import calibration_batches

        batches = calibration_batches(config.data, width, height, network.net.letter_box, config.calibration_images)
        used_images = len(batches)
        ov_model = nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=used_images)
    if config.decode:
        ov_model = _append_decode(ov_model, model, network.net.channels, height, width)
    heads = _heads(network, shapes, width, height, config.decode)
    for port, head in zip(ov_model.outputs, heads, strict=True):
        port.get_tensor().set_names({head.output})

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cfg2ir-", dir=out))
    try:
        ov.save_model(ov_model, staging / XML_NAME, compress_to_fp16=config.precision == "fp16")
        _write_metadata(staging / METADATA_NAME, network, heads, names, width, height, config, cfg, weights)
        for name in (BIN_NAME, XML_NAME, METADATA_NAME):  # the .bin first: an .xml never points at a stale .bin
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IrResult(str(out / XML_NAME), str(out / BIN_NAME), str(out / METADATA_NAME), config.precision,
                    config.decode, (width, height), heads, None if weights is None else str(weights),
                    used_images, tuple(notes))


def _convert(module: nn.Module, example: tuple):
    import openvino as ov

    with torch.no_grad():
        exported = torch.export.export(module.eval(), example)
    return ov.convert_model(exported)


class _Decoder(nn.Module):
    """The generated model's decode() as a graph of its own: head maps in, OpenCV rows out."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.heads = nn.ModuleList(getattr(model, f"l{index}") for index in model.HEAD_LAYERS)
        self.height, self.width = height, width

    def forward(self, *maps):
        return tuple(head.decode(m, self.height, self.width) for head, m in zip(self.heads, maps, strict=True))


def _append_decode(ov_model, model: nn.Module, channels: int, height: int, width: int):
    """Splice the converted decoder onto the outputs of ``ov_model`` (float maths, never quantized)."""
    import openvino as ov

    with torch.no_grad():
        maps = model(torch.zeros(1, channels, height, width))
    decoder = _convert(_Decoder(model, height, width), tuple(torch.zeros_like(m) for m in maps))
    for parameter, result in zip(decoder.get_parameters(), ov_model.get_results(), strict=True):
        source = result.input_value(0)
        for target in list(parameter.output(0).get_target_inputs()):
            target.replace_source_output(source)
    return ov.Model(decoder.get_results(), ov_model.get_parameters(), ov_model.get_friendly_name())


def _heads(network: Network, shapes, width: int, height: int, decode: bool) -> tuple[HeadInfo, ...]:
    heads = []
    for yolo in network.yolo_layers:
        shape = shapes[yolo.index]
        heads.append(HeadInfo(
            layer=yolo.index, output=output_name(network, yolo.index, decode), grid=(shape.width, shape.height),
            stride=(width / shape.width, height / shape.height), anchors=yolo.head_anchors, mask=yolo.mask,
            scale_x_y=yolo.scale_x_y, new_coords=yolo.new_coords, thresh=yolo.thresh))
    return tuple(heads)


def _class_names(network: Network, data: str | None) -> list[str] | None:
    from cfg_codegen.calib import DataError, class_names, load_data_yaml

    classes = {y.classes for y in network.yolo_layers}
    if data is None:
        return None
    names = class_names(load_data_yaml(data), data)
    if names is not None and classes != {len(names)}:
        raise DataError(f"{data} has {len(names)} class names, but the [yolo] layers of {network.path} have "
                        f"{', '.join(map(str, sorted(classes)))} classes")
    return names


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _write_metadata(path: Path, network: Network, heads, names, width, height, config: IrConfig, cfg, weights) -> None:
    import yaml

    from toolchain.fileio import sha256_of

    classes = network.yolo_layers[0].classes
    meta = {
        "format": "edgeprune darknet IR",
        "imgsz": [width, height],
        "classes": classes,
        "names": names or [f"class{i}" for i in range(classes)],
        "anchors": [[[_plain(a) for a in pair] for pair in h.anchors] for h in heads],
        "strides": [[_plain(s) for s in h.stride] for h in heads],
        "input": {
            "name": INPUT_NAME, "shape": [1, network.net.channels, height, width], "layout": "NCHW",
            "color": "RGB", "scale": "1/255 (values in 0..1), no mean",
            "resize": "letterbox, 0.5 grey" if network.net.letter_box else "stretch (no letterbox)",
        },
        "outputs": {
            "names": [h.output for h in heads],
            "layout": ("rows [cx, cy, w, h, obj, obj*class...] per (y, x, anchor), normalised to 0..1, "
                       "class scores <= thresh zeroed (OpenCV DNN yolo layout)") if config.decode
                      else "raw maps N x anchors*(5+classes) x H x W feeding each [yolo] layer",
        },
        "heads": [
            {"layer": h.layer, "output": h.output, "grid": list(h.grid), "stride": [_plain(s) for s in h.stride],
             "mask": list(h.mask), "anchors": [[_plain(a) for a in pair] for pair in h.anchors],
             "scale_x_y": h.scale_x_y, "new_coords": h.new_coords, "thresh": h.thresh}
            for h in heads
        ],
        "precision": config.precision,
        "decode": config.decode,
        "bn_eps": config.bn_eps,
        "source": {
            "cfg": str(cfg), "cfg_sha256": sha256_of(cfg),
            "weights": None if weights is None else str(weights),
            "weights_sha256": None if weights is None else sha256_of(weights),
            "random_init": weights is None,
        },
    }
    path.write_text(yaml.safe_dump(meta, sort_keys=False))
