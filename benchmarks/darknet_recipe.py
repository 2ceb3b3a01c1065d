"""Seed 002's Darknet recipe with edgeprune alone: sparsify → sweep for the pruning point → fine-tune.

Usage:
    .venv/bin/python benchmarks/darknet_recipe.py --cfg assets/darknet/yolov4-tiny-synth.cfg \\
        --data .cache/synth-default/data.yaml [--s 0.05] [--lr 0.01] [--sparsify-epochs 15] \\
        [--ratios 0.3:0.9:0.1] [--max-drop 0.05] [--finetune-epochs 10] [--work DIR] [--out FILE.md]

Steps (each an edgeprune API call, the same as the commands in the README):
1. ``sparsify CFG --weights W`` (BN-γ L1, the Darknet trainer);
2. ``sweep`` of the sparsified cfg over cfg-prune's global percent on OpenVINO, refined around
   the cliff, with ``--finetune-chosen`` fine-tuning the chosen pruned cfg + .weights.
Prints seed 002's table: params, BFLOPs (2 × MACs), mAP50 (edgeprune's pipeline on the val split)
and FPS of an FP32 OpenVINO IR (batch 1, latency hint, inference only; executed precision and
CPU named) for the baseline, the sparsified model, the pruned model and the fine-tuned one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _row(name: str, cfg: str, weights: str, data: str, imgsz: int, work: Path) -> list:
    """params, BFLOPs, mAP50, mAP50-95 and OpenVINO FP32 FPS of one cfg + .weights."""
    from targets.base import ExportConfig
    from targets.bench import BenchConfig, measure_inference
    from toolchain.pipelines.bench import open_runner
    from toolchain.pipelines.deploy import deploy
    from toolchain.pipelines.artifact_eval import evaluate_artifact
    from toolchain.models.model_stats import model_stats
    from toolchain.models.sources import prepare

    source = prepare(cfg, imgsz, weights=weights)
    stats = model_stats(source.module, source.example)
    scores = evaluate_artifact(cfg, data, imgsz=imgsz, weights=weights)
    exported = deploy("openvino", cfg, work / f"ir-{name}", ExportConfig(precision="fp32", imgsz=imgsz, weights=weights),
                      evaluate=False)
    bench_cfg = BenchConfig(backend="openvino", duration=None, iterations=300, warmup=20)
    bench = measure_inference(open_runner(exported.artifact, bench_cfg), exported.artifact, bench_cfg)
    return [name, stats.params, 2 * stats.macs / 1e9, scores.map50, scores.map50_95, bench.throughput_fps,
            bench.executed_precision, bench.cpu]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True)
    parser.add_argument("--weights", default=None, help="default: the .weights beside the cfg")
    parser.add_argument("--data", required=True)
    parser.add_argument("--s", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of sparsity training and fine-tuning")
    parser.add_argument("--sparsify-epochs", type=int, default=15)
    parser.add_argument("--ratios", default="0.3:0.9:0.1")
    parser.add_argument("--max-drop", type=float, default=0.05)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="Keep the runs here (default: a temporary folder).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the Markdown table here.")
    args = parser.parse_args()

    import edgeprune
    from toolchain.pipelines.sweep import parse_ratios

    scratch = None if args.work else tempfile.TemporaryDirectory(prefix="darknet-recipe-")  # removed at exit
    work = args.work or Path(scratch.name)
    weights = args.weights or str(Path(args.cfg).with_suffix(".weights"))
    imgsz = edgeprune.load(args.cfg, weights).input_hw[0]
    started = time.time()
    sparse = edgeprune.sparsify(args.cfg, args.data, str(work / "sparsify"), strength=args.s,
                                epochs=args.sparsify_epochs, lr0=args.lr, weights=weights)
    sparse_minutes = (time.time() - started) / 60
    started = time.time()
    swept = edgeprune.sweep(sparse.cfg, args.data, str(work / "sweep"), ratios=parse_ratios(args.ratios),
                            weights=sparse.weights, refine=True, max_drop=args.max_drop,
                            finetune_chosen=args.finetune_epochs, bench_iterations=100)
    sweep_minutes = (time.time() - started) / 60
    rows = [_row("baseline", args.cfg, weights, args.data, imgsz, work),
            _row("sparsified", sparse.cfg, sparse.weights, args.data, imgsz, work)]
    chosen, tuned = swept.choice, swept.finetuned
    if chosen.ratio is not None:
        point = next(p for p in swept.points if p.ratio == chosen.ratio)
        rows.append(_row(f"pruned {chosen.ratio:g}", point.model, str(Path(point.model).with_suffix(".weights")),
                         args.data, imgsz, work))
    if tuned is not None:
        rows.append(_row(f"fine-tuned {tuned.epochs} ep", tuned.model, tuned.weights, args.data, imgsz, work))
    header = ["model", "params", "BFLOPs", "mAP50", "mAP50-95", "FPS (OpenVINO FP32 IR)", "executed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]:,} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.1f} | {r[6]} |")
    caption = (f"{rows[0][7]}, batch 1, OpenVINO latency hint, inference only (no pre/post-processing), "
               f"imgsz {imgsz}. Sparsity training: s={args.s}, lr {args.lr}, {args.sparsify_epochs} epochs "
               f"({sparse_minutes:.1f} min); sweep over {args.ratios} refined, max mAP50 drop {args.max_drop}, "
               f"chosen: {chosen.ratio} ({chosen.reason}); fine-tuning {args.finetune_epochs} epochs "
               f"(sweep incl. fine-tuning {sweep_minutes:.1f} min).")
    table = "\n".join(lines + ["", caption])
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
