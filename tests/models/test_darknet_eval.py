"""``edgeprune eval`` on a Darknet cfg: its decode (anchors, scale_x_y), the shared NMS and metrics.

Nothing is trained. The ground truth is what OpenCV's Darknet importer detects with the same
cfg + .weights (its own yolo decode, its own NMS), written as YOLO labels over synthetic
images: an independent reference, so a wrong anchor, stride, scale_x_y or resize in our
decode shows as a low mAP. The same generated module, wrapped to output Ultralytics' layout
with its own torch decode, goes through the path Ultralytics/torch sources take and must give
the same mAP.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from darknet_testlib import opencv_labelled_set

from cfg_codegen.build import build_model
from cfg_codegen.parser import parse_cfg
from cfg_codegen.weights import read_weights
from targets.torch_runner import TorchRunner
from toolchain.models.evaluation import evaluate_callable
from toolchain.cli.main import cli

SIZE, CLASSES = 256, 3


@pytest.fixture(scope="module")
def labelled_by_opencv(tmp_path_factory):
    return opencv_labelled_set(tmp_path_factory.mktemp("darknet-eval"), val=24)


class UltralyticsLayout(torch.nn.Module):
    """The generated module + its own torch decode (OpenCV's maths), output as Ultralytics' (1, 4 + nc, anchors)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        for index in model.HEAD_LAYERS:
            getattr(model, f"l{index}").thresh = -1.0  # keep every score, as the validator's conf 0.001 does

    def forward(self, x):
        h, w = x.shape[-2:]
        rows = torch.cat(self.model.decode(self.model(x), h, w), 0)
        scale = torch.tensor([w, h, w, h], dtype=rows.dtype)
        return torch.cat((rows[:, :4] * scale, rows[:, 5:]), 1).T[None]


def test_eval_of_a_cfg_finds_what_opencv_finds_and_matches_the_torch_source_path(labelled_by_opencv):
    cfg, weights, data = labelled_by_opencv
    run = CliRunner().invoke(cli, ["eval", str(cfg), "--weights", str(weights), "--data", str(data), "--json"])
    assert run.exit_code == 0, run.output
    ours = json.loads(run.output[run.output.index("{"):])
    assert ours["runner"]["backend"] == "torch" and ours["imgsz"] == SIZE
    # the independent reference: OpenCV's own detections are the labels
    assert ours["map50"] >= 0.9 and ours["map50_95"] >= 0.8, ours

    net = parse_cfg(cfg)
    module = UltralyticsLayout(build_model(net, read_weights(weights, net)))
    reference = evaluate_callable(TorchRunner(module, (1, 3, SIZE, SIZE)).predict, data, SIZE, CLASSES)
    print(f"\neval of the cfg: mAP50 {ours['map50']:.4f} mAP50-95 {ours['map50_95']:.4f}; torch-source path: "
          f"{reference['map50']:.4f} / {reference['map50_95']:.4f}")
    assert abs(reference["map50"] - ours["map50"]) < 1e-3 and abs(reference["map50_95"] - ours["map50_95"]) < 1e-3

    missing = CliRunner().invoke(cli, ["eval", str(cfg), "--weights", str(cfg.parent / "nope.weights"), "--data",
                                       str(data)])
    assert missing.exit_code == 2 and "nope.weights" in missing.output and "Traceback" not in missing.output
