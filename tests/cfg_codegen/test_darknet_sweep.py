"""``sweep`` on a Darknet cfg: cfg-prune's global percent as the ratio, the same JSONL, resume, knee and report.

The model is labelled by its own OpenCV detections (``opencv_labelled_set``), so the unpruned
point scores mAP ~1 and pruning really costs accuracy: the sweep has a cliff to find.
"""

from __future__ import annotations

import json

import pytest
from darknet_testlib import opencv_labelled_set

from toolchain import sweep as sweep_mod
from toolchain.report import build_report
from toolchain.sweep import SweepConfig, SweepError, read_points


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return opencv_labelled_set(tmp_path_factory.mktemp("darknet-sweep"), val=12)


def _cfg(data, weights, **kw) -> SweepConfig:
    base = dict(data=str(data), weights=str(weights), ratios=(0.05, 0.5), target="onnx", max_drop=0.1,
                bench_iterations=5)
    base.update(kw)
    return SweepConfig(**base)


def test_darknet_sweep_prunes_measures_resumes_and_reports(labelled, tmp_path):
    cfg, weights, data = labelled
    result = sweep_mod.sweep(str(cfg), tmp_path, _cfg(data, weights))
    ratios = [p.ratio for p in result.points]
    assert ratios == [0.0, 0.05, 0.5] and result.computed == 3
    base, light, heavy = result.points
    # the labels are its own detections; the validator's matching rule (each prediction claims only its
    # best-IoU box) leaves a few overlapping self-detections unmatched, so not 1.0
    assert base.map50 > 0.85
    assert heavy.params < light.params < base.params and heavy.macs < base.macs
    assert base.map50 - heavy.map50 > 0.1, "pruning half the channels of a model must cost accuracy"
    assert all(p.fps > 0 and p.model.endswith(".cfg") for p in result.points)
    # the fastest point within --max-drop 0.1 that beats the unpruned model
    expected = 0.05 if base.map50 - light.map50 <= 0.1 and light.fps > base.fps else None
    assert result.choice.ratio == expected and result.config.imgsz == 256
    for point in result.points:
        folder = tmp_path / "points" / point.key / f"r{point.ratio:.4f}"
        assert (folder / "pruned.cfg").is_file() and (folder / "pruned.weights").is_file()
        record = json.loads((folder / "onnx" / "deploy.json").read_text())
        assert record["source"]["kind"] == "darknet" and record["fidelity"]["max_rel_diff"] <= 1e-4

    again = sweep_mod.sweep(str(cfg), tmp_path, _cfg(data, weights))
    assert (again.computed, again.resumed) == (0, 3)

    report = build_report(tmp_path)
    assert report.points == 3 and any("Ultralytics validator" in note for note in report.notes)
    assert "per_class_ap" in " ".join(report.images)


def test_options_a_darknet_sweep_cannot_use_are_refused(labelled, tmp_path):
    cfg, weights, data = labelled
    with pytest.raises(SweepError, match="--method, --global do not apply to a Darknet cfg"):
        sweep_mod.sweep(str(cfg), tmp_path, _cfg(data, weights, method="l2", global_pruning=True))
    with pytest.raises(SweepError, match="fine-tuning a Darknet cfg is not available yet"):
        sweep_mod.sweep(str(cfg), tmp_path, _cfg(data, weights, finetune_epochs=1))
    assert read_points(tmp_path) == []
