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
from targets.ultralytics_exports import build_ultralytics_exports
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


def ultralytics_fps(export: str, videos: list[Path], imgsz: int) -> float:
    """Frames per second of Ultralytics' predict over ``videos`` (advanced in turn when several)."""
    from ultralytics import YOLO

    models = [YOLO(export, task="detect") for _ in videos]
    streams = [m.predict(str(v), stream=True, imgsz=imgsz, conf=CONF, iou=IOU, verbose=False, device="cpu")
               for m, v in zip(models, videos)]
    next(streams[0])  # the first call loads and compiles the model: not a frame rate
    frames, start = 1, time.perf_counter()
    live = list(streams)
    while live:
        for stream in list(live):
            try:
                next(stream)
                frames += 1
            except StopIteration:
                live.remove(stream)
    return (frames - 1) / (time.perf_counter() - start)


def edgeprune_fps(artifact: str, videos: list[Path], splice: int | None = None) -> tuple[float, str]:
    report = edgeprune.stream(artifact, [str(v) for v in videos], splice=splice, conf=CONF, iou=IOU)
    frames = sum(s.frames_detected for s in report.streams)
    return frames / report.wall_s, report.runner.get("executed_precision", "?")


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
    for name, model in (("unpruned", args.unpruned), ("pruned", args.pruned)):
        folder = out / f"{name}-dynamic-fp32"
        if not folder.exists():
            edgeprune.deploy(model, "openvino", str(folder), precision="fp32", imgsz=side, dynamic=True,
                             evaluate=False)
        spliced[name] = str(folder)

    runs: dict[str, list[float]] = {}
    executed: dict[str, str] = {}

    def record(key: str, fps: float) -> None:
        runs.setdefault(key, []).append(fps)
        print(f"  {key}: {fps:.1f} FPS", flush=True)

    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}", flush=True)
        for label, video in videos.items():
            for ref in exports:
                record(f"{label}|ultralytics|{ref.label}", ultralytics_fps(ref.artifact, [video], side))
                fps, executed[ref.label] = edgeprune_fps(ref.artifact, [video])
                record(f"{label}|edgeprune (a)|{ref.label}", fps)
            for precision, folder in pruned.items():
                fps, executed[f"pruned {precision}"] = edgeprune_fps(folder, [video])
                record(f"{label}|edgeprune (b)|pruned {precision}", fps)
        for ref in exports:
            record(f"4x{side}|ultralytics|{ref.label}", ultralytics_fps(ref.artifact, four, side))
        for precision, folder in pruned.items():
            record(f"4x{side}|edgeprune (b) separate|pruned {precision}", edgeprune_fps(folder, four)[0])
        for name, folder in spliced.items():
            record(f"4x{side}|edgeprune splice {2 * side}|{name} fp32", edgeprune_fps(folder, four, 2 * side)[0])

    mean = {key: statistics.mean(values) for key, values in runs.items()}
    rows = []
    for label in [*videos, f"4x{side}"]:
        entries = {key.split("|", 1)[1]: fps for key, fps in mean.items() if key.split("|")[0] == label}
        best_ref = max((fps, key) for key, fps in entries.items() if key.startswith("ultralytics"))
        for key, fps in sorted(entries.items(), key=lambda kv: -kv[1]):
            rows.append((label, key, fps, fps / best_ref[0], key == best_ref[1]))
    device = (f"{cpu_name()}, {os.cpu_count()} logical CPUs, OpenVINO CPU plugin (latency hint for Ultralytics' "
              f"single request; edgeprune 2 requests in flight), batch 1, decode + pre/post-processing included")
    print(f"\n{device}; mean of {args.rounds} interleaved rounds, {args.seconds:g} s videos at 30 fps\n")
    print("| video | pipeline | model / export | FPS | vs best Ultralytics |")
    print("|---|---|---|---|---|")
    for label, key, fps, ratio, is_best in rows:
        pipeline, model = key.split("|", 1)
        print(f"| {label} | {pipeline} | {model}{' (best Ultralytics)' if is_best else ''} | {fps:.1f} | {ratio:.2f}x |")
    (out / "e2e_vs_ultralytics.json").write_text(json.dumps(
        {"device": device, "platform": platform.platform(), "rounds": args.rounds, "seconds": args.seconds,
         "runs": runs, "mean": mean, "executed_precision": executed}, indent=2))


if __name__ == "__main__":
    main()
