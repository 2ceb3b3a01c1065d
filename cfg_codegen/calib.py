"""Images of a YOLO data.yaml, preprocessed the way Darknet feeds its network.

Why our own reader (not Ultralytics'): int8 calibration must see exactly what the deployed
Darknet model sees: RGB in [0, 1], stretched to the network size (Darknet's default) or
letterboxed with 0.5 grey when the cfg says ``letter_box=1``; Ultralytics letterboxes with 114
grey always. The data.yaml layout is the YOLO one: ``path`` (root), ``train``/``val``/``test``
(a folder, a .txt list of images, or a list of those) and ``names``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cfg_codegen.errors import CfgError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class DataError(CfgError):
    """The data.yaml or its images cannot be used."""


def load_data_yaml(path: str | os.PathLike) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read the data.yaml ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a YOLO data.yaml mapping (path, train, val, names), "
                        f"got {type(data).__name__}")
    return data


def class_names(data: dict, path: str | os.PathLike) -> list[str] | None:
    """``names`` as a list (YOLO yamls use a list or an {index: name} mapping), or None if absent."""
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        try:
            return [str(names[i]) for i in range(len(names))]
        except KeyError:
            raise DataError(f"{path}: 'names' keys must be 0..{len(names) - 1}") from None
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DataError(f"{path}: 'names' must be a list or a mapping, got {type(names).__name__}")


def image_files(data_yaml: str | os.PathLike, splits: tuple[str, ...] = ("val", "train")) -> list[Path]:
    """Image paths of the first split of ``splits`` that lists any image."""
    data = load_data_yaml(data_yaml)
    root = Path(data.get("path") or Path(data_yaml).parent)
    if not root.is_absolute():
        root = (Path(data_yaml).parent / root).resolve()
    for split in splits:
        entries = data.get(split)
        if not entries:
            continue
        files: list[Path] = []
        for entry in entries if isinstance(entries, list) else [entries]:
            files += _expand(root / str(entry))
        if files:
            return sorted(files)
    raise DataError(f"{data_yaml}: no images found under {' or '.join(splits)} (root {root})")


def _expand(entry: Path) -> list[Path]:
    if entry.is_dir():
        return [p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if entry.suffix == ".txt" and entry.is_file():
        base = entry.parent
        lines = [line.strip() for line in entry.read_text().splitlines() if line.strip()]
        return [p if p.is_absolute() else (base / p) for p in map(Path, lines)]
    return []


def preprocess(image_bgr: np.ndarray, width: int, height: int, letterbox: bool) -> np.ndarray:
    """BGR uint8 image -> 1 x 3 x height x width float32 RGB in [0, 1], as Darknet resizes it."""
    import cv2

    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if letterbox:
        h, w = rgb.shape[:2]
        if width / w < height / h:  # Darknet's letterbox_image arithmetic
            nw, nh = width, max(1, h * width // w)
        else:
            nw, nh = max(1, w * height // h), height
        canvas = np.full((height, width, 3), 127.5, dtype=np.float32)
        top, left = (height - nh) // 2, (width - nw) // 2
        canvas[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        resized = canvas
    else:
        resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return (resized / 255.0).transpose(2, 0, 1)[None].astype(np.float32)


def calibration_batches(data_yaml: str | os.PathLike, width: int, height: int, letterbox: bool,
                        limit: int) -> list[np.ndarray]:
    """Up to ``limit`` preprocessed images (val split first, else train), evenly spread over the split."""
    import cv2

    files = image_files(data_yaml)
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    batches = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            batches.append(preprocess(image, width, height, letterbox))
    if not batches:
        raise DataError(f"{data_yaml}: none of the {len(files)} listed images could be read")
    return batches
