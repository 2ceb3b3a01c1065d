"""Fine-tuning a YOLOv5/YOLOv7 repository model on labels with the repository's own loss.

Why not the repositories' ``train.py``: it rebuilds the network from the yaml the checkpoint keeps
(``--weights`` loads the state dict into the *unpruned* widths), so a pruned model cannot go
through it. Here the checkpoint's own module trains, and the loss is the repository's
``utils.loss.ComputeLoss`` (importable once the repository is, see
:func:`toolchain.models.sources.yolo_repo.use_repository`), so boxes, objectness and classes are
weighed as the model was trained. What is ours: the images (letterboxed as evaluation fits them,
left-right flips), SGD with nesterov momentum and a cosine learning rate, no mosaic.

The loss's hyper-parameters are the model's own ``hyp`` when ``train.py`` left one on it, else the
repositories' ``hyp.scratch-low`` gains scaled as ``train.py`` scales them (by the number of
detection layers, classes and image size).
"""

from __future__ import annotations

import importlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from toolchain.core.errors import InputFileError, UnsupportedModelError
from toolchain.core.prepost import letterbox, to_input
from toolchain.core.progress import advance, step
from toolchain.models.imagedata import image_files, read_labels

# The loss gains of the repositories' hyp.scratch-low.yaml (YOLOv5) at 640 px, 80 classes, 3 layers.
SCRATCH_LOW = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0,
               "label_smoothing": 0.0}


@dataclass(frozen=True)
class RepoTrainConfig:
    """How to fine-tune: ``epochs`` over the train split, ``batch`` images a step, SGD from ``lr0`` (cosine to 1 %)."""

    imgsz: int
    epochs: int = 15
    batch: int = 16
    lr0: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "cpu"


def loss_gains(model: nn.Module, head: nn.Module, imgsz: int) -> tuple[dict, str]:
    """The loss's hyper-parameters and where they come from."""
    own = getattr(model, "hyp", None)
    if isinstance(own, dict) and {"box", "obj", "cls", "anchor_t"} <= set(own):
        return {**SCRATCH_LOW, **own}, "the hyper-parameters train.py left on the model"
    layers = 3 / int(head.nl)
    hyp = {**SCRATCH_LOW, "box": SCRATCH_LOW["box"] * layers, "cls": SCRATCH_LOW["cls"] * int(head.nc) / 80 * layers,
           "obj": SCRATCH_LOW["obj"] * (imgsz / 640) ** 2 * layers}
    return hyp, "hyp.scratch-low's gains, scaled as train.py scales them (the model carries no hyp)"


def _targets(files: list[Path], imgsz: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch: letterboxed images (half flipped) and targets ``(n, 6)``: image, class, x, y, w, h (0-1)."""
    images, rows = [], []
    for i, path in enumerate(files):
        image = cv2.imread(str(path))
        if image is None:
            raise InputFileError(f"image {path} cannot be read")
        canvas, box = letterbox(image, imgsz)
        classes, xyxy = read_labels(path, image.shape[:2])
        xyxy = xyxy * np.array([box.scale_x, box.scale_y] * 2, np.float32) + np.array([box.pad_x, box.pad_y] * 2,
                                                                                        np.float32)
        if rng.random() < 0.5:
            canvas = np.ascontiguousarray(canvas[:, ::-1])
            xyxy = np.stack([imgsz - xyxy[:, 2], xyxy[:, 1], imgsz - xyxy[:, 0], xyxy[:, 3]], 1)
        xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1) / imgsz
        rows.append(np.concatenate([np.full((len(classes), 1), i), classes[:, None], xywh], 1))
        images.append(canvas)
    return torch.from_numpy(to_input(images)), torch.from_numpy(np.concatenate(rows, 0).astype(np.float32))


def train_on_labels(model: nn.Module, head: nn.Module, data: str, cfg: RepoTrainConfig,
                    on_epoch: Callable[[int, float], None] | None = None) -> tuple[nn.Module, list[str]]:
    """Train ``model`` (in place, its widths kept) on ``data``'s train split with the repository's loss.

    Returns the model (eval mode, on the CPU, gradients off) and notes on how it was trained.

    Raises:
        UnsupportedModelError: the repository has no ``utils.loss.ComputeLoss``, or the head is
            YOLOv7's auxiliary ``IAuxDetect`` (its loss assigns targets with the images, OTA).
    """
    if type(head).__name__ == "IAuxDetect":
        raise UnsupportedModelError("YOLOv7's IAuxDetect head trains with the repository's OTA loss on the images; "
                                    "fine-tune it without labels (--images DIR)")
    try:
        compute_loss = importlib.import_module("utils.loss").ComputeLoss
    except (ImportError, AttributeError):
        raise UnsupportedModelError("the repository given with --repo has no utils.loss.ComputeLoss to train with") from None
    hyp, why = loss_gains(model, head, cfg.imgsz)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    device = torch.device(cfg.device)
    model = model.to(device).train()
    model.hyp, model.gr = hyp, 1.0
    for p in model.parameters():
        p.requires_grad_(True)
    criterion = compute_loss(model)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr0, momentum=cfg.momentum,
                                nesterov=True)
    files = image_files(data, "train")
    steps = cfg.epochs * math.ceil(len(files) / cfg.batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.01 + 0.99 * (1 + math.cos(math.pi * i / steps)) / 2)
    for epoch in range(cfg.epochs):
        started, total, count = time.perf_counter(), 0.0, 0
        order = files[:]
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch):
            images, targets = _targets(order[start:start + cfg.batch], cfg.imgsz, rng)
            loss, _items = criterion(model(images.to(device)), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            schedule.step()
            total, count = total + float(loss.detach()) / len(images), count + 1
            advance(min(start + cfg.batch, len(order)), len(order))
        if on_epoch:
            on_epoch(epoch + 1, total / max(count, 1))
        step(f"epoch {epoch + 1}: loss {total / max(count, 1):.4f} ({time.perf_counter() - started:.0f} s)")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().cpu(), [f"trained on {data}'s labels with the repository's own loss (utils.loss.ComputeLoss), "
                                f"{why}; SGD from lr0 {cfg.lr0}, cosine, letterbox + flips, no mosaic"]
