"""Rebuild the network edgeprune traced (model/graph.json + model/weights.npz) as a torch module.

Runs inside the Vitis AI Docker image (conda env vitis-ai-pytorch: Python 3.8, torch 1.13), so
it imports only torch and numpy and uses Python 3.8 syntax. Every op becomes a standard
module or call the quantizer recognises (nn.Conv2d, nn.Hardswish, nn.MaxPool2d, nn.Upsample,
torch.cat, torch.chunk, torch.add); the class is named DPUGraph, so the quantizer writes
quantize_result/DPUGraph_int.xmodel.
"""

import json

import numpy as np
import torch
from torch import nn


def _activation(op, attrs):
    if op == "relu":
        return nn.ReLU()
    if op == "hardtanh":
        return nn.ReLU6() if (attrs["min"], attrs["max"]) == (0.0, 6.0) else nn.Hardtanh(attrs["min"], attrs["max"])
    if op == "leaky_relu":
        return nn.LeakyReLU(attrs["slope"])
    return {"hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}[op]()


def _layer(node, weights):
    op, attrs, key = node["op"], node["attrs"], "n%d" % node["id"]
    if op == "conv2d":
        conv = nn.Conv2d(attrs["in_channels"], attrs["out_channels"], tuple(attrs["kernel"]), tuple(attrs["stride"]),
                         tuple(attrs["padding"]), tuple(attrs["dilation"]), attrs["groups"], bias=attrs["bias"])
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weights[key + ".weight"]))
            if attrs["bias"]:
                conv.bias.copy_(torch.from_numpy(weights[key + ".bias"]))
        return conv
    if op == "max_pool2d":
        return nn.MaxPool2d(tuple(attrs["kernel"]), tuple(attrs["stride"]), tuple(attrs["padding"]),
                            tuple(attrs["dilation"]), ceil_mode=attrs["ceil_mode"])
    if op == "avg_pool2d":
        return nn.AvgPool2d(tuple(attrs["kernel"]), tuple(attrs["stride"]), tuple(attrs["padding"]),
                            ceil_mode=attrs["ceil_mode"], count_include_pad=attrs["count_include_pad"])
    if op == "resize":
        return nn.Upsample(scale_factor=tuple(float(s) for s in attrs["scale"]), mode=attrs["mode"])
    if op in ("relu", "hardtanh", "leaky_relu", "hardswish", "hardsigmoid", "silu", "sigmoid"):
        return _activation(op, attrs)
    return None  # cat, chunk, split, add, mul: plain torch calls in forward


class DPUGraph(nn.Module):
    """The traced network: ``forward(x)`` returns the tuple of graph outputs (NCHW)."""

    def __init__(self, program, weights):
        super().__init__()
        self.nodes = program["nodes"]
        self.outputs = [tuple(o) for o in program["outputs"]]
        self.layers = nn.ModuleDict()
        for node in self.nodes:
            layer = _layer(node, weights)
            if layer is not None:
                self.layers["n%d" % node["id"]] = layer

    def _run(self, node, args):
        op, attrs = node["op"], node["attrs"]
        if op == "cat":
            return torch.cat(args, dim=attrs["dim"])
        if op == "chunk":
            return torch.chunk(args[0], attrs["chunks"], dim=attrs["dim"])
        if op == "split":
            return torch.split(args[0], attrs["sizes"], dim=attrs["dim"])
        if op == "add":
            return torch.add(args[0], args[1])
        if op == "mul":
            return torch.mul(args[0], args[1])
        return self.layers["n%d" % node["id"]](args[0])

    def forward(self, x):
        values = {(-1, 0): x}
        for node in self.nodes:
            out = self._run(node, [values[(i, k)] for i, k in node["inputs"]])
            for k, tensor in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
                values[(node["id"], k)] = tensor
        return tuple(values[o] for o in self.outputs)


def load(graph_json, weights_npz):
    """The float DPUGraph from the workspace files, in eval mode."""
    with open(graph_json) as fh:
        program = json.load(fh)
    with np.load(weights_npz) as data:
        weights = {k: data[k] for k in data.files}
    return DPUGraph(program, weights).eval()
