"""Layers OpenCV cannot check, against straight transliterations of Darknet's C loops.

OpenCV 4.x has no [reorg3d], adds only the first source of a multi-source [shortcut] and
cannot load a grouped [route] over several layers; Darknet can. So these run our generated
model and compare with the loops of Darknet's maxpool_layer.c / blas.c (reorg_cpu,
shortcut_multilayer_cpu) / route_layer.c / yolo_layer.c written in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfg_codegen.build import random_model
from cfg_codegen.parser import parse_cfg_text
from cfg_codegen.runtime import MaxPool, YoloHead, reorg3d


def darknet_maxpool(x: np.ndarray, size: int, stride: int, padding: int) -> np.ndarray:
    """forward_maxpool_layer: offset -padding/2, out = (extent + padding - size)/stride + 1, -FLT_MAX outside."""
    c, h, w = x.shape
    out_h, out_w = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = np.empty((c, out_h, out_w), np.float32)
    for k in range(c):
        for i in range(out_h):
            for j in range(out_w):
                best = -np.finfo(np.float32).max
                for n in range(size):
                    for m in range(size):
                        y, xx = off + i * stride + n, off + j * stride + m
                        if 0 <= y < h and 0 <= xx < w:
                            best = max(best, x[k, y, xx])
                out[k, i, j] = best
    return out


@pytest.mark.parametrize("size, stride, padding, h, w", [
    (6, 1, 5, 7, 9), (8, 1, 7, 6, 5), (5, 1, 4, 5, 8), (2, 2, 1, 7, 9), (2, 1, 1, 5, 6), (3, 2, 0, 9, 8),
    (3, 2, 2, 8, 11), (2, 2, 0, 7, 7),
])
def test_maxpool_padding_is_darknets(size, stride, padding, h, w):
    x = np.random.default_rng(size * 31 + h).standard_normal((2, h, w)).astype(np.float32) - 3  # all negative-ish
    ours = MaxPool(size, stride, padding)(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_array_equal(ours, darknet_maxpool(x, size, stride, padding))


def darknet_reorg3d(x: np.ndarray, stride: int) -> np.ndarray:
    """reorg_cpu(..., forward=0) as called by AlexeyAB's [reorg3d] with the output's w, h, c."""
    c, h, w = x.shape
    out_c, out_h, out_w = c * stride * stride, h // stride, w // stride
    flat_in, out = x.ravel(), np.empty(out_c * out_h * out_w, np.float32)
    in_c = out_c // (stride * stride)
    for k in range(out_c):
        for j in range(out_h):
            for i in range(out_w):
                in_index = i + out_w * (j + out_h * k)
                c2, offset = k % in_c, k // in_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out[in_index] = flat_in[w2 + out_w * stride * (h2 + out_h * stride * c2)]
    return out.reshape(out_c, out_h, out_w)


@pytest.mark.parametrize("stride", [2, 3])
def test_reorg3d_is_darknets(stride):
    x = np.random.default_rng(stride).standard_normal((3, 6, 12)).astype(np.float32)
    np.testing.assert_array_equal(reorg3d(torch.from_numpy(x)[None], stride)[0].numpy(), darknet_reorg3d(x, stride))


NET = "[net]\nwidth=20\nheight=12\nchannels=3\n"


def conv(filters, size=3):
    return f"[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\npad=1\nactivation=leaky\n"


HEAD = ("[convolutional]\nfilters=18\nsize=1\nactivation=linear\n"
        "[yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\nclasses=1\nnum=3\n")


def layer_outputs(text: str, image: torch.Tensor) -> dict[int, np.ndarray]:
    """Outputs of every layer of the generated model, read from its forward() locals.

    The generated forward() keeps layer i's output in the local ``x{i}``; a profile hook reads
    the frame when forward returns, so the model runs unmodified.
    """
    net = parse_cfg_text(text)
    model, _ = random_model(net, 12, 20, seed=4)
    frames = {}

    def tracer(frame, event, arg):
        if event == "return" and frame.f_code.co_name == "forward" and "x0" in frame.f_locals:
            frames.update(frame.f_locals)
        return tracer

    import sys

    sys.setprofile(tracer)
    try:
        with torch.no_grad():
            model(image)
    finally:
        sys.setprofile(None)
    return {int(k[1:]): v.numpy() for k, v in frames.items() if k.startswith("x") and k[1:].isdigit()}


def test_multi_source_shortcut_is_alexeyabs():
    """shortcut_multilayer_cpu: out[i] = in[i] + sum over sources of add[i] where i < that source's size."""
    text = NET + conv(8) + conv(6) + conv(10) + "[shortcut]\nfrom=-1,-2,-3\nactivation=linear\n" + conv(18, 1) + HEAD
    out = layer_outputs(text, torch.rand(1, 3, 12, 20))
    prev = out[2].ravel()
    expected = prev.copy()
    for src in (2, 1, 0):  # from=-1,-2,-3 relative to layer 3
        add = out[src].ravel()
        n = min(len(add), len(prev))  # flat index: equal h, w, so this is "the first min(C) channels"
        expected[:n] += add[:n]
    np.testing.assert_allclose(out[3].ravel(), expected, rtol=1e-6, atol=1e-6)


def test_grouped_route_over_several_layers_is_darknets():
    """route_layer.c: each input contributes its group_id-th slice of input_size / groups values."""
    text = NET + conv(8) + conv(4) + "[route]\nlayers=-1,-2,0\ngroups=2\ngroup_id=1\n" + conv(18, 1) + HEAD
    out = layer_outputs(text, torch.rand(2, 3, 12, 20))
    for b in range(2):
        parts = []
        for src in (1, 0, 0):
            flat = out[src][b].ravel()
            part = len(flat) // 2
            parts.append(flat[part:2 * part])
        np.testing.assert_array_equal(out[2][b].ravel(), np.concatenate(parts))


def test_upsample_scale_and_sam_and_scale_channels_per_pixel():
    text = (NET + conv(4) + "[upsample]\nstride=3\nscale=0.25\n" + conv(4) + "[sam]\nfrom=-2\nactivation=logistic\n"
            + "[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n" + "[scale_channels]\nfrom=-2\nscale_wh=1\n"
            + conv(18, 1) + HEAD)
    out = layer_outputs(text, torch.rand(1, 3, 12, 20))
    np.testing.assert_allclose(out[1], 0.25 * out[0].repeat(3, axis=2).repeat(3, axis=3), rtol=1e-6)
    np.testing.assert_allclose(out[3], 1 / (1 + np.exp(-(out[2] * out[1]))), rtol=1e-5)
    np.testing.assert_allclose(out[5], out[3] * out[4], rtol=1e-6)  # one value per pixel scales every channel


def darknet_yolo_rows(t: np.ndarray, anchors, classes, scale, new_coords, thresh, net_w, net_h) -> np.ndarray:
    """forward_yolo_layer + get_yolo_box, in OpenCV's row order (batch, y, x, anchor)."""
    b_, _, h, w = t.shape
    rows = []
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for b in range(b_):
        for y in range(h):
            for x in range(w):
                for a, (aw, ah) in enumerate(anchors):
                    v = t[b, a * (5 + classes):(a + 1) * (5 + classes), y, x].astype(np.float64)
                    if not new_coords:
                        v = np.concatenate([sig(v[:2]), v[2:4], sig(v[4:])])
                    tx, ty = v[0] * scale - 0.5 * (scale - 1), v[1] * scale - 0.5 * (scale - 1)
                    if new_coords:
                        bw, bh = v[2] * v[2] * 4 * aw / net_w, v[3] * v[3] * 4 * ah / net_h
                    else:
                        bw, bh = np.exp(v[2]) * aw / net_w, np.exp(v[3]) * ah / net_h
                    probs = v[4] * v[5:]
                    probs = np.where(probs > thresh, probs, 0)
                    rows.append([(x + tx) / w, (y + ty) / h, bw, bh, v[4], *probs])
    return np.array(rows)


@pytest.mark.parametrize("new_coords, scale, thresh", [(False, 1.0, 0.2), (False, 1.05, 0.0), (True, 2.0, 0.3)])
def test_yolo_decode_is_darknets(new_coords, scale, thresh):
    anchors, classes = ((12, 16), (19, 36), (40, 28)), 2
    t = torch.randn(2, 21, 3, 5)
    if new_coords:
        t = torch.sigmoid(t)  # the conv before a new_coords head has activation=logistic
    head = YoloHead(anchors, classes, scale_x_y=scale, new_coords=new_coords, thresh=thresh)
    ours = head.decode(t, 96, 160).numpy()
    np.testing.assert_allclose(ours, darknet_yolo_rows(t.numpy(), anchors, classes, scale, new_coords, thresh, 160, 96),
                               rtol=2e-6, atol=2e-7)
