"""L1 unstructured (weight-level) pruning, made permanent, reported honestly.

Why offer it at all: it is what most write-ups try first (one zeroed 22% of the weights and
went from 67.35 ms to 67.79 ms). Zeros shrink the *compressed* file but not the dense tensors, and
dense runtimes multiply zeros like any other number, so latency does not improve. We do it
properly (global L1, masks removed so the zeros are real) and print that lesson with the
measured numbers, so users can see it for themselves.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import prune as torch_prune

from toolchain.core.errors import PruningError

DENSE_RUNTIME_NOTE = (
    "Unstructured pruning sets weights to zero but keeps every tensor dense: the file compresses "
    "better, yet dense runtimes (PyTorch, ONNX Runtime, OpenVINO CPU) do the same work, so latency "
    "does not drop. Use structured pruning (without --unstructured) to get faster."
)


def prune_unstructured(model: nn.Module, ratio: float, protected: list[nn.Module] = ()) -> nn.Module:
    """Zero the ``ratio`` smallest-|w| weights across all conv/linear layers of a copy of ``model``.

    Layers in ``protected`` (a detector's DFL, say) are left alone. The pruning masks are
    folded into the weights, so the result is an ordinary module.
    """
    if not 0.0 < ratio < 1.0:
        raise PruningError(f"pruning ratio must be between 0 and 1 (exclusive), got {ratio}")
    pruned = copy.deepcopy(model)
    skip = {name for name, m in model.named_modules() if any(m is p for p in protected)}
    params = [
        (m, "weight")
        for name, m in pruned.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and name not in skip
    ]
    if not params:
        raise PruningError("the model has no conv or linear layers to prune")
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=ratio)
    for module, name in params:
        torch_prune.remove(module, name)
    return pruned
