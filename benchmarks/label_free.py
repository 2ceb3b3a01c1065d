"""Label-free vs labelled recovery of a pruned model, measured in one run.

Usage:
    python benchmarks/label_free.py MODEL.pt --data DATA.yaml [--ratios 0.3,0.5] [--epochs 5] [--out DIR]
        [--repo DIR]   # a YOLOv5/YOLOv7 repository checkpoint (benchmarks/yolov5_repo_baseline.py makes one)

For each ratio: ``prune MODEL --ratio R`` (L1, local), its mAP50-95 right after the prune, then
two fine-tunes of the same pruned model for the same epochs, both distilled from MODEL:

* labelled: ``finetune --data DATA`` (Ultralytics: the labels plus distillation from the unpruned
  model; a repository checkpoint: the repository's own loss on the labels);
* label-free: ``finetune --images DATA's train images`` (the unpruned model's outputs only; the
  labels of DATA score the result and nothing else).

Prints one table (mAP50-95 of the validation split, the Ultralytics validator) and writes it as
JSON to ``OUT/label_free.json``. The unpruned model's own mAP50-95 is the first row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import edgeprune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--ratios", default="0.3,0.5")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default="label-free-run")
    parser.add_argument("--repo", help="a YOLOv5/YOLOv7 repository, for their checkpoints")
    args = parser.parse_args()
    if args.repo:
        sys.path.append(str(Path(args.repo).resolve().parent))  # the packaged repository's dependencies
        edgeprune.use_repository(args.repo)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = str(Path(args.data).parent / "images" / "train")  # the synthetic layout: images/train beside data.yaml
    rows = [{"model": "unpruned", "map50_95": edgeprune.evaluate(args.model, args.data).map50_95}]
    for ratio in [float(r) for r in args.ratios.split(",")]:
        pruned = out / f"p{ratio}.pt"
        report = edgeprune.prune(args.model, str(pruned), ratio, data=args.data)
        rows[0]["macs_m"] = report.before.macs / 1e6  # the unpruned model, as prune measured it
        row = {"model": f"ratio {ratio}", "macs_m": report.after.macs / 1e6, "after_prune": report.after.map50_95}
        for name, kwargs in (("labelled", {"data": args.data}), ("label_free", {"data": args.data, "images": images})):
            started = time.perf_counter()
            result = edgeprune.finetune(str(pruned), out=str(out / f"ft-{name}-{ratio}"), epochs=args.epochs,
                                        batch=args.batch, workers=0, **kwargs)
            row[name] = result.map50_95
            row[f"{name}_s"] = round(time.perf_counter() - started)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "label_free.json").write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2))
    print(f"\n| model | MMACs | right after prune | labelled {args.epochs} ep | label-free {args.epochs} ep |")
    print("|---|---|---|---|---|")
    def cell(value) -> str:
        return "" if value is None else f"{value:.3f}"

    for row in rows:
        start = row["after_prune"] if "after_prune" in row else row["map50_95"]  # the unpruned row: its own score
        macs = f"{row['macs_m']:.1f}" if "macs_m" in row else ""
        print(f"| {row['model']} | {macs} | {cell(start)} | {cell(row.get('labelled'))} | "
              f"{cell(row.get('label_free'))} |")


if __name__ == "__main__":
    main()
