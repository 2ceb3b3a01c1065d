"""run_kv260.py: the host's own pre/post-processing embedded, DPU-style int8 I/O, detections equal to float.

run_kv260.py runs on the board, which has no edgeprune, so the bundle embeds the host modules
``toolchain.core.prepost`` (letterbox, splice, decode, NMS) and ``toolchain.core.latency`` verbatim. These
tests check the embedding is byte-for-byte and that the template re-implements none of it,
hold the shared pieces to Ultralytics, and run the whole script against the fake VART (int8
NHWC tensors with fix points, over an ONNX export of the float DPU graph).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vitis_testlib import make_fake_bundle
from targets.bench import BenchResult
from targets.vitis.workspace import EMBED_MARKER, TEMPLATES, embedded_source, load_template, render_template
from toolchain.core.detection_metrics import box_iou, nms as validator_nms
from toolchain.core.latency import LatencyStats
from toolchain.core.prepost import decode, letterbox, nms, splice, to_input, unsplice

FAKE_VITIS = Path(__file__).resolve().parent / "fake_vitis"
board = load_template("run_kv260")
EMBEDDED = ("toolchain.core.prepost", "toolchain.core.latency")

ALLOWED_IMPORTS = {
    "run_kv260.py": {"argparse", "json", "os", "platform", "statistics", "sys", "threading", "time", "datetime",
                     "dataclasses", "cv2", "numpy", "vart", "xir"},
    "quantize.py": {"argparse", "glob", "json", "os", "sys", "cv2", "numpy", "torch", "pytorch_nndct", "dpu_graph"},
    "dpu_graph.py": {"json", "numpy", "torch"},
}


@pytest.mark.parametrize("script", sorted(ALLOWED_IMPORTS))
def test_container_and_board_scripts_are_python38_and_import_only_what_is_there(script):
    """quantize.py/dpu_graph.py run in the Vitis AI image (Python 3.8); run_kv260.py on the board."""
    source = render_template(Path(script).stem)  # as written into the workspace / bundle, embeds included
    tree = ast.parse(source, feature_version=(3, 8))  # SyntaxError on 3.9+ syntax
    compile(source, script, "exec")
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= ALLOWED_IMPORTS[script], imported - ALLOWED_IMPORTS[script]


def _top_level_names(source: str) -> set[str]:
    return {node.name for node in ast.parse(source).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_board_script_embeds_the_host_modules_verbatim_and_copies_none_of_them():
    template = (TEMPLATES / "run_kv260.py").read_text()
    rendered = render_template("run_kv260")
    for module in EMBEDDED:
        assert f"{EMBED_MARKER}{module}\n" in template
        host = embedded_source(module)
        assert rendered.count(host) == 1, f"{module} is not embedded byte for byte"
        # nothing the host module defines is defined again by the template itself
        assert not _top_level_names(host) & _top_level_names(template), _top_level_names(host) & _top_level_names(template)
    assert EMBED_MARKER not in rendered
    # the objects the board runs are the host's code: same behaviour on the same input
    seconds = list(np.random.default_rng(0).gamma(2.0, 0.004, size=257))
    assert dataclasses.asdict(board.LatencyStats.of(seconds)) == dataclasses.asdict(LatencyStats.of(seconds))


def test_bundle_and_workspace_get_the_rendered_scripts(tmp_path):
    from targets.vitis.bundle import BOARD_SCRIPT, write_bundle

    xmodel = tmp_path / "m.xmodel"
    xmodel.write_bytes(b"xmodel")
    folder = write_bundle(tmp_path / "bundle", xmodel, {"edgeprune": {"vitis": {"xmodel": "m.xmodel"}}})
    assert (folder / BOARD_SCRIPT).read_text() == render_template("run_kv260")
    assert os.access(folder / BOARD_SCRIPT, os.X_OK)


@pytest.mark.parametrize("shape", [(256, 256), (480, 640), (640, 360), (100, 333), (257, 255)])
def test_letterbox_equals_ultralytics(shape):
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(sum(shape)).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    for size in ((256, 256), (256, 320)):
        ours, box = letterbox(image, size)
        ref = LetterBox(size, auto=False, scale_fill=False, scaleup=True, center=True)(image=image)
        assert ours.shape == ref.shape and np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
        boxes = np.array([[10.0, 20.0, 200.0, 150.0], [-5.0, 0.0, 300.0, 400.0]], dtype=np.float32)
        back = box.to_original(boxes, shape)
        assert (back[:, [0, 2]] <= shape[1]).all() and (back[:, [1, 3]] <= shape[0]).all() and (back >= 0).all()


def test_splice_and_unsplice_keep_every_stream_apart():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in ((416, 416), (300, 500), (416, 416),
                                                                                   (200, 100))]
    spliced = splice(frames, 416)
    assert np.array_equal(spliced[:416, :416], frames[0]) and np.array_equal(spliced[416:, :416], frames[2])
    xy = rng.uniform(-20, 850, size=(200, 2))
    wh = rng.uniform(0.5, 120, size=(200, 2))
    scores, classes = rng.uniform(0, 1, (200, 1)), rng.integers(0, 3, (200, 1))
    dets = np.concatenate([xy, xy + wh, scores, classes], 1).astype(np.float32)
    streams = unsplice(dets, 416)
    assert sum(len(s) for s in streams) <= len(dets)
    for s in streams:
        assert (s[:, :4] >= 0).all() and (s[:, :4] <= 416).all()


@pytest.fixture(scope="module")
def baseline_graph(baseline_pt):
    from toolchain.models.sources import prepare
    from targets.vitis.graph import dpu_graph

    source = prepare(baseline_pt, 256)
    return source, dpu_graph(source)


@pytest.fixture(scope="module")
def decoded(baseline_graph, val_images):
    """(board decode, Ultralytics' own decoded output) for real validation images."""
    source, graph = baseline_graph
    pairs = []
    for path in val_images[:3]:
        x = torch.from_numpy(to_input([letterbox(cv2.imread(str(path)), 256)[0]]))
        with torch.inference_mode():
            maps, ref = graph(x), source.module(x)
        ours = decode([m[0].numpy().transpose(1, 2, 0) for m in maps], graph.spec.strides, graph.spec.reg_max,
                            graph.spec.nc)
        pairs.append((ours, ref[0].numpy().T))
    return pairs


def test_numpy_decode_equals_the_ultralytics_head(decoded):
    for ours, ref in decoded:
        assert ours.shape == ref.shape == ((256 // 8) ** 2 + (256 // 16) ** 2 + (256 // 32) ** 2, 4 + 3)
        assert np.abs(ours[:, :4] - ref[:, :4]).max() < 1e-3  # pixels
        assert np.abs(ours[:, 4:] - ref[:, 4:]).max() < 1e-5  # probabilities


def test_numpy_nms_equals_edgeprune_nms(decoded):
    from ultralytics.utils.nms import non_max_suppression

    kept = 0
    for ours, _ in decoded:
        # validation settings (multi-label, conf 0.001, IoU 0.7) against toolchain.core.detection_metrics.nms
        a = nms(ours, conf=0.001, iou=0.7, multi_label=True)
        b = validator_nms(ours.T[None], 3)[0]
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)
        # deployment settings (best class, conf 0.25, IoU 0.45) against Ultralytics
        c = nms(ours)
        d = non_max_suppression(torch.from_numpy(ours.T[None].copy()), 0.25, 0.45, nc=3)[0].numpy()
        assert c.shape == d.shape and np.allclose(c, d, atol=1e-4)
        kept += len(c)
    assert kept >= 3  # the images really hold objects


def test_input_quantisation_uses_the_fix_point_and_rgb_order():
    pixel = np.array([[[0, 128, 255]]], dtype=np.uint8)  # one BGR pixel
    q = board.quantize_input(pixel, 7)
    assert q.dtype == np.int8 and q.shape == (1, 1, 1, 3)
    assert q[0, 0, 0].tolist() == [127, 64, 0]  # R=255 -> 128 saturates at 127; G=128 -> 64.25 -> 64; B=0
    assert board.quantize_input(pixel, 6)[0, 0, 0].tolist() == [64, 32, 0]


def _run_board(bundle: Path, *args, check=True):
    """Run the copied run_kv260.py as the board would, with the fake xir/vart importable."""
    code = ("import runpy, sys, json; sys.argv = ['run_kv260.py'] + sys.argv[1:]; "
            "runpy.run_path('run_kv260.py', run_name='__main__'); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'toolchain', 'targets', 'ultralytics'))), file=sys.stderr)")
    env = dict(os.environ, PYTHONPATH=str(FAKE_VITIS))
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=bundle, env=env, capture_output=True,
                          text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == "[]"  # no torch, no edgeprune on the board
    return proc


def test_board_detections_equal_the_float_model(fake_bundle, baseline_pt, val_images, tmp_path):
    """int8 in, int8 out on the fake DPU; boxes, classes and scores match edgeprune's float pipeline."""
    from targets.e2e import Detector
    from targets.torch_ref import TorchTarget

    folder = tmp_path / "images"
    folder.mkdir()
    for path in val_images:
        (folder / path.name).write_bytes(path.read_bytes())
    proc = _run_board(fake_bundle, "detect", folder)
    results = json.loads(proc.stdout)
    assert [Path(r["image"]).name for r in results] == sorted(p.name for p in val_images)
    reference = Detector(TorchTarget().open(baseline_pt, input_hw=(256, 256)), nc=3)  # conf 0.25, IoU 0.45
    confident = 0
    for result in results:
        ours = np.array(result["detections"], dtype=np.float32).reshape(-1, 6)
        ref = reference.detect(cv2.imread(str(folder / Path(result["image"]).name)))
        for a, b in ((ours, ref), (ref, ours)):
            for det in a[a[:, 4] >= 0.5]:
                same = b[b[:, 5] == det[5]]
                assert len(same), (result["image"], det)
                iou = box_iou(det[None, :4], same[:, :4])[0]
                assert iou.max() >= 0.9, (result["image"], det, same)
                assert abs(same[iou.argmax(), 4] - det[4]) < 0.05
                confident += 1
        assert result["labels"] == [("circle", "rectangle", "triangle")[int(d[5])] for d in ours]
    assert confident >= 10


def test_bench_json_has_edgeprune_bench_fields_and_runs_every_thread(fake_bundle):
    proc = _run_board(fake_bundle, "--json", "--threads", "2", "--iterations", "6", "--warmup", "1", "bench")
    result = json.loads(proc.stdout)
    assert set(result) == {f.name for f in dataclasses.fields(BenchResult)}
    assert set(result["latency"]) == {f.name for f in dataclasses.fields(LatencyStats)}
    assert result["mode"] == "inference" and result["backend"] == "vart" and result["iterations"] == 6
    assert result["threads"] == result["requests"] == 2 and result["includes_pre_post"] is False
    assert result["artifact_precision"] == result["executed_precision"] == "int8"
    assert result["input_shape"] == [1, 3, 256, 256] and result["backend_version"] == "fake-for-tests"
    assert "fingerprint fake" in result["device"]  # never mistakable for a real KV260 measurement


def test_e2e_and_streams_modes_report_pre_post_processing(fake_bundle, val_images, tmp_path):
    proc = _run_board(fake_bundle, "--json", "--iterations", "4", "--warmup", "0", "e2e", val_images[0])
    e2e = json.loads(proc.stdout)
    assert e2e["mode"] == "e2e" and e2e["includes_pre_post"] is True and e2e["iterations"] == 4
    assert set(e2e["extra"]["stage_median_ms"]) == {"preprocess", "inference", "postprocess"}
    # streams: the 256 px xmodel takes four 128 px tiles
    proc = _run_board(fake_bundle, "--json", "--iterations", "3", "--warmup", "0", "streams",
                      *[str(p) for p in val_images[:4]])
    streams = json.loads(proc.stdout)
    assert streams["mode"] == "streams" and streams["extra"]["tile"] == 128 and streams["extra"]["streams"] == 4
    assert streams["throughput_fps"] == pytest.approx(4 * streams["extra"]["spliced"]["per_stream_fps"])


def test_multi_subgraph_xmodel_is_refused_with_a_clear_message(fake_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(fake_bundle, bundle)
    spec = json.loads((bundle / "fake.xmodel").read_text())
    spec["subgraphs"].append({"name": "subgraph_tail", "attrs": {"device": "DPU"}})
    (bundle / "fake.xmodel").write_text(json.dumps(spec))
    proc = _run_board(bundle, "bench", check=False)
    assert proc.returncode != 0 and "has 2 DPU subgraphs" in proc.stderr


@pytest.fixture(scope="module")
def darknet_bundle(synth_data, tmp_path_factory):
    """A 3-class yolov4-tiny with yolov4-csp-style logistic heads (random weights) on the fake DPU, at 256 px."""
    import re
    import warnings

    from cfg_codegen.build import random_model
    from cfg_codegen.parser import parse_cfg_text
    from cfg_codegen.weights import write_weights
    from toolchain.models.imagedata import calibration_batches

    stock = Path(__file__).resolve().parents[4] / "shared" / "darknet-cfg" / "yolov4-tiny.cfg"
    if not stock.is_file():
        pytest.skip(f"{stock} is absent; the real Darknet cfgs are needed for this test")
    text = stock.read_text().replace("classes=80", "classes=3").replace("filters=255\nactivation=linear",
                                                                          "filters=24\nactivation=logistic")
    text = re.sub(r"\[yolo\]\n", "[yolo]\nnew_coords=1\n", text)
    text = re.sub(r"(?m)^width=.*$", "width=256", re.sub(r"(?m)^height=.*$", "height=256", text))
    root = tmp_path_factory.mktemp("darknet-board")
    cfg = root / "tiny3.cfg"
    cfg.write_text(text)
    net = parse_cfg_text(text, str(cfg))
    write_weights(root / "tiny3.weights", net, random_model(net, 256, 256, seed=4)[1])  # found beside the cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = make_fake_bundle(cfg, root / "bundle", 256, calibration_batches(synth_data, 256, 8, resize="stretch"))
    return cfg, bundle


def _matched_share(bundle, folder, reference) -> tuple[float, float, int]:
    """(share of confident host detections the board finds at IoU >= 0.9, median best IoU, count)."""
    results = json.loads(_run_board(bundle, "detect", folder).stdout)
    ious = []
    for result in results:
        ours = np.array(result["detections"], dtype=np.float32).reshape(-1, 6)
        ref = reference.detect(cv2.imread(str(folder / Path(result["image"]).name)))
        for det in ref[ref[:, 4] >= 0.5]:
            same = ours[ours[:, 5] == det[5]]
            ious.append(box_iou(det[None, :4], same[:, :4])[0].max() if len(same) else 0.0)
    ious = np.array(ious)
    return float((ious >= 0.9).mean()) if len(ious) else 0.0, float(np.median(ious)) if len(ious) else 0.0, len(ious)


def test_board_decodes_a_darknet_model_as_the_host_does(darknet_bundle, val_images, tmp_path):
    """Anchors, scale_x_y, new_coords and the head logistic moved to the board: the board's detections are the host's.

    The reference is the DPU graph in float on the host (it runs leaky at the DPU's 26/256, as the
    board does), decoded through edgeprune's own pipeline; only the int8 I/O differs. A random
    network's boxes overlap densely, so 8-bit outputs flip some NMS survivors: most, not all,
    confident boxes are found at IoU >= 0.9. A board told the wrong decode (the head logistic
    left out) must fail the same check: the control that shows the check can fail.
    """
    import shutil

    from targets.e2e import Detector
    from targets.torch_runner import TorchRunner
    from targets.vitis.graph import dpu_graph
    from toolchain.models.sources import prepare

    cfg, bundle = darknet_bundle
    meta = json.loads((bundle / "metadata.yaml").read_text())
    assert meta["edgeprune"]["head"]["format"] == "darknet" and meta["edgeprune"]["resize"] == "stretch"
    assert all(h["host_logistic"] for h in meta["edgeprune"]["head"]["heads"])
    folder = tmp_path / "images"
    folder.mkdir()
    for path in val_images[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    source = prepare(cfg)
    graph = dpu_graph(source)
    reference = Detector(TorchRunner(graph, (1, 3, 256, 256), head=graph.spec.to_json(), resize=source.resize), nc=3)
    share, median_iou, count = _matched_share(bundle, folder, reference)
    assert count >= 20 and share >= 0.8 and median_iou >= 0.97, (share, median_iou, count)

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    for head in meta["edgeprune"]["head"]["heads"]:
        head["host_logistic"] = False
    (broken / "metadata.yaml").write_text(json.dumps(meta))
    wrong_share, wrong_iou, _ = _matched_share(broken, folder, reference)
    assert wrong_share < 0.3 and wrong_iou < 0.5, (wrong_share, wrong_iou)
