"""The Ultralytics families and tasks edgeprune supports, by their shipped yaml files.

Why one list: the test matrix, the README's support table (``benchmarks/families_table.py``)
and the docs must agree on what "supported" means; they all read it from here.
"""

from __future__ import annotations

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
