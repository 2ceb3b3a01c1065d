"""A YOLOv5-repository checkpoint trained on the synthetic set, for benchmarks/label_free.py.

Usage:
    python benchmarks/yolov5_repo_baseline.py --repo .cache/yolov5-pkg/yolov5 --data DATA.yaml \\
        [--model yolov5n.yaml] [--imgsz 256] [--epochs 30] --out OUT.pt

Builds the model from the repository's own yaml (offline), saves it as the repository's train.py
saves a checkpoint (fp16 ``model``, ``opt`` with the image size), then trains it on DATA's labels
with ``edgeprune finetune`` (the repository's loss) and copies the result to OUT. Prints the mAP.
``make yolov5-repo`` installs the packaged YOLOv5 repository into ``.cache/yolov5-pkg``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

import edgeprune
from toolchain.models.loading import read_data_yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="yolov5n.yaml")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    root = Path(args.repo).resolve()
    sys.path.append(str(root.parent))  # the packaged repository's own dependencies sit beside it
    edgeprune.use_repository(str(root))
    from models.yolo import Model  # the repository's class, so the checkpoint pickles models.yolo.*

    torch.manual_seed(0)
    model = Model(str(root / "models" / args.model), nc=read_data_yaml(args.data)["nc"]).eval()
    with tempfile.TemporaryDirectory() as tmp:
        start = Path(tmp) / "untrained.pt"
        torch.save({"epoch": -1, "model": model.half(), "ema": None, "optimizer": None,
                    "opt": {"imgsz": args.imgsz, "data": str(args.data)}}, start)
        result = edgeprune.finetune(str(start), args.data, str(Path(tmp) / "run"), epochs=args.epochs,
                                    batch=args.batch, workers=0)
        shutil.copyfile(result.weights, args.out)
    print(f"{args.out}: mAP50-95 {result.map50_95:.3f}, mAP50 {result.map50:.3f} after {args.epochs} epochs")


if __name__ == "__main__":
    main()
