"""Images and labels of a YOLO data set, letterboxed as every runner's input is.

Why one module: calibration (OpenVINO, ONNX Runtime), artifact evaluation and the bench
harness must feed identical pixels, or INT8 and FP32 numbers are not comparable; the
letterbox itself is :func:`toolchain.prepost.letterbox`, shared with the board script.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from toolchain.errors import InputFileError
from toolchain.loading import read_data_yaml
from toolchain.prepost import IMAGE_SUFFIXES, fit, to_input


def image_files(data_yaml: str | Path, split: str) -> list[Path]:
    """Sorted image files of ``split`` (a folder, a list file or a list of either) in a data.yaml."""
    data = read_data_yaml(data_yaml)
    if split not in data:
        raise InputFileError(f"data file {data_yaml} has no {split!r} split")
    root = Path(data.get("path") or Path(data_yaml).parent)
    if not root.is_absolute():
        root = (Path(data_yaml).parent / root).resolve()
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    files: list[Path] = []
    for entry in entries:
        p = Path(entry) if Path(entry).is_absolute() else root / entry
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES]
        elif p.is_file() and p.suffix == ".txt":
            files += [Path(line.strip()) if Path(line.strip()).is_absolute() else root / line.strip()
                      for line in p.read_text().splitlines() if line.strip()]
    if not files:
        raise InputFileError(f"data file {data_yaml}: no images found for split {split!r}")
    return sorted(files)


def label_file(image: Path) -> Path:
    """YOLO convention: .../images/x.jpg → .../labels/x.txt."""
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is not None:
        parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(image: Path, shape_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one image: (classes (N,), boxes xyxy in pixels (N, 4))."""
    path = label_file(image)
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
    batches = []
    for i in picks:
        image = cv2.imread(str(files[i]))
        if image is None:
            raise InputFileError(f"calibration image {files[i]} cannot be read")
        batches.append(to_input([fit(image, input_hw, resize)[0]]))
    return batches
