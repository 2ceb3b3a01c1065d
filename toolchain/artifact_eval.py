"""mAP of a deployed artifact, computed by running that artifact.

Why: a deploy step (FP16, INT8, a new runtime) costs accuracy, and the only honest measure of
that cost is to run the artifact itself through real pre/post-processing (letterbox, NMS)
on the validation images. The same loop runs the torch reference, so the numbers compare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from targets.imagedata import image_files, read_labels
from toolchain.detection_metrics import MapAccumulator, nms
from toolchain.errors import InputFileError, ModelMismatchError
from toolchain.loading import read_data_yaml
from toolchain.prepost import letterbox, to_input


def evaluate_callable(infer: Callable[[np.ndarray], np.ndarray], data_yaml: str | Path, imgsz: int, nc: int,
                      split: str = "val", files: list[Path] | None = None, progress=None) -> dict:
    """Run ``infer`` on every image of ``split`` and return overall and per-class metrics."""
    files = files if files is not None else image_files(data_yaml, split)
    acc = MapAccumulator(nc)
    for i, path in enumerate(files):
        image = cv2.imread(str(path))
        if image is None:
            raise InputFileError(f"image {path} cannot be read")
        padded, box = letterbox(image, imgsz)
        raw = infer(to_input([padded]))
        if raw.shape[1] < 4 + nc:
            raise ModelMismatchError(f"the model outputs {raw.shape[1]} rows per anchor but {data_yaml} has nc={nc} "
                                     f"(expected at least {4 + nc})")
        detections = nms(raw, nc)[0]
        detections[:, :4] = box.to_original(detections[:, :4], image.shape[:2])
        acc.add(detections, *read_labels(path, image.shape[:2]))
        if progress:
            progress(i + 1, len(files))
    return acc.result()


@dataclass
class ArtifactEval:
    """Accuracy of one artifact, with what ran it."""

    artifact: str
    data: str
    split: str
    imgsz: int
    runner: dict
    precision: float
    recall: float
    map50: float
    map50_95: float
    per_class: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def evaluate_artifact(artifact: str | Path, data: str | Path, device: str = "cpu", precision: str = "auto",
                      imgsz: int | None = None, split: str = "val", progress=None) -> ArtifactEval:
    """Open ``artifact`` with its target and evaluate it on ``data``."""
    from targets.artifacts import read_metadata, resolve_artifact
    from targets.registry import target_for_artifact
    from targets.torch_ref import TorchTarget

    data_cfg = read_data_yaml(data)
    path = resolve_artifact(Path(artifact))
    target = target_for_artifact(path)
    size_hw = (imgsz, imgsz) if imgsz and isinstance(target, TorchTarget) else None
    runner = target.open(path, device, precision, input_hw=size_hw)
    size = int(runner.info.input_shape[-1])
    meta_names = read_metadata(path).get("names") or {}
    if meta_names and len(meta_names) != data_cfg["nc"]:
        raise ModelMismatchError(f"{artifact} predicts nc={len(meta_names)} classes but {data} has nc={data_cfg['nc']}")
    metrics = evaluate_callable(runner, data, size, data_cfg["nc"], split, progress=progress)
    names = data_cfg["names"]
    per_class = {str(names[c]): v for c, v in metrics.pop("per_class").items()}
    return ArtifactEval(str(artifact), str(data), split, size, runner.info.to_json(), per_class=per_class, **metrics)
