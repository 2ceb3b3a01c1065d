"""Does structured pruning make the model faster? Baseline vs pruned 0.3/0.5/0.7, one run.

Usage:
    .venv/bin/python benchmarks/prune_speed.py [--model assets/yolov8n-synth.pt] [--imgsz 256]
        [--rounds 5] [--iters 20] [--threads N]

Each model is pruned (L1, local, round-to 8), then timed on the same backend in the same
process: PyTorch eager FP32 and ONNX Runtime CPU FP32 (the Ultralytics ONNX export of each
checkpoint). Models are timed in interleaved rounds so machine noise hits all of them alike;
the table shows the median latency, batch 1, inference only (no pre/post-processing), and
the ratio against the unpruned baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from targets.bench import BenchConfig, measure_inference  # noqa: E402
from targets.registry import get_target  # noqa: E402
from targets.torch_runner import TorchRunner  # noqa: E402
from toolchain.models.loading import load_model  # noqa: E402
from toolchain.core.latency import cpu_name  # noqa: E402
from toolchain.models.pruning import PruneConfig  # noqa: E402
from toolchain.models.prune_job import prune_file  # noqa: E402


def median_ms(runner, name: str, iters: int) -> float:
    """Median latency of one round, by the bench harness's loop and statistics."""
    cfg = BenchConfig(backend=runner.info.backend, duration=None, iterations=iters, warmup=0)
    return measure_inference(runner, name, cfg).latency.median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "assets" / "yolov8n-synth.pt"))
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--ratios", default="0.3,0.5,0.7")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    import onnxruntime as ort
    from ultralytics import YOLO

    torch.set_num_threads(args.threads)
    x = torch.rand(1, 3, args.imgsz, args.imgsz)
    tmp = Path(tempfile.mkdtemp(prefix="prune-speed-"))
    models = {"baseline": Path(args.model)}
    macs = {}
    for ratio in (float(r) for r in args.ratios.split(",")):
        out = tmp / f"pruned_{ratio}.pt"
        report = prune_file(args.model, str(out), PruneConfig(ratio=ratio, imgsz=args.imgsz))
        models[f"pruned {ratio}"] = out
        macs["baseline"] = report.before.macs
        macs[f"pruned {ratio}"] = report.after.macs

    runners = {}
    for name, path in models.items():
        onnx_file = YOLO(str(path)).export(format="onnx", imgsz=args.imgsz, verbose=False)
        runners[name] = {"torch": TorchRunner(load_model(path).model, tuple(x.shape), args.threads),
                         "onnxruntime": get_target("onnx").open(Path(onnx_file), threads=args.threads)}
        for runner in runners[name].values():  # warm-up
            median_ms(runner, name, 5)

    samples = {(n, b): [] for n in runners for b in ("torch", "onnxruntime")}
    for _ in range(args.rounds):  # interleaved rounds: machine noise hits every model alike
        for name, backends in runners.items():
            for backend, runner in backends.items():
                samples[(name, backend)].append(median_ms(runner, name, args.iters))

    print(f"device: CPU ({cpu_name()}), precision FP32, batch 1, {args.threads} threads, "
          f"input {args.imgsz}x{args.imgsz}, inference only (no pre/post-processing)")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}; median of {args.rounds} rounds x {args.iters} runs")
    header = f"{'model':<14}{'MACs (M)':>10}{'MACs ratio':>12}"
    for backend in ("torch", "onnxruntime"):
        header += f"{backend + ' ms':>18}{'speedup':>9}"
    print(header)
    base = {b: statistics.median(samples[("baseline", b)]) for b in ("torch", "onnxruntime")}
    for name in runners:
        line = f"{name:<14}{macs[name] / 1e6:>10.1f}{macs[name] / macs['baseline']:>12.3f}"
        for backend in ("torch", "onnxruntime"):
            ms = statistics.median(samples[(name, backend)])
            line += f"{ms:>18.2f}{base[backend] / ms:>8.2f}x"
        print(line)


if __name__ == "__main__":
    main()
