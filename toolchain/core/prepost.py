"""Pre- and post-processing of a deployed YOLO detector: letterbox, splice/unsplice, decode, NMS.

Why one module: calibration, artifact evaluation, the host bench harness and the KV260 board
script must feed identical pixels and read outputs the same way, or numbers from different
backends are not comparable. The board has numpy and OpenCV but neither torch nor edgeprune,
so ``edgeprune deploy vitis`` embeds this file, verbatim, in ``run_kv260.py``; that is why it
imports nothing but numpy and OpenCV and keeps to syntax every Python 3 on a board runs (no
``from __future__``, no ``X | Y`` annotations).

The letterbox matches Ultralytics' (resize keeping aspect, centre, pad with 114); Darknet
models are stretched to the input size unless their cfg says ``letter_box=1`` (:func:`fit`
takes the mode from the artifact's metadata). Every model's outputs become one layout,
``(batch, 4 + nc, anchors)`` with xywh boxes in input pixels and class scores, through
:func:`predictions` and the head description an artifact carries (:data:`HEAD_FORMATS`), so
NMS, metrics and the board script are the same for every model source. Splicing puts
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
    """How an image was fitted into the network input: scale per axis, then (left, top) padding.

    A letterbox has equal scales; a stretch (Darknet's default resize) has no padding.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_original(self, boxes_xyxy, shape_hw):
        """Map xyxy boxes from network-input pixels back to the original image, clipped to it."""
        out = boxes_xyxy.copy()
        out[:, [0, 2]] = ((out[:, [0, 2]] - self.pad_x) / self.scale_x).clip(0, shape_hw[1])
        out[:, [1, 3]] = ((out[:, [1, 3]] - self.pad_y) / self.scale_y).clip(0, shape_hw[0])
        return out


def _hw(size):
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def letterbox(image_bgr, size, pad_value=PAD_VALUE):
    """Resize keeping aspect ratio, centre and pad to ``size`` (int = square, or (h, w)); (canvas, Letterbox)."""
    h_out, w_out = _hw(size)
    h, w = image_bgr.shape[:2]
    scale = min(h_out / h, w_out / w)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    resized = image_bgr if (new_w, new_h) == (w, h) else cv2.resize(image_bgr, (new_w, new_h),
                                                                      interpolation=cv2.INTER_LINEAR)
    left, top = int(round((w_out - new_w) / 2 - 0.1)), int(round((h_out - new_h) / 2 - 0.1))
    canvas = np.full((h_out, w_out, 3), pad_value, dtype=np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, Letterbox(scale, scale, left, top)


def stretch(image_bgr, size):
    """Resize to ``size`` (int = square, or (h, w)) ignoring the aspect ratio, as Darknet does by default."""
    h_out, w_out = _hw(size)
    h, w = image_bgr.shape[:2]
    resized = image_bgr if (h, w) == (h_out, w_out) else cv2.resize(image_bgr, (w_out, h_out),
                                                                     interpolation=cv2.INTER_LINEAR)
    return resized, Letterbox(w_out / w, h_out / h, 0, 0)


RESIZE_MODES = ("letterbox", "stretch", "letterbox-grey")  # letterbox-grey: Darknet's letter_box=1 (0.5 grey)


def fit(image_bgr, size, mode="letterbox"):
    """Fit an image into the network input the way the model was trained: (canvas, Letterbox)."""
    if mode == "letterbox":
        return letterbox(image_bgr, size)
    if mode == "stretch":
        return stretch(image_bgr, size)
    if mode == "letterbox-grey":
        return letterbox(image_bgr, size, pad_value=128)
    raise ValueError("unknown resize mode %r; known: %s" % (mode, ", ".join(RESIZE_MODES)))


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


def splice_fit(frames, tile, grid=2, mode="letterbox"):
    """Fit frames of any size into their tiles of one ``tile*grid`` square canvas, row-major, keeping aspect.

    ``frames[i]`` None leaves tile ``i`` grey (a stream that has ended). Returns the canvas and, per
    tile, the :class:`Letterbox` that :func:`unsplice_to_frames` maps that stream's boxes back with.
    """
    canvas = np.full((tile * grid, tile * grid, 3), PAD_VALUE, dtype=np.uint8)
    fits = []
    for i, frame in enumerate(frames):
        if frame is None:
            fits.append(None)
            continue
        fitted, box = fit(frame, tile, mode)
        x, y = tile_origin(i, tile, grid)
        canvas[y:y + tile, x:x + tile] = fitted
        fits.append(box)
    return canvas, fits


def unsplice_to_frames(detections, fits, shapes_hw, tile, grid=2, min_side=1.0):
    """Detections of a :func:`splice_fit` canvas as ``(n, 6)`` per stream, in each stream's own pixels.

    A box belongs to the tile holding its centre, is clipped to that tile and then to its frame
    (so an object cut by a tile border is reported once, inside its stream); None for grey tiles.
    """
    out = []
    for dets, box, shape in zip(unsplice(detections, tile, grid, min_side), fits, shapes_hw):
        if box is None:
            out.append(None)
            continue
        mapped = dets.copy()
        mapped[:, :4] = box.to_original(dets[:, :4], shape)
        keep = (mapped[:, 2] - mapped[:, 0] >= min_side) & (mapped[:, 3] - mapped[:, 1] >= min_side)
        out.append(mapped[keep])
    return out


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


def decode_darknet(maps, heads, input_hw, nc):
    """Per-head raw maps ``(H, W, anchors * (5 + nc))`` of a Darknet model -> ``(rows, 4 + nc)``.

    Darknet's [yolo] maths: xy = (sigmoid(t) * s - (s - 1) / 2 + cell) * stride with s =
    ``scale_x_y``, wh = exp(t) * anchor (anchors in input pixels), scores = objectness * class
    probability. With ``new_coords`` the conv already applied the logistic: no sigmoid, and
    wh = 4 t^2 * anchor (a head with ``host_logistic`` had that logistic cut off the graph, for
    the DPU, and gets it here). Rows are ordered (y, x, anchor) per head, heads in the given order.
    """
    rows = []
    h_in, w_in = input_hw
    for fmap, head in zip(maps, heads):
        h, w, _ = fmap.shape
        anchors = np.asarray(head["anchors"], dtype=np.float32).reshape(-1, 2)
        t = fmap.reshape(h, w, len(anchors), 5 + nc).astype(np.float32)
        if head.get("host_logistic"):
            t = sigmoid(t)
        s = float(head.get("scale_x_y", 1.0))
        if head.get("new_coords"):
            xy, wh, conf = t[..., 0:2], 4.0 * t[..., 2:4] ** 2, t[..., 4:]
        else:
            xy, wh, conf = sigmoid(t[..., 0:2]), np.exp(np.minimum(t[..., 2:4], 50.0)), sigmoid(t[..., 4:])
        xy = xy * s - 0.5 * (s - 1.0)
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        cx = (xy[..., 0] + xs[..., None]) * (w_in / w)
        cy = (xy[..., 1] + ys[..., None]) * (h_in / h)
        bw, bh = wh[..., 0] * anchors[:, 0], wh[..., 1] * anchors[:, 1]
        scores = conf[..., :1] * conf[..., 1:]
        rows.append(np.concatenate((np.stack((cx, cy, bw, bh), -1), scores), -1).reshape(-1, 4 + nc))
    return np.concatenate(rows, 0).astype(np.float32)


# How an artifact's outputs are laid out (its metadata's ``head``), and how they become predictions.
HEAD_FORMATS = ("ultralytics", "dfl", "darknet", "darknet-rows", "yolo-rows")


def _maps_hwc(output, nchw):
    """One image's map as (H, W, C): from a batched NCHW array, or an (H, W, C) map as the DPU gives it."""
    return output.transpose(1, 2, 0) if nchw else output


def predictions(outputs, head, input_hw, nchw=True):
    """An artifact's outputs -> ``(batch, 4 + nc, anchors)``: xywh boxes in input pixels, class scores.

    Args:
        outputs: the artifact's outputs in order (batched NCHW arrays; per-image HWC maps with
            ``nchw=False``, as the board's DPU runner gives them).
        head: the artifact's head description (None or format ``ultralytics``: the first output
            already has this layout; ``dfl``: Ultralytics head maps cut before the decode;
            ``darknet``: the maps feeding each [yolo] layer; ``darknet-rows``: OpenCV's rows;
            ``yolo-rows``: the YOLOv5/YOLOv7 repositories' ``(batch, anchors, 5 + nc)`` rows, xywh in
            pixels, objectness, class probabilities — a class's score is objectness × its probability,
            as their own NMS takes it).
        input_hw: the network input size the outputs were computed at.
    """
    fmt = (head or {}).get("format", "ultralytics")
    if fmt == "ultralytics":
        return outputs[0]
    nc = int(head["nc"])
    if fmt == "yolo-rows":
        rows = np.asarray(outputs[0], dtype=np.float32)
        if rows.ndim != 3 or rows.shape[-1] != 5 + nc:
            raise ValueError(f"yolo-rows expects (batch, anchors, {5 + nc}) rows, got {rows.shape}")
        scores = rows[..., 5:] * rows[..., 4:5]
        return np.concatenate((rows[..., :4], scores), -1).transpose(0, 2, 1)
    if fmt == "darknet-rows":
        scale = np.array([input_hw[1], input_hw[0], input_hw[1], input_hw[0]], dtype=np.float32)
        rows = np.concatenate([np.asarray(o).reshape(-1, 5 + nc) for o in outputs], 0)
        return np.concatenate((rows[:, :4] * scale, rows[:, 5:]), 1).T[None].astype(np.float32)
    batch = len(outputs[0]) if nchw else 1
    images = []
    for b in range(batch):
        maps = [_maps_hwc(o[b] if nchw else o, nchw) for o in outputs]
        if fmt == "dfl":
            images.append(decode(maps, head["strides"], int(head["reg_max"]), nc))
        elif fmt == "darknet":
            by_size = _match_heads(maps, head["heads"], input_hw)
            images.append(decode_darknet(by_size, head["heads"], input_hw, nc))
        else:
            raise ValueError("unknown head format %r; known: %s" % (fmt, ", ".join(HEAD_FORMATS)))
    return np.stack([img.T for img in images])


def _match_heads(maps, heads, input_hw):
    """Maps in the order of ``heads``, matched by grid size when a runtime reorders outputs (the DPU does)."""
    if all("stride" not in h for h in heads):
        return maps
    wanted = [(int(round(input_hw[0] / h["stride"][1])), int(round(input_hw[1] / h["stride"][0]))) for h in heads]
    sizes = [m.shape[:2] for m in maps]
    if sizes == wanted or sorted(sizes) != sorted(wanted) or len(set(wanted)) != len(wanted):
        return maps
    return [maps[sizes.index(size)] for size in wanted]


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
