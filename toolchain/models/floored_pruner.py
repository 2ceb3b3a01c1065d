"""Torch-Pruning's pruner, except that a layer keeps the multiple of ``round_to`` nearest what was asked.

Why: Torch-Pruning rounds the channels a layer keeps *down* to a multiple of ``round_to``. Two defects
follow. When that leaves none (a 16-channel layer at ratio 0.7 keeps 4, rounded to 0; under ``--global``
a layer whose every channel scores below the network's threshold), the group fails Torch-Pruning's own
check and is silently skipped: the layer keeps *all* its channels. So a higher ratio removed fewer MACs —
on a yolov8n sparsified for 0.7, ``prune --global`` kept 83.7 M MACs at 0.7 but 261.0 M at 0.9, and
local 0.9 kept 434.5 M against 74.1 M at 0.7 — and local 0.7 left the first conv and the C2f of layer 2
unpruned. And rounding down makes a small ratio a large one: at ``--ratio 0.1`` a 16-channel layer kept
8 and a 32-channel one 24, so "0.1" removed 40 % of yolov8n's MACs at 416 px. Here a layer keeps the
multiple nearest the channels the ratio leaves (ties keep the larger), never more than it has and at least
one multiple (one channel without rounding), its most important ones: the pruned count still grows with
the ratio, and the share removed is the one asked for, to within half a multiple per layer.

Under ``--global`` the rounding stays Torch-Pruning's (down), with the same floor of one multiple. There a
layer's count is not asked for but falls out of one threshold over the network, and rounding down keeps each
layer's cut a superset of what the threshold marks. That is what makes the prune of a model sparsified for
the same global ratio lossless (:func:`toolchain.models.pruning.plan_channels`): the zeros are at least the
ratio's share, so the prune's threshold falls among them and no layer's rounding reaches a live channel.
Rounded to the nearest multiple, the zeros can fall short of the share and the prune takes live channels
(measured: outputs 2 % off). The price: a global ratio removes somewhat more than it says (yolov8n, 0.1:
20 % of the parameters).
"""

from __future__ import annotations

import torch_pruning as tp


class FlooredPruner(tp.pruner.BasePruner):
    """:class:`torch_pruning.pruner.BasePruner` rounding a layer's kept channels to the nearest multiple (local).

    ``round_to=None`` (no rounding) becomes 1: Torch-Pruning only calls the rounding when ``round_to``
    is set, and the floor of one channel lives there.
    """

    def __init__(self, *args, round_to: int | None = None, **kwargs):
        super().__init__(*args, round_to=round_to or 1, **kwargs)

    def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
        keep = current_channels - n_pruned
        rounded = keep - keep % round_to if self.global_pruning else (keep + round_to // 2) // round_to * round_to
        keep = min(current_channels, max(rounded, min(round_to, current_channels)))
        return current_channels - keep
