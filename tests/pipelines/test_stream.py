"""The stream runner on real video files and the committed baseline's OpenVINO IR.

Videos are written here from the synthetic moving shapes (MJPG, which every OpenCV build
decodes identically); the baseline detects those shapes, so every comparison has boxes to
compare. Speed is not asserted here: benchmarks/e2e_vs_ultralytics.py measures it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from targets.e2e import Detector
from targets.frame_sources import SyntheticSource
from toolchain.pipelines.bench import BenchConfig, class_count, open_runner
from toolchain.pipelines.stream import Stream, run_stream


def write_video(path: Path, frames: list[np.ndarray], fps: float, size_hw: tuple[int, int] | None = None) -> Path:
    h, w = size_hw or frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.resize(frame, (w, h)) if frame.shape[:2] != (h, w) else frame)
    writer.release()
    return path


def shapes(n: int, side: int = 416, seed: int = 0) -> list[np.ndarray]:
    source = SyntheticSource(side, seed=seed).frames()
    return [next(source) for _ in range(n)]


def decoded(path: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture(scope="module")
def dynamic_ir(baseline_pt, tmp_path_factory) -> Path:
    """The baseline as a dynamic-shape FP32 IR: it runs spliced at 832."""
    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy

    out = tmp_path_factory.mktemp("stream") / "ir"
    deploy("openvino", str(baseline_pt), out, ExportConfig(precision="fp32", imgsz=256, dynamic=True), evaluate=False)
    return out


def test_stream_detections_equal_bench_postprocessing_on_the_same_frames(deploy_ir, tmp_path):
    video = write_video(tmp_path / "v.avi", shapes(10, 256), 30)
    with Stream(deploy_ir, [str(video)], requests=2) as stream:
        results = list(stream)
    frames = decoded(video)
    assert [r.frame for r in results] == list(range(len(frames))) == list(range(10))
    # the same runner (input conversion in the graph, as stream opens it), one frame after another: identical
    runner = open_runner(deploy_ir, BenchConfig(), input_in_graph=True)
    assert runner.accepts_u8_bgr
    same = Detector(runner, class_count(deploy_ir, runner))
    for result, frame in zip(results, frames):
        np.testing.assert_array_equal(result.boxes, same.detect(frame))
    # bench's float input: the conversion in numpy instead of the graph changes nothing beyond float rounding.
    # Both forced to f32: an FP32 IR runs as bf16 on CPUs with avx512_bf16 or AMX, whose rounding through the
    # network (0.19 px, 0.004 in a score, measured) would hide what this compares.
    f32 = BenchConfig(precision="f32")
    in_graph = open_runner(deploy_ir, f32, input_in_graph=True)
    bench = open_runner(deploy_ir, f32)
    assert in_graph.info.executed_precision == bench.info.executed_precision == "f32"
    in_graph, bench = (Detector(r, class_count(deploy_ir, r)) for r in (in_graph, bench))
    compared = 0
    for frame in frames:
        got, expected = in_graph.detect(frame), bench.detect(frame)
        assert got.shape == expected.shape and (got[:, 5] == expected[:, 5]).all()
        np.testing.assert_allclose(got[:, :4], expected[:, :4], rtol=0, atol=1e-5 * 256)
        np.testing.assert_allclose(got[:, 4], expected[:, 4], rtol=0, atol=1e-5)
        compared += len(got)
    assert compared >= 10
    assert sum(len(r.boxes) for r in results) >= 10  # the shapes are found: the comparison compared something
    assert stream.stats[0].ended == "end of source" and stream.stats[0].frames_dropped == 0


def _match(a: np.ndarray, b: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of boxes of the same class with IoU > 0.5 (greedy, highest scores first)."""
    pairs, used = [], set()
    for box in a[np.argsort(-a[:, 4])]:
        best, best_iou = None, 0.5
        for j, other in enumerate(b):
            if j in used or other[5] != box[5]:
                continue
            inter = np.prod(np.clip(np.minimum(box[2:4], other[2:4]) - np.maximum(box[:2], other[:2]), 0, None))
            union = np.prod(box[2:4] - box[:2]) + np.prod(other[2:4] - other[:2]) - inter
            if inter / union > best_iou:
                best, best_iou = j, inter / union
        if best is not None:
            used.add(best)
            pairs.append((box, b[best]))
    return pairs


def test_four_spliced_streams_of_different_sizes_rates_and_lengths_each_get_boxes_in_their_own_pixels(
        dynamic_ir, tmp_path):
    frames = shapes(12)
    videos = [write_video(tmp_path / "s416.avi", frames, 30),                       # the tile's own size
              write_video(tmp_path / "s832.avi", frames, 30, (832, 832)),           # twice the tile
              write_video(tmp_path / "odd.avi", frames[:8], 15, (1078, 1918)),      # odd size, another rate
              write_video(tmp_path / "short.avi", frames[:5], 25, (240, 320))]      # ends first
    with Stream(dynamic_ir, [str(v) for v in videos], splice=832) as stream:
        results = list(stream)
    by_stream = {i: [r for r in results if r.stream == i] for i in range(4)}
    assert [len(by_stream[i]) for i in range(4)] == [12, 12, 8, 5]  # drop=never: every frame of every stream
    assert [s.ended for s in stream.stats] == ["end of source"] * 4
    # after the short stream ended, the others went on (rounds without it)
    assert max(r.frame for r in by_stream[0]) == 11
    for i, (h, w) in enumerate([(416, 416), (832, 832), (1078, 1918), (240, 320)]):
        boxes = np.concatenate([r.boxes for r in by_stream[i]])
        assert len(boxes), f"stream {i} found nothing"
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= w).all(), f"stream {i} x outside 0..{w}"
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= h).all(), f"stream {i} y outside 0..{h}"
    # the 832 stream is the 416 one at twice the size: its boxes, halved, are the 416 stream's
    pairs = [p for a, b in zip(by_stream[0], by_stream[1]) for p in _match(a.boxes, b.boxes / [2, 2, 2, 2, 1, 1])]
    assert len(pairs) >= 0.8 * sum(len(r.boxes) for r in by_stream[0])
    assert max(np.abs(a[:4] - b[:4]).max() for a, b in pairs) < 0.02 * 416


def test_a_source_that_fails_mid_run_ends_its_stream_with_a_note_and_the_others_go_on(dynamic_ir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(shapes(5, seed=3)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), frame)
    (folder / "02.png").write_bytes(b"not an image")  # the third image is damaged
    video = write_video(tmp_path / "v.avi", shapes(8), 30)
    report = run_stream(dynamic_ir, [str(folder), str(video)], splice=832, out=tmp_path / "d.jsonl")
    images, clip = report.streams
    assert images.frames_detected == 2 and images.ended.startswith("failed: image") and "02.png" in images.ended
    assert clip.frames_detected == 8 and clip.ended == "end of source"
    assert any("02.png" in note for note in report.notes())
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(lines) == 10 and {line["stream"] for line in lines} == {0, 1}
    assert all(line["time_s"] is None for line in lines if line["stream"] == 0)  # images have no time
    assert [line["time_s"] for line in lines if line["stream"] == 1][:2] == [0.0, pytest.approx(1 / 30, abs=1e-3)]


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_a_consumer_that_never_reads_holds_memory_bounded_by_the_queues(deploy_ir):
    waiting = Stream(deploy_ir, ["synthetic"], results=4, capacity=2, requests=1).start()  # endless, drop=never
    try:
        _wait(lambda: waiting.pending == 4)
        time.sleep(1.0)
        read = waiting.stats[0].frames_read
        time.sleep(1.0)
        # blocked: 4 undelivered results, 2 queued frames, one in hand and one waiting to be queued
        assert waiting.stats[0].frames_read == read <= 4 + 2 + 2 and waiting.pending == 4
    finally:
        waiting.close()
    dropping = Stream(deploy_ir, ["synthetic"], results=4, capacity=2, requests=1, drop="oldest").start()
    try:
        _wait(lambda: dropping.dropped_results >= 5)
        detected = dropping.stats[0].frames_detected
        _wait(lambda: dropping.stats[0].frames_detected > detected + 3)  # it keeps going, dropping the oldest
        assert dropping.pending <= 4
    finally:
        dropping.close()
    assert not dropping._thread.is_alive()


def test_the_cli_writes_one_json_line_per_frame_and_reports_per_stream(deploy_ir, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli.main import cli

    video = write_video(tmp_path / "v.avi", shapes(6, 256), 30)
    done = CliRunner().invoke(cli, ["stream", str(deploy_ir), str(video), "--out", str(tmp_path / "d.jsonl"),
                                    "--save-video", str(tmp_path / "vid"), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["streams"][0]["frames_detected"] == 6 and report["fps_all_streams"] > 0
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(6))
    assert len(decoded(tmp_path / "vid" / "stream0.avi")) == 6


def test_the_default_keeps_two_requests_per_runtime_slot_and_the_report_says_the_cpu_it_used(deploy_ir, tmp_path):
    video = write_video(tmp_path / "v.avi", shapes(8, 256), 30)
    slots = open_runner(deploy_ir, BenchConfig(hint="throughput"), input_in_graph=True).default_requests()
    outer = time.process_time()
    report = run_stream(deploy_ir, [str(video)])
    outer = time.process_time() - outer
    assert report.requests == 2 * slots and report.frames == 8
    assert 0 < report.cpu_s <= outer and 0 < report.cpu_busy <= 1.1  # process time, every thread counted
    assert f"of {report.cores} core(s) busy" in report.bound()
    # the serial stages' busy time is measured, and each is within the run
    assert 0 < report.streams[0].read_s < report.wall_s and 0 < report.work_s < report.wall_s
    assert run_stream(deploy_ir, [str(video)], requests=1).requests == 1


@pytest.mark.parametrize("cpu_s, read_s, work_s, expected", [
    (1.9, 0.5, 0.3, "the CPU (95% of 2 core(s) busy, 19.00 ms of CPU per frame)"),
    (1.0, 0.5, 0.3, "waiting on the runtime or the device (50% of 2 core(s) busy"),
    (1.5, 0.95, 0.3, "reading stream 1 (95% of the run on its thread), with 75% of 2 core(s) busy"),
    (1.9, 0.2, 0.92, "pre/post-processing on the pipeline thread (92% of the run), on a saturated CPU (95%"),
])
def test_the_bound_is_the_busiest_serial_stage_else_the_cpu_when_the_cores_were_busy(cpu_s, read_s, work_s,
                                                                                    expected):
    from targets.stream import StreamStats
    from toolchain.pipelines.stream import StreamReport

    streams = [StreamStats("a.avi", frames_read=50, frames_detected=50, read_s=0.1),
               StreamStats("b.avi", frames_read=50, frames_detected=50, read_s=read_s)]
    report = StreamReport("ir", streams, wall_s=1.0, splice=832, requests=4, drop="never", runner={}, cpu_s=cpu_s,
                          cores=2, work_s=work_s)
    assert report.bound().startswith(expected) and report.to_json()["bound_by"] == report.bound()


@pytest.mark.parametrize("args, expected", [
    (["--splice", "512"], "static 256x256 IR; deploy with --dynamic-shape"),
    (["--show"], "DISPLAY is not set"),
])
def test_cli_refusals_are_one_sentence(deploy_ir, tmp_path, monkeypatch, args, expected):
    from click.testing import CliRunner

    from toolchain.cli.main import cli

    monkeypatch.delenv("DISPLAY", raising=False)
    video = write_video(tmp_path / "v.avi", shapes(2, 256), 30)
    done = CliRunner().invoke(cli, ["stream", str(deploy_ir), str(video), *args])
    assert done.exit_code == 2 and expected in done.output and "Traceback" not in done.output, done.output
