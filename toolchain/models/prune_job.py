"""The ``prune`` job: load → prune (structured, unstructured or residual units) → save → measure both sides.

Why one function: the CLI, the sweep, the sources and the recipes all prune the same way and need
the same before/after numbers; keeping the sequence here means callers only choose settings.
Latency is measured by a probe the caller passes (the bench harness lives above this layer).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from toolchain.core.errors import PruningError
from toolchain.core.fileio import atomic_output, ensure_not_input, sha256_of, zip_compressed_size
from toolchain.core.latency import LatencyStats
from toolchain.models.checkpoint import save_model
from toolchain.models.contract import protected_layers
from toolchain.models.layer_prune import remove_residual_units
from toolchain.models.loading import check_model_fits_data, example_input, load_model
from toolchain.models.model_stats import model_stats, zero_fraction
from toolchain.models.pruning import PruneConfig, prune_structured
from toolchain.models.sparsity import gammas
from toolchain.models.unstructured import DENSE_RUNTIME_NOTE, prune_unstructured
from toolchain.models.validator import evaluate


@dataclass
class Side:
    """One model's numbers: before or after pruning."""

    params: int
    macs: int
    file_bytes: int
    zip_bytes: int
    zero_fraction: float
    latency: LatencyStats | None = None
    map50_95: float | None = None  # the validator's, on --data (right after pruning: no fine-tuning)
    map50: float | None = None


@dataclass
class PruneReport:
    """Everything ``edgeprune prune`` prints and returns with ``--json``."""

    model: str
    out: str
    mode: str  # "structured", "unstructured", "layers", or "layers+structured" (units removed, then channels)
    method: str
    ratio: float
    global_pruning: bool
    steps: int
    round_to: int | None
    input_shape: tuple[int, ...]
    before: Side
    after: Side
    stock_blocks: bool = True
    split_blocks: int = 0
    protected_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head_ratio: float | None = None  # the task head's own ratio (None: ``ratio``)
    latency_measured: dict | None = None  # how both latency rows were measured (device, precision, threads...)
    device_search: dict | None = None  # latency-aware pruning: the target, the device profile and every probe

    def ratios(self) -> dict:
        """after / before for each number (lower is smaller)."""
        out = {}
        for key in ("params", "macs", "file_bytes", "zip_bytes"):
            b = getattr(self.before, key)
            out[key] = getattr(self.after, key) / b if b else None
        if self.before.latency and self.after.latency:
            out["latency"] = self.after.latency.median_ms / self.before.latency.median_ms
        return out

    def to_json(self) -> dict:
        data = asdict(self)
        data["ratios"] = self.ratios()
        return data


# (model, example input) -> (its latency statistics, how they were measured): the caller's measuring harness
LatencyProbe = Callable[[torch.nn.Module, torch.Tensor], tuple[LatencyStats, dict]]
SPARSE_GAMMA = 1e-2  # |BN gamma| below this counts as a dead channel for --method bn


def bn_sparsity_note(model, ratio: float, global_pruning: bool) -> str | None:
    """What ``--method bn`` will do to ``model``, when that is not "remove dead channels".

    Why: ranking channels by |gamma| separates them only after sparsity training; on a dense
    model every gamma is near 1 and the ranking is about as good as random pruning, and beyond
    the share of zeroed channels a sparsified model loses live ones.
    """

    g = gammas(model)
    if not g.numel():
        return None
    dead = float((g < SPARSE_GAMMA).float().mean())
    if dead < 0.1:
        return (f"--method bn on BatchNorm gammas that are not sparse ({dead:.1%} below {SPARSE_GAMMA}, mean "
                f"{float(g.mean()):.3f}): it ranks nearly equal values, much like random pruning; run `edgeprune "
                "sparsify` with this ratio first, or prune with --method l1")
    if global_pruning and ratio > dead + 0.01:
        return (f"ratio {ratio} removes more channels than are dead ({dead:.1%} of BatchNorm gammas below "
                f"{SPARSE_GAMMA}): live channels go too, so expect a loss beyond the plateau")
    return None


def _accuracy(path: Path, data: str, imgsz: int) -> tuple[float, float]:
    result = evaluate(str(path), data, imgsz=imgsz)
    return result.map50_95, result.map50


def _side(model, example, saved_path: Path, latency: LatencyProbe | None) -> tuple[Side, dict | None]:
    """One model's numbers, and how its latency was measured (None when not timed)."""
    stats = model_stats(model, example)
    timed, conditions = latency(model, example) if latency else (None, None)
    side = Side(
        params=stats.params,
        macs=stats.macs,
        file_bytes=saved_path.stat().st_size,
        zip_bytes=zip_compressed_size(saved_path),
        zero_fraction=zero_fraction(model),
        latency=timed,
    )
    return side, conditions


def prune_file(
    model_path: str,
    out: str,
    cfg: PruneConfig,
    unstructured: bool = False,
    input_shape: tuple[int, ...] | None = None,
    latency: LatencyProbe | None = None,
    progress=None,
    layers: int = 0,
    evaluate: bool = True,
) -> PruneReport:
    """Prune the model in ``model_path`` and write it to ``out`` (never over the input).

    With ``layers`` > 0 the ``layers`` least important residual units are removed instead of
    channels (see :mod:`toolchain.models.layer_prune`). With ``cfg.data`` (and ``evaluate``) both models
    are scored by the Ultralytics validator: the mAP right after pruning, before any fine-tuning.

    Sizes are compared on both models saved the same way (an fp16 Ultralytics checkpoint
    without optimizer state, or a pickled module), so a training checkpoint's optimizer state
    does not inflate the "before" size.
    """
    ensure_not_input(out, model_path)
    loaded = load_model(model_path)
    if cfg.data and loaded.is_yolo:
        check_model_fits_data(loaded, cfg.data)
    example = example_input(loaded, cfg.imgsz, input_shape)
    notes: list[str] = list(loaded.notes)
    if cfg.method == "bn" and not unstructured and (cfg.ratio or cfg.layer_ratios):
        notes += [n for n in [bn_sparsity_note(loaded.model, cfg.ratio, cfg.global_pruning)] if n]
    mode = "unstructured" if unstructured else "structured"
    if layers:
        pruned, removed = remove_residual_units(loaded.model, layers)
        mode, split, stock, protected_names = "layers", 0, True, []
        notes.append("removed residual units (mean |gamma| of the last BN): "
                     + ", ".join(f"{u.name} ({u.score:.3g})" for u in removed))
        if cfg.ratio or cfg.layer_ratios:  # depth first, then width on what is left (device-aware search)
            import dataclasses

            outcome = prune_structured(dataclasses.replace(loaded, model=pruned), cfg, example, progress=progress)
            pruned, split, protected_names = outcome.model, outcome.split_blocks, outcome.protected_layers
            mode = "layers+structured"
    elif unstructured:
        protected = protected_layers(loaded.model) if loaded.is_yolo else []
        pruned = prune_unstructured(loaded.model, cfg.ratio, protected)
        notes.append(DENSE_RUNTIME_NOTE)
        split = 0
        stock = True
        protected_names = []
    else:
        outcome = prune_structured(loaded, cfg, example, progress=progress)
        pruned = outcome.model
        split = outcome.split_blocks
        stock = True  # chunk halves are coupled, so every block is restored to its stock class
        protected_names = outcome.protected_layers

    note = {"mode": mode, "layers": layers, "method": cfg.method, "ratio": cfg.ratio,
            "global": cfg.global_pruning, "steps": cfg.steps, "source": str(Path(model_path).resolve()),
            "source_sha256": sha256_of(model_path)}

    # The checkpoint stays staged until it is measured too: an interrupted prune leaves nothing at ``out``.
    with atomic_output(out) as staged:
        save_model(loaded, pruned, staged, note=note)
        with tempfile.TemporaryDirectory(prefix="edgeprune-") as tmp:
            baseline_file = save_model(loaded, loaded.model, Path(tmp) / "baseline.pt")
            before, _ = _side(loaded.model, example, baseline_file, latency)
        after, measured = _side(pruned, example, staged, latency)
        if mode == "structured" and after.params == before.params:  # raised inside the staging: nothing is saved

            raise PruningError(f"ratio {cfg.ratio} with --round-to {cfg.round_to} removes no channel from {model_path} "
                               "(every layer would round back to its full width); lower --round-to or raise --ratio")
        if evaluate and cfg.data and loaded.is_yolo:
            imgsz = int(example.shape[-1])
            before.map50_95, before.map50 = _accuracy(Path(model_path), cfg.data, imgsz)
            after.map50_95, after.map50 = _accuracy(staged, cfg.data, imgsz)
    return PruneReport(
        model=str(model_path), out=str(out), mode=note["mode"], method=cfg.method, ratio=cfg.ratio,
        global_pruning=cfg.global_pruning, steps=cfg.steps, round_to=cfg.round_to,
        input_shape=tuple(example.shape), before=before, after=after, stock_blocks=stock,
        split_blocks=split, protected_layers=protected_names, notes=notes, head_ratio=cfg.head_ratio,
        latency_measured=measured,
    )
