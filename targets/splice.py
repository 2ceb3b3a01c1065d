"""Splice four video streams into one 2x2 frame, and map detections back to their stream.

Why: seed 002 runs four 416x416 channels on OpenVINO as one 832x832 inference; one large
inference uses the cores better than four small ones. The mapping rule, applied the same way
everywhere: a detection belongs to the tile that holds its box centre; its box is shifted
into that stream's coordinates and clipped to the tile, so an object cut by a tile border is
reported once, by the stream it mostly lies in, with the part inside that stream.
"""

from __future__ import annotations

import cv2
import numpy as np


def tile_origin(index: int, tile: int, grid: int = 2) -> tuple[int, int]:
    """(x, y) of tile ``index`` (row-major) in the spliced frame."""
    return (index % grid) * tile, (index // grid) * tile


def splice(frames: list[np.ndarray], tile: int, grid: int = 2) -> np.ndarray:
    """Tile ``grid*grid`` BGR frames (resized to ``tile`` if needed) into one square frame."""
    if len(frames) != grid * grid:
        raise ValueError(f"splicing needs {grid * grid} frames, got {len(frames)}")
    canvas = np.empty((tile * grid, tile * grid, 3), np.uint8)
    for i, frame in enumerate(frames):
        if frame.shape[:2] != (tile, tile):
            frame = cv2.resize(frame, (tile, tile), interpolation=cv2.INTER_LINEAR)
        x, y = tile_origin(i, tile, grid)
        canvas[y:y + tile, x:x + tile] = frame
    return canvas


def unsplice(detections: np.ndarray, tile: int, grid: int = 2, min_side: float = 1.0) -> list[np.ndarray]:
    """Split ``(n, 6)`` detections (xyxy, score, class) of a spliced frame by stream.

    Boxes are assigned by centre, shifted to stream coordinates and clipped to ``[0, tile]``;
    a box thinner than ``min_side`` pixels after clipping is dropped.
    """
    streams: list[list[np.ndarray]] = [[] for _ in range(grid * grid)]
    for det in detections:
        cx, cy = (det[0] + det[2]) / 2, (det[1] + det[3]) / 2
        col = int(min(max(cx // tile, 0), grid - 1))
        row = int(min(max(cy // tile, 0), grid - 1))
        index = row * grid + col
        x0, y0 = tile_origin(index, tile, grid)
        box = det.copy()
        box[[0, 2]] = np.clip(box[[0, 2]] - x0, 0, tile)
        box[[1, 3]] = np.clip(box[[1, 3]] - y0, 0, tile)
        if box[2] - box[0] >= min_side and box[3] - box[1] >= min_side:
            streams[index].append(box)
    return [np.array(s, dtype=np.float32).reshape(-1, 6) for s in streams]
