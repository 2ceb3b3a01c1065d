"""mAP of the quantised model, measured on the host from the outputs the container saved.

Why: a KV260 may not be at hand, but ``quantize.py --quant-mode test`` already runs the
quantised network (vai_q_pytorch's simulation of the DPU arithmetic) on the validation
images. Decoding those outputs with the decode the board script embeds (toolchain.core.prepost) and scoring them
through edgeprune's NMS and matching gives the INT8 model's mAP beside the float DPU graph's,
through one and the same pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from targets.vitis.workspace import Workspace
from toolchain.core.prepost import predictions
from toolchain.models.evaluation import evaluate_callable


def quantized_accuracy(ws: Workspace, graph_module: torch.nn.Module, spec, data: str, input_hw: tuple[int, int],
                       resize: str = "letterbox") -> dict | None:
    """Quantised vs float mAP on the workspace's evaluation images (None when the container saved none)."""
    if not ws.eval_sources or not ws.eval_outputs.is_file():
        return None
    files = [Path(s) for s in ws.eval_sources]
    head = spec.to_json()
    with np.load(ws.eval_outputs) as saved:
        count = len({key.split("_")[1] for key in saved.files})
        outputs = [[saved[f"img{i:05d}_out{k}"] for k in range(count)] for i in range(len(files))]
    replay = iter(outputs)

    def quantized(x: np.ndarray) -> np.ndarray:
        return predictions(next(replay), head, input_hw)

    def float_graph(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return predictions([o.numpy() for o in graph_module(torch.from_numpy(x))], head, input_hw)

    q = evaluate_callable(quantized, data, input_hw, spec.nc, files=files, resize=resize)
    f = evaluate_callable(float_graph, data, input_hw, spec.nc, files=files, resize=resize)
    for res in (q, f):
        res.pop("per_class")
    return {"data": str(data), "split": "val", "images": len(files), "artifact": q, "torch_fp32": f,
            "map50_drop": f["map50"] - q["map50"], "map50_95_drop": f["map50_95"] - q["map50_95"],
            "how": "vai_q_pytorch test-mode outputs, decoded on the host by the numpy decode run_kv260.py embeds; "
                   "torch_fp32 is the float DPU graph (the source cut at its head convolutions, with the DPU "
                   "adaptations in the notes)"}
