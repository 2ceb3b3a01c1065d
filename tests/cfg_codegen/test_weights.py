"""The .weights reader/writer: Darknet's header and float order, exact round trips, clear size errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from darknet_testlib import cfg_path

from cfg_codegen.build import random_model
from cfg_codegen.errors import WeightsError
from cfg_codegen.parser import parse_cfg, parse_cfg_text
from cfg_codegen.weights import (
    ConvWeights, DarknetWeights, WeightsHeader, expected_floats, read_weights, weights_from_bytes, write_weights,
)

CFG = """[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky

[convolutional]
filters=6
size=1
groups=2
activation=linear
"""


def test_layout_is_darknets_float_order(tmp_path):
    """Header int32 x3 + int64 seen, then BN conv: beta, gamma, mean, var, kernel; plain conv: bias, kernel."""
    net = parse_cfg_text(CFG)
    floats = np.arange(4 * 4 + 4 * 3 * 9 + 6 + 6 * 2 * 1, dtype=np.float32)
    path = tmp_path / "w.weights"
    path.write_bytes(struct.pack("<3iQ", 0, 2, 5, 123456789012) + floats.tobytes())
    weights = read_weights(path, net)
    assert weights.header == WeightsHeader(0, 2, 5, 123456789012)
    bn, plain = weights.convs[0], weights.convs[1]
    assert bn.biases.tolist() == [0, 1, 2, 3] and bn.scales.tolist() == [4, 5, 6, 7]
    assert bn.rolling_mean.tolist() == [8, 9, 10, 11] and bn.rolling_variance.tolist() == [12, 13, 14, 15]
    assert bn.weights.shape == (4, 3, 3, 3) and bn.weights[0, 0, 0, 1] == 17 and bn.weights[-1, -1, -1, -1] == 123
    assert plain.biases.tolist() == list(range(124, 130)) and plain.scales is None
    assert plain.weights.shape == (6, 2, 1, 1) and plain.weights.ravel().tolist() == list(range(130, 142))
    assert expected_floats(net) == len(floats)


@pytest.mark.parametrize("header", [WeightsHeader(0, 1, 0, 7), WeightsHeader(0, 2, 5, 2**40),
                                    WeightsHeader(1, 0, 0, 3)])
def test_round_trip_is_byte_identical(tmp_path, header):
    net = parse_cfg_text(CFG)
    src = tmp_path / "in.weights"
    body = np.random.default_rng(0).standard_normal(expected_floats(net)).astype(np.float32).tobytes()
    src.write_bytes(header.to_bytes() + body)
    assert len(header.to_bytes()) == (16 if header.major * 10 + header.minor < 2 else 20)
    out = tmp_path / "out.weights"
    write_weights(out, net, read_weights(src, net))
    assert out.read_bytes() == src.read_bytes()


def test_round_trip_of_a_real_cfg(tmp_path):
    net = parse_cfg(cfg_path("yolov4-tiny.cfg"))
    first, second = tmp_path / "a.weights", tmp_path / "b.weights"
    write_weights(first, net, random_model(net, 64, 64, seed=3)[1])
    write_weights(second, net, read_weights(first, net))
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size == 20 + 4 * expected_floats(net)


@pytest.mark.parametrize("extra_bytes, fragments", [
    (-8, ["expects 142 floats", "the file has 140", "truncated"]),
    (4, ["expects 142 floats", "the file has 143"]),
    (2, ["not a whole number of float32", "expects 142 floats"]),
])
def test_size_mismatch_says_expected_and_found(tmp_path, extra_bytes, fragments):
    net = parse_cfg_text(CFG, "net.cfg")
    path = tmp_path / "w.weights"
    path.write_bytes(WeightsHeader().to_bytes() + b"\0" * (4 * 142 + extra_bytes))
    with pytest.raises(WeightsError) as info:
        read_weights(path, net)
    for fragment in [str(path), "net.cfg", *fragments]:
        assert fragment in str(info.value)


def test_bad_header_and_missing_file(tmp_path):
    net = parse_cfg_text(CFG)
    short = tmp_path / "short.weights"
    short.write_bytes(b"\0" * 10)
    with pytest.raises(WeightsError, match="10 bytes is too short"):
        read_weights(short, net)
    with pytest.raises(WeightsError, match="cannot read the weights"):
        read_weights(tmp_path / "missing.weights", net)


def test_writer_checks_the_parameters_fit_the_cfg(tmp_path):
    net = parse_cfg_text(CFG)
    floats = np.random.default_rng(1).standard_normal(expected_floats(net)).astype(np.float32)
    good = weights_from_bytes(WeightsHeader().to_bytes() + floats.tobytes(), net)
    wrong_shape = DarknetWeights(good.header, {0: good.convs[0], 1: ConvWeights(good.convs[1].biases, np.zeros(5))})
    with pytest.raises(WeightsError, match=r"expected an array of shape \(6, 2, 1, 1\)"):
        write_weights(tmp_path / "x.weights", net, wrong_shape)
    no_bn = DarknetWeights(good.header, {0: ConvWeights(good.convs[0].biases, good.convs[0].weights), 1: good.convs[1]})
    with pytest.raises(WeightsError, match="batch_normalize=1 in the cfg, but the parameters lack BN arrays"):
        write_weights(tmp_path / "x.weights", net, no_bn)
    assert not (tmp_path / "x.weights").exists()
