"""``sweep`` on a Darknet cfg: cfg-prune's global percent as the ratio, the same JSONL, resume, knee and report.

The model is labelled by its own OpenCV detections (``opencv_labelled_set``), so the unpruned
point scores mAP ~1 and pruning really costs accuracy: the sweep has a cliff to find.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from darknet_testlib import opencv_labelled_set

from toolchain.pipelines import sweep as sweep_mod
from toolchain.pipelines.report import build_report
from toolchain.core.errors import EdgepruneError
from toolchain.pipelines.sweep import SweepConfig, read_points


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
    with pytest.raises(EdgepruneError, match=r"--method, --global do not apply to .* \(a Darknet cfg\)"):
        sweep_mod.sweep(str(cfg), tmp_path, _cfg(data, weights, method="l2", global_pruning=True))
    with pytest.raises(EdgepruneError, match=r"--head-ratio does not apply to .* \(a Darknet cfg\)"):
        sweep_mod.sweep(str(cfg), tmp_path, _cfg(data, weights, head_ratio=0.0))
    assert read_points(tmp_path) == []


def _residual_cfg() -> str:
    """A small Darknet net with three removable residual units ([conv, conv, shortcut from=-3])."""
    def conv(filters, size=3, stride=1, act="leaky", bn=1):
        return (f"[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\n"
                f"activation={act}\n")

    def unit(filters):
        return conv(filters // 2, 1) + conv(filters) + "[shortcut]\nfrom=-3\nactivation=linear\n"

    # wide enough (about 1.3 GMACs at 256) that pruning most channels is clearly faster even on a busy machine
    return ("[net]\nwidth=256\nheight=256\nchannels=3\n" + conv(32, stride=2) + conv(128, stride=2) + unit(128)
            + conv(256, stride=2) + unit(256) + conv(512, stride=2) + unit(512) + conv(256, stride=2)
            + conv(24, 1, act="linear", bn=0)
            + "[yolo]\nmask=0,1,2\nanchors=30,30, 60,60, 100,100\nclasses=3\nnum=3\nignore_thresh=0.7\n")


@pytest.mark.full  # 45 s; make test keeps the plain Darknet sweep above
def test_darknet_sweep_tries_residual_units_at_the_chosen_percent_then_finetunes_the_choice(tmp_path_factory,
                                                                                            tmp_path):
    from cfg_codegen.parser import parse_cfg

    cfg, weights, data = opencv_labelled_set(tmp_path_factory.mktemp("residual"), val=12, text=_residual_cfg(),
                                             min_labels=5)
    config = _cfg(data, weights, ratios=(0.8,), max_drop=1.0, shortcut_grid=(1, 2), finetune_chosen=1,
                  bench_iterations=20)
    result = sweep_mod.sweep(str(cfg), tmp_path, config)
    base, pruned = result.points
    assert pruned.fps > base.fps, "pruning 80 % of the channels must run faster, or the sweep has no point to refine"
    assert result.choice.ratio == 0.8
    assert [(p.ratio, p.shortcuts) for p in result.shortcut_points] == [(0.8, 1), (0.8, 2)]
    one, two = result.shortcut_points
    assert two.params < one.params < pruned.params  # each removed unit takes its two convs with it
    assert len(parse_cfg(two.model).layers) == len(parse_cfg(pruned.model).layers) - 6
    # the choice is the fastest of the three within the (here unlimited) drop that beats the grid's point
    faster = [p for p in result.shortcut_points if p.fps > pruned.fps]
    expected = max(faster, key=lambda p: p.fps).shortcuts if faster else 0
    assert result.choice.shortcuts == expected
    tuned = result.finetuned
    assert tuned is not None and (tuned.ratio, tuned.shortcuts, tuned.epochs) == (0.8, expected, 1)
    assert Path(tuned.model).suffix == ".cfg" and Path(tuned.weights).is_file()
    assert tuned.before_map50 == next(p.map50 for p in [pruned, *result.shortcut_points] if p.shortcuts == expected)
    markdown = Path(build_report(tmp_path, curves=False).markdown).read_text()
    assert "## Residual units removed at ratio 0.8" in markdown and "## Chosen model fine-tuned" in markdown
    assert result.choice.reason in markdown
    again = sweep_mod.sweep(str(cfg), tmp_path, replace(config, finetune_chosen=0))
    assert again.computed == 0 and len(again.shortcut_points) == 2  # the shortcut points resume too
