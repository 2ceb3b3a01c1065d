"""Knowledge distillation while fine-tuning a pruned model: the unpruned model teaches its own head outputs.

Why: a pruned model fine-tuned on labels alone recovers less at high ratios than one that also
matches what its unpruned self predicts for every anchor (the teacher's class probabilities
and box distributions carry more than the sparse labels). The teacher is the checkpoint the
model was pruned from (recorded by ``prune``), so the loss is defined on the same anchors,
strides and classes.

How: :class:`DistillLoss` wraps the task's own Ultralytics criterion, installed on the trained
model (and its EMA) by a trainer callback; the loss becomes the task loss plus
``weight * (cls_gain * KD_cls + dfl_gain * KD_box)`` with Ultralytics' own gains and
normalisation (by the teacher's summed confidence, as the task loss divides by its target
score sum). KD_cls is the KL divergence of the student's per-class probabilities from the
teacher's (binary cross-entropy minus the teacher's entropy, so 0 when they agree); KD_box is the KL divergence of the DFL bin distributions (L1 of the
raw boxes for heads without DFL, e.g. YOLO26), weighted per anchor by the teacher's confidence.
Ultralytics strips ``criterion`` before saving, so checkpoints stay stock.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from toolchain.core.errors import ModelMismatchError
from toolchain.core.fileio import sha256_of
from toolchain.models.loading import load_model

KD_NAME = "kd_loss"


def _head_outputs(preds) -> dict:
    """The raw head dict (``boxes``, ``scores``) from a model's training or eval output; one-to-many when both."""
    if isinstance(preds, (tuple, list)):
        preds = preds[1]
    if "one2many" in preds:
        preds = preds["one2many"]
    return preds


def kd_terms(student: dict, teacher: dict, reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(class KD, box KD) of one batch, each normalised by the teacher's summed confidence."""
    t_prob = teacher["scores"].float().sigmoid()  # (B, nc, A)
    s_scores = student["scores"].float()
    confidence = t_prob.max(1).values  # (B, A): where the teacher sees an object
    norm = confidence.sum().clamp_min(1.0)
    t_scores = teacher["scores"].float()
    # KL divergence of the per-class Bernoullis: cross-entropy minus the teacher's own entropy (0 when they agree)
    cls = (F.binary_cross_entropy_with_logits(s_scores, t_prob, reduction="sum")
           - F.binary_cross_entropy_with_logits(t_scores, t_prob, reduction="sum")) / t_prob.sum().clamp_min(1.0)
    s_box, t_box = student["boxes"].float(), teacher["boxes"].float()
    b, _, a = s_box.shape
    if reg_max > 1:
        s_log = F.log_softmax(s_box.view(b, 4, reg_max, a), 2)
        t_p = F.softmax(t_box.view(b, 4, reg_max, a), 2)
        per_anchor = (t_p * (torch.log(t_p.clamp_min(1e-9)) - s_log)).sum(2).mean(1)  # (B, A)
    else:
        per_anchor = (s_box - t_box).abs().mean(1)
    box = (per_anchor * confidence).sum() / norm
    return cls, box


class DistillLoss:
    """A task criterion plus distillation from ``teacher`` (same task, classes, strides and input size).

    Args:
        criterion: the model's own Ultralytics criterion (``model.init_criterion()``).
        teacher: the unpruned model, float, eval mode, frozen.
        weight: scale of the distillation term against the task loss (1 = the task's own gains).
    """

    def __init__(self, criterion, teacher: nn.Module, weight: float = 1.0):
        self.criterion, self.teacher, self.weight = criterion, teacher, weight
        head = teacher.model[-1]
        self.reg_max = int(getattr(head, "reg_max", 16))

    def __getattr__(self, name):  # loss_names, hyp, update... of the wrapped criterion
        if name.startswith("__") or name == "criterion":  # copy/pickle probe a blank instance: no recursion
            raise AttributeError(name)
        return getattr(self.criterion, name)

    def __call__(self, preds, batch):
        loss, items = self.criterion(preds, batch)
        images = batch["img"]
        teacher = self.teacher
        if next(teacher.parameters()).device != images.device:
            teacher.to(images.device)
        with torch.no_grad():
            t_out = _head_outputs(teacher(images.float() if images.dtype != torch.float32 else images))
        cls, box = kd_terms(_head_outputs(preds), t_out, self.reg_max)
        hyp = self.criterion.hyp
        kd = self.weight * (float(getattr(hyp, "cls", 0.5)) * cls + float(getattr(hyp, "dfl", 1.5)) * box)
        loss = torch.cat([loss.view(-1), (kd * images.shape[0]).view(1).to(loss.dtype)])
        return loss, {**items, KD_NAME: kd.detach()}


def load_teacher(path: str | Path, student: nn.Module) -> nn.Module:
    """The teacher model of ``path``, checked against ``student`` (task head, classes, strides, DFL bins).

    Raises:
        ModelMismatchError: a teacher whose head does not produce the student's outputs.
    """

    teacher = load_model(path).model.float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    s_head, t_head = student.model[-1], teacher.model[-1]
    checks = [("head", type(s_head).__name__, type(t_head).__name__), ("classes", s_head.nc, t_head.nc),
              ("strides", s_head.stride.tolist(), t_head.stride.tolist()),
              ("DFL bins", getattr(s_head, "reg_max", None), getattr(t_head, "reg_max", None))]
    for what, mine, theirs in checks:
        if mine != theirs:
            raise ModelMismatchError(f"teacher {path} cannot teach this model: its {what} is {theirs}, the model's "
                                     f"{mine}; distil from the model it was pruned from")
    return teacher


def install(trainer, teacher: nn.Module, weight: float) -> None:
    """Trainer callback body: wrap the criterion of the trained model and of its EMA."""
    from ultralytics.utils.torch_utils import unwrap_model

    for model in (unwrap_model(trainer.model), getattr(getattr(trainer, "ema", None), "ema", None)):
        if model is not None:
            model.criterion = DistillLoss(model.init_criterion(), teacher, weight)


def recorded_teacher(loaded) -> tuple[str | None, str]:
    """The unpruned checkpoint a pruned one records (``prune``'s note), if it still exists unchanged; and why not."""

    note = loaded.ckpt.get("edgeprune") or {}
    source, digest = note.get("source"), note.get("source_sha256")
    if not source:
        return None, f"{loaded.path} records no unpruned source (not made by `edgeprune prune`)"
    if not Path(source).is_file():
        return None, f"the unpruned source {source} recorded in {loaded.path} is not here"
    if digest and sha256_of(source) != digest:
        return None, f"the unpruned source {source} changed since {loaded.path} was pruned from it"
    return source, f"distilling from {source}, the model {loaded.path} was pruned from"
