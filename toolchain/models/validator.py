"""Accuracy of a checkpoint on a YOLO data set, via the Ultralytics validator.

Why the validator: its mAP is the number users compare against their training logs, so
edgeprune reports exactly that number (overall and per class) instead of a look-alike.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain.core.device import open_yolo, resolve_device
from toolchain.models.datasets import prepare_dataset
from toolchain.models.loading import check_model_fits_data, load_model


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    map50: float
    map50_95: float


@dataclass(frozen=True)
class EvalResult:
    """Box metrics (and pose metrics for pose models) of one model on one data split."""

    model: str
    data: str
    imgsz: int
    task: str
    precision: float
    recall: float
    map50: float
    map50_95: float
    per_class: list[ClassMetrics] = field(default_factory=list)
    pose_map50: float | None = None
    pose_map50_95: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def evaluate(model_path: str, data: str, imgsz: int | None = None, batch: int = 16, split: str = "val",
             device: str = "auto") -> EvalResult:
    """Validate ``model_path`` on ``data`` and return overall and per-class metrics."""

    loaded = load_model(model_path)
    imgsz = imgsz or loaded.train_imgsz  # None: the size the checkpoint was trained at
    data_cfg = check_model_fits_data(loaded, data)
    prepare_dataset(data, (split,), task=loaded.task)
    with tempfile.TemporaryDirectory(prefix="edgeprune-val-") as tmp:
        metrics = open_yolo(model_path, task=loaded.task).val(
            data=str(data), imgsz=imgsz, batch=batch, split=split, device=resolve_device(device).ultralytics, plots=False,
            verbose=False, project=tmp, name="val", workers=0,
        )
    box = metrics.box
    per_class = []
    for i, cls in enumerate(box.ap_class_index):
        p, r, ap50, ap = box.class_result(i)
        per_class.append(ClassMetrics(str(data_cfg["names"][int(cls)]), float(p), float(r), float(ap50), float(ap)))
    pose = getattr(metrics, "pose", None) if loaded.task == "pose" else None
    return EvalResult(
        model=str(model_path),
        data=str(Path(data)),
        imgsz=imgsz,
        task=loaded.task,
        precision=float(box.mp),
        recall=float(box.mr),
        map50=float(box.map50),
        map50_95=float(box.map),
        per_class=per_class,
        pose_map50=float(pose.map50) if pose is not None else None,
        pose_map50_95=float(pose.map) if pose is not None else None,
    )


def scores_as_result(model: str, data: str, imgsz: int, task: str, scores: dict, names: dict) -> EvalResult:
    """An :class:`EvalResult` from edgeprune's own evaluation loop (:mod:`toolchain.models.evaluation`),
    for models the Ultralytics validator cannot run (a Darknet cfg), so every source returns one type."""
    per_class = [ClassMetrics(str(names[c]), v["precision"], v["recall"], v["map50"], v["map50_95"])
                 for c, v in scores["per_class"].items()]
    return EvalResult(model=str(model), data=str(Path(data)), imgsz=imgsz, task=task, precision=scores["precision"],
                      recall=scores["recall"], map50=scores["map50"], map50_95=scores["map50_95"], per_class=per_class)
