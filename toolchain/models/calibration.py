"""Real image batches from a YOLO data set, for criteria that need a loss.

Why: Taylor importance scores channels by ``|w * dL/dw|``; a dummy loss like ``out.sum()``
ranks channels by nothing in particular. We use Ultralytics' own dataset and loss on the
validation split (no augmentation), so scores reflect the detection task.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn


def yolo_batches(data_yaml: str, imgsz: int, batches: int, batch_size: int = 8) -> Iterator[dict]:
    """Yield up to ``batches`` preprocessed batches (``img`` in [0, 1]) of the val split."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(data_yaml)
    cfg = get_cfg(overrides={"imgsz": imgsz, "batch": batch_size, "workers": 0})
    dataset = build_yolo_dataset(cfg, data["val"], batch_size, data, mode="val")
    loader = build_dataloader(dataset, batch_size, workers=0, shuffle=False, pin_memory=False, device="cpu")
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        batch["img"] = batch["img"].float() / 255
        yield batch


def yolo_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Scalar Ultralytics training loss of ``model`` on ``batch`` (criterion built on demand).

    The model stays in eval mode so BatchNorm statistics are not disturbed by scoring.
    """
    from ultralytics.cfg import get_cfg

    args = getattr(model, "args", None) or {}
    if not hasattr(args, "box"):  # checkpoints keep args as a dict; the loss reads attributes
        model.args = get_cfg(overrides={k: v for k, v in dict(args).items() if k in ("box", "cls", "dfl", "pose", "kobj")})
    model.criterion = None  # rebuilt: channel counts may have changed since the last call
    loss, _ = model.loss(batch)
    return loss.sum()
