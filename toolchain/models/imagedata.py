"""Images and labels of a YOLO data set, letterboxed as every runner's input is.

Why one module: calibration (OpenVINO, ONNX Runtime), artifact evaluation and the bench
harness must feed identical pixels, or INT8 and FP32 numbers are not comparable; the
letterbox itself is :func:`toolchain.core.prepost.letterbox`, shared with the board script.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from toolchain.core.errors import InputFileError
from toolchain.core.prepost import fit, to_input
from toolchain.core.progress import advance, step
from toolchain.models.datasets import images_of, label_path, split_sources


def image_files(data_yaml: str | Path, split: str) -> list[Path]:
    """Sorted image files of ``split`` (a folder, a list file or a list of either) in a data.yaml.

    Resolved exactly as :mod:`toolchain.models.datasets` checks them (and as Ultralytics reads them).
    """

    files = [image for source in split_sources(data_yaml, split) for image in images_of(source, Path(data_yaml), split)]
    if not files:
        raise InputFileError(f"data file {data_yaml}: no images found for split {split!r}")
    return sorted(files)


def read_labels(image: Path, shape_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one image: (classes (N,), boxes xyxy in pixels (N, 4))."""

    path = label_path(image)
    if not path.exists() or not path.read_text().strip():
        return np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32)
    rows = np.array([list(map(float, line.split()[:5])) for line in path.read_text().splitlines() if line.strip()])
    h, w = shape_hw
    cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    return rows[:, 0].astype(np.int64), boxes


def calibration_batches(data_yaml: str | Path, input_hw: int | tuple[int, int], count: int, split: str = "train",
                        resize: str = "letterbox") -> list[np.ndarray]:
    """``count`` images spread evenly over ``split``, fitted as the model expects (``resize``), each 1x3xHxW."""

    files = image_files(data_yaml, split)
    picks = np.linspace(0, len(files) - 1, num=min(count, len(files))).round().astype(int)
    step(f"reading {len(picks)} calibration images ({split} split)")
    batches = []
    for n, i in enumerate(picks):
        image = cv2.imread(str(files[i]))
        if image is None:
            raise InputFileError(f"calibration image {files[i]} cannot be read")
        batches.append(to_input([fit(image, input_hw, resize)[0]]))
        advance(n + 1, len(picks))
    step(f"calibrating INT8 on {len(picks)} images")
    return batches
