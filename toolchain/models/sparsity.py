"""Sparsity training: drive the BatchNorm scales of the channels a prune will remove to exactly zero.

Why not the textbook L1 penalty: network slimming adds ``s * |gamma|`` to the loss and trains for
hundreds of epochs with SGD, so that the channels the task does not need drift to zero. In the
short runs users can afford (tens of epochs, a few hundred optimizer steps, gradients accumulated
to a nominal batch of 64) the penalty moves every gamma by at most ``s * sum(lr)``, a few percent;
and under AdamW, which the Ultralytics trainer picks for short runs, every parameter moves at
most about one learning rate per step whatever its gradient. Measured on the 256 px baseline:
10 epochs at ``s = 1e-3`` took mean |gamma| from 1.005 to 0.978, none below 0.1, and a strength
large enough to move gamma at all (a proximal step of ``s * lr``) collapsed every channel at
once, because all gammas shrink at the same rate.

What this module does instead (pruning-aware training, as in gradual pruning): the pruner is
asked which channels a prune with the chosen ratio, criterion and rounding would remove
(:func:`toolchain.models.pruning.plan_channels`, the same code the prune runs); after every optimizer
step the BatchNorm scale *and shift* of exactly those channels are scaled down along a linear
ramp that reaches zero at ``1 - hold`` of the run, and are held at zero after it, while the task
loss trains the rest of the network to do without them. The plan is recomputed at the start of
each epoch of the ramp, so channels the task pulls back up can leave it. With gamma and beta
zero a channel outputs SiLU(0) = 0 everywhere, so ``prune --method bn`` with the same settings
(or a lower ratio) removes only dead channels and changes no output: the plateau the seed users saw after
300 epochs, reached in the epochs given, whatever optimizer runs.

A prune that also removes residual units (``prune --layers N``, the depth the ``--speedup`` search
chooses) is prepared the same way: the N units it would remove are chosen when training starts,
the last BatchNorm of each (:func:`toolchain.models.layer_prune.unit_output_bn`) ramps to zero with
the channels, so the unit computes ``x + SiLU(0) = x``, and the channel plan is made on the model
without those units, as the prune makes it. Without this, removing 4 of yolov8n's 6 units after
sparsity training took mAP50-95 from 0.807 to 0.152 (416 px, ``benchmarks/recovery.md``).

Recorded after each epoch for the saved (EMA) model: the fraction of gammas below 1e-3, 1e-2
and 0.1 and the validator's mAP50-95, printed as they come and written to ``sparsity.json``
with a histogram per range of epochs. The criterion stated and checked at the end: the planned
fraction of gammas is below 1e-2, and the sparsified model scores no more than
:data:`MAX_MAP_LOSS` below the model it started from; otherwise the result says so.

:func:`prox_l1_` (a proximal L1 step) is the textbook penalty done right for any optimizer,
used by the Darknet trainer's ``--s``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from toolchain.core.device import open_yolo
from toolchain.core.errors import EdgepruneError, ModelMismatchError
from toolchain.core.fileio import atomic_output
from toolchain.models.importance import list_importances, needs_gradients
from toolchain.models.layer_prune import unit_output_bn, units_to_remove, without_units
from toolchain.models.loading import LoadedModel, check_model_fits_data, load_model
from toolchain.models.pruning import PruneConfig, plan_channels
from toolchain.models.training import (TrainConfig, TrainResult, _check_epochs, _keep_architecture_trainer,
                                      recovery_overrides, run_staged)
from toolchain.models.validator import evaluate

THRESHOLDS = (1e-3, 1e-2, 0.1)
EPOCHS_PER_HISTOGRAM = 5
MAX_MAP_LOSS = 0.03  # mAP50-95 the sparsified model may lose against its start before the result warns
PLAN_IMGSZ = 128  # the channel plan does not depend on the input size; a small trace is quick


@dataclass(frozen=True)
class SparsityConfig:
    """How to sparsity-train.

    Args:
        prune: the prune the model is prepared for (ratio, criterion, ``--global``, rounding or
            per-layer ratios, as ``edgeprune prune`` takes them); its channels are driven to zero.
            Gradient criteria (taylor) are not available: the plan is recomputed every epoch.
        hold: final fraction of the run during which the planned channels are held at zero.
        layers: residual units the prune also removes (``prune --layers``); 0: channels only.
        train: epochs, image size, batch... of the Ultralytics trainer.
    """

    prune: PruneConfig = field(default_factory=lambda: PruneConfig(ratio=0.5))
    hold: float = 0.4
    layers: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    thresholds: tuple[float, ...] = THRESHOLDS

    def validate(self) -> None:
        cfg = self.prune
        if not 0 < cfg.ratio < 1 and not cfg.layer_ratios:
            raise EdgepruneError(f"--ratio must be between 0 and 1 (exclusive), got {cfg.ratio}")
        if not 0 <= self.hold < 1:
            raise EdgepruneError(f"--hold must be in [0, 1), got {self.hold}")
        if self.layers < 0:
            raise EdgepruneError(f"--layers must be 0 or more, got {self.layers}")
        if cfg.method not in list_importances() or needs_gradients(cfg.method):
            usable = [m for m in list_importances() if not needs_gradients(m)]
            raise EdgepruneError(f"sparsify chooses channels with one of {', '.join(usable)}; got --method {cfg.method}")

    def plan_config(self) -> PruneConfig:
        """The prune's first step, traced at a small size (the plan does not depend on the input size)."""
        return replace(self.prune, imgsz=PLAN_IMGSZ, steps=1, data=None)


@dataclass(frozen=True)
class GammaSnapshot:
    """BN gamma statistics after one epoch (epoch 0 = before training), and the model's mAP50-95 then."""

    epoch: int
    count: int
    l1_mean: float
    below: dict
    map50_95: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SparsityResult:
    """The sparsity-trained checkpoint, the training numbers, the gamma history and what to know."""

    weights: str
    run_dir: str
    prune: dict | None  # the prune the model was prepared for (PruneConfig's fields); None: an L1 penalty
    channels: int  # BN channels driven to zero (0 with an L1 penalty: it zeroes what it finds)
    train: TrainResult
    snapshots: list[GammaSnapshot]
    histograms: list[str]
    start_map50_95: float | None
    notes: tuple[str, ...] = ()
    strength: float | None = None  # the L1 penalty's ``s`` (Darknet cfgs)
    units: tuple[str, ...] = ()  # residual units driven to identity, for ``prune --layers len(units)``

    @property
    def final(self) -> GammaSnapshot:
        return self.snapshots[-1]

    @property
    def map50_95(self) -> float | None:
        """The sparsified model's mAP50-95 (the teacher a later fine-tune distils from)."""
        return self.final.map50_95

    def to_json(self) -> dict:
        return {"weights": self.weights, "run_dir": self.run_dir, "prune": self.prune, "channels": self.channels,
                "units": list(self.units), "strength": self.strength, "train": self.train.to_json(),
                "snapshots": [s.to_json() for s in self.snapshots], "histograms": self.histograms,
                "start_map50_95": self.start_map50_95, "map50_95": self.map50_95, "notes": list(self.notes)}


def bn_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]


def gammas(model: nn.Module) -> torch.Tensor:
    """All BN |gamma| of ``model``, concatenated (float32, CPU)."""
    layers = bn_layers(model)
    if not layers:
        return torch.zeros(0)
    return torch.cat([m.weight.detach().abs().float().flatten().cpu() for m in layers])


def snapshot(model: nn.Module, epoch: int, thresholds=THRESHOLDS, map50_95: float | None = None) -> GammaSnapshot:
    g = gammas(model)
    n = max(int(g.numel()), 1)
    return GammaSnapshot(epoch, int(g.numel()), float(g.mean()) if g.numel() else 0.0,
                         {str(t): float((g < t).sum()) / n for t in thresholds}, map50_95)


def prox_l1_(model: nn.Module, tau: float) -> None:
    """One proximal step of ``tau * |gamma|`` on every BN scale: shrink towards zero by ``tau``, stop at zero.

    Applied after the optimizer step, it does what the L1 penalty means whatever the optimizer
    (a subgradient added to the gradient is rescaled by Adam, and oscillates around zero).
    """
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.weight.copy_(torch.sign(bn.weight) * (bn.weight.abs() - tau).clamp_min(0))


def plan_prune(loaded: LoadedModel, model: nn.Module, prune_cfg: PruneConfig, units: list[str]) -> dict[str, list[int]]:
    """The BatchNorm channels of ``model`` that removing ``units`` and then pruning with ``prune_cfg`` makes dead.

    The channel plan is made on ``model`` without ``units`` (the order ``prune_file`` works in:
    depth first, then width); each removed unit adds every channel of its last BatchNorm.
    ``loaded`` gives the model's kind; ``model`` (its current weights, any device) is not modified.
    """
    current = without_units(model, units).float().cpu().eval()
    example = torch.zeros(1, 3, prune_cfg.imgsz, prune_cfg.imgsz)
    planned = plan_channels(replace(loaded, model=current), prune_cfg, example)
    modules = dict(model.named_modules())
    for name in units:
        planned[unit_output_bn(name)] = list(range(modules[unit_output_bn(name)].num_features))
    return planned


class ChannelRamp:
    """Trainer callbacks that ramp the planned channels' BN scale and shift to zero and hold them there.

    The ramp follows training progress (batches seen / batches in the run): at progress ``p``
    every planned value is its value when planned times ``max(0, 1 - p / (1 - hold))``; after
    each optimizer step the values are multiplied by the ratio of that ramp now and at the last
    step, so the optimizer's own updates in between shrink with them.
    """

    def __init__(self, cfg: SparsityConfig, plan: Callable[[nn.Module], dict[str, list[int]]]):
        self.cfg, self.plan = cfg, plan
        self.batches = 0
        self.total = 1
        self.last_level = 1.0
        self.channels: dict[str, torch.Tensor] = {}
        self.modules: dict[str, nn.Module] = {}

    @property
    def ramp_end(self) -> float:
        return 1.0 - self.cfg.hold

    def level(self) -> float:
        """How much of each planned value is left at the current progress (1 → 0 over the ramp)."""
        progress = self.batches / self.total
        return 0.0 if self.ramp_end <= 0 else max(0.0, 1.0 - progress / self.ramp_end)

    def attach(self, yolo) -> None:
        yolo.add_callback("on_train_start", self._start)
        yolo.add_callback("on_train_epoch_start", self._replan)
        yolo.add_callback("on_train_batch_end", self._count)
        yolo.add_callback("on_train_epoch_end", self._zero_ema)

    def _start(self, trainer) -> None:
        self.total = max(trainer.epochs * len(trainer.train_loader), 1)
        self.batches = trainer.start_epoch * len(trainer.train_loader)  # > 0 when a killed run is resumed
        self.last_level = self.level()
        self.modules = dict(trainer.model.named_modules())
        trainer.optimizer.register_step_post_hook(lambda *_: self._step())

    def _replan(self, trainer) -> None:
        if self.channels and self.level() == 0.0:
            return  # the ramp is over: the channels held at zero stay the plan
        device = next(trainer.model.parameters()).device
        plan = self.plan(trainer.model)
        self.channels = {name: torch.tensor(idxs, dtype=torch.long, device=device) for name, idxs in plan.items()}

    def _count(self, trainer) -> None:
        self.batches += 1

    def _scale(self, modules: dict[str, nn.Module], factor: float) -> None:
        with torch.no_grad():
            for name, idxs in self.channels.items():
                bn = modules[name]
                bn.weight[idxs] *= factor
                bn.bias[idxs] *= factor

    def _step(self) -> None:
        level = self.level()
        self._scale(self.modules, level / self.last_level if self.last_level > 0 else 0.0)
        self.last_level = level

    def _zero_ema(self, trainer) -> None:
        """Once the ramp is over, the saved (EMA) model holds exact zeros too, not an average lagging behind."""
        if trainer.ema and self.level() == 0.0:
            self._scale(dict(trainer.ema.ema.named_modules()), 0.0)


def plot_histograms(history: list[tuple[int, torch.Tensor]], out_dir: Path) -> list[Path]:
    """One PNG per range of :data:`EPOCHS_PER_HISTOGRAM` epochs, overlaying each epoch's |gamma| histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(float(g.max()) for _, g in history if g.numel()) or 1.0
    paths = []
    for start in range(0, len(history), EPOCHS_PER_HISTOGRAM):
        chunk = history[start:start + EPOCHS_PER_HISTOGRAM]
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        for epoch, g in chunk:
            ax.hist(g.numpy(), bins=80, range=(0, top), histtype="step", lw=1.2, label=f"epoch {epoch}")
        ax.set_yscale("log")
        ax.set_xlabel("|BatchNorm gamma|")
        ax.set_ylabel("channels")
        ax.set_title(f"BN gamma, epochs {chunk[0][0]}-{chunk[-1][0]}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = out_dir / f"gamma_hist_epochs_{chunk[0][0]:03d}-{chunk[-1][0]:03d}.png"
        with atomic_output(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        paths.append(out)
    return paths


def _verdict(snapshots: list[GammaSnapshot], start_map: float | None, zeroed: float) -> list[str]:
    """The stated criterion, checked: the planned share of gamma is below 1e-2 and the mAP held."""
    notes = []
    final = snapshots[-1]
    below = final.below.get("0.01", 0.0)
    if below + 0.005 < zeroed:
        notes.append(f"only {below:.1%} of the BatchNorm gammas are below 0.01, {zeroed:.1%} were planned: "
                     "train more epochs so the ramp completes")
    if start_map is not None and final.map50_95 is not None and start_map - final.map50_95 > MAX_MAP_LOSS:
        notes.append(f"the sparsified model scores mAP50-95 {final.map50_95:.3f}, {100 * (start_map - final.map50_95):.1f} "
                     f"points below the {start_map:.3f} it started from: give more --epochs (or a lower --ratio) "
                     "before pruning, or recover with `finetune`")
    return notes


def sparsify(checkpoint: str, data: str, out: str | Path, cfg: SparsityConfig,
             on_epoch: Callable[[GammaSnapshot], None] | None = None) -> SparsityResult:
    """Sparsity-train ``checkpoint`` on ``data`` into the run folder ``out``.

    Returns a normal Ultralytics checkpoint (``OUT/weights/last.pt``: the last epoch, whose planned
    channels are exactly zero) that ``prune --method bn`` removes losslessly up to ``cfg.prune``'s ratio,
    plus the gamma history and the mAP before and after. ``on_epoch`` gets each epoch's snapshot.

    Raises:
        EdgepruneError: bad ratio, method or epochs; ModelMismatchError: not a YOLO checkpoint or wrong classes.
    """

    cfg.validate()
    _check_epochs(cfg.train)
    loaded = load_model(checkpoint)
    if not loaded.is_yolo:
        raise ModelMismatchError(f"{checkpoint} is a plain nn.Module; sparsify works on Ultralytics checkpoints")
    check_model_fits_data(loaded, data)
    # chosen once: the ranking (mean |gamma| of the last BN) only confirms a unit on its way to identity
    units = [u.name for u in units_to_remove(loaded.model, cfg.layers)] if cfg.layers else []
    out = Path(out).resolve()
    imgsz = cfg.train.imgsz or loaded.train_imgsz
    start_map = evaluate(checkpoint, data, imgsz=imgsz, device=cfg.train.device).map50_95
    ramp = ChannelRamp(cfg, lambda model: plan_prune(loaded, model, cfg.plan_config(), units))
    history: list[tuple[int, torch.Tensor]] = [(0, gammas(loaded.model))]
    snapshots = [snapshot(loaded.model, 0, cfg.thresholds, start_map)]

    def record(trainer) -> None:
        epoch = trainer.epoch + 1
        if epoch <= snapshots[-1].epoch or epoch > trainer.epochs:  # the trainer's final validation of best.pt
            return
        model = trainer.ema.ema if trainer.ema else trainer.model
        score = (trainer.metrics or {}).get("metrics/mAP50-95(B)")
        history.append((epoch, gammas(model)))
        snapshots.append(snapshot(model, epoch, cfg.thresholds, None if score is None else float(score)))
        if on_epoch:
            on_epoch(snapshots[-1])

    yolo = open_yolo(checkpoint)
    ramp.attach(yolo)
    yolo.add_callback("on_fit_epoch_end", record)
    trained = run_staged(yolo, out, cfg.train.resume, trainer=_keep_architecture_trainer(loaded.task), data=str(data),
                         **recovery_overrides(cfg.train))
    histograms = plot_histograms(history, out)
    channels = sum(len(idxs) for idxs in ramp.channels.values())
    zeroed = channels / max(snapshots[0].count, 1)
    # The last epoch, not the best: its planned channels are exactly zero; the best-scoring epoch can be one
    # from before the ramp ended, whose channels are not (pruning it would remove live channels).
    last = Path(trained.weights).with_name("last.pt")
    weights = str(last) if last.exists() else trained.weights
    result = SparsityResult(weights, str(out), asdict(cfg.prune), channels, trained, snapshots, [str(p) for p in histograms],
                            start_map, tuple(_verdict(snapshots, start_map, zeroed)), units=tuple(units))
    with atomic_output(out / "sparsity.json") as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2))
    return result
