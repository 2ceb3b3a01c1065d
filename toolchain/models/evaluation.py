"""mAP of anything that maps an input batch to YOLO predictions, on a data set's images.

Why here, below the targets: the same loop scores a deployed artifact (its runner's
``predict``), the torch model it came from, a quantizer's candidate and a model in training,
so that their numbers compare; it needs only images, labels, pre/post-processing and the
metric, none of which knows about runtimes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from toolchain.core.detection_metrics import MapAccumulator, nms
from toolchain.core.errors import InputFileError, ModelMismatchError
from toolchain.core.prepost import fit, predictions, to_input
from toolchain.core.progress import advance
from toolchain.models.contract import flat_tensors
from toolchain.models.imagedata import image_files, read_labels
from toolchain.models.loading import read_data_yaml


def evaluate_callable(predict: Callable[[np.ndarray], np.ndarray], data_yaml: str | Path,
                      input_hw: int | tuple[int, int], nc: int, split: str = "val", files: list[Path] | None = None,
                      progress=None, resize: str = "letterbox") -> dict:
    """Run ``predict`` on every image of ``split`` and return overall and per-class metrics.

    Args:
        predict: input batch -> ``(batch, 4 + nc, anchors)`` predictions (a runner's ``predict``).
        input_hw: the network input size (an int for square inputs).
        resize: how images are fitted into the input (:func:`toolchain.core.prepost.fit`), as the model was trained.
    """

    files = files if files is not None else image_files(data_yaml, split)
    progress = progress or advance  # an explicit callback, else the caller's progress display
    acc = MapAccumulator(nc)
    for i, path in enumerate(files):
        image = cv2.imread(str(path))
        if image is None:
            raise InputFileError(f"image {path} cannot be read")
        padded, box = fit(image, input_hw, resize)
        raw = predict(to_input([padded]))
        if raw.ndim != 3:
            raise ModelMismatchError(f"the model outputs shape {tuple(raw.shape)}, not detections (batch, 4 + classes, "
                                     "anchors) edgeprune can decode: eval scores detectors on a detection data set")
        if raw.shape[1] < 4 + nc:
            raise ModelMismatchError(f"the model outputs {raw.shape[1]} rows per anchor but {data_yaml} has nc={nc} "
                                     f"(expected at least {4 + nc})")
        detections = nms(raw, nc)[0]
        detections[:, :4] = box.to_original(detections[:, :4], image.shape[:2])
        acc.add(detections, *read_labels(path, image.shape[:2]))
        progress(i + 1, len(files))
    return acc.result()


def evaluate_source(source, data_yaml: str | Path, split: str = "val", progress=None) -> dict:
    """Score a prepared model source (:class:`toolchain.models.sources.ExportSource`) run in torch on the CPU.

    Decoded exactly as its artifacts are (the source's ``head`` and ``resize``).
    """
    import torch

    module = source.module.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            outputs = [t.numpy() for t in flat_tensors(module(torch.from_numpy(x)))]
        return predictions(outputs, source.head, tuple(x.shape[-2:]))

    nc = read_data_yaml(data_yaml)["nc"]
    return evaluate_callable(predict, data_yaml, source.input_hw, nc, split, progress=progress, resize=source.resize)
