"""Artifacts of the committed baseline, deployed once per session and shared by target tests."""

from __future__ import annotations

import pytest

from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from targets.registry import list_targets

# torch is the reference and vitis runs in Docker and on the board: both have their own tests
EXPORT_TARGETS = [name for name in list_targets() if name not in ("torch", "vitis")]
IMGSZ = 256


@pytest.fixture(scope="session")
def deployed(baseline_pt, synth_data, session_tmp):
    """Deploy the baseline once per (target, precision); INT8 calibrates on 100 training images."""
    cache = {}

    def get(target: str, precision: str):
        key = (target, precision)
        if key not in cache:
            cfg = ExportConfig(precision=precision, imgsz=IMGSZ, data=str(synth_data), calib_images=100)
            name = f"deploy-{target}-{precision}" + ("_openvino_model" if target == "openvino" else "")
            cache[key] = deploy(target, str(baseline_pt), session_tmp / name, cfg)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def deploy_ir(deployed):
    """The deploy folder of the FP32 OpenVINO IR (static 256x256)."""
    return deployed("openvino", "fp32").deploy_json.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def deploy_onnx(deployed):
    return deployed("onnx", "fp32").deploy_json.rsplit("/", 1)[0]
