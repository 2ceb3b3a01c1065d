"""Output shape of every layer for a given input size, with Darknet's rules and checks.

Why separate from the parser: shapes depend on the input size, and a cfg parsed at its
``[net]`` size is often deployed at another (``deploy --input-shape 1,3,256,320``). Every mismatch Darknet
would reject (or, worse, silently zero, as its route layer does) is an error naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfg_codegen.errors import CfgError, UnsupportedCfgError
from cfg_codegen.layers import (
    NETWORK_INPUT,
    AvgPool,
    Convolutional,
    Dropout,
    Layer,
    MaxPool,
    Network,
    Reorg3d,
    Route,
    Sam,
    ScaleChannels,
    Shortcut,
    Upsample,
    Yolo,
)


@dataclass(frozen=True)
class Shape:
    channels: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}"


def maxpool_out(size: int, stride: int, padding: int, extent: int) -> int:
    """Darknet's maxpool output extent: ``(extent + padding - size) // stride + 1``."""
    return (extent + padding - size) // stride + 1


def conv_out(size: int, stride: int, padding: int, extent: int) -> int:
    return (extent + 2 * padding - size) // stride + 1


def infer_shapes(network: Network, height: int | None = None, width: int | None = None) -> tuple[Shape, ...]:
    """Shapes of all layer outputs for an input of ``height`` x ``width`` (default: the [net] size).

    Raises:
        CfgError: naming the layer, when Darknet could not run the network at this size.
        UnsupportedCfgError: when a layer reads the output of a [yolo] layer.
    """
    net = network.net
    input_shape = Shape(net.channels, height or net.height, width or net.width)
    shapes: list[Shape] = []

    def shape_of(index: int) -> Shape:
        if index == NETWORK_INPUT:
            return input_shape
        return shapes[index]

    for layer in network.layers:
        for src in layer.inputs:
            if src != NETWORK_INPUT and isinstance(network.layers[src], Yolo):
                raise UnsupportedCfgError(
                    f"unsupported: {layer.origin.describe()} reads the output of the [yolo] layer {src}")
        try:
            shape = _SHAPE_RULES[type(layer)](layer, shape_of)
        except _ShapeError as exc:
            size = f"{input_shape.width}x{input_shape.height}"
            raise CfgError(f"{layer.origin.describe()}: {exc} (input size {size} WxH)") from None
        if shape.height <= 0 or shape.width <= 0:
            raise CfgError(f"{layer.origin.describe()}: output would be {shape}; the input "
                           f"{input_shape.width}x{input_shape.height} (WxH) is too small")
        shapes.append(shape)
    return tuple(shapes)


class _ShapeError(Exception):
    """Internal: a shape rule failed; :func:`infer_shapes` adds the layer's origin."""


def _conv(layer: Convolutional, shape_of) -> Shape:
    src = shape_of(layer.index - 1)
    if src.channels % layer.groups:
        raise _ShapeError(f"input has {src.channels} channels, not divisible by groups={layer.groups}")
    return Shape(layer.filters, conv_out(layer.size, layer.stride, layer.padding, src.height),
                 conv_out(layer.size, layer.stride, layer.padding, src.width))


def _route(layer: Route, shape_of) -> Shape:
    first = shape_of(layer.layers[0])
    channels = 0
    for index in layer.layers:
        src = shape_of(index)
        if (src.height, src.width) != (first.height, first.width):
            raise _ShapeError(f"route inputs differ in size: layer {layer.layers[0]} is {first}, "
                              f"layer {index} is {src}")
        if src.channels % layer.groups:
            raise _ShapeError(f"layer {index} has {src.channels} channels, not divisible by groups={layer.groups}")
        channels += src.channels // layer.groups
    return Shape(channels, first.height, first.width)


def _shortcut(layer: Shortcut, shape_of) -> Shape:
    prev = shape_of(layer.index - 1)
    for index in layer.sources:
        src = shape_of(index)
        if (src.height, src.width) != (prev.height, prev.width):
            raise _ShapeError(f"shortcut from layer {index} ({src}) to a {prev} input: sizes differ")
    return prev


def _maxpool(layer: MaxPool, shape_of) -> Shape:
    src = shape_of(layer.index - 1)
    return Shape(src.channels, maxpool_out(layer.size, layer.stride, layer.padding, src.height),
                 maxpool_out(layer.size, layer.stride, layer.padding, src.width))


def _avgpool(layer: AvgPool, shape_of) -> Shape:
    return Shape(shape_of(layer.index - 1).channels, 1, 1)


def _upsample(layer: Upsample, shape_of) -> Shape:
    src = shape_of(layer.index - 1)
    return Shape(src.channels, src.height * layer.stride, src.width * layer.stride)


def _same(layer: Layer, shape_of) -> Shape:
    return shape_of(layer.index - 1)


def _sam(layer: Sam, shape_of) -> Shape:
    prev, src = shape_of(layer.index - 1), shape_of(layer.source)
    if prev != src:
        raise _ShapeError(f"multiplies a {prev} input by layer {layer.source}'s {src} output: shapes differ")
    return src


def _scale_channels(layer: ScaleChannels, shape_of) -> Shape:
    prev, src = shape_of(layer.index - 1), shape_of(layer.source)
    expected = Shape(1, src.height, src.width) if layer.scale_wh else Shape(src.channels, 1, 1)
    if prev != expected:
        raise _ShapeError(f"scales layer {layer.source}'s {src} output by a {prev} input; expected {expected}")
    return src


def _reorg3d(layer: Reorg3d, shape_of) -> Shape:
    src, s = shape_of(layer.index - 1), layer.stride
    if src.height % s or src.width % s:
        raise _ShapeError(f"input {src} is not divisible by stride={s}")
    return Shape(src.channels * s * s, src.height // s, src.width // s)


def _yolo(layer: Yolo, shape_of) -> Shape:
    src = shape_of(layer.index - 1)
    expected = len(layer.mask) * (layer.classes + 5)
    if src.channels != expected:
        raise _ShapeError(f"expects {len(layer.mask)} anchors x ({layer.classes} classes + 5) = {expected} input "
                          f"channels, the previous layer gives {src.channels} (check filters= before [yolo])")
    return src


_SHAPE_RULES = {
    Convolutional: _conv, Route: _route, Shortcut: _shortcut, MaxPool: _maxpool, AvgPool: _avgpool,
    Upsample: _upsample, Dropout: _same, Sam: _sam, ScaleChannels: _scale_channels, Reorg3d: _reorg3d, Yolo: _yolo,
}
