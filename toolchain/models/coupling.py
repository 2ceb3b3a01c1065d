"""Make coupled slots lose the same number of channels before Torch-Pruning removes them.

Why: a ``chunk(2)`` only stays valid if both halves keep equal widths (see
:mod:`toolchain.models.blocks`). Torch-Pruning ranks the two halves in different groups (or ignores
one of them, e.g. when it feeds a protected attention block), so local and global pruning
both produce unequal halves. We take the groups Torch-Pruning chose (``step(interactive=True)``
computes every group's indices before any is pruned) and, for each coupled pair, give back
the most important extra channels of the side that lost more, so both sides lose
``min(a, b)``. The result prunes at most what was asked and never needs a non-stock block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from toolchain.models.blocks import Slot


def _slot_root_idxs(DG, group, slot: Slot) -> list[int]:
    """Root indices of ``group`` whose pruning removes channels of ``slot``."""
    hits: list[int] = []
    for item in group:
        dep = item.dep
        if dep.target.module is not slot.module:
            continue
        if DG.is_out_channel_pruning_fn(dep.handler) == (slot.side == "out"):
            hits.extend(r for r in item.root_idxs if r is not None)
    return hits


def _slot_count(DG, groups, slot: Slot) -> int:
    return sum(len(_slot_root_idxs(DG, g, slot)) for g in groups)


def _root(group):
    dep = group[0].dep
    return dep.target.module, dep.handler, list(group[0].idxs)


def _give_back(DG, importance, group, slot: Slot, count: int):
    """Rebuild ``group`` without the ``count`` most important channels it removes from ``slot``."""
    module, handler, idxs = _root(group)
    candidates = sorted(set(_slot_root_idxs(DG, group, slot)))
    if not candidates:
        return group
    n = DG.get_out_channels(module) if DG.is_out_channel_pruning_fn(handler) else DG.get_in_channels(module)
    scores = importance(DG.get_pruning_group(module, handler, list(range(n))))
    if scores is None:  # criterion without an opinion on this group: give back the last ones
        keep = candidates[-count:]
    else:
        scores = torch.as_tensor(scores).flatten()
        keep = sorted(candidates, key=lambda r: float(scores[r]), reverse=True)[:count]
    kept = set(keep)
    remaining = [i for i in idxs if i not in kept]
    return DG.get_pruning_group(module, handler, remaining) if remaining else None


def couple_groups(DG, importance, groups: Sequence, pairs: Sequence[tuple[Slot, Slot]]) -> list:
    """Return ``groups`` adjusted so that both slots of every pair lose the same channel count.

    Args:
        DG: the pruner's ``DependencyGraph``.
        importance: the pruner's importance callable (``group -> scores``), used to decide
            which channels to give back.
        groups: the groups Torch-Pruning chose for this step, not yet pruned.
        pairs: coupled slots (:func:`toolchain.models.blocks.chunk_couplings`).
    """
    groups = [g for g in groups if g is not None]
    for _ in range(4 * len(pairs) + 4):  # each pass fixes at least one pair; bound the loop anyway
        unbalanced = None
        for a, b in pairs:
            ca, cb = _slot_count(DG, groups, a), _slot_count(DG, groups, b)
            if ca != cb:
                unbalanced = (a, ca - cb) if ca > cb else (b, cb - ca)
                break
        if unbalanced is None:
            return groups
        slot, excess = unbalanced
        for i, group in enumerate(groups):
            hits = len(_slot_root_idxs(DG, group, slot))
            if hits == 0:
                continue
            take = min(hits, excess)
            groups[i] = _give_back(DG, importance, group, slot, take)
            excess -= take
            if excess == 0:
                break
        groups = [g for g in groups if g is not None]
    raise RuntimeError("coupled channel counts did not converge")  # pragma: no cover - guarded by the bound
