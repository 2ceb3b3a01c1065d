"""One pruned model per Ultralytics task deploys to ONNX Runtime and OpenVINO and matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from toolchain.models.pruning import PruneConfig
from toolchain.models.prune_job import prune_file

TASK_MODELS = [
    pytest.param("detect", "yolo26n.yaml", id="detect-yolo26n"),
    pytest.param("segment", "yolov8n-seg.yaml", id="segment-yolov8n"),
    pytest.param("classify", "yolo12n-cls.yaml", id="classify-yolo12n"),
    pytest.param("pose", "yolo26n-pose.yaml", id="pose-yolo26n", marks=pytest.mark.full),
    pytest.param("obb", "yolo11n-obb.yaml", id="obb-yolo11n", marks=pytest.mark.full),
]


@pytest.mark.parametrize("task, yaml_name", TASK_MODELS)
@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_pruned_model_of_each_task_deploys_with_fidelity(random_yolo, tmp_path, task, yaml_name, target):
    pruned = tmp_path / "pruned.pt"
    prune_file(str(random_yolo(yaml_name)), str(pruned), PruneConfig(ratio=0.4, imgsz=128))
    result = deploy(target, str(pruned), tmp_path / target, ExportConfig(precision="fp32", imgsz=128), evaluate=False)
    record = json.loads(Path(result.deploy_json).read_text())  # what the user gets on disk
    fidelity = record["fidelity"]
    assert fidelity["max_rel_diff"] <= 1e-4, fidelity
    assert fidelity["output_shape"][0] == 1
    # every output is compared, each at its own scale: a segment model's Proto masks too
    assert len(fidelity["outputs"]) == (2 if task == "segment" else 1), fidelity
    assert all(o["max_rel_diff"] <= 1e-4 for o in fidelity["outputs"])
    if task == "segment":
        assert fidelity["outputs"][1]["shape"][1] == 32  # the Proto's mask prototypes (contract: never pruned)
    assert record["runner"]["executed_precision"]
