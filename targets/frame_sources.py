"""Frame sources for the bench harness: synthetic moving shapes, a video file, an image folder, a camera.

Why a synthetic default: benchmarks must run anywhere (CI, a board without a camera) and be
repeatable; moving shapes from edgeprune's own generator give the detector real work. The
others use OpenCV, as the field tools do.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from toolchain.core.errors import InputFileError
from toolchain.core.prepost import IMAGE_SUFFIXES
from toolchain.core.synth import SHAPE_NAMES, _background, _shape_mask


@dataclass
class MovingShape:
    cls: int
    x: float
    y: float
    r: float
    vx: float
    vy: float
    angle: float
    colour: tuple[int, int, int]


class SyntheticSource:
    """Endless frames of shapes drifting over a fixed textured background (deterministic per seed).

    Args:
        size: frame side in pixels.
        seed: RNG seed.
        objects: shapes per frame.
        classes: shape classes used (the synthetic data set's first ``classes`` names).
        margin: keep shape centres this many pixels (plus radius) inside the frame, so tests can
            require objects not to touch frame borders.
    """

    def __init__(self, size: int = 416, seed: int = 0, objects: int = 3, classes: int = 3, margin: int = 2):
        self.size, self.margin = size, margin
        rng = np.random.default_rng(seed)
        self.background = _background(rng, size)
        self.shapes = []
        for _ in range(objects):
            r = rng.uniform(0.05, 0.1) * size
            lo, hi = r + margin, size - r - margin
            speed = rng.uniform(1, 4)
            heading = rng.uniform(0, 2 * math.pi)
            self.shapes.append(MovingShape(int(rng.integers(0, classes)), rng.uniform(lo, hi), rng.uniform(lo, hi), r,
                                           speed * math.cos(heading), speed * math.sin(heading),
                                           rng.uniform(0, 2 * math.pi),
                                           tuple(int(v) for v in rng.integers(0, 256, 3))))
        self.describe = f"synthetic moving shapes {size}x{size}, seed {seed}"

    def _step(self, s: MovingShape) -> None:
        lo, hi = s.r + self.margin, self.size - s.r - self.margin
        s.x, s.y = s.x + s.vx, s.y + s.vy
        if not lo <= s.x <= hi:
            s.vx, s.x = -s.vx, min(max(s.x, lo), hi)
        if not lo <= s.y <= hi:
            s.vy, s.y = -s.vy, min(max(s.y, lo), hi)

    def render(self) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
        """The current frame and its ground truth ``[(cls, xyxy), ...]`` (no occlusion between shapes)."""
        frame = self.background.copy()
        truth = []
        for s in self.shapes:
            mask = _shape_mask(SHAPE_NAMES[s.cls], self.size, s.x, s.y, s.r, s.angle) > 0
            frame[mask] = s.colour
            ys, xs = np.nonzero(mask)
            truth.append((s.cls, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)))
        return frame, truth

    def frames(self) -> Iterator[np.ndarray]:
        while True:
            frame, _ = self.render()
            yield frame
            for s in self.shapes:
                self._step(s)


class VideoSource:
    """A video file or a camera index through ``cv2.VideoCapture``; a file loops at its end."""

    def __init__(self, spec: str | int):
        self.spec = spec
        cap = cv2.VideoCapture(spec)
        if not cap.isOpened():
            kind = "camera" if isinstance(spec, int) else "video file"
            raise InputFileError(f"{kind} {spec} cannot be opened by OpenCV")
        cap.release()
        self.describe = f"camera {spec}" if isinstance(spec, int) else f"video {spec}"

    def frames(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(self.spec)
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    if isinstance(self.spec, int):
                        return
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = cap.read()
                    if not ok:
                        return
                yield frame
        finally:
            cap.release()


class FolderSource:
    """Images of a folder in name order, looping."""

    def __init__(self, folder: Path):
        self.files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputFileError(f"image folder {folder} holds no images")
        self.describe = f"image folder {folder} ({len(self.files)} images)"

    def frames(self) -> Iterator[np.ndarray]:
        for path in itertools.cycle(self.files):
            frame = cv2.imread(str(path))
            if frame is None:
                raise InputFileError(f"image {path} cannot be read")
            yield frame


def open_source(spec: str, size: int = 416, seed: int = 0):
    """``synthetic`` | a camera index (``0``) | a video file | an image folder."""
    if spec == "synthetic":
        return SyntheticSource(size=size, seed=seed)
    if spec.isdigit():
        return VideoSource(int(spec))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return VideoSource(str(path))
    raise InputFileError(f"--source {spec} is not 'synthetic', a camera index, a video file or an image folder")
