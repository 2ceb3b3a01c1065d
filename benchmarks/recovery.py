"""How much accuracy fine-tuning recovers at high pruning ratios: labels alone, distillation, sparsity first.

Usage:
    .venv/bin/python benchmarks/recovery.py --baseline assets/yolov8n-synth.pt --data DATA.yaml \\
        [--ratios 0.3,0.5,0.6] [--epochs 10] [--sparsify-epochs 10] [--out benchmarks/recovery.md]

Per ratio, the same number of fine-tuning epochs for each recipe:
* plain: ``prune`` (L1) → ``finetune --no-distill``;
* distill: ``prune`` (L1) → ``finetune`` distilling from the unpruned baseline;
* sparsity-first: ``sparsify`` the baseline once (``--sparsify-epochs``, BN-γ L1, s=1e-3) →
  ``prune --method bn`` → ``finetune`` distilling from the unpruned baseline.
Every result is scored by the Ultralytics validator (mAP50-95 on the val split) and printed
beside the unpruned baseline's; the run time of each recipe is shown.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--ratios", default="0.3,0.5,0.6")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sparsify-epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="Keep the runs here (default: a temporary folder).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the Markdown table here.")
    args = parser.parse_args()

    from toolchain.models.prune_job import prune_file
    from toolchain.models.pruning import PruneConfig
    from toolchain.models.sparsity import SparsityConfig, sparsify
    from toolchain.models.sources import default_imgsz
    from toolchain.models.training import TrainConfig, finetune
    from toolchain.models.validator import evaluate

    scratch = None if args.work else tempfile.TemporaryDirectory(prefix="recovery-")  # removed at exit
    work = args.work or Path(scratch.name)
    imgsz = default_imgsz(args.baseline)[0]
    train = TrainConfig(epochs=args.epochs, imgsz=imgsz, workers=2)
    base = evaluate(args.baseline, args.data, imgsz=imgsz)
    started = time.time()
    sparse = sparsify(args.baseline, args.data, work / "sparsify",
                      SparsityConfig(train=TrainConfig(epochs=args.sparsify_epochs, imgsz=imgsz, workers=2)))
    sparse_seconds = time.time() - started
    rows = []
    for ratio in (float(r) for r in args.ratios.split(",")):
        for recipe, source, method, teacher in (("plain", args.baseline, "l1", None),
                                                ("distill", args.baseline, "l1", args.baseline),
                                                ("sparsity-first + distill", sparse.weights, "bn", args.baseline)):
            t0 = time.time()
            tag = f"r{ratio:g}-{recipe.split()[0]}"
            pruned = work / f"{tag}.pt"
            report = prune_file(str(source), str(pruned), PruneConfig(ratio=ratio, method=method, imgsz=imgsz))
            result = finetune(str(pruned), args.data, work / tag, train, teacher=teacher)
            scores = evaluate(result.weights, args.data, imgsz=imgsz)
            rows.append((ratio, recipe, report.after.macs / report.before.macs, scores.map50_95, time.time() - t0))
            print(f"ratio {ratio:g} {recipe}: mAP50-95 {scores.map50_95:.4f}", flush=True)
    lines = [f"Unpruned baseline mAP50-95 {base.map50_95:.4f} (Ultralytics validator, {imgsz} px); {args.epochs} "
             f"fine-tuning epochs per recipe; sparsity training {args.sparsify_epochs} epochs once "
             f"({sparse_seconds / 60:.1f} min, not counted below).", "",
             "| ratio | recipe | MACs kept | mAP50-95 | drop (pts) | minutes |", "|---|---|---|---|---|---|"]
    for ratio, recipe, kept, m, seconds in rows:
        lines.append(f"| {ratio:g} | {recipe} | {kept:.2f} | {m:.4f} | {(base.map50_95 - m) * 100:+.2f} | "
                     f"{seconds / 60:.1f} |")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
