"""Training and fine-tuning through the Ultralytics trainer, offline, on the CPU or a GPU.

Why fine-tuning needs care: ``YOLO("pruned.pt").train()`` rebuilds the network from the
checkpoint's yaml (the unpruned widths) and copies over only the weights whose shapes still
match, so a pruned model silently trains as the original one. Our trainers
override ``get_model`` to train the loaded module object itself, keeping its architecture.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from torch import nn

from toolchain.errors import EdgepruneError, ModelMismatchError
from toolchain.fileio import staged_folder
from toolchain.loading import check_model_fits_data, load_model, read_data_yaml


class _KeepArchitecture:
    """Mixin for Ultralytics trainers: train the given module, never a model rebuilt from yaml."""

    def get_model(self, cfg=None, weights=None, verbose=True):
        if not isinstance(weights, nn.Module):
            raise ModelMismatchError("fine-tuning needs a loaded model to keep its pruned architecture")
        model = copy.deepcopy(weights).float()
        for p in model.parameters():
            p.requires_grad_(True)
        return model


def _keep_architecture_trainer(task: str):
    """The trainer class for ``task`` with :class:`_KeepArchitecture` mixed in."""
    from ultralytics.models import yolo

    base = {
        "detect": yolo.detect.DetectionTrainer,
        "pose": yolo.pose.PoseTrainer,
        "segment": yolo.segment.SegmentationTrainer,
        "obb": yolo.obb.OBBTrainer,
        "classify": yolo.classify.ClassificationTrainer,
    }[task]
    return type(f"KeepArchitecture{base.__name__}", (_KeepArchitecture, base), {})


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by ``train`` and ``finetune`` (Ultralytics argument names)."""

    epochs: int = 15
    imgsz: int | None = None  # None: the checkpoint's training size (Ultralytics reads its train_args), 640 for yaml
    batch: int = 16
    workers: int = 2
    seed: int = 0
    lr0: float | None = None
    patience: int = 100
    device: str = "auto"

    def overrides(self) -> dict:
        from toolchain.device import resolve_device

        device = resolve_device(self.device)
        args = {
            "epochs": self.epochs,
            "batch": self.batch,
            "workers": self.workers,
            "seed": self.seed,
            "deterministic": True,
            "device": device.ultralytics,
            "amp": device.amp,
            "plots": False,
            "patience": self.patience,
            "exist_ok": True,
            "verbose": False,
        }
        if self.imgsz is not None:
            args["imgsz"] = self.imgsz
        if self.lr0 is not None:
            args.update(lr0=self.lr0, optimizer="SGD")
        return args


@dataclass(frozen=True)
class TrainResult:
    """Where the weights went and the final validation numbers of the trainer.

    ``teacher`` is the model distilled from (fine-tuning), ``notes`` what the user should know.
    """

    weights: str
    run_dir: str
    epochs: int
    map50: float
    map50_95: float
    params: int
    teacher: str | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return asdict(self)


AUTO_TEACHER = "auto"  # the unpruned checkpoint the model records it was pruned from, when it is still there


def _result(model, run_dir: Path, epochs: int) -> TrainResult:
    trainer = model.trainer
    best = trainer.best if trainer.best.exists() else trainer.last
    metrics = trainer.metrics or {}
    return TrainResult(
        weights=str(best),
        run_dir=str(run_dir),
        epochs=epochs,
        map50=float(metrics.get("metrics/mAP50(B)", 0.0)),
        map50_95=float(metrics.get("metrics/mAP50-95(B)", 0.0)),
        params=sum(p.numel() for p in model.model.parameters()),
    )


def run_staged(yolo, out: Path, **train_kwargs) -> TrainResult:
    """``yolo.train`` into a staging folder beside ``out``, moved into ``out`` when training completes.

    Why: an interrupted or failed run must not leave a run folder that looks finished (weights/
    of epoch 3 of 15); the staged entries are merged into an existing ``out`` (never replacing
    the folder itself, which may hold the user's other files).
    """
    from toolchain.datasets import prepare_dataset

    prepare_dataset(train_kwargs["data"], ("train", "val"))
    with staged_folder(out, replace=False) as stage:
        yolo.train(project=str(stage.parent), name=stage.name, **train_kwargs)
        result = _result(yolo, stage, train_kwargs["epochs"])
    weights = out / Path(result.weights).relative_to(stage)
    return replace(result, weights=str(weights), run_dir=str(out))


def _check_epochs(cfg: TrainConfig) -> None:
    if cfg.epochs < 1:
        raise EdgepruneError(f"--epochs must be at least 1, got {cfg.epochs}")
    from toolchain.loading import check_stride

    check_stride(cfg.imgsz)


def train(data: str, model: str, out: str | Path, cfg: TrainConfig) -> TrainResult:
    """Train ``model`` (a yaml such as ``yolov8n.yaml``, or a checkpoint) on ``data``."""
    from toolchain.device import open_yolo

    _check_epochs(cfg)
    read_data_yaml(data)  # fail early, with our message, on a bad data file
    if str(model).endswith(".pt"):
        check_model_fits_data(load_model(model), data)
    out = Path(out).resolve()
    try:
        yolo = open_yolo(model)
    except FileNotFoundError:
        raise EdgepruneError(f"model {model} is neither a file nor an Ultralytics model yaml") from None
    return run_staged(yolo, out, data=str(data), **cfg.overrides())


def finetune(checkpoint: str, data: str, out: str | Path, cfg: TrainConfig, teacher: str | None = AUTO_TEACHER,
             distill_weight: float = 1.0) -> TrainResult:
    """Fine-tune a (pruned) checkpoint on ``data`` keeping its architecture, distilling from ``teacher``.

    Args:
        teacher: a checkpoint whose head outputs the model learns to match as well as the labels
            (:mod:`toolchain.distill`); ``auto`` (default) = the unpruned model ``prune`` recorded
            as the source, when it is still there unchanged; None = labels only.
        distill_weight: scale of the distillation loss against the task loss.
    """
    from toolchain.device import open_yolo
    from toolchain.distill import install, load_teacher, recorded_teacher

    _check_epochs(cfg)
    loaded = load_model(checkpoint)
    if not loaded.is_yolo:
        raise ModelMismatchError(f"{checkpoint} is a plain nn.Module; finetune works on Ultralytics checkpoints")
    check_model_fits_data(loaded, data)
    notes = []
    if teacher == AUTO_TEACHER and loaded.task == "classify":
        teacher = None
        notes.append("no distillation: it works on detection heads (detect, segment, pose, obb), not classifiers")
    elif teacher == AUTO_TEACHER:
        teacher, why = recorded_teacher(loaded)
        notes.append(why if teacher else f"no distillation: {why}")
    if teacher is not None and loaded.task == "classify":
        raise ModelMismatchError("distillation works on detection heads (detect, segment, pose, obb); "
                                 "fine-tune a classifier with --no-distill")
    out = Path(out).resolve()
    yolo = open_yolo(checkpoint)
    if teacher is not None:
        teacher_model = load_teacher(teacher, loaded.model)
        yolo.add_callback("on_train_start", lambda trainer: install(trainer, teacher_model, distill_weight))
    trainer_cls = _keep_architecture_trainer(loaded.task)
    result = run_staged(yolo, out, trainer=trainer_cls, data=str(data), **cfg.overrides())
    return TrainResult(**{**asdict(result), "teacher": teacher, "notes": tuple(notes)})
