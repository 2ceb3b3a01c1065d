"""The Ultralytics families and tasks edgeprune supports, by their shipped yaml files.

Why one list: the test matrix, the README's support table (``benchmarks/families_table.py``)
and the docs must agree on what "supported" means; they all read it from here.
"""

from __future__ import annotations

from toolchain.models.training import TrainConfig, train
from toolchain.models.validator import evaluate

# family -> {task: yaml}; the smallest scale of each family (all build offline from yaml).
FAMILIES: dict[str, dict[str, str]] = {
    "YOLOv3u": {"detect": "yolov3-tinyu.yaml"},
    "YOLOv5u": {"detect": "yolov5nu.yaml"},
    "YOLOv6": {"detect": "yolov6n.yaml"},
    "YOLOv8": {"detect": "yolov8n.yaml", "segment": "yolov8n-seg.yaml", "pose": "yolov8n-pose.yaml",
               "obb": "yolov8n-obb.yaml", "classify": "yolov8n-cls.yaml"},
    "YOLOv9": {"detect": "yolov9t.yaml", "segment": "yolov9c-seg.yaml"},
    "YOLOv10": {"detect": "yolov10n.yaml"},
    "YOLO11": {"detect": "yolo11n.yaml", "segment": "yolo11n-seg.yaml", "pose": "yolo11n-pose.yaml",
               "obb": "yolo11n-obb.yaml", "classify": "yolo11n-cls.yaml"},
    "YOLO12": {"detect": "yolo12n.yaml", "segment": "yolo12n-seg.yaml", "pose": "yolo12n-pose.yaml",
               "obb": "yolo12n-obb.yaml", "classify": "yolo12n-cls.yaml"},
    "YOLO26": {"detect": "yolo26n.yaml", "segment": "yolo26n-seg.yaml", "pose": "yolo26n-pose.yaml",
               "obb": "yolo26n-obb.yaml", "classify": "yolo26n-cls.yaml"},
}

# Refused with one sentence naming the first module that cannot be pruned.
REFUSED: dict[str, str] = {"RT-DETR": "rtdetr-l.yaml"}


def matrix() -> list[tuple[str, str, str]]:
    """Every (family, task, yaml) edgeprune supports."""
    return [(family, task, yaml) for family, tasks in FAMILIES.items() for task, yaml in tasks.items()]


def build(yaml_name: str, nc: int = 3):
    """An untrained Ultralytics model of ``yaml_name`` with ``nc`` classes, built offline.

    Returns the model (eval mode, float32) and its task.
    """
    import copy

    from ultralytics import YOLO
    from ultralytics.nn import tasks

    classes = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel,
               "obb": tasks.OBBModel, "classify": tasks.ClassificationModel}
    template = YOLO(yaml_name)
    spec = copy.deepcopy(template.model.yaml)  # resolves scale letters and the 'u' suffix
    model = classes[template.task](spec, nc=nc, verbose=False)
    model.names = {i: f"c{i}" for i in range(nc)}
    return model.float().eval(), template.task


# Trained checkpoints per family: short runs on the synthetic set, so tests and the support table
# see trained weight and activation magnitudes (and an mAP above zero) for every family, not only
# yolov8n. Reproducible from the seed; cached under .cache/ by `make family-checkpoints`.
TRAIN_EPOCHS = 12
TRAIN_IMGSZ = 256


def detect_yaml(family: str) -> str:
    """The detect yaml of ``family`` (every supported family has one)."""
    return FAMILIES[family]["detect"]


def train_checkpoint(family: str, data: str, out_dir, epochs: int = TRAIN_EPOCHS, imgsz: int = TRAIN_IMGSZ):
    """Train ``family``'s detect model on ``data`` (once) and return (checkpoint path, card dict).

    The checkpoint is ``out_dir/<yaml stem>.pt`` with a card ``.json`` beside it recording the
    recipe and the mAP edgeprune's evaluator measured on the checkpoint itself. An existing
    checkpoint whose card matches the recipe is reused; the file is moved into place only
    once it is complete, so an interrupted run leaves nothing half-written.
    """
    import json
    import shutil
    import tempfile
    from pathlib import Path

    yaml_name = detect_yaml(family)
    out_dir = Path(out_dir)
    target = out_dir / f"{Path(yaml_name).stem}.pt"
    card_path = target.with_suffix(".json")
    recipe = {"family": family, "yaml": yaml_name, "epochs": epochs, "imgsz": imgsz, "seed": 0,
              "data": str(Path(data).parent.name)}
    if target.exists() and card_path.exists():
        card = json.loads(card_path.read_text())
        if card.get("recipe") == recipe:
            return target, card
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"edgeprune-train-{target.stem}-", dir=out_dir) as tmp:
        result = train(data, yaml_name, Path(tmp) / "run", TrainConfig(epochs=epochs, imgsz=imgsz, workers=2))
        scores = evaluate(result.weights, data, imgsz=imgsz)
        card = {"recipe": recipe, "params": result.params, "map50": scores.map50, "map50_95": scores.map50_95}
        staged = Path(tmp) / target.name
        shutil.copyfile(result.weights, staged)
        staged.replace(target)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return target, card
