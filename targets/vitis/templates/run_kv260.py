#!/usr/bin/env python3
"""Run an edgeprune-deployed YOLO detector on a Kria KV260's DPU: detect, benchmark, 4-stream splicing.

Self-contained on purpose: it is copied to the board, which has numpy, OpenCV and the Vitis AI
runtime (``xir``, ``vart``) but neither torch nor edgeprune. ``edgeprune deploy vitis`` writes
it next to the compiled ``.xmodel`` and ``metadata.yaml`` (JSON text, which YAML readers accept).

The DPU graph ends at the head's convolutions: one int8 NHWC map per stride (Ultralytics:
``[4 * reg_max box logits | nc class logits]``; Darknet: the map feeding each [yolo] layer).
As on the DPU, the fitted RGB input (letterboxed, or stretched for Darknet models) is quantised
with the input tensor's ``fix_point`` (``int8 = round(x * 2**fix_point)``) and every output is
dequantised with its own (``x = int8 * 2**-fix_point``); the box decode (DFL or Darknet anchors)
and NMS then run in numpy, in the host's own pre/post-processing code (toolchain/core/prepost.py),
which the bundle embeds below, driven by the metadata's ``head`` description.

Usage (on the board, in the bundle folder):
    python3 run_kv260.py bench [--threads 2] [--iterations N | --duration S] [--json]
    python3 run_kv260.py e2e SOURCE [--threads 2] [--duration S] [--json]
    python3 run_kv260.py detect SOURCE [--conf 0.25] [--iou 0.45]
    python3 run_kv260.py streams S1 S2 S3 S4 [--duration S] [--json]   (xmodel built at 2x the tile, e.g. 832)
SOURCE is an image, a folder of images, a video file or ``synthetic``. Results print in the
JSON format of ``edgeprune bench``.
"""

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone

import cv2
import numpy as np

MAX_FRAMES = 200  # frames of a SOURCE kept in memory, so decoding is not what is measured

# The host's pre/post-processing and latency statistics, embedded verbatim when the bundle is written
# (`edgeprune deploy vitis`), so the board decodes and measures exactly as the host does.
# edgeprune:embed toolchain.core.prepost
# edgeprune:embed toolchain.core.latency


# ---------------------------------------------------------------- DPU input

def quantize_input(padded_bgr, fix_point):
    """BGR uint8 HWC -> int8 NHWC RGB, scaled by 2**fix_point as the DPU input tensor expects."""
    rgb = padded_bgr[..., ::-1].astype(np.float32) * (2.0 ** fix_point / 255.0)
    return np.clip(np.round(rgb), -128, 127).astype(np.int8)[None]


# ---------------------------------------------------------------- the DPU

class DPUModel:
    """One compiled xmodel with ``threads`` VART runners (one per worker thread) on its single DPU subgraph."""

    def __init__(self, xmodel, threads=1):
        import vart
        import xir

        graph = xir.Graph.deserialize(xmodel)
        subgraphs = [s for s in graph.get_root_subgraph().toposort_child_subgraph()
                     if s.has_attr("device") and s.get_attr("device").upper() == "DPU"]
        if len(subgraphs) != 1:
            raise SystemExit("%s has %d DPU subgraphs; run_kv260.py runs single-subgraph models "
                             "(rewrite with `edgeprune dpu-rewrite` and deploy again)" % (xmodel, len(subgraphs)))
        self.subgraph = subgraphs[0]
        self.runners = [vart.Runner.create_runner(self.subgraph, "run") for _ in range(max(1, threads))]
        first = self.runners[0]
        tensor = first.get_input_tensors()[0]
        self.input_dims = tuple(tensor.dims)  # (1, H, W, 3)
        self.input_fix_point = int(tensor.get_attr("fix_point"))
        outputs = first.get_output_tensors()
        self.output_dims = [tuple(t.dims) for t in outputs]
        self.output_scales = [2.0 ** -int(t.get_attr("fix_point")) for t in outputs]
        # largest map first = stride 8, 16, 32: the order the decode's strides are listed in
        self.order = sorted(range(len(outputs)), key=lambda k: -self.output_dims[k][1] * self.output_dims[k][2])
        self.backend_version = str(getattr(vart, "__version__", "unknown"))
        self.fingerprint = str(self.subgraph.get_attr("dpu_fingerprint")) if self.subgraph.has_attr(
            "dpu_fingerprint") else ""

    @property
    def size(self):
        return int(self.input_dims[1]), int(self.input_dims[2])

    def buffers(self):
        return ([np.zeros(self.input_dims, np.int8)], [np.zeros(d, np.int8) for d in self.output_dims])

    def run(self, worker, inputs, outputs):
        runner = self.runners[worker]
        job = runner.execute_async(inputs, outputs)
        runner.wait(job)

    def dequantize(self, outputs):
        """int8 NHWC outputs -> float (H, W, C) maps, largest first."""
        return [outputs[k][0].astype(np.float32) * self.output_scales[k] for k in self.order]


class Detector:
    """Fit (letterbox or stretch), quantise, infer, decode and NMS for one worker's runner."""

    def __init__(self, model, meta, worker=0, conf=DETECT_CONF, iou=DETECT_IOU):
        self.model, self.worker, self.conf, self.iou = model, worker, conf, iou
        self.head, self.resize, self.nc = meta["head"], meta["resize"], int(meta["head"]["nc"])
        self.inputs, self.outputs = model.buffers()

    def detect(self, frame, timings=None):
        t0 = time.perf_counter()
        padded, box = fit(frame, self.model.size, self.resize)
        self.inputs[0][...] = quantize_input(padded, self.model.input_fix_point)
        t1 = time.perf_counter()
        self.model.run(self.worker, self.inputs, self.outputs)
        t2 = time.perf_counter()
        raw = predictions(self.model.dequantize(self.outputs), self.head, self.model.size, nchw=False)
        dets = nms(raw[0].T, self.conf, self.iou)
        dets[:, :4] = box.to_original(dets[:, :4], frame.shape[:2])
        t3 = time.perf_counter()
        if timings is not None:
            for key, value in (("preprocess", t1 - t0), ("inference", t2 - t1), ("postprocess", t3 - t2)):
                timings.setdefault(key, []).append(value)
        return dets


# ---------------------------------------------------------------- measurement

def _stop_rule(args):
    if args.iterations:
        return lambda started, elapsed: started < args.iterations
    return lambda started, elapsed: elapsed < args.duration


def _result(mode, model, meta, args, iterations, wall, first_ms, latencies, fps, pre_post, extra=None, notes=None):
    device = meta.get("dpu", "DPU") + (" (fingerprint %s)" % model.fingerprint if model.fingerprint else "")
    requested = {"threads": args.threads, "iterations": args.iterations, "duration": args.duration,
                 "warmup": args.warmup}
    return {
        "mode": mode, "artifact": os.path.basename(args.model), "backend": "vart",
        "backend_version": model.backend_version, "device": device, "cpu": cpu_name(),
        "artifact_precision": "int8", "executed_precision": "int8", "hint": "throughput" if args.threads > 1
        else "latency", "requests": args.threads, "threads": args.threads, "batch": int(model.input_dims[0]),
        "input_shape": [int(model.input_dims[0]), int(model.input_dims[3]), int(model.input_dims[1]),
                        int(model.input_dims[2])],
        "warmup": args.warmup, "iterations": iterations, "duration_s": wall, "first_inference_ms": first_ms,
        "latency": asdict(LatencyStats.of(latencies)), "throughput_fps": fps, "includes_pre_post": pre_post,
        "requested": requested, "extra": extra or {}, "notes": notes or [],
        "timestamp": datetime.now(timezone.utc).isoformat(), "command": " ".join(sys.argv),
    }


def _threaded(workers, step, keep_going):
    """Run ``step(worker)`` on every worker thread while ``keep_going(started, elapsed)``; per-step seconds."""
    latencies, lock, started = [], threading.Lock(), [0]
    t0 = time.perf_counter()

    def loop(worker):
        while True:
            with lock:
                if not keep_going(started[0], time.perf_counter() - t0):
                    return
                index = started[0]
                started[0] += 1
            begin = time.perf_counter()
            step(worker, index)
            with lock:
                latencies.append(time.perf_counter() - begin)

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0


def bench_inference(model, meta, args):
    """Inference only: the int8 input is filled once, outside the timed loop (like benchmark_app)."""
    buffers = [model.buffers() for _ in model.runners]
    rng = np.random.default_rng(0)
    for inputs, _ in buffers:
        inputs[0][...] = rng.integers(-128, 128, size=model.input_dims, dtype=np.int8)
    t0 = time.perf_counter()
    model.run(0, *buffers[0])
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(args.warmup):
        model.run(0, *buffers[0])
    latencies, wall = _threaded(len(model.runners), lambda w, i: model.run(w, *buffers[w]), _stop_rule(args))
    return _result("inference", model, meta, args, len(latencies), wall, first_ms, latencies,
                   len(latencies) * int(model.input_dims[0]) / wall, False)


def load_frames(source, size=None, limit=MAX_FRAMES):
    """BGR frames of an image, a folder, a video or ``synthetic`` (random frames of ``size``)."""
    if source == "synthetic":
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8) for _ in range(8)]
    if os.path.isdir(source):
        files = sorted(os.path.join(source, f) for f in os.listdir(source) if f.lower().endswith(IMAGE_SUFFIXES))
        frames = [cv2.imread(f) for f in files[:limit]]
    elif source.lower().endswith(VIDEO_SUFFIXES):
        cap, frames = cv2.VideoCapture(source), []
        while len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    else:
        frames = [cv2.imread(source)]
    frames = [f for f in frames if f is not None]
    if not frames:
        raise SystemExit("no readable frames in %s" % source)
    return frames


def bench_e2e(model, meta, args):
    """Fit + quantise + infer + decode + NMS per frame, ``threads`` frames in flight."""
    frames = load_frames(args.source, model.size)
    detectors = [Detector(model, meta, w, args.conf, args.iou) for w in range(len(model.runners))]
    t0 = time.perf_counter()
    detectors[0].detect(frames[0])
    first_ms = (time.perf_counter() - t0) * 1000
    for i in range(args.warmup):
        detectors[0].detect(frames[i % len(frames)])
    timings, lock = {}, threading.Lock()

    def step(worker, index):
        local = {}
        detectors[worker].detect(frames[index % len(frames)], local)
        with lock:
            for key, values in local.items():
                timings.setdefault(key, []).extend(values)

    latencies, wall = _threaded(len(detectors), step, _stop_rule(args))
    extra = {"source": args.source, "frame_interval": 1, "frames": len(latencies),
             "detections_run": len(latencies), "effective_fps": len(latencies) / wall,
             "detection_fps": len(latencies) / wall,
             "stage_median_ms": {k: float(np.median(v) * 1000) for k, v in timings.items()},
             "conf": args.conf, "iou": args.iou}
    notes = ["e2e: up to %d frames of the source are decoded into memory first; decode is not timed" % MAX_FRAMES]
    return _result("e2e", model, meta, args, len(latencies), wall, first_ms, latencies, len(latencies) / wall, True,
                   extra, notes)


def bench_streams(model, meta, args):
    """Four sources spliced 2x2 into one input (e.g. 4 x 416 -> 832), one inference, detections mapped back."""
    if len(args.sources) != 4:
        raise SystemExit("streams needs 4 sources, got %d" % len(args.sources))
    height, width = model.size
    if height != width or height % 2:
        raise SystemExit("streams needs a square xmodel input of even side, got %dx%d" % (height, width))
    tile = height // 2
    sources = [load_frames(s, (tile, tile)) for s in args.sources]
    detector = Detector(model, meta, 0, args.conf, args.iou)

    def step(worker, index):
        frames = [frames_[index % len(frames_)] for frames_ in sources]
        return unsplice(detector.detect(splice(frames, tile)), tile)

    t0 = time.perf_counter()
    step(0, 0)
    first_ms = (time.perf_counter() - t0) * 1000
    for i in range(args.warmup):
        step(0, i)
    latencies, wall = _threaded(1, step, _stop_rule(args))
    per_stream = len(latencies) / wall
    extra = {"streams": 4, "tile": tile, "spliced_input": [height, width], "sources": list(args.sources),
             "spliced": {"per_stream_fps": per_stream, "aggregate_fps": per_stream * 4, "rounds": len(latencies),
                         "round_latency_median_ms": LatencyStats.of(latencies).median_ms}}
    notes = ["a round = one frame from every stream, spliced, detected and mapped back",
             "separate 4-inference rounds need an xmodel compiled at the tile size; not measured here"]
    return _result("streams", model, meta, args, len(latencies), wall, first_ms, latencies, per_stream * 4, True,
                   extra, notes)


def detect_images(model, meta, args):
    detector = Detector(model, meta, 0, args.conf, args.iou)
    results = []
    if os.path.isdir(args.source):
        files = sorted(os.path.join(args.source, f) for f in os.listdir(args.source)
                       if f.lower().endswith(IMAGE_SUFFIXES))
    else:
        files = [args.source]
    names = meta.get("names", {})
    for path in files:
        image = cv2.imread(path)
        if image is None:
            raise SystemExit("cannot read image %s" % path)
        dets = detector.detect(image)
        results.append({"image": path, "detections": dets.tolist(),
                        "labels": [names.get(str(int(d[5])), str(int(d[5]))) for d in dets]})
    return results


# ---------------------------------------------------------------- command line

def read_meta(path):
    """metadata.yaml written by edgeprune (JSON text) -> decode parameters and names."""
    with open(path) as fh:
        meta = json.load(fh)
    ours = meta["edgeprune"]
    vitis = ours["vitis"]
    return {"head": ours["head"], "resize": ours.get("resize") or "letterbox", "dpu": vitis["dpu"],
            "names": {str(k): v for k, v in meta.get("names", {}).items()}, "xmodel": vitis["xmodel"]}


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta", default=os.path.join(here, "metadata.yaml"), help="metadata.yaml of the bundle")
    parser.add_argument("--model", default=None, help="xmodel (default: the one named in metadata.yaml)")
    parser.add_argument("--threads", type=int, default=1, help="VART runners, one per worker thread")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--conf", type=float, default=DETECT_CONF)
    parser.add_argument("--iou", type=float, default=DETECT_IOU)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="inference-only FPS and latency")
    e2e = sub.add_parser("e2e", help="FPS including pre/post-processing")
    e2e.add_argument("source", nargs="?", default="synthetic")
    det = sub.add_parser("detect", help="print detections as JSON")
    det.add_argument("source")
    streams = sub.add_parser("streams", help="4 streams spliced 2x2 into one inference")
    streams.add_argument("sources", nargs=4)
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.iterations is not None and args.iterations < 1) or args.duration <= 0:
        parser.error("--threads and --iterations must be at least 1 and --duration positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    meta = read_meta(args.meta)
    args.model = args.model or os.path.join(os.path.dirname(os.path.abspath(args.meta)), meta["xmodel"])
    model = DPUModel(args.model, args.threads if args.command in ("bench", "e2e") else 1)
    if args.command == "detect":
        print(json.dumps(detect_images(model, meta, args)))
        return
    result = {"bench": bench_inference, "e2e": bench_e2e, "streams": bench_streams}[args.command](model, meta, args)
    if not args.json:
        print("%s: %.1f FPS, median %.2f ms (%d iterations, %d thread(s))" % (
            result["mode"], result["throughput_fps"], result["latency"]["median_ms"], result["iterations"],
            result["threads"]), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
