"""Video frames per second, decode included: Ultralytics' own pipeline against ``edgeprune stream``.

What a user runs today is ``YOLO(export_folder).predict(video, stream=True)`` with the best of
Ultralytics' exports of their model; this measures it against ``edgeprune stream`` with (a) that same
export (the pipeline alone: decode thread, request queue, overlapped post-processing) and (b) the
pruned model deployed by edgeprune (FP32 and INT8, the faster kept), on the same video files, the same
device and the same thresholds (conf 0.25, IoU 0.45), in interleaved rounds, reporting the mean.
Four streams: Ultralytics' four predict generators advanced in turn (one thread, what a user writes)
against edgeprune's four separate streams and four streams spliced into one frame of twice the side.

Usage:
    PYTHONPATH=. .venv/bin/python benchmarks/e2e_vs_ultralytics.py UNPRUNED.pt PRUNED.pt --data DATA.yaml \\
        [--imgsz 416] [--seconds 30] [--rounds 2] [--out DIR]

The videos (moving shapes at the model size, at 640 and at an odd 1918x1078; 30 frames per second,
MJPG) are made by the script. Prints a markdown table and writes DIR/e2e_vs_ultralytics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2

import edgeprune
from targets.frame_sources import SyntheticSource
from targets.stream import cpu_share
from targets.ultralytics_exports import build_ultralytics_exports
from toolchain.core.device import cpu_threads
from toolchain.core.latency import cpu_name

CONF, IOU = 0.25, 0.45


def make_video(path: Path, size_hw: tuple[int, int], seconds: float, seed: int) -> Path:
    if path.exists():
        return path
    h, w = size_hw
    frames = SyntheticSource(max(h, w), seed=seed).frames()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for _ in range(int(seconds * 30)):
        writer.write(next(frames)[:h, :w])
    writer.release()
    return path


def ultralytics_fps(export: str, videos: list[Path], imgsz: int) -> tuple[float, dict]:
    """Frames per second of Ultralytics' predict over ``videos`` (advanced in turn when several), and the
    median of its own per-image stage times (``Results.speed``: preprocess, inference, postprocess ms) with
    the share of the cores the process kept busy (``cpu_busy``)."""
    from ultralytics import YOLO

    models = [YOLO(export, task="detect") for _ in videos]
    streams = [m.predict(str(v), stream=True, imgsz=imgsz, conf=CONF, iou=IOU, verbose=False, device="cpu")
               for m, v in zip(models, videos)]
    next(streams[0])  # the first call loads and compiles the model: not a frame rate
    frames, start, cpu, speeds = 1, time.perf_counter(), time.process_time(), []
    live = list(streams)
    while live:
        for stream in list(live):
            try:
                speeds.append(next(stream).speed)
                frames += 1
            except StopIteration:
                live.remove(stream)
    wall = time.perf_counter() - start
    busy = cpu_share(time.process_time() - cpu, wall, cpu_threads())
    return (frames - 1) / wall, {**{k: statistics.median(s[k] for s in speeds) for k in speeds[0]}, "cpu_busy": busy}


def edgeprune_fps(artifact: str, videos: list[Path], splice: int | None = None):
    """Frames per second of ``edgeprune stream`` (its default requests) and its report (precision, CPU used)."""
    report = edgeprune.stream(artifact, [str(v) for v in videos], splice=splice, conf=CONF, iou=IOU)
    return report.fps, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("unpruned")
    parser.add_argument("pruned")
    parser.add_argument("--data", required=True)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="e2e-vs-ultralytics")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    side = args.imgsz
    videos = {f"{side}": make_video(out / f"v{side}.avi", (side, side), args.seconds, 0),
              "640": make_video(out / "v640.avi", (640, 640), args.seconds, 1),
              "1918x1078": make_video(out / "v1918.avi", (1078, 1918), args.seconds, 2)}
    four = [make_video(out / f"v{side}-{i}.avi", (side, side), args.seconds, 10 + i) for i in range(4)]

    exports = build_ultralytics_exports(args.unpruned, "openvino", side, args.data)
    pruned = {}
    for precision in ("fp32", "int8"):
        folder = out / f"pruned-{precision}"
        if not folder.exists():
            edgeprune.deploy(args.pruned, "openvino", str(folder), precision=precision, data=args.data, imgsz=side,
                             evaluate=False)
        pruned[precision] = str(folder)
    spliced = {}
    # both precisions of both models: which is faster differs by CPU (INT8 on an AVX-512 EPYC, bf16 on an AMX Xeon),
    # and the unpruned splice is the pipeline-alone row of the four streams
    for name, model, precision in (("unpruned", args.unpruned, "fp32"), ("unpruned", args.unpruned, "int8"),
                                   ("pruned", args.pruned, "fp32"), ("pruned", args.pruned, "int8")):
        folder = out / f"{name}-dynamic-{precision}"
        if not folder.exists():
            edgeprune.deploy(model, "openvino", str(folder), precision=precision, data=args.data, imgsz=side,
                             dynamic=True, evaluate=False)
        spliced[f"{name} {precision}"] = str(folder)

    runs: dict[str, list[float]] = {}
    executed: dict[str, str] = {}
    stages: dict[str, dict] = {}  # Ultralytics' own stage medians and CPU share per row (last round)
    used: dict[str, object] = {}  # edgeprune's stream report per row (last round): the CPU it kept busy

    def record(key: str, fps: float) -> None:
        runs.setdefault(key, []).append(fps)
        print(f"  {key}: {fps:.1f} FPS", flush=True)

    def ours(key: str, artifact: str, inputs: list[Path], splice: int | None = None) -> None:
        fps, used[key] = edgeprune_fps(artifact, inputs, splice)
        executed[key.split("|")[-1]] = used[key].runner.get("executed_precision", "?")
        record(key, fps)

    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}", flush=True)
        for label, video in videos.items():
            for ref in exports:
                fps, stages[f"{label}|ultralytics|{ref.label}"] = ultralytics_fps(ref.artifact, [video], side)
                record(f"{label}|ultralytics|{ref.label}", fps)
                ours(f"{label}|edgeprune (a)|{ref.label}", ref.artifact, [video])
            for precision, folder in pruned.items():
                ours(f"{label}|edgeprune (b)|pruned {precision}", folder, [video])
        for ref in exports:
            fps, stages[f"4x{side}|ultralytics|{ref.label}"] = ultralytics_fps(ref.artifact, four, side)
            record(f"4x{side}|ultralytics|{ref.label}", fps)
        for precision, folder in pruned.items():
            ours(f"4x{side}|edgeprune (b) separate|pruned {precision}", folder, four)
        for name, folder in spliced.items():
            ours(f"4x{side}|edgeprune splice {2 * side}|{name}", folder, four, 2 * side)

    # what bounds each row: for edgeprune the CPU its stream kept busy (a pipeline's stages overlap, so
    # sequential stage times cannot say it) beside the inference-only rate with the same requests (the
    # ceiling no pipeline can pass); for Ultralytics its own stage times, one after another on one thread
    ceiling: dict[str, float] = {}
    artifacts = {**{ref.label: ref.artifact for ref in exports}, **{f"pruned {p}": f for p, f in pruned.items()}}
    for name, artifact in artifacts.items():
        inference, = edgeprune.bench(artifact, duration=3, hint="throughput",
                                     requests=next(r.requests for k, r in used.items() if k.endswith(f"|{name}")))
        ceiling[name] = inference.throughput_fps

    def bound(key: str) -> str:
        video, pipeline, model = key.split("|")
        if pipeline == "ultralytics":
            speed = dict(stages.get(key, {}))
            busy = speed.pop("cpu_busy", 0.0)
            return ("one thread: " + ", ".join(f"{k} {v:.1f} ms" for k, v in speed.items())
                    + f"; {busy:.0%} of {cpu_threads()} core(s) busy")
        report = used.get(key)
        alone = f"; inference alone {ceiling[model]:.1f} FPS" if model in ceiling else ""
        return f"{report.bound()}{alone}" if report else "-"

    mean = {key: statistics.mean(values) for key, values in runs.items()}
    rows = []
    for label in [*videos, f"4x{side}"]:
        entries = {key.split("|", 1)[1]: fps for key, fps in mean.items() if key.split("|")[0] == label}
        best_ref = max((fps, key) for key, fps in entries.items() if key.startswith("ultralytics"))
        for key, fps in sorted(entries.items(), key=lambda kv: -kv[1]):
            rows.append((label, key, fps, fps / best_ref[0], key == best_ref[1], bound(f"{label}|{key}")))
    requests = sorted({report.requests for report in used.values()})
    device = (f"{cpu_name()}, {os.cpu_count()} logical CPUs, OpenVINO CPU plugin (latency hint for Ultralytics' "
              f"single request; edgeprune's default, {'/'.join(map(str, requests))} requests in flight, throughput "
              f"hint), batch 1, decode + pre/post-processing included")
    print(f"\n{device}; mean of {args.rounds} interleaved rounds, {args.seconds:g} s videos at 30 fps\n")
    print("| video | pipeline | model / export | FPS | vs best Ultralytics | bounded by |")
    print("|---|---|---|---|---|---|")
    for label, key, fps, ratio, is_best, why in rows:
        pipeline, model = key.split("|", 1)
        print(f"| {label} | {pipeline} | {model}{' (best Ultralytics)' if is_best else ''} | {fps:.1f} | "
              f"{ratio:.2f}x | {why} |")
    (out / "e2e_vs_ultralytics.json").write_text(json.dumps(
        {"device": device, "platform": platform.platform(), "rounds": args.rounds, "seconds": args.seconds,
         "runs": runs, "mean": mean, "executed_precision": executed, "ultralytics_stage_ms": stages,
         "edgeprune_bound": {key: report.to_json()["bound_by"] for key, report in used.items()},
         "edgeprune_requests": {key: report.requests for key, report in used.items()},
         "inference_alone_fps": ceiling}, indent=2))


if __name__ == "__main__":
    main()
