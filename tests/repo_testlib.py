"""Helpers the YOLOv5/YOLOv7 repository tests share."""

from __future__ import annotations

import numpy as np
import torch


def dpu_maps_vs_rows(path, imgsz: int, perturb_implicit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The repository model's own rows and the same input through its DPU graph + the board's decode.

    Both as ``(anchors, 4 + nc)`` in the DPU decode's order (y, x, anchor per scale; the repositories
    order rows anchor, y, x). With ``perturb_implicit`` YOLOv7's implicit layers are given values far
    from their initial 0 / 1, so folding them into the convs is really exercised.
    """
    from targets.vitis.graph import dpu_graph
    from toolchain.core.prepost import predictions
    from toolchain.models.sources import prepare

    source = prepare(str(path), imgsz)
    head = source.module.model.model[-1]
    if perturb_implicit:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for ia, im in zip(head.ia, head.im):
                ia.implicit.copy_(torch.randn(ia.implicit.shape, generator=generator) * 0.5)
                im.implicit.copy_(1.0 + torch.randn(im.implicit.shape, generator=generator) * 0.3)
    graph = dpu_graph(source)
    x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rows = predictions([source.module(x).numpy()], source.head, (imgsz, imgsz))[0].T
        maps = graph(x)
    decoded = predictions([m.numpy() for m in maps], graph.spec.to_json(), (imgsz, imgsz))[0].T
    na, reordered, start = head.na, [], 0
    for fmap in maps:  # the repositories' (anchor, y, x) rows -> the decode's (y, x, anchor)
        h, w = fmap.shape[-2:]
        block = rows[start:start + na * h * w].reshape(na, h, w, -1)
        reordered.append(block.transpose(1, 2, 0, 3).reshape(na * h * w, -1))
        start += na * h * w
    assert start == len(rows), (start, rows.shape)
    return np.concatenate(reordered), decoded
