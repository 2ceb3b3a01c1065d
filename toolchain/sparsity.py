"""Sparsity training: L1 on BatchNorm gamma through the Ultralytics trainer (network slimming).

Why: BN-gamma pruning (``--method bn``) only separates channels well when most gammas are
near zero, and plain training does not put them there; without that sparsity, pruning by
gamma removes channels that still matter. The penalty ``s * |gamma|`` is added
as its subgradient ``s * sign(gamma)`` to every BN weight gradient after backward and
before the optimizer step (Torch-Pruning's BNScalePruner.regularize does the same update),
through an optimizer step pre-hook, in the trainer that keeps the model's architecture, so
pruned models can be sparsity-trained too. After each epoch the gammas of the EMA model (the one that is saved)
are recorded: histograms per epoch range go to ``gamma_hist_*.png`` and the fractions
below thresholds to ``sparsity.json``, so one can see whether sparsification worked.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from toolchain.errors import EdgepruneError, ModelMismatchError
from toolchain.fileio import atomic_output
from toolchain.training import TrainConfig, TrainResult, _check_epochs, _keep_architecture_trainer, run_staged

THRESHOLDS = (1e-3, 1e-2, 0.1)
EPOCHS_PER_HISTOGRAM = 5


@dataclass(frozen=True)
class SparsityConfig:
    """How to sparsity-train.

    Args:
        strength: ``s``, weight of the L1 penalty on BN gamma (1e-3 is the usual start; lower it if mAP collapses).
        train: epochs, image size, batch... of the Ultralytics trainer.
        thresholds: |gamma| limits whose fractions are recorded.
        warmup_epochs: Ultralytics warm-up length (None = its default of 3); during warm-up the
            learning rate of BN weights starts at 0, so short runs barely move gamma.
    """

    strength: float = 1e-3
    train: TrainConfig = field(default_factory=TrainConfig)
    thresholds: tuple[float, ...] = THRESHOLDS
    warmup_epochs: float | None = None

    def overrides(self) -> dict:
        args = self.train.overrides()
        if self.warmup_epochs is not None:
            args["warmup_epochs"] = self.warmup_epochs
        return args


@dataclass(frozen=True)
class GammaSnapshot:
    """BN gamma statistics after one epoch (epoch 0 = before training)."""

    epoch: int
    count: int
    l1_mean: float
    below: dict

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SparsityResult:
    """The sparsity-trained checkpoint, the training numbers and the gamma history."""

    weights: str
    run_dir: str
    strength: float
    train: TrainResult
    snapshots: list[GammaSnapshot]
    histograms: list[str]

    @property
    def final(self) -> GammaSnapshot:
        return self.snapshots[-1]

    def to_json(self) -> dict:
        return {"weights": self.weights, "run_dir": self.run_dir, "strength": self.strength,
                "train": self.train.to_json(), "snapshots": [s.to_json() for s in self.snapshots],
                "histograms": self.histograms}


def bn_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]


def gammas(model: nn.Module) -> torch.Tensor:
    """All BN |gamma| of ``model``, concatenated (float32, CPU)."""
    layers = bn_layers(model)
    if not layers:
        return torch.zeros(0)
    return torch.cat([m.weight.detach().abs().float().flatten().cpu() for m in layers])


def snapshot(model: nn.Module, epoch: int, thresholds=THRESHOLDS) -> GammaSnapshot:
    g = gammas(model)
    n = max(int(g.numel()), 1)
    return GammaSnapshot(epoch, int(g.numel()), float(g.mean()) if g.numel() else 0.0,
                         {str(t): float((g < t).sum()) / n for t in thresholds})


def add_l1_subgradient(model: nn.Module, strength: float) -> None:
    """``grad += s * sign(gamma)`` for every BN weight: the L1 penalty's subgradient."""
    for bn in bn_layers(model):
        if bn.weight.grad is not None:
            bn.weight.grad.add_(strength * torch.sign(bn.weight.detach()))


def regularise_before_step(trainer, strength: float) -> None:
    """Add the L1 subgradient in an optimizer step pre-hook of ``trainer``.

    The hook runs after backward and after Ultralytics' gradient clipping (max norm 10), right
    before ``optimizer.step()``. Added before clipping, the penalty would be scaled down with
    the detection-loss gradients (their norm is far above 10), and gamma would hardly move.
    """
    trainer.optimizer.register_step_pre_hook(lambda _opt, _args, _kwargs: add_l1_subgradient(trainer.model, strength))


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


def sparsify(checkpoint: str, data: str, out: str | Path, cfg: SparsityConfig) -> SparsityResult:
    """Sparsity-train ``checkpoint`` on ``data`` into the run folder ``out``.

    Returns a normal Ultralytics checkpoint (``OUT/weights/last.pt``: the last, sparsest epoch) that
    ``prune --method bn`` and ``finetune`` accept, plus the gamma history.

    Raises:
        EdgepruneError: bad strength or epochs; ModelMismatchError: not a YOLO checkpoint or wrong classes.
    """
    from toolchain.device import open_yolo
    from toolchain.loading import check_model_fits_data, load_model

    if cfg.strength <= 0:
        raise EdgepruneError(f"--s must be positive, got {cfg.strength}")
    _check_epochs(cfg.train)
    loaded = load_model(checkpoint)
    if not loaded.is_yolo:
        raise ModelMismatchError(f"{checkpoint} is a plain nn.Module; sparsify works on Ultralytics checkpoints")
    check_model_fits_data(loaded, data)
    out = Path(out).resolve()
    history: list[tuple[int, torch.Tensor]] = [(0, gammas(loaded.model))]
    snapshots = [snapshot(loaded.model, 0, cfg.thresholds)]

    def record(trainer) -> None:
        model = trainer.ema.ema if trainer.ema else trainer.model
        epoch = trainer.epoch + 1
        history.append((epoch, gammas(model)))
        snapshots.append(snapshot(model, epoch, cfg.thresholds))

    yolo = open_yolo(checkpoint)
    yolo.add_callback("on_train_start", lambda trainer: regularise_before_step(trainer, cfg.strength))
    yolo.add_callback("on_train_epoch_end", record)
    trained = run_staged(yolo, out, trainer=_keep_architecture_trainer(loaded.task), data=str(data),
                         **cfg.overrides())
    histograms = plot_histograms(history, out)
    # The last epoch, not the best: sparsity is what this run trained for, and the best-scoring epoch is
    # typically an early one whose gammas are still dense (pruning it by gamma would remove live channels).
    last = Path(trained.weights).with_name("last.pt")
    weights = str(last) if last.exists() else trained.weights
    result = SparsityResult(weights, str(out), cfg.strength, trained, snapshots, [str(p) for p in histograms])
    with atomic_output(out / "sparsity.json") as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2))
    return result
