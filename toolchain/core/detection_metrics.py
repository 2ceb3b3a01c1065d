"""Detection post-processing and mAP for any runner's raw YOLO output.

Why our own loop: an exported artifact must be judged by running *that* artifact (OpenVINO,
ONNX Runtime, INT8...), with the same letterbox, NMS and matching for every backend, so a
difference in mAP is the artifact's and not the pipeline's. NMS and the AP integral come from
Ultralytics (``non_max_suppression``, ``ap_per_class``); the settings are its validator's
(conf 0.001, IoU 0.7, 300 detections, multi-label, IoU thresholds 0.50:0.95).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
VAL_CONF, VAL_IOU, VAL_MAX_DET = 0.001, 0.7, 300


def nms(raw: np.ndarray, nc: int, conf: float = VAL_CONF, iou: float = VAL_IOU, max_det: int = VAL_MAX_DET):
    """Raw ``(B, 4 + nc [+ extra], anchors)`` output → per image ``(n, 6)`` xyxy, score, class."""
    from ultralytics.utils.nms import non_max_suppression

    out = non_max_suppression(torch.from_numpy(np.asarray(raw, dtype=np.float32)), conf_thres=conf, iou_thres=iou,
                              max_det=max_det, nc=nc, multi_label=True)
    return [d[:, :6].numpy() for d in out]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, shape (len(a), len(b))."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match(pred_boxes, pred_cls, gt_boxes, gt_cls) -> np.ndarray:
    """(n_pred, 10) bool: is each prediction a true positive at each IoU threshold.

    Predictions arrive in descending confidence (NMS order). At each threshold every prediction
    first keeps its best-IoU ground truth of its class; a ground truth claimed by several keeps
    the most confident one. This is the Ultralytics validator's rule, so edgeprune's mAP of an
    artifact and ``yolo val`` agree (a greedy by-IoU matching gave the box to a low-confidence
    duplicate and cost 1.6 mAP50-95 points on the committed baseline).
    """
    correct = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return correct
    iou = box_iou(gt_boxes, pred_boxes) * (gt_cls[:, None] == pred_cls[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        gt_idx, pred_idx = np.nonzero(iou >= threshold)
        if not len(gt_idx):
            continue
        best_gt = {}  # prediction -> (iou, gt): each prediction's best ground truth
        for g, p in zip(gt_idx, pred_idx):
            if p not in best_gt or iou[g, p] > best_gt[p][0]:
                best_gt[p] = (iou[g, p], g)
        claimed = {}  # ground truth -> the most confident prediction claiming it (lowest index)
        for p, (_, g) in best_gt.items():
            if g not in claimed or p < claimed[g]:
                claimed[g] = p
        correct[list(claimed.values()), t] = True
    return correct


@dataclass
class MapAccumulator:
    """Collects per-image matches; :meth:`result` computes P, R, mAP50, mAP50-95 per class."""

    nc: int
    tp: list = field(default_factory=list)
    conf: list = field(default_factory=list)
    pred_cls: list = field(default_factory=list)
    target_cls: list = field(default_factory=list)

    def add(self, detections: np.ndarray, gt_cls: np.ndarray, gt_boxes: np.ndarray) -> None:
        boxes, scores, classes = detections[:, :4], detections[:, 4], detections[:, 5].astype(np.int64)
        self.tp.append(match(boxes, classes, gt_boxes, gt_cls))
        self.conf.append(scores)
        self.pred_cls.append(classes)
        self.target_cls.append(gt_cls)

    def result(self) -> dict:
        from ultralytics.utils.metrics import ap_per_class

        target_cls = np.concatenate(self.target_cls) if self.target_cls else np.zeros(0)
        tp = np.concatenate(self.tp) if self.tp else np.zeros((0, 10), bool)
        if tp.shape[0] == 0 or target_cls.size == 0:
            return {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0, "per_class": {}}
        out = ap_per_class(tp, np.concatenate(self.conf), np.concatenate(self.pred_cls), target_cls)
        p, r, ap, classes = out[2], out[3], out[5], out[6]
        per_class = {int(c): {"precision": float(p[i]), "recall": float(r[i]), "map50": float(ap[i, 0]),
                              "map50_95": float(ap[i].mean())} for i, c in enumerate(classes)}
        return {"precision": float(p.mean()), "recall": float(r.mean()), "map50": float(ap[:, 0].mean()),
                "map50_95": float(ap.mean()), "per_class": per_class}
