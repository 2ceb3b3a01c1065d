"""Darknet cfg parser, .weights reader/writer, PyTorch code generator and pruning.

Deploying a cfg (OpenVINO, ONNX Runtime, the KV260) is the one deploy pipeline's job: the
generated module is a model source (:mod:`toolchain.models.sources.darknet`).

The public API is the names below; they are imported lazily (PEP 562), so parsing a cfg does
not pay for importing torch or OpenVINO.

Example:
    >>> from cfg_codegen import parse_cfg, read_weights, build_model  # doctest: +SKIP
    >>> net = parse_cfg("yolov4-tiny.cfg")  # doctest: +SKIP
    >>> model = build_model(net, read_weights("yolov4-tiny.weights", net))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CfgError": "errors", "UnsupportedCfgError": "errors", "WeightsError": "errors",
    "Network": "layers", "Activation": "layers",
    "parse_cfg": "parser", "parse_cfg_text": "parser",
    "Shape": "shapes", "infer_shapes": "shapes",
    "DarknetWeights": "weights", "ConvWeights": "weights", "WeightsHeader": "weights",
    "read_weights": "weights", "write_weights": "weights",
    "generate_source": "codegen", "write_model_py": "build",
    "build_model": "build", "load_weights": "build", "extract_weights": "build", "random_model": "build",
    "PruneConfig": "prune", "prune_darknet": "prune", "prune_channels": "prune",
    "remove_residual_units": "prune",
    "render_cfg": "cfgwrite",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cfg_codegen' has no attribute '{name}'")
    return getattr(importlib.import_module(f"cfg_codegen.{_EXPORTS[name]}"), name)
