"""Is edgeprune's inference-only throughput the number OpenVINO's benchmark_app reports?

Usage:
    .venv/bin/python benchmarks/harness_vs_benchmark_app.py [--ir DIR_OR_XML] [--hint throughput]
        [--seconds 15] [--rounds 3] [--precision f32]

Both tools run the same IR with the same settings (device CPU, hint, inference precision,
number of requests = the plugin's optimum for the hint, which is what benchmark_app uses by
default, the same input array) in alternating rounds, in this one process tree. benchmark_app's "Throughput" line
is parsed; the ratio edgeprune / benchmark_app is printed (target: within 5%).
Without --ir, the committed baseline is exported to a temporary FP32 IR first.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from targets.bench import BenchConfig, bench_input, measure_inference  # noqa: E402
from toolchain.pipelines.bench import open_runner  # noqa: E402
from toolchain.core.latency import cpu_name  # noqa: E402


def benchmark_app(xml: Path, hint: str, seconds: float, precision: str, nireq: int, input_npy: Path
                  ) -> tuple[float, str]:
    exe = Path(sys.executable).with_name("benchmark_app")
    cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", hint, "-t", str(int(seconds)), "-api", "async",
           "-infer_precision", precision, "-nireq", str(nireq), "-ip", "f32", "-i", str(input_npy)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", proc.stdout)
    if not match:
        raise RuntimeError("benchmark_app printed no throughput:\n" + proc.stdout[-2000:])
    return float(match.group(1)), " ".join(cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ir", default=None)
    parser.add_argument("--hint", choices=["throughput", "latency"], default="throughput")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="f32")
    args = parser.parse_args()

    ir = Path(args.ir) if args.ir else None
    if ir is None:
        from targets.base import ExportConfig
        from toolchain.pipelines.deploy import deploy

        result = deploy("openvino", str(REPO / "assets" / "yolov8n-synth.pt"),
                        Path(tempfile.mkdtemp(prefix="vs-bapp-")), ExportConfig(imgsz=256), evaluate=False)
        ir = Path(result.artifact)
    xml = ir if ir.suffix == ".xml" else next(ir.rglob("*.xml"))

    cfg = BenchConfig(hint=args.hint, precision=args.precision, duration=args.seconds, warmup=10)
    runner = open_runner(xml, cfg)
    nireq = runner.default_requests() if args.hint == "throughput" else 1
    cfg = BenchConfig(hint=args.hint, precision=args.precision, duration=args.seconds, warmup=10, requests=nireq)
    # the same input for both (benchmark_app's own fill, noise in [0, 255], changes a YOLO IR's run time)
    scratch = tempfile.TemporaryDirectory(prefix="vs-bapp-input-")  # removed at exit
    input_npy = Path(scratch.name) / "input.npy"
    np.save(input_npy, bench_input(runner.info.input_shape))
    ours, theirs = [], []
    command = ""
    for _ in range(args.rounds):
        fps, command = benchmark_app(xml, args.hint, args.seconds, args.precision, nireq, input_npy)
        theirs.append(fps)
        result = measure_inference(runner, str(xml), cfg)
        ours.append(result.throughput_fps)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"IR: {xml}")
    print(f"device CPU ({cpu_name()}), hint {args.hint}, {nireq} requests, inference precision "
          f"{result.executed_precision}, {args.seconds:g} s per run, {args.rounds} alternating rounds, batch 1, "
          "inference only")
    print(f"benchmark_app: {command}")
    print(f"benchmark_app throughput (median): {b:.1f} FPS   rounds: {', '.join(f'{v:.1f}' for v in theirs)}")
    print(f"edgeprune     throughput (median): {a:.1f} FPS   rounds: {', '.join(f'{v:.1f}' for v in ours)}")
    print(f"ratio edgeprune / benchmark_app: {a / b:.3f}")


if __name__ == "__main__":
    main()
