"""Distillation: the loss is zero when the student already predicts what the teacher does, pulls it there
otherwise, and fine-tuning with it keeps checkpoints stock."""

from __future__ import annotations

import csv

import pytest
import torch

from toolchain.models.distill import kd_terms, load_teacher
from toolchain.core.errors import ModelMismatchError


def _head(boxes, scores):
    return {"boxes": boxes, "scores": scores}


def test_kd_is_zero_at_agreement_and_its_gradient_moves_the_student_to_the_teacher():
    gen = torch.Generator().manual_seed(0)
    teacher = _head(torch.randn(2, 64, 50, generator=gen), torch.randn(2, 3, 50, generator=gen) - 2)
    cls, box = kd_terms(teacher, teacher, reg_max=16)
    assert abs(float(cls)) < 1e-5 and abs(float(box)) < 1e-5
    student = _head(torch.zeros(2, 64, 50, requires_grad=True), torch.zeros(2, 3, 50, requires_grad=True))
    cls, box = kd_terms(student, teacher, reg_max=16)
    assert float(cls) > 0.1 and float(box) > 0.01
    (cls + box).backward()
    step = {k: student[k] - 10.0 * student[k].grad for k in ("boxes", "scores")}
    after_cls, after_box = kd_terms(_head(step["boxes"].detach(), step["scores"].detach()), teacher, reg_max=16)
    assert float(after_cls) < float(cls) and float(after_box) < float(box)
    no_dfl = kd_terms(_head(torch.zeros(1, 4, 9), torch.zeros(1, 3, 9)), _head(torch.ones(1, 4, 9),
                                                                                  torch.zeros(1, 3, 9)), reg_max=1)
    assert float(no_dfl[1]) > 0  # heads without DFL (YOLO26): L1 on the raw boxes


def test_a_teacher_with_other_classes_is_refused(random_yolo, baseline_pt):
    from toolchain.models.loading import load_model

    with pytest.raises(ModelMismatchError, match="its classes is 5, the model's 3"):
        load_teacher(random_yolo("yolov8n.yaml", nc=5), load_model(baseline_pt).model)


@pytest.mark.slow
def test_finetune_distils_from_the_recorded_source_and_saves_a_stock_checkpoint(pruned50, small_data, tmp_path,
                                                                               reload_without_edgeprune, baseline_pt):
    from toolchain.models.training import TrainConfig, finetune

    pruned, _ = pruned50
    result = finetune(str(pruned), str(small_data), tmp_path / "ft", TrainConfig(epochs=1, imgsz=256, batch=16,
                                                                                workers=0))
    assert result.teacher == str(baseline_pt.resolve()) and "distilling from" in result.notes[0]
    with open(tmp_path / "ft" / "results.csv") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["train/kd_loss"]) > 0 and float(row["val/kd_loss"]) > 0
    assert reload_without_edgeprune(result.weights, 256)["results"] == 1
    # one optimizer step per batch (Ultralytics would accumulate to 64 images: 1 step in this epoch, not 4)
    assert torch.load(result.weights, weights_only=False)["train_args"]["nbs"] == 16
