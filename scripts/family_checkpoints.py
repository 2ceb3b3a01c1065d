"""Train (or reuse) one short-trained detect checkpoint per supported family: `make family-checkpoints`.

Usage: python scripts/family_checkpoints.py DATA.yaml OUT_DIR [FAMILY ...]
Each is trained from Ultralytics' shipped yaml on the synthetic set for
toolchain.models.zoo.TRAIN_EPOCHS epochs at TRAIN_IMGSZ; its card records the mAP measured on it.
"""

from __future__ import annotations

import sys
import time

from toolchain.models.zoo import FAMILIES, train_checkpoint


def main(data: str, out_dir: str, families: list[str]) -> None:
    for family in families or list(FAMILIES):
        start = time.perf_counter()
        path, card = train_checkpoint(family, data, out_dir)
        print(f"{family:8s} {path}  mAP50 {card['map50']:.3f}  mAP50-95 {card['map50_95']:.3f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
