"""Layer pruning removes residual units, keeps stock classes, and fine-tunes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _residual_count(path) -> int:
    from ultralytics.nn.modules.block import Bottleneck

    from toolchain.models.loading import load_model

    return sum(isinstance(m, Bottleneck) and m.add for m in load_model(path).model.modules())


@pytest.fixture(scope="module")
def layer_pruned(baseline_pt, tmp_path_factory):
    from toolchain.models.prune_job import prune_file
    from toolchain.models.pruning import PruneConfig

    out = tmp_path_factory.mktemp("layers") / "layers2.pt"
    return out, prune_file(str(baseline_pt), str(out), PruneConfig(ratio=0.0, imgsz=256), layers=2)


def test_two_units_removed_and_macs_drop(layer_pruned, baseline_pt):
    from toolchain.models.layer_prune import residual_units
    from toolchain.models.loading import load_model

    out, report = layer_pruned
    assert _residual_count(out) == _residual_count(baseline_pt) - 2
    assert report.mode == "layers" and report.after.macs < report.before.macs
    assert report.after.params < report.before.params
    # The removed ones were the two lowest-scored units.
    ranked = residual_units(load_model(baseline_pt).model)
    assert all(u.name in report.notes[0] for u in ranked[:2])


def test_loads_and_predicts_without_edgeprune(layer_pruned, small_data):
    out, _ = layer_pruned
    image = next((small_data.parent / "images" / "val").glob("*"))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["toolchain"] = None  # any pickled reference to edgeprune code would fail to import
        from ultralytics import YOLO
        r = YOLO({str(out)!r}).predict({str(image)!r}, imgsz=256, device="cpu", verbose=False)
        print("BOXES", len(r[0].boxes))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BOXES" in proc.stdout


def test_finetunes_one_epoch(layer_pruned, small_data, tmp_path):
    from toolchain.models.training import TrainConfig, finetune

    out, _ = layer_pruned
    result = finetune(str(out), str(small_data), tmp_path / "ft", TrainConfig(epochs=1, imgsz=128, batch=32, workers=0))
    assert _residual_count(result.weights) == _residual_count(out)


def test_too_many_layers_is_a_user_error(baseline_pt, tmp_path):
    from toolchain.core.errors import PruningError
    from toolchain.models.prune_job import prune_file
    from toolchain.models.pruning import PruneConfig

    with pytest.raises(PruningError, match="between 1 and 6"):
        prune_file(str(baseline_pt), str(tmp_path / "x.pt"), PruneConfig(ratio=0.0), layers=7)
