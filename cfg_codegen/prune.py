"""Channel and residual-unit pruning of Darknet networks, written back as cfg + .weights.

This is the seed-002 flow (slim-style "global percent" channel pruning on BN gamma, then
"shortcuts K" layer pruning) done on the Darknet files themselves, so the result trains in
Darknet and converts with ``cfg2ir``.

Channel pruning. Every output channel of a conv is a node; nodes that Darknet adds or
multiplies together (``[shortcut]``, ``[sam]``, ``[scale_channels]``) are merged into one group
and are kept or removed together, because the channel positions of both operands must stay
aligned. Channels whose position cannot move are pinned: convs without BN (no gamma, e.g. the
heads), grouped convs, inputs of grouped routes, of ``[yolo]`` and the network input. A group
is kept if any member's |gamma| is above the global threshold (the OR of slim pruning's merged
masks); ``keep`` then guarantees each conv a minimum share of its channels.

A removed channel is assumed constant, ``act(beta)`` (exact when gamma is 0). That constant is
carried through routes, shortcuts, pooling and upsampling and folded into every consuming
conv: its kernel sum times the constant moves into the conv's bias, or, with BN, out of its
rolling mean. This is what slimming tools do; it is exact except at borders of k x k convs
(zero padding does not see the constant) unless the constant is 0.

Residual-unit pruning removes ``[conv, conv, shortcut from=-3]`` units (the two convs used by
nothing else, same width in and out) with the smallest mean |gamma| of the unit's last conv;
the shortcut's output becomes the unit's input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cfg_codegen.cfgwrite import render_cfg
from cfg_codegen.layers import (
    NETWORK_INPUT,
    Activation,
    AvgPool,
    Convolutional,
    Dropout,
    MaxPool,
    Network,
    Reorg3d,
    Route,
    Sam,
    ScaleChannels,
    Shortcut,
    Upsample,
    Yolo,
)
from cfg_codegen.parser import parse_cfg, parse_cfg_text
from cfg_codegen.shapes import infer_shapes
from cfg_codegen.weights import ConvWeights, DarknetWeights, expected_floats, read_weights, write_weights
from toolchain.core.errors import PruningError
from toolchain.core.fileio import atomic_output, ensure_not_input


@dataclass(frozen=True)
class PruneConfig:
    """What to prune.

    Args:
        global_percent: fraction (0 <= p < 1) of the prunable channels, those with the smallest
            |BN gamma| over the whole network, to remove; None skips channel pruning.
        keep: every pruned conv keeps at least this fraction of its channels (and at least one).
        shortcuts: number of residual units to remove (0 = none).
    """

    global_percent: float | None = None
    keep: float = 0.01
    shortcuts: int = 0

    def __post_init__(self):
        if self.global_percent is not None and not 0 <= self.global_percent < 1:
            raise PruningError(f"global percent must be in [0, 1), got {self.global_percent}")
        if not 0 <= self.keep <= 1:
            raise PruningError(f"keep must be in [0, 1], got {self.keep}")
        if self.shortcuts < 0:
            raise PruningError(f"shortcuts must be >= 0, got {self.shortcuts}")
        if self.global_percent is None and self.shortcuts == 0:
            raise PruningError("nothing to do: give a global percent (channel pruning) and/or shortcuts > 0")


@dataclass(frozen=True)
class PruneResult:
    """A pruned network, its parameters and what changed."""

    network: Network
    weights: DarknetWeights
    cfg_text: str
    threshold: float | None = None
    removed_layers: tuple[int, ...] = ()  # original indices
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PruneReport:
    cfg: str
    weights: str
    channels_before: int
    channels_after: int
    params_before: int
    params_after: int
    threshold: float | None
    removed_layers: tuple[int, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "cfg": self.cfg, "weights": self.weights, "threshold": self.threshold,
            "channels": {"before": self.channels_before, "after": self.channels_after},
            "params": {"before": self.params_before, "after": self.params_after,
                       "ratio": self.params_after / self.params_before if self.params_before else None},
            "removed_layers": list(self.removed_layers), "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------------------------
# Channel bookkeeping
# ----------------------------------------------------------------------------------------------


class _Groups:
    """Union-find over channel ids; ``pinned`` marks groups that must keep their channels."""

    def __init__(self):
        self.parent: list[int] = []
        self.pinned: set[int] = set()
        self.owner: list[tuple[int, int]] = []  # id -> (conv index or NETWORK_INPUT, channel)

    def new(self, owner: int, count: int) -> list[int]:
        start = len(self.parent)
        self.parent += range(start, start + count)
        self.owner += [(owner, c) for c in range(count)]
        return list(range(start, start + count))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.pinned:
                self.pinned.add(ra)

    def pin(self, ids) -> None:
        for i in ids:
            self.pinned.add(self.find(i))

    def is_pinned(self, a: int) -> bool:
        return self.find(a) in self.pinned


def _channel_ids(network: Network) -> tuple[_Groups, list[list[int]], list[int]]:
    """Channel ids of every layer output, the merged groups, and the ids of the input image."""
    groups = _Groups()
    image = groups.new(NETWORK_INPUT, network.net.channels)
    ids: list[list[int]] = []

    def of(index: int) -> list[int]:
        return image if index == NETWORK_INPUT else ids[index]

    for layer in network.layers:
        prev = of(layer.index - 1)
        if isinstance(layer, Convolutional):
            out = groups.new(layer.index, layer.filters)
            if not layer.batch_normalize or layer.groups != 1:
                groups.pin(out)
            if layer.groups != 1:
                groups.pin(prev)
        elif isinstance(layer, Route):
            out = []
            for src in layer.layers:
                chans = of(src)
                if layer.groups != 1:
                    groups.pin(chans)
                    width = len(chans) // layer.groups
                    chans = chans[layer.group_id * width:(layer.group_id + 1) * width]
                out += chans
        elif isinstance(layer, Shortcut):
            out = list(prev)
            for src in layer.sources:  # Darknet adds the first min(C) channels: zip stops at the shorter
                for a, b in zip(out, of(src), strict=False):
                    groups.union(a, b)
        elif isinstance(layer, Sam):
            out = list(prev)
            for a, b in zip(prev, of(layer.source), strict=True):
                groups.union(a, b)
        elif isinstance(layer, ScaleChannels):
            out = list(of(layer.source))
            if layer.scale_wh:
                groups.pin(prev)
            else:
                for a, b in zip(out, prev, strict=True):
                    groups.union(a, b)
        elif isinstance(layer, Reorg3d):
            out = prev * (layer.stride * layer.stride)
        elif isinstance(layer, Yolo):
            groups.pin(prev)
            out = list(prev)
        elif isinstance(layer, (MaxPool, AvgPool, Upsample, Dropout)):
            out = list(prev)
        else:  # pragma: no cover - every parsed layer type is handled above
            raise PruningError(f"{layer.origin.describe()}: no channel rule for [{layer.kind}]")
        ids.append(out)
    groups.pin(image)
    return groups, ids, image


def _act(name: Activation, x: np.ndarray) -> np.ndarray:
    """Darknet activations on float64 numpy values (for the constants of removed channels)."""
    x = np.asarray(x, dtype=np.float64)
    if name is Activation.LINEAR:
        return x
    if name is Activation.LEAKY:
        return np.where(x > 0, x, 0.1 * x)
    if name is Activation.RELU:
        return np.maximum(x, 0)
    if name is Activation.RELU6:
        return np.clip(x, 0, 6)
    if name is Activation.LOGISTIC:
        return 1 / (1 + np.exp(-x))
    if name is Activation.TANH:
        return np.tanh(x)
    if name is Activation.SWISH:
        return x / (1 + np.exp(-x))
    if name is Activation.MISH:
        return x * np.tanh(np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))))
    if name is Activation.HARDSWISH:
        return x * np.clip(x + 3, 0, 6) / 6
    if name is Activation.HARD_MISH:
        return x * np.clip(x + 2, 0, 2) / 2
    raise PruningError(f"no constant rule for activation {name.value}")  # pragma: no cover


def _constants(network: Network, weights: DarknetWeights, ids: list[list[int]], removed: set[int]) -> list[np.ndarray]:
    """Per layer output, the constant value of each removed channel position (NaN where kept)."""
    consts: list[np.ndarray] = []

    def of(index: int) -> np.ndarray:
        return np.full(network.net.channels, np.nan) if index == NETWORK_INPUT else consts[index]

    for layer in network.layers:
        mask = np.array([i in removed for i in ids[layer.index]], dtype=bool)
        value = np.full(len(mask), np.nan)
        prev = of(layer.index - 1)
        if isinstance(layer, Convolutional):
            if mask.any():
                beta = weights.convs[layer.index].biases.astype(np.float64)
                value[mask] = _act(layer.activation, beta[mask])
        elif isinstance(layer, Route):
            parts = []
            for src in layer.layers:
                v = of(src)
                width = len(v) // layer.groups
                parts.append(v[layer.group_id * width:(layer.group_id + 1) * width])
            value = np.concatenate(parts)
        elif isinstance(layer, Shortcut):
            total = prev.copy()
            for src in layer.sources:
                v = of(src)
                n = min(len(total), len(v))
                total[:n] = total[:n] + v[:n]
            value = np.where(mask, _act(layer.activation, total), np.nan)
        elif isinstance(layer, Sam):
            value = np.where(mask, _act(layer.activation, prev * of(layer.source)), np.nan)
        elif isinstance(layer, ScaleChannels):
            value = np.where(mask, _act(layer.activation, of(layer.source) * prev), np.nan)
        elif isinstance(layer, Reorg3d):
            value = np.tile(prev, layer.stride * layer.stride)
        elif isinstance(layer, Upsample):
            value = prev * layer.scale
        else:  # maxpool, avgpool, dropout, yolo: the constant passes unchanged
            value = prev.copy()
        consts.append(value)
    return consts


# ----------------------------------------------------------------------------------------------
# Channel pruning
# ----------------------------------------------------------------------------------------------


def _select(network: Network, weights: DarknetWeights, groups: _Groups, ids, percent: float,
            keep: float) -> tuple[set[int], float | None]:
    """Ids of the removed channels and the |gamma| threshold used."""
    gamma: dict[int, float] = {}
    for layer in network.conv_layers:
        conv = weights.convs[layer.index]
        if conv.scales is not None:
            for cid, g in zip(ids[layer.index], np.abs(conv.scales.astype(np.float64)), strict=True):
                gamma[cid] = g
    candidates = [cid for cid in gamma if not groups.is_pinned(cid)]
    if not candidates:
        return set(), None
    ordered = np.sort([gamma[c] for c in candidates])
    count = int(len(ordered) * percent)
    threshold = float(ordered[count - 1]) if count else -np.inf
    kept_roots = {groups.find(c) for c in candidates if gamma[c] > threshold}
    for layer in network.conv_layers:  # each conv keeps at least max(1, keep * filters) channels
        own = ids[layer.index]
        minimum = max(1, int(layer.filters * keep))
        alive = sum(1 for c in own if groups.is_pinned(c) or groups.find(c) in kept_roots)
        if alive >= minimum:
            continue
        for cid in sorted((c for c in own if not groups.is_pinned(c) and groups.find(c) not in kept_roots),
                          key=lambda c: -gamma.get(c, 0.0)):
            kept_roots.add(groups.find(cid))
            alive += 1
            if alive >= minimum:
                break
    removed = {c for c in candidates if groups.find(c) not in kept_roots}
    return removed, (None if count == 0 else threshold)


def prune_channels(network: Network, weights: DarknetWeights, percent: float, keep: float) -> PruneResult:
    """Remove the channels with the smallest |BN gamma| (see the module docstring)."""
    groups, ids, image = _channel_ids(network)
    removed, threshold = _select(network, weights, groups, ids, percent, keep)
    consts = _constants(network, weights, ids, removed)
    convs: dict[int, ConvWeights] = {}
    overrides: dict[int, dict[str, str]] = {}
    for layer in network.conv_layers:
        conv = weights.convs[layer.index]
        out_keep = np.array([c not in removed for c in ids[layer.index]], dtype=bool)
        in_ids = image if layer.index == 0 else ids[layer.index - 1]  # the image is pinned: never removed
        in_keep = np.array([c not in removed for c in in_ids], dtype=bool)
        kernel = conv.weights.astype(np.float64)
        biases = conv.biases.astype(np.float64)
        mean = None if conv.rolling_mean is None else conv.rolling_mean.astype(np.float64)
        if not in_keep.all():  # fold the constants of removed inputs into the bias (or out of the BN mean)
            incoming = consts[layer.index - 1][~in_keep]
            shift = kernel[:, ~in_keep].sum(axis=(2, 3)) @ incoming
            if mean is not None:
                mean = mean - shift
            else:
                biases = biases + shift
        kernel = kernel[out_keep][:, in_keep]

        def f32(a):
            return None if a is None else np.ascontiguousarray(a, dtype=np.float32)

        convs[layer.index] = ConvWeights(
            f32(biases[out_keep]), f32(kernel),
            *(None if a is None else f32(a[out_keep]) for a in (conv.scales, mean, conv.rolling_variance)))
        if not out_keep.all():
            overrides[layer.index] = {"filters": str(int(out_keep.sum()))}
    kept = sum(len(ids[c.index]) for c in network.conv_layers) - sum(
        1 for c in network.conv_layers for cid in ids[c.index] if cid in removed)
    note = (f"channel pruning: threshold |gamma| {threshold:.4g}, {len(removed)} channels removed, {kept} kept"
            if threshold is not None else "channel pruning: global percent 0 removes nothing")
    text = render_cfg(network, overrides=overrides)
    return _result(text, network, DarknetWeights(weights.header, convs), threshold, (), (note,))


def _result(text: str, origin: Network, weights: DarknetWeights, threshold, removed_layers, notes) -> PruneResult:
    pruned = parse_cfg_text(text, f"{origin.path} (pruned)")
    return PruneResult(pruned, weights, text, threshold, tuple(removed_layers), tuple(notes))


# ----------------------------------------------------------------------------------------------
# Residual-unit pruning
# ----------------------------------------------------------------------------------------------


def residual_units(network: Network) -> list[int]:
    """Indices of the [shortcut] layers that close a removable [conv, conv, shortcut] unit."""
    shapes = infer_shapes(network)
    consumers = network.consumers()
    units = []
    for layer in network.layers:
        s = layer.index
        if not (isinstance(layer, Shortcut) and layer.sources == (s - 3,) and layer.activation is Activation.LINEAR):
            continue
        a, b = network.layers[s - 2], network.layers[s - 1]
        if not (isinstance(a, Convolutional) and isinstance(b, Convolutional) and b.batch_normalize):
            continue
        if consumers[s - 2] != (s - 1,) or consumers[s - 1] != (s,):
            continue
        if shapes[s - 1] != shapes[s - 3]:
            continue
        units.append(s)
    return units


def remove_residual_units(network: Network, weights: DarknetWeights, count: int) -> PruneResult:
    """Remove the ``count`` residual units whose last conv has the smallest mean |gamma|."""
    units = residual_units(network)
    if count > len(units):
        raise PruningError(f"{network.path}: asked to remove {count} residual units, only {len(units)} are "
                           f"removable ([conv, conv, shortcut from=-3] with linear activation, used by nothing else)")
    score = {s: float(np.abs(weights.convs[s - 1].scales).mean()) for s in units}
    chosen = sorted(sorted(units, key=lambda s: (score[s], s))[:count])
    dropped = {i for s in chosen for i in (s - 2, s - 1, s)}
    keep = [i for i in range(len(network.layers)) if i not in dropped]
    text = render_cfg(network, keep=keep, redirect={s: s - 3 for s in chosen})
    convs = {}
    new_index = {old: new for new, old in enumerate(keep)}
    for layer in network.conv_layers:
        if layer.index in new_index:
            convs[new_index[layer.index]] = weights.convs[layer.index]
    note = f"layer pruning: removed the residual units ending at layers {', '.join(map(str, chosen))}"
    return _result(text, network, DarknetWeights(weights.header, convs), None, sorted(dropped), (note,))


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def count_params(network: Network) -> int:
    return expected_floats(network)


def prune_darknet(cfg: str | os.PathLike, weights: str | os.PathLike, out_dir: str | os.PathLike,
                  config: PruneConfig) -> PruneReport:
    """Prune ``cfg`` + ``weights`` and write ``out_dir``/pruned.cfg and pruned.weights.

    Residual units are removed first, then channels, so the global threshold ranks the
    channels that remain. Both files are written atomically; inputs are never overwritten.

    Example:
        >>> config = PruneConfig(global_percent=0.8, keep=0.01, shortcuts=8)
        >>> prune_darknet("yolov3.cfg", "yolov3.weights", "out", config)  # doctest: +SKIP
    """

    out = Path(out_dir)
    cfg_out, weights_out = out / "pruned.cfg", out / "pruned.weights"
    for target in (cfg_out, weights_out):
        ensure_not_input(target, cfg, weights)
    network = parse_cfg(cfg)
    params = read_weights(weights, network)
    before_channels = sum(c.filters for c in network.conv_layers)
    before_params = count_params(network)
    notes: list[str] = list(network.warnings)
    removed_layers: tuple[int, ...] = ()
    threshold = None
    current, current_weights, text = network, params, None
    if config.shortcuts:
        step = remove_residual_units(current, current_weights, config.shortcuts)
        current, current_weights, text = step.network, step.weights, step.cfg_text
        removed_layers = step.removed_layers
        notes += step.notes
    if config.global_percent is not None:
        step = prune_channels(current, current_weights, config.global_percent, config.keep)
        current, current_weights, text = step.network, step.weights, step.cfg_text
        threshold = step.threshold
        notes += step.notes
    header = (f"Pruned by edgeprune cfg-prune from {Path(cfg).name} + {Path(weights).name}\n"
              + "\n".join(notes[len(network.warnings):]))
    with atomic_output(cfg_out) as tmp:
        tmp.write_text("".join(f"# {line}\n" for line in header.splitlines()) + "\n" + text)
    write_weights(weights_out, current, current_weights)
    return PruneReport(str(cfg_out), str(weights_out), before_channels, sum(c.filters for c in current.conv_layers),
                       before_params, count_params(current), threshold, removed_layers, tuple(notes))
