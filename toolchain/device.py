"""Choose the torch device for training, fine-tuning and validation.

Why: users with a GPU must not be stuck on the CPU, and users without one must get one clear
sentence instead of a CUDA traceback from deep inside the trainer. ``auto`` takes the first
CUDA device when torch sees one, else the CPU; AMP is used on CUDA only (the Ultralytics
trainer's AMP check needs a GPU, and fp16 autocast on the CPU is slower).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from toolchain.errors import EdgepruneError

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
