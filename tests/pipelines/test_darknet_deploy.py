"""Darknet cfg + .weights through the one deploy pipeline: OpenVINO and ONNX artifacts equal OpenCV's Darknet
importer, INT8 with deploy.json, the KV260 workspace, 4-stream splicing, and cfg2ir as an alias.

The model is a pruned cfg: ``cfg-prune`` on a stock cfg whose random parameters were written by
our writer. Its heads are made logistic with ``new_coords`` (as yolov4-csp's are), so the
comparison with OpenCV covers the case where OpenCV's ``conv_N`` blob is taken before the
activation: those heads are compared after their sigmoid.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from darknet_testlib import cfg_path, opencv_outputs, random_image, rel_err, resized_copy

from cfg_codegen.build import random_model
from cfg_codegen.codegen import OPENCV_BN_EPS
from cfg_codegen.parser import parse_cfg
from cfg_codegen.prune import PruneConfig, prune_darknet
from cfg_codegen.weights import write_weights
from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from targets.registry import get_target
from toolchain.cli.main import cli

TOL = 1e-4
WIDTH, HEIGHT = 160, 128  # non-square on purpose


def logistic_heads(text: str, classes: int | None = None) -> str:
    """yolov4-tiny text with yolov4-csp-style heads: logistic head convs, new_coords=1, scale_x_y=2."""
    text = re.sub(r"(filters=255\n)activation=linear", r"\1activation=logistic", text)
    text = re.sub(r"\[yolo\]\n", "[yolo]\nnew_coords=1\n", text)
    text = re.sub(r"scale_x_y\s*=\s*[0-9.]+", "scale_x_y = 2.0", text)
    if classes:
        text = text.replace("classes=80", f"classes={classes}").replace("filters=255", f"filters={3 * (5 + classes)}")
    return text


def pruned_pair(tmp_path, width=WIDTH, height=HEIGHT, classes=None, seed=3):
    """cfg-prune (global 0.4) of the logistic-head yolov4-tiny with random weights; (cfg, weights) paths."""
    cfg = resized_copy(cfg_path("yolov4-tiny.cfg"), width, height, tmp_path,
                       logistic_heads(cfg_path("yolov4-tiny.cfg").read_text(), classes))
    net = parse_cfg(cfg)
    assert all(y.new_coords for y in net.yolo_layers)
    write_weights(tmp_path / "stock.weights", net, random_model(net, height, width, seed=seed,
                                                                bn_eps=OPENCV_BN_EPS)[1])
    report = prune_darknet(cfg, tmp_path / "stock.weights", tmp_path / "pruned", PruneConfig(global_percent=0.4))
    assert report.channels_after < 0.8 * report.channels_before
    return tmp_path / "pruned" / "pruned.cfg", tmp_path / "pruned" / "pruned.weights"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    return pruned_pair(tmp_path_factory.mktemp("pruned"))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def opencv_blobs(cfg, weights, image, names):
    """OpenCV DNN's blobs by layer name (``conv_N`` is the conv's output before its activation)."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(image)
    return net.forward(list(names))


@pytest.mark.parametrize("target", ["openvino", "onnx"])
def test_pruned_cfg_artifact_equals_opencv(pruned, tmp_path, target):
    cfg, weights = pruned
    result = deploy(target, str(cfg), tmp_path / target,
                    ExportConfig(weights=str(weights), bn_eps=OPENCV_BN_EPS))
    record = json.loads(open(result.deploy_json).read())
    assert record["source"]["kind"] == "darknet" and record["imgsz"] == [HEIGHT, WIDTH]
    assert [f["path"] for f in record["source"]["files"]] == [str(cfg), str(weights)]
    assert record["fidelity"]["max_rel_diff"] <= TOL, record["fidelity"]
    net = parse_cfg(cfg)
    assert [o["name"] for o in record["fidelity"]["outputs"]] == [f"conv_{y.index - 1}" for y in net.yolo_layers]

    runner = get_target(target).open(result.artifact, precision="f32" if target == "openvino" else "auto")
    assert runner.info.input_shape == (1, 3, HEIGHT, WIDTH) and runner.resize == "stretch"
    image = random_image(3, HEIGHT, WIDTH, seed=5)
    names = [o["name"] for o in record["fidelity"]["outputs"]]
    for ours, theirs in zip(runner.outputs(image), opencv_blobs(cfg, weights, image, names), strict=True):
        # OpenCV's conv_N blob is the map before the conv's activation; these heads end in a logistic
        assert rel_err(ours, _sigmoid(theirs)) < TOL


@pytest.fixture(scope="module")
def three_class(tmp_path_factory):
    """A pruned 3-class pair at 256 px, the synthetic set's classes and size."""
    return pruned_pair(tmp_path_factory.mktemp("three"), 256, 256, classes=3, seed=7)


@pytest.mark.parametrize("target, quantized_op", [pytest.param("openvino", "FakeQuantize", marks=pytest.mark.full),
                                                  ("onnx", "QuantizeLinear")])  # NNCF on a cfg: 40 s, in test-full
def test_int8_of_a_cfg_records_deploy_json(three_class, micro_data, tmp_path, target, quantized_op):
    cfg, weights = three_class
    result = deploy(target, str(cfg), tmp_path / target,
                    ExportConfig(precision="int8", data=str(micro_data), calib_images=8, weights=str(weights)))
    record = json.loads(open(result.deploy_json).read())
    assert record["precision"] == "int8" and record["calibration"]["images"] == 8
    assert record["calibration"]["resize"] == "stretch"
    key = "fake_quantize_ops" if target == "openvino" else "quantize_linear_nodes"
    assert record["graph"][key] > 10, (quantized_op, record["graph"])
    assert 0 < record["fidelity"]["max_rel_diff"] < 0.25  # quantized, yet following the float maps
    accuracy = record["accuracy"]  # the artifact and the generated module through the same decode + NMS
    assert accuracy["data"] == str(micro_data) and abs(accuracy["map50_drop"]) <= 0.05, accuracy
    meta = yaml.safe_load((tmp_path / target / "metadata.yaml").read_text())  # beside the model in the deploy folder
    head = meta["edgeprune"]["head"]
    assert head["format"] == "darknet" and head["nc"] == 3 and meta["names"] == {0: "circle", 1: "rectangle",
                                                                                 2: "triangle"}
    assert all(h["new_coords"] and h["scale_x_y"] == 2.0 for h in head["heads"])
    assert [h["stride"] for h in head["heads"]] == [[32, 32], [16, 16]]


def test_vitis_dry_run_writes_the_workspace_for_a_cfg(three_class, micro_data, tmp_path):
    cfg, weights = three_class
    out = tmp_path / "kv260"
    run = CliRunner().invoke(cli, ["deploy", "vitis", str(cfg), "--weights", str(weights), "--out", str(out),
                                   "--data", str(micro_data), "--calib-images", "3", "--eval-images", "2",
                                   "--dry-run"])
    assert run.exit_code == 0, run.output
    ws = out / "workspace"
    config = json.loads((ws / "config.json").read_text())
    assert config["imgsz"] == [256, 256] and config["head"]["format"] == "darknet"
    assert all(h["host_logistic"] for h in config["head"]["heads"])  # the DPU has no sigmoid: the board applies it
    assert len(list((ws / "calib").glob("*.png"))) == 3 and len(list((ws / "eval").glob("*.png"))) == 2
    graph = json.loads((ws / "model" / "graph.json").read_text())
    ops = {node["op"] for node in graph["nodes"]}
    assert "leaky_relu" in ops and "sigmoid" not in ops
    slopes = {node["attrs"]["slope"] for node in graph["nodes"] if node["op"] == "leaky_relu"}
    assert slopes == {26 / 256}  # Darknet's 0.1 runs as the DPU's slope
    printed = [line for line in run.output.splitlines() if line.startswith("docker run")]
    assert len(printed) == 2 and not (out / "deploy.json").exists()


def test_decode_needs_a_fixed_input_size(pruned):
    from toolchain.core.errors import ModelMismatchError
    from toolchain.models.sources import prepare

    cfg, weights = pruned
    with pytest.raises(ModelMismatchError, match="--decode computes box sizes for the input size it is built at"):
        prepare(cfg, weights=str(weights), decode=True, dynamic=True)


def test_cfg2ir_is_deploy_openvino_on_a_cfg(pruned, tmp_path):
    cfg, weights = pruned
    run = CliRunner().invoke(cli, ["cfg2ir", str(cfg), str(weights), "--out", str(tmp_path / "ir"), "--decode", "--precision", "fp32",
                                   "--bn-eps", str(OPENCV_BN_EPS), "--json"])
    assert run.exit_code == 0, run.output
    record = json.loads((tmp_path / "ir" / "deploy.json").read_text())
    assert record["target"] == "openvino" and record["source"]["head"]["format"] == "darknet-rows"
    net = parse_cfg(cfg)
    assert [o["name"] for o in record["fidelity"]["outputs"]] == [f"yolo_{y.index}" for y in net.yolo_layers]
    runner = get_target("openvino").open(tmp_path / "ir", precision="f32")
    image = random_image(3, HEIGHT, WIDTH, seed=8)
    _, cv_rows = opencv_outputs(cfg, weights, image, [y.index for y in net.yolo_layers])
    for ours, theirs in zip(runner.outputs(image), cv_rows, strict=True):
        assert rel_err(ours[:, :5], theirs[:, :5]) < TOL  # boxes and objectness: OpenCV's rows
    refused = CliRunner().invoke(cli, ["cfg2ir", str(cfg), str(tmp_path / "other.weights"), "--out",
                                       str(tmp_path / "x")])
    assert refused.exit_code == 2 and "does not exist" in refused.output


def test_bench_splices_four_streams_on_a_cfg_artifact(three_class, tmp_path):
    cfg, weights = three_class
    result = deploy("openvino", str(cfg), tmp_path / "ov", ExportConfig(weights=str(weights), dynamic=True))
    run = CliRunner().invoke(cli, ["bench", result.artifact, "--streams", "4", "--splice", "256", "--iterations", "2",
                                   "--warmup", "0", "--json"])
    assert run.exit_code == 0, run.output
    results = json.loads(run.output[run.output.index("["):])
    streams = results[-1]
    assert streams["mode"] == "streams" and streams["extra"]["spliced_input"] == [256, 256]
    assert streams["extra"]["separate_input"] == [128, 128] and streams["includes_pre_post"]


def test_numpy_darknet_decode_equals_the_generated_decode_with_new_coords(pruned):
    """prepost.decode_darknet (eval, bench, the board) = the generated module's decode (checked against OpenCV's rows),
    here on new_coords heads with scale_x_y 2 at a non-square size."""
    import torch

    from toolchain.core.prepost import predictions
    from toolchain.models.sources import prepare

    cfg, weights = pruned
    source = prepare(cfg, weights=str(weights))
    model = source.module
    for index in model.HEAD_LAYERS:
        getattr(model, f"l{index}").thresh = -1.0  # OpenCV zeroes scores below thresh; compare every score
    x = torch.from_numpy(random_image(3, HEIGHT, WIDTH, seed=9))
    with torch.no_grad():
        maps = model(x)
        rows = torch.cat(model.decode(maps, HEIGHT, WIDTH), 0).numpy()
    ours = predictions([m.numpy() for m in maps], source.head, (HEIGHT, WIDTH))[0].T
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=np.float32)
    assert ours.shape == (rows.shape[0], 4 + 80)
    assert np.abs(ours[:, :4] - rows[:, :4] * scale).max() < 1e-3 * max(WIDTH, HEIGHT)
    assert np.abs(ours[:, 4:] - rows[:, 5:]).max() < 1e-5
