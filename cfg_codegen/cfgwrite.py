"""Write a (pruned) network back as Darknet .cfg text, keeping every option of the original.

Why rewrite the original sections instead of printing the specs: the pruned cfg is trained on
in Darknet afterwards (the usual Darknet pruning flow fine-tunes under Darknet), so the training
keys (jitter, max_delta, burn_in...) must survive. Only ``filters`` and the layer references of
routes and shortcuts change; a reference keeps its style (``-3`` stays relative, ``61`` stays
absolute) but points at the renumbered layer.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from cfg_codegen.layers import Network, Route, Sam, ScaleChannels, Shortcut
from toolchain.core.errors import PruningError


def _references(layer) -> tuple[str, tuple[int, ...]] | None:
    if isinstance(layer, Route):
        return "layers", layer.layers
    if isinstance(layer, Shortcut):
        return "from", layer.sources
    if isinstance(layer, (Sam, ScaleChannels)):
        return "from", (layer.source,)
    return None


def render_cfg(network: Network, keep: Sequence[int] | None = None, redirect: Mapping[int, int] | None = None,
               overrides: Mapping[int, Mapping[str, str]] | None = None, comment: str = "") -> str:
    """Cfg text of ``network`` with some layers dropped and some options replaced.

    Args:
        network: the parsed original.
        keep: old indices of the layers to write (default: all).
        redirect: old index of a dropped layer -> old index whose output replaces it (a removed
            residual unit's shortcut -> the unit's input); followed transitively.
        overrides: old layer index -> {key: new value}; keys missing from the section are appended.
        comment: lines written at the top as ``#`` comments.

    Raises:
        PruningError: a kept layer references a dropped layer that has no redirect.
    """
    keep = list(range(len(network.layers))) if keep is None else sorted(keep)
    redirect = redirect or {}
    overrides = overrides or {}
    new_index = {old: new for new, old in enumerate(keep)}

    def resolve(old: int, user: int) -> int:
        seen = old
        while seen not in new_index:
            if seen not in redirect:
                raise PruningError(f"layer {user} reads layer {old}, which was removed without a replacement")
            seen = redirect[seen]
        return new_index[seen]

    lines = [f"# {line}" for line in comment.splitlines()]
    if lines:
        lines.append("")
    net = network.sections[0]
    lines.append(f"[{net.name}]")
    lines += [f"{opt.key}={opt.value}" for opt in net.options]
    for old in keep:
        layer, section = network.layers[old], network.sections[old + 1]
        refs = _references(layer)
        replaced = dict(overrides.get(old, {}))
        lines += ["", f"[{section.name}]"]
        written: set[str] = set()
        for opt in section.options:
            value = opt.value
            if opt.key not in written:
                if opt.key in replaced:
                    value = replaced.pop(opt.key)
                elif refs is not None and opt.key == refs[0]:
                    tokens = opt.value.split(",")
                    targets = [resolve(src, old) for src in refs[1]]
                    value = ",".join(str(t - new_index[old]) if tok.startswith("-") else str(t)
                                     for tok, t in zip(tokens, targets, strict=True))
            written.add(opt.key)
            lines.append(f"{opt.key}={value}")
        lines += [f"{key}={value}" for key, value in replaced.items()]
    return "\n".join(lines) + "\n"
