"""Helpers shared by the cfg_codegen tests: the shared cfg folder, resized cfg copies, OpenCV runs.

The real cfgs live outside the repository (``../shared/darknet-cfg``); tests that need them skip
with a message when the folder is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

CFG_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "darknet-cfg"  # ../shared beside the clone

# Every cfg of shared/darknet-cfg and what edgeprune does with it: "converts" or the start of the
# "unsupported: ..." message. test_parser checks this table against the folder's contents.
EXPECTED = {
    "efficientnet-lite3.cfg": "unsupported: [softmax]",
    "enet-coco.cfg": "converts",
    "yolov2-tiny.cfg": "unsupported: [region]",
    "yolov3-spp.cfg": "converts",
    "yolov3-tiny-prn.cfg": "converts",
    "yolov3-tiny.cfg": "converts",
    "yolov3-tiny_3l.cfg": "converts",
    "yolov3.cfg": "converts",
    "yolov3_pjreddie.cfg": "converts",
    "yolov4-csp-swish.cfg": "converts",
    "yolov4-csp.cfg": "converts",
    "yolov4-p5.cfg": "converts",
    "yolov4-sam-mish-csp-reorg-bfm.cfg": "converts",
    "yolov4-tiny-3l.cfg": "converts",
    "yolov4-tiny.cfg": "converts",
    "yolov4.cfg": "converts",
    "yolov4x-mish.cfg": "converts",
    "yolov7-tiny.cfg": "converts",
    "yolov7.cfg": "converts",
    "yolov7x.cfg": "converts",
    "pruned/normal_prune_0.5_yolov4-tiny-person.cfg": "converts",
    "pruned/prune_0.8_keep_0.1_8_shortcut_yolov3.cfg": "converts",
    "pruned/prune_0.8_keep_0.1_8_shortcut_yolov4_dpu.cfg": "converts",
    "pruned/prune_0.8_yolov3-hand.cfg": "converts",
    "pruned/prune_12_shortcut_prune_0.9_keep_0.01_yolov3-spp.cfg": "converts",
    "pruned/regular_prune_0.7_yolov4-tiny-person.cfg": "converts",
}
CONVERTIBLE = sorted(name for name, outcome in EXPECTED.items() if outcome == "converts")
OPENCV_CANNOT_LOAD = {"yolov4-sam-mish-csp-reorg-bfm.cfg": "OpenCV 4.x has no [reorg3d]"}
# Input sizes that the network's routes accept (reorg3d + routes need multiples of 64 there).
SMALL_SIZE = {"yolov4-sam-mish-csp-reorg-bfm.cfg": (192, 128)}
DEFAULT_SMALL = (160, 128)  # W x H, non-square on purpose


def cfg_path(name: str) -> Path:
    if not CFG_DIR.is_dir():
        pytest.skip(f"{CFG_DIR} is absent; the real Darknet cfgs are needed for this test")
    return CFG_DIR / name


def small_size(name: str) -> tuple[int, int]:
    return SMALL_SIZE.get(Path(name).name, DEFAULT_SMALL)


def resized_copy(src: Path | str, width: int, height: int, out_dir: Path, text: str | None = None) -> Path:
    """A copy of a cfg (or of ``text``) whose [net] width/height are replaced."""
    text = Path(src).read_text() if text is None else text
    text = re.sub(r"(?m)^[ \t]*width[ \t]*=.*$", f"width={width}", text, count=1)
    text = re.sub(r"(?m)^[ \t]*height[ \t]*=.*$", f"height={height}", text, count=1)
    out = out_dir / f"{Path(src).stem}_{width}x{height}.cfg"
    out.write_text(text)
    return out


def opencv_outputs(cfg: Path, weights: Path, image: np.ndarray, yolo_layers: list[int]):
    """OpenCV DNN's head maps (inputs of each [yolo]) and decoded rows, by layer name."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = list(net.getLayerNames())
    # OpenCV numbers its layers its own way (a grouped route becomes several), so take the yolo
    # layers in order; each is preceded by a "permute_" layer whose input is the head map.
    heads = [i for i, name in enumerate(names) if name.startswith("yolo_")]
    assert len(heads) == len(yolo_layers) and all(names[i - 1].startswith("permute_") for i in heads), names
    net.setInput(image)
    outs = net.forward([names[i - 2] for i in heads] + [names[i] for i in heads])
    return outs[:len(yolo_layers)], outs[len(yolo_layers):]


def rel_err(actual, expected) -> float:
    """max |actual - expected| relative to the largest magnitude of ``expected`` (the output scale)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def rows_err(actual, expected, thresh: float = 0.2) -> tuple[float, float, int]:
    """Relative error of decoded rows: (box columns, score columns, class scores skipped).

    Class scores within 1e-5 of the threshold are skipped: OpenCV zeroes scores <= thresh, so a
    1e-7 difference there legitimately flips 0.2 to 0.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    boxes = rel_err(actual[:, :5], expected[:, :5])
    a, e = actual[:, 5:], expected[:, 5:]
    near = (np.abs(a - thresh) < 1e-5) | (np.abs(e - thresh) < 1e-5)
    diff = np.where(near, 0.0, np.abs(a - e))
    return boxes, float(diff.max() / max(np.abs(e).max(), 1e-12)), int(near.sum())


def random_image(channels: int, height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (1, channels, height, width)).astype(np.float32)


LABEL_SCORE, NMS_IOU = 0.5, 0.7  # OpenCV detections kept as labels: score, class-wise NMS IoU


def opencv_detections(cfg, weights, image_bgr, size=256, classes=3):
    """OpenCV DNN's decoded yolo rows for one image, turned into (class, xyxy normalised) after class-wise NMS."""
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(cv2.dnn.blobFromImage(image_bgr, 1 / 255.0, (size, size), swapRB=True, crop=False))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()), 0)
    found = []
    for c in range(classes):
        keep = rows[:, 5 + c] >= LABEL_SCORE
        boxes, scores = rows[keep, :4], rows[keep, 5 + c]
        xywh = [[float(x - w / 2), float(y - h / 2), float(w), float(h)] for x, y, w, h in boxes]
        for i in np.array(cv2.dnn.NMSBoxes(xywh, scores.tolist(), LABEL_SCORE, NMS_IOU)).reshape(-1):
            x, y, w, h = xywh[i]
            found.append((c, np.clip([x, y, x + w, y + h], 0, 1)))
    return found


def opencv_labelled_set(root: Path, val: int = 24, seed: int = 11, size: int = 256, classes: int = 3,
                        text: str | None = None, min_labels: int = 40):
    """A yolov4-tiny (or the cfg ``text``, at ``size``) with random weights, and a synthetic set labelled by
    what OpenCV's importer detects with it.

    Nothing is trained, yet the model scores mAP ~1 on these labels by construction, and anything
    that changes what it detects (a wrong decode, pruning) lowers that: an accuracy signal for
    tests with no trained Darknet model. Returns (cfg, weights, data.yaml).
    """
    from cfg_codegen.build import random_model
    from cfg_codegen.codegen import OPENCV_BN_EPS
    from cfg_codegen.parser import parse_cfg
    from cfg_codegen.weights import write_weights
    from toolchain.core.synth import SynthConfig, generate

    if text is None:
        text = cfg_path("yolov4-tiny.cfg").read_text().replace("classes=80", f"classes={classes}")
        text = text.replace("filters=255", f"filters={3 * (5 + classes)}")
        assert "scale_x_y = 1.05" in text  # the decode's scale_x_y is exercised
    cfg = resized_copy(root / "tiny.cfg", size, size, root, text)
    net = parse_cfg(cfg)
    weights = root / "tiny.weights"
    write_weights(weights, net, random_model(net, size, size, seed=seed, bn_eps=OPENCV_BN_EPS)[1])
    generate(root / "data", SynthConfig(train=2, val=val, imgsz=size, classes=classes, seed=5))
    data = root / "data" / "data.yaml"
    labels = 0
    for image_path in sorted((root / "data" / "images" / "val").glob("*")):
        lines = []
        for c, (x0, y0, x1, y1) in opencv_detections(cfg, weights, cv2.imread(str(image_path)), size, classes):
            if x1 - x0 > 0.01 and y1 - y0 > 0.01:
                lines.append(f"{c} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
        label = root / "data" / "labels" / "val" / f"{image_path.stem}.txt"
        label.write_text("\n".join(lines) + "\n")
        labels += len(lines)
    assert labels >= min_labels, f"only {labels} OpenCV detections: the reference would be too thin to judge a decode"
    return cfg, weights, data


_TINY_CFG = """[net]
width={width}
height={height}
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=3
num=3
"""


def tiny_cfg(width: int = 64, height: int = 64) -> str:
    """A three-layer detector cfg (two conv-BN-leaky, a linear 1x1 conv, one [yolo] head of 3 classes)."""
    return _TINY_CFG.format(width=width, height=height)
