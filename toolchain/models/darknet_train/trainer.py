"""Train, sparsity-train and fine-tune a Darknet cfg in PyTorch; results saved as cfg + .weights.

Why a loop of our own instead of the Ultralytics trainer: that trainer pickles its model class
into ``.pt`` checkpoints and validates with Ultralytics heads; the cfg_codegen module is
generated at run time (its class cannot be unpickled elsewhere) and its heads are Darknet's.
What Ultralytics does well is reused: its data set, augmentation (mosaic, HSV, flips, scale,
translation; mosaic closed for the last ``close_mosaic`` epochs as it does), data loader,
weight EMA and box IoU. The rest is Darknet's: the ``[yolo]`` loss (:mod:`.loss`), the
``[net]`` optimiser and rate policy (:mod:`.schedule`), and checkpoints as cfg + ``.weights``
that Darknet, OpenCV and edgeprune's reader load. Validation after each epoch runs the saved
files through the scorer the Darknet source passes (the loop ``eval`` runs), so the reported mAP is
that of the files on disk. Sparsity training (``--s``) is the L1 penalty on BN gamma as a
proximal step after each SGD step (:func:`toolchain.models.sparsity.prox_l1_`), which reaches exact
zeros instead of oscillating around them as a subgradient does; ``cfg-prune --global-percent`` then
removes the channels it zeroed. Its size is ``s * rate / (1 - momentum)``: the seed recipes' ``s``
is a subgradient added to the gradient, which SGD's momentum carries on, moving gamma by that much
per step once it is steady; a step of only ``s * rate`` is ten times weaker at momentum 0.9, and
left every gamma above 0.01 after the recipe's 20 epochs.

Differences from the darknet binary a user should know (also in the run's notes): images are
letterboxed by Ultralytics' pipeline where Darknet stretches (identical for square images);
``random=1`` multi-scale training and ``jitter`` are replaced by Ultralytics' augmentation.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from cfg_codegen.build import build_model, extract_weights
from cfg_codegen.parser import parse_cfg
from cfg_codegen.shapes import infer_shapes
from cfg_codegen.weights import WeightsHeader, read_weights, write_weights
from toolchain.core.device import resolve_device
from toolchain.core.errors import EdgepruneError, ModelMismatchError
from toolchain.core.fileio import atomic_output, staged_folder
from toolchain.core.progress import advance, step
from toolchain.models.darknet_train.loss import DarknetYoloLoss, init_head_biases, unsupported_keys
from toolchain.models.darknet_train.schedule import DarknetSchedule
from toolchain.models.datasets import prepare_dataset
from toolchain.models.loading import read_data_yaml
from toolchain.models.sparsity import gammas, plot_histograms, prox_l1_, snapshot

CLOSE_MOSAIC = 10  # Ultralytics' default: the last 10 epochs see whole images


@dataclass(frozen=True)
class DarknetTrainConfig:
    """How to train a Darknet cfg.

    Args:
        epochs: passes over the training split.
        imgsz: square training and validation size (None: the cfg's ``[net]`` size).
        batch: images per update (Darknet's ``batch/subdivisions`` do not apply).
        learning_rate: overrides the cfg's ``learning_rate``.
        burn_in: warm-up iterations, overriding the cfg's ``burn_in`` (see :mod:`.schedule`).
        sparsity: ``s`` of the BN-gamma L1 penalty (0: plain training).
        seed: seeds torch and the data order.
        resume: continue the run a killed process left staged for the same output, from its last
            completed epoch (``weights/state.pt``: weights, EMA, optimizer, history, random state).
    """

    epochs: int = 30
    imgsz: int | None = None
    batch: int = 16
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    learning_rate: float | None = None
    burn_in: int | None = None
    sparsity: float = 0.0
    close_mosaic: int = CLOSE_MOSAIC
    resume: bool = False


@dataclass(frozen=True)
class EpochRow:
    """One line of the results table (and of ``results.csv``)."""

    epoch: int
    lr: float
    box: float
    obj: float
    cls: float
    map50: float
    map50_95: float
    gamma_l1: float
    seconds: float


@dataclass(frozen=True)
class DarknetTrainResult:
    """Where the best cfg + .weights went, the last validation numbers and the per-epoch history."""

    weights: str
    cfg: str
    run_dir: str
    epochs: int
    map50: float
    map50_95: float
    params: int
    history: tuple[EpochRow, ...]
    notes: tuple[str, ...] = ()
    sparsity: dict | None = None
    teacher: str | None = None  # the Ultralytics result's field; Darknet fine-tuning does not distil

    def to_json(self) -> dict:
        return asdict(self)


def check_darknet_fits_data(network, data: str) -> dict:
    data_cfg = read_data_yaml(data)
    classes = {y.classes for y in network.yolo_layers}
    if not network.yolo_layers:
        raise ModelMismatchError(f"{network.path} has no [yolo] layer; edgeprune trains YOLO detectors")
    if classes != {data_cfg["nc"]}:
        raise ModelMismatchError(f"{network.path} has classes={', '.join(map(str, sorted(classes)))} in its [yolo] "
                                 f"layers but {data} has nc={data_cfg['nc']}")
    return data_cfg


def _square_size(network, imgsz: int | None) -> int:
    if imgsz is not None:
        size = imgsz
    elif network.net.width == network.net.height:
        size = network.net.width
    else:
        raise EdgepruneError(f"{network.path} is {network.net.width}x{network.net.height}; training uses square "
                             "images: give --imgsz")

    infer_shapes(network, size, size)  # a clear error when the net cannot run at this size
    return size


def _loader(data: str, imgsz: int, cfg: DarknetTrainConfig, stride: int):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG

    prepare_dataset(data, ("train", "val"))
    data_dict = check_det_dataset(str(data))
    args = get_cfg(DEFAULT_CFG, {"imgsz": imgsz, "batch": cfg.batch, "workers": cfg.workers, "seed": cfg.seed,
                                 "close_mosaic": cfg.close_mosaic})
    dataset = build_yolo_dataset(args, data_dict["train"], cfg.batch, data_dict, mode="train", stride=stride)
    loader = build_dataloader(dataset, cfg.batch, cfg.workers, shuffle=True, rank=-1, pin_memory=False)
    return dataset, loader, args


def _optimizer(model: torch.nn.Module, momentum: float, decay: float) -> torch.optim.SGD:
    """SGD with Darknet's split: weight decay on conv kernels only, none on biases and BN parameters."""
    kernels = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    ids = {id(p) for p in kernels}
    others = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": kernels, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}],
                           lr=0.0, momentum=momentum)


def train_darknet(cfg_path: str, data: str, out: str | Path, config: DarknetTrainConfig,
                  evaluate: Callable[[Path, Path, int], dict], weights: str | None = None,
                  on_epoch: Callable[[EpochRow], None] | None = None) -> DarknetTrainResult:
    """Train the network of ``cfg_path`` on ``data`` into the run folder ``out``.

    Args:
        evaluate: ``(cfg, weights, size) -> {"map50": ..., "map50_95": ...}`` scoring the files an epoch saved
            (the Darknet source runs them as its artifacts are run).
        weights: Darknet .weights to start from (fine-tuning, sparsity training); None trains from scratch.
        on_epoch: called with each epoch's row (the CLI prints the results table with it).

    Returns the best epoch's files (``OUT/weights/best.cfg`` + ``best.weights``, by mAP50 as
    Darknet's ``-map`` does; the last epoch's for sparsity training) and the last epoch's numbers.
    """
    from ultralytics.utils.torch_utils import ModelEMA, init_seeds

    if config.epochs < 1:
        raise EdgepruneError(f"--epochs must be at least 1, got {config.epochs}")
    if config.sparsity < 0:
        raise EdgepruneError(f"--s must be positive, got {config.sparsity}")
    network = parse_cfg(cfg_path)
    check_darknet_fits_data(network, data)
    size = _square_size(network, config.imgsz)
    schedule = DarknetSchedule.from_network(network)
    device = torch.device(resolve_device(config.device).torch)
    init_seeds(config.seed, deterministic=True)

    start = read_weights(weights, network) if weights else None
    model = build_model(network, start)
    notes = list(unsupported_keys(network))
    if start is None:
        init_head_biases(model, network)
        notes.append("trained from scratch (no --weights)")
    model.to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    criterion = DarknetYoloLoss(network).to(device)
    stride = int(max(size / m.shape[-1] for m in model(torch.zeros(1, network.net.channels, size, size,
                                                                    device=device))))
    dataset, loader, hyp = _loader(data, size, config, stride)
    optimizer = _optimizer(model, schedule.momentum, schedule.decay)
    ema = ModelEMA(model)
    lr = config.learning_rate or schedule.learning_rate
    per_epoch = len(loader)
    total = per_epoch * config.epochs
    warm = schedule.warmup_iterations(total, config.burn_in)
    notes.append(f"learning rate {lr:g}, policy {schedule.policy} over {total} iterations "
                 f"(cfg max_batches {schedule.max_batches or 'unset'}), burn-in {warm} iterations")

    out = Path(out).resolve()
    history: list[EpochRow] = []
    gamma_history = [(0, gammas(model))]
    snapshots = [snapshot(model, 0)] if config.sparsity else []
    best_key, seen = (-1.0, -1.0), 0
    with staged_folder(out, replace=False, resume=config.resume) as stage:
        folder = stage / "weights"
        folder.mkdir(parents=True, exist_ok=True)
        iteration, first = 0, 0
        if config.resume:
            state = _load_state(folder / STATE, config)
            model.load_state_dict(state["model"])
            ema.ema.load_state_dict(state["ema"])
            ema.updates = state["ema_updates"]
            optimizer.load_state_dict(state["optimizer"])
            first, iteration, seen, best_key = state["epoch"], state["iteration"], state["seen"], state["best_key"]
            history = [EpochRow(**row) for row in state["history"]]
            gamma_history, snapshots = state["gamma_history"], state["snapshots"]
            torch.set_rng_state(state["rng"])
            notes.append(f"resumed after epoch {first} of {config.epochs}")
            if first >= config.epochs - config.close_mosaic:
                dataset.close_mosaic(hyp)
        for epoch in range(first, config.epochs):
            if epoch == config.epochs - config.close_mosaic:
                dataset.close_mosaic(hyp)
            started, sums = time.perf_counter(), torch.zeros(3)
            step(f"epoch {epoch + 1}/{config.epochs}")
            model.train()
            for i, batch in enumerate(loader):
                rate = schedule.rate(iteration, total, lr, config.burn_in)
                for group in optimizer.param_groups:
                    group["lr"] = rate
                images = batch["img"].to(device).float() / 255.0
                loss, parts = criterion(model(images), batch, (size, size))
                if not math.isfinite(float(loss.detach())):
                    raise EdgepruneError(f"the loss became {float(loss.detach())} at epoch {epoch + 1}, iteration {i + 1}: "
                                         f"lower --lr (now {rate:g}) or lengthen the burn-in")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if config.sparsity:
                    prox_l1_(model, config.sparsity * rate / (1.0 - min(schedule.momentum, 0.99)))  # a cfg at 1 would divide by 0
                ema.update(model)
                sums += parts.cpu()
                seen += images.shape[0]
                iteration += 1
                advance(i + 1, per_epoch)
            last = save_darknet(folder, "last", cfg_path, network, ema.ema, seen)
            step(f"epoch {epoch + 1}/{config.epochs}: validating")
            scores = evaluate(last[0], last[1], size)
            g = gammas(ema.ema)
            gamma_history.append((epoch + 1, g))
            if config.sparsity:
                snapshots.append(snapshot(ema.ema, epoch + 1))
            mean = sums / per_epoch
            row = EpochRow(epoch + 1, rate, *map(float, mean), scores["map50"], scores["map50_95"],
                           float(g.mean()) if g.numel() else 0.0, time.perf_counter() - started)
            history.append(row)
            _write_results(stage, history, atomic_output)
            if (row.map50, row.map50_95) > best_key:
                best_key = (row.map50, row.map50_95)
                for suffix in (".cfg", ".weights"):  # whole or not at all: a kill here must not tear best
                    with atomic_output(folder / f"best{suffix}", suffix=suffix) as tmp:
                        shutil.copyfile(folder / f"last{suffix}", tmp)
            with atomic_output(folder / STATE) as tmp:
                torch.save({"epoch": epoch + 1, "iteration": iteration, "seen": seen, "best_key": best_key,
                            "model": model.state_dict(), "ema": ema.ema.state_dict(), "ema_updates": ema.updates,
                            "optimizer": optimizer.state_dict(), "history": [asdict(r) for r in history],
                            "gamma_history": gamma_history, "snapshots": snapshots, "rng": torch.get_rng_state(),
                            "config": asdict(config)}, tmp)
            if on_epoch:
                on_epoch(row)
        (folder / STATE).unlink()  # the run is complete: nothing to resume, and it is as large as two models
        sparsity = None
        if config.sparsity:
            histograms = plot_histograms(gamma_history, stage)
            sparsity = {"strength": config.sparsity, "snapshots": [s.to_json() for s in snapshots],
                        "histograms": [str(out / p.name) for p in histograms]}
            with atomic_output(stage / "sparsity.json") as tmp:
                tmp.write_text(json.dumps(sparsity, indent=2))
        params = sum(p.numel() for p in model.parameters())
        # Sparsity training hands on its last epoch: the best-scoring one is typically early and still dense.
        kept = "last" if config.sparsity else "best"
        result = DarknetTrainResult(str(out / "weights" / f"{kept}.weights"), str(out / "weights" / f"{kept}.cfg"),
                                    str(out), config.epochs, history[-1].map50, history[-1].map50_95, params,
                                    tuple(history), tuple(notes), sparsity)
        with atomic_output(stage / "train.json") as tmp:
            tmp.write_text(json.dumps({**result.to_json(), "config": asdict(config), "source_cfg": str(cfg_path),
                                       "source_weights": weights, "data": str(data)}, indent=2, default=str))
    return result


STATE = "state.pt"  # the resumable state of a run, in its staging folder's weights/, removed when it completes


def _load_state(path: Path, config: DarknetTrainConfig) -> dict:
    """The state a killed run saved after its last completed epoch; refuses one trained with other settings."""
    if not path.exists():
        raise EdgepruneError(f"--resume: {path.parent.parent} holds no weights/{STATE}: the killed run had not "
                             "finished an epoch; start again without --resume")
    state = torch.load(path, map_location="cpu", weights_only=False)
    asked = {k: v for k, v in asdict(config).items() if k not in ("resume", "device", "workers")}
    saved = {k: v for k, v in state["config"].items() if k in asked}
    changed = sorted(k for k in asked if saved.get(k) != asked[k])
    if changed:
        raise EdgepruneError(f"--resume: the killed run was started with other settings ("
                             + ", ".join(f"{k} {saved.get(k)} not {asked[k]}" for k in changed)
                             + "); resume with the same options, or start again without --resume")
    return state


def save_darknet(folder: Path, name: str, cfg_path: str | Path, network, model: torch.nn.Module,
                 seen: int = 0) -> tuple[Path, Path]:
    """``name.cfg`` (the training cfg, unchanged) and ``name.weights`` (``model``'s parameters, the header
    counting ``seen`` images) in ``folder``, each written whole or not at all."""
    cfg_out, weights_out = folder / f"{name}.cfg", folder / f"{name}.weights"
    with atomic_output(cfg_out, suffix=".cfg") as tmp:
        shutil.copyfile(cfg_path, tmp)
    write_weights(weights_out, network, extract_weights(model, network, WeightsHeader(seen=seen)))
    return cfg_out, weights_out


def _write_results(stage: Path, history: list[EpochRow], atomic_output) -> None:
    with atomic_output(stage / "results.csv", suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(asdict(history[0])))
        for row in history:
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in asdict(row).values()])
