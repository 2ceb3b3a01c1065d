"""Make a detector DPU-friendly: DPU activations, and the head's decode moved to post-processing.

Why: the KV260's DPU runs ReLU, ReLU6, LeakyReLU (slope 26/256 only), Hard-Swish and
Hard-Sigmoid; every SiLU becomes a CPU op that splits the compiled model into dozens of DPU
subgraphs (the seed-001 user's YOLOv7 ran at 7 FPS). Replacing them changes the function the
network computes, so the result must be fine-tuned (``edgeprune finetune``) before it is
deployed; the rewrite says so every time.

The head keeps its Ultralytics classes (so ``YOLO(out)`` and ``finetune`` work unchanged) and
gets one plain attribute, :data:`HOST_DECODE_ATTR`: it declares that on the DPU the graph
ends at the head's convolutions (class *logits*), and the board script applies the DFL
decode and the sigmoid. Activations are replaced per instance: Ultralytics' ``Conv`` shares
one class-level ``default_act`` SiLU, and changing that would silently change every model
built later in the process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from cfg_codegen.cfgwrite import render_cfg
from cfg_codegen.parser import parse_cfg
from cfg_codegen.weights import read_weights
from targets.vitis.dpu import LEAKY_SLOPE  # the only LeakyReLU slope the DPU implements
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output, ensure_not_input
from toolchain.models.checkpoint import save_model
from toolchain.models.loading import LoadedModel, load_model
from toolchain.models.sources import check_weights, source_for
from toolchain.models.sources.darknet import default_weights

HOST_DECODE_ATTR = "edgeprune_host_decode"
ACTIVATIONS = {
    "hardswish": lambda: nn.Hardswish(),
    "leaky": lambda: nn.LeakyReLU(LEAKY_SLOPE),
}
REPLACED_TYPES = (nn.SiLU, nn.Mish, nn.GELU)  # no DPU implementation
FINETUNE_WARNING = ("activations were replaced, so the network computes a different function: fine-tune it "
                    "(`edgeprune finetune {out} --data DATA --out RUN`) before judging or deploying its accuracy")


@dataclass
class RewriteReport:
    """What the rewrite changed.

    Attributes:
        replaced: count per replaced activation type (``{"SiLU": 57}``).
        leaky_slopes_fixed: LeakyReLUs whose slope was set to 26/256.
        host_decode: the YOLO head was marked so its decode runs in post-processing.
        warnings: what the user must do next (fine-tuning).
    """

    model: str
    out: str
    act: str
    replaced: dict = field(default_factory=dict)
    leaky_slopes_fixed: int = 0
    host_decode: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def changed_function(self) -> bool:
        return bool(self.replaced) or self.leaky_slopes_fixed > 0

    def describe(self) -> str:
        """One line: what changed."""
        parts = [f"{n} {kind} -> {self.act}" for kind, n in self.replaced.items()] or ["no SiLU/Mish/GELU found"]
        if self.leaky_slopes_fixed:
            parts.append(f"{self.leaky_slopes_fixed} LeakyReLU slopes -> 26/256")
        if self.host_decode:
            parts.append("head decode moved to post-processing")
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {**asdict(self), "changed_function": self.changed_function}


def _check_act(act: str) -> None:
    if act not in ACTIVATIONS:
        raise EdgepruneError(f"--act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")


def rewrite_module(model: nn.Module, act: str = "hardswish") -> tuple[dict, int, bool]:
    """Rewrite ``model`` in place.

    Returns:
        (replaced activation counts by type, LeakyReLU slopes fixed, whether a YOLO head was marked).
    """
    from ultralytics.nn.modules.head import Detect

    _check_act(act)
    replaced: dict[str, int] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, REPLACED_TYPES):
                setattr(parent, name, ACTIVATIONS[act]())  # a new module per slot, never the shared default
                replaced[type(child).__name__] = replaced.get(type(child).__name__, 0) + 1
    slopes = fix_leaky_slopes(model)
    heads = [m for m in model.modules() if isinstance(m, Detect)]
    for head in heads:
        setattr(head, HOST_DECODE_ATTR, True)
    return replaced, slopes, bool(heads)


def fix_leaky_slopes(model: nn.Module) -> int:
    """Give every LeakyReLU of ``model`` (in place) the DPU's slope 26/256; returns how many changed."""
    fixed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LeakyReLU) and child.negative_slope != LEAKY_SLOPE:
                setattr(parent, name, nn.LeakyReLU(LEAKY_SLOPE))
                fixed += 1
    return fixed


def has_host_decode(model: nn.Module) -> bool:
    """True when ``model``'s YOLO head was marked by :func:`rewrite_module`."""
    return any(getattr(m, HOST_DECODE_ATTR, False) for m in model.modules())


def _rewrite_and_save(model: nn.Module, ckpt: dict, out: str | Path, act: str, source: str, save) -> RewriteReport:
    """Rewrite ``model`` in place, record what changed in the checkpoint's edgeprune note, ``save(model, out,
    note)`` in the source's own format."""
    replaced, slopes, marked = rewrite_module(model, act)
    report = RewriteReport(str(source), str(out), act, replaced, slopes, marked)
    if report.changed_function:
        report.warnings.append(FINETUNE_WARNING.format(out=out))
    note = dict(ckpt.get("edgeprune") or {})
    note["dpu_rewrite"] = {"act": act, "replaced": replaced, "leaky_slopes_fixed": slopes, "host_decode": marked,
                           "source": str(source)}
    save(model, out, note)
    return report


def _rewrite_loaded(loaded: LoadedModel, out: str | Path, act: str, source: str) -> RewriteReport:
    return _rewrite_and_save(loaded.model, loaded.ckpt, out, act, source,
                             lambda model, dest, note: save_model(loaded, model, dest, note=note))


def dpu_rewrite_repo(model_path: str | Path, out: str | Path, act: str = "hardswish") -> RewriteReport:
    """A YOLOv5/YOLOv7 repository checkpoint rewritten for the DPU, saved as the repository saves one.

    Only activations change (YOLOv5's SiLU; YOLOv7-tiny's LeakyReLU(0.1) gets the DPU's slope): the
    head needs no mark, since ``deploy vitis`` always cuts a repository model at its prediction convs.
    """
    from toolchain.models.sources.yolo_repo import load_repo_checkpoint, save_repo_checkpoint

    _check_act(act)
    ensure_not_input(out, model_path)
    loaded = load_repo_checkpoint(model_path)
    return _rewrite_and_save(loaded.model, loaded.ckpt, out, act, str(model_path),
                             lambda model, dest, note: save_repo_checkpoint(loaded, model, dest, note=note))


def dpu_rewrite_file(model_path: str | Path, out: str | Path, act: str = "hardswish") -> RewriteReport:
    """Rewrite the model in ``model_path`` and save it to ``out`` in the format it came in.

    Raises:
        EdgepruneError: unknown ``act``, ``out`` equal to the input, unreadable model.
    """
    _check_act(act)
    ensure_not_input(out, model_path)
    return _rewrite_loaded(load_model(model_path), out, act, model_path)


def rewrite_saved_model(path: str | Path, act: str = "hardswish") -> RewriteReport:
    """Rewrite a model edgeprune just wrote (``prune --dpu-friendly``) in place, keeping its edgeprune note."""
    _check_act(act)
    return _rewrite_loaded(load_model(path), path, act, path)


# Darknet activations without a DPU implementation; a [yolo] head's logistic is handled at deploy
# (it moves to the board's decode), so only these are rewritten in a cfg.
CFG_REPLACED = ("mish", "swish", "hard_mish")
CFG_ACTIVATIONS = ("leaky", "relu")  # what Darknet itself and the DPU both run


def dpu_rewrite_cfg(cfg: str | Path, out: str | Path, act: str = "leaky", weights: str | Path | None = None
                    ) -> RewriteReport:
    """Rewrite a Darknet cfg for the DPU: mish/swish/hard_mish convs get ``act``; the weights are copied.

    Writes ``out`` (a .cfg) and ``<out stem>.weights`` beside it, so edgeprune finds the pair.
    Darknet's leaky (slope 0.1) is kept in the cfg: ``deploy vitis`` runs it as the DPU's 26/256.

    Raises:
        EdgepruneError: ``act`` not a Darknet activation the DPU runs; ``out`` is an input.
    """
    import shutil

    if act not in CFG_ACTIVATIONS:
        raise EdgepruneError(f"--act for a Darknet cfg must be one of {', '.join(CFG_ACTIVATIONS)} (activations "
                             f"Darknet and the DPU both run), got {act!r}")
    out = Path(out)
    if out.suffix.lower() != ".cfg":
        raise EdgepruneError(f"--out for a Darknet cfg must be a .cfg file, got {out}")
    weights = Path(weights) if weights else default_weights(Path(cfg))
    if weights is None:
        raise EdgepruneError(f"no weights for {cfg}: pass --weights (the rewritten cfg needs its .weights beside it)")
    weights_out = out.with_suffix(".weights")
    for target in (out, weights_out):
        ensure_not_input(target, cfg, weights)
    network = parse_cfg(cfg)
    read_weights(weights, network)  # the pair must fit before anything is written
    overrides, replaced = {}, {}
    for layer in network.conv_layers:
        if layer.activation.value in CFG_REPLACED:
            overrides[layer.index] = {"activation": act}
            replaced[layer.activation.value] = replaced.get(layer.activation.value, 0) + 1
    header = f"Rewritten for the DPU by edgeprune dpu-rewrite from {Path(cfg).name}: " + (
        ", ".join(f"{n} {kind} -> {act}" for kind, n in replaced.items()) or "nothing to replace")
    with atomic_output(weights_out) as tmp:
        shutil.copyfile(weights, tmp)
    with atomic_output(out) as tmp:
        tmp.write_text(f"# {header}\n\n" + render_cfg(network, overrides=overrides))
    report = RewriteReport(str(cfg), str(out), act, replaced)
    if report.changed_function:
        report.warnings.append(f"activations were replaced, so the network computes a different function: fine-tune "
                               f"{out} + {weights_out} before judging or deploying its accuracy")
    return report


# How each model source is rewritten, and its default activation (a registry keyed by the source's name).
REWRITERS = {"pytorch": ("hardswish", lambda model, out, act, weights: dpu_rewrite_file(model, out, act)),
             "darknet": ("leaky", lambda model, out, act, weights: dpu_rewrite_cfg(model, out, act, weights)),
             "yolo-repo": ("hardswish", lambda model, out, act, weights: dpu_rewrite_repo(model, out, act))}


def dpu_rewrite(model: str | Path, out: str | Path, act: str | None = None, weights: str | None = None
                ) -> RewriteReport:
    """Rewrite ``model`` (any source with a rewriter) for the DPU into ``out``; ``act`` None = the source's default."""

    source = source_for(model)
    check_weights(model, weights)
    if source.name not in REWRITERS:
        raise EdgepruneError(f"{model} is a {source.name} model; dpu-rewrite rewrites {', '.join(REWRITERS)} models")
    default, rewrite = REWRITERS[source.name]
    return rewrite(model, out, act or default, weights)
