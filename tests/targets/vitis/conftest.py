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

import pytest

from vitis_testlib import IMAGE, make_fake_bundle

HERE = Path(__file__).resolve().parent
FAKE_TOOLS = HERE / "fake_tools"
FAKE_VITIS = HERE / "fake_vitis"
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
