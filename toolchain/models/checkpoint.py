"""Write models in the formats their users already load.

Why: a pruned model that ``YOLO("pruned.pt")`` cannot open is useless, and a checkpoint that
needs the pruning tool's own classes is the usual way to get one. Ultralytics models are saved as regular Ultralytics checkpoints (the module object
in ``model``, train args kept, fp16 like the trainer saves); plain modules are pickled whole.
Both are written atomically.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

import torch

from toolchain.core.fileio import atomic_output, require_space
from toolchain.models.loading import LoadedModel


def _train_args(loaded: LoadedModel, module: torch.nn.Module) -> dict:
    """The source's train_args, with the task Ultralytics reads to pick its predictor/validator.

    ``YOLO(path)`` takes the task from ``train_args`` (default ``detect``), so a segment or
    classify checkpoint saved without it would be run as a detector.
    """
    from ultralytics.nn.tasks import guess_model_task

    args = dict(loaded.ckpt.get("train_args") or {})
    args["task"] = loaded.task if loaded.task != "module" else guess_model_task(module)
    return args


def save_model(loaded: LoadedModel, model: torch.nn.Module, out: str | Path, note: dict | None = None) -> Path:
    """Save ``model`` (derived from ``loaded``) to ``out`` in the same format it came in.

    Args:
        loaded: the source model, whose checkpoint metadata is carried over.
        model: the module to save (not modified).
        out: destination ``.pt`` path.
        note: what edgeprune did, stored under the ``edgeprune`` key of Ultralytics checkpoints.
    """
    module = copy.deepcopy(model).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if loaded.is_yolo:
        import ultralytics

        if hasattr(module, "criterion"):
            module.criterion = None
        payload = {
            "date": datetime.now(timezone.utc).isoformat(),
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "epoch": -1,
            "best_fitness": None,
            "model": module.half(),
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": _train_args(loaded, module),
            "train_metrics": loaded.ckpt.get("train_metrics"),
            "edgeprune": note or {},
        }
    else:
        payload = module
    # at least the weights in half precision: refused before anything is written where they cannot fit
    require_space(out, 2 * sum(p.numel() for p in module.parameters()), "the checkpoint")
    with atomic_output(out) as tmp:
        torch.save(payload, tmp)
    return Path(out)
