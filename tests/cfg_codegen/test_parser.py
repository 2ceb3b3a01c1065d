"""The cfg parser: typed specs with Darknet's defaults, and errors that name file, line, section and key."""

from __future__ import annotations

import re

import pytest
from darknet_testlib import CFG_DIR, EXPECTED, cfg_path

from cfg_codegen.errors import CfgError, UnsupportedCfgError
from cfg_codegen.layers import (
    Activation, AvgPool, Convolutional, Dropout, MaxPool, Reorg3d, Route, Sam, ScaleChannels, Shortcut, Upsample,
    Yolo,
)
from cfg_codegen.parser import parse_cfg, parse_cfg_text
from cfg_codegen.shapes import Shape, infer_shapes

NET = "[net]\nwidth=64\nheight=32\nchannels=3\n"


def conv(filters=8, size=3, stride=1, extra=""):
    return (f"\n[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\n"
            f"activation=leaky\n{extra}")


def yolo_head(classes=2):
    return (f"\n[convolutional]\nfilters={3 * (classes + 5)}\nsize=1\nactivation=linear\n"
            f"\n[yolo]\nmask=0,1,2\nanchors=10,13, 16,30, 33,23\nclasses={classes}\nnum=3\n")


def parse(text, path="t.cfg"):
    return parse_cfg_text(text, path)


def test_convolutional_defaults_and_values():
    net = parse(NET + "\n[convolutional]\nfilters=16\n" + conv(8, 3, 2, "groups=2\n"))
    first, second = net.layers
    # Darknet defaults: size 1, stride 1, no padding, no BN, activation logistic
    assert first == Convolutional(index=0, origin=first.origin, filters=16, size=1, stride=1, padding=0, groups=1,
                                  batch_normalize=False, activation=Activation.LOGISTIC)
    assert any("no activation= given" in w for w in net.warnings)
    assert (second.size, second.stride, second.padding, second.groups, second.batch_normalize) == (3, 2, 1, 2, True)
    assert infer_shapes(net) == (Shape(16, 32, 64), Shape(8, 16, 32))


def test_padding_key_is_used_only_without_pad():
    net = parse(NET + "\n[convolutional]\nfilters=4\nsize=5\npadding=1\nactivation=relu\n"
                + "\n[convolutional]\nfilters=4\nsize=5\npad=1\npadding=0\nactivation=relu6\n")
    assert [layer.padding for layer in net.layers] == [1, 2]
    assert [layer.activation for layer in net.layers] == [Activation.RELU, Activation.RELU6]


def test_route_relative_absolute_zero_and_groups():
    text = NET + conv(8) + conv(16) + "\n[route]\nlayers=-1,0\n" + "\n[route]\nlayers = 1\ngroups=2\ngroup_id=1\n"
    net = parse(text)
    r1, r2 = net.layers[2], net.layers[3]
    assert isinstance(r1, Route) and r1.layers == (1, 0) and r1.inputs == (1, 0)
    assert (r2.layers, r2.groups, r2.group_id) == ((1,), 2, 1)
    assert infer_shapes(net)[2:] == (Shape(24, 32, 64), Shape(8, 32, 64))


def test_shortcut_maxpool_upsample_and_the_rest():
    text = (NET + conv(8) + conv(8) + "\n[shortcut]\nfrom=-2\nactivation=mish\n"
            + "\n[maxpool]\nsize=6\nstride=1\n"
            + "\n[upsample]\nstride=2\nscale=0.5\n"
            + "\n[dropout]\nprobability=.1\n"
            + "\n[reorg3d]\nstride=2\n"
            + conv(32) + "\n[sam]\nfrom=-2\n"
            + "\n[avgpool]\n" + "\n[convolutional]\nfilters=32\nsize=1\nactivation=logistic\n"
            + "\n[scale_channels]\nfrom=-3\nactivation=swish\n")
    net = parse(text)
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [Convolutional, Convolutional, Shortcut, MaxPool, Upsample, Dropout, Reorg3d, Convolutional, Sam,
                     AvgPool, Convolutional, ScaleChannels]
    sc, mp, up, _, reorg, _, sam, _, _, scale = net.layers[2:]
    assert (sc.sources, sc.activation) == ((0,), Activation.MISH)
    assert (mp.size, mp.stride, mp.padding) == (6, 1, 5)  # Darknet's default padding is size - 1
    assert (up.stride, up.scale) == (2, 0.5)
    assert reorg.stride == 2 and sam.source == 6 and (scale.source, scale.activation) == (8, Activation.SWISH)
    shapes = infer_shapes(net)
    assert shapes[3] == Shape(8, 32, 64) and shapes[4] == Shape(8, 64, 128)
    assert shapes[6] == Shape(32, 32, 64) and shapes[9] == Shape(32, 1, 1) and shapes[11] == Shape(32, 32, 64)


def test_yolo_spec():
    net = parse(NET + conv(8) + yolo_head(2).replace("num=3", "num=3\nscale_x_y = 1.05\nnew_coords=1\nmax_delta=5"))
    head = net.layers[-1]
    assert isinstance(head, Yolo)
    assert head.classes == 2 and head.mask == (0, 1, 2) and head.new_coords and head.scale_x_y == 1.05
    assert head.head_anchors == ((10, 13), (16, 30), (33, 23)) and head.thresh == 0.2
    assert net.warnings == ()  # max_delta is a training key: ignored without a warning


def test_comments_whitespace_and_inline_comments():
    text = ("# top\n[net]\n width = 64 \n;x\nheight=32\nchannels=3\n"
            "[convolutional]\nfilters=40\t#32\nsize=1\nactivation=linear\n")
    net = parse(text)
    assert net.layers[0].filters == 40


def test_unknown_and_repeated_keys_warn_with_their_line():
    net = parse(NET + "\n[maxpool]\nsize=2\nstride=2\nsize=3\ncolour=blue\n")
    assert net.layers[0].size == 2  # Darknet's option_find returns the first
    assert any("t.cfg:9: [maxpool] (layer 0) key 'size': repeated" in w for w in net.warnings)
    assert any("t.cfg:10: [maxpool] (layer 0) key 'colour': unknown key" in w for w in net.warnings)


@pytest.mark.parametrize("text, fragments", [
    (NET + "\n[convolutional]\nfilters=abc\n", ["t.cfg:7: [convolutional] (layer 0) key 'filters'", "'abc'"]),
    (NET + "\n[convolutional]\nfilters=8\nsize=0\n", ["t.cfg:8", "key 'size'", "integer >= 1", "'0'"]),
    (NET + "\n[convolutional]\nfilters=6\ngroups=4\n", ["key 'groups'", "filters=6", "groups=4"]),
    (NET + conv(8) + "\n[route]\nlayers=-2\n", ["[route] (layer 1) key 'layers'", "'-2'"]),
    (NET + conv(8) + "\n[route]\nlayers=1\n", ["[route] (layer 1) key 'layers'", "layers before this one"]),
    (NET + conv(8) + "\n[route]\n", ["[route] (layer 1) key 'layers': required key is missing"]),
    (NET + conv(8) + "\n[route]\nlayers=-1,\n", ["key 'layers'", "comma-separated integers"]),
    (NET + conv(8) + "\n[route]\nlayers=-1\ngroups=2\ngroup_id=2\n", ["key 'group_id'", "below groups=2"]),
    (NET + conv(8) + "\n[shortcut]\nfrom=-5\n", ["[shortcut] (layer 1) key 'from'"]),
    (NET + conv(8) + yolo_head(2).replace("anchors=10,13, 16,30, 33,23", "anchors=10,13,16"),
     ["[yolo] (layer 2) key 'anchors'", "6 numbers", "found 3"]),
    (NET + conv(8) + yolo_head(2).replace("mask=0,1,2", "mask=0,1,3"), ["key 'mask'", "0..2"]),
    (NET + conv(8) + "\n[convolutional]\nfilters=20\nsize=1\nactivation=linear\n\n[yolo]\nmask=0,1,2\n"
     "anchors=1,1,2,2,3,3\nclasses=2\nnum=3\n", ["[yolo] (layer 2)", "21 input channels", "gives 20"]),
    (NET + conv(8) + "\n[maxpool]\nsize=2\nstride=2\n" + conv(8) + "\n[route]\nlayers=-1,-3\n",
     ["[route] (layer 3)", "differ in size", "input size 64x32"]),
    (NET + "\n[convolutional]\nfilters=8\nsize=65\n", ["(layer 0)", "input 64x32 (WxH) is too small"]),
    ("[net]\nwidth=64\nheight=32\n", ["key 'channels'", "positive integer"]),
    ("[net]\nwidth=64\nheight=32\nchannels=3\n", ["[net] is the only section"]),
    ("[convolutional]\nfilters=1\n", ["t.cfg:1", "first section is [convolutional]", "[net]"]),
    ("width=3\n[net]\n", ["t.cfg:1", "'width' appears before the first [section]"]),
    (NET + "[conv\n", ["t.cfg:5", "malformed section header '[conv'"]),
    (NET + "[convolutional]\nfilters\n", ["t.cfg:6", "expected key=value"]),
    ("", ["no sections"]),
])
def test_errors_name_file_line_section_and_key(text, fragments):
    with pytest.raises(CfgError) as info:
        parse(text)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    (NET + "\n[region]\nclasses=2\n", "unsupported: [region] at t.cfg:6 (layer 0): the YOLOv2 [region] head"),
    (NET + "\n[mystery]\n", "unsupported: [mystery] at t.cfg:6 (layer 0) (edgeprune builds:"),
    (NET + "\n[convolutional]\nfilters=4\ndilation=2\n",
     "unsupported: t.cfg:8: [convolutional] (layer 0) key 'dilation'=2 (dilated convolution)"),
    (NET + "\n[convolutional]\nfilters=4\nactivation=elu\n", "activation 'elu' (supported: linear, leaky"),
    (NET + conv(4) + "\n[shortcut]\nfrom=-1\nweights_type=per_channel\n", "key 'weights_type'=per_channel"),
    (NET + "\n[maxpool]\nsize=2\nmaxpool_depth=1\n", "key 'maxpool_depth'=1 (max over channels)"),
    (NET + conv(4) + yolo_head(2) + "\n[convolutional]\nfilters=4\n",
     "(layer 3) reads the output of the [yolo] layer 2"),
])
def test_unsupported_features_say_so(text, fragment):
    with pytest.raises(UnsupportedCfgError) as info:
        parse(text)
    assert str(info.value).startswith("unsupported: ")
    assert fragment in str(info.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(CfgError, match="cannot read the cfg"):
        parse_cfg(tmp_path / "missing.cfg")
    binary = tmp_path / "weights.cfg"
    binary.write_bytes(b"\x00\x00\x02\x00" * 10)
    with pytest.raises(CfgError, match="NUL bytes"):
        parse_cfg(binary)


def test_every_shared_cfg_is_classified():
    """The table in darknet_testlib lists exactly the cfgs of shared/darknet-cfg."""
    cfg_path("yolov3.cfg")  # skips when the folder is absent
    found = {str(p.relative_to(CFG_DIR)) for p in CFG_DIR.rglob("*.cfg")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_cfg_converts_or_is_unsupported(name):
    """Every real cfg parses, validates and generates code, or fails with "unsupported: ..."."""
    from cfg_codegen.codegen import generate_source

    path = cfg_path(name)
    expected = EXPECTED[name]
    if expected == "converts":
        net = parse_cfg(path)
        source = generate_source(net)
        compile(source, name, "exec")
        assert len(re.findall(r"# \[\d+\] ", source)) >= len(net.layers)
        assert net.warnings == ()
    else:
        with pytest.raises(UnsupportedCfgError) as info:
            parse_cfg(path)
        assert str(info.value).startswith(expected)
