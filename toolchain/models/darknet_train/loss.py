"""The YOLOv3/v4 anchor-based loss of a Darknet cfg's ``[yolo]`` layers, in PyTorch.

Why not Ultralytics' loss: Ultralytics' heads are anchor-free; a Darknet model predicts offsets
against the anchors of its ``[yolo]`` sections and was tuned with their keys. This loss follows
AlexeyAB Darknet's ``forward_yolo_layer``:
* Assignment: a ground-truth box goes to the anchor (of all ``num`` anchors) whose shape fits
  it best (IoU of centred boxes); the head whose ``mask`` holds that anchor predicts it in the
  grid cell containing the box centre. With ``iou_thresh`` < 1 every other anchor of the mask
  whose shape IoU exceeds it is assigned too (YOLOv4).
* Objectness: binary cross-entropy towards 1 at assigned cells and towards 0 elsewhere, except
  predictions whose box already overlaps some ground truth by more than ``ignore_thresh``;
  scaled by ``obj_normalizer``.
* Classes: binary cross-entropy per class at assigned cells (``label_smooth_eps`` applied),
  scaled by ``cls_normalizer``.
* Boxes: ``iou_loss=mse`` is the squared error of the decoded offsets, weighted by
  ``2 - w*h`` (small boxes count more); ``iou``/``giou``/``diou``/``ciou`` use ``1 - IoU``
  of that kind (Ultralytics' ``bbox_iou``). Both scaled by ``iou_normalizer``.
* Decoding is the module's own: ``scale_x_y`` stretches the sigmoid offset; with
  ``new_coords`` the conv already applied the logistic, so offsets and scores arrive in [0, 1]
  and the size is ``(2 t)^2 * anchor``.

Like Darknet's deltas, every term is summed over cells and anchors and averaged over the images
of the batch, so the cfg's ``learning_rate`` keeps its meaning. Keys that shape Darknet's loss
but are not implemented here (``objectness_smooth``, ``focal_loss``, ``counters_per_class``,
``max_delta``, ``truth_thresh`` < 1) are reported by :func:`unsupported_keys`, never silently
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cfg_codegen.errors import CfgError
from cfg_codegen.layers import Network, Yolo
from cfg_codegen.parser import section_options

IOU_LOSSES = ("mse", "iou", "giou", "diou", "ciou")
NOT_MODELLED = {"objectness_smooth": "0", "focal_loss": "0", "counters_per_class": None, "max_delta": None}
EXP_CLAMP = 8.0  # exp(t) of box sizes is clamped here, so an untrained head cannot overflow


@dataclass(frozen=True)
class HeadLossConfig:
    """The loss keys of one ``[yolo]`` section (AlexeyAB Darknet's defaults where absent)."""

    layer: int
    ignore_thresh: float = 0.5
    iou_thresh: float = 1.0
    iou_loss: str = "mse"
    iou_normalizer: float = 0.75
    obj_normalizer: float = 1.0
    cls_normalizer: float = 1.0
    label_smooth_eps: float = 0.0

    @classmethod
    def from_network(cls, network: Network, yolo: Yolo) -> "HeadLossConfig":
        opts = section_options(network, yolo.index)
        kind_opt = opts.raw("iou_loss")
        kind = kind_opt.value.strip().lower() if kind_opt else "mse"
        if kind not in IOU_LOSSES:
            raise CfgError(f"{opts.origin.describe('iou_loss', kind_opt.line)}: iou_loss '{kind_opt.value}' is not "
                           f"one of {', '.join(IOU_LOSSES)}")
        return cls(layer=yolo.index, ignore_thresh=opts.float("ignore_thresh", 0.5),
                   iou_thresh=opts.float("iou_thresh", 1.0), iou_loss=kind,
                   iou_normalizer=opts.float("iou_normalizer", 0.75), obj_normalizer=opts.float("obj_normalizer", 1.0),
                   cls_normalizer=opts.float("cls_normalizer", 1.0),
                   label_smooth_eps=opts.float("label_smooth_eps", 0.0))


def unsupported_keys(network: Network) -> list[str]:
    """Darknet loss keys set in the cfg that this loss does not model, as readable notes."""
    notes = []
    for yolo in network.yolo_layers:
        section = network.sections[yolo.index + 1]
        for key, harmless in NOT_MODELLED.items():
            opt = section.get(key)
            if opt is not None and opt.value.strip() != harmless:
                notes.append(f"{yolo.origin.describe(key, opt.line)}: not modelled by the PyTorch loss, ignored")
        truth = section.get("truth_thresh")
        if truth is not None and float(truth.value) < 1.0:
            notes.append(f"{yolo.origin.describe('truth_thresh', truth.line)}: < 1 is not modelled, ignored")
    return notes


def _shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of centred boxes: ``wh`` (N, 2) against ``anchors`` (A, 2) -> (N, A)."""
    inter = torch.min(wh[:, None], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def _xywh_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of centre-size boxes ``a`` (N, 4) and ``b`` (M, 4) -> (N, M)."""
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    inter = (torch.min(a2[:, None], b2[None]) - torch.max(a1[:, None], b1[None])).clamp_min(0).prod(-1)
    return inter / (a[:, 2:].prod(-1)[:, None] + b[:, 2:].prod(-1)[None] - inter + 1e-9)


class DarknetYoloLoss(nn.Module):
    """Loss of the maps a cfg_codegen model returns (one per ``[yolo]``, in order) against a batch.

    ``targets`` is Ultralytics' batch layout: ``batch_idx`` (N,), ``cls`` (N, 1) and ``bboxes``
    (N, 4) as centre-size fractions of the input. Returns the total (averaged over the images)
    and its parts ``(box, obj, cls)`` detached, for the results table.
    """

    def __init__(self, network: Network):
        super().__init__()
        self.heads = network.yolo_layers
        self.configs = [HeadLossConfig.from_network(network, y) for y in self.heads]
        all_anchors = {y.anchors for y in self.heads}
        if len(all_anchors) != 1:
            raise CfgError(f"{network.path}: the [yolo] layers list different anchors; Darknet assigns a box to the "
                           "best of one shared anchor list")
        self.register_buffer("anchors", torch.tensor(all_anchors.pop(), dtype=torch.float32), persistent=False)
        self.nc = self.heads[0].classes

    def forward(self, maps: tuple[torch.Tensor, ...], targets: dict, input_hw: tuple[int, int]):
        height, width = input_hw
        batch = maps[0].shape[0]
        device = maps[0].device
        boxes = targets["bboxes"].to(device) * torch.tensor([width, height, width, height], device=device)
        cls = targets["cls"].to(device).view(-1).long()
        image = targets["batch_idx"].to(device).view(-1).long()
        best_anchor = _shape_iou(boxes[:, 2:], self.anchors).argmax(1) if len(boxes) else boxes.new_zeros(0).long()
        shape_iou = _shape_iou(boxes[:, 2:], self.anchors) if len(boxes) else boxes.new_zeros((0, len(self.anchors)))
        parts = torch.zeros(3, device=device)
        for yolo, cfg, raw in zip(self.heads, self.configs, maps, strict=True):
            parts = parts + torch.stack(self._head(yolo, cfg, raw, boxes, cls, image, best_anchor, shape_iou,
                                                   (height, width)))
        parts = parts / batch
        return parts.sum(), parts.detach()

    def _head(self, yolo: Yolo, cfg: HeadLossConfig, raw, boxes, cls, image, best_anchor, shape_iou, input_hw):
        from ultralytics.utils.metrics import bbox_iou

        height, width = input_hw
        b, _, h, w = raw.shape
        mask = torch.tensor(yolo.mask, device=raw.device)
        na = len(yolo.mask)
        p = raw.view(b, na, self.nc + 5, h, w).permute(0, 1, 3, 4, 2)
        stride = torch.tensor([width / w, height / h], device=raw.device)
        anchors = self.anchors.to(raw.device)[mask] / stride  # in grid cells
        pred, obj, scores, logits = decode_grid(p, yolo, anchors)
        grid_boxes = boxes / torch.cat((stride, stride))
        # Which (image, anchor, y, x) predict which box: the best-fitting anchor, plus any above iou_thresh.
        assigned = best_anchor[:, None] == mask[None]
        if cfg.iou_thresh < 1.0:
            assigned |= shape_iou[:, mask] > cfg.iou_thresh
        t_idx, a_idx = assigned.nonzero(as_tuple=True)
        gxi = grid_boxes[t_idx, 0].long().clamp(0, w - 1)
        gyi = grid_boxes[t_idx, 1].long().clamp(0, h - 1)
        img = image[t_idx]

        # Objectness targets: 1 where assigned; 0 elsewhere unless the prediction overlaps a truth > ignore_thresh.
        with torch.no_grad():
            negative = torch.ones_like(obj, dtype=torch.bool)
            for i in range(b):
                truths = grid_boxes[image == i]
                if len(truths):
                    best = _xywh_iou(pred[i].reshape(-1, 4), truths).amax(1).view(na, h, w)
                    negative[i] &= best <= cfg.ignore_thresh
            negative[img, a_idx, gyi, gxi] = False
        obj_target = torch.zeros_like(obj)
        obj_target[img, a_idx, gyi, gxi] = 1.0
        weight = negative.float()
        weight[img, a_idx, gyi, gxi] = 1.0
        bce = F.binary_cross_entropy_with_logits if logits else _bce_probabilities
        obj_loss = cfg.obj_normalizer * (bce(obj, obj_target, reduction="none") * weight).sum()

        if not len(t_idx):
            zero = raw.sum() * 0.0
            return zero, obj_loss, zero
        pred_pos = pred[img, a_idx, gyi, gxi]
        truth = grid_boxes[t_idx]
        if cfg.iou_loss == "mse":
            offset_t = truth[:, :2] - torch.stack((gxi, gyi), -1)
            size_t = torch.log(truth[:, 2:] / anchors[a_idx])
            size_p = torch.log((pred_pos[:, 2:] / anchors[a_idx]).clamp_min(1e-9))
            weight_small = 2.0 - (boxes[t_idx, 2] / width) * (boxes[t_idx, 3] / height)
            err = ((pred_pos[:, :2] - torch.stack((gxi, gyi), -1) - offset_t) ** 2).sum(-1) + \
                ((size_p - size_t) ** 2).sum(-1)
            box_loss = cfg.iou_normalizer * 0.5 * (weight_small * err).sum()
        else:
            kind = {"giou": {"GIoU": True}, "diou": {"DIoU": True}, "ciou": {"CIoU": True}}.get(cfg.iou_loss, {})
            iou = bbox_iou(pred_pos, truth, xywh=True, **kind).view(-1)
            box_loss = cfg.iou_normalizer * (1.0 - iou).sum()

        eps = cfg.label_smooth_eps
        cls_target = torch.full_like(scores[img, a_idx, gyi, gxi], eps / self.nc)
        cls_target[torch.arange(len(t_idx), device=raw.device), cls[t_idx]] = 1.0 - eps
        cls_loss = cfg.cls_normalizer * bce(scores[img, a_idx, gyi, gxi], cls_target, reduction="none").sum()
        return box_loss, obj_loss, cls_loss


def decode_grid(p: torch.Tensor, yolo: Yolo, anchors: torch.Tensor):
    """Boxes of one head in grid cells, and its objectness and class outputs.

    ``p`` is the head map as (batch, anchor, y, x, 5 + classes), ``anchors`` the mask's anchors
    in grid cells. The maths is :class:`cfg_codegen.runtime.YoloHead`'s (the tests hold them
    equal), so training optimises exactly what inference decodes. Returns ``(boxes, obj,
    scores, logits)``: with ``logits`` False (``new_coords``) obj and scores are probabilities.
    """
    na, h, w = p.shape[1:4]
    s = yolo.scale_x_y
    if yolo.new_coords:
        xy = p[..., 0:2] * s - 0.5 * (s - 1)
        wh = 4 * p[..., 2:4] ** 2 * anchors.view(1, na, 1, 1, 2)
    else:
        xy = torch.sigmoid(p[..., 0:2]) * s - 0.5 * (s - 1)
        wh = torch.exp(p[..., 2:4].clamp(max=EXP_CLAMP)) * anchors.view(1, na, 1, 1, 2)
    gy, gx = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij")
    boxes = torch.cat((xy + torch.stack((gx, gy), -1).view(1, 1, h, w, 2), wh), -1)
    return boxes, p[..., 4], p[..., 5:], not yolo.new_coords


def _bce_probabilities(p: torch.Tensor, target: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Binary cross-entropy of outputs that are already probabilities (``new_coords`` heads)."""
    return F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), target, reduction=reduction)


def init_head_biases(model: nn.Module, network: Network, prior: float = 0.01) -> None:
    """Start every head's objectness near ``prior`` (a from-scratch net otherwise predicts 0.5 everywhere).

    The bias of each ``[yolo]``'s conv for the objectness channel is set to ``log(p / (1 - p))``
    (the prior-probability initialisation of RetinaNet); without it the thousands of negative
    cells swamp the first updates. Heads with ``new_coords`` get the same prior through the logistic.
    """
    import math

    logit = math.log(prior / (1 - prior))
    with torch.no_grad():
        for yolo in network.yolo_layers:
            block = getattr(model, f"l{yolo.index - 1}", None)
            conv = getattr(block, "conv", None)
            if conv is None or conv.bias is None:
                continue
            bias = conv.bias.view(len(yolo.mask), yolo.classes + 5)
            bias[:, 4] = logit
