"""A pruned checkpoint is a normal Ultralytics checkpoint, and fine-tuning recovers its accuracy.

These run on the committed baseline trained on the synthetic set, so accuracy assertions
can fail: the baseline scores ~0.9 mAP50, the 0.5-pruned model scores ~0 before fine-tuning.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.models.validator import evaluate
from toolchain.models.loading import load_model
from toolchain.models.training import TrainConfig, finetune

FINETUNE_EPOCHS = 20  # make test-full: recovers to within MAX_MAP50_DROP of the baseline
MAX_MAP50_DROP = 0.03
QUICK_EPOCHS = 3  # make test: the same fine-tune, short; it must already recover most of the way
QUICK_MIN_MAP50 = 0.5


@pytest.fixture(scope="session")
def baseline_eval(baseline_pt, synth_data):
    return evaluate(str(baseline_pt), str(synth_data), imgsz=256)


@pytest.fixture(scope="session")
def finetuned50(pruned50, synth_data, session_tmp):
    pruned, _ = pruned50
    result = finetune(str(pruned), str(synth_data), session_tmp / "ft50", TrainConfig(epochs=FINETUNE_EPOCHS))
    return result


@pytest.fixture(scope="session")
def pruned50_eval(pruned50, synth_data):
    return evaluate(str(pruned50[0]), str(synth_data), imgsz=256)


def test_committed_baseline_really_detects_on_regenerated_data(baseline_eval, baseline_card):
    assert baseline_eval.map50 >= 0.8
    assert baseline_eval.map50 == pytest.approx(baseline_card["val"]["map50"], abs=0.01)
    assert {c.name for c in baseline_eval.per_class} == {"circle", "rectangle", "triangle"}


def test_pruned_checkpoint_predicts_validates_and_exports(pruned50, synth_data, tmp_path):
    import onnxruntime as ort
    from ultralytics import YOLO

    pruned, _ = pruned50
    model = YOLO(str(pruned))
    image = str(synth_data.parent / "images" / "val" / "val_00000.jpg")
    assert len(model.predict(image, imgsz=256, verbose=False)) == 1
    metrics = YOLO(str(pruned)).val(data=str(synth_data), imgsz=256, batch=16, plots=False, verbose=False,
                                    project=str(tmp_path), name="val")
    assert 0.0 <= metrics.box.map50 <= 1.0
    onnx_path = YOLO(str(pruned)).export(format="onnx", imgsz=256)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        torch_out = load_model(pruned).model(torch.from_numpy(x))[0].numpy()
    assert onnx_out.shape == torch_out.shape
    assert np.abs(onnx_out - torch_out).max() < 1e-3 * max(1.0, np.abs(torch_out).max())


@pytest.mark.full  # 59 s; make test keeps fine-tuning in test_distill and test_label_free
def test_short_finetune_keeps_architecture_and_recovers_most_accuracy(pruned50, pruned50_eval, synth_data, tmp_path):
    pruned, report = pruned50
    result = finetune(str(pruned), str(synth_data), tmp_path / "ft", TrainConfig(epochs=QUICK_EPOCHS))
    tuned = load_model(result.weights)
    assert sum(p.numel() for p in tuned.model.parameters()) == report.after.params
    tuned_eval = evaluate(result.weights, str(synth_data), imgsz=256)
    print(f"\nmAP50 pruned 0.5 {pruned50_eval.map50:.4f}, fine-tuned {QUICK_EPOCHS} epochs {tuned_eval.map50:.4f}")
    assert pruned50_eval.map50 < 0.2, "the pruned model should have lost its accuracy, or recovery proves nothing"
    assert tuned_eval.map50 >= QUICK_MIN_MAP50


@pytest.mark.full
def test_finetune_keeps_architecture_and_recovers_accuracy(pruned50, pruned50_eval, finetuned50, baseline_eval,
                                                           synth_data):
    pruned, report = pruned50
    pruned_eval = pruned50_eval
    tuned = load_model(finetuned50.weights)
    assert sum(p.numel() for p in tuned.model.parameters()) == report.after.params
    tuned_eval = evaluate(finetuned50.weights, str(synth_data), imgsz=256)
    print(f"\nmAP50 baseline {baseline_eval.map50:.4f}, pruned 0.5 {pruned_eval.map50:.4f}, "
          f"fine-tuned {FINETUNE_EPOCHS} epochs {tuned_eval.map50:.4f}")
    assert tuned_eval.map50 > pruned_eval.map50
    assert tuned_eval.map50 >= baseline_eval.map50 - MAX_MAP50_DROP
