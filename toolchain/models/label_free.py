"""Recovery without labels: the pruned model learns to give the unpruned model's outputs on any images.

Why: a user who prunes always has the model they started from, and often not the labels it was
trained on (a vendor's model, a data set that cannot leave the site). Any folder of images from
the deployment is enough for the pruned model to learn its teacher's outputs again.

How, for every model source alike: both models run in eval mode (BatchNorm keeps the statistics
it has; the student's weights train), and the loss is the mean squared difference of every output
tensor the two share in shape — the decoded predictions and raw head maps, which pruning keeps;
internal feature maps a model also returns have fewer channels in the student and are left out —
each divided by the teacher's own variance, so that boxes in pixels and probabilities weigh the same. Images are
fitted into the input as the model was trained (its source's ``resize``), with left-right flips.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from toolchain.core.errors import InputFileError
from toolchain.core.fileio import atomic_output, staged_folder
from toolchain.core.prepost import fit, to_input
from toolchain.core.progress import advance, step
from toolchain.models.contract import flat_tensors
from toolchain.models.training import TrainResult

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_IMAGES = 8


@dataclass(frozen=True)
class DistillEpoch:
    """One epoch of label-free distillation: the mean loss (relative to the teacher's output variance)."""

    epoch: int
    distillation_loss: float


@dataclass(frozen=True)
class LabelFreeConfig:
    """How to distil: ``epochs`` over the images, ``batch`` images a step, AdamW at ``lr``, ``seed`` the order."""

    epochs: int = 15
    batch: int = 16
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"


def image_folder(folder: str | Path) -> list[Path]:
    """The images in ``folder`` (recursively), sorted; labels, if any, are not read.

    Raises:
        InputFileError: not a folder, or fewer than :data:`MIN_IMAGES` images in it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"--images {folder} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < MIN_IMAGES:
        raise InputFileError(f"--images {folder} holds {len(files)} images; label-free distillation needs at least "
                             f"{MIN_IMAGES}")
    return files


def _batches(files: list[Path], input_hw: tuple[int, int], resize: str, batch: int, rng: random.Random):
    order = files[:]
    rng.shuffle(order)
    for start in range(0, len(order), batch):
        fitted = []
        for path in order[start:start + batch]:
            image = cv2.imread(str(path))
            if image is None:
                raise InputFileError(f"image {path} cannot be read")
            padded, _box = fit(image, input_hw, resize)
            fitted.append(padded[:, ::-1] if rng.random() < 0.5 else padded)
        yield torch.from_numpy(to_input([np.ascontiguousarray(f) for f in fitted]))


def shared_outputs(student_outputs, teacher_outputs) -> list[int]:
    """Indices of the outputs both models give in the same shape (the contract pruning keeps)."""
    return [i for i, (s, t) in enumerate(zip(student_outputs, teacher_outputs)) if s.shape == t.shape]


def distillation_loss(student_outputs, teacher_outputs, shared: list[int]) -> torch.Tensor:
    """Mean over the shared outputs of MSE(student, teacher) / var(teacher): every output counts alike."""
    terms = [torch.mean((student_outputs[i].float() - teacher_outputs[i].float()) ** 2)
             / teacher_outputs[i].float().var().clamp_min(1e-6) for i in shared]
    return torch.stack(terms).mean()


def distil(student: nn.Module, teacher: nn.Module, files: list[Path], input_hw: tuple[int, int], resize: str,
           cfg: LabelFreeConfig, on_epoch: Callable[[int, float], None] | None = None) -> nn.Module:
    """Train ``student`` (in place) to give ``teacher``'s outputs on ``files``; returns it in eval mode."""
    device = torch.device(cfg.device)
    teacher = teacher.float().eval().to(device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = student.float().eval().to(device)
    for p in student.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        probe = torch.zeros(1, 3, *input_hw, device=device)
        shared = shared_outputs(flat_tensors(student(probe)), flat_tensors(teacher(probe)))
    if not shared:
        raise InputFileError("the student and the teacher share no output of the same shape: distil from the model "
                             "this one was pruned from")
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    steps = cfg.epochs * -(-len(files) // cfg.batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        started, total, count = time.perf_counter(), 0.0, 0
        step(f"label-free distillation, epoch {epoch + 1}/{cfg.epochs}")
        for i, x in enumerate(_batches(files, input_hw, resize, cfg.batch, rng)):
            x = x.to(device)
            with torch.no_grad():
                target = flat_tensors(teacher(x))
            loss = distillation_loss(flat_tensors(student(x)), target, shared)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, count = total + float(loss.detach()), count + 1
            advance(min((i + 1) * cfg.batch, len(files)), len(files))
        if on_epoch:
            on_epoch(epoch + 1, total / max(count, 1))
        step(f"epoch {epoch + 1}: distillation loss {total / max(count, 1):.4f} ({time.perf_counter() - started:.0f} s)")
    for p in student.parameters():
        p.requires_grad_(False)
    return student.eval().cpu()


def recover(student: nn.Module, teacher: nn.Module, images: str | Path, out: str | Path, input_hw: tuple[int, int],
            resize: str, cfg: LabelFreeConfig, save: Callable[[nn.Module, Path], Path], teacher_name: str,
            on_epoch: Callable[[DistillEpoch], None] | None = None):
    """Distil on the images of ``images`` into the run folder ``out`` (``OUT/weights/best.pt`` via ``save``, the
    source's own format; ``OUT/results.csv`` one loss per epoch), staged so a failed run leaves nothing.

    Returns a :class:`toolchain.models.training.TrainResult` (mAP None: no labels were used).
    """
    files = image_folder(images)
    losses: list[tuple[int, float]] = []

    def record(epoch: int, loss: float) -> None:
        losses.append((epoch, loss))
        if on_epoch:
            on_epoch(DistillEpoch(epoch, loss))

    out = Path(out).resolve()
    with staged_folder(out, replace=False) as stage:
        trained = distil(student, teacher, files, input_hw, resize, cfg, record)
        (stage / "weights").mkdir(parents=True, exist_ok=True)
        weights = save(trained, stage / "weights" / "best.pt")
        with atomic_output(stage / "results.csv", suffix=".csv") as tmp:
            tmp.write_text("epoch,distillation_loss\n" + "".join(f"{e},{v:.6g}\n" for e, v in losses))
    return TrainResult(str(out / "weights" / Path(weights).name), str(out), cfg.epochs, None, None,
                       sum(p.numel() for p in trained.parameters()), teacher=teacher_name,
                       notes=(f"label-free distillation from {teacher_name} on {len(files)} images of {images} "
                              "(no labels used)",))
