"""Turn a traced DPU graph into files the Vitis AI quantizer can load: ``graph.json`` + ``weights.npz``.

Why not pickle the module or save TorchScript: the Vitis AI image has torch 1.13 on Python 3.8
and no Ultralytics, so neither a pickled YOLO module nor a TorchScript file written by this
machine's torch loads there reliably. A list of ops plus float32 weights is version-free;
``templates/dpu_graph.py`` (torch + numpy only) rebuilds it from ``nn.Conv2d``,
``nn.Hardswish``, ``torch.cat``... which the quantizer recognises. Before anything goes to
Docker, the workspace check runs that rebuild here and compares it with the traced module.
"""

from __future__ import annotations

import numpy as np
import torch

from targets.vitis.trace import OpGraph, OpNode, Ref
from toolchain.core.errors import UnsupportedModelError

ACTIVATIONS = ("relu", "hardtanh", "leaky_relu", "hardswish", "hardsigmoid", "silu", "sigmoid")
SUPPORTED = ("conv2d", *ACTIVATIONS, "max_pool2d", "avg_pool2d", "resize", "cat", "chunk", "split", "add", "mul")


def _ints(value) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value), int(value)]


def _unsupported(node: OpNode, why: str) -> UnsupportedModelError:
    where = node.module or "the top-level module"
    return UnsupportedModelError(f"op {node.op} in {where} cannot be rebuilt for the Vitis AI quantizer ({why})")


def _attrs(node: OpNode, graph: OpGraph, weights: dict[str, np.ndarray]) -> dict:
    op = node.op
    if op == "conv2d":
        weight, bias = node.arg(1, "weight"), node.arg(2, "bias")
        if not isinstance(weight, torch.Tensor) or isinstance(bias, Ref) or len(node.inputs) != 1:
            raise _unsupported(node, "its weights are computed by the network")
        if isinstance(node.arg(4, "padding", 0), str):
            raise _unsupported(node, "string padding")
        key = f"n{node.index}"
        weights[f"{key}.weight"] = weight.detach().float().numpy()
        if bias is not None:
            weights[f"{key}.bias"] = bias.detach().float().numpy()
        groups = int(node.arg(6, "groups", 1))
        return {"in_channels": int(weight.shape[1]) * groups, "out_channels": int(weight.shape[0]),
                "kernel": list(weight.shape[2:]), "stride": _ints(node.arg(3, "stride", 1)),
                "padding": _ints(node.arg(4, "padding", 0)), "dilation": _ints(node.arg(5, "dilation", 1)),
                "groups": groups, "bias": bias is not None}
    if op == "hardtanh":
        return {"min": float(node.arg(1, "min_val", -1.0)), "max": float(node.arg(2, "max_val", 1.0))}
    if op == "leaky_relu":
        return {"slope": float(node.arg(1, "negative_slope", 0.01))}
    if op in ("max_pool2d", "avg_pool2d"):
        kernel = _ints(node.arg(1, "kernel_size"))
        attrs = {"kernel": kernel, "stride": _ints(node.arg(2, "stride") or kernel),
                 "padding": _ints(node.arg(3, "padding", 0))}
        if op == "max_pool2d":
            attrs.update(dilation=_ints(node.arg(4, "dilation", 1)), ceil_mode=bool(node.arg(5, "ceil_mode", False)))
        else:
            attrs.update(ceil_mode=bool(node.arg(4, "ceil_mode", False)),
                         count_include_pad=bool(node.arg(5, "count_include_pad", True)))
        return attrs
    if op == "resize":
        (ih, iw), (oh, ow) = graph.shape_of(node.inputs[0])[-2:], node.out_shapes[0][-2:]
        if oh % ih or ow % iw:
            raise _unsupported(node, f"non-integer scale {ih}x{iw} -> {oh}x{ow}")
        return {"scale": [oh // ih, ow // iw], "mode": str(node.arg(3, "mode", "nearest"))}
    if op == "cat":
        tensors = node.arg(0, "tensors")
        if not all(isinstance(t, Ref) for t in tensors):
            raise _unsupported(node, "it concatenates a constant")
        return {"dim": int(node.arg(1, "dim", 0))}
    if op == "chunk":
        return {"chunks": int(node.arg(1, "chunks")), "dim": int(node.arg(2, "dim", 0))}
    if op == "split":
        size = node.arg(1, "split_size", node.kwargs.get("split_size_or_sections"))
        return {"sizes": size if isinstance(size, int) else [int(s) for s in size], "dim": int(node.arg(2, "dim", 0))}
    if op in ("add", "mul"):
        if len(node.inputs) == 2 and all(isinstance(a, Ref) for a in node.args[:2]):
            return {}
        raise _unsupported(node, "one operand is a constant tensor or scalar")
    return {}


def build_program(graph: OpGraph) -> tuple[dict, dict[str, np.ndarray]]:
    """``(program, weights)``: the JSON-able op list and its float32 weights.

    Raises:
        UnsupportedModelError: an op the workspace cannot rebuild (reshapes, constant arithmetic...).
    """
    nodes, weights = [], {}
    for node in graph.nodes:
        if node.op not in SUPPORTED:
            raise _unsupported(node, f"supported ops: {', '.join(SUPPORTED)}")
        nodes.append({"id": node.index, "op": node.op, "name": node.module,
                      "inputs": [[r.node, r.out] for r in node.inputs], "attrs": _attrs(node, graph, weights)})
    program = {"format": "edgeprune-dpu-graph/1", "input_shape": list(graph.input_shape), "nodes": nodes,
               "outputs": [[r.node, r.out] for r in graph.outputs],
               "output_shapes": [list(graph.shape_of(r)) for r in graph.outputs]}
    return program, weights
