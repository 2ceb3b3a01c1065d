"""Training and fine-tuning through the Ultralytics trainer, offline, on the CPU or a GPU.

Why fine-tuning needs care: ``YOLO("pruned.pt").train()`` rebuilds the network from the
checkpoint's yaml (the unpruned widths) and copies over only the weights whose shapes still
match, so a pruned model silently trains as the original one. Our trainers
override ``get_model`` to train the loaded module object itself, keeping its architecture.
"""

from __future__ import annotations

import copy
import csv
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from torch import nn

from toolchain.core.device import open_yolo, resolve_device
from toolchain.core.errors import EdgepruneError, ModelMismatchError
from toolchain.core.fileio import atomic_output, staged_folder
from toolchain.models.datasets import prepare_dataset
from toolchain.models.distill import install, load_teacher, recorded_teacher
from toolchain.models.loading import check_model_fits_data, check_stride, load_model, read_data_yaml
from toolchain.models.validator import evaluate


class _KeepArchitecture:
    """Mixin for Ultralytics trainers: train the given module, never a model rebuilt from yaml."""

    def get_model(self, cfg=None, weights=None, verbose=True):
        if not isinstance(weights, nn.Module):
            raise ModelMismatchError("fine-tuning needs a loaded model to keep its pruned architecture")
        model = copy.deepcopy(weights).float()
        for p in model.parameters():
            p.requires_grad_(True)
        return model


def reinitialise(model: nn.Module) -> nn.Module:
    """Fresh weights in ``model``'s architecture, as Ultralytics initialises a model it builds from a yaml.

    Why: "is pruning plus fine-tuning better than the pruned architecture trained from scratch for
    the same epochs?" is the control every recovery claim needs; this is that starting point.
    A DFL's convolution is not a weight but the fixed integral 0..reg_max-1 that turns the box
    distribution into a distance (Ultralytics never trains it), so it is kept: randomised, the
    boxes of a model "trained from scratch" could never be right.
    """
    from ultralytics.nn.modules.block import DFL
    from ultralytics.utils.torch_utils import initialize_weights

    fixed = {id(m) for dfl in model.modules() if isinstance(dfl, DFL) for m in dfl.modules()}
    for m in model.modules():
        if m is not model and id(m) not in fixed and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    initialize_weights(model)
    head = model.model[-1] if isinstance(getattr(model, "model", None), nn.Sequential) else None
    if head is not None and hasattr(head, "bias_init"):
        head.bias_init()
    return model


class _FromScratch(_KeepArchitecture):
    """Mixin: train the given module's architecture from freshly initialised weights."""

    def get_model(self, cfg=None, weights=None, verbose=True):
        return reinitialise(super().get_model(cfg, weights, verbose))


def _keep_architecture_trainer(task: str, scratch: bool = False):
    """The trainer class for ``task`` with :class:`_KeepArchitecture` (or :class:`_FromScratch`) mixed in."""
    from ultralytics.models import yolo

    base = {
        "detect": yolo.detect.DetectionTrainer,
        "pose": yolo.pose.PoseTrainer,
        "segment": yolo.segment.SegmentationTrainer,
        "obb": yolo.obb.OBBTrainer,
        "classify": yolo.classify.ClassificationTrainer,
    }[task]
    mixin = _FromScratch if scratch else _KeepArchitecture
    return type(f"{mixin.__name__.strip('_')}{base.__name__}", (mixin, base), {"edgeprune_task": task})


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
    warmup_epochs: float | None = None  # None: Ultralytics' default (3)
    cache: bool = False  # decoded images kept in RAM (Ultralytics cache="ram"): less CPU per epoch
    resume: bool = False  # continue the run a killed process left staged for the same output (not an override)

    def overrides(self) -> dict:
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
        if self.warmup_epochs is not None:
            args["warmup_epochs"] = self.warmup_epochs
        if self.cache:
            args["cache"] = "ram"
        if self.lr0 is not None:
            args.update(lr0=self.lr0, optimizer="SGD")
        return args


def recovery_overrides(cfg: TrainConfig) -> dict:
    """The trainer settings of ``sparsify`` and ``finetune``: ``cfg``'s, with an optimizer step after every batch.

    Why: Ultralytics accumulates gradients up to a nominal batch of 64 (``nbs``), so a 400-image set
    at batch 16 gets 6 optimizer steps an epoch, and a short sparsify (8 epochs) about 50: too few
    for the rest of the network to take over from the channels ramped to zero. Measured at 256 px,
    ratio 0.7, 8 sparsity epochs (``benchmarks/recovery.md``): the sparsified model scored 0.377 from
    the 40-epoch baseline and 0.022 from the converged one with 64; 0.321 from the converged one
    with a step per batch. Weight decay is unchanged (Ultralytics scales it by batch x accumulation /
    nbs, 1 either way). ``train`` keeps Ultralytics' default: the baselines were trained with it.
    """
    return {**cfg.overrides(), "nbs": cfg.batch}


@dataclass(frozen=True)
class TrainResult:
    """Where the weights went and the final validation numbers of the trainer, for every model source.

    ``teacher`` is the model distilled from (fine-tuning), ``notes`` what the user should know;
    ``cfg`` is the structure file beside ``weights`` for sources that keep them apart (Darknet),
    ``history`` the per-epoch rows where the trainer reports them.
    """

    weights: str
    run_dir: str
    epochs: int
    map50: float | None  # None: nothing scored it (label-free distillation without --data)
    map50_95: float | None
    params: int
    teacher: str | None = None
    notes: tuple[str, ...] = ()
    cfg: str | None = None
    history: tuple = ()

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


def run_staged(yolo, out: Path, resume: bool = False, **train_kwargs) -> TrainResult:
    """``yolo.train`` into a staging folder beside ``out``, moved into ``out`` when training completes.

    Why: an interrupted or failed run must not leave a run folder that looks finished (weights/
    of epoch 3 of 15); the staged entries are merged into an existing ``out`` (never replacing
    the folder itself, which may hold the user's other files). The trainer writes
    ``weights/last.pt`` (weights, optimizer, EMA, epoch) into the staging folder every epoch, so
    with ``resume`` the folder a killed run left is taken over and training continues from its
    last completed epoch to the epochs that run was asked for.
    """

    prepare_dataset(train_kwargs["data"], ("train", "val"))
    if _atomic_checkpoints not in yolo.callbacks["on_pretrain_routine_start"]:
        yolo.add_callback("on_pretrain_routine_start", _atomic_checkpoints)
    with staged_folder(out, replace=False, resume=resume) as stage:
        if resume:
            yolo = _resume(yolo, stage, train_kwargs)
        else:
            yolo.train(project=str(stage.parent), name=stage.name, **train_kwargs)
        result = _result(yolo, stage, yolo.trainer.epochs)
    weights = out / Path(result.weights).relative_to(stage)
    return replace(result, weights=str(weights), run_dir=str(out))


def _atomic_checkpoints(trainer) -> None:
    """Make ``trainer`` write ``last.pt``/``best.pt`` whole or not at all (a temporary file renamed over them).

    Why: Ultralytics writes them in place (``Path.write_bytes``), so a ``kill -9`` or power cut
    during the write leaves a truncated ``last.pt`` and nothing to ``--resume`` from; the epoch
    before it is lost too. A rename is atomic on one filesystem, so the file is always a whole epoch.
    """
    save = trainer.save_model

    def save_model():
        final = {"last": trainer.last, "best": trainer.best}
        staged = {k: p.with_name(f".{p.name}.partial") for k, p in final.items()}
        trainer.last, trainer.best = staged["last"], staged["best"]
        try:
            saved = save()
        finally:
            trainer.last, trainer.best = final["last"], final["best"]
        for key, path in staged.items():
            if path.exists():
                os.replace(path, final[key])
        return saved

    trainer.save_model = save_model


def _keep_completed_rows(csv: Path, epochs_done: int) -> None:
    """Drop the rows of ``results.csv`` after the resumed checkpoint's epoch.

    Why: the trainer appends an epoch's row before it saves that epoch's ``last.pt``; a run killed
    between the two would otherwise show that epoch twice once it is trained again.
    """
    if not csv.exists():
        return
    lines = csv.read_text().splitlines(keepends=True)
    if len(lines) > epochs_done + 1:
        with atomic_output(csv) as tmp:
            tmp.write_text("".join(lines[:epochs_done + 1]))


def _resume(yolo, stage: Path, train_kwargs: dict):
    """Continue Ultralytics training from ``stage/weights/last.pt`` with ``yolo``'s callbacks and trainer.

    The checkpoint's own arguments (epochs, learning rate, seed) govern, as Ultralytics' resume
    does; only where the run writes changes (``save_dir``: the staging folder was renamed as
    this run's). A trainer that re-initialises weights (``--from-scratch``) resumes as a plain
    keep-architecture trainer: the weights to continue from are the checkpoint's.
    """
    last = stage / "weights" / "last.pt"
    if not last.exists():
        raise EdgepruneError(f"--resume: {stage} holds no weights/last.pt: the killed run had not finished an epoch; "
                             "start again without --resume")
    trainer = train_kwargs.get("trainer")
    if trainer is not None and issubclass(trainer, _FromScratch):
        trainer = _keep_architecture_trainer(trainer.edgeprune_task)
    for partial in last.parent.glob(".*.partial"):  # a checkpoint the killed run was writing
        partial.unlink()
    resumed = open_yolo(str(last))
    _keep_completed_rows(stage / "results.csv", int(resumed.ckpt.get("epoch", -1)) + 1)
    resumed.callbacks = yolo.callbacks
    resumed.train(resume=True, trainer=trainer, save_dir=str(stage), data=train_kwargs["data"],
                  device=train_kwargs.get("device"))
    return resumed


def _check_epochs(cfg: TrainConfig) -> None:
    if cfg.epochs < 1:
        raise EdgepruneError(f"--epochs must be at least 1, got {cfg.epochs}")

    check_stride(cfg.imgsz)


CONVERGED_GAIN = 0.003  # mAP50-95 gained over the window below which a run counts as converged
CONVERGENCE_FILE = "convergence.json"  # what a --converge run counted, beside its results.csv


def gain_over(maps: list[float], window: int) -> float | None:
    """The best mAP50-95 so far minus the best ``window`` epochs ago; None when the run is not longer than that."""
    if window < 1 or len(maps) <= window:
        return None
    return max(maps) - max(maps[:-window])


def epoch_maps(run_dir: str | Path) -> list[float] | None:
    """The validator's mAP50-95 after each epoch, from the run's results.csv (None when nothing scored the run)."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = csv.DictReader(f, skipinitialspace=True)
        if "metrics/mAP50-95(B)" not in (rows.fieldnames or []):
            return None  # e.g. label-free distillation without --data
        return [float(row["metrics/mAP50-95(B)"]) for row in rows]


TREND_WINDOW = 10  # epochs (at most half the run) over which a finished run's last gain is read


def training_trend(run_dir: str | Path) -> str | None:
    """Whether a finished run was still gaining when its epochs ran out, in one sentence (None without results.csv).

    Why: fine-tuning a pruned model is where the epoch budget decides the accuracy, and a final table
    cannot say whether more epochs would help. At 416 the 0.7-pruned yolov8n scored 0.906 after 24
    fine-tuning epochs (+2.9 points over its last 10) and 0.947 after 60 more.
    """
    maps = epoch_maps(run_dir)
    if maps is None:
        return None
    window = min(TREND_WINDOW, len(maps) // 2)
    gain = gain_over(maps, window)
    if gain is None:
        return f"{len(maps)} training epoch(s): too few to tell whether more would raise mAP50-95"
    said = (f"mAP50-95 gained {100 * gain:.2f} points over the last {window} of {len(maps)} epochs "
            f"(best {max(maps):.4f})")
    if gain < CONVERGED_GAIN:
        return f"{said}: levelled off (< {100 * CONVERGED_GAIN:.1f}), more epochs alone are unlikely to recover more"
    return f"{said}: still rising, more epochs should recover more"


class Convergence:
    """Stop training once the validator's mAP50-95 has gained less than :data:`CONVERGED_GAIN` over ``window`` epochs.

    Why: an accuracy claim against a baseline that was still improving measures extra training,
    not pruning. The gain compares the best mAP50-95 so far with the best ``window`` epochs ago,
    so one noisy epoch neither stops a run nor keeps it going. ``epochs`` stays the cap.

    ``start`` is the mAP50-95 of the checkpoint the run continues, counted as its epoch 0. Without it a
    continued run whose restarted learning rate first costs a few points would compare its dip with
    its own first epoch and be called converged at a best below where it started. ``measure_start``
    gives it when training starts instead, once per run: the start is written into the run folder
    then, and a ``--resume``d run reads it from there rather than validating the checkpoint again.
    """

    def __init__(self, window: int, start: float | None = None, measure_start: Callable[[], float] | None = None):
        self.window = window
        self.start = start
        self.maps: list[float] = []
        self.converged_at: int | None = None
        self._measure_start = measure_start

    def gain(self) -> float | None:
        return gain_over(([] if self.start is None else [self.start]) + self.maps, self.window)

    def converged(self) -> bool:
        """Whether the epochs seen so far meet the criterion (the one place it is spelled)."""
        gain = self.gain()
        return gain is not None and gain < CONVERGED_GAIN

    def attach(self, yolo) -> None:
        yolo.add_callback("on_pretrain_routine_start", self._begin)
        yolo.add_callback("on_fit_epoch_end", self._epoch)

    def _begin(self, trainer) -> None:
        record = _convergence_record(trainer.save_dir)
        if record is not None:  # a resumed run: its first part measured the start
            self.start = record.get("start_map50_95")
        elif self._measure_start is not None:
            self.start = self._measure_start()
        self.save(trainer.save_dir)  # before the first epoch, so that a killed run keeps it

    def _epoch(self, trainer) -> None:
        if self.converged_at is not None or trainer.epoch + 1 <= len(self.maps) or trainer.epoch + 1 > trainer.epochs:
            return  # the trainer's final validation of best.pt, not an epoch
        if trainer.epoch > len(self.maps):  # a resumed run: the epochs before it are in its results.csv
            self.maps = (epoch_maps(trainer.save_dir) or [])[:trainer.epoch]
        self.maps.append(float((trainer.metrics or {}).get("metrics/mAP50-95(B)", 0.0)))
        if self.converged():
            self.converged_at = len(self.maps)
            trainer.stop = True

    def note(self) -> str:
        gain = self.gain()
        if not self.maps:  # the record written as training starts
            note = f"no epoch finished yet (stops at < {100 * CONVERGED_GAIN:.1f} points over {self.window} epochs)"
        elif self.converged_at is not None:
            note = (f"converged at epoch {self.converged_at}: mAP50-95 gained {100 * gain:.2f} points over the last "
                    f"{self.window} epochs (< {100 * CONVERGED_GAIN:.1f}), best {max(self.maps):.4f}")
        else:
            shown = "n/a" if gain is None else f"{100 * gain:.2f} points"
            note = (f"NOT converged after {len(self.maps)} epochs: mAP50-95 gained {shown} over the last {self.window} "
                    f"epochs (the criterion is < {100 * CONVERGED_GAIN:.1f}); raise --epochs")
        if self.start is None:
            return note
        if self.maps and max(self.maps) < self.start:
            return (f"{note}; no epoch beat the checkpoint it continued ({self.start:.4f}, counted as epoch 0): "
                    "that checkpoint, not this run's best.pt, is the better model")
        return f"{note} (the checkpoint it continued: {self.start:.4f}, counted as epoch 0)"

    def save(self, run_dir: str | Path) -> None:
        """Write the watch into the run's folder (:data:`CONVERGENCE_FILE`): the start it counted stays with the run.

        Why: results.csv has no row for the checkpoint a run continued; a card read from the folder
        later (``scripts/baseline_card.py``) must judge convergence as this run did.
        """
        record = {"window": self.window, "criterion": CONVERGED_GAIN, "start_map50_95": self.start,
                  "converged_at": self.converged_at, "note": self.note()}
        with atomic_output(Path(run_dir) / CONVERGENCE_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")


def _convergence_record(run_dir: str | Path) -> dict | None:
    """What :meth:`Convergence.save` wrote into ``run_dir``; None when it holds none."""
    record = Path(run_dir) / CONVERGENCE_FILE
    return json.loads(record.read_text()) if record.is_file() else None


def run_convergence(run_dir: str | Path, window: int) -> dict | None:
    """Epochs, best and gain over ``window`` epochs of a finished run, by :class:`Convergence`'s criterion.

    The start a ``--converge`` run counted as epoch 0 comes from its :data:`CONVERGENCE_FILE`;
    None when nothing scored the run (no results.csv, no mAP column, no epoch).
    """
    maps = epoch_maps(run_dir)
    if not maps:
        return None
    watch = Convergence(window, (_convergence_record(run_dir) or {}).get("start_map50_95"))
    watch.maps = maps
    return {"epochs": len(maps), "start": watch.start, "best": max(maps), "gain": watch.gain(),
            "converged": watch.converged()}


def train(data: str, model: str, out: str | Path, cfg: TrainConfig, converge: int = 0,
          scratch: bool = False) -> TrainResult:
    """Train ``model`` (a yaml such as ``yolov8n.yaml``, or a checkpoint) on ``data``.

    With ``converge`` = N > 0 training stops early once mAP50-95 gained less than 0.3 points over N
    epochs (``cfg.epochs`` is the cap); the result's notes say at which epoch, or that it did not. A
    checkpoint is validated as training starts, once per run (a resumed run reads the score its first part
    saved): its score is the run's epoch 0 (see :class:`Convergence`).
    With ``scratch`` a checkpoint's own architecture (a pruned one too) is trained from fresh weights.
    """

    _check_epochs(cfg)
    if converge < 0:
        raise EdgepruneError(f"--converge must be a number of epochs, got {converge}")
    read_data_yaml(data)  # fail early, with our message, on a bad data file
    extra = {}
    checkpoint = str(model).endswith(".pt")
    if checkpoint:
        loaded = load_model(model)
        check_model_fits_data(loaded, data)
        if scratch:
            extra["trainer"] = _keep_architecture_trainer(loaded.task, scratch=True)
    elif scratch:
        raise EdgepruneError(f"--from-scratch keeps a checkpoint's architecture; {model} is a yaml, which trains "
                             "from scratch anyway")
    out = Path(out).resolve()
    try:
        yolo = open_yolo(model)
    except FileNotFoundError:
        raise EdgepruneError(f"model {model} is neither a file nor an Ultralytics model yaml") from None
    if not converge:
        return run_staged(yolo, out, cfg.resume, data=str(data), **extra, **cfg.overrides())
    # a checkpoint's own score is the run's epoch 0 (from scratch there is none to keep)
    measure = None if scratch or not checkpoint else (
        lambda: evaluate(model, data, imgsz=cfg.imgsz, batch=cfg.batch, device=cfg.device).map50_95)
    watch = Convergence(converge, measure_start=measure)
    watch.attach(yolo)
    result = run_staged(yolo, out, cfg.resume, data=str(data), **extra, **cfg.overrides())
    watch.save(result.run_dir)
    return replace(result, epochs=len(watch.maps), notes=(*result.notes, watch.note()))


def finetune(checkpoint: str, data: str, out: str | Path, cfg: TrainConfig, teacher: str | None = AUTO_TEACHER,
             distill_weight: float = 1.0) -> TrainResult:
    """Fine-tune a (pruned) checkpoint on ``data`` keeping its architecture, distilling from ``teacher``.

    Args:
        teacher: a checkpoint whose head outputs the model learns to match as well as the labels
            (:mod:`toolchain.models.distill`); ``auto`` (default) = the unpruned model ``prune`` recorded
            as the source, when it is still there unchanged; None = labels only.
        distill_weight: scale of the distillation loss against the task loss.
    """

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
    result = run_staged(yolo, out, cfg.resume, trainer=trainer_cls, data=str(data), **recovery_overrides(cfg))
    trend = training_trend(result.run_dir)
    return TrainResult(**{**asdict(result), "teacher": teacher, "notes": tuple(notes + ([trend] if trend else []))})
