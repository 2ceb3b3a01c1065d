"""Numerical parity with OpenCV DNN's Darknet importer (``cv2.dnn.readNetFromDarknet``).

Random parameters are written with our writer and read by OpenCV; both run the same image.
Head maps and decoded rows must agree to 1e-4 relative to the output scale. The models are built
with OpenCV's BatchNorm epsilon (1e-6); Darknet's own (1e-5, our default) is checked separately.
Big cfgs run at 160x128 (W x H, non-square): parity is about the maths, not the size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from darknet_testlib import (
    CONVERTIBLE, OPENCV_CANNOT_LOAD, cfg_path, opencv_outputs, random_image, rel_err, resized_copy, rows_err,
    small_size,
)

from cfg_codegen.build import random_model
from cfg_codegen.codegen import OPENCV_BN_EPS
from cfg_codegen.parser import parse_cfg, parse_cfg_text
from cfg_codegen.weights import write_weights

TOL = 1e-4


def compare_with_opencv(cfg_file, tmp_path, width, height, seed=0, bn_eps=OPENCV_BN_EPS):
    """(map errors, row errors) of our model vs OpenCV on one random image at width x height."""
    net = parse_cfg(cfg_file)
    model, weights = random_model(net, height, width, seed=seed, bn_eps=bn_eps)
    weights_file = tmp_path / "random.weights"
    write_weights(weights_file, net, weights)
    image = random_image(net.net.channels, height, width)
    heads = [y.index for y in net.yolo_layers]
    cv_maps, cv_rows = opencv_outputs(cfg_file, weights_file, image, heads)
    with torch.no_grad():
        maps = model(torch.from_numpy(image))
        rows = model.decode(maps, height, width)
    map_errors = [rel_err(m.numpy(), c) for m, c in zip(maps, cv_maps, strict=True)]
    row_errors = [rows_err(r.numpy(), c, y.thresh) + (c[:, 5:].size,)
                  for r, c, y in zip(rows, cv_rows, net.yolo_layers, strict=True)]
    for c in cv_maps:
        assert 0.1 < float(np.abs(c).std()) and np.abs(c).max() < 50, "random outputs must be neither flat nor huge"
    return map_errors, row_errors


def assert_close(map_errors, row_errors):
    assert max(map_errors) < TOL, map_errors
    for boxes, scores, skipped, total in row_errors:
        assert boxes < TOL and scores < TOL, row_errors
        assert skipped <= max(3, 1e-3 * total), "too many class scores sit on the threshold to be compared"


# make test compares one cfg of each kind (tiny with shortcuts, tiny, CSP with swish and new_coords logistic
# heads, YOLOv7, scale_channels/dropout, a pruned DPU cfg); make test-full compares every cfg of the folder.
QUICK_PARITY = {"yolov3-tiny-prn.cfg", "yolov4-tiny.cfg", "yolov4-csp-swish.cfg", "yolov7-tiny.cfg", "enet-coco.cfg",
                "pruned/prune_0.8_keep_0.1_8_shortcut_yolov4_dpu.cfg"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in QUICK_PARITY else pytest.mark.full)
                                  for n in CONVERTIBLE if n.split("/")[-1] not in OPENCV_CANNOT_LOAD])
def test_real_cfg_matches_opencv(name, tmp_path):
    width, height = small_size(name)
    cfg_file = resized_copy(cfg_path(name), width, height, tmp_path)
    assert_close(*compare_with_opencv(cfg_file, tmp_path, width, height))


@pytest.mark.parametrize("name", ["yolov3-tiny.cfg", "yolov4-tiny-3l.cfg",
                                  "pruned/normal_prune_0.5_yolov4-tiny-person.cfg"])
def test_small_cfgs_at_320x256(name, tmp_path):
    cfg_file = resized_copy(cfg_path(name), 320, 256, tmp_path)
    assert_close(*compare_with_opencv(cfg_file, tmp_path, 320, 256, seed=5))


# One cfg per family of edge cases, at sizes that are not multiples of the strides.
NET = "[net]\nwidth={w}\nheight={h}\nchannels=3\n"
CONV = "[convolutional]\nbatch_normalize={bn}\nfilters={f}\nsize={k}\nstride={s}\npad=1\nactivation={a}\n"


def conv(f, k=3, s=1, a="leaky", bn=1):
    return CONV.format(f=f, k=k, s=s, a=a, bn=bn)


def head(classes, extra="", prev_filters=None):
    return (conv(3 * (classes + 5), k=1, a="linear" if "new_coords" not in extra else "logistic", bn=0)
            + f"[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses={classes}\nnum=3\n{extra}")


SYNTHETIC = {
    # maxpool: even sizes at stride 1 (pad 2 before / 3 after for size 6), odd input with 2/2, explicit padding
    "maxpool": (101, 75, NET + conv(8, s=2) + "[maxpool]\nsize=6\nstride=1\n" + "[maxpool]\nsize=8\nstride=1\n"
                + "[maxpool]\nsize=2\nstride=2\n" + "[maxpool]\nsize=3\nstride=2\npadding=0\n" + head(2)),
    # shortcut: from a wider and from a narrower layer (Darknet adds the first min(C) channels).
    # Not here: AlexeyAB's multi-source "from=-1,-3"; OpenCV silently uses only the first source
    # (test_layer_maths checks ours against Darknet's loop instead).
    "shortcut_widths": (96, 64, NET + conv(16, s=2) + conv(8) + "[shortcut]\nfrom=-2\nactivation=leaky\n"
                        + conv(24) + "[shortcut]\nfrom=-2\n" + conv(24) + "[shortcut]\nfrom=-2\nactivation=mish\n"
                        + head(1)),
    # route: groups on one input (OpenCV cannot load grouped routes of several inputs; those are
    # checked against Darknet's loop in test_layer_maths), absolute index 0, upsample, 1x1 stride 2
    "routes": (96, 64, NET + conv(16, s=2) + conv(12, k=1, s=2) + "[route]\nlayers=-1\ngroups=3\ngroup_id=2\n"
               + "[upsample]\nstride=2\n" + "[route]\nlayers=-1,0\n" + conv(16, a="swish") + head(3, "scale_x_y=1.1")),
    # every activation OpenCV knows, new_coords and a custom thresh
    "activations": (64, 96, NET + conv(8, a="relu") + conv(8, a="tanh") + conv(8, a="logistic") + conv(8, a="mish")
                    + conv(8, a="swish", s=2) + conv(8, a="linear")
                    + head(4, "scale_x_y=2.0\nnew_coords=1\nthresh=0.5")),
    # squeeze-excitation and spatial attention as in enet / the sam cfg
    "attention": (64, 64, NET + conv(16, s=2) + "[avgpool]\n" + conv(16, k=1, a="logistic", bn=0)
                  + "[scale_channels]\nfrom=-3\n" + conv(16, a="logistic") + "[sam]\nfrom=-2\n"
                  + "[dropout]\nprobability=.3\n"
                  + head(2)),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_edge_cases_match_opencv(name, tmp_path):
    width, height, text = SYNTHETIC[name]
    text = text.format(w=width, h=height)
    cfg_file = tmp_path / f"{name}.cfg"
    cfg_file.write_text(text)
    parse_cfg_text(text)  # parses without warnings or errors
    assert_close(*compare_with_opencv(cfg_file, tmp_path, width, height, seed=2))


def test_bn_eps_is_darknets_unless_asked(tmp_path):
    """With small BN variances OpenCV's eps (1e-6) and Darknet's (1e-5) give visibly different maps."""
    from cfg_codegen.build import build_model, extract_weights

    width, height, text = SYNTHETIC["routes"]
    cfg_file = tmp_path / "routes.cfg"
    cfg_file.write_text(text.format(w=width, h=height))
    net = parse_cfg(cfg_file)
    model, weights = random_model(net, height, width)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.mul_(1e-4)
                module.weight.mul_(1e-2)
    weights = extract_weights(model, net)
    write_weights(tmp_path / "w.weights", net, weights)
    image = random_image(3, height, width)
    cv_maps, _ = opencv_outputs(cfg_file, tmp_path / "w.weights", image, [y.index for y in net.yolo_layers])
    errors = {}
    for eps in (1e-5, OPENCV_BN_EPS):
        with torch.no_grad():
            maps = build_model(net, weights, bn_eps=eps)(torch.from_numpy(image))
        errors[eps] = rel_err(maps[0].numpy(), cv_maps[0])
    assert errors[OPENCV_BN_EPS] < TOL < 1e-2 < errors[1e-5]
