"""Size and cost of a model: parameters, MACs, zero weights.

Why: pruning is only worth it if these move. MACs come from Torch-Pruning's counter at the
real input size. Latency is measured by the bench harness (:func:`targets.bench.measure_inference`),
never estimated, and reported with the conditions it was measured under.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelStats:
    """Parameter count and multiply-accumulates for one forward pass at ``input_shape``."""

    params: int
    macs: int
    input_shape: tuple[int, ...]

    def to_json(self) -> dict:
        return asdict(self)


def model_stats(model: nn.Module, example: torch.Tensor) -> ModelStats:
    """Count parameters and MACs of ``model`` on ``example`` (the model is not modified)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(copy.deepcopy(model).eval(), example)
    return ModelStats(int(params), int(macs), tuple(example.shape))


def zero_fraction(model: nn.Module) -> float:
    """Fraction of exactly-zero values among all weight tensors of conv and linear layers."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / total if total else 0.0
