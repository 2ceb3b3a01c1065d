"""Emit a standalone, readable PyTorch module (model.py) for a parsed Darknet network.

Why source code rather than a generic graph-walking module: the seed-002 user had to read and
patch TensorFlow code by hand for every pruned cfg. A generated file with one line per layer
(``x12 = self.l12(x11)  # [12] convolutional 256 3x3/2 leaky -> 256x26x26``) can be read,
diffed between two pruned variants, stepped through in a debugger, and shipped without
edgeprune: it imports only torch (the building blocks of :mod:`cfg_codegen.runtime` are pasted
in). :mod:`cfg_codegen.build` runs this same source, so what is tested is what is shipped.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Callable

from cfg_codegen import runtime
from cfg_codegen.errors import UnsupportedCfgError
from cfg_codegen.layers import (
    NETWORK_INPUT,
    Activation,
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
from cfg_codegen.shapes import Shape, infer_shapes

MODEL_CLASS = "Model"
DARKNET_BN_EPS = runtime.BN_EPS
OPENCV_BN_EPS = 1e-6  # cv::dnn's Darknet importer ("0.000001f in Darknet Yolo", pjreddie's sqrt(var) + 1e-6)


def runtime_source(bn_eps: float = DARKNET_BN_EPS) -> str:
    """Source of :mod:`cfg_codegen.runtime` without its module docstring, with ``BN_EPS = bn_eps``."""
    source = inspect.getsource(runtime)
    tree = ast.parse(source)
    first_code = tree.body[1].lineno if isinstance(tree.body[0], ast.Expr) else 1
    lines = source.splitlines()[first_code - 1:]
    eps_line = next(i for i, line in enumerate(lines) if line.startswith("BN_EPS = "))
    if bn_eps != runtime.BN_EPS:
        lines[eps_line] = f"BN_EPS = {bn_eps!r}  # chosen at generation time (Darknet: {runtime.BN_EPS!r})"
    return "\n".join(lines).rstrip() + "\n"


def var(index: int) -> str:
    """Name of the forward() variable holding layer ``index``'s output."""
    return "x" if index == NETWORK_INPUT else f"x{index}"


class _Emitter:
    """Collects the __init__ and forward lines while walking the layers."""

    def __init__(self, network: Network, shapes: tuple[Shape, ...]):
        self.network = network
        self.shapes = shapes
        self.init: list[str] = []
        self.forward: list[str] = []

    def channels(self, index: int) -> int:
        return self.network.net.channels if index == NETWORK_INPUT else self.shapes[index].channels

    def module(self, layer: Layer, constructor: str) -> str:
        """Add ``self.l{i} = constructor`` to __init__ and return ``self.l{i}`` for forward."""
        self.init.append(f"self.l{layer.index} = {constructor}  # [{layer.index}] {layer.kind}")
        return f"self.l{layer.index}"

    def assign(self, layer: Layer, expression: str, note: str) -> None:
        shape = self.shapes[layer.index]
        self.forward.append(f"{var(layer.index)} = {expression}  # [{layer.index}] {layer.kind} {note}-> {shape}")

    def activated(self, layer: Layer, act: Activation, expression: str) -> str:
        if act is Activation.LINEAR:
            return expression
        return f"{self.module(layer, f'activation({act.value!r})')}({expression})"


def _conv(e: _Emitter, layer: Convolutional) -> None:
    args = [str(e.channels(layer.index - 1)), str(layer.filters), str(layer.size)]
    if layer.stride != 1:
        args.append(f"stride={layer.stride}")
    if layer.padding:
        args.append(f"padding={layer.padding}")
    if layer.groups != 1:
        args.append(f"groups={layer.groups}")
    args += [f"bn={layer.batch_normalize}", f"act={layer.activation.value!r}"]
    name = e.module(layer, f"Conv({', '.join(args)})")
    groups = f" groups={layer.groups}" if layer.groups != 1 else ""
    note = f"{layer.filters} {layer.size}x{layer.size}/{layer.stride}{groups} {layer.activation.value} "
    e.assign(layer, f"{name}({var(layer.index - 1)})", note)


def _route(e: _Emitter, layer: Route) -> None:
    parts = []
    for src in layer.layers:
        if layer.groups == 1:
            parts.append(var(src))
        else:  # equal channel groups (Darknet requires divisibility); chunk is also what the DPU graph rebuilds
            parts.append(f"{var(src)}.chunk({layer.groups}, 1)[{layer.group_id}]")
    expression = parts[0] if len(parts) == 1 else f"torch.cat([{', '.join(parts)}], 1)"
    groups = f" groups={layer.groups} group_id={layer.group_id}" if layer.groups != 1 else ""
    e.assign(layer, expression, f"{','.join(map(str, layer.layers))}{groups} ")


def _shortcut(e: _Emitter, layer: Shortcut) -> None:
    expression = var(layer.index - 1)
    width = e.channels(layer.index - 1)
    for src in layer.sources:
        if e.channels(src) == width:
            expression = f"{expression} + {var(src)}"
        else:
            expression = f"add_first_channels({expression}, {var(src)})"
    note = f"from {','.join(map(str, layer.sources))} {layer.activation.value} "
    e.assign(layer, e.activated(layer, layer.activation, expression), note)


def _maxpool(e: _Emitter, layer: MaxPool) -> None:
    name = e.module(layer, f"MaxPool({layer.size}, stride={layer.stride}, padding={layer.padding})")
    e.assign(layer, f"{name}({var(layer.index - 1)})", f"{layer.size}x{layer.size}/{layer.stride} ")


def _avgpool(e: _Emitter, layer: AvgPool) -> None:
    e.assign(layer, f"{var(layer.index - 1)}.mean((2, 3), keepdim=True)", "global ")


def _upsample(e: _Emitter, layer: Upsample) -> None:
    expression = f"F.interpolate({var(layer.index - 1)}, scale_factor={layer.stride}, mode='nearest')"
    if layer.scale != 1:
        expression = f"{expression} * {layer.scale!r}"
    e.assign(layer, expression, f"x{layer.stride} ")


def _dropout(e: _Emitter, layer: Dropout) -> None:
    e.assign(layer, var(layer.index - 1), "(identity at inference) ")


def _sam(e: _Emitter, layer: Sam) -> None:
    expression = f"{var(layer.index - 1)} * {var(layer.source)}"
    e.assign(layer, e.activated(layer, layer.activation, expression), f"from {layer.source} ")


def _scale_channels(e: _Emitter, layer: ScaleChannels) -> None:
    expression = f"{var(layer.source)} * {var(layer.index - 1)}"
    note = f"from {layer.source}{' per pixel' if layer.scale_wh else ''} "
    e.assign(layer, e.activated(layer, layer.activation, expression), note)


def _reorg3d(e: _Emitter, layer: Reorg3d) -> None:
    e.assign(layer, f"reorg3d({var(layer.index - 1)}, {layer.stride})", f"/{layer.stride} ")


def _yolo(e: _Emitter, layer: Yolo) -> None:
    anchors = _tuple([f"({_num(w)}, {_num(h)})" for w, h in layer.head_anchors])
    args = [f"anchors={anchors}", f"classes={layer.classes}"]
    if layer.scale_x_y != 1:
        args.append(f"scale_x_y={layer.scale_x_y!r}")
    if layer.new_coords:
        args.append("new_coords=True")
    if layer.thresh != 0.2:
        args.append(f"thresh={layer.thresh!r}")
    e.module(layer, f"YoloHead({', '.join(args)})")
    head = [y.index for y in e.network.yolo_layers].index(layer.index)
    e.forward.append(f"# [{layer.index}] yolo: output {head} is {var(layer.index - 1)}, decoded by decode()")


def _tuple(items: list[str]) -> str:
    """Python tuple literal of already formatted items (trailing comma only when needed)."""
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


_EMITTERS: dict[type, Callable] = {
    Convolutional: _conv, Route: _route, Shortcut: _shortcut, MaxPool: _maxpool, AvgPool: _avgpool,
    Upsample: _upsample, Dropout: _dropout, Sam: _sam, ScaleChannels: _scale_channels, Reorg3d: _reorg3d,
    Yolo: _yolo,
}


def generate_source(network: Network, bn_eps: float = DARKNET_BN_EPS) -> str:
    """The complete model.py text for ``network``.

    Args:
        network: the parsed cfg.
        bn_eps: epsilon of every BatchNorm; Darknet's (1e-5) by default, 1e-6 reproduces OpenCV.

    Raises:
        UnsupportedCfgError: the network has no [yolo] layer (nothing to return).

    Example:
        >>> from cfg_codegen.parser import parse_cfg
        >>> print(generate_source(parse_cfg("yolov4-tiny.cfg")))  # doctest: +SKIP
    """
    if not network.yolo_layers:
        raise UnsupportedCfgError(f"unsupported: {network.path} has no [yolo] layer; edgeprune converts YOLO "
                                  f"detectors and returns the maps feeding [yolo] layers")
    shapes = infer_shapes(network)
    emitter = _Emitter(network, shapes)
    for layer in network.layers:
        _EMITTERS[type(layer)](emitter, layer)
    heads = network.yolo_layers
    outputs = ", ".join(var(y.index - 1) for y in heads)
    net = network.net
    name = Path(network.path).name
    head_list = ", ".join(str(y.index) for y in heads)
    lines = [
        f'"""PyTorch model of the Darknet network {name}, generated by edgeprune (cfg2py).',
        "",
        f"Input: N x {net.channels} x H x W, RGB scaled to [0, 1], no mean subtraction; the cfg's size is "
        f"{net.width}x{net.height} (WxH),",
        "and Darknet " + ("letterboxes" if net.letter_box else "stretches (no letterbox)") + " images to it.",
        f"forward(x) returns the maps feeding the [yolo] layers {head_list}, in that order;",
        "decode(maps, height, width) turns them into OpenCV DNN's yolo rows [cx, cy, w, h, obj, scores...].",
        "Shapes in the comments are for the cfg's input size. The only dependency is torch.",
        '"""',
        "",
        runtime_source(bn_eps),
        "",
        f"class {MODEL_CLASS}(nn.Module):",
        f'    """{name}: {len(network.layers)} layers, {len(heads)} yolo heads. Starts in eval mode."""',
        "",
        f"    INPUT_SIZE = ({net.height}, {net.width})  # (height, width) from [net]",
        f"    HEAD_LAYERS = {_tuple([str(y.index) for y in heads])}  # indices of the [yolo] layers",
        "",
        "    def __init__(self):",
        "        super().__init__()",
        *(f"        {line}" for line in emitter.init),
        "        self.eval()",
        "",
        "    def forward(self, x):",
        *(f"        {line}" for line in emitter.forward),
        f"        return {outputs}{',' if len(heads) == 1 else ''}",
        "",
        "    def decode(self, maps, height, width):",
        '        """One tensor of rows per head; height and width are the input\'s, in pixels."""',
        "        return [",
        *(f"            self.l{y.index}.decode(maps[{i}], height, width)," for i, y in enumerate(heads)),
        "        ]",
        "",
        "",
        'if __name__ == "__main__":',
        f"    model = {MODEL_CLASS}()",
        "    with torch.no_grad():",
        f"        maps = model(torch.rand(1, {net.channels}, *{MODEL_CLASS}.INPUT_SIZE))",
        f"        rows = model.decode(maps, *{MODEL_CLASS}.INPUT_SIZE)",
        "    for m, r in zip(maps, rows):",
        '        print(f"head map {tuple(m.shape)} -> rows {tuple(r.shape)}")',
    ]
    return "\n".join(lines) + "\n"
