"""A small YOLOv7-style detector (see ../README.md): Conv blocks, ImplicitA/ImplicitM, IDetect."""

import math

import torch
from torch import nn


class Conv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class ImplicitA(nn.Module):
    """A learnt per-channel constant added to the input of a prediction conv."""

    def __init__(self, channels):
        super().__init__()
        self.implicit = nn.Parameter(torch.randn(1, channels, 1, 1) * 0.02)

    def forward(self, x):
        return self.implicit + x


class ImplicitM(nn.Module):
    """A learnt per-channel factor on a prediction conv's output."""

    def __init__(self, channels):
        super().__init__()
        self.implicit = nn.Parameter(1.0 + torch.randn(1, channels, 1, 1) * 0.02)

    def forward(self, x):
        return self.implicit * x


class IDetect(nn.Module):
    def __init__(self, nc, anchors, ch, stride):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors), len(anchors[0]) // 2
        self.register_buffer("anchor_grid", torch.tensor(anchors).float().view(self.nl, 1, -1, 1, 1, 2))
        self.register_buffer("stride", torch.tensor(stride, dtype=torch.float32))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def forward(self, xs):
        rows, maps = [], []
        for i in range(self.nl):
            x = self.im[i](self.m[i](self.ia[i](xs[i])))
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            maps.append(x)
            if not self.training:
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float()
                y = x.sigmoid()
                xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
                wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
                rows.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no))
        return maps if self.training else (torch.cat(rows, 1), maps)


class Model(nn.Module):
    """Layers in a Sequential, each with ``f`` (where its input comes from) and ``i`` (its index)."""

    def __init__(self, nc=3, width=16):
        super().__init__()
        w = width
        layers = [Conv(3, w, 3, 2), Conv(w, 2 * w, 3, 2), Conv(2 * w, 4 * w, 3, 2), Conv(4 * w, 4 * w, 3, 1),
                  Conv(4 * w, 8 * w, 3, 2), Conv(8 * w, 16 * w, 3, 2)]
        anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
        head = IDetect(nc, anchors, (4 * w, 8 * w, 16 * w), (8, 16, 32))
        for i, m in enumerate(layers):
            m.f, m.i = -1, i
        head.f, head.i = [3, 4, 5], len(layers)
        self.model = nn.Sequential(*layers, head)
        self.save = [3, 4, 5]
        self.stride = head.stride.clone()
        self.names = [f"class{i}" for i in range(nc)]
        with torch.no_grad():  # the repositories' prior: few objects per cell, classes equally likely
            for conv, s in zip(head.m, (8, 16, 32)):
                b = conv.bias.view(head.na, -1)
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5:] += math.log(0.6 / (nc - 0.99))

    def forward(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x
