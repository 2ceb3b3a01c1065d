"""Darknet building blocks in plain PyTorch, copied verbatim into every generated model.py.

Why one file for both uses: ``cfg2py`` must emit a module that imports only torch, and
``cfg2ir``/the parity tests must run exactly the maths a user gets. :mod:`cfg_codegen.codegen`
pastes this file's source (below this docstring) into the generated file, and
:mod:`cfg_codegen.build` executes that generated source, so there is one implementation of
each operation. Keep this module free of imports other than torch.
"""

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-05  # AlexeyAB Darknet folds BN with sqrt(var + .00001); OpenCV's importer uses 1e-6

ACTIVATIONS = {  # Darknet activation name -> module
    "linear": nn.Identity,
    "leaky": lambda: nn.LeakyReLU(0.1),
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "mish": nn.Mish,
    "swish": nn.SiLU,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "hardswish": nn.Hardswish,
    "hard_mish": lambda: HardMish(),
}


def activation(name):
    """The module for a Darknet activation name, e.g. ``activation("leaky")``."""
    return ACTIVATIONS[name]()


class HardMish(nn.Module):
    """AlexeyAB's hard_mish: x if x > 0, x * x / 2 + x if x > -2, else 0."""

    def forward(self, x):
        return x * (x + 2).clamp(0, 2) / 2


class Conv(nn.Module):
    """[convolutional]: Conv2d, then BatchNorm (running statistics) when bn, then the activation."""

    def __init__(self, c_in, c_out, size, stride=1, padding=0, groups=1, bn=True, act="leaky"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, size, stride, padding, groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS) if bn else nn.Identity()
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class MaxPool(nn.Module):
    """[maxpool]: Darknet pads padding // 2 before and the rest after, with -inf.

    The output extent is (extent + padding - size) // stride + 1, so the padding actually used
    after the data can be smaller than padding - padding // 2 (or negative: cropping).
    """

    def __init__(self, size, stride, padding):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x):
        before = self.padding // 2
        pads = []
        for extent in (x.shape[3], x.shape[2]):  # F.pad order: width first
            out = (extent + self.padding - self.size) // self.stride + 1
            pads += [before, (out - 1) * self.stride + self.size - extent - before]
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


def add_first_channels(x, y):
    """Darknet [shortcut] with unequal widths: x + y on the first min(C) channels, x's width."""
    c = min(x.shape[1], y.shape[1])
    if c == x.shape[1]:
        return x + y[:, :c]
    return torch.cat([x[:, :c] + y, x[:, c:]], 1)


def reorg3d(x, stride):
    """[reorg3d] (space to depth): output channel (dy * stride + dx) * C + c."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // stride, stride, w // stride, stride)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(b, stride * stride * c, h // stride, w // stride)


class YoloHead(nn.Module):
    """[yolo]: decodes the map feeding it into OpenCV DNN's yolo rows.

    One row per (y, x, anchor), in that order: [cx, cy, w, h, obj, obj * p(class)...], boxes
    relative to the input size, class scores <= thresh set to 0 (as OpenCV does). Darknet maths:
    xy = (sigmoid(t) * s - (s - 1) / 2 + cell) / grid with s = scale_x_y, wh = exp(t) * anchor /
    input size, obj and classes sigmoid. With new_coords the conv already applied the logistic,
    so there is no sigmoid and wh = (2 t)^2 * anchor / input size.
    """

    def __init__(self, anchors, classes, scale_x_y=1.0, new_coords=False, thresh=0.2):
        super().__init__()
        self.anchors = tuple(anchors)
        self.classes, self.scale_x_y, self.new_coords, self.thresh = classes, scale_x_y, new_coords, thresh
        self.register_buffer("anchor_wh", torch.tensor(self.anchors, dtype=torch.float32), persistent=False)

    def decode(self, t, height, width):
        b, _, h, w = t.shape
        t = t.reshape(b, len(self.anchors), self.classes + 5, h, w).permute(0, 3, 4, 1, 2)
        xy, wh, conf = t[..., 0:2], t[..., 2:4], t[..., 4:]
        if self.new_coords:
            wh = 4 * wh * wh
        else:
            xy, wh, conf = torch.sigmoid(xy), torch.exp(wh), torch.sigmoid(conf)
        xy = xy * self.scale_x_y - 0.5 * (self.scale_x_y - 1)
        gy, gx = torch.meshgrid(torch.arange(h, dtype=t.dtype), torch.arange(w, dtype=t.dtype), indexing="ij")
        cx = (xy[..., 0:1] + gx.reshape(1, h, w, 1, 1)) / w
        cy = (xy[..., 1:2] + gy.reshape(1, h, w, 1, 1)) / h
        box_w = wh[..., 0:1] * self.anchor_wh[:, 0:1].to(t.dtype) / width
        box_h = wh[..., 1:2] * self.anchor_wh[:, 1:2].to(t.dtype) / height
        obj = conf[..., :1]
        scores = obj * conf[..., 1:]
        scores = torch.where(scores > self.thresh, scores, torch.zeros_like(scores))
        rows = torch.cat((cx, cy, box_w, box_h, obj, scores), -1)
        return rows.reshape(b * h * w * len(self.anchors), self.classes + 5)
