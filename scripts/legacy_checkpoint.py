"""Write a checkpoint pickled by an old Ultralytics (8.1.0), for the foreign-checkpoint tests.

Usage (see `make legacy-checkpoint`): run with an Ultralytics 8.1.0 install first on
PYTHONPATH, e.g. ``PYTHONPATH=.cache/ultralytics-8.1.0 python scripts/legacy_checkpoint.py OUT.pt``.

The model is an untrained 3-class yolov8n-seg in the layout of a trainer checkpoint of that
version (fp16 ``model``, ``ema`` None, optimizer None), with ``train_args`` naming a Windows
data.yaml that exists nowhere and the 640 px training size. Its module objects are pickled by
8.1.0's own classes, which lack attributes today's classes set in ``__init__``: exactly what a
user's two-year-old checkpoint looks like to the current Ultralytics.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import torch
import ultralytics
from ultralytics.nn.tasks import SegmentationModel


def main(out: str) -> None:
    if ultralytics.__version__ != "8.1.0":
        sys.exit(f"needs Ultralytics 8.1.0 first on PYTHONPATH, found {ultralytics.__version__} at {ultralytics.__file__}")
    torch.manual_seed(0)
    model = SegmentationModel("yolov8n-seg.yaml", nc=3, verbose=False)
    model.names = {0: "cone", 1: "ball", 2: "box"}
    ckpt = {
        "epoch": 99, "best_fitness": None, "model": model.half(), "ema": None, "updates": 0, "optimizer": None,
        "train_args": {"task": "segment", "mode": "train", "model": "yolov8n-seg.pt", "imgsz": 640, "epochs": 100,
                       "data": "C:\\Users\\ana\\datasets\\cones\\data.yaml", "project": "C:\\Users\\ana\\runs"},
        "date": datetime(2024, 1, 15, tzinfo=timezone.utc).isoformat(), "version": ultralytics.__version__,
    }
    torch.save(ckpt, out)


if __name__ == "__main__":
    main(sys.argv[1])
