"""Structured channel pruning with Torch-Pruning's DependencyGraph.

Why this module exists: pruning Ultralytics YOLO "by the book" silently fails in several
ways: ``chunk`` blocks break index mapping, nothing is pruned because Ultralytics freezes
parameters, ignoring the whole head leaves most head MACs untouched, and the result cannot
be reloaded. :func:`prune_structured` handles all of them: chunk blocks are split (and
checked equivalent, relative to the output's scale) first, their halves are coupled so they
keep equal widths (:mod:`toolchain.models.coupling`), gradients are enabled for tracing, only the
head's final prediction layers are protected (:mod:`toolchain.models.contract`), and stock blocks
are restored after — so every pruned checkpoint loads in plain Ultralytics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from toolchain.core.errors import PruningError
from toolchain.models.blocks import SplitChunk, chunk_couplings, restore_stock_blocks, split_chunk_blocks
from toolchain.models.calibration import yolo_batches, yolo_loss
from toolchain.models.contract import contract_shapes, flat_tensors, heads, protected_layers, trace_training_branches
from toolchain.models.coupling import couple_groups
from toolchain.models.floored_pruner import FlooredPruner
from toolchain.models.importance import TieBroken, create_importance, needs_gradients
from toolchain.models.loading import LoadedModel
from toolchain.models.model_stats import ModelStats, model_stats

# Largest output change a lossless rewrite may cause, relative to each output's own scale
# (max |output|): float32 rounding through ~100 layers stays near 1e-6, a wrong rewrite is O(1).
EQUIVALENCE_RTOL = 1e-4


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    Args:
        ratio: fraction of channels removed from each prunable layer (0 < ratio < 1); with
            ``global_pruning`` the same fraction is removed network-wide instead.
        method: importance criterion name (see :mod:`toolchain.models.importance`).
        global_pruning: rank channels across layers instead of per layer.
        round_to: keep channel counts multiples of this (8 suits SIMD and DPUs); None = no rounding.
        steps: prune in this many equal steps, re-scoring in between.
        imgsz: input size for tracing and MAC counting (YOLO models); None: the size the
            checkpoint was trained at (640 when it does not say).
        data: YOLO data.yaml, needed by gradient-based criteria.
        calib_batches: batches of ``data`` used per step by gradient-based criteria.
        layer_ratios: per Ultralytics layer index, the ratio of that block (others get ``ratio``);
            what latency-aware pruning chooses (:mod:`toolchain.pipelines.latency_aware`). Local pruning only.
        head_ratio: the ratio of the task head's inner convs (Ultralytics models; None: ``ratio``, 0:
            the head keeps its width). Why separate: the head's branches are already at Ultralytics'
            floor widths (box branch = 4 x reg_max = 64 channels, class branch >= the P3 width), and
            on a converged yolov8n cutting them with the body at 0.7 is what collapsed the class
            branch (``benchmarks/recovery.md``). Under ``global_pruning`` the head is ranked on its own.
    """

    ratio: float
    method: str = "l1"
    global_pruning: bool = False
    round_to: int | None = 8
    steps: int = 1
    imgsz: int | None = None
    data: str | None = None
    calib_batches: int = 4
    layer_ratios: dict | None = None
    head_ratio: float | None = None


@dataclass
class PruneOutcome:
    """The pruned model and what changed."""

    model: nn.Module
    before: ModelStats
    after: ModelStats
    split_blocks: int = 0
    restored_blocks: int = 0
    equivalence_error: float = 0.0
    protected_layers: list[str] = field(default_factory=list)


def _paired_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The output tensors of two models on ``x``, paired; None when their structure differs."""
    with torch.no_grad():
        outs_a, outs_b = flat_tensors(a(x)), flat_tensors(b(x))
    if len(outs_a) != len(outs_b) or any(p.shape != q.shape for p, q in zip(outs_a, outs_b)):
        return None
    return list(zip(outs_a, outs_b))


def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference between the outputs of two models on ``x``."""
    pairs = _paired_outputs(a, b, x)
    return float("inf") if pairs is None else max(float((p - q).abs().max()) for p, q in pairs)


def relative_output_diff(reference: nn.Module, candidate: nn.Module, x: torch.Tensor) -> float:
    """Largest output difference, each output tensor measured against its own scale.

    Boxes of a 640 model are in pixels (hundreds), class scores in [0, 1]: an absolute
    tolerance is wrong for one of them, a per-tensor relative one fits both.
    """
    pairs = _paired_outputs(reference, candidate, x)
    if pairs is None:
        return float("inf")
    return max(float((r - c).abs().max()) / max(float(r.abs().max()), 1e-6) for r, c in pairs)


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


def _gradient_step_fn(loaded: LoadedModel, cfg: PruneConfig, imgsz: int) -> Callable[[nn.Module], None]:
    """Accumulate loss gradients on real images before a Taylor-scored pruning step."""

    if not loaded.is_yolo or not cfg.data:
        raise PruningError(
            f"--method {cfg.method} scores channels from a detection loss; it needs an Ultralytics model and --data"
        )

    def accumulate(model: nn.Module) -> None:
        model.zero_grad()
        for batch in yolo_batches(cfg.data, imgsz, cfg.calib_batches):
            yolo_loss(model, batch).backward()

    return accumulate


class _Culprit:
    """Remembers the layer Torch-Pruning was working on, to name it when it fails."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules()}
        self.module: nn.Module | None = None

    def watch(self, pruner) -> None:
        estimate = pruner.estimate_importance

        def estimate_and_remember(group):
            self.module = group[0].dep.target.module
            return estimate(group)

        pruner.estimate_importance = estimate_and_remember

    def describe(self) -> str:
        """``"<Class> (layer N, <name>)"`` for the top-level layer holding the last module seen."""
        name = self.names.get(id(self.module), "") if self.module is not None else ""
        parts = name.split(".")
        layers = getattr(self.model, "model", None)
        if len(parts) >= 2 and parts[0] == "model" and parts[1].isdigit() and isinstance(layers, nn.Sequential):
            layer = layers[int(parts[1])]
            cls = type(layer.block if isinstance(layer, SplitChunk) else layer).__name__
            inner = ".".join(p for p in parts[2:] if p != "block")
            return f"{cls} (layer {parts[1]}{', ' + inner if inner else ''})"
        if self.module is not None:
            return f"{type(self.module).__name__} ({name or 'unnamed module'})"
        return "graph tracing"


def _fail(loaded: LoadedModel, where: str, exc: Exception) -> PruningError:
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return PruningError(f"Torch-Pruning cannot prune {loaded.path} at {where}: {type(exc).__name__}: {reason}")


@dataclass
class _Session:
    """A model prepared for Torch-Pruning (chunk blocks split, gradients on) and the pruner built on it."""

    model: nn.Module
    before: ModelStats
    pruner: object
    pairs: list
    protected_names: list[str]
    split: int
    diff: float
    contract: object
    grad_step: Callable[[nn.Module], None] | None
    culprit: "_Culprit"


def _session(loaded: LoadedModel, cfg: PruneConfig, example: torch.Tensor) -> _Session:
    """Copy ``loaded.model`` and build the pruner :func:`prune_structured` and :func:`plan_channels` share."""
    if not 0.0 <= cfg.ratio < 1.0 or (cfg.ratio == 0.0 and not cfg.layer_ratios):
        raise PruningError(f"pruning ratio must be between 0 and 1 (exclusive), got {cfg.ratio}")
    importance = create_importance(cfg.method)
    model = copy.deepcopy(loaded.model).float().eval()
    before = model_stats(model, example)
    split = 0
    diff = 0.0
    if loaded.is_yolo:
        contract = contract_shapes(model, example)  # load_model already refused unprunable modules
        reference = copy.deepcopy(model)
        split = split_chunk_blocks(model)
        diff = relative_output_diff(reference, model, example)
        if diff > EQUIVALENCE_RTOL:
            raise PruningError(
                f"rewriting chunk blocks of {loaded.path} changed its outputs by {diff:.2e} of their scale "
                f"(tolerance {EQUIVALENCE_RTOL:.0e}); refusing to prune"
            )
        del reference
        protected = protected_layers(model)
        pairs = chunk_couplings(model)
    else:
        contract = None
        protected = output_layers(model, example)
        pairs = []

    # Ultralytics freezes parameters; the dependency graph is traced through autograd.
    for p in model.parameters():
        p.requires_grad_(True)

    grad_step = _gradient_step_fn(loaded, cfg, example.shape[-1]) if needs_gradients(cfg.method) else None
    ratio_dict = None
    if cfg.layer_ratios:
        if cfg.global_pruning or not loaded.is_yolo:
            raise PruningError("per-layer ratios apply to local pruning of Ultralytics models")
        # a ratio of 0 keeps the block whole
        ratio_dict = {model.model[int(i)]: float(r) for i, r in cfg.layer_ratios.items()}
    if cfg.head_ratio is not None:
        if not 0.0 <= cfg.head_ratio < 1.0:
            raise PruningError(f"the head's pruning ratio must be at least 0 and below 1, got {cfg.head_ratio}")
        if not loaded.is_yolo:
            raise PruningError(f"{loaded.path} has no Ultralytics task head: a head ratio does not apply")
        ratio_dict = {**(ratio_dict or {}), **{head: cfg.head_ratio for head in heads(model)}}
    if cfg.global_pruning:  # one threshold for the network: equal scores (sparsify's zeros) must not all go at once
        importance = TieBroken(importance, model)
    try:
        with trace_training_branches(model):
            pruner = FlooredPruner(
                model, example, importance=importance, global_pruning=cfg.global_pruning,
                pruning_ratio=cfg.ratio, pruning_ratio_dict=ratio_dict, iterative_steps=cfg.steps,
                ignored_layers=protected, round_to=cfg.round_to, in_channel_groups={}, out_channel_groups={},
                num_heads={},
            )
    except Exception as exc:
        raise _fail(loaded, "graph tracing", exc) from exc
    culprit = _Culprit(model)
    culprit.watch(pruner)
    return _Session(model, before, pruner, pairs, _module_names(model, protected), split, diff, contract, grad_step, culprit)


def _step_groups(session: _Session) -> list:
    """The groups (with indices) one pruning step removes, chunk halves coupled."""
    if session.grad_step is not None:
        session.grad_step(session.model)
    pruner = session.pruner
    chosen = [g for g in pruner.step(interactive=True) if len(g[0].idxs)]  # a layer at its floor loses nothing
    return couple_groups(pruner.DG, pruner.importance, chosen, session.pairs)


def _stock_name(model: nn.Module, name: str) -> tuple[str, int]:
    """The name a module of the split model has in the stock model, and the channel offset of its half.

    ``model.4.cv1b.bn`` is the second half of ``model.4.cv1.bn`` (offset: the first half's width);
    ``model.4.block.m.0.cv1.bn`` is ``model.4.m.0.cv1.bn``.
    """
    out, offset, parent = [], 0, model
    for part in name.split("."):
        child = parent[int(part)] if part.isdigit() else getattr(parent, part)
        if isinstance(parent, SplitChunk) and part in ("cv1a", "cv1b"):
            out.append("cv1")
            offset = parent.cv1a.conv.out_channels if part == "cv1b" else 0
        elif not (isinstance(parent, SplitChunk) and part == "block"):
            out.append(part)
        parent = child
    return ".".join(out), offset


def plan_channels(loaded: LoadedModel, cfg: PruneConfig, example: torch.Tensor) -> dict[str, list[int]]:
    """The BatchNorm channels one step of ``cfg`` would remove, by BN name in ``loaded.model``.

    Why: sparsity training (:mod:`toolchain.models.sparsity`) drives exactly the channels the pruner will
    remove to zero, so that the prune that follows is lossless. The plan is computed the way
    :func:`prune_structured` computes its first step (same blocks, couplings, protected layers and
    rounding), but nothing is removed; the loaded model is not modified.
    """
    session = _session(loaded, cfg, example)
    try:
        groups = _step_groups(session)
    except Exception as exc:
        raise _fail(loaded, session.culprit.describe(), exc) from exc
    names = {id(m): n for n, m in session.model.named_modules()}
    is_out = session.pruner.DG.is_out_channel_pruning_fn
    plan: dict[str, set[int]] = {}
    for group in groups:
        for item in group:
            module = item.dep.target.module
            if isinstance(module, nn.BatchNorm2d) and is_out(item.dep.handler):
                name, offset = _stock_name(session.model, names[id(module)])
                plan.setdefault(name, set()).update(int(i) + offset for i in item.idxs)
    return {name: sorted(idxs) for name, idxs in plan.items()}


def prune_structured(loaded: LoadedModel, cfg: PruneConfig, example: torch.Tensor, progress=None) -> PruneOutcome:
    """Remove channels from a copy of ``loaded.model``; the loaded model is not modified.

    Args:
        loaded: model to prune.
        cfg: pruning settings.
        example: input used for graph tracing and MAC counting.
        progress: optional callable ``progress(step, total)``.

    Raises:
        PruningError: the block rewrite changed the model's outputs, Torch-Pruning failed on a
            layer (named in the message), or the pruned model broke its output contract.
    """
    session = _session(loaded, cfg, example)
    model, pruner, culprit = session.model, session.pruner, session.culprit
    for step in range(cfg.steps):
        try:
            groups = _step_groups(session)
            # Indices were chosen on the unpruned graph; concat offsets depend on current widths,
            # so each group is rebuilt from its root (whose channels no other group touches) just before pruning.
            for root, handler, idxs in [(g[0].dep.target.module, g[0].dep.handler, list(g[0].idxs)) for g in groups]:
                culprit.module = root
                pruner.DG.get_pruning_group(root, handler, idxs).prune()
        except Exception as exc:
            raise _fail(loaded, culprit.describe(), exc) from exc
        if progress:
            progress(step + 1, cfg.steps)
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(False)

    restored = restore_stock_blocks(model) if loaded.is_yolo else 0
    model.eval()
    try:
        after = model_stats(model, example)
        shapes = contract_shapes(model, example) if session.contract is not None else None
    except Exception as exc:  # pragma: no cover - would be a Torch-Pruning bug
        raise PruningError(f"pruned model of {loaded.path} no longer runs: {exc}") from exc
    if shapes != session.contract:
        raise PruningError(
            f"pruning {loaded.path} changed its output shapes from {session.contract} to {shapes}; "
            "this is a bug in edgeprune's protected layers"
        )
    return PruneOutcome(model, session.before, after, session.split, restored, session.diff, session.protected_names)
