"""cfg2ir: the OpenVINO IR matches the PyTorch model (f32 inference), fp16/int8 variants, metadata."""

from __future__ import annotations

import os

import numpy as np
import openvino as ov
import pytest
import torch
import yaml
from darknet_testlib import cfg_path, opencv_outputs, random_image, rel_err, resized_copy, rows_err, small_size

from cfg_codegen.build import build_model, random_model
from cfg_codegen.calib import DataError
from cfg_codegen.codegen import OPENCV_BN_EPS
from cfg_codegen.errors import CfgError
from cfg_codegen.ir import IrConfig, convert_to_ir
from cfg_codegen.parser import parse_cfg
from cfg_codegen.weights import read_weights, write_weights

TOL = 1e-4


def run_ir(xml, image):
    """Outputs of an IR on CPU with f32 inference (this CPU may otherwise pick bf16)."""
    compiled = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(image)
    return [result[port] for port in compiled.outputs]


def cfg_with_weights(name, tmp_path, seed=0, bn_eps=1e-5):
    width, height = small_size(name)
    cfg = resized_copy(cfg_path(name), width, height, tmp_path)
    net = parse_cfg(cfg)
    _, weights = random_model(net, height, width, seed=seed, bn_eps=bn_eps)
    write_weights(tmp_path / "w.weights", net, weights)
    return cfg, tmp_path / "w.weights", net, width, height


@pytest.mark.parametrize("name, decode", [
    ("yolov4-tiny.cfg", False),
    ("yolov4-csp.cfg", True),  # mish, new_coords heads, decoded rows
    ("yolov4-sam-mish-csp-reorg-bfm.cfg", False),  # reorg3d and sam, which OpenCV cannot load
    ("enet-coco.cfg", True),  # depthwise convs, squeeze-excitation (avgpool + scale_channels)
])
def test_ir_matches_torch(name, decode, tmp_path):
    cfg, weights, net, width, height = cfg_with_weights(name, tmp_path)
    result = convert_to_ir(cfg, weights, tmp_path / "ir", IrConfig(decode=decode))
    assert result.imgsz == (width, height) and result.weights == str(weights)
    model = build_model(net, read_weights(weights, net))
    image = random_image(3, height, width, seed=11)
    with torch.no_grad():
        expected = model(torch.from_numpy(image))
        if decode:
            expected = model.decode(expected, height, width)
    got = run_ir(result.xml, image)
    compiled_names = [port.get_any_name() for port in ov.Core().read_model(result.xml).outputs]
    assert compiled_names == [h.output for h in result.heads]
    for mine, ref, yolo in zip(got, expected, net.yolo_layers, strict=True):
        if decode:
            boxes, scores, _ = rows_err(mine, ref.numpy(), yolo.thresh)
            assert boxes < TOL and scores < TOL
        else:
            assert rel_err(mine, ref.numpy()) < TOL


def test_decoded_ir_rows_are_opencvs(tmp_path):
    """--decode emits exactly what OpenCV's yolo layers emit, so OpenCV post-processing is unchanged."""
    cfg, weights, net, width, height = cfg_with_weights("yolov4-tiny-3l.cfg", tmp_path, seed=4, bn_eps=OPENCV_BN_EPS)
    result = convert_to_ir(cfg, weights, tmp_path / "ir", IrConfig(decode=True, bn_eps=OPENCV_BN_EPS))
    assert [h.output for h in result.heads] == [f"yolo_{y.index}" for y in net.yolo_layers]  # OpenCV's names
    image = random_image(3, height, width, seed=12)
    _, cv_rows = opencv_outputs(cfg, weights, image, [y.index for y in net.yolo_layers])
    for mine, theirs in zip(run_ir(result.xml, image), cv_rows, strict=True):
        assert mine.shape == theirs.shape
        boxes, scores, _ = rows_err(mine, theirs)
        assert boxes < TOL and scores < TOL


@pytest.fixture(scope="module")
def three_class_cfg(tmp_path_factory):
    """yolov4-tiny with 3 classes at 160x128 and a YOLO data.yaml of 12 small images."""
    import cv2

    root = tmp_path_factory.mktemp("tiny3")
    text = cfg_path("yolov4-tiny.cfg").read_text()
    text = text.replace("classes=80", "classes=3").replace("filters=255", "filters=24")
    cfg = resized_copy(root / "tiny3.cfg", 160, 128, root, text)
    rng = np.random.default_rng(0)
    (root / "images" / "val").mkdir(parents=True)
    for i in range(12):
        image = np.full((90 + 10 * i, 120, 3), rng.integers(0, 255, 3), np.uint8)
        cv2.circle(image, (60, 45), 20 + i, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.imwrite(str(root / "images" / "val" / f"{i}.jpg"), image)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/val", "val": "images/val",
                                    "names": {0: "circle", 1: "square", 2: "blob"}}))
    return cfg, data


def test_fp16_and_int8(three_class_cfg, tmp_path):
    cfg, data = three_class_cfg
    net = parse_cfg(cfg)
    _, weights = random_model(net, 128, 160, seed=1)
    write_weights(tmp_path / "w.weights", net, weights)
    fp32 = convert_to_ir(cfg, tmp_path / "w.weights", tmp_path / "fp32", IrConfig(decode=True))
    fp16 = convert_to_ir(cfg, tmp_path / "w.weights", tmp_path / "fp16", IrConfig(precision="fp16", decode=True))
    int8 = convert_to_ir(cfg, tmp_path / "w.weights", tmp_path / "int8",
                         IrConfig(precision="int8", data=str(data), decode=True, calibration_images=8))
    assert int8.calibration_images == 8
    assert 0.45 < os.path.getsize(fp16.bin) / os.path.getsize(fp32.bin) < 0.55
    ops = ov.Core().read_model(int8.xml).get_ordered_ops()
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) >= len(net.conv_layers)
    # decode stays float: nothing after the last conv is quantized
    for op in ops:
        if op.get_type_name() == "FakeQuantize":
            consumers = {t.get_node().get_type_name() for out in op.outputs() for t in out.get_target_inputs()}
            assert consumers <= {"Convolution", "Concat", "Interpolate", "MaxPool", "Slice"}, consumers
    image = random_image(3, 128, 160, seed=2)
    outputs = (run_ir(fp16.xml, image), run_ir(int8.xml, image), run_ir(fp32.xml, image))
    for half, quantized, ref in zip(*outputs, strict=True):
        assert rel_err(half[:, :5], ref[:, :5]) < 5e-3  # boxes and objectness (scores may flip at thresh)
        assert rel_err(quantized[:, :2], ref[:, :2]) < 0.1  # centres
        for col in range(5):  # int8 of a random net: boxes and objectness still follow fp32 closely
            assert np.corrcoef(quantized[:, col], ref[:, col])[0, 1] > 0.9
    meta = yaml.safe_load(open(int8.metadata))
    assert meta["names"] == ["circle", "square", "blob"] and meta["classes"] == 3
    assert meta["precision"] == "int8" and meta["imgsz"] == [160, 128]
    assert meta["strides"] == [[32, 32], [16, 16]]
    assert meta["anchors"] == [[[81, 82], [135, 169], [344, 319]], [[23, 27], [37, 58], [81, 82]]]
    assert meta["outputs"]["names"] == ["yolo_30", "yolo_37"] and "OpenCV" in meta["outputs"]["layout"]
    assert meta["input"]["resize"].startswith("stretch") and meta["source"]["random_init"] is False


def test_random_init_imgsz_and_failures(three_class_cfg, tmp_path):
    cfg, data = three_class_cfg
    result = convert_to_ir(cfg, None, tmp_path / "ir", IrConfig(width=96, height=64))
    assert result.imgsz == (96, 64) and any("random parameters" in n for n in result.notes)
    assert [tuple(o.shape) for o in run_ir(result.xml, random_image(3, 64, 96))] == [(1, 24, 2, 3), (1, 24, 4, 6)]
    meta = yaml.safe_load(open(result.metadata))
    assert meta["source"]["random_init"] is True and meta["heads"][0]["output"] == "conv_29"

    with pytest.raises(CfgError, match="int8 needs calibration images"):
        IrConfig(precision="int8")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"path": str(tmp_path), "val": "images", "names": ["a", "b"]}))
    with pytest.raises(DataError, match="has 2 class names, but the \\[yolo\\] layers .* have 3 classes"):
        convert_to_ir(cfg, None, tmp_path / "bad", IrConfig(data=str(wrong)))
    with pytest.raises(CfgError, match="input size 100x70"):  # routes of different sizes
        convert_to_ir(cfg, None, tmp_path / "bad", IrConfig(width=100, height=70))
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
