"""Torch-Pruning's pruner, except that asking for more never removes less.

Why: Torch-Pruning rounds the channels a layer keeps *down* to a multiple of ``round_to``. When
that leaves none (a 16-channel layer at ratio 0.7 keeps 4, rounded to 0; under ``--global`` a
layer whose every channel scores below the network's threshold), the group fails Torch-Pruning's
own check and is silently skipped: the layer keeps *all* its channels. So a higher ratio removed
fewer MACs — on a yolov8n sparsified for 0.7, ``prune --global`` kept 83.7 M MACs at 0.7 but
261.0 M at 0.9, and local 0.9 kept 434.5 M against 74.1 M at 0.7 — and local 0.7 left the first
conv and the C2f of layer 2 unpruned. Here a layer keeps at least one multiple of ``round_to``
(one channel without rounding), its most important ones, so each layer's pruned count grows
with the ratio.
"""

from __future__ import annotations

import torch_pruning as tp


class FlooredPruner(tp.pruner.BasePruner):
    """:class:`torch_pruning.pruner.BasePruner` whose rounding keeps at least ``round_to`` channels per layer.

    ``round_to=None`` (no rounding) becomes 1: Torch-Pruning only calls the rounding when ``round_to``
    is set, and the floor of one channel lives there.
    """

    def __init__(self, *args, round_to: int | None = None, **kwargs):
        super().__init__(*args, round_to=round_to or 1, **kwargs)

    def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
        keep = current_channels - n_pruned
        keep = max(keep - keep % round_to, min(round_to, current_channels))
        return current_channels - keep
