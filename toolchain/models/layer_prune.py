"""Layer pruning: drop whole residual units (Ultralytics ``Bottleneck`` with a shortcut).

Why: channel pruning shrinks every layer but keeps the depth, so latency on runtimes bound by
per-layer overhead barely moves; cutting whole residual units after channel pruning speeds up
every runtime. A residual unit computes ``x + f(x)``; replacing it by
``torch.nn.Identity`` leaves ``x``, so shapes and the enclosing block's concat width stay the
same. Units are ranked by the BatchNorm gamma of the unit's last conv (mean
|gamma|): a unit whose output BN is near zero adds almost nothing to ``x``. The result holds
only stock Ultralytics and torch classes, so plain ``YOLO("out.pt")`` loads it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

from torch import nn

from toolchain.core.errors import PruningError


@dataclass(frozen=True)
class ResidualUnit:
    """One removable unit: its module path and its importance (mean |gamma| of its last BN)."""

    name: str
    score: float

    def to_json(self) -> dict:
        return asdict(self)


def _is_residual(module: nn.Module) -> bool:
    from ultralytics.nn.modules.block import Bottleneck

    return isinstance(module, Bottleneck) and bool(getattr(module, "add", False))


def residual_units(model: nn.Module) -> list[ResidualUnit]:
    """Every shortcut ``Bottleneck`` of ``model``, least important first."""
    units = [ResidualUnit(name, float(m.cv2.bn.weight.detach().abs().mean()))
             for name, m in model.named_modules() if _is_residual(m)]
    return sorted(units, key=lambda u: (u.score, u.name))


def units_to_remove(model: nn.Module, count: int) -> list[ResidualUnit]:
    """The ``count`` least important residual units of ``model``: what a prune with ``--layers count`` removes.

    Raises:
        PruningError: ``count`` is not positive or larger than the number of residual units.
    """
    units = residual_units(model)
    if not 0 < count <= len(units):
        raise PruningError(f"--layers must be between 1 and {len(units)} (the model's residual units), got {count}")
    return units[:count]


def without_units(model: nn.Module, names: list[str]) -> nn.Module:
    """A copy of ``model`` with the residual units called ``names`` replaced by ``nn.Identity``."""
    pruned = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        setattr(pruned.get_submodule(parent_name), child, nn.Identity())
    return pruned


def unit_output_bn(name: str) -> str:
    """The BatchNorm whose output is the unit's ``f(x)``: with its scale and shift at zero the unit is ``x``.

    Why: ``f(x)`` ends in SiLU(BN(conv)), and SiLU(0) = 0; so a unit whose last BN is all zero is
    removed without changing any output (sparsity training drives it there, see
    :mod:`toolchain.models.sparsity`).
    """
    return f"{name}.cv2.bn"


def remove_residual_units(model: nn.Module, count: int) -> tuple[nn.Module, list[ResidualUnit]]:
    """A copy of ``model`` with its ``count`` least important residual units replaced by ``nn.Identity``.

    Raises:
        PruningError: ``count`` is not positive or larger than the number of residual units.
    """
    removed = units_to_remove(model, count)
    return without_units(model, [u.name for u in removed]), removed
