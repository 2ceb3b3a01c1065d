"""Deploy targets: artifacts match PyTorch, keep accuracy, and fail clearly on bad requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from targets.registry import get_target, list_targets
from toolchain.models.sources import prepare
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import sha256_of

# torch is the reference and vitis runs in Docker and on the board: both have their own tests
EXPORT_TARGETS = [name for name in list_targets() if name not in ("torch", "vitis")]
IMGSZ = 256


@pytest.mark.parametrize("target", EXPORT_TARGETS)
def test_fp32_raw_head_maps_equal_torch(baseline_pt, tmp_path, target):
    """Raw head conv outputs (box logits, class logits) of the FP32 artifact vs PyTorch: max abs <= 1e-4."""
    source = prepare(baseline_pt, IMGSZ, raw_head=True)
    artifact = get_target(target).export(source, tmp_path, ExportConfig(precision="fp32", imgsz=IMGSZ))
    runner = get_target(target).open(artifact, "cpu", "f32")
    x = np.random.default_rng(1).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    with torch.inference_mode():
        ref = source.module(torch.from_numpy(x)).numpy()
    out = runner(x)
    assert out.shape == ref.shape == (1, 16 * 4 + 3, (IMGSZ // 8) ** 2 + (IMGSZ // 16) ** 2 + (IMGSZ // 32) ** 2)
    assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()


@pytest.mark.parametrize("target", EXPORT_TARGETS)
def test_fp32_artifact_keeps_torch_map_and_records_everything(deployed, baseline_pt, target):
    result = deployed(target, "fp32")
    record = json.loads(open(result.deploy_json).read())
    assert record["source"]["sha256"] == sha256_of(baseline_pt)
    assert record["precision"] == "fp32" and record["runner"]["executed_precision"] == "f32"
    assert record["artifact_bytes"] > 1_000_000
    assert record["fidelity"]["max_rel_diff"] < 1e-5
    acc = record["accuracy"]
    assert acc["torch_fp32"]["map50"] > 0.85  # the pipeline sees a real detector
    assert abs(acc["map50_95_drop"]) <= 0.002 and abs(acc["map50_drop"]) <= 0.002


# Not a package regression but CPU-dependent saturation: with 8-bit weights, ORT's u8s8 kernels on
# x86 CPUs without VNNI (an AVX2 EPYC here) scored 0.820 vs 0.908; the 7-bit weights ONNX export
# now uses (quantize_int8's docstring) hold on both kinds of CPU, and this test checks whichever it runs on.
@pytest.mark.parametrize("target", EXPORT_TARGETS)
def test_int8_stays_within_two_map50_points(deployed, target):
    fp32 = deployed(target, "fp32").record["accuracy"]["artifact"]
    result = deployed(target, "int8")
    record = result.record
    assert record["precision"] == "int8" and record["runner"]["artifact_precision"] == "int8"
    assert record["calibration"]["images"] == 100
    assert record["artifact_bytes"] < 0.5 * deployed(target, "fp32").record["artifact_bytes"]
    assert record["accuracy"]["artifact"]["map50"] >= fp32["map50"] - 0.02
    if target == "onnx":  # the metadata Ultralytics reads from inside the file is true to it
        import ast

        import onnx

        props = {p.key: p.value for p in onnx.load(result.artifact, load_external_data=False).metadata_props}
        args = ast.literal_eval(props["args"])
        assert args["int8"] is True and args["half"] is False and ast.literal_eval(props["imgsz"]) == [IMGSZ, IMGSZ]


def test_fp16_onnx_and_ir_run_close_to_fp32(deployed):
    for target in EXPORT_TARGETS:
        record = deployed(target, "fp16").record
        assert record["runner"]["artifact_precision"] == "fp16"
        assert abs(record["accuracy"]["map50_drop"]) <= 0.01


def test_ultralytics_runs_our_artifacts(deployed, synth_data):
    """YOLO(deploy folder) for OpenVINO and YOLO(path of the .onnx) predict alike and validate."""
    from ultralytics import YOLO

    image = str(synth_data.parent / "images" / "val" / "val_00003.jpg")
    ir_folder = Path(deployed("openvino", "fp32").deploy_json).parent
    assert ir_folder.name.endswith("_openvino_model") and deployed("openvino", "fp32").artifact == str(ir_folder)
    sources = {"openvino": str(ir_folder), "onnx": deployed("onnx", "fp32").artifact}
    boxes = {}
    for target, path in sources.items():
        model = YOLO(path, task="detect")
        result = model.predict(image, imgsz=IMGSZ, conf=0.25, verbose=False)[0]
        boxes[target] = result.boxes.xyxy.numpy()
    assert len(boxes["openvino"]) >= 1
    assert np.allclose(boxes["openvino"], boxes["onnx"], atol=0.5)
    metrics = YOLO(str(ir_folder), task="detect").val(data=str(synth_data), imgsz=IMGSZ, batch=1, plots=False,
                                                      verbose=False, device="cpu", workers=0)
    assert metrics.box.map50 > 0.8  # the trained baseline, validated by Ultralytics through our IR folder


def test_eval_cli_runs_the_artifact(deployed, synth_data):
    result = deployed("openvino", "int8")
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "eval", str(result.deploy_json).rsplit("/", 1)[0],
                           "--data", str(synth_data), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["runner"]["backend"] == "openvino" and report["runner"]["artifact_precision"] == "int8"
    # same artifact, same pipeline; OpenVINO's threaded bf16/int8 kernels are not bit-reproducible run to run
    assert report["map50"] == pytest.approx(result.record["accuracy"]["artifact"]["map50"], abs=2e-3)
    assert set(report["per_class"]) == {"circle", "rectangle", "triangle"}


def test_missing_devices_and_dynamic_int8_are_refused(baseline_pt, synth_data, tmp_path):
    with pytest.raises(EdgepruneError, match=r"'GPU' is not present; available devices: CPU"):
        deploy("openvino", str(baseline_pt), tmp_path / "x", ExportConfig(device="GPU", imgsz=IMGSZ))
    with pytest.raises(EdgepruneError, match=r"'cuda' is not available; available: cpu"):
        deploy("onnx", str(baseline_pt), tmp_path / "y", ExportConfig(device="cuda", imgsz=IMGSZ))
    with pytest.raises(EdgepruneError, match="unknown target 'tensorflow'; known targets: "):
        deploy("tensorflow", str(baseline_pt), tmp_path / "z", ExportConfig(imgsz=IMGSZ))
    with pytest.raises(EdgepruneError, match="INT8 needs calibration images"):
        deploy("onnx", str(baseline_pt), tmp_path / "w", ExportConfig(precision="int8", imgsz=IMGSZ))
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "deploy", "onnx", str(baseline_pt), "--out",
                           str(tmp_path / "d"), "--precision", "int8", "--dynamic", "--data", str(synth_data)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "53.6 ms -> 78.7 ms" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_plain_module_deploys_with_input_shape(tmp_path):
    import torchvision

    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(num_classes=5).eval(), path)
    for target in EXPORT_TARGETS:
        result = deploy(target, str(path), tmp_path / target, ExportConfig(imgsz=64), input_shape=(1, 3, 64, 64))
        assert result.record["fidelity"]["output_shape"] == [1, 5]
        assert result.record["fidelity"]["max_rel_diff"] < 1e-4


def test_openvino_int8_with_accuracy_control(baseline_pt, synth_data, tmp_path):
    cfg = ExportConfig(precision="int8", imgsz=IMGSZ, data=str(synth_data), calib_images=50, max_drop=0.01)
    record = deploy("openvino", str(baseline_pt), tmp_path / "ac", cfg).record
    assert record["calibration"]["max_drop"] == 0.01
    assert record["graph"]["fake_quantize_ops"] > 0
    assert record["accuracy"]["map50_95_drop"] <= 0.01 + 0.005  # NNCF's budget, measured again on our pipeline


def test_u8_input_ir_does_its_own_preprocessing_and_detects_the_same(baseline_pt, synth_data, deployed, tmp_path):
    """--u8-input puts letterbox's conversion (u8 NHWC BGR -> f32 NCHW RGB / 255) into the IR (PrePostProcessor)."""
    import cv2
    import numpy as np

    from targets.e2e import Detector
    from toolchain.models.imagedata import image_files
    from targets.registry import get_target

    cfg = ExportConfig(precision="fp32", imgsz=IMGSZ, options={"u8_input": True})
    result = deploy("openvino", str(baseline_pt), tmp_path / "u8", cfg, evaluate=False)
    assert result.record["fidelity"]["max_rel_diff"] < 1e-4
    u8 = get_target("openvino").open(result.artifact, precision="f32")
    assert u8.accepts_u8_bgr and "uint8 NHWC BGR" in u8.info.input_format and u8.info.input_shape == (1, 3, 256, 256)
    port = u8.compiled.inputs[0]
    assert port.get_element_type().get_type_name() == "u8" and tuple(port.get_shape()) == (1, 256, 256, 3)
    f32 = get_target("openvino").open(deployed("openvino", "fp32").artifact, precision="f32")
    fast, ref = Detector(u8, nc=3), Detector(f32, nc=3)
    for path in image_files(synth_data, "val")[:4]:
        frame = cv2.imread(str(path))
        x, _ = fast.prepare(frame)
        assert x.dtype == np.uint8 and x.shape == (1, 256, 256, 3)  # no float conversion on the host
        a, b = fast.detect(frame), ref.detect(frame)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-2)


def test_eval_agrees_with_the_ultralytics_validator(deployed, synth_data):
    """The committed baseline's FP32 IR at its imgsz: edgeprune's mAP50-95 within 0.5 points of `yolo val`'s."""
    folder = Path(deployed("openvino", "fp32").deploy_json).parent
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "eval", str(folder), "--data", str(synth_data),
                           "--infer-precision", "f32", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    validator = report["ultralytics"]
    assert report["imgsz"] == IMGSZ and validator["map50_95"] > 0.7
    assert abs(report["map50_95"] - validator["map50_95"]) <= 0.005, (report["map50_95"], validator)
    assert abs(report["map50"] - validator["map50"]) <= 0.005
