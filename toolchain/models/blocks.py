"""Rewrite Ultralytics ``chunk`` blocks into prunable form and back to stock classes.

Why: ``C2`` (the heads of the P6 models), ``C2f`` and its subclasses (``C3k2``, ``C2fCIB``) and the
ELAN blocks of YOLOv9 (``RepNCSPELAN4``, ``ELAN1``) run ``cv1(x).chunk(2, 1)``: the two halves of one conv's output
go to different places. Pruning that conv as one group lets the halves lose different
channels, after which ``chunk`` splits at the wrong place. Before pruning, :class:`SplitChunk`
replaces ``cv1`` by two convs holding exact copies of its two halves (checked equivalent by
the pruner); :mod:`toolchain.models.coupling` then makes both halves lose the same number of
channels; after pruning, :func:`restore_stock_blocks` concatenates them back into the stock
block, so plain ``ultralytics`` loads the checkpoint.

``ADown`` (YOLOv9) chunks its *input* instead; it needs no rewrite, only the coupling of its
two convs' input channels (:func:`chunk_couplings`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from toolchain.core.errors import PruningError

# Attributes Ultralytics' parse_model puts on every layer and the model's forward reads.
_LAYER_ATTRS = ("f", "i", "type", "np")


@dataclass(frozen=True)
class ChunkFamily:
    """How one stock block uses its chunked ``cv1``.

    Attributes:
        chain: attribute names of the modules applied one after another; a single name of an
            ``nn.ModuleList`` is iterated.
        tail: attribute name of the conv that consumes the concatenation.
        through_first: False (C2f, ELAN): the chain runs on the second half and every output is
            appended, ``tail(cat(a, b, m1(b), m2(m1(b))...))``; True (C2): the chain replaces the
            first half, ``tail(cat(chain(a), b))``.
    """

    chain: tuple[str, ...]
    tail: str
    through_first: bool = False


# Exact class names: a subclass with another forward must not be rewritten by accident.
CHUNK_FAMILIES: dict[str, ChunkFamily] = {
    "C2": ChunkFamily(("m",), "cv2", through_first=True),
    "C2f": ChunkFamily(("m",), "cv2"),
    "C3k2": ChunkFamily(("m",), "cv2"),
    "C2fCIB": ChunkFamily(("m",), "cv2"),
    "RepNCSPELAN4": ChunkFamily(("cv2", "cv3"), "cv4"),
    "ELAN1": ChunkFamily(("cv2", "cv3"), "cv4"),
}


def _conv_slice(conv_block: nn.Module, start: int, stop: int) -> nn.Module:
    """Copy an Ultralytics ``Conv`` (conv + BN + act) keeping output channels [start, stop)."""
    part = copy.deepcopy(conv_block)
    part.act = conv_block.act  # Ultralytics shares one activation instance across layers
    conv, bn = part.conv, part.bn
    conv.weight = nn.Parameter(conv.weight.data[start:stop].clone())
    conv.out_channels = stop - start
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.data[start:stop].clone())
    bn.weight = nn.Parameter(bn.weight.data[start:stop].clone())
    bn.bias = nn.Parameter(bn.bias.data[start:stop].clone())
    bn.running_mean = bn.running_mean.data[start:stop].clone()
    bn.running_var = bn.running_var.data[start:stop].clone()
    bn.num_features = stop - start
    return part


def _conv_concat(first: nn.Module, second: nn.Module) -> nn.Module:
    """Inverse of :func:`_conv_slice`: one ``Conv`` whose outputs are ``first`` then ``second``."""
    merged = copy.deepcopy(first)
    merged.act = first.act
    conv, bn = merged.conv, merged.bn
    conv.weight = nn.Parameter(torch.cat([first.conv.weight.data, second.conv.weight.data]))
    conv.out_channels = conv.weight.shape[0]
    if conv.bias is not None:
        conv.bias = nn.Parameter(torch.cat([first.conv.bias.data, second.conv.bias.data]))
    for name in ("weight", "bias"):
        setattr(bn, name, nn.Parameter(torch.cat([getattr(first.bn, name).data, getattr(second.bn, name).data])))
    bn.running_mean = torch.cat([first.bn.running_mean, second.bn.running_mean])
    bn.running_var = torch.cat([first.bn.running_var, second.bn.running_var])
    bn.num_features = conv.out_channels
    return merged


class SplitChunk(nn.Module):
    """A chunk block with ``cv1`` split into ``cv1a`` and ``cv1b`` (same maths, no chunk).

    The stock block is kept as ``self.block`` without its ``cv1``, so its other children are
    pruned in place and :meth:`to_stock` only has to put the merged ``cv1`` back.

    Args:
        block: the stock block (``C2f``, ``C3k2``, ``C2fCIB``, ``RepNCSPELAN4``, ``ELAN1``); it
            is taken over, not copied.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.family = CHUNK_FAMILIES[type(block).__name__]
        half = block.c
        self.cv1a = _conv_slice(block.cv1, 0, half)
        self.cv1b = _conv_slice(block.cv1, half, 2 * half)
        del block.cv1
        self.block = block
        for attr in _LAYER_ATTRS:
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))
        self.train(block.training)  # a new Module starts in training mode; BN stats must not move

    def _chain(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        for name in self.family.chain:
            mod = getattr(self.block, name)
            mods.extend(mod if isinstance(mod, nn.ModuleList) else [mod])
        return mods

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tail = getattr(self.block, self.family.tail)
        if self.family.through_first:
            a = self.cv1a(x)
            for m in self._chain():
                a = m(a)
            return tail(torch.cat([a, self.cv1b(x)], 1))
        y = [self.cv1a(x), self.cv1b(x)]
        y.extend(m(y[-1]) for m in self._chain())
        return tail(torch.cat(y, 1))

    def halves(self) -> tuple[int, int]:
        return self.cv1a.conv.out_channels, self.cv1b.conv.out_channels

    def to_stock(self) -> nn.Module:
        """The equivalent stock block (raises when the halves were pruned to different widths)."""
        a, b = self.halves()
        if a != b:
            raise PruningError(f"{type(self.block).__name__} halves were pruned to {a} and {b} channels")
        block = self.block
        cv1 = _conv_concat(self.cv1a, self.cv1b)
        # put cv1 first again, as in the stock __init__, so state_dict order matches a fresh build
        children = dict(block._modules)
        block._modules.clear()
        block._modules["cv1"] = cv1
        block._modules.update(children)
        block.c = a
        block.train(self.training)
        return block


def _replace_children(module: nn.Module, convert) -> int:
    """Replace children in place where ``convert(child)`` returns a module; count them."""
    count = 0
    for name, child in module.named_children():
        new = convert(child)
        if new is not None:
            setattr(module, name, new)
            count += 1
        else:
            count += _replace_children(child, convert)
    return count


def split_chunk_blocks(model: nn.Module) -> int:
    """Convert every stock chunk block under ``model`` into :class:`SplitChunk`; return how many."""
    return _replace_children(model, lambda m: SplitChunk(m) if type(m).__name__ in CHUNK_FAMILIES else None)


def restore_stock_blocks(model: nn.Module) -> int:
    """Merge every :class:`SplitChunk` back into its stock class; return how many."""
    return _replace_children(model, lambda m: m.to_stock() if isinstance(m, SplitChunk) else None)


@dataclass(frozen=True)
class Slot:
    """Channels of one layer: its outputs (``"out"``) or inputs (``"in"``)."""

    module: nn.Module
    side: str


def chunk_couplings(model: nn.Module) -> list[tuple[Slot, Slot]]:
    """Pairs of slots that must lose the same number of channels for ``chunk`` to stay valid.

    Call after :func:`split_chunk_blocks`: a :class:`SplitChunk` couples the outputs of its
    two ``cv1`` halves; an ``ADown`` couples the inputs of its two convs (each sees one half).
    """
    pairs: list[tuple[Slot, Slot]] = []
    for m in model.modules():
        if isinstance(m, SplitChunk):
            pairs.append((Slot(m.cv1a.conv, "out"), Slot(m.cv1b.conv, "out")))
        elif type(m).__name__ == "ADown":
            pairs.append((Slot(m.cv1.conv, "in"), Slot(m.cv2.conv, "in")))
    return pairs
