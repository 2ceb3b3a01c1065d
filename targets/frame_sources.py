"""Frame sources for the bench harness and the stream runner: synthetic moving shapes, a video file,
an image folder, a camera, a network stream (RTSP/HTTP).

Why a synthetic default: benchmarks must run anywhere (CI, a board without a camera) and be
repeatable; moving shapes from edgeprune's own generator give the detector real work. The
others use OpenCV, as the field tools do. ``frames()`` loops (a benchmark needs frames for as
long as it measures); ``play()`` goes through a source once, with each frame's time, as a video
application sees it. ``live`` sources (cameras, network streams) produce frames whether or not
they are read, so a reader that falls behind must drop some.
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

    live = False
    fps = 30.0

    def frames(self) -> Iterator[np.ndarray]:
        while True:
            frame, _ = self.render()
            yield frame
            for s in self.shapes:
                self._step(s)

    def play(self) -> Iterator[tuple[float | None, np.ndarray]]:
        """Endless, at a nominal 30 frames per second of source time."""
        for index, frame in enumerate(self.frames()):
            yield index / self.fps, frame


class VideoSource:
    """A video file, a camera index or a network stream (RTSP/HTTP URL) through ``cv2.VideoCapture``."""

    def __init__(self, spec: str | int):
        self.spec = spec
        self.live = isinstance(spec, int) or "://" in str(spec)
        cap = cv2.VideoCapture(spec)
        if not cap.isOpened():
            kind = "camera" if isinstance(spec, int) else "stream" if self.live else "video file"
            raise InputFileError(f"{kind} {spec} cannot be opened by OpenCV")
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        cap.release()
        self.describe = (f"camera {spec}" if isinstance(spec, int) else f"stream {spec}" if self.live
                         else f"video {spec}") + (f" ({self.size[1]}x{self.size[0]}, {self.fps:g} fps)"
                                                  if self.size[0] else "")

    def play(self) -> Iterator[tuple[float | None, np.ndarray]]:
        """Each frame once with its time: the position in a file, the seconds since opening for a live source."""
        import time

        cap = cv2.VideoCapture(self.spec)
        opened = time.perf_counter()
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                when = time.perf_counter() - opened if self.live else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                yield when, frame
        finally:
            cap.release()

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

    live = False

    def play(self) -> Iterator[tuple[float | None, np.ndarray]]:
        """Each image once, in name order; images have no time (None)."""
        for path in self.files:
            frame = cv2.imread(str(path))
            if frame is None:
                raise InputFileError(f"image {path} cannot be read")
            yield None, frame

    def frames(self) -> Iterator[np.ndarray]:
        for path in itertools.cycle(self.files):
            frame = cv2.imread(str(path))
            if frame is None:
                raise InputFileError(f"image {path} cannot be read")
            yield frame


def open_source(spec: str, size: int = 416, seed: int = 0):
    """``synthetic`` | a camera index (``0``) | a video file | an image folder | an ``rtsp://``/``http://`` URL."""
    if spec == "synthetic":
        return SyntheticSource(size=size, seed=seed)
    if spec.isdigit():
        return VideoSource(int(spec))
    if "://" in spec:
        return VideoSource(spec)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return VideoSource(str(path))
    raise InputFileError(f"source {spec} is not 'synthetic', a camera index, a video file, an image folder or a URL")
