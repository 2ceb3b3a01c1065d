"""Choose the torch device for training, fine-tuning and validation.

Why: users with a GPU must not be stuck on the CPU, and users without one must get one clear
sentence instead of a CUDA traceback from deep inside the trainer. ``auto`` takes the first
CUDA device when torch sees one, else the CPU; AMP is used on CUDA only (the Ultralytics
trainer's AMP check needs a GPU, and fp16 autocast on the CPU is slower).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from toolchain.core.errors import EdgepruneError

DEVICE_HELP = "Torch device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."


@dataclass(frozen=True)
class TorchDevice:
    """A resolved device: what was asked for, the Ultralytics ``device=`` value, and AMP."""

    requested: str
    ultralytics: str
    amp: bool

    @property
    def torch(self) -> str:
        return "cpu" if self.ultralytics == "cpu" else f"cuda:{self.ultralytics}"


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(spec: str = "auto") -> TorchDevice:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device this machine has.

    Raises:
        EdgepruneError: unknown spelling, or a CUDA device that is not present.
    """
    text = (spec or "auto").strip().lower()
    if text == "cpu":
        return TorchDevice(spec, "cpu", False)
    count = _cuda_count()
    if text == "auto":
        return TorchDevice(spec, "0", True) if count else TorchDevice(spec, "cpu", False)
    match = re.fullmatch(r"cuda(?::(\d+))?|(\d+)", text)
    if not match:
        raise EdgepruneError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    index = int(match.group(1) or match.group(2) or 0)
    if count == 0:
        raise EdgepruneError(
            f"--device {spec} asks for CUDA, but torch sees no CUDA device on this machine; use --device cpu or auto"
        )
    if index >= count:
        raise EdgepruneError(f"--device {spec} asks for CUDA device {index}, but this machine has {count} (0..{count - 1})")
    return TorchDevice(spec, str(index), True)


def cpu_threads() -> int:
    """Threads edgeprune runs torch CPU work with: every core this process may use.

    ``OMP_NUM_THREADS`` cannot say what the user wanted: importing Ultralytics sets it to 1
    when it is unset.
    """
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def open_yolo(source, task: str | None = None):
    """``ultralytics.YOLO(source)`` whose train/val/predict runs keep every CPU core.

    Why: Ultralytics' ``select_device`` sets torch to ``cores - 1`` threads on every CPU
    train, val and predict (``torch_utils.select_device``), which on a 2-core edge box or CI
    runner halves the cores (fine-tuning measured ~30 s/epoch instead of ~8 s here) and leaks
    into everything measured later in the same process. The callbacks run right after
    ``select_device`` and put the count back to :func:`cpu_threads`.
    """
    import torch
    from ultralytics import YOLO

    yolo = YOLO(source, task=task) if task else YOLO(source)
    threads = cpu_threads()

    def restore(_component) -> None:
        torch.set_num_threads(threads)

    for event in ("on_pretrain_routine_start", "on_train_start", "on_val_start", "on_predict_start", "on_export_end"):
        yolo.add_callback(event, restore)
    return yolo
