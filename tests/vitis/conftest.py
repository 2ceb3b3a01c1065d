"""Fixtures for the Vitis AI target: fake tools on PATH, a rewritten model, fake board bundles.

There is no Docker engine, no Vitis AI image and no KV260 here. ``fake_tools/`` holds stand-ins
for ``docker`` (which runs the container scripts on this machine), ``vai_c_xir``, ``ssh`` and
``scp``; ``fake_vitis/`` holds ``xir``/``vart``/``pytorch_nndct`` doubles. They are reached only
through PATH shims and PYTHONPATH set here, never imported by edgeprune itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
FAKE_TOOLS = HERE / "fake_tools"
FAKE_VITIS = HERE / "fake_vitis"
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


class ToolLog:
    """The fake tools' call log (one JSON line per call)."""

    def __init__(self, path: Path):
        self.path = path

    def calls(self, tool: str | None = None) -> list[list[str]]:
        if not self.path.exists():
            return []
        entries = [json.loads(line) for line in self.path.read_text().splitlines()]
        return [e["argv"] for e in entries if tool is None or e["tool"] == tool]


def _shim(folder: Path, name: str, script: Path, *prefix: str) -> None:
    path = folder / name
    args = " ".join(f'"{p}"' for p in prefix)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" {args} "$@"\n')
    path.chmod(0o755)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch) -> ToolLog:
    """``docker``, ``ssh`` and ``scp`` fakes first on PATH; the image is present; the board is reachable."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    _shim(bin_dir, "docker", FAKE_TOOLS / "fake_docker.py")
    _shim(bin_dir, "ssh", FAKE_TOOLS / "fake_ssh.py", "ssh")
    _shim(bin_dir, "scp", FAKE_TOOLS / "fake_ssh.py", "scp")
    board_home = tmp_path / "board-home"
    board_home.mkdir()
    log = tmp_path / "tools.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_IMAGES", IMAGE)
    monkeypatch.setenv("FAKE_BOARD_HOME", str(board_home))
    monkeypatch.setenv("FAKE_BOARD_HOST", "root@kv260")
    monkeypatch.delenv("FAKE_DPU_SUBGRAPHS", raising=False)
    monkeypatch.delenv("FAKE_DOCKER_DAEMON_DOWN", raising=False)
    return ToolLog(log)


@pytest.fixture(scope="session")
def rewritten_pt(baseline_pt, session_tmp) -> Path:
    """The baseline after ``dpu-rewrite --act hardswish`` (not fine-tuned: its accuracy is not the point)."""
    from targets.vitis.dpu_rewrite import dpu_rewrite_file

    out = session_tmp / "yolov8n-synth-dpu.pt"
    if not out.exists():
        dpu_rewrite_file(baseline_pt, out, "hardswish")
    return out


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


@pytest.fixture(scope="session")
def val_images(synth_data) -> list[Path]:
    from toolchain.models.imagedata import image_files

    return image_files(synth_data, "val")[:6]


@pytest.fixture(scope="session")
def fake_bundle(baseline_pt, synth_data, session_tmp) -> Path:
    """Board bundle of the trained baseline at 256 px on the fake DPU (real detections to compare)."""
    import warnings

    from toolchain.models.imagedata import calibration_batches

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_fake_bundle(baseline_pt, session_tmp / "bundle-256", 256,
                                calibration_batches(synth_data, 256, 8))
