"""Helpers the Vitis AI tests share (the fixtures are in ``conftest.py``): run the CLI, read its error line,
build a fake board bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

IMAGE = "xilinx/vitis-ai-pytorch-cpu:latest"


def invoke(*args):
    """Run the edgeprune CLI in this process (no interpreter start-up); result has exit_code, stdout, stderr."""
    from click.testing import CliRunner

    from toolchain.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result) -> str:
    """The single error line of a failed command (exit code 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _fix_point(values: np.ndarray) -> int:
    """The largest power-of-two scale that keeps ``values`` inside int8, as a DPU quantiser would pick."""
    return int(np.floor(np.log2(127.0 / max(float(np.abs(values).max()), 1e-6))))


def make_fake_bundle(model_pt: Path, folder: Path, imgsz: int, calib_images: list[np.ndarray]) -> Path:
    """A board bundle whose xmodel is a fake xmodel over an ONNX export of the model's DPU graph.

    Output fix points come from the float graph's ranges on ``calib_images`` (float32 NCHW inputs);
    the DPU lists its outputs smallest map first, the reverse of the graph's order.
    """
    from toolchain.models.sources import prepare
    from targets.vitis.bundle import board_metadata, write_bundle
    from targets.vitis.graph import dpu_graph

    source = prepare(model_pt, imgsz)
    graph = dpu_graph(source)
    with torch.inference_mode():
        outs = [graph(torch.from_numpy(x)) for x in calib_images]
    fix_points = [_fix_point(np.stack([o[k].numpy() for o in outs])) for k in range(len(outs[0]))]
    scratch = folder.parent / f".{folder.name}-build"
    scratch.mkdir(parents=True, exist_ok=True)
    onnx_path = folder.parent / f"{folder.name}.onnx"  # absolute: the fake xmodel still finds it once copied to a board
    spec = {"format": "fake-xmodel/1", "onnx": str(onnx_path), "input_shape": list(source.example.shape),
            "input_fix_point": 7, "output_shapes": [list(o.shape) for o in outs[0]], "output_fix_points": fix_points,
            "output_order": list(reversed(range(len(fix_points)))),
            "subgraphs": [{"name": "subgraph_images", "attrs": {"device": "USER"}},
                          {"name": "subgraph_DPUGraph", "attrs": {"device": "DPU", "dpu_fingerprint": "fake"}}]}
    (scratch / "fake.xmodel").write_text(json.dumps(spec))
    meta = board_metadata(source, graph.spec, "DPUCZDX8G_ISA1_B4096", "kv260", "fake.xmodel")
    write_bundle(folder, scratch / "fake.xmodel", meta)
    torch.onnx.export(graph, (source.example,), str(onnx_path), input_names=["images"], opset_version=17,
                      dynamo=False)
    return folder
