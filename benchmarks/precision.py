"""FP32 vs FP16 vs INT8 latency for OpenVINO and ONNX Runtime, in one run.

Usage:
    .venv/bin/python benchmarks/precision.py [--model assets/yolov8n-synth.pt] [--data DATA]
        [--imgsz 256] [--rounds 3] [--seconds 4] [--threads N]

Every artifact is built from the same checkpoint (INT8 calibrated on --data), then measured
with edgeprune's bench harness in interleaved rounds (so machine noise hits all alike):
inference only, batch 1, latency hint, one request. OpenVINO rows are measured twice: with
the precision the CPU plugin picks by itself ("auto", reported: on CPUs with bf16 support an
FP32 IR runs in bf16) and forced to f32. Ratios are FPS against OpenVINO FP32 forced to f32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from targets.base import ExportConfig  # noqa: E402
from targets.bench import BenchConfig, measure_inference  # noqa: E402
from toolchain.pipelines.bench import open_runner  # noqa: E402
from toolchain.pipelines.deploy import deploy  # noqa: E402
from toolchain.core.latency import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "assets" / "yolov8n-synth.pt"))
    parser.add_argument("--data", default=str(REPO / ".cache" / "synth-default" / "data.yaml"))
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not Path(args.data).exists():
        from toolchain.core.synth import SynthConfig, generate

        generate(Path(args.data).parent, SynthConfig())

    tmp = Path(tempfile.mkdtemp(prefix="precision-"))
    configs = []  # (label, artifact, bench precision)
    for target in ("openvino", "onnx"):
        for precision in ("fp32", "fp16", "int8"):
            cfg = ExportConfig(precision=precision, imgsz=args.imgsz, data=args.data)
            out = tmp / f"{target}-{precision}"
            deploy(target, args.model, out, cfg, evaluate=False)
            if target == "openvino":
                configs.append((f"openvino {precision} (f32 forced)", out, "f32"))
                configs.append((f"openvino {precision} (auto)", out, "auto"))
            else:
                configs.append((f"onnxruntime {precision}", out, "auto"))

    runners = {}
    for label, artifact, precision in configs:
        cfg = BenchConfig(duration=args.seconds, warmup=10, threads=args.threads, precision=precision)
        runners[label] = (open_runner(artifact, cfg), cfg, artifact)
    fps = {label: [] for label in runners}
    last = {}
    for _ in range(args.rounds):
        for label, (runner, cfg, artifact) in runners.items():
            result = measure_inference(runner, str(artifact), cfg)
            fps[label].append(result.throughput_fps)
            last[label] = result

    ref = statistics.median(fps["openvino fp32 (f32 forced)"])
    first = next(iter(last.values()))
    print(f"device: CPU ({cpu_name()}), batch 1, latency hint, 1 request, threads {first.threads}, "
          f"input {args.imgsz}x{args.imgsz}, inference only (no pre/post-processing)")
    print(f"median FPS over {args.rounds} interleaved rounds of {args.seconds:g} s; ratio vs OpenVINO FP32 in f32")
    print(f"{'configuration':<34}{'stored':>8}{'executed':>14}{'FPS':>10}{'median ms':>11}{'ratio':>8}")
    for label, result in last.items():
        value = statistics.median(fps[label])
        print(f"{label:<34}{result.artifact_precision:>8}{result.executed_precision:>14}{value:>10.1f}"
              f"{result.latency.median_ms:>11.2f}{value / ref:>7.2f}x")


if __name__ == "__main__":
    main()
