"""cfg-prune: pruned cfg + weights load back (ours and OpenCV's) and compute what the original did.

Channels whose BN gamma is 0 output the constant act(beta); removing them and folding that
constant into the consumers must not change the network's outputs (exactly when the constant is
0, or when the consumers are 1x1 convs). Residual units whose last conv outputs 0 are identities,
so removing them must not change the outputs either.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from darknet_testlib import cfg_path, opencv_outputs, random_image, rel_err, resized_copy, rows_err

from cfg_codegen.build import build_model, random_model
from cfg_codegen.codegen import OPENCV_BN_EPS
from cfg_codegen.layers import Shortcut
from cfg_codegen.parser import parse_cfg
from cfg_codegen.prune import PruneConfig, prune_darknet, residual_units
from cfg_codegen.weights import ConvWeights, DarknetWeights, read_weights, write_weights
from toolchain.core.errors import InputFileError, PruningError


def zero_channels(weights: DarknetWeights, pick, beta_too: bool = True) -> DarknetWeights:
    """Copy of ``weights`` with gamma (and beta) set to 0 where ``pick(layer, n) -> bool mask`` says."""
    convs = {}
    for index, conv in weights.convs.items():
        if conv.scales is None:
            convs[index] = conv
            continue
        mask = pick(index, len(conv.scales))
        scales, biases = conv.scales.copy(), conv.biases.copy()
        scales[mask] = 0
        if beta_too:
            biases[mask] = 0
        convs[index] = ConvWeights(biases, conv.weights, scales, conv.rolling_mean, conv.rolling_variance)
    return DarknetWeights(weights.header, convs)


def outputs(net, weights, image, bn_eps=1e-5):
    with torch.no_grad():
        return [m.numpy() for m in build_model(net, weights, bn_eps)(torch.from_numpy(image))]


def prune_and_compare(cfg, weights, tmp_path, config, width, height, tol=1e-5):
    """Prune; the pruned model must equal the original, and OpenCV must load and agree with it."""
    net = parse_cfg(cfg)
    write_weights(tmp_path / "in.weights", net, weights)
    report = prune_darknet(cfg, tmp_path / "in.weights", tmp_path / "out", config)
    pruned = parse_cfg(report.cfg)
    pruned_weights = read_weights(report.weights, pruned)
    image = random_image(3, height, width, seed=9)
    for before, after in zip(outputs(net, weights, image), outputs(pruned, pruned_weights, image), strict=True):
        assert rel_err(after, before) < tol
    cv_maps, _ = opencv_outputs(report.cfg, report.weights, image, [y.index for y in pruned.yolo_layers])
    for ours, theirs in zip(outputs(pruned, pruned_weights, image, OPENCV_BN_EPS), cv_maps, strict=True):
        assert rel_err(ours, theirs) < 1e-4
    return report, pruned


@pytest.mark.parametrize("name", ["yolov3-tiny.cfg", "yolov4-tiny.cfg",
                                  "pruned/prune_0.8_keep_0.1_8_shortcut_yolov4_dpu.cfg"])
def test_zero_gamma_channels_are_removed_without_changing_outputs(name, tmp_path):
    cfg = resized_copy(cfg_path(name), 160, 128, tmp_path)
    net = parse_cfg(cfg)
    _, weights = random_model(net, 128, 160, seed=3)
    rng = np.random.default_rng(0)
    weights = zero_channels(weights, lambda index, n: rng.random(n) < 0.6)
    report, pruned = prune_and_compare(cfg, weights, tmp_path, PruneConfig(global_percent=0.3), 160, 128)
    assert report.threshold == 0.0
    assert report.channels_after < 0.75 * report.channels_before
    assert report.params_after < report.params_before
    widths = [c.filters for c in pruned.conv_layers]
    assert any(w % 8 for w in widths)  # irregular widths, as pruned cfgs have


SHORTCUT_NET = """[net]
width=48
height=32
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
filters=4
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[convolutional]
filters=21
size=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,9, 12,13
classes=2
num=3
"""


def test_channels_tied_by_a_shortcut_are_pruned_together(tmp_path):
    cfg = tmp_path / "sc.cfg"
    cfg.write_text(SHORTCUT_NET)
    net = parse_cfg(cfg)
    _, weights = random_model(net, 32, 48)
    zeroed = {0: [2, 5], 2: [5, 6], 1: [0]}  # channel 5 is 0 in both shortcut operands; 2 and 6 in one only
    weights = zero_channels(weights, lambda i, n: np.isin(np.arange(n), zeroed.get(i, [])))
    report, pruned = prune_and_compare(cfg, weights, tmp_path, PruneConfig(global_percent=0.2, keep=0.0), 48, 32)
    assert [c.filters for c in pruned.conv_layers] == [7, 3, 7, 21]


FOLD_NET = """[net]
width=40
height=24
channels=3

[convolutional]
batch_normalize=1
filters=12
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
batch_normalize=1
filters=6
size=1
stride=1
pad=1
activation=mish

[upsample]
stride=1

[route]
layers=-1,-3

[convolutional]
batch_normalize=1
filters=18
size=1
stride=1
pad=1
activation=swish

[shortcut]
from=-1
activation=leaky

[convolutional]
filters=21
size=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,9, 12,13
classes=2
num=3
"""


def test_constant_of_a_removed_channel_is_folded_into_the_next_convs(tmp_path):
    """gamma = 0 but beta != 0: the channel outputs act(beta); through maxpool, upsample, route and a
    shortcut it reaches 1x1 convs with BN (rolling mean shifted) and without (bias shifted)."""
    cfg = tmp_path / "fold.cfg"
    cfg.write_text(FOLD_NET)
    net = parse_cfg(cfg)
    _, weights = random_model(net, 24, 40, seed=5)
    rng = np.random.default_rng(1)
    weights = zero_channels(weights, lambda i, n: rng.random(n) < 0.5, beta_too=False)
    assert any(np.abs(c.biases[c.scales == 0]).min() > 0 for c in weights.convs.values() if c.scales is not None)
    report, _ = prune_and_compare(cfg, weights, tmp_path, PruneConfig(global_percent=0.3, keep=0.0), 40, 24)
    assert report.channels_after < report.channels_before


def test_keep_guarantees_a_share_of_every_layer(tmp_path):
    cfg = resized_copy(cfg_path("yolov3-tiny.cfg"), 96, 64, tmp_path)
    net = parse_cfg(cfg)
    _, weights = random_model(net, 64, 96)
    write_weights(tmp_path / "w.weights", net, weights)
    report = prune_darknet(cfg, tmp_path / "w.weights", tmp_path / "out", PruneConfig(global_percent=0.95, keep=0.3))
    pruned = parse_cfg(report.cfg)
    for before, after in zip(net.conv_layers, pruned.conv_layers, strict=True):
        assert after.filters >= max(1, int(0.3 * before.filters))
        if not before.batch_normalize:
            assert after.filters == before.filters  # heads are never pruned
    assert report.channels_after < 0.5 * report.channels_before


def test_identity_residual_units_are_removed_without_changing_outputs(tmp_path):
    name = "pruned/prune_12_shortcut_prune_0.9_keep_0.01_yolov3-spp.cfg"
    cfg = resized_copy(cfg_path(name), 160, 128, tmp_path)
    net = parse_cfg(cfg)
    units = residual_units(net)
    assert len(units) == sum(isinstance(layer, Shortcut) for layer in net.layers) == 11
    _, weights = random_model(net, 128, 160, seed=2)
    identity = {units[1] - 1, units[4] - 1, units[5] - 1}  # the residual branch outputs leaky(0) = 0
    weights = zero_channels(weights, lambda i, n: np.full(n, i in identity))
    report, pruned = prune_and_compare(cfg, weights, tmp_path, PruneConfig(shortcuts=3), 160, 128)
    assert sum(isinstance(layer, Shortcut) for layer in pruned.layers) == 8
    assert report.removed_layers == tuple(sorted(i for s in (units[1], units[4], units[5]) for i in (s - 2, s - 1, s)))
    assert len(pruned.layers) == len(net.layers) - 9


def test_errors(tmp_path):
    cfg = tmp_path / "sc.cfg"
    cfg.write_text(SHORTCUT_NET)
    net = parse_cfg(cfg)
    write_weights(tmp_path / "w.weights", net, random_model(net, 32, 48)[1])
    with pytest.raises(PruningError, match="asked to remove 2 residual units, only 1 are removable"):
        prune_darknet(cfg, tmp_path / "w.weights", tmp_path / "out", PruneConfig(shortcuts=2))
    with pytest.raises(PruningError, match="nothing to do"):
        PruneConfig()
    with pytest.raises(PruningError, match=r"global percent must be in \[0, 1\)"):
        PruneConfig(global_percent=1.0)
    out = tmp_path / "out2"
    out.mkdir()
    victim = out / "pruned.cfg"  # the input sits where the output would go
    victim.write_text(SHORTCUT_NET)
    with pytest.raises(InputFileError, match="is the input file"):
        prune_darknet(victim, tmp_path / "w.weights", out, PruneConfig(global_percent=0.1))
    assert victim.read_text() == SHORTCUT_NET and not (out / "pruned.weights").exists()


def test_seed_002_flow_from_the_command_line(tmp_path):
    """cfg-prune (channels + residual units) then cfg2ir --decode: the IR's rows are OpenCV's rows
    for the pruned pair, i.e. the pruned model deploys to OpenVINO with unchanged post-processing."""
    import openvino as ov

    cfg = resized_copy(cfg_path("pruned/prune_12_shortcut_prune_0.9_keep_0.01_yolov3-spp.cfg"), 160, 128, tmp_path)
    net = parse_cfg(cfg)
    write_weights(tmp_path / "w.weights", net, random_model(net, 128, 160, seed=6)[1])

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args), "--json"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    report = cli("cfg-prune", cfg, tmp_path / "w.weights", "--global-percent", 0.5, "--keep", 0.1, "--shortcuts", 2,
                 "--out", tmp_path / "pruned")
    assert report["params"]["ratio"] < 0.7 and len(report["removed_layers"]) == 6
    pruned_cfg, pruned_weights = tmp_path / "pruned" / "pruned.cfg", tmp_path / "pruned" / "pruned.weights"
    ir = cli("cfg2ir", pruned_cfg, pruned_weights, "--out", tmp_path / "ir", "--decode", "--bn-eps", 1e-6,
             "--precision", "fp32")
    assert ir["fidelity"]["max_rel_diff"] <= 1e-4 and ir["source"]["kind"] == "darknet"
    pruned = parse_cfg(pruned_cfg)
    image = random_image(3, 128, 160, seed=4)
    xml = next((tmp_path / "ir").glob("*.xml"))  # the deploy folder is the model folder
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(image)
    _, cv_rows = opencv_outputs(pruned_cfg, pruned_weights, image, [y.index for y in pruned.yolo_layers])
    for port, theirs in zip(compiled.outputs, cv_rows, strict=True):
        boxes, scores, _ = rows_err(result[port], theirs)
        assert boxes < 1e-4 and scores < 1e-4
