"""Property tests: no input makes the parser (or the code emitter / weights reader after it) raise
anything but :class:`CfgError`; whatever it accepts has consistent shapes and compiles."""

from __future__ import annotations

import pytest
from darknet_testlib import cfg_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfg_codegen.codegen import generate_source
from cfg_codegen.errors import CfgError
from cfg_codegen.parser import parse_cfg_text
from cfg_codegen.shapes import infer_shapes
from cfg_codegen.weights import WeightsHeader, expected_floats, weights_from_bytes

SECTIONS = ["net", "convolutional", "conv", "route", "shortcut", "maxpool", "avgpool", "upsample", "yolo", "sam",
            "scale_channels", "dropout", "reorg3d", "region", "softmax", "Gaussian_yolo", "unknown"]
KEYS = ["width", "height", "channels", "filters", "size", "stride", "pad", "padding", "groups", "group_id",
        "batch_normalize", "activation", "layers", "from", "mask", "anchors", "classes", "num", "scale_x_y",
        "new_coords", "scale", "probability", "scale_wh", "letter_box", "dilation", "stride_x", "weights_type",
        "max_delta", "thresh", "junk"]
VALUES = st.one_of(
    st.integers(-4, 8).map(str),
    st.sampled_from(["0", "1", "2", "3", "13", "255", "-1", "-3", "99999999999999999999", "1e400", "nan", "inf", "",
                     "leaky", "mish", "linear", "logistic", "elu", "1.05", ".5", "1,2", "-1,-4", "0,1,2",
                     "10,13,16,30,33,23", "1,,2", "a=b", "#", "=", "[x]", "per_channel", "none", "\u0663"]),
    st.lists(st.integers(-6, 6), min_size=1, max_size=4).map(lambda xs: ",".join(map(str, xs))),
    st.text(max_size=8),
)
SECTION = st.tuples(st.sampled_from(SECTIONS), st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=8))
NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def render(sections) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in options) for name, options in sections)


def check(text: str) -> None:
    """Parse; on success the network must survive shape inference, code generation and compilation."""
    try:
        net = parse_cfg_text(text, "fuzz.cfg")
    except CfgError:
        return
    shapes = infer_shapes(net)
    assert len(shapes) == len(net.layers)
    try:
        source = generate_source(net)
    except CfgError:
        return
    compile(source, "fuzz.py", "exec")
    if expected_floats(net):
        with pytest.raises(CfgError, match="expects"):  # a bare header: the float count is reported
            weights_from_bytes(WeightsHeader().to_bytes(), net)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    check(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SECTION, max_size=10))
def test_random_sections_after_a_valid_net(sections):
    check(NET + render(sections))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_cfg(data):
    """Delete, duplicate or rewrite lines of a real cfg (deep paths: routes, groups, yolo heads)."""
    lines = cfg_path("yolov4-tiny.cfg").read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "value", "key"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif "=" in lines[i]:
            key, _, value = lines[i].partition("=")
            if action == "value":
                lines[i] = f"{key}={data.draw(VALUES)}"
            else:
                lines[i] = f"{data.draw(st.sampled_from(KEYS))}={value}"
    check("\n".join(lines))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_weights_reader_accepts_or_reports(blob):
    net = parse_cfg_text(NET + "[convolutional]\nfilters=2\nsize=1\nbatch_normalize=1\nactivation=linear\n", "t.cfg")
    try:
        weights = weights_from_bytes(blob, net)
    except CfgError as exc:
        assert "t.cfg" in str(exc) or "<weights>" in str(exc)
        return
    assert weights.convs[0].weights.shape == (2, 3, 1, 1)
