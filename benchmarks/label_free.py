"""Label-free vs labelled recovery of a pruned model, measured in one run.

Usage:
    python benchmarks/label_free.py MODEL.pt --data DATA.yaml [--ratios 0.3,0.5] [--epochs 5] [--out DIR]
        [--repo DIR]   # a YOLOv5/YOLOv7 repository checkpoint (benchmarks/yolov5_repo_baseline.py makes one)
    python benchmarks/label_free.py MODEL.cfg --data DATA.yaml ...   # a Darknet cfg, its .weights beside it

For each ratio: ``prune MODEL --ratio R`` (L1, local; a cfg: ``cfg-prune --global-percent R``), its
mAP50-95 right after the prune, then two fine-tunes of the same pruned model for the same epochs:

* labelled: ``finetune --data DATA`` (Ultralytics: the labels plus distillation from the unpruned
  model; a repository checkpoint: the repository's own loss on the labels; a cfg: Darknet's loss);
* label-free: ``finetune --images DATA's train images`` (the unpruned model MODEL's outputs only; the
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
    if args.model.endswith(".cfg"):
        prune, teacher = _cfg_prune, args.model  # a cfg records no source: the label-free run is told its teacher
    else:
        prune, teacher = _prune, "auto"
    rows = [{"model": "unpruned", "map50_95": edgeprune.evaluate(args.model, args.data).map50_95}]
    for ratio in [float(r) for r in args.ratios.split(",")]:
        pruned, before_macs, after_macs, after_map = prune(args.model, out, ratio, args.data)
        rows[0]["macs_m"] = before_macs / 1e6
        row = {"model": f"ratio {ratio}", "macs_m": after_macs / 1e6, "after_prune": after_map}
        for name, kwargs in (("labelled", {"data": args.data}),
                             ("label_free", {"data": args.data, "images": images, "teacher": teacher})):
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


def _prune(model: str, out: Path, ratio: float, data: str) -> tuple[Path, float, float, float]:
    """``prune --ratio``: the pruned file, MACs before and after, mAP50-95 right after."""
    pruned = out / f"p{ratio}.pt"
    report = edgeprune.prune(model, str(pruned), ratio, data=data)
    return pruned, report.before.macs, report.after.macs, report.after.map50_95


def _cfg_prune(cfg: str, out: Path, ratio: float, data: str) -> tuple[Path, float, float, float]:
    """``cfg-prune --global-percent`` of a cfg with its .weights beside it, measured as :func:`_prune` is."""
    from toolchain.models.sources import source_for

    weights = str(Path(cfg).with_suffix(".weights"))
    report = edgeprune.cfg_prune(cfg, weights, str(out / f"p{ratio}"), global_percent=ratio)
    source = source_for(cfg)
    size = source.default_imgsz(Path(cfg))[0]
    before = source.stats(Path(cfg), size, weights).macs
    after = source.stats(Path(report.cfg), size, report.weights).macs
    return Path(report.cfg), before, after, edgeprune.evaluate(report.cfg, data).map50_95


if __name__ == "__main__":
    main()
