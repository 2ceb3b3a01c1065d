"""Channel-importance criteria, registered by name.

Why: the CLI's ``--method`` and the sweep pick a criterion by string; a registry keeps the
mapping in one place and lets a new criterion be one decorated function. Each entry returns
a Torch-Pruning importance object (a callable ``group -> scores``), so the pruner itself
never changes when a criterion is added.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch_pruning as tp

from toolchain.core.errors import EdgepruneError

_REGISTRY: dict[str, Callable[[], object]] = {}
_NEEDS_GRADIENTS: set[str] = set()


def register_importance(name: str, needs_gradients: bool = False):
    """Decorator: register a zero-argument factory of a Torch-Pruning importance under ``name``."""

    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"importance {name!r} registered twice")
        _REGISTRY[name] = factory
        if needs_gradients:
            _NEEDS_GRADIENTS.add(name)
        return factory

    return wrap


def list_importances() -> list[str]:
    """Names accepted by :func:`create_importance`, sorted."""
    return sorted(_REGISTRY)


def needs_gradients(name: str) -> bool:
    """True when the criterion scores channels from gradients of a loss (needs data)."""
    return name in _NEEDS_GRADIENTS


def create_importance(name: str):
    """Build the importance called ``name``; unknown names list the known ones."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise EdgepruneError(f"unknown pruning method {name!r}; choose one of {', '.join(list_importances())}") from None


@register_importance("l1")
def _l1():
    """Sum of |w| over the group: the classic filter-norm criterion."""
    return tp.importance.MagnitudeImportance(p=1)


@register_importance("l2")
def _l2():
    return tp.importance.MagnitudeImportance(p=2)


@register_importance("lamp")
def _lamp():
    """Layer-adaptive magnitude: normalises scores per layer, useful with --global."""
    return tp.importance.LAMPImportance(p=2)


@register_importance("bn")
def _bn_scale():
    """|gamma| of BatchNorm (network slimming); best after sparsity training."""
    return tp.importance.BNScaleImportance()


@register_importance("taylor", needs_gradients=True)
def _taylor():
    """First-order Taylor |w * dL/dw|; needs a loss on real images (``--data``)."""
    return tp.importance.GroupTaylorImportance()


@register_importance("random")
def _random():
    """Random scores: the baseline every criterion must beat."""
    return tp.importance.RandomImportance()


class TieBroken(tp.importance.Importance):
    """An importance whose equal scores are made distinct, for global ranking.

    Why: Torch-Pruning's global ranking removes every channel scoring ``<=`` the k-th smallest
    score in the network. After ``sparsify`` thousands of BatchNorm scales are exactly 0, so the
    k-th smallest is 0 for every ratio below their share, and ``prune --global --ratio 0.1`` of a
    yolov8n sparsified for 0.7 removed 73 % of its channels, the same as 0.7. Each score gets a
    fixed offset by (module, channel) position (``STEP`` per place: about 1e-6 at most in a
    yolov8n), so ties are ordered by where the channel sits and scores that differ by more than
    that keep their order; the offsets depend on the position alone, so a plan and the prune that
    follows it (and repeated calls on one group) agree.
    """

    STEP = 1e-12
    WIDTH = 4096  # channels per module before two modules' offsets could meet

    def __init__(self, importance, model):
        self.importance = importance
        self.position = {id(m): i for i, m in enumerate(model.modules())}

    def __call__(self, group, *args, **kwargs):
        scores = self.importance(group, *args, **kwargs)
        if scores is None:
            return None
        layer = self.position.get(id(group[0].dep.target.module), 0)
        channel = torch.arange(scores.numel(), device=scores.device, dtype=torch.float64)
        return scores + ((layer * self.WIDTH + channel) * self.STEP).to(scores.dtype).view_as(scores)
