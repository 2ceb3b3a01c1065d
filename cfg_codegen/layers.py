"""Typed, validated descriptions of a Darknet network: one frozen dataclass per section type.

Why frozen dataclasses instead of dicts of strings: every later stage (shape inference, the
PyTorch builder, the code emitter, the pruner) reads the same fields, so a value is parsed and
checked once, in :mod:`cfg_codegen.parser`, and cannot be changed behind the parser's back.
Indices in ``Route.layers``/``Shortcut.sources``/... are absolute layer indices (Darknet's
relative ``-3`` is resolved at parse time); ``-1`` as an input means the network input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

NETWORK_INPUT = -1
"""Input index that stands for the image fed to the network (the ``[net]`` section)."""


class Activation(str, enum.Enum):
    """Activations edgeprune can build; values are the spellings used in .cfg files."""

    LINEAR = "linear"
    LEAKY = "leaky"  # x if x > 0 else 0.1 x
    RELU = "relu"
    RELU6 = "relu6"
    MISH = "mish"  # x tanh(softplus(x)), softplus threshold 20 as in Darknet
    SWISH = "swish"  # x sigmoid(x)
    LOGISTIC = "logistic"
    TANH = "tanh"
    HARDSWISH = "hardswish"  # x relu6(x + 3) / 6; not in AlexeyAB darknet, which falls back to relu
    HARD_MISH = "hard_mish"  # x if x > 0, x^2/2 + x if x > -2, else 0 (AlexeyAB's hard_mish)


@dataclass(frozen=True)
class Origin:
    """Where a section came from, so every error can point at it."""

    file: str
    line: int
    section: str  # section name without brackets, e.g. "convolutional"
    index: int | None = None  # layer index (None for [net])

    def describe(self, key: str | None = None, line: int | None = None) -> str:
        where = f"{self.file}:{line or self.line}: [{self.section}]"
        if self.index is not None:
            where += f" (layer {self.index})"
        if key is not None:
            where += f" key '{key}'"
        return where


@dataclass(frozen=True)
class RawOption:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class RawSection:
    """A section as written: kept so a pruned cfg can be written back with every training key."""

    name: str
    line: int
    options: tuple[RawOption, ...]

    def get(self, key: str) -> RawOption | None:
        """First option with this key (Darknet's option_find also returns the first)."""
        return next((opt for opt in self.options if opt.key == key), None)


@dataclass(frozen=True)
class NetConfig:
    """The ``[net]`` section: input size and how Darknet resizes images into it."""

    width: int
    height: int
    channels: int
    letter_box: bool
    origin: Origin


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Base of every layer spec. ``index`` is the Darknet layer number (0 = first after [net])."""

    kind: ClassVar[str] = ""
    index: int
    origin: Origin

    @property
    def inputs(self) -> tuple[int, ...]:
        """Absolute indices of the layers whose outputs this layer reads."""
        return (self.index - 1,)


@dataclass(frozen=True, kw_only=True)
class Convolutional(Layer):
    kind: ClassVar[str] = "convolutional"
    filters: int
    size: int
    stride: int
    padding: int  # pixels on each side (Darknet's pad=1 means size // 2)
    groups: int
    batch_normalize: bool
    activation: Activation


@dataclass(frozen=True, kw_only=True)
class Route(Layer):
    """Concatenate the ``group_id``-th of ``groups`` channel slices of each listed layer."""

    kind: ClassVar[str] = "route"
    layers: tuple[int, ...]
    groups: int = 1
    group_id: int = 0

    @property
    def inputs(self) -> tuple[int, ...]:
        return self.layers


@dataclass(frozen=True, kw_only=True)
class Shortcut(Layer):
    """Previous output plus ``sources``; only the first min(C) channels are added (Darknet)."""

    kind: ClassVar[str] = "shortcut"
    sources: tuple[int, ...]
    activation: Activation

    @property
    def inputs(self) -> tuple[int, ...]:
        return (self.index - 1, *self.sources)


@dataclass(frozen=True, kw_only=True)
class MaxPool(Layer):
    """Max pooling with Darknet's padding: ``padding // 2`` before, the rest after, -inf fill."""

    kind: ClassVar[str] = "maxpool"
    size: int
    stride: int
    padding: int  # total padding per axis (Darknet's default: size - 1)


@dataclass(frozen=True, kw_only=True)
class AvgPool(Layer):
    """Global average pooling to 1x1."""

    kind: ClassVar[str] = "avgpool"


@dataclass(frozen=True, kw_only=True)
class Upsample(Layer):
    """Nearest-neighbour upsampling by ``stride``, output multiplied by ``scale``."""

    kind: ClassVar[str] = "upsample"
    stride: int
    scale: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    """Identity at inference."""

    kind: ClassVar[str] = "dropout"
    probability: float = 0.5


@dataclass(frozen=True, kw_only=True)
class Sam(Layer):
    """Spatial attention: previous output times the output of ``source`` (same shape)."""

    kind: ClassVar[str] = "sam"
    source: int
    activation: Activation

    @property
    def inputs(self) -> tuple[int, ...]:
        return (self.index - 1, self.source)


@dataclass(frozen=True, kw_only=True)
class ScaleChannels(Layer):
    """Squeeze-excitation: output of ``source`` scaled per channel by the previous (C x 1 x 1) output.

    With ``scale_wh`` the previous output is 1 x H x W and scales every channel per pixel.
    """

    kind: ClassVar[str] = "scale_channels"
    source: int
    scale_wh: bool
    activation: Activation

    @property
    def inputs(self) -> tuple[int, ...]:
        return (self.index - 1, self.source)


@dataclass(frozen=True, kw_only=True)
class Reorg3d(Layer):
    """Space-to-depth (AlexeyAB ``[reorg3d]``): output channel ``(dy*s + dx)*C + c``."""

    kind: ClassVar[str] = "reorg3d"
    stride: int


@dataclass(frozen=True, kw_only=True)
class Yolo(Layer):
    """A YOLO head; its input is the map decoded by :func:`cfg_codegen.runtime.YoloHead.decode`."""

    kind: ClassVar[str] = "yolo"
    classes: int
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # all ``num`` anchors, in pixels of the network input
    scale_x_y: float = 1.0
    new_coords: bool = False
    thresh: float = 0.2  # OpenCV zeroes class scores <= thresh in its yolo output; we do the same

    @property
    def head_anchors(self) -> tuple[tuple[float, float], ...]:
        return tuple(self.anchors[m] for m in self.mask)


@dataclass(frozen=True)
class Network:
    """A parsed .cfg: ``[net]``, the layers in order, the raw sections and parser warnings."""

    path: str
    net: NetConfig
    layers: tuple[Layer, ...]
    sections: tuple[RawSection, ...] = field(repr=False)  # sections[0] is [net]; sections[i + 1] is layer i
    warnings: tuple[str, ...] = ()

    @property
    def yolo_layers(self) -> tuple[Yolo, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Yolo))

    @property
    def conv_layers(self) -> tuple[Convolutional, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Convolutional))

    def consumers(self) -> dict[int, tuple[int, ...]]:
        """Layer index -> indices of the layers that read its output."""
        out: dict[int, list[int]] = {layer.index: [] for layer in self.layers}
        for layer in self.layers:
            for src in layer.inputs:
                if src != NETWORK_INPUT:
                    out[src].append(layer.index)
        return {k: tuple(v) for k, v in out.items()}
