"""The bench harness: honest fields, splicing that preserves detections, every source kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from targets.bench import BenchConfig
from toolchain.pipelines.bench import open_runner, run_bench
from targets.e2e import Detector
from targets.frame_sources import FolderSource, SyntheticSource, VideoSource, open_source
from toolchain.core.prepost import splice, tile_origin, unsplice
from toolchain.core.detection_metrics import box_iou
from toolchain.core.errors import EdgepruneError

QUICK = BenchConfig(iterations=8, duration=None, warmup=1)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def torch_detectors(baseline_pt):
    single = Detector(open_runner(baseline_pt, QUICK, (416, 416)), nc=3)
    spliced = Detector(open_runner(baseline_pt, QUICK, (832, 832)), nc=3)
    return single, spliced


def _matched(a: np.ndarray, b: np.ndarray, min_conf: float = 0.5) -> bool:
    """Every confident detection of ``a`` has a same-class box in ``b`` with IoU >= 0.9."""
    for det in a[a[:, 4] >= min_conf]:
        same = b[b[:, 5] == det[5]]
        if not len(same) or box_iou(det[None, :4], same[:, :4]).max() < 0.9:
            return False
    return True


def test_spliced_detections_equal_single_stream_detections(torch_detectors):
    single, spliced = torch_detectors
    sources = [SyntheticSource(416, seed=s, objects=3, margin=4) for s in range(4)]
    checked = 0
    for step in range(3):
        frames = [src.render()[0] for src in sources]
        alone = [single.detect(f) for f in frames]
        together = unsplice(spliced.detect(splice(frames, 416)), 416)
        for i in range(4):
            assert _matched(alone[i], together[i]) and _matched(together[i], alone[i]), (step, i, alone[i],
                                                                                         together[i])
            checked += int((alone[i][:, 4] >= 0.5).sum())
        for src in sources:
            for shape in src.shapes:
                src._step(shape)
    assert checked >= 20  # the detector really found the objects


def test_unsplice_assigns_by_centre_and_clips_at_tile_borders():
    dets = np.array([
        [10, 10, 50, 60, 0.9, 1],      # inside tile 0
        [390, 20, 430, 60, 0.8, 2],    # crosses 0|1, centre x=410 in tile 0 → clipped to x<=416
        [420, 430, 470, 480, 0.7, 0],  # tile 3
        [405, 100, 430, 120, 0.6, 1],  # centre x=417.5 → tile 1, shifted and clipped at x>=0
    ], dtype=np.float32)
    out = unsplice(dets, 416)
    assert [len(s) for s in out] == [2, 1, 0, 1]
    np.testing.assert_allclose(out[0][1, :4], [390, 20, 416, 60])
    np.testing.assert_allclose(out[1][0, :4], [0, 100, 14, 120])
    np.testing.assert_allclose(out[3][0, :4], [4, 14, 54, 64])
    assert tile_origin(3, 416) == (416, 416)


def test_inference_result_reports_what_ran(deploy_ir, tmp_path):
    proc = cli("bench", deploy_ir, "--iterations", 15, "--infer-precision", "f32", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["mode"] == "inference" and result["includes_pre_post"] is False
    assert result["executed_precision"] == "f32" and result["artifact_precision"] == "fp32"
    assert result["iterations"] == 15 and result["batch"] == 1 and result["threads"] >= 1
    lat = result["latency"]
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert result["first_inference_ms"] > 0 and result["throughput_fps"] > 0
    assert result["requested"]["precision"] == "f32" and result["cpu"]
    # auto precision: whatever the CPU plugin picked is reported, not assumed
    import openvino as ov

    expected = ov.Core().compile_model(ov.Core().read_model(str(next(Path(deploy_ir).rglob("*.xml")))), "CPU") \
        .get_property("INFERENCE_PRECISION_HINT").get_type_name()
    auto = json.loads(cli("bench", deploy_ir, "--iterations", 5, "--json").stdout)
    assert auto["executed_precision"] == expected


def test_e2e_frame_interval_and_jsonl(deploy_ir, tmp_path):
    out = tmp_path / "bench.jsonl"
    for _ in range(2):
        proc = cli("bench", deploy_ir, "--iterations", 12, "--e2e", "--frame-interval", 3, "--json", out)
        assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mode"] for r in lines] == ["inference", "e2e"] * 2
    e2e = lines[1]
    assert e2e["includes_pre_post"] is True and e2e["extra"]["frames"] == 12
    assert e2e["extra"]["detections_run"] == 4
    assert e2e["extra"]["effective_fps"] >= e2e["extra"]["detection_fps"]
    assert set(e2e["extra"]["stage_median_ms"]) == {"decode", "preprocess", "inference", "postprocess"}


def test_benchmark_app_style_options_and_csv(deploy_ir, tmp_path):
    """-d/-hint/-niter/-nireq/-nthreads as in benchmark_app; --csv rows agree with the JSON of the same run."""
    import csv

    table = tmp_path / "bench.csv"
    proc = cli("bench", deploy_ir, "-d", "CPU", "-hint", "throughput", "-niter", 16, "-nireq", 2, "-nthreads", 1,
               "--e2e", "--csv", table, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads(proc.stdout)
    rows = list(csv.DictReader(table.open()))
    assert [r["mode"] for r in rows] == [r["mode"] for r in runs] == ["inference", "e2e"]
    for row, run in zip(rows, runs):
        assert row["hint"] == "throughput" and int(row["requests"]) == run["requests"] and int(row["threads"]) == 1
        assert int(row["iterations"]) == run["iterations"] and int(row["batch"]) == 1
        assert float(row["throughput_fps"]) == pytest.approx(run["throughput_fps"])
        assert float(row["median_ms"]) == pytest.approx(run["latency"]["median_ms"])
        assert row["executed_precision"] == run["executed_precision"] and row["cpu"] == run["cpu"]
    assert rows[0]["includes_pre_post"] == "False" and rows[1]["includes_pre_post"] == "True"
    assert int(rows[0]["requests"]) == 2  # -nireq reached the inference-only measurement
    pipelined = runs[1]["extra"]  # ... and the pipelined e2e run, which says what bounded it
    assert pipelined["pipelined_requests"] == 2 and "core(s) busy" in pipelined["pipelined_bound_by"]


def test_batch_4_with_csv(deploy_ir, deploy_onnx, tmp_path):
    """--batch 4 feeds (4, 3, H, W) and counts images; a batch-1 ONNX file is refused naming the fix."""
    import csv

    table = tmp_path / "batch.csv"
    proc = cli("bench", deploy_ir, "-b", 4, "-niter", 6, "--csv", table, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(proc.stdout)
    [row] = list(csv.DictReader(table.open()))
    assert run["batch"] == int(row["batch"]) == 4 and row["input_shape"] == "4x3x256x256"
    assert run["iterations"] == int(row["iterations"]) == 6
    # FPS counts images: four per inference, over the measured wall time
    assert run["throughput_fps"] == pytest.approx(4 * 6 / run["duration_s"])
    # each image of the batch gets the same answer it gets alone
    images = np.random.default_rng(1).random((4, 3, 256, 256), dtype=np.float32)
    batched = open_runner(deploy_ir, BenchConfig(batch=4)).predict(images)
    single = open_runner(deploy_ir, BenchConfig())
    for i in range(4):
        alone = single.predict(images[i:i + 1])
        assert np.abs(batched[i:i + 1] - alone).max() <= 1e-3 * np.abs(alone).max()
    refused = cli("bench", deploy_onnx, "--batch", 2, "-niter", 2)
    assert refused.returncode == 2 and "static batch of 1" in refused.stderr and "--dynamic-shape" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_streams_mode_needs_a_resizable_artifact(deploy_ir, baseline_pt):
    with pytest.raises(EdgepruneError, match="static 256x256 IR; deploy with --dynamic-shape"):
        run_bench(str(deploy_ir), QUICK, streams=4, splice=832)
    with pytest.raises(EdgepruneError, match="--streams 4 --splice SIZE"):
        run_bench(str(baseline_pt), QUICK, streams=3, splice=832)
    results = run_bench(str(baseline_pt), BenchConfig(iterations=2, duration=None, warmup=0), streams=4, splice=832)
    streams = results[-1]
    assert streams.mode == "streams" and streams.extra["spliced_input"] == [832, 832]
    assert streams.extra["separate_input"] == [416, 416]
    assert streams.extra["spliced"]["aggregate_fps"] == pytest.approx(4 * streams.extra["spliced"]["per_stream_fps"])


def test_dynamic_shape_ir_runs_spliced(baseline_pt, tmp_path):
    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy

    result = deploy("openvino", str(baseline_pt), tmp_path / "dyn_openvino_model",
                    ExportConfig(imgsz=256, dynamic=True), evaluate=False)
    assert result.record["fidelity"]["max_rel_diff"] < 1e-5
    streams = run_bench(result.artifact, BenchConfig(iterations=2, duration=None, warmup=0), streams=4,
                        splice=832)[-1]
    assert streams.extra["spliced_input"] == [832, 832] and streams.backend == "openvino"
    # the batch is free as in Ultralytics' own dynamic exports: its predictor runs a list of images as one batch
    # (with the batch fixed at 1 it failed: "the model input [1,3,?,?] and the tensor (2.3.256.256)")
    from ultralytics import YOLO

    frames = SyntheticSource(256).frames()
    images = [next(frames), next(frames)]
    batched = YOLO(str(result.artifact), task="detect").predict(images, imgsz=256, verbose=False)
    single = YOLO(str(baseline_pt)).predict(images, imgsz=256, verbose=False)
    assert len(batched) == 2
    for got, want in zip(batched, single):
        assert len(got.boxes) == len(want.boxes) > 0
        assert np.allclose(got.boxes.xyxy.numpy(), want.boxes.xyxy.numpy(), atol=0.5)


def test_compare_writes_table_and_chart(deploy_ir, deploy_onnx, tmp_path):
    png = tmp_path / "cmp.png"
    proc = cli("bench", "compare", deploy_ir, deploy_onnx, "--iterations", 10, "--plot", png)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Comparison" in proc.stdout and "1.00x" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_video_and_folder_sources(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    synth = SyntheticSource(128).frames()
    for _ in range(5):
        writer.write(cv2.resize(next(synth), (128, 96)))
    writer.release()
    frames = VideoSource(str(video)).frames()
    assert [next(frames).shape for _ in range(7)] == [(96, 128, 3)] * 7  # loops at the end
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((20, 30, 3), i * 100, np.uint8))
    assert isinstance(open_source(str(folder)), FolderSource)
    values = [int(f[0, 0, 0]) for f, _ in zip(open_source(str(folder)).frames(), range(3))]
    assert values == [0, 100, 0]
    with pytest.raises(EdgepruneError, match="not 'synthetic', a camera index"):
        open_source(str(tmp_path / "missing.mp4"))


def test_interleaved_rounds_time_each_artifact_once_per_round_after_one_compile(deployed, monkeypatch):
    """What the latency-aware search's speedup rests on: the probe and the reference timed alternately, so host
    drift hits both; each is compiled once (a compile per round would time the warm-up of a new one)."""
    from targets.bench import measure_interleaved
    from targets.registry import get_target

    target = get_target("openvino")
    opened, real_open = [], target.open
    monkeypatch.setattr(target, "open", lambda artifact, device: opened.append(str(artifact))
                        or real_open(artifact, device))
    fp32, int8 = deployed("openvino", "fp32").artifact, deployed("openvino", "int8").artifact
    rounds = measure_interleaved(target, [fp32, int8], "CPU", rounds=3, seconds=0.2)
    assert opened == [fp32, int8]
    assert [[r.artifact for r in row] for row in rounds] == [[fp32, int8]] * 3
    assert [r.artifact_precision for r in rounds[0]] == ["fp32", "int8"]
    assert all(r.iterations >= 2 and r.latency.median_ms > 0 and r.hint == "latency" for row in rounds for r in row)
