"""Build the PyTorch model of a parsed network and move parameters between it and .weights.

Why the model is built by executing the generated source: the file ``cfg2py`` writes and the
model ``cfg2ir`` converts (and the parity tests check against OpenCV) are then the same code, so
a bug cannot hide in one path only. The source is registered with :mod:`linecache`, so
tracebacks and debuggers show the generated lines.
"""

from __future__ import annotations

import linecache
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cfg_codegen.codegen import DARKNET_BN_EPS, MODEL_CLASS, generate_source
from cfg_codegen.errors import WeightsError
from cfg_codegen.layers import Activation, Network
from cfg_codegen.parser import parse_cfg
from cfg_codegen.shapes import infer_shapes
from cfg_codegen.weights import ConvWeights, DarknetWeights, WeightsHeader, expected_floats, read_weights
from toolchain.core.fileio import atomic_output, ensure_not_input

_built = 0


def build_model(network: Network, weights: DarknetWeights | None = None, bn_eps: float = DARKNET_BN_EPS) -> nn.Module:
    """The generated ``Model`` for ``network`` in eval mode, with ``weights`` loaded if given.

    ``bn_eps`` is Darknet's 1e-5 by default; 1e-6 reproduces OpenCV's importer.

    Example:
        >>> net = parse_cfg("yolov4-tiny.cfg")  # doctest: +SKIP
        >>> model = build_model(net, read_weights("yolov4-tiny.weights", net))  # doctest: +SKIP
        >>> maps = model(torch.rand(1, 3, 416, 416))  # doctest: +SKIP
    """
    global _built
    _built += 1
    source = generate_source(network, bn_eps)
    filename = f"<edgeprune model {_built}: {network.path}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {"__name__": f"edgeprune_generated_{_built}"}
    exec(compile(source, filename, "exec"), namespace)  # our own generated code, built from validated specs
    model = namespace[MODEL_CLASS]()
    if weights is not None:
        load_weights(model, network, weights)
    return model


def _conv_module(model: nn.Module, index: int) -> nn.Module:
    return getattr(model, f"l{index}")


def load_weights(model: nn.Module, network: Network, weights: DarknetWeights) -> None:
    """Copy Darknet parameters into a model made by :func:`build_model` for the same network."""
    with torch.no_grad():
        for layer in network.conv_layers:
            params = weights.convs.get(layer.index)
            if params is None:
                raise WeightsError(f"{layer.origin.describe()}: no parameters for this conv layer")
            block = _conv_module(model, layer.index)
            _copy(block.conv.weight, params.weights, layer)
            if layer.batch_normalize:
                for target, source in ((block.bn.weight, params.scales), (block.bn.bias, params.biases),
                                       (block.bn.running_mean, params.rolling_mean),
                                       (block.bn.running_var, params.rolling_variance)):
                    _copy(target, source, layer)
            else:
                _copy(block.conv.bias, params.biases, layer)


def _copy(target: torch.Tensor, source: np.ndarray | None, layer) -> None:
    if source is None or source.size != target.numel():
        got = None if source is None else source.shape
        raise WeightsError(f"{layer.origin.describe()}: parameter of shape {tuple(target.shape)} cannot take {got}")
    target.copy_(torch.from_numpy(np.array(source, dtype=np.float32)).reshape(target.shape))


def extract_weights(model: nn.Module, network: Network, header: WeightsHeader | None = None) -> DarknetWeights:
    """The model's parameters as :class:`DarknetWeights` (e.g. after fine-tuning in PyTorch)."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    convs = {}
    for layer in network.conv_layers:
        block = _conv_module(model, layer.index)
        if layer.batch_normalize:
            convs[layer.index] = ConvWeights(arr(block.bn.bias), arr(block.conv.weight), arr(block.bn.weight),
                                             arr(block.bn.running_mean), arr(block.bn.running_var))
        else:
            convs[layer.index] = ConvWeights(arr(block.conv.bias), arr(block.conv.weight))
    return DarknetWeights(header or WeightsHeader(), convs)


_UNIT_GAIN = {Activation.LINEAR, Activation.LOGISTIC, Activation.TANH}


def random_model(network: Network, height: int, width: int, seed: int = 0,
                 bn_eps: float = DARKNET_BN_EPS) -> tuple[nn.Module, DarknetWeights]:
    """A model with random parameters whose conv outputs have unit spread, and those parameters.

    Why not PyTorch's default init: with BN gamma=1, mean=0, var=1 deep Darknet nets give
    near-constant heads, and residual sums grow layer after layer (YOLOv3's heads reach 1e4),
    which makes exp() in the box decode overflow and comparisons meaningless. Kernels are
    N(0, gain / fan_in) (gain 2 for rectifier-like activations, else 1), BN gamma in [0.5, 1.5],
    beta and mean N(0, 0.1), variance in [0.5, 2]; then one forward pass on a random image
    rescales each conv, in order, so its pre-activation output has standard deviation 1 (BN gamma
    and beta, or kernel and bias, divided by the measured spread). Used by the tests and by
    ``cfg2ir`` when no weights are given.
    """

    infer_shapes(network, height, width)  # a clear error if the net cannot run at this size
    model = build_model(network, bn_eps=bn_eps)
    generator = torch.Generator().manual_seed(seed)
    hooks = []

    def rescale(*params: torch.Tensor):
        def hook(module, inputs, output):
            spread = output.std().clamp_min(1e-6)
            for p in params:
                p.div_(spread)
            return output / spread
        return hook

    with torch.no_grad():
        for layer in network.conv_layers:
            block = _conv_module(model, layer.index)
            kernel = block.conv.weight
            gain = 1.0 if layer.activation in _UNIT_GAIN else 2.0
            kernel.normal_(0.0, (gain / kernel[0].numel()) ** 0.5, generator=generator)
            if layer.batch_normalize:
                bn = block.bn
                bn.weight.uniform_(0.5, 1.5, generator=generator)
                bn.bias.normal_(0.0, 0.1, generator=generator)
                bn.running_mean.normal_(0.0, 0.1, generator=generator)
                bn.running_var.uniform_(0.5, 2.0, generator=generator)
                hooks.append(bn.register_forward_hook(rescale(bn.weight, bn.bias)))
            else:
                block.conv.bias.normal_(0.0, 0.1, generator=generator)
                hooks.append(block.conv.register_forward_hook(rescale(kernel, block.conv.bias)))
        model(torch.rand(1, network.net.channels, height, width, generator=generator))
    for hook in hooks:
        hook.remove()
    return model, extract_weights(model, network)


@dataclass(frozen=True)
class CodegenResult:
    """What ``cfg2py`` wrote."""

    source: str  # path of model.py
    state_dict: str | None  # path of the .pt written from --weights, if any
    layers: int
    heads: tuple[int, ...]  # indices of the [yolo] layers
    input_size: tuple[int, int]  # (width, height) of [net]
    params: int
    warnings: tuple[str, ...] = ()


def write_model_py(cfg: str | os.PathLike, out: str | os.PathLike, weights: str | os.PathLike | None = None,
                   bn_eps: float = DARKNET_BN_EPS) -> CodegenResult:
    """Parse ``cfg`` and write the generated module to ``out`` (atomically, never over an input).

    With ``weights`` the Darknet parameters are also saved as a PyTorch state dict next to
    ``out`` (same name, ``.pt``), loadable with ``Model().load_state_dict(torch.load(...))``.
    """

    out = Path(out)
    state_path = out.with_suffix(".pt") if weights is not None else None
    for target in (out, state_path):
        if target is not None:
            ensure_not_input(target, cfg, weights)
    network = parse_cfg(cfg)
    source = generate_source(network, bn_eps)
    if weights is not None:
        model = build_model(network, read_weights(weights, network), bn_eps)
        with atomic_output(state_path) as tmp:
            torch.save(model.state_dict(), tmp)
    with atomic_output(out) as tmp:
        tmp.write_text(source)
    return CodegenResult(str(out), None if state_path is None else str(state_path), len(network.layers),
                         tuple(y.index for y in network.yolo_layers), (network.net.width, network.net.height),
                         expected_floats(network), network.warnings)
