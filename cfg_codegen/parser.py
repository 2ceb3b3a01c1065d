"""Darknet .cfg text -> :class:`~cfg_codegen.layers.Network`, validated.

Why strict where Darknet is lenient: Darknet reads numbers with ``atoi`` (``"3x"`` is 3, ``""``
is 0), silently uses the first of two equal keys and ignores keys it does not know. A converter
that guessed the same way would produce a model that is quietly different from the one trained,
which is how hand-written converters fail in the field (``group_id``/``max_delta`` keys breaking
them). So: malformed values are errors naming file, line, section and key; keys that change the
maths but that we do not implement are ``unsupported:`` errors; keys Darknet only uses for
training are ignored; keys nobody knows become warnings on :attr:`Network.warnings`.

Lines are read like Darknet's ``strip``: all whitespace is removed, ``#`` and ``;`` start a
comment line, ``[name]`` starts a section, everything else is ``key=value``. A ``#`` after a
value starts a comment (``filters=40 #32`` is 40, which is what Darknet's ``atoi`` and OpenCV
read too).
"""

from __future__ import annotations

import math
import os
import re
from typing import Callable

from cfg_codegen.errors import CfgError, UnsupportedCfgError
from cfg_codegen.layers import (
    Activation,
    AvgPool,
    Convolutional,
    Dropout,
    Layer,
    MaxPool,
    NetConfig,
    Network,
    Origin,
    RawOption,
    RawSection,
    Reorg3d,
    Route,
    Sam,
    ScaleChannels,
    Shortcut,
    Upsample,
    Yolo,
)
from cfg_codegen.shapes import infer_shapes

_INT = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)  # 18 digits: int64 range, and far below Python's str->int limit
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_SECTION = re.compile(r"\[([A-Za-z0-9_]+)\]", re.ASCII)
_WHITESPACE = re.compile(r"\s+")

# Keys Darknet reads only while training; they cannot change an inference result.
_TRAINING_KEYS = {
    "convolutional": {"stopbackward", "train_only_bn", "dont_update", "burnin_update", "learning_rate",
                      "assisted_excitation"},
    "route": {"stopbackward"},
    "shortcut": {"stopbackward"},
    "dropout": {"dropblock", "dropblock_size_rel", "dropblock_size_abs"},
    "yolo": {"jitter", "ignore_thresh", "truth_thresh", "random", "iou_thresh", "cls_normalizer",
             "iou_normalizer", "obj_normalizer", "iou_loss", "nms_kind", "beta_nms", "max_delta",
             "objectness_smooth", "resize", "focal_loss", "label_smooth_eps", "counters_per_class", "max",
             "uc_normalizer", "beta1", "delta_normalizer", "track_history_size", "sim_thresh", "dets_for_track",
             "dets_for_show", "track_ciou_norm", "embedding_layer", "map", "show_details", "rescore"},
}

# Sections Darknet knows but edgeprune does not build, with what they are.
_UNSUPPORTED_SECTIONS = {
    "region": "the YOLOv2 [region] head",
    "reorg": "the YOLOv2 [reorg] layer (AlexeyAB's reorg_old)",
    "softmax": "a classifier output; edgeprune converts [yolo] detectors",
    "connected": "fully connected layers",
    "local": "locally connected layers",
    "crop": "training-time cropping",
    "cost": "a training cost layer",
    "detection": "the YOLOv1 [detection] head",
    "batchnorm": "a standalone [batchnorm] layer",
    "gaussian_yolo": "the Gaussian YOLO head",
    "Gaussian_yolo": "the Gaussian YOLO head",
    "contrastive": "contrastive-learning heads",
    "implicit_add": "YOLOR implicit knowledge",
    "implicit_mul": "YOLOR implicit knowledge",
    "empty": "placeholder layers",
    "silence": "placeholder layers",
    "activation": "a standalone [activation] layer",
    "rnn": "recurrent layers", "gru": "recurrent layers", "lstm": "recurrent layers",
    "crnn": "recurrent layers", "conv_lstm": "recurrent layers", "history": "recurrent layers",
    "deconvolutional": "transposed convolutions",
    "normalization": "local response normalisation",
    "l2norm": "L2 normalisation", "logistic": "a standalone logistic layer", "iseg": "instance segmentation",
}


class _Options:
    """Typed access to one section's options, remembering which keys were read."""

    def __init__(self, section: RawSection, origin: Origin, warnings: list[str]):
        self.section = section
        self.origin = origin
        self.warnings = warnings
        self.used: set[str] = set()

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.origin.describe()}: {message}")

    def raw(self, key: str) -> RawOption | None:
        self.used.add(key)
        return self.section.get(key)

    def fail(self, key: str, expected: str, opt: RawOption) -> CfgError:
        return CfgError(f"{self.origin.describe(key, opt.line)}: expected {expected}, got '{opt.value}'")

    def int(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        opt = self.raw(key)
        if opt is None:
            if default is None:
                raise CfgError(f"{self.origin.describe(key)}: required key is missing")
            return default
        if not _INT.fullmatch(opt.value):
            raise self.fail(key, "an integer", opt)
        value = int(opt.value)
        if minimum is not None and value < minimum:
            raise self.fail(key, f"an integer >= {minimum}", opt)
        return value

    def float(self, key: str, default: float) -> float:
        opt = self.raw(key)
        if opt is None:
            return default
        if not _FLOAT.fullmatch(opt.value) or not math.isfinite(float(opt.value)):
            raise self.fail(key, "a finite number", opt)
        return float(opt.value)

    def flag(self, key: str) -> bool:
        """Darknet's 0/1 switches: any integer, non-zero means on."""
        return self.int(key, 0) != 0

    def ints(self, key: str) -> tuple[tuple[int, ...], RawOption] | None:
        opt = self.raw(key)
        if opt is None:
            return None
        parts = opt.value.split(",")
        if not all(_INT.fullmatch(p) for p in parts):
            raise self.fail(key, "comma-separated integers", opt)
        return tuple(int(p) for p in parts), opt

    def floats(self, key: str) -> tuple[tuple[float, ...], RawOption] | None:
        opt = self.raw(key)
        if opt is None:
            return None
        parts = opt.value.split(",")
        if not all(_FLOAT.fullmatch(p) and math.isfinite(float(p)) for p in parts):
            raise self.fail(key, "comma-separated finite numbers", opt)
        return tuple(float(p) for p in parts), opt

    def activation(self, default: str) -> Activation:
        opt = self.raw("activation")
        if opt is None:
            return Activation(default)
        try:
            return Activation(opt.value)
        except ValueError:
            known = ", ".join(a.value for a in Activation)
            raise UnsupportedCfgError(
                f"unsupported: {self.origin.describe('activation', opt.line)}: activation '{opt.value}' "
                f"(supported: {known})") from None

    def layer_refs(self, key: str, index: int) -> tuple[int, ...]:
        """Layer references resolved like Darknet: negative is relative, others absolute (0 included)."""
        parsed = self.ints(key)
        if parsed is None:
            raise CfgError(f"{self.origin.describe(key)}: required key is missing")
        refs, opt = parsed
        if index == 0:
            raise self.fail(key, "references to earlier layers, but this is the first layer", opt)
        out = []
        for ref in refs:
            absolute = index + ref if ref < 0 else ref
            if not 0 <= absolute < index:
                raise self.fail(key, f"layers before this one (0..{index - 1} or -1..-{index})", opt)
            out.append(absolute)
        return tuple(out)

    def only_default(self, key: str, default: str, what: str) -> None:
        """Refuse a key whose non-default value changes inference in a way we do not build."""
        opt = self.raw(key)
        if opt is not None and opt.value != default:
            raise UnsupportedCfgError(f"unsupported: {self.origin.describe(key, opt.line)}={opt.value} ({what})")


# ----------------------------------------------------------------------------------------------
# Reading sections
# ----------------------------------------------------------------------------------------------


def read_sections(text: str, path: str = "<cfg>") -> list[RawSection]:
    """Split cfg text into sections of ``key=value`` options, with line numbers."""
    sections: list[RawSection] = []
    name: str | None = None
    start = 0
    options: list[RawOption] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = _WHITESPACE.sub("", line)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            match = _SECTION.fullmatch(line)
            if match is None:
                raise CfgError(f"{path}:{lineno}: malformed section header '{_clip(line)}' "
                               f"(expected e.g. [convolutional])")
            if name is not None:
                sections.append(RawSection(name, start, tuple(options)))
            name, start, options = match.group(1), lineno, []
            continue
        key, sep, value = line.partition("#")[0].partition("=")
        if not sep or not key:
            raise CfgError(f"{path}:{lineno}: expected key=value, got '{_clip(line)}'")
        if name is None:
            raise CfgError(f"{path}:{lineno}: '{_clip(key)}' appears before the first [section]")
        options.append(RawOption(key, value, lineno))
    if name is not None:
        sections.append(RawSection(name, start, tuple(options)))
    return sections


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------------------------
# One parser per section type
# ----------------------------------------------------------------------------------------------


def _net(opts: _Options) -> NetConfig:
    width = opts.int("width", 0)
    height = opts.int("height", 0)
    channels = opts.int("channels", 0)
    for key, value in (("width", width), ("height", height), ("channels", channels)):
        if value <= 0:
            raise CfgError(f"{opts.origin.describe(key)}: expected a positive integer, got {value}")
    return NetConfig(width=width, height=height, channels=channels, letter_box=opts.flag("letter_box"),
                     origin=opts.origin)


def _convolutional(opts: _Options, index: int) -> Convolutional:
    size = opts.int("size", 1, minimum=1)
    stride = opts.int("stride", 1, minimum=1)
    for key in ("stride_x", "stride_y"):
        opts.only_default(key, str(stride), "different horizontal and vertical strides")
    opts.only_default("dilation", "1", "dilated convolution")
    for key in ("antialiasing", "binary", "xnor", "deform", "sway", "rotate", "stretch", "stretch_sway",
                "coordconv", "bin_output"):
        opts.only_default(key, "0", key)
    if opts.raw("share_index") is not None:
        raise UnsupportedCfgError(f"unsupported: {opts.origin.describe('share_index')} (weight sharing)")
    pad = opts.flag("pad")
    padding = size // 2 if pad else opts.int("padding", 0, minimum=0)
    filters = opts.int("filters", 1, minimum=1)
    groups = opts.int("groups", 1, minimum=1)
    if filters % groups:
        raise CfgError(f"{opts.origin.describe('groups')}: filters={filters} is not divisible by groups={groups}")
    if opts.raw("activation") is None:
        opts.warn("no activation= given; Darknet uses logistic (OpenCV would use linear)")
    return Convolutional(index=index, origin=opts.origin, filters=filters, size=size, stride=stride,
                         padding=padding, groups=groups, batch_normalize=opts.flag("batch_normalize"),
                         activation=opts.activation("logistic"))


def _route(opts: _Options, index: int) -> Route:
    layers = opts.layer_refs("layers", index)
    groups = opts.int("groups", 1, minimum=1)
    group_id = opts.int("group_id", 0, minimum=0)
    if group_id >= groups:
        opt = opts.raw("group_id")
        raise opts.fail("group_id", f"an integer below groups={groups}", opt)
    return Route(index=index, origin=opts.origin, layers=layers, groups=groups, group_id=group_id)


def _shortcut(opts: _Options, index: int) -> Shortcut:
    opts.only_default("weights_type", "none", "weighted shortcut")
    opts.only_default("weights_normalization", "none", "weighted shortcut")
    for key in ("alpha", "beta"):
        opt = opts.raw(key)
        if opt is not None and not (_FLOAT.fullmatch(opt.value) and float(opt.value) == 1.0):
            raise UnsupportedCfgError(
                f"unsupported: {opts.origin.describe(key, opt.line)}={opt.value} (scaled shortcut)")
    return Shortcut(index=index, origin=opts.origin, sources=opts.layer_refs("from", index),
                    activation=opts.activation("linear"))


def _maxpool(opts: _Options, index: int) -> MaxPool:
    stride = opts.int("stride", 1, minimum=1)
    for key in ("stride_x", "stride_y"):
        opts.only_default(key, str(stride), "different horizontal and vertical strides")
    opts.only_default("maxpool_depth", "0", "max over channels")
    opts.only_default("antialiasing", "0", "antialiasing")
    opts.raw("out_channels")  # only read by Darknet together with maxpool_depth
    size = opts.int("size", stride, minimum=1)
    return MaxPool(index=index, origin=opts.origin, size=size, stride=stride,
                   padding=opts.int("padding", size - 1, minimum=0))


def _avgpool(opts: _Options, index: int) -> AvgPool:
    return AvgPool(index=index, origin=opts.origin)


def _upsample(opts: _Options, index: int) -> Upsample:
    stride = opts.int("stride", 2)
    if stride < 0:
        raise UnsupportedCfgError(f"unsupported: {opts.origin.describe('stride')}={stride} (downsampling [upsample])")
    if stride == 0:
        raise opts.fail("stride", "a non-zero integer", opts.raw("stride"))
    return Upsample(index=index, origin=opts.origin, stride=stride, scale=opts.float("scale", 1.0))


def _dropout(opts: _Options, index: int) -> Dropout:
    return Dropout(index=index, origin=opts.origin, probability=opts.float("probability", 0.5))


def _sam(opts: _Options, index: int) -> Sam:
    (source,) = _single_ref(opts, index)
    return Sam(index=index, origin=opts.origin, source=source, activation=opts.activation("linear"))


def _scale_channels(opts: _Options, index: int) -> ScaleChannels:
    (source,) = _single_ref(opts, index)
    return ScaleChannels(index=index, origin=opts.origin, source=source, scale_wh=opts.flag("scale_wh"),
                         activation=opts.activation("linear"))


def _single_ref(opts: _Options, index: int) -> tuple[int]:
    refs = opts.layer_refs("from", index)
    if len(refs) != 1:
        raise opts.fail("from", "exactly one layer", opts.raw("from"))
    return refs  # type: ignore[return-value]


def _reorg3d(opts: _Options, index: int) -> Reorg3d:
    opts.only_default("reverse", "0", "reverse reorg (depth to space)")
    return Reorg3d(index=index, origin=opts.origin, stride=opts.int("stride", 1, minimum=1))


def _yolo(opts: _Options, index: int) -> Yolo:
    classes = opts.int("classes", 20, minimum=0)
    num = opts.int("num", 1, minimum=1)
    parsed_mask = opts.ints("mask")
    mask = parsed_mask[0] if parsed_mask else tuple(range(num))
    if parsed_mask and not all(0 <= m < num for m in mask):
        raise opts.fail("mask", f"anchor indices in 0..{num - 1} (num={num})", parsed_mask[1])
    parsed_anchors = opts.floats("anchors")
    if parsed_anchors is None:
        raise CfgError(f"{opts.origin.describe('anchors')}: required key is missing")
    values, anchors_opt = parsed_anchors
    if len(values) != 2 * num:
        raise opts.fail("anchors", f"{2 * num} numbers (num={num} width,height pairs), found {len(values)}",
                        anchors_opt)
    if any(v <= 0 for v in values):
        raise opts.fail("anchors", "positive numbers", anchors_opt)
    scale_x_y = opts.float("scale_x_y", 1.0)
    new_coords = opts.flag("new_coords")
    return Yolo(index=index, origin=opts.origin, classes=classes, mask=mask,
                anchors=tuple(zip(values[0::2], values[1::2], strict=True)), scale_x_y=scale_x_y, new_coords=new_coords,
                thresh=opts.float("thresh", 0.2))


_LAYER_PARSERS: dict[str, Callable[[_Options, int], Layer]] = {
    "convolutional": _convolutional, "conv": _convolutional,
    "route": _route,
    "shortcut": _shortcut,
    "maxpool": _maxpool, "max": _maxpool,
    "avgpool": _avgpool, "avg": _avgpool,
    "upsample": _upsample,
    "dropout": _dropout,
    "sam": _sam,
    "scale_channels": _scale_channels,
    "reorg3d": _reorg3d,
    "yolo": _yolo,
}

SUPPORTED_SECTIONS = tuple(sorted(set(_LAYER_PARSERS)))


def _leftovers(opts: _Options) -> None:
    """Warn about keys nobody read (training keys excepted) and about repeated keys."""
    seen: set[str] = set()
    training = _TRAINING_KEYS.get(opts.origin.section, set())
    for opt in opts.section.options:
        if opt.key in seen:
            opts.warnings.append(f"{opts.origin.describe(opt.key, opt.line)}: repeated; the first value is used, "
                            f"as Darknet does")
        seen.add(opt.key)
        if opt.key not in opts.used and opt.key not in training and opts.origin.section != "net":
            opts.warnings.append(f"{opts.origin.describe(opt.key, opt.line)}: unknown key, ignored")


def section_options(network: Network, index: int | None = None) -> "_Options":
    """Typed, validated access to the raw keys of ``[net]`` (``index`` None) or of layer ``index``.

    Why: training reads keys the builder ignores (``learning_rate``, ``steps``, ``ignore_thresh``,
    ``iou_loss``...); going through the same reader gives their errors the same file:line form.
    """
    section = network.sections[0 if index is None else index + 1]
    origin = Origin(network.path, section.line, section.name, index)
    return _Options(section, origin, [])


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def parse_cfg(path: str | os.PathLike) -> Network:
    """Parse and validate a Darknet .cfg file.

    Args:
        path: the .cfg file.

    Returns:
        The validated :class:`Network` (shapes checked at the ``[net]`` size).

    Raises:
        CfgError: unreadable file, malformed value, bad layer reference or shape mismatch.
        UnsupportedCfgError: a section or option edgeprune does not build ("unsupported: ...").

    Example:
        >>> net = parse_cfg("yolov4-tiny.cfg")  # doctest: +SKIP
        >>> [y.index for y in net.yolo_layers]  # doctest: +SKIP
        [30, 37]
    """
    try:
        raw = open(path, "rb").read()
    except OSError as exc:
        raise CfgError(f"{path}: cannot read the cfg ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Darknet reads bytes; comments in other encodings must not stop us
    return parse_cfg_text(text, str(path))


def parse_cfg_text(text: str, path: str = "<cfg>") -> Network:
    """Parse cfg text; ``path`` is only used in messages. See :func:`parse_cfg`."""

    if "\x00" in text:
        raise CfgError(f"{path}: contains NUL bytes; this is not a text .cfg file")
    sections = read_sections(text, path)
    if not sections:
        raise CfgError(f"{path}: no sections; a Darknet cfg starts with [net]")
    first = sections[0]
    if first.name not in ("net", "network"):
        raise CfgError(f"{path}:{first.line}: first section is [{first.name}]; it must be [net] or [network]")
    warnings: list[str] = []
    net_opts = _Options(first, Origin(path, first.line, "net"), warnings)
    net = _net(net_opts)
    _leftovers(net_opts)
    layers: list[Layer] = []
    for index, section in enumerate(sections[1:]):
        origin = Origin(path, section.line, section.name, index)
        parser = _LAYER_PARSERS.get(section.name)
        if parser is None:
            what = _UNSUPPORTED_SECTIONS.get(section.name)
            hint = f": {what}" if what else f" (edgeprune builds: {', '.join(SUPPORTED_SECTIONS)})"
            raise UnsupportedCfgError(f"unsupported: [{section.name}] at {path}:{section.line} (layer {index}){hint}")
        if section.name in ("net", "network"):
            raise CfgError(f"{path}:{section.line}: a second [{section.name}] section (layer {index})")
        opts = _Options(section, origin, warnings)
        layers.append(parser(opts, index))
        _leftovers(opts)
    if not layers:
        raise CfgError(f"{path}: [net] is the only section; there are no layers")
    network = Network(path=path, net=net, layers=tuple(layers), sections=tuple(sections), warnings=tuple(warnings))
    infer_shapes(network)
    return network
