"""Structured channel pruning with Torch-Pruning's DependencyGraph.

Why this module exists: pruning Ultralytics YOLO "by the book" silently fails in four ways
(seeds 003/004): ``C2f.chunk`` breaks index mapping, nothing is pruned because Ultralytics
freezes parameters, ignoring the whole ``Detect`` leaves most head MACs untouched, and the
result cannot be reloaded. :func:`prune_structured` handles all four: chunk blocks are
split (and checked equivalent to 1e-5) first, gradients are enabled for tracing, only the
head's final prediction convs and DFL are protected, and stock blocks are restored after.
Channels are really removed, so the model is smaller and faster on every dense runtime.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn

from toolchain.blocks import restore_stock_blocks, split_chunk_blocks
from toolchain.errors import PruningError
from toolchain.importance import create_importance, needs_gradients
from toolchain.loading import LoadedModel
from toolchain.metrics import ModelStats, model_stats

EQUIVALENCE_TOL = 1e-5


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    Args:
        ratio: fraction of channels removed from each prunable layer (0 < ratio < 1); with
            ``global_pruning`` the same fraction is removed network-wide instead.
        method: importance criterion name (see :mod:`toolchain.importance`).
        global_pruning: rank channels across layers instead of per layer.
        round_to: keep channel counts multiples of this (8 suits SIMD and DPUs); None = no rounding.
        steps: prune in this many equal steps, re-scoring in between.
        imgsz: input size for tracing and MAC counting (YOLO models).
        data: YOLO data.yaml, needed by gradient-based criteria.
        calib_batches: batches of ``data`` used per step by gradient-based criteria.
    """

    ratio: float
    method: str = "l1"
    global_pruning: bool = False
    round_to: int | None = 8
    steps: int = 1
    imgsz: int = 640
    data: str | None = None
    calib_batches: int = 4


@dataclass
class PruneOutcome:
    """The pruned model and what changed."""

    model: nn.Module
    before: ModelStats
    after: ModelStats
    split_blocks: int = 0
    restored_blocks: int = 0
    nonstock_blocks: int = 0
    equivalence_error: float = 0.0
    protected_layers: list[str] = field(default_factory=list)


def flat_tensors(out) -> list[torch.Tensor]:
    """All tensors in a nested model output (tuples, lists, dicts)."""
    return tp.utils.flatten_as_list(out)


def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference between the outputs of two models on ``x``."""
    with torch.no_grad():
        outs_a, outs_b = flat_tensors(a(x)), flat_tensors(b(x))
    if len(outs_a) != len(outs_b) or any(p.shape != q.shape for p, q in zip(outs_a, outs_b)):
        return float("inf")
    return max(float((p - q).abs().max()) for p, q in zip(outs_a, outs_b))


def yolo_protected_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels must keep their count in an Ultralytics model.

    Only the head's final prediction convs (the last conv of every branch: box, class,
    keypoints, one-to-one copies) and the DFL are protected, so the head's inner convs are
    pruned too. Attention blocks (C2PSA) reshape channels into heads, so their convs are
    protected as well.
    """
    from ultralytics.nn.modules.head import Detect

    protected: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, Detect):
            for branch_list in m.children():
                if isinstance(branch_list, nn.ModuleList):
                    for branch in branch_list:
                        last = list(branch.modules())[-1] if isinstance(branch, nn.Sequential) else branch
                        if isinstance(last, nn.Conv2d):
                            protected.append(last)
            dfl = getattr(m, "dfl", None)
            if isinstance(dfl, nn.Module):
                protected.extend(x for x in dfl.modules() if isinstance(x, nn.Conv2d))
        elif type(m).__name__ in ("Attention", "AAttn"):
            protected.extend(x for x in m.modules() if isinstance(x, nn.Conv2d))
        elif type(m).__name__ == "C2PSA":
            protected.append(m.cv1.conv)
    return protected


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv/linear layers producing the model's outputs (a classifier's last layer, say).

    Their output size is the model's contract with its users, so it is never pruned.
    """
    produced: dict[int, nn.Module] = {}
    order: list[nn.Module] = []

    def hook(mod, _inp, out):
        if isinstance(out, torch.Tensor):
            produced[id(out)] = mod
        order.append(mod)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            outs = flat_tensors(model(example))
    finally:
        for h in handles:
            h.remove()
    found = [produced[id(o)] for o in outs if id(o) in produced]
    return found or order[-1:]


def _module_names(model: nn.Module, modules: list[nn.Module]) -> list[str]:
    wanted = {id(m) for m in modules}
    return [name for name, m in model.named_modules() if id(m) in wanted]


def _gradient_step_fn(loaded: LoadedModel, cfg: PruneConfig) -> Callable[[nn.Module], None]:
    """Accumulate loss gradients on real images before a Taylor-scored pruning step."""
    from toolchain.calibration import yolo_batches, yolo_loss

    if not loaded.is_yolo or not cfg.data:
        raise PruningError(
            f"--method {cfg.method} scores channels from a detection loss; it needs an Ultralytics model and --data"
        )

    def accumulate(model: nn.Module) -> None:
        model.zero_grad()
        for batch in yolo_batches(cfg.data, cfg.imgsz, cfg.calib_batches):
            yolo_loss(model, batch).backward()

    return accumulate


def prune_structured(loaded: LoadedModel, cfg: PruneConfig, example: torch.Tensor, progress=None) -> PruneOutcome:
    """Remove channels from a copy of ``loaded.model``; the loaded model is not modified.

    Args:
        loaded: model to prune.
        cfg: pruning settings.
        example: input used for graph tracing and MAC counting.
        progress: optional callable ``progress(step, total)``.

    Raises:
        PruningError: the block rewrite changed the model's outputs, or pruning left a model
            that no longer runs.
    """
    if not 0.0 < cfg.ratio < 1.0:
        raise PruningError(f"pruning ratio must be between 0 and 1 (exclusive), got {cfg.ratio}")
    importance = create_importance(cfg.method)
    model = copy.deepcopy(loaded.model).float().eval()
    before = model_stats(model, example)

    split = 0
    diff = 0.0
    if loaded.is_yolo:
        reference = copy.deepcopy(model)
        split = split_chunk_blocks(model)
        diff = max_abs_diff(reference, model, example)
        if diff > EQUIVALENCE_TOL:
            raise PruningError(
                f"rewriting chunk blocks of {loaded.path} changed its outputs by {diff:.2e} "
                f"(tolerance {EQUIVALENCE_TOL:.0e}); refusing to prune"
            )
        protected = yolo_protected_layers(model)
    else:
        protected = output_layers(model, example)

    # Ultralytics freezes parameters; the dependency graph is traced through autograd.
    for p in model.parameters():
        p.requires_grad_(True)

    grad_step = _gradient_step_fn(loaded, cfg) if needs_gradients(cfg.method) else None
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        global_pruning=cfg.global_pruning,
        pruning_ratio=cfg.ratio,
        iterative_steps=cfg.steps,
        ignored_layers=protected,
        round_to=cfg.round_to,
    )
    protected_names = _module_names(model, protected)
    for step in range(cfg.steps):
        if grad_step is not None:
            grad_step(model)
        pruner.step()
        if progress:
            progress(step + 1, cfg.steps)
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(False)

    restored, kept = restore_stock_blocks(model) if loaded.is_yolo else (0, 0)
    model.eval()
    try:
        after = model_stats(model, example)
    except Exception as exc:  # pragma: no cover - would be a Torch-Pruning bug
        raise PruningError(f"pruned model of {loaded.path} no longer runs: {exc}") from exc
    return PruneOutcome(model, before, after, split, restored, kept, diff, protected_names)
