"""What pruning must never change in an Ultralytics model: the task's output contract.

Why: a pruned detector is only a drop-in replacement if it still predicts the same things —
the class count, the box encoding (DFL bins or YOLO26's direct boxes), keypoints, mask
coefficients and prototypes, OBB angles, a classifier's logits. Those are produced by the
head's final prediction layers, which are protected here; everything else (the head's inner
convs included) may lose channels. :func:`contract_shapes` is the check that the contract held.

Training-only branches (YOLO26's semantic-segmentation auxiliary head inside ``Proto26``) do
not run in eval mode, so Torch-Pruning would not see that they consume the features it
prunes; :func:`trace_training_branches` switches just those modules to their training path
while the graph is traced.
"""

from __future__ import annotations

import contextlib

import torch
import torch_pruning as tp
from torch import nn

from toolchain.core.errors import UnsupportedModelError

# Ultralytics modules edgeprune cannot prune yet (transformer encoders/decoders with fixed
# embedding sizes); a model containing one is refused, naming the first.
UNPRUNABLE = ("AIFI", "RTDETRDecoder", "TransformerLayer", "TransformerBlock", "MSDeformAttn", "WorldDetect",
              "YOLOEDetect", "YOLOESegment", "LRPCHead", "ImagePoolingAttn", "ContrastiveHead", "BNContrastiveHead")

# Attention blocks reshape channels into heads of fixed size: their convs keep their widths.
_ATTENTION = ("Attention", "AAttn")
# Blocks whose cv1 output is split into an attention half; the split itself stays unpruned.
_SPLIT_ATTENTION = ("C2PSA", "PSA", "C2fPSA")


def first_unprunable(model: nn.Module) -> tuple[int, str] | None:
    """(layer index, class name) of the first module edgeprune cannot prune, or None."""
    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential):
        return None
    for index, layer in enumerate(layers):
        for m in layer.modules():
            if type(m).__name__ in UNPRUNABLE:
                return index, type(m).__name__
    return None


def check_prunable(model: nn.Module, path: str) -> None:
    """Raise a one-sentence :class:`UnsupportedModelError` for models with unprunable modules."""
    found = first_unprunable(model)
    if found:
        index, name = found
        raise UnsupportedModelError(
            f"{path} contains {name} (layer {index}), which edgeprune cannot prune "
            "(transformer/text-embedding modules have fixed widths); RT-DETR, YOLO-World and YOLOE are not supported"
        )


def _prediction_conv(branch: nn.Module) -> nn.Conv2d | None:
    """The bare ``nn.Conv2d`` a head branch ends in (the prediction layer), else None.

    A branch that ends in an Ultralytics ``Conv`` block (conv + BN + act) is an inner layer
    feeding another prediction conv (e.g. YOLO26 pose: ``cv4`` feeds ``cv4_kpts``).
    """
    while isinstance(branch, nn.Sequential) and len(branch):
        branch = branch[-1]
    return branch if type(branch) is nn.Conv2d else None


def _head_prediction_layers(head: nn.Module) -> list[nn.Module]:
    found: list[nn.Module] = []
    for child in head.children():
        branches = child if isinstance(child, nn.ModuleList) else [child] if isinstance(child, nn.Sequential) else []
        for branch in branches:
            conv = _prediction_conv(branch)
            if conv is not None:
                found.append(conv)
    dfl = getattr(head, "dfl", None)
    if isinstance(dfl, nn.Module):
        found.extend(x for x in dfl.modules() if isinstance(x, nn.Conv2d))
    proto = getattr(head, "proto", None)
    if isinstance(proto, nn.Module):  # mask prototypes: nm channels; YOLO26 semseg: nc channels
        found.append(proto.cv3.conv)
        found.extend(_head_prediction_layers(proto))
    return found


def protected_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels keep their count in an Ultralytics model (see module doc)."""
    from ultralytics.nn.modules.head import Classify, Detect

    protected: list[nn.Module] = []
    for m in model.modules():
        name = type(m).__name__
        if isinstance(m, Detect):
            protected.extend(_head_prediction_layers(m))
        elif isinstance(m, Classify):
            protected.append(m.linear)
        elif name in _ATTENTION:
            protected.extend(x for x in m.modules() if isinstance(x, nn.Conv2d))
        elif name in _SPLIT_ATTENTION:
            protected.append(m.cv1.conv)
    return protected


def heads(model: nn.Module) -> list[nn.Module]:
    """The task heads (``Detect`` and its Segment/Pose/OBB/v10 subclasses, ``Classify``) of an Ultralytics model."""
    from ultralytics.nn.modules.head import Classify, Detect

    return [m for m in model.modules() if isinstance(m, (Detect, Classify))]


def flat_tensors(out) -> list[torch.Tensor]:
    """All tensors in a nested model output (tuples, lists, dicts)."""
    return tp.utils.flatten_as_list(out)


def inference_outputs(out):
    """The part of an Ultralytics eval output that users consume (not the head's input feats)."""
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict):
        return out[0]
    return out


def contract_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Shapes of the tensors a user gets from ``model(x)`` in eval mode."""
    with torch.no_grad():
        return [tuple(t.shape) for t in flat_tensors(inference_outputs(model(x)))]


@contextlib.contextmanager
def trace_training_branches(model: nn.Module):
    """Run training-only branches (``Proto26.semseg``) while the dependency graph is traced.

    Only the ``training`` flag of those modules is set (not recursively), so their BatchNorm
    layers stay in eval mode and no statistic moves.
    """
    switched = [m for m in model.modules() if type(m).__name__ == "Proto26" and getattr(m, "semseg", None) is not None]
    for m in switched:
        m.training = True
    try:
        yield
    finally:
        for m in switched:
            m.training = False
