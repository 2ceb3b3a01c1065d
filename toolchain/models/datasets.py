"""Datasets checked before any work: the images and labels a YOLO data.yaml names, counted and read.

Why: Ultralytics silently drops corrupt images and bad label lines (a warning among hundreds of
log lines) and raises tracebacks for missing folders or a missing split, so an mAP could be
computed on a silent subset, or fail after minutes of pruning. Here every split a command
uses is counted up front; anything that would be skipped is reported with counts and the
first offending file, and ``strict`` turns it into an error.

Ultralytics also writes ``labels/<split>.cache`` into the user's dataset folder;
:func:`redirect_label_cache` sends those files to edgeprune's cache folder instead.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.core.errors import InputFileError
from toolchain.core.cache import cache_dir
from toolchain.core.prepost import IMAGE_SUFFIXES
from toolchain.models.loading import read_data_yaml

COORD_SLACK = 1e-3  # Ultralytics accepts coordinates up to 1 + a rounding margin


@dataclass
class SplitReport:
    """What one split holds and what would be skipped in it."""

    split: str
    folder: str
    images: int = 0
    labelled: int = 0
    background: int = 0  # images without a label file or with an empty one: valid, no objects
    objects: int = 0
    corrupt_images: int = 0
    bad_label_files: int = 0
    first_problem: str | None = None

    @property
    def skipped(self) -> int:
        return self.corrupt_images + self.bad_label_files


@dataclass
class DatasetReport:
    data: str
    splits: list[SplitReport] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.splits)

    def summary(self) -> str:
        """One sentence per split with problems (empty when clean)."""
        parts = []
        for s in self.splits:
            if s.skipped:
                parts.append(f"{self.data} {s.split}: {s.skipped} of {s.images} images would be skipped "
                             f"({s.corrupt_images} unreadable, {s.bad_label_files} with bad label lines); "
                             f"first: {s.first_problem}")
        return "; ".join(parts)


def split_sources(data_yaml: str | os.PathLike, split: str) -> list[Path]:
    """The folders or list files a split names, resolved as Ultralytics does (``path`` first)."""
    data_yaml = Path(data_yaml)
    data = read_data_yaml(data_yaml)
    if split not in data or data[split] in (None, ""):
        present = ", ".join(k for k in ("train", "val", "test") if data.get(k))
        raise InputFileError(f"data file {data_yaml} has no '{split}:' split (it has {present}); "
                             f"choose one of those with --split")
    root = Path(str(data.get("path") or data_yaml.parent)).expanduser()
    if not root.is_absolute():
        root = root if root.exists() else data_yaml.parent / root
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    return [(root / str(e)) if not Path(str(e)).is_absolute() else Path(str(e)) for e in entries]


def images_of(source: Path, data_yaml: Path, split: str) -> list[Path]:
    """The images a split entry names: a folder (recursively) or a list file of paths."""
    if not source.exists():
        raise InputFileError(f"data file {data_yaml}: the {split} images {source} do not exist")
    if source.is_file():  # a list of image paths, one per line, relative to the list's folder
        lines = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        return [Path(line) if Path(line).is_absolute() else source.parent / line for line in lines]
    return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, the suffix ``.txt``."""
    text = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in text:
        head, _, tail = text.rpartition(sa)
        text = head + sb + tail
    return Path(text).with_suffix(".txt")


def _label_problem(path: Path, nc: int, task: str) -> str | None:
    """Why a label file would be dropped (Ultralytics drops the whole image), or None."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path} cannot be read ({exc})"
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            return f"{path}:{number} has a non-number ({line.strip()[:40]!r})"
        columns = len(values)
        if task == "detect" and columns != 5:
            return f"{path}:{number} has {columns} columns, expected 5 (class x y w h)"
        if task != "detect" and columns < 5:
            return f"{path}:{number} has {columns} columns, expected at least 5"
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < nc:
            return f"{path}:{number} has class {fields[0]}, expected an integer in [0, {nc - 1}]"
        coords = values[1:] if task != "pose" else values[1:5]
        if any(v < -COORD_SLACK or v > 1 + COORD_SLACK for v in coords):
            return f"{path}:{number} has coordinates outside [0, 1] (normalised xywh expected)"
    return None


def _image_problem(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a damaged file
        return f"{path} is not a readable image ({type(exc).__name__})"
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with open(path, "rb") as fh:
            fh.seek(-2, 2)
            if fh.read() != b"\xff\xd9":
                return f"{path} is a truncated JPEG (no end-of-image marker)"
    return None


def check_dataset(data_yaml: str | os.PathLike, splits: tuple[str, ...] = ("val",), task: str = "detect",
                  strict: bool = False) -> DatasetReport:
    """Count and read every image and label file of ``splits``; raise on what cannot work.

    Raises:
        InputFileError: a missing split or folder, a split with no images, or (with ``strict``)
            any image or label file Ultralytics would skip.
    """
    data_yaml = Path(data_yaml)
    nc = read_data_yaml(data_yaml)["nc"]
    report = DatasetReport(str(data_yaml))
    for split in splits:
        sources = split_sources(data_yaml, split)
        images = [img for source in sources for img in images_of(source, data_yaml, split)]
        part = SplitReport(split, ", ".join(map(str, sources)), images=len(images))
        if not images:
            raise InputFileError(f"data file {data_yaml}: the {split} split {part.folder} holds no images "
                                 f"({', '.join(sorted(IMAGE_SUFFIXES)[:4])}, ...)")
        for image in images:
            problem = _image_problem(image) if image.is_file() else f"{image} does not exist"
            if problem:
                part.corrupt_images += 1
            else:
                labels = label_path(image)
                if not labels.is_file() or labels.stat().st_size == 0:
                    part.background += 1
                    continue
                problem = _label_problem(labels, nc, task)
                if problem:
                    part.bad_label_files += 1
                else:
                    part.labelled += 1
                    part.objects += sum(1 for line in labels.read_text().splitlines() if line.strip())
            if problem and part.first_problem is None:
                part.first_problem = problem
        if part.skipped == part.images:
            raise InputFileError(f"data file {data_yaml}: none of the {part.images} {split} images is usable; "
                                 f"first: {part.first_problem}")
        report.splits.append(part)
    if strict and report.skipped:
        raise InputFileError(report.summary() + " (--strict)")
    return report


def prepare_dataset(data_yaml: str | os.PathLike, splits: tuple[str, ...] = ("val",), task: str = "detect",
                    strict: bool = False) -> DatasetReport:
    """:func:`check_dataset`, a warning line on stderr for what will be skipped, and the label cache redirected.

    Checked once per process for the same file, splits and settings (a sweep evaluates many times).
    """
    path = Path(data_yaml)
    key = (str(path.resolve()), tuple(splits), task, strict, path.stat().st_mtime_ns if path.exists() else 0)
    if key not in _CHECKED:
        report = check_dataset(data_yaml, splits, task, strict)
        if report.skipped:
            print(f"warning: {report.summary()}; --strict makes this an error", file=sys.stderr)
        _CHECKED[key] = report
    redirect_label_cache()
    return _CHECKED[key]


_CHECKED: dict = {}


_REDIRECTED = False


def redirect_label_cache() -> None:
    """Make Ultralytics keep its ``labels/<split>.cache`` files in edgeprune's cache, not the dataset.

    Ultralytics derives the cache path from the label folder; its loader method is wrapped so the
    same name lands under ``$EDGEPRUNE_CACHE/label-cache/<hash of the original path>``.
    """
    global _REDIRECTED
    if _REDIRECTED:
        return
    from ultralytics.data.dataset import YOLODataset

    original = YOLODataset._load_or_scan_cache

    def _load_or_scan_cache(self, cache_path, cache_hash):
        key = hashlib.sha1(str(Path(cache_path).resolve()).encode()).hexdigest()[:16]
        return original(self, cache_dir("label-cache") / f"{key}-{Path(cache_path).name}", cache_hash)

    YOLODataset._load_or_scan_cache = _load_or_scan_cache
    _REDIRECTED = True
