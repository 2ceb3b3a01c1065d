"""Pre- and post-processing of a deployed YOLO detector: letterbox, splice/unsplice, decode, NMS.

Why one module: calibration, artifact evaluation, the host bench harness and the KV260 board
script must feed identical pixels and read outputs the same way, or numbers from different
backends are not comparable. The board has numpy and OpenCV but neither torch nor edgeprune,
so ``edgeprune deploy vitis`` embeds this file, verbatim, in ``run_kv260.py``; that is why it
imports nothing but numpy and OpenCV and keeps to syntax every Python 3 on a board runs (no
``from __future__``, no ``X | Y`` annotations).

The letterbox matches Ultralytics' (resize keeping aspect, centre, pad with 114). Splicing puts
four streams in one 2x2 frame (one large inference uses the cores better than four small ones);
a detection belongs to the tile holding its box centre, is shifted into that stream's
coordinates and clipped to the tile, so an object cut by a tile border is reported once.
"""

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DETECT_CONF, DETECT_IOU, MAX_DET = 0.25, 0.45, 300  # deployment thresholds (Ultralytics predict: 0.25 / 0.7)
MAX_WH = 7680  # class offset for class-aware NMS (Ultralytics' value)
MAX_NMS = 30000  # boxes considered by NMS, highest scores first


# ---------------------------------------------------------------- pre-processing

@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input: scale, then (left, top) padding."""

    scale: float
    pad_x: float
    pad_y: float

    def to_original(self, boxes_xyxy, shape_hw):
        """Map xyxy boxes from network-input pixels back to the original image, clipped to it."""
        out = boxes_xyxy.copy()
        out[:, [0, 2]] = ((out[:, [0, 2]] - self.pad_x) / self.scale).clip(0, shape_hw[1])
        out[:, [1, 3]] = ((out[:, [1, 3]] - self.pad_y) / self.scale).clip(0, shape_hw[0])
        return out


def letterbox(image_bgr, size):
    """Resize keeping aspect ratio, centre and pad to ``size`` (int = square, or (h, w)); (canvas, Letterbox)."""
    h_out, w_out = (size, size) if isinstance(size, int) else size
    h, w = image_bgr.shape[:2]
    scale = min(h_out / h, w_out / w)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    resized = image_bgr if (new_w, new_h) == (w, h) else cv2.resize(image_bgr, (new_w, new_h),
                                                                      interpolation=cv2.INTER_LINEAR)
    left, top = int(round((w_out - new_w) / 2 - 0.1)), int(round((h_out - new_h) / 2 - 0.1))
    canvas = np.full((h_out, w_out, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, Letterbox(scale, left, top)


def to_input(images_bgr):
    """BGR uint8 HWC images -> float32 NCHW RGB in [0, 1]."""
    batch = np.stack([img[..., ::-1].transpose(2, 0, 1) for img in images_bgr])
    return np.ascontiguousarray(batch, dtype=np.float32) / 255.0


# ---------------------------------------------------------------- multi-stream splicing

def tile_origin(index, tile, grid=2):
    """(x, y) of tile ``index`` (row-major) in the spliced frame."""
    return (index % grid) * tile, (index // grid) * tile


def splice(frames, tile, grid=2):
    """Tile ``grid*grid`` BGR frames (resized to ``tile`` if needed) into one square frame, row-major."""
    if len(frames) != grid * grid:
        raise ValueError("splicing needs %d frames, got %d" % (grid * grid, len(frames)))
    canvas = np.empty((tile * grid, tile * grid, 3), np.uint8)
    for i, frame in enumerate(frames):
        if frame.shape[:2] != (tile, tile):
            frame = cv2.resize(frame, (tile, tile), interpolation=cv2.INTER_LINEAR)
        x, y = tile_origin(i, tile, grid)
        canvas[y:y + tile, x:x + tile] = frame
    return canvas


def unsplice(detections, tile, grid=2, min_side=1.0):
    """Split ``(n, 6)`` detections (xyxy, score, class) of a spliced frame by stream.

    Boxes are assigned by centre, shifted to stream coordinates and clipped to ``[0, tile]``;
    a box thinner than ``min_side`` pixels after clipping is dropped.
    """
    streams = [[] for _ in range(grid * grid)]
    for det in detections:
        col = int(min(max(((det[0] + det[2]) / 2) // tile, 0), grid - 1))
        row = int(min(max(((det[1] + det[3]) / 2) // tile, 0), grid - 1))
        x0, y0 = tile_origin(row * grid + col, tile, grid)
        box = det.copy()
        box[[0, 2]] = np.clip(box[[0, 2]] - x0, 0, tile)
        box[[1, 3]] = np.clip(box[[1, 3]] - y0, 0, tile)
        if box[2] - box[0] >= min_side and box[3] - box[1] >= min_side:
            streams[row * grid + col].append(box)
    return [np.array(s, dtype=np.float32).reshape(-1, 6) for s in streams]


# ---------------------------------------------------------------- decode and NMS

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def decode(maps, strides, reg_max, nc):
    """Per-stride raw head maps ``(H, W, 4*reg_max + nc)`` -> ``(anchors, 4 + nc)``: xywh pixels, class probabilities.

    The DFL expectation over ``reg_max`` bins gives left/top/right/bottom distances in cells
    from each cell centre, as Ultralytics' Detect head computes them.
    """
    rows = []
    bins = np.arange(reg_max, dtype=np.float32)
    for fmap, stride in zip(maps, strides):
        h, w, _ = fmap.shape
        logits = fmap[..., :4 * reg_max].reshape(h * w, 4, reg_max).astype(np.float32)
        logits = np.exp(logits - logits.max(-1, keepdims=True))
        dist = (logits / logits.sum(-1, keepdims=True)) @ bins
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        anchors = np.stack((xs + 0.5, ys + 0.5), -1).reshape(-1, 2)
        lt, rb = anchors - dist[:, :2], anchors + dist[:, 2:]
        xywh = np.concatenate(((lt + rb) / 2, rb - lt), 1) * stride
        rows.append(np.concatenate((xywh, sigmoid(fmap[..., 4 * reg_max:4 * reg_max + nc].reshape(h * w, nc))), 1))
    return np.concatenate(rows, 0).astype(np.float32)


def _iou(box, boxes):
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    return inter / (area + areas - inter)


def nms(pred, conf=DETECT_CONF, iou=DETECT_IOU, max_det=MAX_DET, multi_label=False, agnostic=False):
    """``(anchors, 4 + nc)`` xywh + scores -> ``(n, 6)`` xyxy, score, class; class-aware greedy NMS.

    A box is suppressed by a higher-scoring one of its class with IoU above ``iou``
    (Ultralytics' rule; edgeprune's tests check the two agree).
    """
    nc = pred.shape[1] - 4
    x = pred[pred[:, 4:].max(1) > conf]
    boxes = np.concatenate((x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2), 1)
    scores = x[:, 4:]
    if multi_label and nc > 1:
        i, j = np.nonzero(scores > conf)
        dets = np.concatenate((boxes[i], scores[i, j, None], j[:, None].astype(np.float32)), 1)
    else:
        j = scores.argmax(1)
        best = scores[np.arange(len(j)), j]
        dets = np.concatenate((boxes, best[:, None], j[:, None].astype(np.float32)), 1)[best > conf]
    order = np.argsort(-dets[:, 4], kind="stable")[:MAX_NMS]
    shifted = dets[:, :4] + dets[:, 5:6] * (0 if agnostic else MAX_WH)
    keep = []
    while order.size and len(keep) < max_det:
        first, order = order[0], order[1:]
        keep.append(first)
        order = order[_iou(shifted[first], shifted[order]) <= iou]
    return dets[keep].astype(np.float32).reshape(-1, 6)
