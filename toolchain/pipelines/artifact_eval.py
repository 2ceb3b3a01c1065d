"""mAP of a deployed artifact, computed by running that artifact.

Why: a deploy step (FP16, INT8, a new runtime) costs accuracy, and the only honest measure of
that cost is to run the artifact itself through real pre/post-processing (letterbox, NMS)
on the validation images. The same loop runs the torch reference, so the numbers compare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from targets.artifacts import read_metadata, resolve_artifact
from targets.registry import target_for_artifact
from toolchain.core.device import open_yolo
from toolchain.core.errors import ModelMismatchError
from toolchain.models.datasets import prepare_dataset
from toolchain.models.evaluation import evaluate_callable
from toolchain.models.loading import read_data_yaml
from toolchain.models.sources import companion_weights


@dataclass
class ArtifactEval:
    """Accuracy of one artifact, with what ran it."""

    artifact: str
    data: str
    split: str
    imgsz: int | list
    runner: dict
    precision: float
    recall: float
    map50: float
    map50_95: float
    per_class: dict = field(default_factory=dict)
    ultralytics: dict | None = None  # the Ultralytics validator on the same artifact, where it can load it

    def to_json(self) -> dict:
        return asdict(self)


def evaluate_artifact(artifact: str | Path, data: str | Path, device: str = "cpu", precision: str = "auto",
                      imgsz: int | None = None, split: str = "val", progress=None,
                      weights: str | None = None, validate: bool = False) -> ArtifactEval:
    """Open ``artifact`` (or a model source run in PyTorch) with its target and evaluate it on ``data``.

    Args:
        weights: a Darknet cfg's .weights (when ``artifact`` is a .cfg).
        validate: also run the Ultralytics validator on the artifact (ONNX, OpenVINO; detect
            heads with Ultralytics' output), reported in ``ultralytics`` beside edgeprune's number.
    """

    data_cfg = read_data_yaml(data)
    prepare_dataset(data, (split,))
    path = resolve_artifact(Path(artifact))
    target = target_for_artifact(path)
    size_hw = (imgsz, imgsz) if imgsz else None
    weights = companion_weights(path, weights, "evaluating")  # random parameters would score a meaningless mAP
    extra = {"weights": weights} if weights is not None else {}
    runner = target.open(path, device, precision, input_hw=size_hw, **extra)
    size = tuple(int(v) for v in runner.info.input_shape[-2:])
    if imgsz and size != (imgsz, imgsz):  # never report one size while running another
        raise ModelMismatchError(f"{artifact} runs at {size[0]}x{size[1]}; --imgsz {imgsz} cannot be applied "
                                 "(omit it, or deploy with --dynamic-shape)")
    meta_names = read_metadata(path).get("names") or {}
    nc = (runner.head or {}).get("nc") or len(meta_names) or None
    if nc is not None and nc != data_cfg["nc"]:
        raise ModelMismatchError(f"{artifact} predicts nc={nc} classes but {data} has nc={data_cfg['nc']}")
    metrics = evaluate_callable(runner.predict, data, size, data_cfg["nc"], split, progress=progress,
                                resize=runner.resize)
    names = data_cfg["names"]
    per_class = {str(names[c]): v for c, v in metrics.pop("per_class").items()}
    shown = size[0] if size[0] == size[1] else list(size)
    result = ArtifactEval(str(artifact), str(data), split, shown, runner.info.to_json(), per_class=per_class, **metrics)
    if validate and runner.head is None and read_metadata(path).get("task") == "detect" \
            and not getattr(runner, "accepts_u8_bgr", False):
        result.ultralytics = validator_metrics(path, target.name, data, size[0], split, result.map50_95)
    return result


def ultralytics_box_metrics(path: Path, target: str, data, imgsz: int, split: str = "val"):
    """``yolo val`` on an ONNX file or OpenVINO folder: the validator's ``metrics.box``.

    Ultralytics recognises an OpenVINO folder by an ``_openvino_model`` name, so other folders are
    validated through a link with such a name (the user's folder is not renamed or written).
    """
    import tempfile

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="edgeprune-val-") as tmp:
        source = path
        if target == "openvino":
            folder = path if path.is_dir() else path.parent
            source = Path(tmp) / f"{folder.name.removesuffix('_openvino_model') or 'model'}_openvino_model"
            source.symlink_to(folder.resolve(), target_is_directory=True)
        metrics = open_yolo(str(source), task="detect").val(data=str(data), imgsz=imgsz, batch=1, split=split,
                                                            device="cpu", plots=False, verbose=False, workers=0,
                                                            project=tmp, name="val")
    return metrics.box


def validator_metrics(path: Path, target: str, data, imgsz: int, split: str, ours: float) -> dict | None:
    """The Ultralytics validator's numbers on the artifact itself, beside edgeprune's (``ours``).

    Both pipelines letterbox square images alike at a static size and match detections by the same
    rule (:func:`toolchain.core.detection_metrics.match`); what remains is float rounding and IoU ties,
    reported as the difference.
    """
    if target not in ("onnx", "openvino"):
        return None
    box = ultralytics_box_metrics(path, target, data, imgsz, split)
    return {"map50": float(box.map50), "map50_95": float(box.map), "precision": float(box.mp),
            "recall": float(box.mr), "difference_map50_95": ours - float(box.map),
            "why": "same letterbox, NMS settings and matching rule; the rest is float rounding and IoU ties"}
