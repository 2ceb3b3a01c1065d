"""The workspace's graph files rebuild the model exactly; what cannot be rebuilt is refused by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.models.sources import prepare
from targets.vitis.docker import CONDA_ENV, CONDA_PROFILE, DEFAULT_IMAGE
from targets.vitis.dpu import KV260
from targets.vitis.graph import dpu_graph
from targets.vitis.program import build_program
from targets.vitis.trace import trace_ops
from targets.vitis.workspace import load_template
from toolchain.core.errors import UnsupportedModelError

REPO = Path(__file__).resolve().parents[3]


def test_graph_json_and_weights_rebuild_the_dpu_graph_exactly(rewritten_pt, tmp_path):
    source = prepare(rewritten_pt, 256)
    graph = dpu_graph(source)
    program, weights = build_program(trace_ops(graph, source.example))
    (tmp_path / "graph.json").write_text(json.dumps(program))
    np.savez(tmp_path / "weights.npz", **weights)
    rebuilt = load_template("dpu_graph").load(tmp_path / "graph.json", tmp_path / "weights.npz")
    assert type(rebuilt).__name__ == "DPUGraph"  # the quantizer names the xmodel after it: DPUGraph_int.xmodel
    assert sum(isinstance(m, nn.Hardswish) for m in rebuilt.modules()) == 57
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        for a, b in zip(graph(x), rebuilt(x)):
            assert a.shape == b.shape and torch.equal(a, b)


def test_ops_the_quantizer_workspace_cannot_rebuild_are_named():
    class Flatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).flatten(1)

    with pytest.raises(UnsupportedModelError, match=r"op flatten in the top-level module cannot be rebuilt"):
        build_program(trace_ops(Flatten().eval(), torch.rand(1, 3, 16, 16)))


def test_only_plain_detect_heads_go_to_the_dpu(baseline_pt):
    from ultralytics.nn.modules.head import Pose

    from targets.vitis.graph import DPUGraph
    from toolchain.models.loading import load_model

    model = load_model(baseline_pt).model
    model.model[-1].__class__ = Pose  # a Detect subclass with extra outputs the board could not decode
    with pytest.raises(UnsupportedModelError, match="the DPU export supports plain Detect heads, got Pose"):
        DPUGraph(model)


def test_dockerfiles_match_what_deploy_runs():
    vitis = (REPO / "docker" / "vitis-ai" / "Dockerfile").read_text()
    assert re.search(rf"^ARG BASE_IMAGE={re.escape(DEFAULT_IMAGE)}$", vitis, re.M)
    assert CONDA_PROFILE in vitis and f"conda activate {CONDA_ENV}" in vitis and KV260.arch_json in vitis
    for module in ("cv2", "numpy", "torch", "pytorch_nndct"):  # everything quantize.py imports from the image
        assert module in vitis
    openvino = (REPO / "docker" / "openvino" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["edgeprune"]' in openvino and "pip install ." in openvino
    assert 'pip install ".[ray]"' in (REPO / "docker" / "ray" / "Dockerfile").read_text()
    packages = re.search(r"include = \[(.*)\]", (REPO / "pyproject.toml").read_text()).group(1)
    packages = [name.strip(' "*') for name in packages.split(",")]
    for image in ("openvino", "ray"):
        text = (REPO / "docker" / image / "Dockerfile").read_text()
        ignored = (REPO / "docker" / image / "Dockerfile.dockerignore").read_text().split()
        copied = re.findall(r"^COPY (\S+)", text, re.M)
        assert all(f"!{c}" in ignored or f"!{c}/" in ignored for c in copied)  # every COPY source survives the filter
        assert set(packages) <= set(copied), f"{image}: the image must hold every package pip installs"
